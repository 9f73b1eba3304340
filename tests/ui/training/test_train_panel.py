"""The train panel, offscreen, against real child processes: start training the demo model, see
progress and loss points arrive from the child, stop (a checkpoint), resume, finish, evaluate base vs
adapter side by side, use in live. Bad inputs and failures are shown with what to do, never raised."""

from __future__ import annotations

import json
import queue
from pathlib import Path

import pytest
from fakes import FakeTrainingProcess, scripted_training
from PySide6.QtCore import Qt

from app.training import job as job_module
from model.train import checkpoint as ckpt
from model.train.synthetic import make_dataset
from ui.training import train_panel as tp
from ui.training.train_panel import PRESETS, TrainPanel, run_state

TIMEOUT_MS = 150_000


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train-panel-clips")
    data = make_dataset(folder, 4, seed=7, size=(64, 48), max_events=1, counters=False)
    return [str(data)], str(folder)


def make_panel(qtbot, settings, provider, tmp_path: Path, name: str = "shapes") -> TrainPanel:
    panel = TrainPanel(settings, provider)
    qtbot.addWidget(panel)
    panel.location.setText(str(tmp_path / "adapters"))
    panel.name.setText(name)
    panel.device.setCurrentText("cpu")
    return panel


def table_row(panel: TrainPanel, label: str) -> list[str]:
    row = [panel.table.verticalHeaderItem(r).text() for r in range(panel.table.rowCount())].index(label)
    return [panel.table.item(row, c).text() for c in range(2)]


@pytest.mark.slow
def test_train_stop_resume_finish_evaluate_use(qtbot, settings, shapes, tmp_path):
    panel = make_panel(qtbot, settings, lambda: shapes, tmp_path)
    panel.resize(1200, 760)
    panel.show()
    assert panel.base_source() == "demo"
    qtbot.waitUntil(lambda: panel._scan is not None, timeout=60_000)
    assert "steps" in panel.estimate_label.text() and "measured" in panel.estimate_note.text()
    panel.advanced_button.setChecked(True)
    panel.steps.setValue(2000)
    assert panel.preset.currentData() == "custom"
    qtbot.waitUntil(lambda: "2,000 steps" in panel.estimate_label.text(), timeout=5_000)  # updated as settings change
    running: list[bool] = []
    panel.training_running.connect(running.append)

    # Start: the window hears about it before the process exists; progress and loss arrive.
    with qtbot.waitSignal(panel.about_to_start, timeout=5_000):
        assert panel.start()
    assert running == [True] and panel.running and panel.job is not None
    job = panel.job
    qtbot.waitUntil(lambda: len(panel.loss_plot.steps) >= 3, timeout=TIMEOUT_MS)
    assert panel.progress.maximum() == 2000 and panel.progress.value() >= 3
    assert "ETA" in panel.progress.format() and panel.loss_plot.steps[:3] == [1, 2, 3]
    assert all(v > 0 for v in panel.loss_plot.values) and len(panel.loss_plot.smoothed()) == len(panel.loss_plot.steps)
    assert not panel.start_button.isEnabled() and panel.stop_button.isEnabled()

    # Stop: a checkpoint, named by the job and shown; Resume becomes possible.
    with qtbot.waitSignal(job.stopped, timeout=TIMEOUT_MS) as stopped:
        qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
    checkpoint = stopped.args[0]
    out = tmp_path / "adapters" / "shapes"
    latest = ckpt.latest_checkpoint(out)
    assert latest is not None and checkpoint == str(latest.path) and checkpoint in panel.status.text()
    qtbot.waitUntil(lambda: not panel.running, timeout=30_000)
    assert running == [True, False]
    assert panel.resume_button.isEnabled() and "stopped run" in panel.folder_state.text()
    assert not panel.start(), "a second Start into the same folder must be refused"
    assert "already holds a training run" in panel.error.text() and "Resume" in panel.error.text()
    stopped_at = latest.step

    # Resume to a short budget: continues from the checkpoint, finishes, and evaluates by itself.
    panel.steps.setValue(stopped_at + 3)
    with qtbot.waitSignal(panel.about_to_start, timeout=5_000):
        qtbot.mouseClick(panel.resume_button, Qt.MouseButton.LeftButton)
    assert panel.error.isHidden()
    resumed = panel.job
    finished: list[str] = []
    resumed.finished.connect(finished.append)
    qtbot.waitUntil(lambda: bool(finished), timeout=TIMEOUT_MS)
    assert finished == [str(out)] and (out / "adapter_model.safetensors").is_file()
    assert panel.loss_plot.steps == list(range(1, stopped_at + 4))  # the curve before the stop is kept
    assert panel.accuracy_plot.points() >= 1  # the trainer's held-out evaluation at the last step
    assert panel.progress.value() == panel.progress.maximum() == stopped_at + 3
    qtbot.waitUntil(lambda: panel.last_evaluation is not None, timeout=TIMEOUT_MS)  # evaluated by itself
    result = panel.last_evaluation
    assert result["split"] == "heldout" and len(result["clips"]) == 1
    assert result["base"]["adapter"] is None and result["adapter"]["adapter"] == str(out)
    for label in ("Silence F1", "Standby F1", "Response F1", "macro-F1", "State accuracy"):
        base, adapted = table_row(panel, label)
        assert float(base) >= 0 and float(adapted) >= 0, (label, base, adapted)
    assert float(table_row(panel, "macro-F1")[1]) == pytest.approx(result["adapter"]["macro_f1"], abs=5e-4)
    assert "macro-F1" in panel.eval_status.text()
    qtbot.waitUntil(lambda: not panel.running, timeout=30_000)
    assert running == [True, False, True, False]  # busy through training and the evaluation after it

    # Use in Live: the adapter and the base it was trained on.
    assert panel.use_button.isEnabled() and panel.evaluate_button.isEnabled()
    with qtbot.waitSignal(panel.use_in_live, timeout=1_000) as used:
        qtbot.mouseClick(panel.use_button, Qt.MouseButton.LeftButton)
    assert used.args == [str(out), "demo"]
    panel.grab().save(str(tmp_path / "train_panel.png"))  # renders with curves and the table


