"""The Live tab: source picker, transport, task controls, the preview and the transcript."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (
    QBoxLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QPushButton,
    QScrollArea,
    QSplitter,
    QStyle,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

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
COMPACT_BELOW = 1100  # the Live tab's width under which it goes compact (a window beside another on 1920)
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
        self.source_layout = source_layout
        task_box = QGroupBox("Task")
        task_layout = QVBoxLayout(task_box)
        task_layout.addWidget(self.controls)
        task_layout.addWidget(self.voice)
        self.boxes = QBoxLayout(QBoxLayout.Direction.LeftToRight)
        self.boxes.setContentsMargins(0, 0, 0, 0)
        self.boxes.addWidget(source_box, 2)
        self.boxes.addWidget(task_box, 3)
        boxes_widget = QWidget()
        boxes_widget.setLayout(self.boxes)
        # The controls scroll rather than push the window wider or taller than the screen.
        self.controls_area = QScrollArea()
        self.controls_area.setWidgetResizable(True)
        self.controls_area.setFrameShape(QFrame.Shape.NoFrame)
        self.controls_area.setWidget(boxes_widget)
        # Compact: Start, Pause and Stop under the preview, always in reach.
        self.compact_bar = QHBoxLayout()
        self.compact_bar.setContentsMargins(0, 4, 0, 0)
        preview_area = QWidget()
        preview_layout = QVBoxLayout(preview_area)
        preview_layout.setContentsMargins(0, 0, 0, 0)
        preview_layout.addWidget(self.preview, 1)
        preview_layout.addLayout(self.compact_bar)
        self.left = QSplitter(Qt.Orientation.Vertical)
        self.left.setChildrenCollapsible(False)
        self.left.addWidget(preview_area)
        self.left.addWidget(self.controls_area)
        self.left.setStretchFactor(0, 1)
        self.bottom_tabs = QTabWidget()  # compact: the controls and the transcript share the lower half
        self.bottom_tabs.hide()

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.left)
        self.splitter.addWidget(self.transcript)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.splitter)
        self.compact = False
        self._split_set = False  # the splitter's first wide sizes are set once it is shown
        self._fit_controls()

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
        self.preview.set_paused(state == RunState.PAUSED)
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

    # -- layout
    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self.set_compact(event.size().width() < COMPACT_BELOW)
        if not self._split_set and not self.compact and self.isVisible():
            self._split_set = True  # the first wide layout: the controls whole, the transcript the rest
            QTimer.singleShot(0, self._share_width)

    def set_compact(self, compact: bool) -> None:
        """Wide: preview and controls on the left, the transcript on the right. Compact (a narrow window):
        the preview with Start, Pause and Stop under it on top, the controls and the transcript as two
        tabs below, the Source box above the Task box."""
        if compact == self.compact:
            return
        self.compact = compact
        if compact:
            self.compact_bar.addWidget(self.transport)
            self.bottom_tabs.addTab(self.controls_area, "Source and task")
            self.bottom_tabs.addTab(self.transcript, "Transcript")
            self.left.addWidget(self.bottom_tabs)
            self.bottom_tabs.show()
            self.boxes.setDirection(QBoxLayout.Direction.TopToBottom)
            QTimer.singleShot(0, self._share_height)  # once the splitter has its new height
        else:
            self.source_layout.addWidget(self.transport)
            self.left.insertWidget(1, self.controls_area)
            self.splitter.addWidget(self.transcript)
            self.bottom_tabs.hide()
            self.boxes.setDirection(QBoxLayout.Direction.LeftToRight)
            QTimer.singleShot(0, self._share_width)  # once the splitter has its new width
        for moved in (self.transport, self.controls_area, self.transcript):
            moved.show()  # a widget moved to another parent is hidden until shown
        self._fit_controls()

    def _share_height(self) -> None:
        """Compact: the picture first (55% of the height), the tabs below the rest."""
        if self.compact:
            height = self.left.height()
            self.left.setSizes([height * 11 // 20, height - height * 11 // 20])

    def _share_width(self) -> None:
        if self.compact:
            return
        self.boxes.activate()  # its new direction's minimum, not the old one's
        width = self.splitter.width()
        extent = self.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent)
        left = max(width * 3 // 5, self.controls_area.widget().minimumSizeHint().width() + extent + 8)
        self.splitter.setSizes([left, max(0, width - left)])

    def _fit_controls(self) -> None:
        """Wide, the controls show whole (no scroll bar); compact, they scroll in their tab."""
        self.boxes.activate()
        needed = self.controls_area.widget().minimumSizeHint()
        self.controls_area.setMinimumHeight(120 if self.compact else needed.height())
        self.controls_area.setMinimumWidth(0)  # narrower: a horizontal scroll bar, never a wider window

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
