"""The train panel's settings form: the base model, the adapter's name and folder (with the next free
name offered when the folder holds a run), the preset and its advanced settings (early stop among
them), and the "use unannotated clips" tick. Every value persists under the settings group
"training"; ``config_fields`` turns the form into TrainConfig fields.

Presets (app/training/presets.py) set the advanced values; changing one shows the preset as "Custom",
and choosing a preset again restores its values.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.settings import Settings
from app.training.presets import CUSTOM, HOLDOUT_PERCENT, MIN_HELDOUT, PRESETS
from app.training.preview import UNANNOTATED_TICK
from app.training.runs import next_free_name, run_state

GROUP = "training"
DEMO, FOLDER = "demo", "<folder>"
DEFAULT_NAME = "my-adapter"
HOLDOUT_RULE = 2  # settings written before it held out 10 % (the tab's rule is now 20 %, at least 2)


def default_adapter_root() -> Path:
    from model.adapters import adapters_root

    return adapters_root()


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


class TrainForm(QWidget):
    changed = Signal()  # a setting changed (saved already): the estimate follows
    folder_changed = Signal()  # the adapter's name or folder changed
    data_rules_changed = Signal()  # the unannotated tick changed: the clips must be read again

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self._loading = True
        self._build()
        self._restore()
        self._loading = False

    # ------------------------------------------------------------------------------------------
    def _build(self) -> None:
        from model.catalog import KNOWN_MODELS

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
        self.next_name_button = QPushButton()
        self.next_name_button.setToolTip("Train a new adapter under the next free name; this run stays as it is")
        self.next_name_button.clicked.connect(self.use_next_name)
        self.next_name_button.hide()
        folder_row = QVBoxLayout()
        folder_row.setContentsMargins(0, 0, 0, 0)
        folder_row.addWidget(self.folder_state)
        folder_row.addWidget(self.next_name_button, 0, Qt.AlignmentFlag.AlignLeft)

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
        self.holdout = QSpinBox(minimum=0, maximum=90, value=HOLDOUT_PERCENT, suffix=" %")
        self.holdout.setToolTip(
            f"Share of the videos held out to score the adapter on, and at least {MIN_HELDOUT} of them where "
            "that leaves three to train on (Preview data... lets you choose them)"
        )
        self.early_stop = QSpinBox(minimum=0, maximum=100, value=0, suffix=" evaluations")
        self.early_stop.setSpecialValueText("off")
        self.early_stop.setToolTip(
            "Stop when the held-out loss has not gone lower for this many evaluations in a row (about ten a "
            "run); the adapter kept is the step with the lowest held-out loss either way"
        )
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
        adv.addRow("Early stop", self.early_stop)
        adv.addRow("Device", self.device)
        self.advanced.hide()

        self.use_unannotated = QCheckBox(UNANNOTATED_TICK)
        self.use_unannotated.setToolTip(
            "Clips with no question and no answer train 'say nothing on this footage'. Left out unless ticked: "
            "a copy of an annotated clip, trained so, teaches the model to stay silent on it."
        )

        form = QFormLayout()
        form.addRow("Base model", self.base)
        form.addRow("", self.base_folder_widget)
        form.addRow("Adapter name", self.name)
        form.addRow("Save in", location_row)
        form.addRow("", folder_row)
        form.addRow("Preset", preset_row)
        self._form = form
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addWidget(self.advanced)
        layout.addWidget(self.use_unannotated)

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
        self.early_stop.valueChanged.connect(self._settings_changed)
        self.use_unannotated.toggled.connect(self._on_rules_changed)

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
        self.location.setText(s.value(f"{g}/location", ""))
        self.name.setText(s.value(f"{g}/name", "") or next_free_name(self.adapter_root(), DEFAULT_NAME))
        self.rank.setValue(s.value(f"{g}/rank", 16))
        self.lr.setText(s.value(f"{g}/lr", ""))
        self.epochs.setValue(s.value(f"{g}/epochs", 0.0))
        self.steps.setValue(s.value(f"{g}/steps", 0))
        self.max_turns.setValue(s.value(f"{g}/max_turns", 120))
        holdout = s.value(f"{g}/holdout", HOLDOUT_PERCENT)
        if s.value(f"{g}/holdout_rule", 0) < HOLDOUT_RULE and holdout == 10:
            holdout = HOLDOUT_PERCENT  # the old default, never chosen by the user: the new rule
        self.holdout.setValue(holdout)
        self.early_stop.setValue(s.value(f"{g}/early_stop", 0))
        self.device.setCurrentText(s.value(f"{g}/device", "auto"))
        self.use_unannotated.setChecked(s.value(f"{g}/use_unannotated", False))
        preset = s.value(f"{g}/preset", "balanced")
        self.preset.setCurrentIndex(max(0, self.preset.findData(preset)))
        if preset != CUSTOM:
            self._apply_preset(preset)
        self.advanced_button.setChecked(s.value(f"{g}/advanced_open", False))
        self._on_base_changed()

    def save(self) -> None:
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
        s.set_value(f"{g}/holdout_rule", HOLDOUT_RULE)
        s.set_value(f"{g}/early_stop", self.early_stop.value())
        s.set_value(f"{g}/device", self.device.currentText())
        s.set_value(f"{g}/use_unannotated", self.use_unannotated.isChecked())
        s.set_value(f"{g}/advanced_open", self.advanced_button.isChecked())

    # -- the held-out choice and the preview's "don't show again" (kept here with the rest)
    def heldout_choice(self, data_key: Sequence[str]) -> list[str]:
        """The videos the user chose to hold out for this data ([]: automatic, or chosen for other data)."""
        try:
            saved = json.loads(self.settings.value(f"{GROUP}/heldout", "") or "{}")
        except ValueError:
            return []
        if not isinstance(saved, dict) or saved.get("data") != list(data_key):
            return []
        return [str(v) for v in saved.get("videos") or []]

    def set_heldout_choice(self, data_key: Sequence[str], videos: Sequence[str]) -> None:
        self.settings.set_value(f"{GROUP}/heldout", json.dumps({"data": list(data_key), "videos": list(videos)}))

    @property
    def preview_before_start(self) -> bool:
        return self.settings.value(f"{GROUP}/preview_before_start", True)

    def set_preview_before_start(self, on: bool) -> None:
        self.settings.set_value(f"{GROUP}/preview_before_start", bool(on))

    # ------------------------------------------------------------------------------------------
    def _settings_changed(self) -> None:
        self.save()
        if not self._loading:
            self.changed.emit()

    def _on_rules_changed(self) -> None:
        self.save()
        if not self._loading:
            self.data_rules_changed.emit()

    def _on_base_changed(self) -> None:
        is_folder = self.base.currentData() == FOLDER
        self.base_folder_widget.setVisible(is_folder)
        label = self._form.labelForField(self.base_folder_widget)
        if label is not None:
            label.setVisible(is_folder)
        self._settings_changed()

    def _on_folder_changed(self) -> None:
        self._settings_changed()
        if not self._loading:
            self.folder_changed.emit()

    def _toggle_advanced(self, shown: bool) -> None:
        self.advanced.setVisible(shown)
        self.advanced_button.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        self.save()

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

    def _preset_matches(self, key: str) -> bool:
        p = PRESETS[key]
        return (self.rank.value(), self.max_turns.value()) == (p.rank, p.max_turns) and not (
            self.steps.value() or self.epochs.value() or self.lr.text().strip()
        )

    def _on_advanced_changed(self) -> None:
        if self._loading:
            return
        key = self.preset.currentData()
        if key == CUSTOM or not self._preset_matches(key):
            match = next((p.key for p in PRESETS.values() if self._preset_matches(p.key)), CUSTOM)
            self._loading = True
            try:
                self.preset.setCurrentIndex(self.preset.findData(match))
            finally:
                self._loading = False
        self._settings_changed()

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

    def name_problem(self) -> str:
        name = self.name.text().strip()
        if not name:
            return "Give the adapter a name."
        if any(c in name for c in '/\\:*?"<>|') or name in (".", ".."):
            return f"'{name}' cannot be a folder name: leave out / \\ : * ? \" < > |"
        if self.base.currentData() == FOLDER and not self.base_folder.text().strip():
            return "Choose the base model's folder."
        return ""

    def next_name(self) -> str:
        """The next free adapter name after the one typed (itself when its folder is free)."""
        return next_free_name(self.adapter_root(), self.name.text().strip() or DEFAULT_NAME)

    def use_next_name(self) -> None:
        self.name.setText(self.next_name())

    def show_folder_state(self) -> dict[str, Any]:
        """Say what the adapter folder holds (and offer the next free name when it holds a run)."""
        problem = self.name_problem()
        if problem:
            self.folder_state.setText(problem)
            self.next_name_button.hide()
            return {"run": False, "finished": False, "checkpoint": "", "step": 0, "total": 0, "model": ""}
        out = self.adapter_dir()
        state = run_state(out)
        if state["finished"]:
            text = f"{out} holds a finished adapter ({state['step']} steps): evaluate it, or use it in Live."
        elif state["checkpoint"]:
            text = f"{out} holds a stopped run (step {state['step']} of {state['total']}): Resume continues it."
        else:
            text = f"New adapter: {out}"
        self.folder_state.setText(text)
        if state["run"]:
            self.next_name_button.setText(f"New adapter: \u201c{self.next_name()}\u201d")
        self.next_name_button.setVisible(bool(state["run"]))
        return state

    def lr_value(self) -> float | None:
        text = self.lr.text().strip().lower()
        if text in ("", "auto"):
            return None
        value = float(text)  # ValueError: shown by the caller
        if not 0 < value < 1:
            raise ValueError(f"the learning rate must be between 0 and 1, got {text}")
        return value

    def config_fields(self, steps_per_epoch: int | None = None, heldout: Sequence[str] = ()) -> dict[str, Any]:
        """The TrainConfig fields the form sets (data, data rules and command aside). ``steps_per_epoch``
        resolves a preset's budget to steps (None: left to the trainer's automatic budget); ``heldout``:
        the videos the user chose to hold out ([]: automatic)."""
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
            "lr": self.lr_value(),
            "epochs": epochs,
            "steps": steps,
            "max_turns": self.max_turns.value(),
            "holdout": self.holdout.value() / 100.0,
            "heldout": list(heldout),
            "min_heldout": MIN_HELDOUT,
            "early_stop": self.early_stop.value(),
            "device": self.device.currentText(),
        }

    def set_enabled(self, enabled: bool) -> None:
        for w in (self.base, self.base_folder, self.name, self.location, self.preset, self.advanced,
                  self.next_name_button, self.use_unannotated):  # fmt: skip
            w.setEnabled(enabled)