def test_settings_presets_and_bad_inputs(qtbot, settings, shapes, tmp_path):
    def no_data():
        raise ValueError("Annotate at least one clip first.")

    panel = make_panel(qtbot, settings, no_data, tmp_path, name="bad")
    spawned: list[bool] = []
    panel.about_to_start.connect(lambda: spawned.append(True))
    assert not panel.start()
    assert panel.error.text() == "Annotate at least one clip first." and not spawned and panel.job is None
    panel.refresh_data()
    assert "Annotate at least one clip first." in panel.estimate_label.text()

    # Presets set the advanced values; changing one shows "Custom"; choosing a preset again restores it.
    for key, preset in PRESETS.items():
        panel.preset.setCurrentIndex(panel.preset.findData(key))
        assert (panel.rank.value(), panel.max_turns.value(), panel.steps.value()) == (preset.rank, preset.max_turns, 0)
    panel.rank.setValue(12)
    assert panel.preset.currentData() == "custom"
    panel.rank.setValue(PRESETS["thorough"].rank)
    assert panel.preset.currentData() == "thorough"
    assert PRESETS["quick"].steps(10) == 300 and PRESETS["balanced"].steps(1000) == 1000
    assert PRESETS["thorough"].steps(1000) == 3000

    fields = panel.config_fields(steps_per_epoch=50)
    assert (fields["steps"], fields["rank"], fields["alpha"], fields["epochs"]) == (1600, 32, 64, None)
    panel.epochs.setValue(2.0)
    assert panel.config_fields(steps_per_epoch=50)["steps"] is None and panel.config_fields(50)["epochs"] == 2.0
    panel.lr.setText("fast")
    with pytest.raises(ValueError):
        panel.config_fields(50)
    panel.lr.setText("3e-4")
    panel.holdout.setValue(25)
    panel.advanced_button.setChecked(True)
    panel.base.setCurrentIndex(panel.base.findData(tp.FOLDER))
    panel.base_folder.setText(str(tmp_path / "my-model"))

    # Everything persists under "training/".
    again = TrainPanel(settings, no_data)
    qtbot.addWidget(again)
    assert again.base_source() == str(tmp_path / "my-model") and again.name.text() == "bad"
    assert (again.rank.value(), again.lr.text(), again.epochs.value(), again.holdout.value()) == (32, "3e-4", 2.0, 25)
    assert again.preset.currentData() == "custom" and again.advanced_button.isChecked()
    assert again.location.text() == str(tmp_path / "adapters") and again.device.currentText() == "cpu"
    assert settings.value("training/rank", 0) == 32

    # A name that cannot be a folder, and a folder that holds a run, are refused with the reason.
    good = make_panel(qtbot, settings, lambda: shapes, tmp_path, name="a/b")
    assert not good.start() and "cannot be a folder name" in good.error.text()
    good.name.setText("taken")
    taken = tmp_path / "adapters" / "taken"
    taken.mkdir(parents=True)
    (taken / "train_config.json").write_text(json.dumps({"model": "demo"}))
    # Settings alone: a start stopped before its first checkpoint. Nothing to resume; Start may begin afresh.
    assert run_state(taken)["run"] is False
    assert not good.resume() and "no checkpoint to continue from" in good.error.text()
    assert not good.evaluate() and "no finished adapter" in good.error.text()
    step = taken / "checkpoints" / "step-000004"
    step.mkdir(parents=True)
    (step / ckpt.STATE_FILE).write_text(json.dumps({"step": 4, "total_steps": 10}))
    (step / ckpt.ADAPTER_WEIGHTS).write_bytes(b"")
    assert not good.start() and "already holds a training run (last checkpoint at step 4)" in good.error.text()


