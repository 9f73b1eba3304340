"""Runs you can manage, offscreen: choosing an adapter name whose folder holds a run reloads its
curves and its last evaluation; Resume only where a checkpoint is left and it continues that run;
names auto-increment; a run stopped during start-up leaves nothing behind; the held-out loss, early
stop and the kept checkpoint reach the plot and the status; the evaluation shows per-clip strips."""

from __future__ import annotations

import json
import queue
from pathlib import Path

import pytest
from fakes import FakeTrainingProcess, scripted_training
from PySide6.QtCore import Qt

from app.training import job as job_module
from app.training import runs
from model.protocol import RESPONSE, SILENCE, STANDBY
from model.train import checkpoint as ckpt
from model.train.config import TrainConfig
from model.train.synthetic import make_dataset
from ui.timeline import STATE_COLORS
from ui.training import train_panel as tp
from ui.training.evaluation_view import EvaluationView, answer_rows
from ui.training.train_panel import TrainPanel

CAPTION = "A red box slides across the frame."
S, W, R = SILENCE, STANDBY, RESPONSE


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs-clips")
    data = make_dataset(folder, 4, seed=5, size=(64, 48), max_events=1, counters=False)
    return [str(data)], str(folder)


def fake_run(out: Path, steps: int = 6, finished: bool = False, evaluation: dict | None = None) -> Path:
    """A run folder as the trainer leaves it: settings, a checkpoint, metrics (a held-out evaluation
    every third step, a torn last line), and for a finished run the adapter and its card."""
    step = out / "checkpoints" / f"step-{steps:06d}"
    step.mkdir(parents=True)
    (step / ckpt.STATE_FILE).write_text(json.dumps({"step": steps, "total_steps": 10}))
    (step / ckpt.ADAPTER_WEIGHTS).write_bytes(b"\0")
    (out / "train_config.json").write_text(json.dumps({"model": "demo"}))
    lines = []
    for s in range(1, steps + 1):
        record: dict = {"step": s, "loss": 3.0 - 0.1 * s, "lr": 1e-3}
        if s % 3 == 0:
            record["heldout"] = {"state_accuracy": {S: 0.5, W: None, R: 0.25}, "loss": 2.0 + 0.01 * s}
        lines.append(json.dumps(record))
    (out / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 7, "lo', encoding="utf-8")
    if finished:
        (out / ckpt.ADAPTER_WEIGHTS).write_bytes(b"\0")
        (out / "README.md").write_text("# card\n")
    if evaluation is not None:
        runs.save_evaluation(out, evaluation)
    return out


def report(predicted: list[str], answers: list[dict], macro: float) -> dict:
    labelled = [S, S, W, W, W, W, W, R, S, S]
    states = {s: {"precision": macro, "recall": macro, "f1": macro, "support": labelled.count(s)} for s in (S, W, R)}
    clip = {"video": "box.mp4", "seconds": 10.0, "labelled_states": labelled, "predicted_states": predicted,
            "answers": answers, "instruction": "Find all significant events in the video and describe them.",
            "labelled_responses": 1}  # fmt: skip
    return {"states": states, "macro_f1": macro, "state_accuracy": macro, "timing_error_s": 0.0, "answer_f1": macro,
            "clips": [clip], "labelled_responses": 1, "adapter": None}  # fmt: skip


def comparison(cautions: list[str] | None = None, warning: str | None = None) -> dict:
    base = report([S] * 10, [{"second": 7, "labelled": CAPTION, "predicted": None}], 0.4)
    adapter = report([S, S, W, W, W, W, W, R, S, S], [{"second": 7, "labelled": CAPTION, "predicted": CAPTION}], 0.9)
    result = {"base": base, "adapter": adapter, "split": "heldout", "clips": ["box.mp4"]}
    if cautions is not None:
        result["cautions"] = cautions
    if warning is not None:
        result["heldout_warning"] = warning
    return result


def make_panel(qtbot, settings, provider, root: Path, name: str | None = None) -> TrainPanel:
    settings.set_value("training/location", str(root))
    panel = TrainPanel(settings, provider)
    qtbot.addWidget(panel)
    if name is not None:
        panel.name.setText(name)
    panel.device.setCurrentText("cpu")
    return panel


def test_run_folders_next_names_and_history(tmp_path):
    root = tmp_path / "adapters"
    assert runs.next_free_name(root, "my-adapter") == "my-adapter"
    fake_run(root / "my-adapter")
    assert runs.next_free_name(root, "my-adapter") == "my-adapter-2"
    fake_run(root / "my-adapter-2", finished=True)
    assert runs.next_free_name(root, "my-adapter") == "my-adapter-3"
    assert runs.next_free_name(root, "my-adapter-2") == "my-adapter-3"
    # Settings alone (stopped before the first checkpoint) do not hold a name.
    (root / "half").mkdir()
    (root / "half" / "train_config.json").write_text("{}")
    assert runs.next_free_name(root, "half") == "half" and not runs.is_taken(root / "half")

    history = runs.read_history(root / "my-adapter")
    assert [s for s, _ in history.loss] == [1, 2, 3, 4, 5, 6] and history.split == "heldout"
    assert history.eval_loss == [(3, pytest.approx(2.03)), (6, pytest.approx(2.06))]
    assert [s for s, _ in history.accuracy] == [3, 6] and history.accuracy[0][1][R] == 0.25
    assert [s for s, _ in runs.read_history(root / "my-adapter", last_step=4).loss] == [1, 2, 3, 4]
    # A run resumed from an earlier checkpoint rewrote its steps: the last record of each step counts.
    with open(root / "my-adapter" / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('\n{"step": 5, "loss": 9.0}\n')
    again = runs.read_history(root / "my-adapter")
    assert again.loss[-1] == (5, 9.0) and [s for s, _ in again.loss] == [1, 2, 3, 4, 5]
    assert runs.load_evaluation(root / "my-adapter") is None
    # A line (or an evaluation file) nested thousands of levels deep is skipped like a torn one (issue 23)
    deep = "[" * 100_000 + "]" * 100_000
    with open(root / "my-adapter" / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(deep + '\n{"step": 6, "loss": 8.0}\n')
    assert runs.read_history(root / "my-adapter").loss[-2:] == [(5, 9.0), (6, 8.0)]
    (root / "my-adapter" / runs.EVALUATION_FILE).write_text(deep, encoding="utf-8")
    assert runs.load_evaluation(root / "my-adapter") is None
    (root / "my-adapter" / "train_config.json").write_text(deep, encoding="utf-8")
    assert runs.run_state(root / "my-adapter")["model"] == ""


def test_stopped_during_start_up_leaves_no_half_run(tmp_path):
    from model.train.trainer import prepare_config

    out = tmp_path / "early"
    zero = out / "checkpoints" / "step-000000"  # what the trainer saves when stopped before step 1
    zero.mkdir(parents=True)
    (zero / ckpt.STATE_FILE).write_text(json.dumps({"step": 0, "total_steps": 10}))
    (zero / ckpt.ADAPTER_WEIGHTS).write_bytes(b"\0")
    (out / "train_config.json").write_text("{}")
    (out / "metrics.jsonl").write_text("")
    assert runs.is_taken(out)
    assert runs.discard_unstarted_run(out) and not out.exists()
    trained = fake_run(tmp_path / "trained")
    assert not runs.discard_unstarted_run(trained) and runs.run_state(trained)["step"] == 6

    # Killed before its first checkpoint: settings alone; a new Start begins it afresh.
    out.mkdir()
    (out / "train_config.json").write_text(json.dumps({"model": "demo"}))
    config = prepare_config(TrainConfig(data=[str(tmp_path / "a.json")], model="demo", out=str(out)))
    assert config.out == str(out.resolve()) and not (out / "train_config.json").exists()


def test_choosing_a_run_shows_its_curves_and_evaluation(qtbot, settings, shapes, tmp_path, monkeypatch):
    root = tmp_path / "adapters"
    fake_run(root / "my-adapter", finished=True, evaluation=comparison())
    fake_run(root / "stopped", steps=4)
    panel = make_panel(qtbot, settings, lambda: shapes, root)
    assert panel.name.text() == "my-adapter-2"  # the default name: the next free one
    assert panel.loss_plot.steps == [] and not panel.resume_button.isEnabled()

    panel.name.setText("my-adapter")
    qtbot.waitUntil(lambda: panel.loss_plot.steps == [1, 2, 3, 4, 5, 6], timeout=10_000)
    assert panel.loss_plot.heldout_steps == [3, 6] and panel.accuracy_plot.points() == 4
    assert "finished adapter" in panel.folder_state.text()
    assert not panel.next_name_button.isHidden()
    assert "my-adapter-2" in panel.next_name_button.text()
    assert not panel.resume_button.isEnabled() and panel.evaluate_button.isEnabled() and panel.use_button.isEnabled()
    qtbot.waitUntil(lambda: panel.last_evaluation is not None, timeout=10_000)
    assert panel.table.item(3, 1).text() == "0.900" and "last evaluation of this run" in panel.eval_status.text()
    assert len(panel.eval_view.comparisons) == 1
    assert not panel.start() and "my-adapter-2" in panel.error.text()  # taken: the next free name offered

    # A stopped run: its curves; Resume continues exactly that run.
    panel.name.setText("stopped")
    qtbot.waitUntil(lambda: panel.loss_plot.steps == [1, 2, 3, 4], timeout=10_000)
    assert panel.resume_button.isEnabled() and not panel.evaluate_button.isEnabled()
    qtbot.waitUntil(lambda: panel.last_evaluation is None, timeout=10_000)
    assert panel.eval_view.comparisons == [] and "After training" in panel.eval_status.text()
    configs = []

    class Recorded(job_module.TrainingJob):
        def __init__(self, config, parent=None, **kw):
            configs.append(config)
            super().__init__(config, parent, starter=scripted_training([], FakeTrainingProcess()), poll_ms=20)

    monkeypatch.setattr(tp, "TrainingJob", Recorded)
    assert panel.resume()
    qtbot.waitUntil(lambda: bool(configs), timeout=60_000)
    assert configs[0].resume and configs[0].out == str(root / "stopped")
    panel.job.kill()
    qtbot.waitUntil(lambda: not panel.running, timeout=10_000)

    # The next free name: a new adapter, empty plots.
    qtbot.mouseClick(panel.next_name_button, Qt.MouseButton.LeftButton)
    assert panel.name.text() == "stopped-2"
    qtbot.waitUntil(lambda: panel.loss_plot.steps == [], timeout=10_000)
    assert "New adapter" in panel.folder_state.text() and not panel.resume_button.isEnabled()


def test_stop_during_start_up_frees_the_name(qtbot, settings, shapes, tmp_path, monkeypatch):
    root = tmp_path / "adapters"

    class StoppedEarly(job_module.TrainingJob):
        def __init__(self, config, parent=None, **kw):
            process, events = FakeTrainingProcess(), queue.Queue()
            out = Path(config.out)

            class Stop:
                def set(self):  # the trainer had written its settings and saves a step-0 checkpoint
                    zero = out / "checkpoints" / "step-000000"
                    zero.mkdir(parents=True)
                    (zero / ckpt.STATE_FILE).write_text(json.dumps({"step": 0, "total_steps": 800}))
                    (zero / ckpt.ADAPTER_WEIGHTS).write_bytes(b"\0")
                    (out / "train_config.json").write_text(json.dumps({"model": "demo"}))
                    events.put({"event": "stopped", "step": 0, "total_steps": 800, "checkpoint": str(zero)})
                    process.alive, process.exitcode = False, 0

            super().__init__(config, parent, starter=lambda c: (process, events, Stop()), poll_ms=20)

    monkeypatch.setattr(tp, "TrainingJob", StoppedEarly)
    panel = make_panel(qtbot, settings, lambda: shapes, root, name="early")
    assert panel.start()
    qtbot.waitUntil(lambda: panel.job is not None, timeout=60_000)
    panel.stop()
    qtbot.waitUntil(lambda: not panel.running, timeout=10_000)
    assert not (root / "early").exists() and not runs.is_taken(root / "early")
    assert "nothing was kept" in panel.status.text() and not panel.resume_button.isEnabled()
    assert "New adapter" in panel.folder_state.text() and panel.start_button.isEnabled()


def test_held_out_loss_early_stop_and_the_kept_step(qtbot, settings, shapes, tmp_path, monkeypatch):
    start = {"event": "start", "total_steps": 40, "start_step": 0, "train_windows": 3, "train_turns": 30,
             "train_clips": 3, "heldout_clips": 1, "lr": 5e-3, "device": "cpu", "precision": "fp32",
             "trainable_parameters": 10, "eval_split": "heldout", "heldout_videos": ["shapes_002.mp4"],
             "heldout_warning": "Only 1 clip is held out: its scores move a lot with one clip."}  # fmt: skip
    events = [start]
    for s in range(1, 9):
        events.append({"event": "step", "step": s, "total_steps": 40, "loss": 2.0 / s, "lr": 1e-3, "eta_s": 1.0})
        if s % 2 == 0:
            events.append({"event": "eval", "step": s, "split": "heldout", "loss": [0, 0, 1.0, 0, 0.8, 0, 0.9, 0, 1.1][s],
                           "state_accuracy": {S: 0.9, W: 0.5, R: 0.2}})  # fmt: skip
    done = {"event": "done", "step": 8, "total_steps": 40, "adapter": str(tmp_path / "a" / "kept"),
            "selected": {"step": 4, "heldout_loss": 0.8, "last_step": 8, "last_heldout_loss": 1.1},
            "early_stopped": {"step": 8, "best_step": 4}}  # fmt: skip
    process, sent = FakeTrainingProcess(), queue.Queue()
    for e in events:
        sent.put(e)
    configs = []

    class Scripted(job_module.TrainingJob):
        def __init__(self, config, parent=None, **kw):
            configs.append(config)
            stop = type("Stop", (), {"set": lambda s: None})()
            super().__init__(config, parent, starter=lambda c: (process, sent, stop), poll_ms=20)

    monkeypatch.setattr(tp, "TrainingJob", Scripted)
    panel = make_panel(qtbot, settings, lambda: shapes, tmp_path / "a", name="kept")
    evaluations = []
    monkeypatch.setattr(panel.eval_view, "start", lambda out, tokens, before: evaluations.append(out) or "")
    panel.early_stop.setValue(2)
    assert settings.value("training/early_stop", 0) == 2
    assert panel.start()
    qtbot.waitUntil(lambda: panel.loss_plot.heldout_steps == [2, 4, 6, 8], timeout=60_000)
    assert configs[0].early_stop == 2 and configs[0].min_heldout == 2
    assert panel.loss_plot.heldout_values == [1.0, 0.8, 0.9, 1.1]
    assert "shapes_002.mp4" in panel.status.text() and "Only 1 clip is held out" in panel.status.text()
    sent.put(done)
    process.alive, process.exitcode = False, 0
    qtbot.waitUntil(lambda: bool(evaluations), timeout=10_000)
    text = panel.status.text()
    assert "Stopped early at step 8" in text and "since step 4" in text
    assert "Kept: step 4, the lowest held-out loss (0.800; step 8: 1.100)" in text
    assert "stopped early at step 8" in panel.progress.format()


def test_the_evaluation_shows_strips_answers_and_cautions(qtbot, tmp_path):
    view = EvaluationView()
    qtbot.addWidget(view)
    view.resize(640, 560)
    worse = "the adapter scored lower than the base on answer F1 (0.50 -> 0.40): try fewer steps or more clips."
    view.show_result(comparison(cautions=[worse], warning="Only 1 clip is held out: hold out at least 2 (or 20%)."))
    assert view.table.item(3, 0).text() == "0.400" and view.table.item(3, 1).text() == "0.900"
    assert not view.cautions.isHidden()
    assert "Only 1 clip is held out" in view.cautions.text() and "The adapter scored lower" in view.cautions.text()
    [clip] = view.comparisons
    labelled, base, adapter = (clip.strips[k] for k in ("labelled", "base", "adapter"))
    assert labelled.colour_at(7) == STATE_COLORS[R] and labelled.colour_at(3) == STATE_COLORS[W]
    assert base.colour_at(7) == STATE_COLORS[S] and adapter.colour_at(7) == STATE_COLORS[R]
    assert labelled.colour_at(10) is None
    assert clip.rows == [(7.0, CAPTION, "(silence)", CAPTION)]
    assert [clip.answers.item(0, c).text() for c in range(4)] == ["0:07", CAPTION, "(silence)", CAPTION]
    image = view.grab()
    image.save(str(tmp_path / "evaluation.png"))
    # The strip paints the states' colours: the labelled row's Response cell is green.
    strip = labelled.grab().toImage()
    x = int((7.5 / 10) * strip.width())
    assert strip.pixelColor(x, strip.height() // 2) == STATE_COLORS[R]

    # An older result (no cautions in it): they are worked out from the reports; no per-second detail,
    # no strips.
    old = comparison()
    old["adapter"]["macro_f1"] = 0.3
    for r in (old["base"], old["adapter"]):
        for c in r["clips"]:
            del c["labelled_states"], c["predicted_states"]
    view.show_result(old)
    assert "scored lower" in view.cautions.text() and view.comparisons == []
    assert answer_rows({}, {}) == []


@pytest.mark.slow
def test_a_real_run_stopped_during_start_up_leaves_the_name_free(qtbot, settings, shapes, tmp_path):
    """The trainer, stopped before its first step, saves a step-0 checkpoint with its settings: nothing
    worth resuming. The panel removes it, so the name is free and Start begins again."""
    root = tmp_path / "adapters"
    panel = make_panel(qtbot, settings, lambda: shapes, root, name="quick-stop")
    panel.steps.setValue(5000)
    assert panel.start()
    qtbot.waitUntil(lambda: panel.job is not None, timeout=60_000)
    qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)  # the model is still loading
    qtbot.waitUntil(lambda: not panel.running, timeout=150_000)
    out = root / "quick-stop"
    assert panel.job.outcome == "stopped" and panel.job.last_step == 0
    assert not (out / "train_config.json").exists() and not runs.is_taken(out)
    assert "nothing was kept" in panel.status.text() and not panel.resume_button.isEnabled()
    assert panel.start(), panel.error.text()  # the same name starts again
    qtbot.waitUntil(lambda: panel.job is not None and panel.job.running, timeout=60_000)
    assert panel.stop_and_wait(150.0)


def test_the_window_is_asked_before_a_process_starts(qtbot, settings, shapes, tmp_path, monkeypatch):
    made = []

    class Recorded(job_module.TrainingJob):
        def __init__(self, config, parent=None, **kw):
            made.append(config)
            super().__init__(config, parent, starter=scripted_training([], FakeTrainingProcess()), poll_ms=20)

    monkeypatch.setattr(tp, "TrainingJob", Recorded)
    panel = make_panel(qtbot, settings, lambda: shapes, tmp_path / "adapters", name="asked")
    qtbot.waitUntil(lambda: panel._scan is not None, timeout=60_000)
    asked: list[str] = []
    panel.confirm_start = lambda what: asked.append(what) or False  # "Live is running": the user says no
    assert not panel.start() and asked == ["training"] and not made and not panel.running
    assert "Not started" in panel.status.text()
    panel.confirm_start = lambda what: asked.append(what) or True
    assert panel.start() and made and panel.running
    panel.stop_all()
    panel.job.kill()
    qtbot.waitUntil(lambda: not panel.running, timeout=10_000)
