"""TrainingJob: the trainer's events from a spawned child become signals without blocking the GUI;
a failure arrives as one `failed` with the advice and the kept checkpoint; a child killed mid-run is
reported as a crash with its last log lines and the checkpoint that survived, which resumes; a
detached run outlives the program that started it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes import FakeTrainingProcess, scripted_training

from app.training.job import TrainingJob, describe_exit
from model.train import checkpoint as ckpt
from model.train.config import TrainConfig
from model.train.synthetic import make_dataset

REPO = Path(__file__).resolve().parents[3]
TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train-job-clips")
    return folder, make_dataset(folder, 4, seed=5, size=(64, 48), max_events=1, counters=False)


def _config(clips, model, out, **changes) -> TrainConfig:
    folder, data = clips
    base = {"data": [str(data)], "video_prefix": str(folder), "model": str(model), "out": str(out), "device": "cpu",
            "holdout": 0.0, "cache_dir": str(folder / "cache")}  # fmt: skip
    return TrainConfig(**{**base, **changes})


class Recorder:
    """Every signal of a job, in order."""

    def __init__(self, job: TrainingJob) -> None:
        self.events: list[tuple] = []
        for name in ("started", "progress", "loss", "evaluated", "checkpoint", "log", "issue", "finished", "stopped",
                     "failed", "ended"):  # fmt: skip
            getattr(job, name).connect(lambda *args, name=name: self.events.append((name, *args)))

    def of(self, name: str) -> list[tuple]:
        return [e[1:] for e in self.events if e[0] == name]


# ---------------------------------------------------------------------------------------------
# Event handling, with a stand-in child (no process): fast and exact


START = {"event": "start", "total_steps": 10, "start_step": 0, "train_windows": 4, "train_turns": 40,
         "train_clips": 4, "heldout_clips": 0, "lr": 5e-3, "device": "cpu", "precision": "fp32",
         "trainable_parameters": 1000, "eval_split": "train", "steps_per_epoch": 4, "processes": 1}  # fmt: skip


def _step(n: int, loss: float) -> dict:
    return {"event": "step", "step": n, "total_steps": 10, "loss": loss, "lr": 1e-3, "eta_s": 10.0 - n, "elapsed_s": n}


def test_events_become_signals(qtbot, tmp_path):
    process = FakeTrainingProcess()
    events = [START, _step(1, 3.5), _step(2, 3.0),
              {"event": "eval", "step": 2, "split": "train", "loss": 1.0, "windows": 4,
               "state_accuracy": {"</Silence>": 0.5, "</Standby>": None, "</Response>": 0.25}},
              {"event": "checkpoint", "step": 2, "path": str(tmp_path / "c2")},
              {"event": "issue", "message": "a.json sample 3: video missing; skipped"},
              {"event": "log", "level": "INFO", "message": "INFO x: hello"},
              {"event": "done", "step": 10, "total_steps": 10, "adapter": str(tmp_path), "metrics": {}}]  # fmt: skip
    job = TrainingJob(_config((Path("f"), "d"), "m", tmp_path), starter=scripted_training(events, process))
    rec = Recorder(job)
    job.start()
    job.poll()
    assert rec.of("progress") == [(0, 10, -1.0), (1, 10, 9.0), (2, 10, 8.0)]
    assert rec.of("loss") == [(1, 3.5), (2, 3.0)]
    assert rec.of("evaluated")[0][0] == 2 and rec.of("evaluated")[0][1]["state_accuracy"]["</Response>"] == 0.25
    assert rec.of("checkpoint") == [(str(tmp_path / "c2"),)] and rec.of("issue")[0][0].startswith("a.json")
    assert rec.of("finished") == [(str(tmp_path),)]
    lines = [e[0] for e in rec.of("log")]
    assert any("Silence 50%" in line and "Response 25%" in line for line in lines)
    assert "INFO x: hello" in lines and any("warning: a.json" in line for line in lines)
    assert job.running and not rec.of("ended")  # the child has not exited yet
    process.alive, process.exitcode = False, 0
    job.poll()
    assert rec.of("ended") == [("done",)] and not job.running and not rec.of("failed")


def test_out_of_memory_brings_the_advice_and_the_kept_checkpoint(qtbot, tmp_path):
    kept = str(tmp_path / "checkpoints" / "step-000004")
    oom = {"event": "error", "kind": "oom", "checkpoint": kept,
           "message": "out of memory at step 5 (clip: 120 turns). Lower --max-turns (now 120) ..."}  # fmt: skip
    process = FakeTrainingProcess()
    job = TrainingJob(_config((Path("f"), "d"), "m", tmp_path, max_turns=120, rank=16),
                      starter=scripted_training([START, _step(1, 2.0), oom], process))  # fmt: skip
    rec = Recorder(job)
    job.start()
    job.poll()
    [(kind, message, advice, lines, checkpoint)] = rec.of("failed")
    assert kind == "oom" and message.startswith("out of memory at step 5") and checkpoint == kept
    assert "Max turns' (now 120)" in advice and "Resume" in advice and "rank (now 16)" in advice
    assert any("step 1/10" in line for line in lines)


def test_a_child_gone_without_a_word_is_a_crash(qtbot, tmp_path):
    process = FakeTrainingProcess()
    job = TrainingJob(
        _config((Path("f"), "d"), "m", tmp_path), starter=scripted_training([START, _step(1, 2.0)], process)
    )
    rec = Recorder(job)
    job.start()
    job.poll()
    process.kill()
    job.poll()
    assert not rec.of("failed")  # events may still be on their way: a few polls of grace
    job.poll()
    job.poll()
    [(kind, message, advice, lines, checkpoint)] = rec.of("failed")
    assert kind == "crash" and "killed by SIGKILL" in message and "after step 1 of 10" in message
    assert checkpoint == "" and "No checkpoint" in advice and "Start" in advice
    assert any("step 1/10" in line for line in lines)
    assert rec.of("ended") == [("failed",)]
    assert describe_exit(3) == "exit code 3" and describe_exit(-11) == "killed by SIGSEGV"


# ---------------------------------------------------------------------------------------------
# A real child: killed mid-run, then resumed from the checkpoint that survived


@pytest.mark.slow
def test_a_killed_training_process_is_reported_and_its_checkpoint_resumes(qtbot, clips, tiny_ckpt, tmp_path):
    out = tmp_path / "adapter"
    config = _config(clips, tiny_ckpt, out, steps=2000, save_every=2, eval_every=1000)
    job = TrainingJob(config)
    rec = Recorder(job)
    job.start()
    qtbot.waitUntil(lambda: len(rec.of("checkpoint")) >= 1 and len(rec.of("loss")) >= 3, timeout=TIMEOUT_MS)
    assert rec.of("started")[0][0]["total_steps"] == 2000
    steps = [s for s, _, _ in rec.of("progress")]
    assert steps == sorted(steps) and all(total == 2000 for _, total, _ in rec.of("progress"))
    assert all(v > 0 for _, v in rec.of("loss"))
    with qtbot.waitSignal(job.failed, timeout=30_000) as failed:
        job.process.kill()
    kind, message, advice, lines, checkpoint = failed.args
    assert kind == "crash" and "ended unexpectedly (killed by SIGKILL)" in message
    latest = ckpt.latest_checkpoint(out)
    assert latest is not None and checkpoint == str(latest.path) and checkpoint in message
    assert f"Resume to continue from the last checkpoint ({latest.path.name})" in advice
    assert any(line.startswith("step ") for line in lines) and any("checkpoint saved" in line for line in lines)
    qtbot.waitUntil(lambda: not job.running, timeout=10_000)
    assert not list((out / "checkpoints").glob(".step-*.part-*"))  # half-written ones of the dead child are gone

    # The surviving checkpoint continues the run to its end.
    resumed = TrainingJob.resuming(_config(clips, tiny_ckpt, out, steps=latest.step + 3))
    rec2 = Recorder(resumed)
    with qtbot.waitSignal(resumed.finished, timeout=TIMEOUT_MS) as done:
        resumed.start()
    assert done.args == [str(out)] and (out / "adapter_model.safetensors").is_file()
    assert rec2.of("started")[0][0]["start_step"] == latest.step
    assert [s for s, _ in rec2.of("loss")] == [latest.step + 1, latest.step + 2, latest.step + 3]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, latest.step + 4))
    qtbot.waitUntil(lambda: not resumed.running, timeout=30_000)
    assert resumed.outcome == "done" and resumed.process.exitcode == 0


DETACH_SCRIPT = r"""
import json, sys
from PySide6.QtCore import QCoreApplication, QTimer
from app.training.job import TrainingJob
from model.train.config import TrainConfig