_START = {"event": "start", "total_steps": 50, "start_step": 0, "train_windows": 3, "train_turns": 30,
          "train_clips": 3, "heldout_clips": 1, "lr": 5e-3, "device": "cpu", "precision": "fp32",
          "trainable_parameters": 10, "eval_split": "heldout"}  # fmt: skip


@pytest.mark.parametrize("failure", ["oom", "crash"])
def test_failures_show_the_advice_and_the_kept_checkpoint(qtbot, settings, shapes, tmp_path, monkeypatch, failure):
    panel = make_panel(qtbot, settings, lambda: shapes, tmp_path, name=f"fails-{failure}")
    out = tmp_path / "adapters" / f"fails-{failure}"
    kept = out / "checkpoints" / "step-000004"
    kept.mkdir(parents=True)  # a complete checkpoint on disk, as the trainer leaves one
    (kept / ckpt.STATE_FILE).write_text(json.dumps({"step": 4, "total_steps": 50}))
    (kept / ckpt.ADAPTER_WEIGHTS).write_bytes(b"weights")
    (out / "train_config.json").write_text(json.dumps({"model": "demo"}))
    step = {"event": "step", "step": 5, "total_steps": 50, "loss": 2.0, "lr": 1e-3, "eta_s": 9.0, "elapsed_s": 1.0}
    events = [_START, step]
    if failure == "oom":
        events.append({"event": "error", "kind": "oom", "checkpoint": str(kept),
                       "message": "out of memory at step 6 (clip: 120 turns). Lower --max-turns (now 60)"})  # fmt: skip
    process = FakeTrainingProcess()

    class Scripted(job_module.TrainingJob):
        def __init__(self, config, parent=None, **kw):
            super().__init__(config, parent, starter=scripted_training(events, process), poll_ms=20)

    monkeypatch.setattr(tp, "TrainingJob", Scripted)
    with qtbot.waitSignal(panel.about_to_start):
        assert panel.resume()
    qtbot.waitUntil(lambda: panel.loss_plot.steps == [5], timeout=5_000)
    if failure == "oom":
        qtbot.waitUntil(lambda: not panel.error.isHidden(), timeout=5_000)
        assert panel.running  # until the process has exited
        process.alive, process.exitcode = False, 1
    else:
        process.kill()  # gone without a word
    qtbot.waitUntil(lambda: not panel.error.isHidden() and not panel.running, timeout=5_000)
    text = panel.error.text()
    assert str(kept) in text and "Checkpoint kept" in text
    if failure == "oom":
        assert "Out of memory" in text and "Lower --max-turns" in text and "Max turns" in text
    else:
        assert "crashed" in text and "killed by SIGKILL" in text and "Resume" in text
        assert "step 5/50" in panel.log_view.toPlainText()  # the last lines it sent
    assert "failed at step 5" in panel.progress.format()
    assert panel.resume_button.isEnabled() and not panel.stop_button.isEnabled()


