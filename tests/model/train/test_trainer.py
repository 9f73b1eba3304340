"""The LoRA trainer on the tiny model, on the CPU: it learns (the learning test), resumes exactly,
stops cleanly, survives out-of-memory with advice, protects finished runs, and writes adapters that
plain peft + transformers load with the same logits as the app's loader.

The learning test trains with the defaults (only data, model and output folder given) on
synthetic clips where a coloured shape appears at one second and leaves at another, and then runs
the live engine (not teacher forcing) over the clips with and without the adapter.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from model import protocol as P
from model.loading import load_model
from model.train import checkpoint as ckpt
from model.train.config import TrainConfig
from model.train.data import Encoder, attach_frames, clip_frames, cut_windows, load_clips, split_by_video
from model.train.evaluate import evaluate_clips, run_clip
from model.train.synthetic import make_dataset
from model.train.trainer import OutOfMemory, Trainer, TrainingError, train
from model.train.video import FrameCache


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> tuple[Path, Path]:
    """12 synthetic clips (64x48, 4 fps, one or two shapes each, no counters) and their raw annotations."""
    folder = tmp_path_factory.mktemp("shapes")
    return folder, make_dataset(folder, 12, seed=1, size=(64, 48), max_events=2, counters=False)


@pytest.fixture(scope="module")
def learned(shapes, tiny_ckpt, tmp_path_factory):
    """One training run with the defaults: (result, events, output folder)."""
    folder, annotations = shapes
    out = tmp_path_factory.mktemp("learn") / "adapter"
    events: list[dict] = []
    config = TrainConfig(data=[str(annotations)], video_prefix=str(folder), model=str(tiny_ckpt), out=str(out))
    config.device = "cpu"  # where the test runs, not a training setting
    result = train(config, on_event=events.append)
    return result, events, out


def _clips(shapes, loaded):
    folder, annotations = shapes
    clips, issues = load_clips([annotations], folder)
    cache = FrameCache(folder / "cache", loaded.processor, 1.0, loaded.min_pixels, loaded.max_pixels)
    assert not issues
    return attach_frames(clips, cache, issues), cache


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _small_config(shapes, tiny_ckpt, out: Path, **changes) -> TrainConfig:
    folder, annotations = shapes
    base = {"data": [str(annotations)], "video_prefix": str(folder), "model": str(tiny_ckpt), "out": str(out),
            "device": "cpu", "steps": 12, "save_every": 4, "eval_every": 6, "holdout": 0.0}  # fmt: skip
    return TrainConfig(**{**base, **changes})


# ---------------------------------------------------------------------------------------------
# The learning test


@pytest.mark.slow
def test_defaults_train_a_budget_that_scales_with_the_data(learned):
    result, events, out = learned
    start = events[0]
    assert start["event"] == "start" and start["start_step"] == 0
    assert start["train_clips"] == 11 and start["heldout_clips"] == 1  # holdout 0.1 of 12 videos, by video
    # A handful of clips: the automatic budget (>= 800 steps) repeats them, rather than one short epoch.
    assert result.status == "done" and result.step == result.total_steps == 800
    assert start["lr"] == pytest.approx(5e-3)  # 2e-4 * 2048 / 64, clamped
    assert events[-1]["event"] == "done"
    assert [e["step"] for e in events if e["event"] == "step"] == list(range(1, result.step + 1))


@pytest.mark.slow
def test_loss_falls_by_at_least_half(learned):
    _, _, out = learned
    losses = [r["loss"] for r in _metrics(out)]
    first, last = np.mean(losses[:20]), np.mean(losses[-20:])
    assert last <= 0.5 * first, (first, last)


@pytest.mark.slow
def test_engine_with_the_adapter_emits_the_labelled_states_and_captions(learned, shapes, tiny_ckpt):
    _, _, out = learned
    loaded = load_model(tiny_ckpt, precision="fp32", device="cpu", adapter=out)
    clips, cache = _clips(shapes, loaded)
    report = evaluate_clips(loaded, clips, cache)
    assert report["state_accuracy"] >= 0.9, report
    from model.engine import EngineOptions, StreamEngine

    engine = StreamEngine(loaded, EngineOptions(task="question"))
    trained_on, _ = split_by_video(clips, 0.1, 0)  # the trainer's split: the caption check is on these
    for clip in trained_on:
        outcome = run_clip(engine, clip, cache, 1.0)
        for i, label in enumerate(outcome.labels):
            if label.state == P.RESPONSE:
                assert outcome.emitted[i] == label, (clip.name, i, outcome.emitted[i], label)
    # The trainer logs the held-out (teacher-forced) accuracy per class, for the app's plots.
    final = _metrics(out)[-1]["heldout"]
    assert set(final["state_accuracy"]) == set(P.STATE_TOKENS) and final["windows"] == 1
    assert 0 <= final["state_accuracy_all"] <= 1


def test_engine_without_the_adapter_does_not(shapes, tiny_loaded):
    clips, cache = _clips(shapes, tiny_loaded)
    report = evaluate_clips(tiny_loaded, clips, cache)
    assert not (report["state_accuracy"] >= 0.9 and report["answer_f1"] == 1.0), report
    assert report["answer_f1"] < 0.5


@pytest.mark.slow
def test_adapter_folder_has_the_card_and_the_state_token_rows(learned, tiny_ckpt):
    _, _, out = learned
    card = (out / "README.md").read_text()
    assert str(tiny_ckpt) in card and "## Final metrics" in card and "state_accuracy" in card
    weights = load_file(out / "adapter_model.safetensors")
    tokens = {k: v for k, v in weights.items() if "trainable_tokens" in k}
    assert {("embed_tokens" in k, "lm_head" in k) for k in tokens} == {(True, False), (False, True)}
    assert all(v.shape[0] == 3 for v in tokens.values())  # Silence, Standby, Response rows
    visual = [k for k in weights if "visual" in k]
    assert visual and all(".visual.merger." in k for k in visual)  # the merger trains; the tower's MLP does not
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 16 and config["lora_alpha"] == 32


@pytest.mark.slow
def test_plain_peft_and_transformers_give_the_apps_logits(learned, shapes, tiny_ckpt):
    from peft import PeftModel
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    _, _, out = learned
    app = load_model(tiny_ckpt, precision="fp32", device="cpu", adapter=out)
    clips, cache = _clips(shapes, app)
    window = cut_windows(clips[0], 120)[0]
    enc = Encoder(app.tokenizer, app.processor).encode(window.messages, clip_frames(clips[0], cache))
    inputs = {
        "input_ids": enc.input_ids[None],
        "pixel_values": enc.pixel_values,
        "image_grid_thw": enc.image_grid_thw,
        "mm_token_type_ids": (enc.input_ids[None] == app.model.config.image_token_id).int(),
    }
    base = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_ckpt, dtype=torch.float32)
    plain = PeftModel.from_pretrained(base, str(out)).eval()
    processor = AutoProcessor.from_pretrained(out)  # the adapter folder carries the tokenizer
    assert processor.tokenizer.convert_tokens_to_ids(list(P.STATE_TOKENS)) == app.state_ids
    with torch.no_grad():
        a, b = app.model(**inputs).logits, plain(**inputs).logits
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    without = load_model(tiny_ckpt, precision="fp32", device="cpu")
    with torch.no_grad():
        assert not torch.allclose(without.model(**inputs).logits, a, atol=1e-3)  # the adapter matters


# ---------------------------------------------------------------------------------------------
# Resume, stop, out of memory


def test_stop_then_resume_equals_an_uninterrupted_run(shapes, tiny_ckpt, tmp_path):
    whole = train(_small_config(shapes, tiny_ckpt, tmp_path / "whole", dropout=0.1))
    assert whole.status == "done" and whole.step == 12

    stop = threading.Event()
    events: list[dict] = []

    def on_event(e: dict) -> None:
        events.append(e)
        if e["event"] == "step" and e["step"] == 6:
            stop.set()

    first = train(_small_config(shapes, tiny_ckpt, tmp_path / "parts", dropout=0.1), on_event, stop)
    assert first.status == "stopped" and first.step == 6
    assert first.checkpoint == tmp_path / "parts" / "checkpoints" / "step-000006"
    assert events[-1]["event"] == "stopped" and not (tmp_path / "parts" / "adapter_model.safetensors").exists()

    resumed: list[dict] = []
    second = train(TrainConfig(out=str(tmp_path / "parts"), resume=True), resumed.append)  # the saved settings
    assert second.status == "done" and second.step == 12
    assert resumed[0]["start_step"] == 6
    assert [e["step"] for e in resumed if e["event"] == "step"] == list(range(7, 13))
    assert [r["step"] for r in _metrics(tmp_path / "parts")] == list(range(1, 13))

    a = load_file(tmp_path / "whole" / "adapter_model.safetensors")
    b = load_file(tmp_path / "parts" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed training diverged from the uninterrupted run"

    # The saved adapter reloads bit-identically, through the app's loader.
    from peft import get_peft_model_state_dict

    loaded = load_model(tiny_ckpt, precision="fp32", device="cpu", adapter=tmp_path / "parts")
    state = get_peft_model_state_dict(loaded.model)
    assert all(torch.equal(state[k], b[k]) for k in b)
    assert len(ckpt.list_checkpoints(tmp_path / "parts")) == 2  # the newest two are kept


def test_an_existing_run_is_never_overwritten(shapes, tiny_ckpt, tmp_path):
    out = tmp_path / "run"
    train(_small_config(shapes, tiny_ckpt, out, steps=2))
    before = (out / "adapter_model.safetensors").read_bytes()
    with pytest.raises(TrainingError, match="already holds a training run.*--resume"):
        train(_small_config(shapes, tiny_ckpt, out, steps=2))
    assert (out / "adapter_model.safetensors").read_bytes() == before
    with pytest.raises(TrainingError, match="no checkpoint to continue from"):
        train(_small_config(shapes, tiny_ckpt, tmp_path / "empty", resume=True))


def test_a_run_stopped_before_its_first_checkpoint_starts_afresh(shapes, tiny_ckpt, tmp_path):
    """Killed before its first checkpoint: nothing to continue, so Start is not refused and --resume starts
    it afresh from its saved settings (it used to say "use --resume" while --resume said "no checkpoint":
    only deleting files by hand got out)."""
    stop = threading.Event()
    out = tmp_path / "run"

    def on_event(e: dict) -> None:
        if e["event"] == "step" and e["step"] == 2:
            stop.set()

    first = train(_small_config(shapes, tiny_ckpt, out, steps=12, save_every=8), on_event, stop)
    assert first.status == "stopped"
    import shutil

    shutil.rmtree(out / "checkpoints")  # what a kill before the first save leaves: settings, metrics lines
    assert (out / "train_config.json").is_file() and [r["step"] for r in _metrics(out)] == [1, 2]
    resumed = train(TrainConfig(out=str(out), resume=True, steps=2))  # its saved settings, afresh
    assert resumed.status == "done" and resumed.step == 2 and [r["step"] for r in _metrics(out)] == [1, 2]
    for path in out.iterdir():  # stopped again before its first checkpoint: its settings and metrics only
        if path.name not in ("train_config.json", "metrics.jsonl"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    again = train(_small_config(shapes, tiny_ckpt, out, steps=3))
    assert again.status == "done" and again.step == 3
    assert [r["step"] for r in _metrics(out)] == [1, 2, 3]  # the stopped start's records are gone


def test_out_of_memory_keeps_the_last_checkpoint_and_names_the_settings(shapes, tiny_ckpt, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_forward = Trainer._forward

    def forward(self, model, enc, positions):
        if self.model.training:
            calls["n"] += 1
            if calls["n"] == 7:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_forward(self, model, enc, positions)

    monkeypatch.setattr(Trainer, "_forward", forward)
    events: list[dict] = []
    out = tmp_path / "oom"
    with pytest.raises(OutOfMemory) as info:
        train(_small_config(shapes, tiny_ckpt, out, save_every=2), events.append)
    message = str(info.value)
    assert "out of memory at step 7" in message
    for setting in ("--max-turns (now 120)", "--max-pixels", "--rank (now 16)", "--resume"):
        assert setting in message
    assert "checkpoints/step-000006" in message
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "oom"
    assert ckpt.latest_checkpoint(out).step == 6
    # The kept checkpoint is a usable adapter, and training continues from it with a smaller window.
    load_model(tiny_ckpt, precision="fp32", device="cpu", adapter=out / "checkpoints" / "step-000006")
    monkeypatch.setattr(Trainer, "_forward", real_forward)
    resumed = train(TrainConfig(out=str(out), resume=True, max_turns=4))
    assert resumed.status == "done" and resumed.step == 12
    assert json.loads((out / "train_config.json").read_text())["max_turns"] == 4


# ---------------------------------------------------------------------------------------------
# Other bases: 4-bit (QLoRA on bitsandbytes' CPU backend), no state tokens, tied embeddings


def test_qlora_on_a_4bit_base(shapes, tiny_ckpt, tmp_path):
    events: list[dict] = []
    result = train(_small_config(shapes, tiny_ckpt, tmp_path / "q", steps=3, precision="4bit"), events.append)
    assert events[0]["precision"] == "4bit" and result.status == "done"
    loaded = load_model(tiny_ckpt, precision="fp32", device="cpu", adapter=tmp_path / "q")
    assert loaded.adapter == tmp_path / "q"


@pytest.mark.parametrize("variant", ["no_state_tokens", "tied"])
def test_adapter_for_other_bases_loads_in_plain_peft(variant, shapes, tmp_path):
    from peft import PeftModel
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from model.tiny import TinySpec, build_tiny_checkpoint

    spec = TinySpec(tie_word_embeddings=variant == "tied")
    base_dir = build_tiny_checkpoint(tmp_path / "base", seed=3, spec=spec, with_state_tokens=variant == "tied")
    out = tmp_path / "adapter"
    train(_small_config(shapes, base_dir, out, steps=4))
    app = load_model(base_dir, precision="fp32", device="cpu", adapter=out)
    processor = AutoProcessor.from_pretrained(out)
    ids = processor.tokenizer.convert_tokens_to_ids(list(P.STATE_TOKENS))
    assert ids == app.state_ids
    plain = PeftModel.from_pretrained(
        Qwen2_5_VLForConditionalGeneration.from_pretrained(base_dir, dtype=torch.float32), str(out)
    ).eval()
    x = torch.tensor([[5, 6, *ids, 9, 10, ids[2]]])
    with torch.no_grad():
        assert torch.allclose(app.model(input_ids=x).logits, plain(input_ids=x).logits, atol=1e-5)
    if variant == "tied":
        from model.loading import plain_module

        inner = app.model.get_base_model()
        head = plain_module(inner.lm_head).weight
        embed = plain_module(inner.model.language_model.embed_tokens).weight
        assert torch.equal(head[ids], embed[ids])


@pytest.mark.parametrize("keep_last", [False, True])
def test_the_adapter_kept_is_the_step_with_the_lowest_held_out_loss(shapes, tiny_ckpt, tmp_path, monkeypatch,
                                                                      keep_last):  # fmt: skip
    """Held-out loss falls then rises (scripted: 0.9 at step 4, 0.5 at 8, 0.7 at 12): the adapter written
    is step 8's, the card and the done event say so; --keep-last writes step 12's."""
    from model.train import trainer as T

    real = T.Trainer.evaluate
    losses = iter([0.9, 0.5, 0.7])

    def scripted(self):
        out = real(self)
        return {**out, "loss": next(losses)}

    monkeypatch.setattr(T.Trainer, "evaluate", scripted)
    out = tmp_path / "run"
    events: list[dict] = []
    cfg = _small_config(shapes, tiny_ckpt, out, holdout=0.25, eval_every=4, save_every=4, keep_checkpoints=3,
                        keep_last=keep_last)  # fmt: skip
    result = train(cfg, events.append)
    assert result.status == "done" and result.step == 12
    final = load_file(out / "adapter_model.safetensors")
    at = {c.step: load_file(c.path / "adapter_model.safetensors") for c in ckpt.list_checkpoints(out)}
    chosen = 12 if keep_last else 8
    assert all(torch.equal(final[k], at[chosen][k]) for k in final)
    assert not all(torch.equal(final[k], at[20 - chosen][k]) for k in final)  # the other step differs
    done = events[-1]
    card = (out / "README.md").read_text()
    if keep_last:
        assert done["selected"] is None and "**Kept:**" not in card
    else:
        assert done["selected"] == {"step": 8, "heldout_loss": 0.5, "last_step": 12, "last_heldout_loss": 0.7}
        assert "**Kept:** step 8, the lowest held-out loss (0.5000)" in card and "**Steps:** 8" in card
