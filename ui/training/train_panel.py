"""The train panel: choose a base model and an adapter name, a preset (or the advanced settings),
see an estimate of time and memory, then Start / Stop / Resume a LoRA training run that runs in a
process of its own, with a progress bar and ETA, the live loss curve and the held-out state
accuracy; afterwards the base model and the adapter are evaluated side by side on the held-out
clips, and "Use in Live" hands the adapter to the live engine.

Presets (each maps to TrainConfig values; the advanced settings start from them and can change
each one; changing one shows the preset as "Custom"):

============  =====================================  ======  =========  ============================
preset        optimiser steps                        rank    max turns  what for
============  =====================================  ======  =========  ============================
Quick         1 epoch, at least 300 steps            8       60         a first look
Balanced      1 epoch, at least 800 steps            16      120        the trainer's own defaults:
                                                                        measured 0.98-1.00 live state
                                                                        accuracy on 12 synthetic clips
                                                                        (docs/training.md)
Thorough      3 epochs, at least 1,600 steps         32      120        more data, more passes
============  =====================================  ======  =========  ============================

All presets: learning rate automatic (2e-4 at a 2048-wide model, scaled by width), 10 % of the
videos held out (at least one of four or more), alpha = 2 x rank, the trainer's other defaults.
"Steps" (advanced) overrides the budget; "Epochs" (advanced) sets passes without the minimum.

Signals for the window: ``about_to_start()`` synchronously before a training or evaluation process
is spawned (unload the live model from the GPU there), ``training_running(bool)`` (True from then
until no process of this panel runs, the evaluation after training included), ``use_in_live(adapter,
base_model)``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.settings import Settings
from app.training.estimate import (
    TAB_DATA_RULES,
    DataScan,
    Estimate,
    estimate,
    format_duration,
    model_size,
    plan_run,
    scan_data,
)
from app.training.job import STATE_NAMES, EvaluationJob, TrainingJob
from model.protocol import RESPONSE, SILENCE, STANDBY
from model.train.config import TrainConfig
from ui.training.plots import AccuracyPlot, LossPlot

DataProvider = Callable[[], tuple[list[str], str | None]]
GROUP = "training"
DEMO, FOLDER = "demo", "<folder>"
ERROR_STYLE = "color: #c0392b"
OK_STYLE = "color: #2e7d32"


@dataclass(frozen=True)
class Preset:
    key: str
    label: str
    epochs: float
    min_steps: int
    rank: int
    max_turns: int
    tip: str

    def steps(self, steps_per_epoch: int) -> int:
        return max(self.min_steps, math.ceil(self.epochs * steps_per_epoch))


PRESETS: dict[str, Preset] = {
    p.key: p
    for p in (
        Preset("quick", "Quick", 1.0, 300, 8, 60, "A first look: one epoch, at least 300 steps, rank 8, 60-turn windows"),
        Preset("balanced", "Balanced", 1.0, 800, 16, 120,
               "The trainer's defaults: one epoch, at least 800 steps, rank 16, 120-turn windows"),
        Preset("thorough", "Thorough", 3.0, 1600, 32, 120,
               "Three epochs, at least 1,600 steps, rank 32, 120-turn windows"),
    )
}  # fmt: skip
CUSTOM = "custom"


def _with_browse(edit: QLineEdit, browse: Callable[[], None]) -> tuple[QWidget, QPushButton]:
    """A path field with its Browse... button, as one widget for a form row."""
    button = QPushButton("Browse...")
    button.clicked.connect(browse)
    row = QHBoxLayout()
    row.setContentsMargins(0, 0, 0, 0)
    row.addWidget(edit, 1)
    row.addWidget(button)
    widget = QWidget()
    widget.setLayout(row)
    return widget, button


def default_adapter_root() -> Path:
    from model.adapters import adapters_root

    return adapters_root()


def run_state(out: Path) -> dict[str, Any]:
    """What an adapter folder holds: {"run": bool, "finished": bool, "checkpoint": path|"", "step": int,
    "total": int, "model": str}."""
    from model.train import checkpoint as ckpt

    state: dict[str, Any] = {"run": False, "finished": False, "checkpoint": "", "step": 0, "total": 0, "model": ""}
    saved = out / "train_config.json"
    if not saved.is_file():
        return state
    # A folder with settings but no checkpoint and no adapter is a start stopped before its first
    # checkpoint: nothing to resume, and Start begins it afresh (model/train/trainer.prepare_config).
    state["run"] = ckpt.latest_checkpoint(out) is not None or (out / ckpt.ADAPTER_WEIGHTS).is_file()
    try:
        state["model"] = json.loads(saved.read_text(encoding="utf-8")).get("model", "")
    except (OSError, ValueError):
        pass
    latest = ckpt.latest_checkpoint(out)
    if latest is not None:
        state["checkpoint"], state["step"] = str(latest.path), latest.step
        try:
            state["total"] = int(latest.state().get("total_steps", 0))
        except (OSError, ValueError):
            pass
    state["finished"] = (out / ckpt.ADAPTER_WEIGHTS).is_file() and (out / "README.md").is_file()
    return state


class _ScanJob(QRunnable):
    """Reads the annotations and probes the videos off the GUI thread (for the estimate)."""

    class Signals(QObject):
        done = Signal(object, object)  # key, DataScan
        failed = Signal(object, str)

    def __init__(self, key: tuple, paths: list[str], prefix: str | None) -> None:
        super().__init__()
        self.key, self.paths, self.prefix = key, paths, prefix
        self.signals = _ScanJob.Signals()

    def run(self) -> None:
        try:
            scan = scan_data(self.paths, self.prefix, **TAB_DATA_RULES)
        except Exception as e:  # noqa: BLE001 - shown where the estimate goes
            self.signals.failed.emit(self.key, f"Could not read the clips: {e}")
        else:
            self.signals.done.emit(self.key, scan)


class TrainPanel(QWidget):
    about_to_start = Signal()
    training_running = Signal(bool)
    use_in_live = Signal(str, str)  # adapter folder, base model source

    eval_max_answer_tokens = 64  # the evaluate command's default

    def __init__(self, settings: Settings, data_provider: DataProvider, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.data_provider = data_provider
        self.job: TrainingJob | None = None
        self.eval_job: EvaluationJob | None = None
        self._busy = False  # training_running's last value
        self._scan: DataScan | None = None
        self._scan_key: tuple | None = None
        self._scan_pending: tuple | None = None
        self._loading = True
        self._last_estimate: Estimate | None = None
        self._evaluate_after = False
        self.last_evaluation: dict[str, Any] | None = None
        self._build()
        self._restore()
        self._loading = False
        self._update_folder_state()
        self._update_buttons()
        self._estimate_timer = QTimer(self, singleShot=True, interval=150)
        self._estimate_timer.timeout.connect(self.update_estimate)
        QTimer.singleShot(0, self.refresh_data)

    # ------------------------------------------------------------------------------------------
    # Building the widgets

    def _build(self) -> None:
        from model.catalog import KNOWN_MODELS

        # -- model and adapter
        self.base = QComboBox()
        self.base.addItem("Demo model (tiny random network, trains on a CPU in minutes)", DEMO)
        for m in KNOWN_MODELS:
            self.base.addItem(f"{m.model_id.split('/')[-1]} ({m.params_b:g}B, needs a CUDA GPU)", m.model_id)
        self.base.addItem("Local folder...", FOLDER)
        self.base_folder = QLineEdit(placeholderText="a model folder with config.json and *.safetensors")
        self.base_folder_widget, self.base_browse = _with_browse(self.base_folder, self._browse_base)

        self.name = QLineEdit(placeholderText="a name for the adapter")
        self.location = QLineEdit(placeholderText=str(default_adapter_root()))
        location_row, self.location_browse = _with_browse(self.location, self._browse_location)
        self.folder_state = QLabel()
        self.folder_state.setWordWrap(True)
        self.folder_state.setStyleSheet("color: palette(mid)")

        self.preset = QComboBox()
        for p in PRESETS.values():
            self.preset.addItem(p.label, p.key)
            self.preset.setItemData(self.preset.count() - 1, p.tip, Qt.ItemDataRole.ToolTipRole)
        self.preset.addItem("Custom", CUSTOM)
        self.advanced_button = QToolButton(text="Advanced", checkable=True)
        self.advanced_button.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_button.setAutoRaise(True)
        self.advanced_button.toggled.connect(self._toggle_advanced)
        preset_row = QHBoxLayout()
        preset_row.setContentsMargins(0, 0, 0, 0)
        preset_row.addWidget(self.preset, 1)
        preset_row.addWidget(self.advanced_button)

        # -- advanced settings (behind the disclosure)
        self.rank = QSpinBox(minimum=1, maximum=256, value=16)
        self.rank.setToolTip("LoRA rank: more capacity, more memory (alpha is twice the rank)")
        self.lr = QLineEdit(placeholderText="auto")
        self.lr.setToolTip("Peak learning rate; empty: automatic (2e-4 at a 2048-wide model, scaled by width)")
        self.epochs = QDoubleSpinBox(minimum=0.0, maximum=100.0, decimals=1, singleStep=0.5, value=0.0)
        self.epochs.setSpecialValueText("from the preset")
        self.epochs.setToolTip("Passes over the training clips (no minimum step count)")
        self.steps = QSpinBox(minimum=0, maximum=1_000_000, value=0, singleStep=50)
        self.steps.setSpecialValueText("from the preset")
        self.steps.setToolTip("Optimiser steps in all; overrides the preset and the epochs")
        self.max_turns = QSpinBox(minimum=1, maximum=1000, value=120)
        self.max_turns.setToolTip("Context window in turns (seconds): lower it when training runs out of memory")
        self.holdout = QSpinBox(minimum=0, maximum=90, value=10, suffix=" %")
        self.holdout.setToolTip("Share of the videos held out to measure accuracy on (at least one of four or more)")
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda"])
        self.device.setToolTip("auto: a CUDA GPU when there is one (4-bit QLoRA), else the CPU (fp32)")
        self.advanced = QGroupBox("Advanced settings")
        adv = QFormLayout(self.advanced)
        adv.addRow("LoRA rank", self.rank)
        adv.addRow("Learning rate", self.lr)
        adv.addRow("Epochs", self.epochs)
        adv.addRow("Steps", self.steps)
        adv.addRow("Max turns", self.max_turns)
        adv.addRow("Held-out share", self.holdout)
        adv.addRow("Device", self.device)
        self.advanced.hide()

        form = QFormLayout()
        form.addRow("Base model", self.base)
        form.addRow("", self.base_folder_widget)
        form.addRow("Adapter name", self.name)
        form.addRow("Save in", location_row)
        form.addRow("", self.folder_state)
        form.addRow("Preset", preset_row)
        self._form = form

        self.estimate_label = QLabel("Estimate: reading the clips...")
        self.estimate_label.setWordWrap(True)
        self.estimate_note = QLabel()
        self.estimate_note.setWordWrap(True)
        self.estimate_note.setStyleSheet("color: palette(mid); font-size: 11px")

        # -- run controls
        self.start_button = QPushButton("Start training")
        self.start_button.setDefault(True)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Finish the current step, save a checkpoint and stop; Resume continues")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the run in this adapter folder from its last checkpoint")
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.resume_button.clicked.connect(self.resume)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.resume_button)
        buttons.addStretch(1)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("not started")
        self.progress.setTextVisible(True)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.setStyleSheet(ERROR_STYLE)
        self.error.hide()

        # -- evaluation
        self.evaluate_button = QPushButton("Evaluate")
        self.evaluate_button.setToolTip("Run the live engine on the held-out clips with and without the adapter")
        self.evaluate_button.clicked.connect(self.evaluate)
        self.use_button = QPushButton("Use in Live")
        self.use_button.setToolTip("Load this adapter into the live engine")
        self.use_button.clicked.connect(self._use_in_live)
        self.eval_status = QLabel("After training, the base model and the adapter are compared here.")
        self.eval_status.setWordWrap(True)
        self.table = QTableWidget(len(EVAL_ROWS), 2)
        self.table.setHorizontalHeaderLabels(["Base model", "With the adapter"])
        self.table.setVerticalHeaderLabels([label for label, _ in EVAL_ROWS])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        height = self.table.horizontalHeader().sizeHint().height() + sum(
            self.table.verticalHeader().sectionSizeHint(i) for i in range(len(EVAL_ROWS))
        )
        self.table.setFixedHeight(height + 4)
        eval_buttons = QHBoxLayout()
        eval_buttons.addWidget(self.evaluate_button)
        eval_buttons.addWidget(self.use_button)
        eval_buttons.addStretch(1)
        eval_box = QGroupBox("Evaluation on the held-out clips")
        eval_layout = QVBoxLayout(eval_box)
        eval_layout.addLayout(eval_buttons)
        eval_layout.addWidget(self.eval_status)
        eval_layout.addWidget(self.table)

        # -- plots and log
        self.loss_plot = LossPlot()
        self.accuracy_plot = AccuracyPlot()
        self.log_view = QPlainTextEdit(readOnly=True)
        self.log_view.setMaximumBlockCount(500)
        self.log_view.setPlaceholderText("The training log appears here.")
        self.log_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        font = self.log_view.font()
        font.setFamily("monospace")
        font.setStyleHint(font.StyleHint.Monospace)
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.9))
        self.log_view.setFont(font)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 6, 0)
        settings_box = QGroupBox("Train an adapter")
        settings_layout = QVBoxLayout(settings_box)
        settings_layout.addLayout(form)
        settings_layout.addWidget(self.advanced)
        settings_layout.addWidget(self.estimate_label)
        settings_layout.addWidget(self.estimate_note)
        settings_layout.addLayout(buttons)
        settings_layout.addWidget(self.progress)
        settings_layout.addWidget(self.status)
        settings_layout.addWidget(self.error)
        left_layout.addWidget(settings_box)
        left_layout.addWidget(eval_box)
        left_layout.addStretch(1)

        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.loss_plot)
        right.addWidget(self.accuracy_plot)
        right.addWidget(self.log_view)
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 3)
        right.setStretchFactor(2, 2)
        right.setChildrenCollapsible(False)

        scroll = QScrollArea()  # the settings never squash: they scroll on a short window
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(left.sizeHint().width())
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(scroll)
        split.addWidget(right)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        split.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.addWidget(split)

        self.base.currentIndexChanged.connect(self._on_base_changed)
        self.base_folder.textChanged.connect(self._settings_changed)
        self.name.textChanged.connect(self._on_folder_changed)
        self.location.textChanged.connect(self._on_folder_changed)
        self.preset.currentIndexChanged.connect(self._on_preset_changed)
        for spin in (self.rank, self.steps, self.max_turns, self.holdout):
            spin.valueChanged.connect(self._on_advanced_changed)
        self.epochs.valueChanged.connect(self._on_advanced_changed)
        self.lr.textChanged.connect(self._on_advanced_changed)
        self.device.currentIndexChanged.connect(self._on_advanced_changed)

    # ------------------------------------------------------------------------------------------
    # Settings: the form <-> Settings group "training"

    def _restore(self) -> None:
        s, g = self.settings, GROUP
        base = s.value(f"{g}/base", DEMO)
        index = self.base.findData(base)
        if index < 0:
            index = self.base.findData(FOLDER)
            self.base_folder.setText(base)
        self.base.setCurrentIndex(index)
        self.base_folder.setText(s.value(f"{g}/base_folder", self.base_folder.text()))
        self.name.setText(s.value(f"{g}/name", "my-adapter"))
        self.location.setText(s.value(f"{g}/location", ""))
        self.rank.setValue(s.value(f"{g}/rank", 16))
        self.lr.setText(s.value(f"{g}/lr", ""))
        self.epochs.setValue(s.value(f"{g}/epochs", 0.0))
        self.steps.setValue(s.value(f"{g}/steps", 0))
        self.max_turns.setValue(s.value(f"{g}/max_turns", 120))
        self.holdout.setValue(s.value(f"{g}/holdout", 10))
        self.device.setCurrentText(s.value(f"{g}/device", "auto"))
        preset = s.value(f"{g}/preset", "balanced")
        self.preset.setCurrentIndex(max(0, self.preset.findData(preset)))
        if preset != CUSTOM:
            self._apply_preset(preset)
        self.advanced_button.setChecked(s.value(f"{g}/advanced_open", False))
        self._on_base_changed()

    def _save(self) -> None:
        if self._loading:
            return
        s, g = self.settings, GROUP
        s.set_value(f"{g}/base", self.base_source())
        s.set_value(f"{g}/base_folder", self.base_folder.text().strip())
        s.set_value(f"{g}/name", self.name.text().strip())
        s.set_value(f"{g}/location", self.location.text().strip())
        s.set_value(f"{g}/preset", self.preset.currentData())
        s.set_value(f"{g}/rank", self.rank.value())
        s.set_value(f"{g}/lr", self.lr.text().strip())
        s.set_value(f"{g}/epochs", self.epochs.value())
        s.set_value(f"{g}/steps", self.steps.value())
        s.set_value(f"{g}/max_turns", self.max_turns.value())
        s.set_value(f"{g}/holdout", self.holdout.value())
        s.set_value(f"{g}/device", self.device.currentText())
        s.set_value(f"{g}/advanced_open", self.advanced_button.isChecked())

    def _settings_changed(self) -> None:
        self._save()
        if not self._loading:
            self._estimate_timer.start()

    def _on_base_changed(self) -> None:
        is_folder = self.base.currentData() == FOLDER
        self.base_folder_widget.setVisible(is_folder)
        label = self._form.labelForField(self.base_folder_widget)
        if label is not None:
            label.setVisible(is_folder)
        self._settings_changed()

    def _on_folder_changed(self) -> None:
        self._update_folder_state()
        self._update_buttons()
        self._settings_changed()

    def _toggle_advanced(self, shown: bool) -> None:
        self.advanced.setVisible(shown)
        self.advanced_button.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        self._save()

    def _apply_preset(self, key: str) -> None:
        preset = PRESETS[key]
        was = self._loading
        self._loading = True
        try:
            self.rank.setValue(preset.rank)
            self.max_turns.setValue(preset.max_turns)
            self.steps.setValue(0)
            self.epochs.setValue(0.0)
            self.lr.setText("")
        finally:
            self._loading = was

    def _on_preset_changed(self) -> None:
        key = self.preset.currentData()
        if key in PRESETS and not self._loading:
            self._apply_preset(key)
        self._settings_changed()

    def _matching_preset(self) -> str:
        for p in PRESETS.values():
            if (self.rank.value(), self.max_turns.value()) == (p.rank, p.max_turns) and not (
                self.steps.value() or self.epochs.value() or self.lr.text().strip()
            ):
                return p.key
        return CUSTOM

    def _on_advanced_changed(self) -> None:
        if self._loading:
            return
        key = self.preset.currentData()
        if key == CUSTOM or not self._preset_matches(key):
            self._loading = True
            try:
                self.preset.setCurrentIndex(self.preset.findData(self._matching_preset()))
            finally:
                self._loading = False
        self._settings_changed()

    def _preset_matches(self, key: str) -> bool:
        p = PRESETS[key]
        return (self.rank.value(), self.max_turns.value()) == (p.rank, p.max_turns) and not (
            self.steps.value() or self.epochs.value() or self.lr.text().strip()
        )

    def _browse_base(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Base model folder", self.base_folder.text())
        if folder:
            self.base_folder.setText(folder)

    def _browse_location(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Save adapters in", str(self.adapter_root()))
        if folder:
            self.location.setText(folder)

    # ------------------------------------------------------------------------------------------
    # What the form says

    def base_source(self) -> str:
        data = self.base.currentData()
        return self.base_folder.text().strip() if data == FOLDER else str(data)

    def adapter_root(self) -> Path:
        text = self.location.text().strip()
        return Path(text).expanduser() if text else default_adapter_root()

    def adapter_dir(self) -> Path:
        return self.adapter_root() / self.name.text().strip()

    def _name_problem(self) -> str:
        name = self.name.text().strip()
        if not name:
            return "Give the adapter a name."
        if any(c in name for c in '/\\:*?"<>|') or name in (".", ".."):
            return f"'{name}' cannot be a folder name: leave out / \\ : * ? \" < > |"
        if self.base.currentData() == FOLDER and not self.base_folder.text().strip():
            return "Choose the base model's folder."
        return ""

    def _lr_value(self) -> float | None:
        text = self.lr.text().strip().lower()
        if text in ("", "auto"):
            return None
        value = float(text)  # ValueError: shown by the caller
        if not 0 < value < 1:
            raise ValueError(f"the learning rate must be between 0 and 1, got {text}")
        return value

    def config_fields(self, steps_per_epoch: int | None = None) -> dict[str, Any]:
        """The TrainConfig fields the form sets (data and command aside). ``steps_per_epoch`` resolves a
        preset's budget to steps (None: left to the trainer's automatic budget)."""
        key = self.preset.currentData()
        steps: int | None = self.steps.value() or None
        epochs: float | None = self.epochs.value() or None
        if steps is None and epochs is None and key in PRESETS and steps_per_epoch is not None:
            steps = PRESETS[key].steps(steps_per_epoch)
        return {
            "model": self.base_source(),
            "out": str(self.adapter_dir()),
            "rank": self.rank.value(),
            "alpha": 2 * self.rank.value(),
            "lr": self._lr_value(),
            "epochs": epochs,
            "steps": steps,
            "max_turns": self.max_turns.value(),
            "holdout": self.holdout.value() / 100.0,
            "device": self.device.currentText(),
        }

    # ------------------------------------------------------------------------------------------
    # The data and the estimate

    def refresh_data(self, force: bool = False) -> None:
        """Ask the data provider again and re-read the clips for the estimate; ``force``: even when
        the files are the same ones (their annotations changed)."""
        try:
            paths, prefix = self.data_provider()
        except ValueError as e:
            self._scan, self._scan_key = None, None
            self.estimate_label.setText(f"Estimate: {e}")
            self.estimate_note.clear()
            return
        key = (tuple(paths), prefix)
        if not force and (key == self._scan_key or key == self._scan_pending):
            self.update_estimate()
            return
        self._scan_pending = key
        self.estimate_label.setText("Estimate: reading the clips...")
        job = _ScanJob(key, list(paths), prefix)
        job.signals.done.connect(self._on_scan_done)
        job.signals.failed.connect(self._on_scan_failed)
        QThreadPool.globalInstance().start(job)

    def _on_scan_done(self, key: tuple, scan: DataScan) -> None:
        if key != self._scan_pending:
            return
        self._scan_pending = None
        self._scan, self._scan_key = scan, key
        self.update_estimate()

    def _on_scan_failed(self, key: tuple, message: str) -> None:
        if key == self._scan_pending:
            self._scan_pending = None
            self.estimate_label.setText(f"Estimate: {message}")

    def update_estimate(self) -> Estimate | None:
        """Recompute the estimate from the form and the last scan of the clips."""
        if self._scan is None:
            return None
        if not self._scan.clips:
            self.estimate_label.setText("Estimate: no usable clips yet (annotate some clips first).")
            self.estimate_note.setText("\n".join(self._scan.issues[:3]))
            return None
        try:
            fields = self.config_fields(self._steps_per_epoch())
        except ValueError as e:
            self.estimate_label.setText(f"Estimate: {e}")
            return None
        config = TrainConfig(**fields)
        est = estimate(config, self._scan.clips, model=model_size(fields["model"]))
        self._last_estimate = est
        self.estimate_label.setText(
            f"Estimate: {est.summary()}, {len(self._scan.clips)} clips ({est.heldout_clips} held out)"
        )
        self.estimate_note.setText(est.note)
        return est

    def _steps_per_epoch(self) -> int | None:
        if self._scan is None or not self._scan.clips:
            return None
        probe = TrainConfig(max_turns=self.max_turns.value(), holdout=self.holdout.value() / 100.0, steps=1)
        return plan_run(probe, self._scan.clips).steps_per_epoch

    # ------------------------------------------------------------------------------------------
    # Start / Stop / Resume

    @property
    def running(self) -> bool:
        """A training or evaluation process of this panel runs."""
        return bool((self.job and self.job.running) or (self.eval_job and self.eval_job.running))

    @property
    def training(self) -> bool:
        return bool(self.job and self.job.running)

    def start(self) -> bool:
        """Start a new run into the adapter folder. False (with the reason shown) when it cannot."""
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
        if not resume and state["run"]:
            where = f" (last checkpoint at step {state['step']})" if state["checkpoint"] else ""
            return self._refuse(
                f"The folder {out} already holds a training run{where}. Press Resume to continue it, or choose "
                "another adapter name (nothing was overwritten)."
            )
        if resume and not state["checkpoint"]:
            return self._refuse(f"{out} has no checkpoint to continue from. Press Start to begin a new run.")
        key = (tuple(paths), prefix)
        if key != self._scan_key:  # the estimate's scan is stale or missing: the budget needs it
            try:
                self._scan, self._scan_key = scan_data(list(paths), prefix, **TAB_DATA_RULES), key
            except Exception as e:  # noqa: BLE001 - unreadable data is the user's to fix
                return self._refuse(f"Could not read the clips: {e}")
        try:
            fields = self.config_fields(self._steps_per_epoch())
        except ValueError as e:
            return self._refuse(f"Learning rate: {e}")
        config = TrainConfig(
            data=list(paths),
            video_prefix=prefix,
            resume=resume,
            command=f"(trained in Streamo Live's Training tab; preset {self.preset.currentText()})",
            **TAB_DATA_RULES,
            **fields,
        )
        try:
            config.validate()
        except ValueError as e:
            return self._refuse(str(e))
        if resume:
            self._load_history(out, state["step"])
        else:
            self.loss_plot.clear_points()
            self.accuracy_plot.clear_points()
            self._clear_table()
            self.log_view.clear()
        job = TrainingJob(config, self)
        job.started.connect(self._on_started)
        job.progress.connect(self._on_progress)
        job.loss.connect(self.loss_plot.add_point)
        job.evaluated.connect(self._on_evaluated)
        job.log.connect(self._append_log)
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

    def stop(self) -> None:
        """Ask the run to save a checkpoint and stop."""
        if self.job is not None and self.job.running:
            self.job.stop()
            self.stop_button.setEnabled(False)
            self._status("Stopping: finishing this step, then saving a checkpoint...")

    def stop_and_wait(self, timeout: float = 60.0) -> bool:
        """For closing the window: stop training (with a checkpoint) and an evaluation (nothing to
        keep), waiting up to ``timeout`` seconds. True when nothing runs any more."""
        if self.eval_job is not None and self.eval_job.running:
            self.eval_job.kill()
        self.stop()
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
        self.accuracy_plot.set_split(str(event.get("eval_split", "heldout")))
        self.loss_plot.truncate(int(event["start_step"]))
        self.accuracy_plot.truncate(int(event["start_step"]))
        self._status(
            f"Training on {event['device']} ({event['precision']}): {event['train_clips']} clips, "
            f"{event['heldout_clips']} held out."
        )

    def _on_progress(self, step: int, total: int, eta: float) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(step)
        eta_text = f" · ETA {format_duration(eta)}" if eta >= 0 and step < total else ""
        self.progress.setFormat(f"step {step} / {total}{eta_text}")

    def _on_evaluated(self, step: int, event: dict) -> None:
        self.accuracy_plot.set_split(str(event.get("split", "heldout")))
        self.accuracy_plot.add_point(step, event.get("state_accuracy") or {})

    def _on_finished(self, adapter: str) -> None:
        self.progress.setValue(self.progress.maximum())
        self.progress.setFormat(f"done: {self.progress.maximum()} steps")
        self._status(f"Adapter written to {adapter}. Evaluating it on the held-out clips...", ok=True)
        self._evaluate_after = True

    def _on_stopped(self, checkpoint: str) -> None:
        step = self.job.last_step if self.job else 0
        self.progress.setFormat(f"stopped at step {step} / {self.progress.maximum()}")
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

    def _on_training_ended(self, outcome: str) -> None:
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
        out = self.adapter_dir()
        job = EvaluationJob(out, self, max_answer_tokens=self.eval_max_answer_tokens)
        job.progress.connect(self._on_eval_progress)
        job.finished.connect(self._on_eval_finished)
        job.failed.connect(self._on_eval_failed)
        job.ended.connect(self._on_eval_ended)
        self._set_busy(True)
        try:
            job.start()
        except Exception as e:  # noqa: BLE001
            job.deleteLater()
            self._set_busy(self.running)
            self._show_error(f"Could not start the evaluation process: {e}")
            return False
        self.eval_job = job
        self._clear_table()
        self.eval_status.setText("Evaluating: starting the evaluation process...")
        self._update_buttons()
        return True

    def _on_eval_progress(self, done: int, total: int, what: str) -> None:
        self.eval_status.setText(f"Evaluating: {what}")

    def _on_eval_finished(self, result: dict) -> None:
        base, adapted = result["base"], result["adapter"]
        for row, (_, getter) in enumerate(EVAL_ROWS):
            for col, report in enumerate((base, adapted)):
                value = getter(report)
                item = QTableWidgetItem(_fmt(value, row))
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.table.setItem(row, col, item)
        where = (
            f"{len(result['clips'])} held-out clip(s)"
            if result["split"] == "heldout"
            else f"the {len(result['clips'])} training clip(s) (too few clips to hold any out)"
        )
        change = adapted["macro_f1"] - base["macro_f1"]
        self.eval_status.setText(f"Live engine on {where}: macro-F1 {base['macro_f1']:.2f} -> "
                                 f"{adapted['macro_f1']:.2f} ({change:+.2f}).")  # fmt: skip
        self.eval_status.setStyleSheet(OK_STYLE if change >= 0 else "")
        self.last_evaluation = result

    def _on_eval_failed(self, message: str, lines: list) -> None:
        self.eval_status.setText(message)
        self.eval_status.setStyleSheet(ERROR_STYLE)
        for line in lines[-8:]:
            self._append_log(f"  {line}")

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
    # Small helpers

    def _load_history(self, out: Path, last_step: int) -> None:
        """The run's curves so far, from its metrics.jsonl (up to the checkpoint it resumes from)."""
        self.loss_plot.clear_points()
        self.accuracy_plot.clear_points()
        path = out / "metrics.jsonl"
        if not path.is_file():
            return
        points = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            step = int(record.get("step", 0))
            if step > last_step:
                continue
            points.append((step, float(record["loss"])))
            for split in ("heldout", "train"):
                if isinstance(record.get(split), dict):
                    self.accuracy_plot.set_split(split)
                    self.accuracy_plot.add_point(step, record[split].get("state_accuracy") or {})
        self.loss_plot.add_points(points)

    def _update_folder_state(self) -> None:
        if self._name_problem():
            self.folder_state.setText(self._name_problem())
            return
        out = self.adapter_dir()
        state = run_state(out)
        if state["finished"]:
            text = f"{out} holds a finished adapter ({state['step']} steps)."
        elif state["checkpoint"]:
            text = f"{out} holds a stopped run (step {state['step']} of {state['total']}): Resume continues it."
        elif state["run"]:
            text = f"{out} holds a run without a checkpoint: choose another name."
        else:
            text = f"New adapter: {out}"
        self.folder_state.setText(text)

    def _update_buttons(self) -> None:
        training = self.training
        busy = self.running
        state = run_state(self.adapter_dir()) if not self._name_problem() else {"checkpoint": "", "finished": False}
        self.start_button.setEnabled(not busy)
        self.stop_button.setEnabled(training)
        self.resume_button.setEnabled(not busy and bool(state["checkpoint"]))
        self.evaluate_button.setEnabled(not busy and bool(state["finished"]))
        self.use_button.setEnabled(not training and bool(state["finished"]))
        for w in (self.base, self.base_folder, self.name, self.location, self.preset, self.advanced):
            w.setEnabled(not busy)

    def _status(self, text: str, ok: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet(OK_STYLE if ok else "")

    def _show_error(self, text: str, rich: bool = False) -> None:
        self.error.setTextFormat(Qt.TextFormat.RichText if rich else Qt.TextFormat.PlainText)
        self.error.setText(text)
        self.error.show()

    def _clear_error(self) -> None:
        self.error.clear()
        self.error.hide()

    def _append_log(self, line: str) -> None:
        self.log_view.appendPlainText(line)

    def _clear_table(self) -> None:
        self.table.clearContents()
        self.eval_status.setStyleSheet("")


def _state_f1(state: str) -> Callable[[dict], float | None]:
    return lambda report: report["states"][state]["f1"]


EVAL_ROWS: tuple[tuple[str, Callable[[dict], Any]], ...] = (
    (f"{STATE_NAMES[SILENCE]} F1", _state_f1(SILENCE)),
    (f"{STATE_NAMES[STANDBY]} F1", _state_f1(STANDBY)),
    (f"{STATE_NAMES[RESPONSE]} F1", _state_f1(RESPONSE)),
    ("macro-F1", lambda r: r["macro_f1"]),
    ("State accuracy", lambda r: r["state_accuracy"]),
    ("Timing error (s)", lambda r: r["timing_error_s"]),
    ("Answer F1", lambda r: r["answer_f1"]),
)
_TIMING_ROW = 5


def _fmt(value: Any, row: int) -> str:
    if value is None:
        return "n/a"
    if row == _TIMING_ROW:
        return f"{value:.2f} s"
    return f"{value:.3f}"


def _esc(text: str) -> str:
    import html

    return html.escape(str(text))
