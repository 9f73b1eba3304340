"""The annotator: a frame-accurate player, the per-second turns the converter will make of the
clip's annotations, and the list of its events, instant answers and questions with a form to add
and edit them. Every edit goes through the ``Library`` (undo/redo, saved at once).

Keys (on the player, the timeline and the item list; text fields keep their own keys):
Space play/pause; Left/Right one second; Shift+Left/Right or ``,``/``.`` one frame; Home/End;
J/K/L back, pause, forward (J or L again: faster); ``[`` mark an event's start at the playhead,
``]`` its end (then type the description, Enter adds it); A an instant answer at the playhead;
Q a question at the playhead; Enter or double-click edits the selected item, Delete deletes it;
Escape leaves a text field; Ctrl+Z undo, Ctrl+Shift+Z or Ctrl+Y redo.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QKeyEvent, QMouseEvent, QPainter, QPaintEvent, QPen, QPolygonF
from PySide6.QtWidgets import (
    QAbstractItemView,
    QAbstractSpinBox,
    QButtonGroup,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QStyle,
    QToolButton,
    QToolTip,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.session import format_clock
from app.training.library import (
    QUESTION,
    RESPONSE,
    TASK_TYPES,
    Clip,
    Edit,
    FrameReader,
    ItemRef,
    Library,
    LibraryError,
    Problem,
    Question,
    Turn,
    describe_item,
)
from model.protocol import RESPONSE as RESPONSE_STATE
from model.protocol import STANDBY
from ui.preview import frame_to_qimage
from ui.timeline import STATE_COLORS, STATE_NAMES, timeline_legend

PROBLEM_COLOR = QColor(200, 52, 64)
PROBLEM_BACKGROUND = QColor(200, 52, 64, 38)
KIND_COLORS = {"event": STATE_COLORS[STANDBY], "answer": STATE_COLORS[RESPONSE_STATE], "question": QColor(90, 150, 240)}
KEYS_HINT = "Space play · ←/→ 1 s · Shift+←/→ or , . 1 frame · J K L · [ ] mark an event · A answer · Q question"


def plain_tip(text: str) -> str:
    """A tooltip that shows ``text`` literally: Qt renders a tooltip that looks like markup as HTML."""
    return "<qt>" + html.escape(text).replace("\n", "<br>") + "</qt>"


def _set_spin(spin: QSpinBox, value: int) -> None:
    spin.blockSignals(True)
    spin.setValue(int(value))
    spin.blockSignals(False)


def _clock_range(start: int, end: int) -> str:
    return f"{format_clock(start)} – {format_clock(end)}"


# ---------------------------------------------------------------------------------------------
# The frame


class FrameView(QWidget):
    """The current frame, scaled to fit; it takes the keyboard focus for the player's keys."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(320, 180)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.placeholder = "Choose a clip in the library."
        self._array: np.ndarray | None = None  # keeps the QImage's memory alive
        self._image = None

    def set_image(self, image: np.ndarray | None) -> None:
        self._array = None if image is None else np.ascontiguousarray(image)
        self._image = None if self._array is None else frame_to_qimage(self._array)
        self.update()

    def has_image(self) -> bool:
        return self._image is not None

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(16, 16, 20))
        if self._image is not None:
            size = self._image.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
            x, y = (self.width() - size.width()) / 2, (self.height() - size.height()) / 2
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            p.drawImage(QRectF(x, y, size.width(), size.height()), self._image)
        else:
            p.setPen(QColor(170, 170, 180))
            p.drawText(
                self.rect().adjusted(12, 12, -12, -12),
                Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                self.placeholder,
            )
        if self.hasFocus():
            p.setPen(QPen(QColor(90, 150, 240), 2))
            p.drawRect(self.rect().adjusted(1, 1, -1, -1))
        p.end()

    def focusInEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        super().focusInEvent(event)
        self.update()

    def focusOutEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        super().focusOutEvent(event)
        self.update()


# ---------------------------------------------------------------------------------------------
# The timeline of turns