app = QCoreApplication([])
job = TrainingJob(TrainConfig(**json.loads(sys.argv[1])))

def on_loss(step, value):
    print(json.dumps({"pid": job.pid, "step": step}), flush=True)
    job.detach()
    app.quit()

job.loss.connect(on_loss)
job.failed.connect(lambda *a: (print(json.dumps({"failed": a[1]}), flush=True), app.exit(3)))
job.start()
QTimer.singleShot(120_000, lambda: app.exit(4))
sys.exit(app.exec())
"""


@pytest.mark.slow
def test_a_detached_run_outlives_the_program_and_finishes(clips, tiny_ckpt, tmp_path):
    import psutil

    out = tmp_path / "background"
    # Frames upscaled to 64 visual tokens: a few tenths of a second a step, so the run outlives its parent.
    config = _config(clips, tiny_ckpt, out, steps=30, eval_every=1000, min_pixels=50176, max_pixels=50176)
    fields = dict(config.__dict__)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    started = time.monotonic()
    # Output to files, not pipes: the child inherits them, and a pipe would stay open until it ends.
    stdout, stderr = tmp_path / "out.txt", tmp_path / "err.txt"
    with open(stdout, "w") as o, open(stderr, "w") as e:
        code = subprocess.run([sys.executable, "-c", DETACH_SCRIPT, json.dumps(fields)], cwd=REPO, env=env,
                              stdout=o, stderr=e, timeout=150).returncode  # fmt: skip
    assert code == 0, stdout.read_text() + stderr.read_text()[-3000:]
    child = json.loads(stdout.read_text().strip().splitlines()[-1])["pid"]
    # The program has ended (it did not wait for its child), and the child trains on.
    assert psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE
    assert not (out / "adapter_model.safetensors").is_file()
    deadline = started + 150
    while psutil.pid_exists(child) and time.monotonic() < deadline:
        try:
            if psutil.Process(child).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    assert (out / "adapter_model.safetensors").is_file(), "the detached run did not finish its adapter"
    assert ckpt.latest_checkpoint(out).step == 30
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 31))


def test_the_comparison_goes_on_the_adapters_card(clips, tiny_ckpt, tmp_path):
    """After the Training tab's evaluation, the adapter's card (what the model manager shows) carries it:
    base vs adapter on the clips named, with the cautions in plain words; a second evaluation replaces it."""
    from app.training.job import compare_on_heldout
    from model.train.trainer import train

    out = tmp_path / "adapter"
    assert train(_config(clips, tiny_ckpt, out, steps=2, holdout=0.5)).status == "done"
    result = compare_on_heldout(out, max_answer_tokens=4)
    card = (out / "README.md").read_text()
    assert card.count("## Evaluation") == 1 and "| macro-F1 |" in card
    assert all(f"`{name}`" in card for name in result["clips"]) and result["split"] == "heldout"
    assert "- Caution: only " in card  # two held-out clips with few answers: said so
    assert "## Final metrics" in card  # the rest of the card is kept
    compare_on_heldout(out, max_answer_tokens=4)
    assert (out / "README.md").read_text().count("## Evaluation") == 1
