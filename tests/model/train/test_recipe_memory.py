"""On the tiny model, on the CPU: the release recipe (full fine-tuning, vision tower frozen, its
optimiser settings), frozen parts kept bf16 by the k-bit preparation, checkpoints after N minutes of
training (an injected clock), the held-out split scored in full, and the plan printed at start."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from model.loading import load_model
from model.train import checkpoint as ckpt
from model.train import trainer as T
from model.train.config import TrainConfig
from model.train.lora import add_lora, is_trained_in_full, prepare_kbit
from model.train.synthetic import make_dataset


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("shapes")
    return folder, make_dataset(folder, 6, seed=2, size=(64, 48), max_events=1, counters=False)


def _config(shapes, tiny_ckpt, out: Path, **changes) -> TrainConfig:
    folder, annotations = shapes
    base = {"data": [str(annotations)], "video_prefix": str(folder), "model": str(tiny_ckpt), "out": str(out),
            "device": "cpu", "steps": 2, "holdout": 0.0, "cache_dir": str(folder / "cache")}  # fmt: skip
    return TrainConfig(**{**base, **changes})


def test_release_recipe_trains_the_language_model_and_merger_only(shapes, tiny_ckpt, tmp_path):
    out = tmp_path / "full"
    events: list[dict] = []
    trainer = T.Trainer(_config(shapes, tiny_ckpt, out, recipe="release", steps=3, save_every=2), events.append)
    base = {
        n: p.detach().clone() for n, p in load_model(tiny_ckpt, precision="fp32", device="cpu").model.named_parameters()
    }
    result = trainer.run()
    assert result.status == "done"
    group = trainer.optimizer.optimizer.param_groups[0]
    assert (group["initial_lr"], group["weight_decay"], group["betas"]) == (1e-5, 0.1, (0.9, 0.95))
    model = trainer.acc.unwrap_model(trainer.model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert any(".language_model." in n for n in trainable) and any(".visual.merger." in n for n in trainable)
    assert any(n.startswith("lm_head") for n in trainable)
    assert frozen and all(".visual." in n and ".merger." not in n for n in frozen)
    assert {n for n in base if is_trained_in_full(n)} == trainable
    # The output is a whole model: the vision tower as the base's, the language model trained.
    again = load_model(out, precision="fp32", device="cpu").model
    after = dict(again.named_parameters())
    assert all(torch.equal(after[n], base[n]) for n in frozen)
    assert any(not torch.equal(after[n], base[n]) for n in trainable)
    start = events[0]
    assert start["trainable_parameters"] == sum(p.numel() for n, p in model.named_parameters() if n in trainable)
    assert "full fine-tuning" in " ".join(start["plan"])
    # A checkpoint resumes into the same weights.
    state = ckpt.load_adapter_state(ckpt.latest_checkpoint(out))
    assert set(state) == trainable and (out / "checkpoints" / "step-000003" / "full_finetune.json").is_file()


def test_kbit_preparation_keeps_frozen_parts_in_bf16(tiny_ckpt):
    from peft import prepare_model_for_kbit_training

    def bf16_4bit():
        loaded = load_model(tiny_ckpt, precision="4bit", device="cpu", trainable=True)
        assert loaded.precision == "4bit"
        for p in loaded.model.parameters():  # what a CUDA load holds: bf16 beside the 4-bit weights
            if type(p).__name__ != "Params4bit":
                p.data = p.data.to(torch.bfloat16)
        return loaded

    def dtypes(model):
        return {n: p.dtype for n, p in model.named_parameters() if type(p).__name__ != "Params4bit"}

    reference = prepare_model_for_kbit_training(bf16_4bit().model, use_gradient_checkpointing=False)
    assert set(dtypes(reference).values()) == {torch.float32}  # peft's: the upcast this replaces
    loaded = bf16_4bit()
    prepare_kbit(loaded.model, gradient_checkpointing=True)
    assert set(dtypes(loaded.model).values()) == {torch.bfloat16}
    assert not any(p.requires_grad for p in loaded.model.parameters())
    assert loaded.model.is_activation_checkpointing
    model = add_lora(bf16_4bit(), 4, 8, 0.0, gradient_checkpointing=False, merger=True)
    frozen = {
        n: p.dtype for n, p in model.named_parameters() if not p.requires_grad and type(p).__name__ != "Params4bit"
    }
    assert frozen and set(frozen.values()) == {torch.bfloat16}
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any(".visual.merger." in n and "lora_" in n for n in trained)  # the merger trains with LoRA


def test_a_checkpoint_is_written_after_n_minutes_of_training(shapes, tiny_ckpt, tmp_path):
    ticks = itertools.count(0, 400)  # each step takes 400 s of training time
    out = tmp_path / "minutes"
    events: list[dict] = []
    config = _config(shapes, tiny_ckpt, out, steps=5, save_every=100, save_minutes=10, keep_checkpoints=5)
    result = T.Trainer(config, events.append, clock=lambda: next(ticks)).run()
    assert result.status == "done"
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [2, 4, 5]  # 800 s >= 600 s, then 800 again
    assert [c.step for c in ckpt.list_checkpoints(out)] == [2, 4, 5]
    assert "after 10 minutes of training" in " ".join(events[0]["plan"])


def test_the_heldout_split_is_scored_in_full_and_training_clips_on_a_sample(shapes, tiny_ckpt, tmp_path, monkeypatch):
    monkeypatch.setattr(T, "EVAL_WINDOWS", 2)
    events: list[dict] = []
    held = T.Trainer(_config(shapes, tiny_ckpt, tmp_path / "held", holdout=0.5, max_heldout=2, max_turns=3,
                             eval_every=2), events.append)  # fmt: skip
    held.run()
    start = events[0]
    assert start["heldout_clips"] == 2 and len(start["heldout_videos"]) == 2  # half of 6, capped at 2
    assert len(held.eval_set) > 2  # every window of the held-out videos, past the sample's size
    windows = [e["windows"] for e in events if e["event"] == "eval"]
    assert windows == [len(held.eval_set)]
    assert f"all {len(held.eval_set)} windows scored" in " ".join(start["plan"])
    sample = T.Trainer(_config(shapes, tiny_ckpt, tmp_path / "train", max_turns=3, eval_every=2))
    sample.run()
    assert len(sample.eval_set) == 2


def test_the_start_says_the_batch_and_the_memory(shapes, tiny_ckpt, tmp_path):
    events: list[dict] = []
    T.train(_config(shapes, tiny_ckpt, tmp_path / "plan", steps=1), events.append)
    lines = events[0]["plan"]
    assert lines[0].startswith("effective batch 1 = 1 processes x 1 window x accum 1 (automatic")
    assert any(line.startswith("memory: process 0 on cpu: RSS ") for line in lines)
    assert any("gradient checkpointing off (automatic: under 100M parameters)" in line for line in lines)
    assert events[0]["accum"] == 1 and events[0]["gradient_checkpointing"] is False
