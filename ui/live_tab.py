"""The Live tab: source picker, transport, task controls, the preview and the transcript."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QGroupBox, QHBoxLayout, QPushButton, QSplitter, QVBoxLayout, QWidget

from app.live import RunState
from app.live.qt import LiveController
from app.settings import LiveOptions, SourceOptions
from ui.controls import TaskControls, TransportBar
from ui.preview import PreviewWidget
from ui.source_picker import SourcePicker
from ui.subtitles import SubtitleFeed
from ui.transcript import TranscriptPanel
from ui.voice_panel import VoicePanel

SAMPLE_CLIP = Path(__file__).resolve().parents[1] / "assets" / "sample.mp4"  # shipped (build.spec) beside ui/
PREVIEW_INTERVAL_MS = 33  # ~30 fps: the preview follows the capture, not the model


class LiveTab(QWidget):
    message = Signal(str, str, str)  # (level, text, cause) for the window's notices
    message_cleared = Signal(str)  # the cause of a notice went away
    sample_requested = Signal()  # "Try the sample clip": the window picks it, a model if none, and starts

    def __init__(self, controller: LiveController, feed: SubtitleFeed, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.feed = feed
        self.preview = PreviewWidget(feed)
        self.picker = SourcePicker()
        self.transport = TransportBar()
        self.controls = TaskControls()
        self.voice = VoicePanel()
        self.transcript = TranscriptPanel()

        source_box = QGroupBox("Source")
        source_layout = QVBoxLayout(source_box)
        source_layout.addWidget(self.picker)
        self.try_sample = QPushButton("Try the sample clip")
        self.try_sample.setToolTip(
            "Narrate the sample video (a red ball, a blue square and a green triangle) with the loaded model, "
            "or with the demo shapes model when none is loaded"
        )
        self.try_sample.clicked.connect(lambda _checked=False: self.sample_requested.emit())
        source_layout.addWidget(self.try_sample)
        source_layout.addStretch(1)
        source_layout.addWidget(self.transport)
        task_box = QGroupBox("Task")
        task_layout = QVBoxLayout(task_box)
        task_layout.addWidget(self.controls)
        task_layout.addWidget(self.voice)
        boxes = QHBoxLayout()
        boxes.addWidget(source_box, 2)
        boxes.addWidget(task_box, 3)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.preview, 1)
        left_layout.addLayout(boxes)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.transcript)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.splitter)

        self.outline = None  # ui.region_picker.RegionOutline while a screen region is captured
        self._preview_timer = QTimer(self)
        self._preview_timer.setInterval(PREVIEW_INTERVAL_MS)
        self._preview_timer.timeout.connect(self.refresh_preview)

        self.transport.start_clicked.connect(self.start)
        self.transport.pause_toggled.connect(controller.pause)
        self.transport.stop_clicked.connect(controller.stop)
        self.controls.question_asked.connect(self.on_question_asked)
        self.controls.options_changed.connect(self.on_options_changed)
        self.picker.changed.connect(self.on_options_changed)
        self.picker.changed.connect(self._offer_sample)
        self.controls.target.textChanged.connect(lambda _text: self._clear_fixed())
        self.preview.file_dropped.connect(self.on_file_dropped)
        self.picker.problem.connect(lambda text: self.message.emit("warning", text, "source"))
        controller.state_changed.connect(self.on_state_changed)
        controller.session_changed.connect(self.transcript.set_session)
        controller.entries_added.connect(self.transcript.on_entries_added)
        controller.step_finished.connect(self.transcript.on_step_finished)
        controller.token_streamed.connect(feed.on_token_streamed)
        controller.step_finished.connect(feed.on_step_finished)
        self.on_options_changed()
        self._offer_sample()

    # -- options
    def source_options(self) -> SourceOptions:
        return self.picker.options()

    def live_options(self) -> LiveOptions:
        return self.controls.options()

    def set_options(self, source: SourceOptions, live: LiveOptions) -> None:
        self.picker.set_options(source)
        self.controls.set_options(live)
        self.on_options_changed()

    # -- actions
    def start(self) -> bool:
        problem = self.picker.problem_text() or self.controls.problem()
        if problem:
            self.message.emit("warning", problem, "start")
            return False
        self.message_cleared.emit("start")
        self.feed.clear()
        self.preview.clear_frame()
        return self.controller.start(self.source_options(), self.live_options())

    def on_question_asked(self, text: str) -> None:
        self.controller.ask(text)
        if self.controller.state == RunState.IDLE:
            self.message.emit("info", f"Your question will enter the stream when you press Start: {text}", "question")

    def on_options_changed(self) -> None:
        live = self.live_options()
        self.feed.set_hold_seconds(live.subtitle_seconds)
        self.transcript.hold_seconds = live.subtitle_seconds
        if self.controls.problem() is None:
            self.controller.update_options(live)
        self._clear_fixed()

    def _offer_sample(self) -> None:
        """The sample clip, one click away while no source is chosen (a first run) and nothing runs."""
        idle = self.controller.state == RunState.IDLE
        self.try_sample.setVisible(SAMPLE_CLIP.is_file() and idle and not self.source_options().spec)

    def _clear_fixed(self) -> None:
        """What Start complained of is fixed (a field filled, a region finished): the notice goes."""
        if self.controls.problem() is None and self.picker.problem_text() is None:
            self.message_cleared.emit("start")

    def on_file_dropped(self, path: str) -> None:
        self.picker.set_file(path)
        self.message.emit("info", f"Source set to {path}. Press Start.", "source")

    def on_state_changed(self, state: RunState) -> None:
        self._outline_region(state)
        self._offer_sample()
        if state == RunState.RUNNING:
            self.message_cleared.emit("question")  # the waiting question has entered the stream
        self.transport.set_state(state)
        self.controls.set_running(state != RunState.IDLE)
        self.picker.setEnabled(state == RunState.IDLE)
        if state == RunState.RUNNING:
            self._preview_timer.start()
        elif state == RunState.IDLE:
            self._preview_timer.stop()
            self.refresh_preview()  # the last frame stays up

    def _outline_region(self, state: RunState) -> None:
        """Ring the shared screen area while a run captures it (a whole monitor needs no ring)."""
        from ui.region_picker import RegionOutline

        spec = None
        if state != RunState.IDLE and self.picker.problem_text() is None:
            try:
                spec = self.source_options().source_spec()
            except Exception:  # noqa: BLE001 - no valid source: nothing to outline
                spec = None
        monitor = self.picker.monitors.get(spec.index) if spec is not None and spec.kind == "screen" else None
        if monitor is None or spec.region is None:
            if self.outline is not None:
                self.outline.hide()
            return
        if self.outline is None:
            self.outline = RegionOutline(self)
        self.outline.place(monitor, spec.region)
        self.outline.show()

    def refresh_preview(self) -> None:
        frame = self.controller.latest_frame()
        if frame is not None:
            self.preview.set_frame(frame)
