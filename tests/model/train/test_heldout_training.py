"""Held-out clips chosen by name are the ones the trainer holds out and the evaluation after training
scores (one split for both), and ``--early-stop`` stops a run whose held-out loss stopped falling,
keeping the best step (issue 18 item 3). Tiny model, CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model.train import checkpoint as ckpt
from model.train.config import TrainConfig
from model.train.synthetic import make_dataset
from model.train.trainer import train


@pytest.fixture(scope="module")
def six(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("six")
    return folder, make_dataset(folder, 6, seed=2, size=(64, 48), max_events=1, counters=False)


def _config(six, tiny_ckpt, out: Path, **changes) -> TrainConfig:
    folder, annotations = six
    base = {"data": [str(annotations)], "video_prefix": str(folder), "model": str(tiny_ckpt), "out": str(out),
            "device": "cpu", "steps": 2, "eval_every": 1, "save_every": 4}  # fmt: skip
    return TrainConfig(**{**base, **changes})


def test_chosen_clips_are_held_out_by_the_trainer_and_scored_after(six, tiny_ckpt, tmp_path):
    from app.training.job import compare_on_heldout

    out = tmp_path / "run"
    events: list[dict] = []
    chosen = ["videos/shapes_001.mp4", "shapes_004.mp4"]  # as written in the data, and by file name
    assert train(_config(six, tiny_ckpt, out, heldout=chosen), events.append).status == "done"
    start = next(e for e in events if e["event"] == "start")
    assert start["heldout_clips"] == 2 and start["train_clips"] == 4
    assert start["heldout_videos"] == ["shapes_001.mp4", "shapes_004.mp4"] and start["heldout_warning"] is None
    evals = [e for e in events if e["event"] == "eval"]
    assert evals and all(e["split"] == "heldout" and isinstance(e["loss"], float) for e in evals)

    result = compare_on_heldout(out, max_answer_tokens=2)
    assert result["split"] == "heldout" and result["clips"] == ["shapes_001.mp4", "shapes_004.mp4"]
    assert result["heldout_warning"] is None and isinstance(result["cautions"], list)
    for name in ("base", "adapter"):
        entries = result[name]["clips"]
        assert [e["video"] for e in entries] == result["clips"]
        assert all(len(e["labelled_states"]) == len(e["predicted_states"]) == e["seconds"] for e in entries)


def test_early_stop_stops_when_the_held_out_loss_stops_falling(six, tiny_ckpt, tmp_path, monkeypatch):
    """Scripted held-out losses: lowest at step 3, then three evaluations without a lower one: the run
    stops at step 6 (not 12), and the adapter written is step 3's."""
    from model.train import trainer as T

    real = T.Trainer.evaluate
    losses = iter([0.9, 0.8, 0.5, 0.6, 0.7, 0.55, 0.4, 0.3, 0.2, 0.1, 0.1, 0.1])

    def scripted(self):
        return {**real(self), "loss": next(losses)}

    monkeypatch.setattr(T.Trainer, "evaluate", scripted)
    out = tmp_path / "run"
    events: list[dict] = []
    result = train(_config(six, tiny_ckpt, out, steps=12, holdout=0.34, early_stop=3), events.append)
    assert result.status == "done" and result.step == 6
    done = events[-1]
    assert done["event"] == "done" and done["early_stopped"] == {"step": 6, "best_step": 3}
    assert done["selected"]["step"] == 3 and done["selected"]["last_step"] == 6
    assert [e["step"] for e in events if e["event"] == "eval"] == [1, 2, 3, 4, 5, 6]
    assert ckpt.latest_checkpoint(out).step == 6
    final, best = load_file(out / ckpt.ADAPTER_WEIGHTS), load_file(out / "best" / ckpt.ADAPTER_WEIGHTS)
    assert all(torch.equal(final[k], best[k]) for k in final)


def test_early_stop_without_held_out_clips_says_so(six, tiny_ckpt, tmp_path):
    events: list[dict] = []
    cfg = _config(six, tiny_ckpt, tmp_path / "run", steps=1, holdout=0.05, min_heldout=0, early_stop=2)
    assert train(cfg, events.append).status == "done"
    issues = [e["message"] for e in events if e["event"] == "issue"]
    assert any(m.startswith("--early-stop 2: no clip is held out") for m in issues)
    start = next(e for e in events if e["event"] == "start")
    assert start["heldout_clips"] == 0 and start["heldout_warning"].startswith("No clip is held out")
    assert events[-1]["early_stopped"] is None
