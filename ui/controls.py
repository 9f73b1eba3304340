"""Live controls: start / pause / stop, the task preset, a typed question, talkativeness, model
fps, how long subtitles stay up and whether the frames the model saw are kept."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QStyle,
    QWidget,
)

from app.live import RunState
from app.settings import LiveOptions, talkativeness_to_threshold
from model.presets import TASK_PRESETS

# Keyboard shortcuts of the transport (also on the Run menu); shown in the buttons' tooltips.
START_KEY, PAUSE_KEY, STOP_KEY, ASK_KEY = "F5", "F6", "Shift+F5", "Ctrl+L"


class TransportBar(QWidget):
    """Start / Pause / Stop."""

    start_clicked = Signal()
    pause_toggled = Signal(bool)  # True: paused
    stop_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        style = self.style()
        self.start_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_MediaPlay), "Start")
        self.pause_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_MediaPause), "Pause")
        self.pause_button.setCheckable(True)
        self.stop_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_MediaStop), "Stop")
        self.start_button.setToolTip(f"Start watching the source ({START_KEY})")
        self.pause_button.setToolTip(f"Pause the model and the video; press again to resume ({PAUSE_KEY})")
        self.stop_button.setToolTip(f"Stop; the session is saved ({STOP_KEY})")
        self.start_button.clicked.connect(self.start_clicked)
        self.pause_button.toggled.connect(self.pause_toggled)
        self.stop_button.clicked.connect(self.stop_clicked)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        for b in (self.start_button, self.pause_button, self.stop_button):
            row.addWidget(b)
        self.set_state(RunState.IDLE)

    def set_state(self, state: RunState) -> None:
        running = state in (RunState.RUNNING, RunState.PAUSED)
        self.start_button.setEnabled(state == RunState.IDLE)
        self.pause_button.setEnabled(running)
        self.stop_button.setEnabled(running)
        self.pause_button.blockSignals(True)
        self.pause_button.setChecked(state == RunState.PAUSED)
        self.pause_button.setText("Resume" if state == RunState.PAUSED else "Pause")
        icon = QStyle.StandardPixmap.SP_MediaPlay if state == RunState.PAUSED else QStyle.StandardPixmap.SP_MediaPause
        self.pause_button.setIcon(self.style().standardIcon(icon))
        self.pause_button.blockSignals(False)


class TaskControls(QWidget):
    """Everything that shapes what the model is asked and how readily it answers."""

    options_changed = Signal()  # any of the choices changed
    question_asked = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.task = QComboBox()
        for preset in TASK_PRESETS.values():
            self.task.addItem(preset.label, preset.key)
        self.target = QLineEdit(placeholderText="what to watch for, e.g. the kettle boils")
        self.question = QLineEdit(placeholderText=f"Type a question and press Enter ({ASK_KEY} to get here)")
        self.question.setToolTip("Your question enters the stream at the next second the model sees")
        self.ask_button = QPushButton("Ask")
        self.talk = QSlider(Qt.Orientation.Horizontal)
        self.talk.setRange(0, 100)
        self.talk.setToolTip(
            "How readily the model answers. Each second it weighs three choices: stay silent, stand by (something "
            "is happening, wait), or respond. To the right it answers even when it is not sure."
        )
        self.auto_talk = QCheckBox("model decides")
        self.auto_talk.setToolTip(
            "Answer when responding is the model's most likely choice, as it was trained. Untick to set how "
            "sure it must be with the slider."
        )
        self.talk_label = QLabel()
        self.fps = QComboBox()
        self.fps.addItem("1 frame/s", 1.0)
        self.fps.addItem("2 frames/s", 2.0)
        self.fps.setToolTip("Model steps per second (changes apply at the next Start)")
        self.hold = QDoubleSpinBox(suffix=" s", decimals=1, minimum=1.0, maximum=60.0, singleStep=0.5)
        self.hold.setToolTip("A subtitle fades this long after its last word")
        self.keep_frames = QCheckBox("Keep the frames the model saw")
        self.keep_frames.setToolTip(
            "Save every frame the model is given, as a picture named by its second, beside the session "
            "(File > Open session shows them; deleting the session deletes them). Applies at the next Start."
        )

        ask_row = QHBoxLayout()
        ask_row.addWidget(self.question, 1)
        ask_row.addWidget(self.ask_button)
        talk_row = QHBoxLayout()
        talk_row.addWidget(self.auto_talk)
        talk_row.addWidget(self.talk, 1)
        talk_row.addWidget(self.talk_label)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Task", self.task)
        form.addRow("Watch for", self.target)
        form.addRow("Question", ask_row)
        form.addRow("Talkativeness", talk_row)
        form.addRow("Model rate", self.fps)
        form.addRow("Subtitles fade after", self.hold)
        form.addRow("Review", self.keep_frames)
        self._form = form

        self.question.returnPressed.connect(self._ask)
        self.ask_button.clicked.connect(self._ask)
        self.task.currentIndexChanged.connect(self._on_task_changed)
        self.target.editingFinished.connect(self.options_changed)
        self.talk.valueChanged.connect(self._on_talk_changed)
        self.auto_talk.toggled.connect(self._on_talk_changed)
        self.fps.currentIndexChanged.connect(self.options_changed)
        self.hold.valueChanged.connect(self.options_changed)
        self.keep_frames.toggled.connect(self.options_changed)
        self.set_options(LiveOptions())

    def options(self) -> LiveOptions:
        """The shown choices on top of the last set_options (which keeps the fields not shown)."""
        return replace(
            self._base,
            task=self.task.currentData(),
            task_target=self.target.text().strip(),
            fps=float(self.fps.currentData()),
            model_decides=self.auto_talk.isChecked(),
            talkativeness=self.talk.value(),
            subtitle_seconds=float(self.hold.value()),
            keep_frames=self.keep_frames.isChecked(),
        )

    def set_options(self, o: LiveOptions) -> None:
        self._base = o
        widgets = (self.task, self.target, self.talk, self.auto_talk, self.fps, self.hold, self.keep_frames)
        for w in widgets:
            w.blockSignals(True)
        i = self.task.findData(o.task)
        self.task.setCurrentIndex(max(0, i))
        self.target.setText(o.task_target)
        self.talk.setValue(o.talkativeness)
        self.auto_talk.setChecked(o.model_decides)
        self.fps.setCurrentIndex(max(0, self.fps.findData(float(o.fps))))
        self.hold.setValue(o.subtitle_seconds)
        self.keep_frames.setChecked(o.keep_frames)
        for w in widgets:
            w.blockSignals(False)
        self._update_task_row()
        self._update_talk_label()

    def problem(self) -> str | None:
        """Why the current choices cannot start, or None."""
        preset = TASK_PRESETS.get(self.task.currentData())
        if preset is not None and preset.needs_target and not self.target.text().strip():
            return f"'{preset.label}' needs something to watch for: fill in 'Watch for'."
        return None

    def set_running(self, running: bool) -> None:
        self.fps.setEnabled(not running)  # the capture samples at this rate; it is fixed per run
        self.keep_frames.setEnabled(not running)  # the saver is set up when a run starts

    def _ask(self) -> None:
        text = self.question.text().strip()
        if text:
            self.question.clear()
            self.question_asked.emit(text)

    def _on_task_changed(self) -> None:
        self._update_task_row()
        self.options_changed.emit()

    def _on_talk_changed(self) -> None:
        self._update_talk_label()
        self.options_changed.emit()

    def _update_task_row(self) -> None:
        preset = TASK_PRESETS.get(self.task.currentData())
        self._form.setRowVisible(self.target, bool(preset and preset.needs_target))

    def _update_talk_label(self) -> None:
        decides = self.auto_talk.isChecked()
        self.talk.setEnabled(not decides)
        threshold = talkativeness_to_threshold(self.talk.value(), decides)
        self.talk_label.setText("as trained" if threshold is None else f"when {round(threshold * 100)}% sure")