def test_closing_stops_with_a_checkpoint_or_keeps_training(qtbot, settings, shapes, tmp_path, monkeypatch):
    """stop_and_wait: the stop event reaches the trainer, which answers with its checkpoint; detach:
    the run is left alone and the panel reports nothing more."""
    made: list = []

    class Scripted(job_module.TrainingJob):
        def __init__(self, config, parent=None, **kw):
            process, events = FakeTrainingProcess(), queue.Queue()
            events.put(_START)

            class Stop:
                def set(self):  # the trainer saves a checkpoint, says so and exits
                    events.put({"event": "stopped", "step": 3, "total_steps": 50, "checkpoint": "/ck/step-000003"})
                    process.alive, process.exitcode = False, 0

            super().__init__(config, parent, starter=lambda c: (process, events, Stop()), poll_ms=20)
            made.append(process)

    monkeypatch.setattr(tp, "TrainingJob", Scripted)
    panel = make_panel(qtbot, settings, lambda: shapes, tmp_path, name="closing")
    assert panel.start() and panel.running  # it starts once the clips are read (off the GUI thread)
    qtbot.waitUntil(lambda: panel.job is not None, timeout=60_000)
    stopped: list = []
    panel.job.stopped.connect(stopped.append)
    assert panel.stop_and_wait(10.0) and not panel.running and stopped == ["/ck/step-000003"]

    panel.name.setText("closing-2")
    assert panel.start()
    job = panel.job
    assert panel.detach() == str(tmp_path / "adapters" / "closing-2")
    job.stop()  # nothing reaches the child any more through the panel...
    assert made[-1].alive and panel.running  # ...and it trains on


def test_reading_a_run_folder_loads_no_torch(tmp_path):
    """The panel reads run folders on the GUI thread (on opening, after each event): their state and
    newest checkpoint come from files, without importing torch (seconds of a frozen window)."""
    import subprocess
    import sys

    out = tmp_path / "run"
    step = out / "checkpoints" / "step-000012"
    step.mkdir(parents=True)
    (step / ckpt.STATE_FILE).write_text(json.dumps({"step": 12, "total_steps": 40}))
    (step / ckpt.ADAPTER_WEIGHTS).write_bytes(b"\0")
    (out / "train_config.json").write_text(json.dumps({"model": "demo"}))
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from ui.training.train_panel import run_state\n"
        f"state = run_state(Path({str(out)!r}))\n"
        "print(json.dumps([state, 'torch' in sys.modules]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    state, torch_loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert state == {"run": True, "finished": False, "checkpoint": str(step), "step": 12, "total": 40, "model": "demo"}
    assert not torch_loaded, done.stderr[-2000:]