class TurnStrip(QWidget):
    """The converter's turns as coloured cells over the clip's frames, the playhead, the marks
    being set and the selected item's seconds. Clicking or dragging seeks."""

    seek_requested = Signal(int)  # video frame

    BAR_TOP, BAR_HEIGHT, TICKS = 8, 22, 14

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.turns: list[Turn] = []
        self.frames = 0  # frames of the video
        self.block = 1  # frames per turn
        self.playhead = 0  # frame
        self.marks: tuple[int | None, int | None] = (None, None)  # pending event start / end seconds
        self.selection: tuple[int, int] | None = None  # seconds [start, end) of the selected item
        self.selection_bad = False
        self.placeholder = ""  # said where there are no turns
        self.setMinimumHeight(self.BAR_TOP + self.BAR_HEIGHT + self.TICKS + 2)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.setMouseTracking(True)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(600, self.BAR_TOP + self.BAR_HEIGHT + self.TICKS + 2)

    def set_turns(self, turns: list[Turn], frames: int, block: int) -> None:
        self.turns, self.frames, self.block = list(turns), max(0, frames), max(1, block)
        self.update()

    def set_playhead(self, frame: int) -> None:
        self.playhead = frame
        self.update()

    def set_marks(self, start: int | None, end: int | None) -> None:
        self.marks = (start, end)
        self.update()

    def set_selection(self, span: tuple[int, int] | None, bad: bool = False) -> None:
        self.selection, self.selection_bad = span, bad
        self.update()

    # -- geometry: x is proportional to the video frame
    def _span_frames(self) -> int:
        return max(self.frames, len(self.turns) * self.block, 1)

    def x_of_frame(self, frame: float) -> float:
        return frame / self._span_frames() * self.width()

    def x_of_second(self, second: float) -> float:
        return self.x_of_frame(second * self.block)

    def frame_at(self, x: float) -> int:
        frame = int(x / max(1, self.width()) * self._span_frames())
        return max(0, min(frame, max(0, self.frames - 1)))

    def turn_at(self, x: float) -> int | None:
        i = int(x / max(1, self.width()) * self._span_frames()) // self.block
        return i if 0 <= i < len(self.turns) else None

    # -- painting
    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        top, h = self.BAR_TOP, self.BAR_HEIGHT
        p.fillRect(QRectF(0, top, self.width(), h), QColor(36, 38, 44))
        if not self.turns:
            p.setPen(QColor(170, 170, 180))
            p.drawText(
                QRectF(6, top, self.width() - 12, h),
                Qt.AlignmentFlag.AlignVCenter,
                self.placeholder,
            )
            p.end()
            return
        cell = self.x_of_second(1)
        gap = 1.0 if cell >= 5 else 0.0
        for t in self.turns:
            x0, x1 = self.x_of_second(t.index), self.x_of_second(t.index + 1)
            p.fillRect(QRectF(x0, top, max(1.0, x1 - x0 - gap), h), STATE_COLORS.get(t.state, QColor("gray")))
        # Frames past the last whole turn: the converter gives them no turn.
        tail = self.x_of_second(len(self.turns))
        if tail < self.width() - 0.5:
            p.fillRect(
                QRectF(tail, top, self.width() - tail, h), QBrush(QColor(90, 90, 100), Qt.BrushStyle.BDiagPattern)
            )
        # Questions: a blue notch on top of their turn.
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(KIND_COLORS["question"])
        for t in self.turns:
            if t.question:
                cx = self.x_of_second(t.index + 0.5)
                p.drawPolygon(QPolygonF([QPointF(cx - 5, top - 7), QPointF(cx + 5, top - 7), QPointF(cx, top - 1)]))
        # The selected item's seconds and the marks being set.
        if self.selection is not None:
            s, e = self.selection
            color = PROBLEM_COLOR if self.selection_bad else QColor(255, 255, 255)
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.setPen(QPen(color, 2))
            x0, x1 = self.x_of_second(s), self.x_of_second(max(e, s + 1))
            p.drawRect(QRectF(x0 + 1, top + 1, max(2.0, x1 - x0 - 2), h - 2))
        start, end = self.marks
        p.setPen(QPen(QColor(120, 220, 255), 2))
        if start is not None:
            x = self.x_of_second(start)
            p.drawPolyline(
                QPolygonF(
                    [
                        QPointF(x + 5, top - 2),
                        QPointF(x + 1, top - 2),
                        QPointF(x + 1, top + h + 1),
                        QPointF(x + 5, top + h + 1),
                    ]
                )
            )
        if end is not None:
            x = self.x_of_second(end)
            p.drawPolyline(
                QPolygonF(
                    [
                        QPointF(x - 5, top - 2),
                        QPointF(x - 1, top - 2),
                        QPointF(x - 1, top + h + 1),
                        QPointF(x - 5, top + h + 1),
                    ]
                )
            )
        # Second ticks with labels far enough apart to read.
        p.setPen(QColor(110, 110, 120))
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.8))
        p.setFont(font)
        every = next((k for k in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600) if k * cell >= 36), 1200)
        for s in range(0, len(self.turns) + 1, every):
            x = self.x_of_second(s)
            p.drawLine(QPointF(x, top + h), QPointF(x, top + h + 3))
            label = format_clock(s)
            w = p.fontMetrics().horizontalAdvance(label)
            if x + w / 2 <= self.width() and x - w / 2 >= 0 or s == 0:
                p.drawText(QPointF(max(0.0, x - w / 2), top + h + self.TICKS), label)
        # The playhead.
        x = self.x_of_frame(self.playhead + 0.5) if self.block > 1 else self.x_of_frame(self.playhead)
        p.setPen(QPen(QColor(255, 255, 255), 2))
        p.drawLine(QPointF(x, top - 3), QPointF(x, top + h + 3))
        p.setPen(QPen(QColor(0, 0, 0, 160), 1))
        p.drawLine(QPointF(x + 1.5, top), QPointF(x + 1.5, top + h))
        p.end()

    # -- mouse
    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if event.button() == Qt.MouseButton.LeftButton and self.frames:
            self.seek_requested.emit(self.frame_at(event.position().x()))

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if event.buttons() & Qt.MouseButton.LeftButton and self.frames:
            self.seek_requested.emit(self.frame_at(event.position().x()))

    def event(self, e: QEvent) -> bool:
        if e.type() == QEvent.Type.ToolTip:
            i = self.turn_at(e.pos().x())  # type: ignore[attr-defined]
            if i is None:
                QToolTip.hideText()
            else:
                QToolTip.showText(e.globalPos(), plain_tip(self.describe(i)), self)  # type: ignore[attr-defined]
            return True
        return super().event(e)

    def describe(self, i: int) -> str:
        t = self.turns[i]
        lines = [f"<{i}s-{i + 1}s>  {STATE_NAMES.get(t.state, t.state)}"]
        if t.text:
            lines.append(f"Answer: {t.text}")
        if t.question:
            lines.append(f"Question: {t.question}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The item form


class ItemForm(QFrame):
    """Add or edit one event, instant answer or question."""

    submitted = Signal()
    cancelled = Signal()

    KINDS = (("event", "Event"), ("answer", "Answer"), ("question", "Question"))

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.editing: ItemRef | None = None
        self.title = QLabel("New event")
        self.title.setStyleSheet("font-weight: 600")
        self.kind_group = QButtonGroup(self)
        kinds = QHBoxLayout()
        kinds.setSpacing(4)
        self.kind_buttons: dict[str, QToolButton] = {}
        for key, label in self.KINDS:
            b = QToolButton(text=label, checkable=True)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            b.setMinimumWidth(72)
            self.kind_group.addButton(b)
            self.kind_buttons[key] = b
            kinds.addWidget(b)
            b.toggled.connect(self._kind_toggled)
        kinds.addStretch(1)
        self.start = self._spin(
            "Standby starts at this second: the first second the event is going on ([ at the playhead)"
        )
        self.end = self._spin("The event is over at this second: the answer comes here (] at the playhead)")
        self.at = self._spin("The second it is answered or asked at")
        self.start_label, self.end_label, self.at_label = QLabel("Start"), QLabel("End"), QLabel("At")
        times = QHBoxLayout()
        for label, spin in ((self.start_label, self.start), (self.end_label, self.end), (self.at_label, self.at)):
            times.addWidget(label)
            times.addWidget(spin)
        times.addStretch(1)
        self.text = QLineEdit()
        self.text.setClearButtonEnabled(True)
        self.text.returnPressed.connect(self.submitted)
        self.add = QPushButton("Add")
        self.add.setDefault(False)
        self.add.clicked.connect(self.submitted)
        self.cancel = QPushButton("Cancel")
        self.cancel.clicked.connect(self.cancelled)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.cancel)
        buttons.addWidget(self.add)
        self.hint = QLabel()
        self.hint.setTextFormat(Qt.TextFormat.PlainText)
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: palette(mid)")
        box = QVBoxLayout(self)
        box.setContentsMargins(10, 8, 10, 8)
        box.setSpacing(6)
        box.addWidget(self.title)
        box.addLayout(kinds)
        box.addLayout(times)
        box.addWidget(self.text)
        box.addLayout(buttons)
        box.addWidget(self.hint)
        box.addStretch(1)
        self.set_kind("event")

    def _spin(self, tip: str) -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(0, 24 * 3600)
        spin.setSuffix(" s")
        spin.setToolTip(tip)
        spin.setButtonSymbols(QAbstractSpinBox.ButtonSymbols.UpDownArrows)
        spin.setMinimumWidth(78)
        return spin

    @property
    def kind(self) -> str:
        return next((k for k, b in self.kind_buttons.items() if b.isChecked()), "event")

    def set_kind(self, kind: str) -> None:
        self.kind_buttons[kind].setChecked(True)
        self._kind_toggled()

    def _kind_toggled(self, *_: Any) -> None:
        event = self.kind == "event"
        for w in (self.start_label, self.start, self.end_label, self.end):
            w.setVisible(event)
        self.at_label.setVisible(not event)
        self.at.setVisible(not event)
        placeholders = {
            "event": "What happened (the answer given when it is over)",
            "answer": "The answer, given at this second",
            "question": "The question, asked at this second",
        }
        self.text.setPlaceholderText(placeholders[self.kind] + " — Enter to save")
        self._update_title()

    def _update_title(self) -> None:
        name = dict(self.KINDS)[self.kind].lower()
        self.title.setText(f"Edit the {name}" if self.editing else f"New {name}")
        self.add.setText("Save" if self.editing else "Add")
        for b in self.kind_buttons.values():
            b.setEnabled(self.editing is None)

    def start_edit(self, ref: ItemRef, kind: str, text: str, start: int, end: int, at: int) -> None:
        self.editing = ref
        self.set_kind(kind)
        self.start.setValue(start)
        self.end.setValue(end)
        self.at.setValue(at)
        self.text.setText(text)
        self._update_title()

    def reset(self) -> None:
        self.editing = None
        self.text.clear()
        self._update_title()


