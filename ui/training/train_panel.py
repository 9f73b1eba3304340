"""The train panel: the settings form (ui/training/train_form.py: base model, adapter name, preset,
advanced settings), an estimate of time and memory, a dataset preview before Start
(ui/training/preview_dialog.py), then Start / Stop / Resume of a LoRA training run in a process of
its own, with a progress bar and ETA, the loss curve with the held-out loss, and the held-out state
accuracy; afterwards the base model and the adapter are compared on the held-out clips
(ui/training/evaluation_view.py), and "Use in Live" hands the adapter to the live engine.

Choosing an adapter name whose folder holds a run shows that run: its curves (app/training/runs.py,
read on the thread pool) and its last evaluation; Resume is offered only where a checkpoint is left to
continue; a folder that holds a run offers the next free name for a new one. A fresh run stopped or
failed before its first step leaves nothing behind.

Signals for the window: ``about_to_start()`` synchronously before a training or evaluation process
is spawned (unload the live model from the GPU there), ``training_running(bool)`` (True from then
until no process of this panel runs, the evaluation after training included), ``use_in_live(adapter,
base_model)``. Hooks: ``confirm_start(what)`` ("training" | "evaluation") is asked before a process
starts (the window asks the user when Live is running; False: nothing starts); ``stop_all()`` stops
training (a checkpoint is kept) and ends an evaluation.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QFrame,
    QGroupBox,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.settings import Settings
from app.training import runs
from app.training.estimate import DataScan, Estimate, format_duration, tab_data_rules
from app.training.job import EvaluationJob, TrainingJob
from app.training.presets import CUSTOM, PRESETS, Preset  # noqa: F401 - re-exported for callers
from app.training.runs import run_state  # noqa: F401 - re-exported for callers
from model.train.config import TrainConfig
from ui.training.estimate_view import EstimateView
from ui.training.evaluation_view import EVAL_ROWS, EvaluationView  # noqa: F401 - EVAL_ROWS re-exported
from ui.training.preview_dialog import DatasetPreviewDialog
from ui.training.run_charts import RunCharts
from ui.training.run_controls import RunControls
from ui.training.train_form import DEMO, FOLDER, GROUP, TrainForm, default_adapter_root  # noqa: F401

_log = logging.getLogger(__name__)
DataProvider = Callable[[], tuple[list[str], str | None]]
# The form's widgets, reachable from the panel as before the form was a widget of its own.
FORM_WIDGETS = ("base", "base_folder", "name", "location", "folder_state", "next_name_button", "preset",
                "advanced_button", "advanced", "rank", "lr", "epochs", "steps", "max_turns", "holdout",
                "early_stop", "device", "use_unannotated")  # fmt: skip


class TrainPanel(QWidget):
    about_to_start = Signal()
    training_running = Signal(bool)
    use_in_live = Signal(str, str)  # adapter folder, base model source

    eval_max_answer_tokens = 64  # the evaluate command's default
    # Asked before a training or evaluation process starts; the window sets it (MainWindow.confirm_training_start).
    confirm_start: Callable[[str], bool] = staticmethod(lambda what: True)

    def __init__(self, settings: Settings, data_provider: DataProvider, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.data_provider = data_provider
        self.job: TrainingJob | None = None
        self._busy = False  # training_running's last value
        self._pending_launch: bool | None = None  # Start/Resume waiting for the clips to be read (resume?)
        self._evaluate_after = False
        self.last_evaluation: dict[str, Any] | None = None
        self.preview_dialog: DatasetPreviewDialog | None = None
        self._build()
        self._update_folder_state()
        self._update_buttons()
        self._estimate_timer = QTimer(self, singleShot=True, interval=150)
        self._estimate_timer.timeout.connect(self.update_estimate)
        self._folder_timer = QTimer(self, singleShot=True, interval=200)
        self._folder_timer.timeout.connect(self.show_run)
        QTimer.singleShot(0, self.refresh_data)
        QTimer.singleShot(0, self.show_run)

    # ------------------------------------------------------------------------------------------
    # Building the widgets

    def _build(self) -> None:
        self.form = TrainForm(self.settings)
        for name in FORM_WIDGETS:
            setattr(self, name, getattr(self.form, name))
        self.estimate_view = EstimateView()
        self.estimate_label, self.estimate_note = self.estimate_view.label, self.estimate_view.note
        self.estimate_view.scanned.connect(self._on_scan_done)
        self.estimate_view.scan_failed.connect(self._on_scan_failed)

        self.controls = RunControls()
        for name in ("start_button", "preview_button", "stop_button", "resume_button", "progress", "status", "error"):
            setattr(self, name, getattr(self.controls, name))
        self.start_button.clicked.connect(self._on_start_clicked)
        self.preview_button.clicked.connect(lambda: self.preview_data(offer_start=True))
        self.stop_button.clicked.connect(self.stop)
        self.resume_button.clicked.connect(self.resume)

        self.eval_view = EvaluationView()
        self.evaluate_button, self.use_button = self.eval_view.evaluate_button, self.eval_view.use_button
        self.eval_status, self.table = self.eval_view.status, self.eval_view.table
        self.evaluate_button.clicked.connect(self.evaluate)
        self.use_button.clicked.connect(self._use_in_live)
        self.eval_view.finished.connect(lambda result: setattr(self, "last_evaluation", result))
        self.eval_view.ended.connect(self._on_eval_ended)
        self.eval_view.log.connect(self._append_log)

        self.charts = RunCharts()
        self.loss_plot, self.accuracy_plot = self.charts.loss_plot, self.charts.accuracy_plot
        self.log_view = self.charts.log_view
        self.charts.history_loaded.connect(self._on_history)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 6, 0)
        settings_box = QGroupBox("Train an adapter")
        settings_layout = QVBoxLayout(settings_box)
        settings_layout.addWidget(self.form)
        settings_layout.addWidget(self.estimate_view)
        settings_layout.addWidget(self.controls)
        left_layout.addWidget(settings_box)
        left_layout.addWidget(self.eval_view)
        left_layout.addStretch(1)

        scroll = QScrollArea()  # the settings never squash: they scroll on a short window
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(left.sizeHint().width())
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(scroll)
        split.addWidget(self.charts)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        split.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.addWidget(split)

        self.form.changed.connect(lambda: self._estimate_timer.start())
        self.form.folder_changed.connect(self._on_folder_changed)
        self.form.data_rules_changed.connect(lambda: self.refresh_data(force=True))

    # ------------------------------------------------------------------------------------------
    # What the form says

    def base_source(self) -> str:
        return self.form.base_source()

    def adapter_root(self) -> Path:
        return self.form.adapter_root()

    def adapter_dir(self) -> Path:
        return self.form.adapter_dir()

    def _name_problem(self) -> str:
        return self.form.name_problem()

    def heldout_choice(self) -> list[str]:
        """The videos the user chose to hold out for the current data ([]: automatic); a clip no longer
        among the usable ones (removed, unreadable) is no choice."""
        try:
            paths, _ = self.data_provider()
        except ValueError:
            return []
        chosen, scan = self.form.heldout_choice(paths), self._scan
        return [v for v in chosen if any(c.video == v for c in scan.clips)] if scan is not None else chosen

    def set_heldout_choice(self, videos: list[str]) -> None:
        try:
            paths, _ = self.data_provider()
        except ValueError:
            return
        self.form.set_heldout_choice(paths, videos)
        self._estimate_timer.start()

    def config_fields(self, steps_per_epoch: int | None = None) -> dict[str, Any]:
        """The TrainConfig fields the form sets (data and command aside). ``steps_per_epoch`` resolves a
        preset's budget to steps (None: left to the trainer's automatic budget)."""
        return self.form.config_fields(steps_per_epoch, self.heldout_choice())

    def _config_for(self, heldout: list[str]) -> tuple[TrainConfig, Preset | None]:
        """The preview's settings for a held-out choice: the form's, the budget from the preset."""
        fields = self.form.config_fields(None, heldout)
        return TrainConfig(**fields), PRESETS.get(self.preset.currentData())

    # ------------------------------------------------------------------------------------------
    # The data and the estimate

    @property
    def _scan(self) -> DataScan | None:
        return self.estimate_view.scan

    def refresh_data(self, force: bool = False) -> None:
        """Ask the data provider again and re-read the clips for the estimate (off the GUI thread);
        ``force``: even when the files are the same ones (their annotations changed)."""
        try:
            paths, prefix = self.data_provider()
        except ValueError as e:
            self.estimate_view.show_problem(str(e))
            self._launch_failed(str(e))
            return
        if not self.estimate_view.read(paths, prefix, self.use_unannotated.isChecked(), force):
            self.update_estimate()
        dialog = self.preview_dialog
        if force and dialog is not None and dialog.isVisible():  # the annotations changed under it
            dialog.load(list(paths), prefix, self.use_unannotated.isChecked())

    def _on_scan_done(self, key: tuple) -> None:
        self.update_estimate()
        if self._pending_launch is not None:
            resume, self._pending_launch = self._pending_launch, None
            self._launch(resume)

    def _on_scan_failed(self, key: tuple, message: str) -> None:
        self._launch_failed(f"{message}. Check the clips and their annotations, then press Start again.")

    def update_estimate(self) -> Estimate | None:
        """Recompute the estimate from the form and the last scan of the clips."""
        return self.estimate_view.update(self.config_fields)

    def _steps_per_epoch(self) -> int | None:
        return self.estimate_view.steps_per_epoch(self.config_fields(None))

    # ------------------------------------------------------------------------------------------
    # The dataset preview

    def _on_start_clicked(self) -> None:
        if self.form.preview_before_start:
            self.preview_data(offer_start=True)
        else:
            self.start()

    def preview_data(self, offer_start: bool = True) -> DatasetPreviewDialog | None:
        """Show what will train (read on the thread pool); its Start button starts the run."""
        self._clear_error()
        try:
            paths, prefix = self.data_provider()
        except ValueError as e:
            self._show_error(str(e))
            return None
        if self.preview_dialog is not None:
            self.preview_dialog.close()
            self.preview_dialog.deleteLater()
        dialog = DatasetPreviewDialog(self._config_for, self.heldout_choice(), offer_start=offer_start and not self.running,
                                      dont_show=not self.form.preview_before_start, parent=self)  # fmt: skip
        dialog.heldout_changed.connect(self.set_heldout_choice)
        dialog.dont_show_changed.connect(lambda on: self.form.set_preview_before_start(not on))
        dialog.start_requested.connect(self.start)
        dialog.load(list(paths), prefix, self.use_unannotated.isChecked())
        self.preview_dialog = dialog
        dialog.show()
        return dialog

    # ------------------------------------------------------------------------------------------
    # Start / Stop / Resume

    @property
    def running(self) -> bool:
        """A training or evaluation process of this panel runs (or a Start waits for the clips)."""
        return bool(
            (self.job and self.job.running) or (self.eval_job and self.eval_job.running)
            or self._pending_launch is not None
        )  # fmt: skip

    @property
    def eval_job(self) -> EvaluationJob | None:
        return self.eval_view.job

    @property
    def training(self) -> bool:
        return bool(self.job and self.job.running)

    def start(self) -> bool:
        """Start a new run into the adapter folder. False (with the reason shown) when it cannot; True
        when it started, or starts as soon as the clips are read (off the GUI thread)."""
        return self._launch(resume=False)

    def resume(self) -> bool:
        """Continue the run in the adapter folder from its last checkpoint."""
        return self._launch(resume=True)

    def _launch(self, resume: bool) -> bool:
        if self.running:
            return False
        self._clear_error()
        problem = self._name_problem()
        if problem:
            return self._refuse(problem)
        try:
            paths, prefix = self.data_provider()
        except ValueError as e:
            return self._refuse(str(e))
        out = self.adapter_dir()
        state = run_state(out)
        problem = runs.start_problem(out, state, resume, self.form.next_name)
        if problem:
            return self._refuse(problem)
        if self.early_stop.value() and not self.holdout.value() and not self.heldout_choice():
            return self._refuse("Early stop needs held-out clips to watch: set 'Held-out share' above 0 % in the "
                                "advanced settings, or turn early stop off.")  # fmt: skip
        if self.estimate_view.key_of(paths, prefix, self.use_unannotated.isChecked()) != self.estimate_view.scan_key:
            # the preset's budget needs the clips: read them (off the GUI thread), then start
            self._pending_launch = resume
            self._status("Reading the clips before starting...")
            self.refresh_data()
            self._update_buttons()
            return True
        try:
            fields = self.config_fields(self._steps_per_epoch())
        except ValueError as e:
            return self._refuse(f"Learning rate: {e}")
        config = TrainConfig(
            data=list(paths), video_prefix=prefix, resume=resume,
            command=f"(trained in Streamo Live's Training tab; preset {self.preset.currentText()})",
            **tab_data_rules(self.use_unannotated.isChecked()), **fields,
        )  # fmt: skip
        try:
            config.validate()
        except ValueError as e:
            return self._refuse(str(e))
        if resume:
            if self.charts.shown != str(out):
                self.charts.load(out, state["step"])
        else:
            self.charts.clear(out, log=True)
            self.eval_view.clear()
        if not self.confirm_start("training"):
            self._status("Not started: Live goes on.")
            return False
        job = TrainingJob(config, self)
        job.started.connect(self._on_started)
        job.progress.connect(self._on_progress)
        job.loss.connect(self.loss_plot.add_point)
        job.evaluated.connect(self.charts.on_evaluated)
        job.log.connect(self.charts.append_log)
        job.finished.connect(self._on_finished)
        job.stopped.connect(self._on_stopped)
        job.failed.connect(self._on_failed)
        job.ended.connect(self._on_training_ended)
        self._set_busy(True)  # before the spawn: the window unloads the live model here
        try:
            job.start()
        except Exception as e:  # noqa: BLE001 - a process that cannot start is reported, never raised
            job.deleteLater()
            self._set_busy(self.running)
            return self._refuse(f"Could not start the training process: {e}")
        self.job = job
        self.progress.setRange(0, max(1, config.steps or 1))
        self.progress.setValue(0)
        self.progress.setFormat("starting the training process...")
        self._status(("Resuming" if resume else "Starting") + f" training into {out}...")
        self._update_buttons()
        return True

    def _launch_failed(self, message: str) -> None:
        """A Start that waited for the clips cannot go on."""
        if self._pending_launch is not None:
            self._pending_launch = None
            self.status.clear()
            self._show_error(message)
            self._update_buttons()

    def stop(self) -> None:
        """Ask the run to save a checkpoint and stop (a Start still waiting for the clips is cancelled)."""
        if self._pending_launch is not None:
            self._pending_launch = None
            self._status("Not started.")
            self._update_buttons()
        if self.job is not None and self.job.running:
            self.job.stop()
            self.stop_button.setEnabled(False)
            self._status("Stopping: finishing this step, then saving a checkpoint...")

    def stop_all(self) -> None:
        """Stop training (a checkpoint is kept: Resume continues) and end an evaluation (nothing to keep)."""
        if self.eval_job is not None and self.eval_job.running:
            self.eval_job.kill()
        self.stop()

    def stop_and_wait(self, timeout: float = 60.0) -> bool:
        """For closing the window: stop training (with a checkpoint) and an evaluation (nothing to
        keep), waiting up to ``timeout`` seconds. True when nothing runs any more."""
        self.stop_all()
        ok = True
        if self.job is not None and self.job.running:
            ok = self.job.wait(timeout)
        if self.eval_job is not None and self.eval_job.running:
            ok = self.eval_job.wait(5.0) and ok
        return ok and not self.running

    def detach(self) -> str:
        """For closing the window: training goes on in the background (its process writes the
        checkpoints and the adapter into the folder, and this program's exit does not wait for it);
        an evaluation is ended. Returns the adapter folder ("" when nothing was training)."""
        self._pending_launch = None
        if self.eval_job is not None and self.eval_job.running:
            self.eval_job.kill()
            self.eval_job.detach()
        if self.job is not None and self.job.running:
            self.job.detach()
            return str(self.job.out)
        return ""

    def _refuse(self, message: str) -> bool:
        self._show_error(message)
        return False

    def _set_busy(self, busy: bool) -> None:
        if busy and not self._busy:
            self.about_to_start.emit()
        if busy != self._busy:
            self._busy = busy
            self.training_running.emit(busy)

    # -- training events
    def _on_started(self, event: dict) -> None:
        total = int(event["total_steps"])
        self.progress.setRange(0, total)
        self.progress.setValue(int(event["start_step"]))
        self.charts.on_started(event)
        held = ", ".join(event.get("heldout_videos") or [])
        warning = event.get("heldout_warning")
        self._status(
            f"Training on {event['device']} ({event['precision']}): {event['train_clips']} clips, "
            f"{event['heldout_clips']} held out{f' ({held})' if held else ''}."
            + (f" \u26a0 {warning}" if warning else "")
        )

    def _on_progress(self, step: int, total: int, eta: float) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(step)
        eta_text = f" · ETA {format_duration(eta)}" if eta >= 0 and step < total else ""
        self.progress.setFormat(f"step {step} / {total}{eta_text}")

    def _on_finished(self, adapter: str) -> None:
        done = self.job.done_event if self.job is not None else {}
        early, total = done.get("early_stopped"), self.progress.maximum()
        self.progress.setValue(total)
        self.progress.setFormat(f"stopped early at step {early['step']} / {total}" if early else
                                f"done: {done.get('step') or total} steps")  # fmt: skip
        self._status(f"{runs.finished_text(done, adapter)} Evaluating it on the held-out clips...", ok=True)
        self._evaluate_after = True

    def _on_stopped(self, checkpoint: str) -> None:
        step = self.job.last_step if self.job else 0
        self.progress.setFormat(f"stopped at step {step} / {self.progress.maximum()}")
        if self._fresh_and_untrained():
            self._status("Stopped before the first step: nothing was trained, so nothing was kept.")
            return
        where = f" The checkpoint is kept: {checkpoint}." if checkpoint else ""
        self._status(f"Stopped at step {step}.{where} Press Resume to continue.")

    def _on_failed(self, kind: str, message: str, advice: str, lines: list, checkpoint: str) -> None:
        titles = {"oom": "Out of memory", "crash": "The training process crashed", "data": "A problem with the data",
                  "config": "A setting is out of range", "model": "The base model could not be loaded"}  # fmt: skip
        text = f"<b>{_esc(titles.get(kind, 'Training failed'))}</b><br>{_esc(message)}<br>{_esc(advice)}"
        if checkpoint:
            text += f"<br>Checkpoint kept: <code>{_esc(checkpoint)}</code>"
        self._show_error(text, rich=True)
        if lines:
            self._append_log("--- last log lines of the training process ---")
            for line in lines[-12:]:
                self._append_log(f"  {line}")
        step = self.job.last_step if self.job else 0
        self.progress.setFormat(f"failed at step {step} / {self.progress.maximum()}")
        self.status.clear()

    def _fresh_and_untrained(self) -> bool:
        """The run just ended was a new one that never finished a step."""
        job = self.job
        return job is not None and not job.config.resume and job.last_step == 0 and job.outcome != "done"

    def _on_training_ended(self, outcome: str) -> None:
        if outcome != "done" and self._fresh_and_untrained():
            try:  # a run stopped or failed during start-up leaves no half run holding the name
                runs.discard_unstarted_run(self.job.out)
            except OSError as e:
                _log.warning("could not tidy %s: %s", self.job.out, e)
        self._update_folder_state()
        self._update_buttons()
        if outcome == "done" and self._evaluate_after:
            self._evaluate_after = False
            self._start_evaluation()
        else:
            self._set_busy(self.running)

    # ------------------------------------------------------------------------------------------
    # Evaluate and use

    def evaluate(self) -> bool:
        """Compare the base model with the adapter on the held-out clips (in a process of its own)."""
        if self.running:
            return False
        if not run_state(self.adapter_dir())["finished"]:
            self._show_error("There is no finished adapter in this folder to evaluate yet: train one first.")
            return False
        self._clear_error()
        return self._start_evaluation()

    def _start_evaluation(self) -> bool:
        if not self.confirm_start("evaluation"):
            self.eval_view.set_status("Not evaluated: Live goes on. Press Evaluate when it is done.")
            self._set_busy(self.running)
            return False
        problem = self.eval_view.start(self.adapter_dir(), self.eval_max_answer_tokens, lambda: self._set_busy(True))
        if problem:
            self._set_busy(self.running)
            self._show_error(problem)
            return False
        self._update_buttons()
        return True

    def _on_eval_ended(self, outcome: str) -> None:
        if self.status.text().endswith("Evaluating it on the held-out clips..."):
            self._status(self.status.text().replace(" Evaluating it on the held-out clips...", ""), ok=True)
        self._update_buttons()
        self._set_busy(self.running)

    def _use_in_live(self) -> None:
        out = self.adapter_dir()
        state = run_state(out)
        if state["finished"]:
            self.use_in_live.emit(str(out), state["model"] or self.base_source())

    # ------------------------------------------------------------------------------------------
    # The run in the adapter folder

    def _on_folder_changed(self) -> None:
        self._update_folder_state()
        self._update_buttons()
        self._folder_timer.start()

    def show_run(self) -> None:
        """Show the run in the adapter folder: its curves and last evaluation (read on the thread
        pool), or empty plots for a new adapter. Nothing changes while training."""
        if self.training or self._name_problem():
            return
        out = self.adapter_dir()
        if str(out) == self.charts.shown:
            return
        if run_state(out)["run"]:
            self.charts.load(out)
            return
        self.charts.clear(out)
        if self.eval_job is None or not self.eval_job.running:
            self.eval_view.clear()
            self.eval_view.set_status("After training, the base model and the adapter are compared here.")
            self.last_evaluation = None

    def _on_history(self, folder: str, evaluation: dict | None) -> None:
        """A chosen run's curves are shown: its last evaluation too."""
        if self.running:
            return
        if evaluation is not None:
            self.eval_view.show_result(evaluation, note="(the last evaluation of this run)")
            self.last_evaluation = evaluation
            return
        self.eval_view.clear()
        self.last_evaluation = None
        finished = run_state(Path(folder))["finished"]
        self.eval_view.set_status("Not evaluated yet: press Evaluate." if finished else
                                  "After training, the base model and the adapter are compared here.")  # fmt: skip

    # ------------------------------------------------------------------------------------------
    # Small helpers

    def _update_folder_state(self) -> None:
        self.form.show_folder_state()

    def _update_buttons(self) -> None:
        training, busy = self.training, self.running
        state = run_state(self.adapter_dir()) if not self._name_problem() else {"checkpoint": "", "finished": False}
        self.start_button.setEnabled(not busy)
        self.preview_button.setEnabled(self._pending_launch is None)
        self.stop_button.setEnabled(training or self._pending_launch is not None)
        self.resume_button.setEnabled(not busy and bool(state["checkpoint"]) and not state["finished"])
        self.evaluate_button.setEnabled(not busy and bool(state["finished"]))
        self.use_button.setEnabled(not training and bool(state["finished"]))
        self.form.set_enabled(not busy)

    def _status(self, text: str, ok: bool = False) -> None:
        self.controls.set_status(text, ok)

    def _show_error(self, text: str, rich: bool = False) -> None:
        self.controls.show_error(text, rich)

    def _clear_error(self) -> None:
        self.controls.clear_error()

    def _append_log(self, line: str) -> None:
        self.charts.append_log(line)


def _esc(text: str) -> str:
    return html.escape(str(text))
