"""Training in a process of its own (the app's way): events arrive over the queue from a spawned
child, the stop event ends it with a checkpoint, and failures come back as one error event."""

from __future__ import annotations

import queue

import pytest

from model.train import checkpoint as ckpt
from model.train.config import TrainConfig
from model.train.synthetic import make_dataset
from model.train.worker import start_training

TIMEOUT = 180


def _events_until_end(events, process) -> list[dict]:
    seen = []
    while True:
        try:
            event = events.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"no event for {TIMEOUT} s; process alive: {process.is_alive()}") from None
        seen.append(event)
        if event["event"] in ("done", "stopped", "error"):
            process.join(60)
            return seen


def _config(tmp_path, tiny_ckpt, **changes) -> TrainConfig:
    data = make_dataset(tmp_path / "clips", 4, seed=3, size=(64, 48), max_events=1, counters=False)
    base = {"data": [str(data)], "video_prefix": str(tmp_path / "clips"), "model": str(tiny_ckpt),
            "out": str(tmp_path / "adapter"), "device": "cpu", "holdout": 0.0, "cache_dir": str(tmp_path / "cache")}  # fmt: skip
    return TrainConfig(**{**base, **changes})


@pytest.mark.slow
def test_spawned_training_reports_progress_and_finishes(tiny_ckpt, tmp_path):
    process, events, stop = start_training(_config(tmp_path, tiny_ckpt, steps=4, eval_every=2))
    seen = _events_until_end(events, process)
    kinds = [e["event"] for e in seen if e["event"] != "log"]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert [e["step"] for e in seen if e["event"] == "step"] == [1, 2, 3, 4]
    assert all(e["total_steps"] == 4 and e["eta_s"] >= 0 and e["loss"] > 0 for e in seen if e["event"] == "step")
    evals = [e for e in seen if e["event"] == "eval"]
    assert [e["step"] for e in evals] == [2, 4] and set(evals[0]["state_accuracy"]) == {
        "</Silence>",
        "</Standby>",
        "</Response>",
    }
    assert process.exitcode == 0
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_stop_event_saves_a_checkpoint_and_ends_the_process(tiny_ckpt, tmp_path):
    process, events, stop = start_training(_config(tmp_path, tiny_ckpt, steps=500))
    seen = []
    while True:
        event = events.get(timeout=TIMEOUT)
        seen.append(event)
        if event["event"] == "step" and event["step"] == 3:
            stop.set()
        if event["event"] in ("done", "stopped", "error"):
            break
    process.join(60)
    assert seen[-1]["event"] == "stopped", seen[-1]
    step = seen[-1]["step"]
    assert 3 <= step < 500 and process.exitcode == 0
    assert ckpt.latest_checkpoint(tmp_path / "adapter").step == step
    assert seen[-1]["checkpoint"].endswith(f"step-{step:06d}")


@pytest.mark.slow
def test_failures_come_back_as_one_error_event(tiny_ckpt, tmp_path):
    process, events, _ = start_training(_config(tmp_path, tmp_path / "no-such-model"))
    seen = _events_until_end(events, process)
    assert seen[-1]["event"] == "error" and seen[-1]["kind"] == "model"
    assert "no-such-model" in seen[-1]["message"]

    (tmp_path / "bad.json").write_text("{not json")
    process, events, _ = start_training(_config(tmp_path, tiny_ckpt, data=[str(tmp_path / "bad.json")]))
    seen = _events_until_end(events, process)
    assert seen[-1]["event"] == "error" and seen[-1]["kind"] == "data"
    assert "bad.json" in seen[-1]["message"]
    assert any(e["event"] == "issue" and "not valid JSON" in e["message"] for e in seen)