# ---------------------------------------------------------------------------------------------
# The annotator


class Annotator(QWidget):
    """The player, the turns and the items of one clip of a ``Library``."""

    edited = Signal(list)  # ids of the clips an edit (or an undo/redo) changed; the library has saved it
    position_changed = Signal(int)  # video frame

    SPEEDS = (1, 2, 4, 8)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.library: Library | None = None
        self.clip: Clip | None = None
        self.reader: FrameReader | None = None
        self.position = 0  # video frame at the playhead
        self.frames = 0  # frames of the video (the converter's count when known)
        self.fps = 30.0
        self.direction = 0  # -1 playing backwards, 1 forwards, 0 paused
        self.speed = 1
        self._play_origin = (0.0, 0)  # (monotonic time, frame) the current play started from
        self._marked_start: int | None = None  # seconds marked with [ / ] for the form
        self._marked_end: int | None = None
        self._problems: list[Problem] = []
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._tick)
        self._scrub = QTimer(self)  # decode the newest slider position at most once per event-loop pass
        self._scrub.setSingleShot(True)
        self._scrub.timeout.connect(lambda: self.seek(self.slider.value()))

        # Header: clip, task type, undo/redo.
        self.title = QLabel("No clip")
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        self.title.setStyleSheet("font-weight: 600; font-size: 11pt")
        self.info = QLabel()
        self.info.setTextFormat(Qt.TextFormat.PlainText)
        self.info.setStyleSheet("color: palette(mid)")
        self.task = QComboBox()
        self.task.setEditable(True)
        self.task.addItems(TASK_TYPES)
        self.task.setMinimumWidth(150)
        self.task.setToolTip("The sample's task_type (free text; kept in the annotation file)")
        self.task.activated.connect(lambda *_: self._set_task_type())
        self.task.lineEdit().editingFinished.connect(self._set_task_type)
        self.undo_button = QToolButton(text="↶ Undo")
        self.redo_button = QToolButton(text="↷ Redo")
        for b, slot in ((self.undo_button, self.undo), (self.redo_button, self.redo)):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.setAutoRaise(True)
            b.clicked.connect(slot)
        header = QHBoxLayout()
        header.addWidget(self.title)
        header.addWidget(self.info)
        header.addStretch(1)
        header.addWidget(QLabel("Task type"))
        header.addWidget(self.task)
        header.addSpacing(8)
        header.addWidget(self.undo_button)
        header.addWidget(self.redo_button)

        # Player.
        self.view = FrameView()
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.slider.setToolTip("Drag to scrub")
        self.slider.valueChanged.connect(self._slider_moved)
        self.play_button = self._tool("", "Play / pause (Space; J back, K pause, L forward)", self.toggle_play)
        transport = QHBoxLayout()
        transport.setSpacing(2)
        to_start = self._tool("", "To the start (Home)", lambda: (self.pause(), self.seek(0)))
        to_start.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaSkipBackward))
        transport.addWidget(to_start)
        transport.addWidget(self._tool("−1 s", "One second back (Left)", lambda: self.step_seconds(-1)))
        transport.addWidget(self._tool("−1 f", "One frame back (Shift+Left or ,)", lambda: self.step_frames(-1)))
        transport.addWidget(self.play_button)
        transport.addWidget(self._tool("+1 f", "One frame forward (Shift+Right or .)", lambda: self.step_frames(1)))
        transport.addWidget(self._tool("+1 s", "One second forward (Right)", lambda: self.step_seconds(1)))
        transport.addSpacing(10)
        self.time_label = QLabel("0:00.0 / 0:00.0")
        self.time_label.setTextFormat(Qt.TextFormat.PlainText)
        self.time_label.setMinimumWidth(230)
        transport.addWidget(self.time_label)
        transport.addStretch(1)
        transport.addWidget(self._tool("[ Start", "Mark an event's start at the playhead ([)", self.mark_start))
        transport.addWidget(self._tool("End ]", "Mark the event's end at the playhead (])", self.mark_end))
        transport.addWidget(self._tool("+ Answer", "An instant answer at the playhead (A)", self.answer_here))
        transport.addWidget(self._tool("+ Question", "A question asked at the playhead (Q)", self.question_here))

        self.strip = TurnStrip()
        self.strip.seek_requested.connect(self.seek)
        self.strip.setToolTip("The turns the converter makes of these annotations (what training sees)")
        legend = QHBoxLayout()
        legend.addWidget(timeline_legend(), 0)
        legend.addStretch(1)
        keys = QLabel(KEYS_HINT)
        keys.setTextFormat(Qt.TextFormat.PlainText)
        keys.setStyleSheet("color: palette(mid)")
        legend.addWidget(keys)

        # Items and the form.
        self.items = QTreeWidget()
        self.items.setColumnCount(3)
        self.items.setHeaderLabels(["Kind", "When", "Text"])
        self.items.setRootIsDecorated(False)
        self.items.setUniformRowHeights(True)
        self.items.setAlternatingRowColors(True)
        self.items.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header_view = self.items.header()
        header_view.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header_view.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header_view.setStretchLastSection(True)
        self.items.currentItemChanged.connect(self._current_item_changed)
        self.items.itemDoubleClicked.connect(lambda *_: self.edit_selected())
        self.edit_button = QPushButton("Edit")
        self.edit_button.clicked.connect(self.edit_selected)
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(self.delete_selected)
        for b in (self.edit_button, self.delete_button):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.problems_label = QLabel()
        self.problems_label.setTextFormat(Qt.TextFormat.PlainText)
        self.problems_label.setWordWrap(True)
        self.problems_label.setStyleSheet(f"color: {PROBLEM_COLOR.name()}")
        self.problems_label.hide()
        self.counts = QLabel()
        self.counts.setTextFormat(Qt.TextFormat.PlainText)
        list_buttons = QHBoxLayout()
        list_buttons.addWidget(self.counts, 1)
        list_buttons.addWidget(self.edit_button)
        list_buttons.addWidget(self.delete_button)
        left = QVBoxLayout()
        left.setSpacing(4)
        left.addWidget(self.items, 1)
        left.addWidget(self.problems_label)
        left.addLayout(list_buttons)
        self.form = ItemForm()
        self.form.setMinimumWidth(300)
        self.form.submitted.connect(self.submit)
        self.form.cancelled.connect(self.cancel_form)
        self.form.start.valueChanged.connect(self._form_times_changed)
        for b in self.form.kind_buttons.values():
            b.clicked.connect(self._kind_clicked)
        self.form.end.valueChanged.connect(self._form_times_changed)
        bottom = QHBoxLayout()
        bottom.addLayout(left, 3)
        bottom.addWidget(self.form, 2)

        box = QVBoxLayout(self)
        box.setContentsMargins(6, 6, 6, 6)
        box.setSpacing(6)
        box.addLayout(header)
        box.addWidget(self.view, 5)
        box.addWidget(self.slider)
        box.addLayout(transport)
        box.addWidget(self.strip)
        box.addLayout(legend)
        bottom_widget = QWidget()
        bottom_widget.setLayout(bottom)
        bottom.setContentsMargins(0, 0, 0, 0)
        box.addWidget(bottom_widget, 4)

        # The player's keys work on these; text fields keep their own keys (see _text_key).
        for w in (self, self.view, self.strip, self.items):
            w.installEventFilter(self)
        for w in (self.form.text, self.form.start, self.form.end, self.form.at, self.task.lineEdit()):
            w.installEventFilter(self)
        self.set_clip(None)

    def _tool(self, text: str, tip: str, slot: Any) -> QToolButton:
        b = QToolButton(text=text)
        b.setToolTip(tip)
        b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        b.clicked.connect(slot)
        return b

    # -- the clip
    def set_library(self, library: Library | None) -> None:
        self.library = library
        self.set_clip(None)

    def set_clip(self, clip_id: str | None) -> None:
        """Show the clip ``clip_id`` of the library (None: nothing)."""
        self.pause()
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        self.clip = self.library.find(clip_id) if (self.library is not None and clip_id) else None
        self.position = 0
        self._marked_start = self._marked_end = None
        self.form.reset()
        self.form.set_kind("event")
        self.form.hint.setText("")
        for spin in (self.form.start, self.form.end, self.form.at):
            _set_spin(spin, 0)
        self.view.set_image(None)
        clip = self.clip
        if clip is None or self.library is None:
            self.frames, self.fps = 0, 30.0
            self.view.placeholder = "Choose a clip in the library, or import videos."
        else:
            self.frames = clip.meta.total_frames if clip.meta else 0
            self.fps = clip.meta.fps if clip.meta else 30.0
            try:
                self.reader = FrameReader(self.library.resolve(clip))
                if not self.frames:
                    self.frames = self.reader.frame_count
            except LibraryError as e:
                self.view.placeholder = f"{e} Its annotations can still be edited."
            if clip.meta is None:
                self.view.placeholder = (
                    f"Cannot read the video ({clip.unreadable}): {self.library.resolve(clip)}. "
                    "Its annotations can still be edited."
                )
        enabled = clip is not None
        for w in (self.task, self.form, self.items, self.slider, self.edit_button, self.delete_button):
            w.setEnabled(enabled)
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, self.frames - 1))
        self.slider.setValue(0)
        self.slider.blockSignals(False)
        self.refresh()
        self.seek(0)

    def refresh(self) -> None:
        """Read the clip again from the library (after an edit, an undo) and redraw what shows it."""
        lib = self.library
        if self.clip is not None and lib is not None:
            current = lib.find(self.clip.id)
            if current is None:
                self.set_clip(None)
                return
            self.clip = current
        clip = self.clip
        if clip is None or lib is None:
            self.title.setText("No clip")
            self.info.setText("")
            self.strip.placeholder = ""
            self.strip.set_turns([], 0, 1)
            self.task.blockSignals(True)
            self.task.setCurrentText("")
            self.task.blockSignals(False)
            self.items.clear()
            self.counts.setText("")
            self.problems_label.hide()
            self._problems = []
        else:
            self.title.setText(clip.name)
            if clip.meta:
                self.info.setText(
                    f"{format_clock(clip.duration or 0)} · {clip.meta.fps:g} fps · {clip.meta.total_frames} frames · {clip.n_turns} turns"
                )
            else:
                self.info.setText("video not readable")
            self.task.blockSignals(True)
            self.task.setCurrentText(clip.task_type)
            self.task.blockSignals(False)
            self.strip.placeholder = "No turns: the video cannot be read" if clip.meta is None else ""
            self.strip.set_turns(lib.turns(clip), self.frames, clip.block)
            self._problems = lib.problems(clip)
            self._fill_items()
            self._show_problems()
        self._update_undo_buttons()
        self._update_marks()

    def _update_undo_buttons(self) -> None:
        lib = self.library
        self.undo_button.setEnabled(bool(lib and lib.can_undo))
        self.redo_button.setEnabled(bool(lib and lib.can_redo))
        self.undo_button.setToolTip(f"Undo {lib.undo_label} (Ctrl+Z)" if lib and lib.can_undo else "Nothing to undo")
        self.redo_button.setToolTip(
            f"Redo {lib.redo_label} (Ctrl+Shift+Z)" if lib and lib.can_redo else "Nothing to redo"
        )

    # -- the item list
    def problems_of(self, ref: ItemRef) -> list[str]:
        return [p.message for p in self._problems if p.ref == ref]

    def _fill_items(self) -> None:
        clip = self.clip
        selected = self.selected_ref()
        self.items.blockSignals(True)
        self.items.clear()
        rows: list[tuple[tuple, ItemRef, str, str, str, str]] = []
        assert clip is not None
        for i, q in enumerate(clip.questions):
            s = q.second
            when = format_clock(s) if s is not None else "?"
            rows.append(
                (
                    (s if s is not None else -1, 0, i),
                    ItemRef(QUESTION, i),
                    "question",
                    when,
                    q.content,
                    f"time {q.time!r}",
                )
            )
        for i, r in enumerate(clip.responses):
            span = r.span
            if span is not None:
                when, key = _clock_range(*span), span[0]
                raw = f"st_time {r.st_time!r}, end_time {r.end_time!r}"
            else:
                s = r.second
                when, key = (format_clock(s) if s is not None else "?"), (s if s is not None else -1)
                raw = f"time {r.time!r}"
            rows.append(((key, 1, i), ItemRef(RESPONSE, i), r.kind, when, r.content, raw))
        rows.sort(key=lambda row: row[0])
        n_bad = 0
        for _, ref, kind, when, text, raw in rows:
            problems = self.problems_of(ref)
            item = QTreeWidgetItem([("⚠ " if problems else "") + kind.capitalize(), when, text or "(no text)"])
            item.setData(0, Qt.ItemDataRole.UserRole, ref)
            swatch = KIND_COLORS[kind]
            item.setForeground(0, QBrush(swatch.darker(130) if not problems else PROBLEM_COLOR))
            tip = f"{kind.capitalize()} {when}: {text}\nIn the file: {raw}"
            if problems:
                n_bad += 1
                tip += "\n\nProblems:\n" + "\n".join(f"• {m}" for m in problems)
                for col in range(3):
                    item.setForeground(col, QBrush(PROBLEM_COLOR))
                    item.setBackground(col, QBrush(PROBLEM_BACKGROUND))
            elif not text:
                item.setForeground(2, QBrush(QColor(140, 140, 150)))
            for col in range(3):
                item.setToolTip(col, plain_tip(tip))
            self.items.addTopLevelItem(item)
            if ref == selected:
                self.items.setCurrentItem(item)
        self.items.blockSignals(False)
        n_events, n_answers = len(clip.events), len(clip.answers)
        parts = [
            f"{n_events} event{'s' if n_events != 1 else ''}",
            f"{n_answers} answer{'s' if n_answers != 1 else ''}",
        ]
        parts.append(f"{len(clip.questions)} question{'s' if len(clip.questions) != 1 else ''}")
        if n_bad:
            parts.append(f"{n_bad} with problems")
        self.counts.setText(" · ".join(parts))
        self._item_selected()

    def _show_problems(self) -> None:
        if not self._problems:
            self.problems_label.hide()
            return
        clip = self.clip
        assert clip is not None
        lines = []
        for p in self._problems:
            if p.ref is None:
                lines.append(f"• {p.message}")
            else:
                lines.append(f"• {describe_item(clip.item(p.ref)).capitalize()}: {p.message}")
        shown = lines[:4] + ([f"… and {len(lines) - 4} more (hover the red items)"] if len(lines) > 4 else [])
        self.problems_label.setText("\n".join(shown))
        self.problems_label.show()

    def selected_ref(self) -> ItemRef | None:
        item = self.items.currentItem()
        return None if item is None else item.data(0, Qt.ItemDataRole.UserRole)

    def select_ref(self, ref: ItemRef | None) -> None:
        """Select the item's row without moving the playhead."""
        self.items.blockSignals(True)
        self.items.setCurrentItem(self.row_of(ref) if ref is not None else None)  # type: ignore[arg-type]
        self.items.blockSignals(False)
        self._item_selected()

    def _current_item_changed(self, *_: Any) -> None:
        """The user chose a row: show its seconds and move the playhead to them."""
        self._item_selected()
        ref, clip = self.selected_ref(), self.clip
        if ref is not None and clip is not None:
            item = clip.item(ref)
            span = item.span if not isinstance(item, Question) else None
            second = span[0] if span else item.second
            if second is not None:
                self.pause()
                self.seek(second * clip.block)

    def row_of(self, ref: ItemRef) -> QTreeWidgetItem | None:
        for k in range(self.items.topLevelItemCount()):
            item = self.items.topLevelItem(k)
            if item.data(0, Qt.ItemDataRole.UserRole) == ref:
                return item
        return None

    def _item_selected(self, *_: Any) -> None:
        ref = self.selected_ref()
        has = ref is not None and self.clip is not None
        self.edit_button.setEnabled(has)
        self.delete_button.setEnabled(has)
        if not has:
            self.strip.set_selection(None)
            return
        item = self.clip.item(ref)  # type: ignore[union-attr, arg-type]
        span = item.span if not isinstance(item, Question) else None
        second = item.second
        if span is None and second is not None:
            span = (second, second + 1)
        self.strip.set_selection(span, bool(self.problems_of(ref)))  # type: ignore[arg-type]

    # -- playback
    @property
    def seconds(self) -> float:
        return self.position / self.fps if self.fps else 0.0

    @property
    def second(self) -> int:
        """The turn (stream second) at the playhead."""
        return self.clip.turn_at_frame(self.position) if self.clip else 0

    def seek(self, frame: int) -> None:
        frame = max(0, min(int(frame), max(0, self.frames - 1)))
        self.position = frame
        if self.reader is not None:
            image = self.reader.read(frame)
            if image is not None:
                self.view.set_image(image)
        self.slider.blockSignals(True)
        self.slider.setValue(frame)
        self.slider.blockSignals(False)
        self.strip.set_playhead(frame)
        self._update_time_label()
        self.position_changed.emit(frame)

    def _update_time_label(self) -> None:
        if not self.clip:
            self.time_label.setText("")
            return
        total = self.frames / self.fps if self.fps else 0
        second = self.second
        turn = f"<{second}s-{second + 1}s>" if second < max(1, self.clip.n_turns) else "past the last turn"
        self.time_label.setText(f"{self.seconds:0.1f} s / {total:0.1f} s · frame {self.position} · turn {turn}")

    def _slider_moved(self, value: int) -> None:
        if not self._scrub.isActive():
            self._scrub.start(0)

    def step_frames(self, n: int) -> None:
        self.pause()
        self.seek(self.position + n)

    def step_seconds(self, n: int) -> None:
        """Move by whole turns (the clip's frames per turn), so the playhead stays on its frame of the second."""
        self.pause()
        block = self.clip.block if self.clip else max(1, round(self.fps))
        self.seek(self.position + n * block)

    def play(self, direction: int = 1) -> None:
        if self.reader is None or not self.frames:
            return
        if self.direction == direction:
            self.speed = self.SPEEDS[min(self.SPEEDS.index(self.speed) + 1, len(self.SPEEDS) - 1)]
        else:
            self.speed = 1
            if direction > 0 and self.position >= self.frames - 1:
                self.seek(0)
        self.direction = direction
        self._play_origin = (time.monotonic(), self.position)
        self._timer.start(max(15, min(100, int(1000 / (self.fps * self.speed)))))
        self._update_play_button()

    def pause(self) -> None:
        self._timer.stop()
        self.direction = 0
        self.speed = 1
        self._update_play_button()

    def toggle_play(self) -> None:
        if self.direction:
            self.pause()
        else:
            self.play(1)

    def _update_play_button(self) -> None:
        icons = {0: QStyle.StandardPixmap.SP_MediaPlay, 1: QStyle.StandardPixmap.SP_MediaPause}
        icon = icons.get(self.direction, QStyle.StandardPixmap.SP_MediaSeekBackward)
        self.play_button.setIcon(self.style().standardIcon(icon))
        self.play_button.setText(f"{self.speed}×" if self.direction and self.speed > 1 else "")
        self.play_button.setToolButtonStyle(
            Qt.ToolButtonStyle.ToolButtonTextBesideIcon
            if self.play_button.text()
            else Qt.ToolButtonStyle.ToolButtonIconOnly
        )

    def _tick(self) -> None:
        started, origin = self._play_origin
        target = origin + round(self.direction * self.speed * (time.monotonic() - started) * self.fps)
        end = self.frames - 1
        if target == self.position:
            return
        self.seek(target)
        if target <= 0 or target >= end:
            self.pause()

    # -- marking and the form
    def _update_marks(self) -> None:
        self.strip.set_marks(self._marked_start, self._marked_end)

    def mark_start(self) -> None:
        if not self.clip:
            return
        s = min(self.second, max(0, self.clip.n_turns - 1)) if self.clip.n_turns else self.second
        if self.form.editing is None or self.form.kind != "event":
            if self.form.editing is not None:
                self.cancel_form()
            self.form.set_kind("event")
        self._marked_start = s
        _set_spin(self.form.start, s)
        if self._marked_end is not None and self._marked_end <= s:
            self._marked_end = None
        self._update_marks()
        self.form.hint.setText(f"Start marked at {format_clock(s)}. Play or step to where it is over and press ].")

    def mark_end(self) -> None:
        if not self.clip:
            return
        if self.form.kind != "event":
            if self.form.editing is not None:
                self.cancel_form()
            self.form.set_kind("event")
        end = self.second + 1  # the event is going on in this second; the answer comes in the next one
        if self._marked_start is None and self.form.editing is None:
            self._marked_start = max(0, end - 1)
            _set_spin(self.form.start, self._marked_start)
            note = "No start was marked: it starts at the playhead's second (press [ to set it). "
        else:
            note = ""
        self._marked_end = end
        _set_spin(self.form.end, end)
        self._update_marks()
        self.form.hint.setText(note + "Describe what happened and press Enter.")
        self.form.text.setFocus(Qt.FocusReason.ShortcutFocusReason)

    def answer_here(self) -> None:
        self._start_at("answer")

    def question_here(self) -> None:
        self._start_at("question")

    def _start_at(self, kind: str) -> None:
        if not self.clip:
            return
        if self.form.editing is not None:
            self.cancel_form()
        self.form.set_kind(kind)
        _set_spin(self.form.at, self.second)
        self._marked_start = self._marked_end = None
        self._update_marks()
        what = "answer" if kind == "answer" else "question"
        self.form.hint.setText(f"Type the {what} for {format_clock(self.second)} and press Enter.")
        self.form.text.setFocus(Qt.FocusReason.ShortcutFocusReason)

    def _kind_clicked(self, *_: Any) -> None:
        """A kind chosen by hand starts at the playhead: a one-second event, or an answer or question there."""
        second = self.second
        if self.form.kind == "event":
            self._marked_start, self._marked_end = second, second + 1
            _set_spin(self.form.start, second)
            _set_spin(self.form.end, second + 1)
        else:
            self._marked_start = self._marked_end = None
            _set_spin(self.form.at, second)
        self._update_marks()
        self.form.text.setFocus(Qt.FocusReason.OtherFocusReason)

    def _form_times_changed(self, *_: Any) -> None:
        """The user typed an event's seconds: show them as the marks."""
        if self.form.kind == "event":
            self._marked_start, self._marked_end = self.form.start.value(), self.form.end.value()
            self._update_marks()

    def submit(self) -> None:
        """Add the form's item (or save the one being edited) through the library."""
        lib, clip = self.library, self.clip
        if lib is None or clip is None:
            return
        text, kind, ref = self.form.text.text(), self.form.kind, self.form.editing
        f = self.form
        if ref is not None:
            if kind == "event":
                lib.update_item(clip.id, ref, text, start=f.start.value(), end=f.end.value())
            else:
                lib.update_item(clip.id, ref, text, second=f.at.value())
            new_ref = ref
        elif kind == "event":
            new_ref = lib.add_event(clip.id, text, f.start.value(), f.end.value())
        elif kind == "answer":
            new_ref = lib.add_answer(clip.id, text, f.at.value())
        else:
            new_ref = lib.add_question(clip.id, text, f.at.value())
        self._marked_start = self._marked_end = None
        self.form.reset()
        self.form.hint.setText(
            "Saved." if lib.save_error is None else "Kept in memory: the save failed (see the message)."
        )
        self.refresh()
        self.select_ref(new_ref)
        self.view.setFocus(Qt.FocusReason.OtherFocusReason)
        self.edited.emit([clip.id])

    def cancel_form(self) -> None:
        self._marked_start = self._marked_end = None
        self.form.reset()
        self.form.hint.setText("")
        self._update_marks()
        self.view.setFocus(Qt.FocusReason.OtherFocusReason)

    def edit_selected(self) -> None:
        ref, clip = self.selected_ref(), self.clip
        if ref is None or clip is None:
            return
        item = clip.item(ref)
        if isinstance(item, Question):
            kind, start, end, at = "question", 0, 0, item.second or 0
        elif item.is_event:
            (start, end), at, kind = item.span, 0, "event"  # type: ignore[misc]
        else:
            kind, start, end, at = "answer", 0, 0, item.second or 0
        for spin in (self.form.start, self.form.end, self.form.at):
            spin.blockSignals(True)
        self.form.start_edit(ref, kind, item.content, start, end, at)
        for spin in (self.form.start, self.form.end, self.form.at):
            spin.blockSignals(False)
        if kind == "event":
            self._marked_start, self._marked_end = start, end
        self._update_marks()
        self.form.hint.setText(
            "Change it and press Enter to save ([ and ] move an event's ends to the playhead); Escape cancels."
        )
        self.seek((start if kind == "event" else at) * clip.block)
        self.form.text.setFocus(Qt.FocusReason.OtherFocusReason)

    def delete_selected(self) -> None:
        ref, clip, lib = self.selected_ref(), self.clip, self.library
        if ref is None or clip is None or lib is None:
            return
        if self.form.editing == ref or self.form.editing is not None:
            self.cancel_form()
        lib.remove_item(clip.id, ref)
        self.refresh()
        self.edited.emit([clip.id])

    def _set_task_type(self) -> None:
        lib, clip = self.library, self.clip
        if lib is None or clip is None or self.task.currentText().strip() == clip.task_type:
            return
        lib.set_task_type(clip.id, self.task.currentText())
        self.refresh()
        self.edited.emit([clip.id])

    def undo(self) -> None:
        self._history(self.library.undo if self.library is not None else None)

    def redo(self) -> None:
        self._history(self.library.redo if self.library is not None else None)

    def _history(self, step: Any) -> None:
        edit: Edit | None = step() if step is not None else None
        if edit is None:
            return
        self.cancel_form()
        self.refresh()
        self.form.hint.setText(f"Undone: {edit.label}." if step == self.library.undo else f"Redone: {edit.label}.")  # type: ignore[union-attr]
        self.edited.emit(edit.clip_ids)

    # -- keys
    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        kind = event.type()
        if kind not in (QEvent.Type.KeyPress, QEvent.Type.ShortcutOverride):
            return False
        key_event: QKeyEvent = event  # type: ignore[assignment]
        if obj in (self.form.text, self.form.start, self.form.end, self.form.at, self.task.lineEdit()):
            return self._text_key(obj, key_event)
        action = self._action_for(key_event, obj is self.items)
        if action is None:
            return False
        if kind == QEvent.Type.ShortcutOverride:
            event.accept()  # ours, not a window shortcut's: the key press comes to us next
            return True
        action()
        return True

    def _text_key(self, obj: QObject, event: QKeyEvent) -> bool:
        key = event.key()
        if key == Qt.Key.Key_Escape:
            if event.type() == QEvent.Type.ShortcutOverride:
                event.accept()
                return True
            if obj is self.task.lineEdit():
                self.task.setCurrentText(self.clip.task_type if self.clip else "")
                self.view.setFocus(Qt.FocusReason.OtherFocusReason)
            else:
                self.cancel_form()
            return True
        if (
            key in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
            and event.type() == QEvent.Type.KeyPress
            and obj in (self.form.start, self.form.end, self.form.at)
        ):
            self.submit()
            return True
        return False

    def _action_for(self, event: QKeyEvent, in_list: bool) -> Any:
        key, mods = event.key(), event.modifiers()
        ctrl = bool(mods & Qt.KeyboardModifier.ControlModifier)
        shift = bool(mods & Qt.KeyboardModifier.ShiftModifier)
        K = Qt.Key  # noqa: N806
        if ctrl:
            if key == K.Key_Z:
                return self.redo if shift else self.undo
            if key == K.Key_Y:
                return self.redo
            return None
        if mods & (Qt.KeyboardModifier.AltModifier | Qt.KeyboardModifier.MetaModifier):
            return None
        if in_list:
            if key in (K.Key_Delete, K.Key_Backspace):
                return self.delete_selected
            if key in (K.Key_Return, K.Key_Enter):
                return self.edit_selected
            if key in (K.Key_Up, K.Key_Down, K.Key_PageUp, K.Key_PageDown, K.Key_Home, K.Key_End):
                return None  # the list's own navigation
        table = {
            K.Key_Space: self.toggle_play,
            K.Key_Left: (lambda: self.step_frames(-1)) if shift else (lambda: self.step_seconds(-1)),
            K.Key_Right: (lambda: self.step_frames(1)) if shift else (lambda: self.step_seconds(1)),
            K.Key_Comma: lambda: self.step_frames(-1),
            K.Key_Period: lambda: self.step_frames(1),
            K.Key_Home: lambda: (self.pause(), self.seek(0)),
            K.Key_End: lambda: (self.pause(), self.seek(self.frames - 1)),
            K.Key_J: lambda: self.play(-1),
            K.Key_K: self.pause,
            K.Key_L: lambda: self.play(1),
            K.Key_BracketLeft: self.mark_start,
            K.Key_BracketRight: self.mark_end,
            K.Key_A: self.answer_here,
            K.Key_Q: self.question_here,
        }
        return table.get(key)

    # -- for the page
    def clip_path(self) -> Path | None:
        return self.library.resolve(self.clip) if self.library and self.clip else None

    def shutdown(self) -> None:
        """Stop playing and release the video file."""
        self.pause()
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        self.shutdown()
        super().closeEvent(event)


__all__ = ["Annotator", "FrameView", "ItemForm", "TurnStrip", "plain_tip"]
