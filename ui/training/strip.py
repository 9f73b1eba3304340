"""The annotator's strip: the converter's turns as coloured cells, the playhead, the marks being
set, the selected item's seconds and every event's span, zoomable around the playhead and
scrolled sideways, with a row of thumbnails under it (``ui.training.thumbnails``).

Mouse: click or drag seeks; dragging an event's start or end edge moves it (one edit, on
release); Ctrl+wheel zooms, the wheel scrolls a zoomed strip. Keys (the annotator's): + and -
zoom, 0 fits the whole clip.
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QEvent, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QMouseEvent, QPainter, QPaintEvent, QPen, QPolygonF, QWheelEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QScrollBar,
    QSizePolicy,
    QToolButton,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from app.session import format_clock
from app.training.library import ItemRef, Turn
from model.protocol import RESPONSE as RESPONSE_STATE
from model.protocol import STANDBY
from ui.timeline import STATE_COLORS, STATE_NAMES

PROBLEM_COLOR = QColor(200, 52, 64)
PROBLEM_BACKGROUND = QColor(200, 52, 64, 38)
KIND_COLORS = {"event": STATE_COLORS[STANDBY], "answer": STATE_COLORS[RESPONSE_STATE], "question": QColor(90, 150, 240)}
INSTRUCTION_COLOR = QColor(240, 180, 60)  # turn 0's notch: the instruction the model gets from 0:00
MARK_COLOR = QColor(120, 220, 255)
UNKNOWN = QColor("gray")


def plain_tip(text: str) -> str:
    """A tooltip that shows ``text`` literally: Qt renders a tooltip that looks like markup as HTML."""
    import html

    return "<qt>" + html.escape(text).replace("\n", "<br>") + "</qt>"


class TurnStrip(QWidget):
    """The turns over the clip's frames. ``zoom`` 1 fits the whole clip; more magnifies it around
    the playhead and ``offset`` (pixels) scrolls it."""

    seek_requested = Signal(int)  # video frame
    scrub_requested = Signal(int)  # video frame under a drag (show pictures on the way)
    span_dragged = Signal(object, int, int)  # (ItemRef, start s, end s): an event's edge dragged, on release
    view_changed = Signal()  # the zoom or the scroll offset changed

    BAR_TOP, BAR_HEIGHT, TICKS = 8, 22, 14
    EDGE_GRAB = 5  # pixels either side of an event's edge that grab it
    MAX_SECOND_PX = 240.0  # the deepest zoom: one second this wide
    ZOOM_STEP = 1.5

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.turns: list[Turn] = []
        self.frames = 0  # frames of the video
        self.block = 1  # frames per turn
        self.playhead = 0  # frame
        self.marks: tuple[int | None, int | None] = (None, None)  # pending event start / end seconds
        self.selection: tuple[int, int] | None = None  # seconds [start, end) of the selected item
        self.selection_bad = False
        self.selected_ref: ItemRef | None = None
        self.events: list[tuple[ItemRef, int, int]] = []  # every event's span (draggable edges)
        self.instruction_note = ""  # said on turn 0's tooltip: where the clip's instruction comes from
        self.placeholder = ""  # said where there are no turns
        self.zoom = 1.0
        self.offset = 0.0  # pixels of the zoomed strip scrolled off to the left
        self.dragging: tuple[ItemRef, str, int, int] | None = None  # (ref, "start" | "end", start, end)
        self._press: tuple[float, tuple[ItemRef, str, int, int] | None] | None = None
        self.setMinimumHeight(self.BAR_TOP + self.BAR_HEIGHT + self.TICKS + 2)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.setMouseTracking(True)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(600, self.BAR_TOP + self.BAR_HEIGHT + self.TICKS + 2)

    def set_turns(self, turns: list[Turn], frames: int, block: int) -> None:
        changed = (frames, block) != (self.frames, self.block) or len(turns) != len(self.turns)
        self.turns, self.frames, self.block = list(turns), max(0, frames), max(1, block)
        if changed:
            self.zoom, self.offset = 1.0, 0.0
            self.view_changed.emit()
        self.update()

    def set_events(self, events: list[tuple[ItemRef, int, int]]) -> None:
        self.events = list(events)
        self.update()

    def set_playhead(self, frame: int) -> None:
        self.playhead = frame
        if not self.dragging:
            self.ensure_visible(frame)
        self.update()

    def set_marks(self, start: int | None, end: int | None) -> None:
        self.marks = (start, end)
        self.update()

    def set_selection(self, span: tuple[int, int] | None, bad: bool = False, ref: ItemRef | None = None) -> None:
        self.selection, self.selection_bad, self.selected_ref = span, bad, ref
        self.update()

    # -- geometry: x is proportional to the video frame, magnified by the zoom, less the offset
    def _span_frames(self) -> int:
        return max(self.frames, len(self.turns) * self.block, 1)

    def content_width(self) -> float:
        return max(1, self.width()) * self.zoom

    def _px_per_frame(self) -> float:
        return self.content_width() / self._span_frames()

    def seconds_per_pixel(self) -> float:
        """Turn seconds one pixel covers at the current zoom."""
        return 1.0 / (self._px_per_frame() * self.block)

    def x_of_frame(self, frame: float) -> float:
        return frame * self._px_per_frame() - self.offset

    def x_of_second(self, second: float) -> float:
        return self.x_of_frame(second * self.block)

    def frame_at(self, x: float) -> int:
        frame = int((x + self.offset) / self._px_per_frame())
        return max(0, min(frame, max(0, self.frames - 1)))

    def second_edge_at(self, x: float) -> int:
        """The nearest boundary between seconds (0 .. turns) at ``x``: where a dragged edge lands."""
        return max(0, min(round((x + self.offset) / (self._px_per_frame() * self.block)), len(self.turns)))

    def turn_at(self, x: float) -> int | None:
        i = int((x + self.offset) / self._px_per_frame()) // self.block
        return i if 0 <= i < len(self.turns) else None

    def playhead_x(self) -> float:
        return self.x_of_frame(self.playhead + 0.5) if self.block > 1 else self.x_of_frame(self.playhead)

    # -- zoom and scroll
    def max_zoom(self) -> float:
        seconds = self._span_frames() / self.block
        return max(1.0, self.MAX_SECOND_PX * seconds / max(1, self.width()))

    def set_zoom(self, zoom: float) -> None:
        """Magnify to ``zoom`` (1: the whole clip) around the playhead: it stays where it was on
        screen, or comes to the middle when it was out of sight."""
        zoom = max(1.0, min(float(zoom), self.max_zoom()))
        if zoom == self.zoom:
            return
        x = self.playhead_x()
        keep = x if 0 <= x <= self.width() else self.width() / 2
        frame = self.playhead + (0.5 if self.block > 1 else 0.0)
        self.zoom = zoom
        self.set_offset(frame * self._px_per_frame() - keep, force=True)

    def zoom_in(self) -> None:
        self.set_zoom(self.zoom * self.ZOOM_STEP)

    def zoom_out(self) -> None:
        self.set_zoom(self.zoom / self.ZOOM_STEP)

    def zoom_fit(self) -> None:
        self.set_zoom(1.0)

    def max_offset(self) -> float:
        return max(0.0, self.content_width() - self.width())

    def set_offset(self, offset: float, force: bool = False) -> None:
        offset = max(0.0, min(float(offset), self.max_offset()))
        if offset != self.offset or force:
            self.offset = offset
            self.update()
            self.view_changed.emit()

    def ensure_visible(self, frame: int) -> None:
        """Scroll a zoomed strip so the frame is on screen (to the middle when it was not)."""
        if self.zoom <= 1.0:
            return
        x = self.x_of_frame(frame)
        if not 0 <= x <= self.width():
            self.set_offset(x + self.offset - self.width() / 2)

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self.zoom = max(1.0, min(self.zoom, self.max_zoom()))
        self.set_offset(self.offset, force=True)

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 - Qt override
        delta = event.angleDelta().y() or event.angleDelta().x()
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            if delta:
                (self.zoom_in if delta > 0 else self.zoom_out)()
            event.accept()
        elif self.zoom > 1.0 and delta:
            self.set_offset(self.offset - delta / 120 * self.width() / 8)
            event.accept()
        else:
            event.ignore()

    # -- painting
    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        top, h, width = self.BAR_TOP, self.BAR_HEIGHT, self.width()
        p.fillRect(QRectF(0, top, width, h), QColor(36, 38, 44))
        if not self.turns:
            p.setPen(QColor(170, 170, 180))
            p.drawText(QRectF(6, top, width - 12, h), Qt.AlignmentFlag.AlignVCenter, self.placeholder)
            p.end()
            return
        # Painted on every playhead move: plain arithmetic here, not x_of_second per cell.
        cell, off = self._px_per_frame() * self.block, self.offset  # pixels per second, scroll
        first = max(0, int(off / max(cell, 1e-9)))
        last = min(len(self.turns), int(math.ceil((off + width) / max(cell, 1e-9))) + 1)
        visible = self.turns[first:last]
        if cell >= 5:  # a cell per second, a pixel apart
            for t in visible:
                p.fillRect(QRectF(t.index * cell - off, top, cell - 1.0, h), STATE_COLORS.get(t.state, UNKNOWN))
        else:  # narrow cells: one rectangle per run of seconds in the same state
            run = 0
            for k in range(1, len(visible) + 1):
                if k == len(visible) or visible[k].state != visible[run].state:
                    x0 = visible[run].index * cell - off
                    color = STATE_COLORS.get(visible[run].state, UNKNOWN)
                    p.fillRect(QRectF(x0, top, max(1.0, (k - run) * cell), h), color)
                    run = k
        # Frames past the last whole turn: the converter gives them no turn.
        tail = self.x_of_second(len(self.turns))
        if tail < width - 0.5:
            brush = QBrush(QColor(90, 90, 100), Qt.BrushStyle.BDiagPattern)
            p.fillRect(QRectF(max(0.0, tail), top, width - max(0.0, tail), h), brush)
        self._paint_events(p)
        # Questions: a notch on top of their turn; turn 0's is the instruction the model gets.
        p.setPen(Qt.PenStyle.NoPen)
        for t in visible:
            if t.question:
                p.setBrush(INSTRUCTION_COLOR if t.index == 0 else KIND_COLORS["question"])
                cx = self.x_of_second(t.index + 0.5)
                if t.index == 0 and self.offset == 0:
                    cx = max(5.0, cx)  # the whole notch, even where a second is a pixel wide
                p.drawPolygon(QPolygonF([QPointF(cx - 5, top - 7), QPointF(cx + 5, top - 7), QPointF(cx, top - 1)]))
        self._paint_selection(p)
        self._paint_ticks(p, cell)
        # The playhead.
        x = self.playhead_x()
        p.setPen(QPen(QColor(255, 255, 255), 2))
        p.drawLine(QPointF(x, top - 3), QPointF(x, top + h + 3))
        p.setPen(QPen(QColor(0, 0, 0, 160), 1))
        p.drawLine(QPointF(x + 1.5, top), QPointF(x + 1.5, top + h))
        p.end()

    def _paint_events(self, p: QPainter) -> None:
        """Each event's span as a thin band along the bar's foot, with its two edges (draggable)."""
        top, h = self.BAR_TOP, self.BAR_HEIGHT
        for ref, s, e in self.events:
            if self.dragging is not None and self.dragging[0] == ref:
                s, e = self.dragging[2], self.dragging[3]
            x0, x1 = self.x_of_second(s), self.x_of_second(e)
            if x1 < 0 or x0 > self.width():
                continue
            p.fillRect(QRectF(x0, top + h - 4, max(1.0, x1 - x0), 3), QColor(255, 255, 255, 110))
            p.fillRect(QRectF(x0, top + h - 9, 2, 8), QColor(255, 255, 255, 170))
            p.fillRect(QRectF(x1 - 2, top + h - 9, 2, 8), QColor(255, 255, 255, 170))

    def _paint_selection(self, p: QPainter) -> None:
        top, h = self.BAR_TOP, self.BAR_HEIGHT
        span = self.selection
        if self.dragging is not None:
            span, color = (self.dragging[2], self.dragging[3]), MARK_COLOR
        else:
            color = PROBLEM_COLOR if self.selection_bad else QColor(255, 255, 255)
        if span is not None:
            s, e = span
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.setPen(QPen(color, 2))
            x0, x1 = self.x_of_second(s), self.x_of_second(max(e, s + 1))
            p.drawRect(QRectF(x0 + 1, top + 1, max(2.0, x1 - x0 - 2), h - 2))
        start, end = self.marks
        p.setPen(QPen(MARK_COLOR, 2))
        for second, sign in ((start, 1), (end, -1)):
            if second is None:
                continue
            x = self.x_of_second(second) + sign
            p.drawPolyline(
                QPolygonF(
                    [
                        QPointF(x + 4 * sign, top - 2),
                        QPointF(x, top - 2),
                        QPointF(x, top + h + 1),
                        QPointF(x + 4 * sign, top + h + 1),
                    ]
                )
            )

    def _paint_ticks(self, p: QPainter, cell: float) -> None:
        """Second ticks with labels far enough apart to read."""
        top, h = self.BAR_TOP, self.BAR_HEIGHT
        p.setPen(QColor(110, 110, 120))
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.8))
        p.setFont(font)
        every = next((k for k in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600) if k * cell >= 36), 1200)
        off, width, metrics = self.offset, self.width(), p.fontMetrics()
        widths: dict[int, int] = {}  # by the label's length: digits are equally wide
        first = max(0, int(off / max(cell, 1e-9)) // every * every)
        for s in range(first, len(self.turns) + 1, every):
            x = s * cell - off
            if x > width + 40:
                break
            p.drawLine(QPointF(x, top + h), QPointF(x, top + h + 3))
            label = format_clock(s)
            w = widths.get(len(label)) or widths.setdefault(len(label), metrics.horizontalAdvance(label))
            if x + w / 2 <= width and x - w / 2 >= 0 or (s == 0 and off == 0):
                p.drawText(QPointF(max(0.0, x - w / 2), top + h + self.TICKS), label)

    # -- mouse: seek, or drag an event's edge
    def edge_at(self, x: float) -> tuple[ItemRef, str, int, int] | None:
        """(ref, "start" | "end", start, end) of the event edge under ``x``; the selected event's
        first, then the nearest."""
        best: tuple[float, int, tuple[ItemRef, str, int, int]] | None = None
        for ref, s, e in self.events:
            for which, second in (("start", s), ("end", e)):
                d = abs(self.x_of_second(second) - x)
                if d <= self.EDGE_GRAB:
                    rank = (0 if ref == self.selected_ref else 1, d)
                    if best is None or rank < best[:2]:
                        best = (*rank, (ref, which, s, e))  # type: ignore[assignment]
        return None if best is None else best[2]

    def _dragged_span(self, x: float) -> tuple[int, int]:
        assert self._press is not None and self._press[1] is not None
        ref, which, s, e = self._press[1]
        second = self.second_edge_at(x)
        last = max(len(self.turns) - 1, s + 1)  # the answer comes at ``end``: keep it on a turn
        if which == "start":
            return max(0, min(second, e - 1)), e
        return s, max(s + 1, min(second, last))

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if event.button() != Qt.MouseButton.LeftButton or not self.frames:
            return
        x = event.position().x()
        edge = self.edge_at(x)
        self._press = (x, edge)
        if edge is None:
            self.seek_requested.emit(self.frame_at(x))

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        x = event.position().x()
        if not event.buttons() & Qt.MouseButton.LeftButton or self._press is None:
            if self.edge_at(x) is not None:
                self.setCursor(Qt.CursorShape.SizeHorCursor)
            else:
                self.unsetCursor()
            return
        edge = self._press[1]
        if edge is None:
            if self.frames:
                self.scrub_requested.emit(self.frame_at(x))
            return
        s, e = self._dragged_span(x)
        self.dragging = (edge[0], edge[1], s, e)
        QToolTip.showText(event.globalPosition().toPoint(), plain_tip(f"{format_clock(s)} – {format_clock(e)}"), self)
        self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        press, self._press = self._press, None
        dragging, self.dragging = self.dragging, None
        if press is None or press[1] is None or event.button() != Qt.MouseButton.LeftButton:
            return
        ref, _, s, e = press[1]
        if dragging is not None and (dragging[2], dragging[3]) != (s, e):
            self.span_dragged.emit(ref, dragging[2], dragging[3])
        elif dragging is None:
            self.seek_requested.emit(self.frame_at(press[0]))  # a click on an edge: seek there
        self.update()

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
        if t.question and i == 0:
            lines.append(f"Instruction the model gets from 0:00: {t.question}")
            if self.instruction_note:
                lines.append(self.instruction_note)
        elif t.question:
            lines.append(f"Question asked at {format_clock(i)}: {t.question}")
        return "\n".join(lines)


class StripPanel(QWidget):
    """The strip, its thumbnail row, a scroll bar and the zoom buttons."""

    def __init__(self, strip: TurnStrip, thumbnails: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.strip, self.thumbnails = strip, thumbnails
        self.scroll = QScrollBar(Qt.Orientation.Horizontal)
        self.scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.scroll.valueChanged.connect(lambda v: self.strip.set_offset(v))
        self.zoom_label = QLabel()
        self.zoom_label.setStyleSheet("color: palette(mid)")
        buttons = QHBoxLayout()
        buttons.setSpacing(2)
        for text, tip, slot in (
            ("−", "Zoom out (- or Ctrl+wheel)", strip.zoom_out),
            ("+", "Zoom in around the playhead (+ or Ctrl+wheel)", strip.zoom_in),
            ("Fit", "The whole clip (0)", strip.zoom_fit),
        ):
            b = QToolButton(text=text)
            b.setToolTip(tip)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.setAutoRaise(True)
            b.clicked.connect(slot)
            buttons.addWidget(b)
        buttons.addWidget(self.zoom_label)
        buttons.addWidget(self.scroll, 1)
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(1)
        box.addWidget(strip)
        box.addWidget(thumbnails)
        box.addLayout(buttons)
        strip.view_changed.connect(self._sync)
        self._sync()

    def _sync(self) -> None:
        s = self.strip
        self.scroll.blockSignals(True)
        self.scroll.setRange(0, int(s.max_offset()))
        self.scroll.setPageStep(max(1, s.width()))
        self.scroll.setSingleStep(max(1, s.width() // 10))
        self.scroll.setValue(int(s.offset))
        self.scroll.blockSignals(False)
        self.scroll.setEnabled(s.zoom > 1.0)
        px = 1.0 / s.seconds_per_pixel() if s.turns else 0.0
        self.zoom_label.setText(f"1 s = {px:.0f} px" if px >= 1.5 else f"1 px = {s.seconds_per_pixel():.1f} s")
        self.thumbnails.update()


__all__ = [
    "INSTRUCTION_COLOR",
    "KIND_COLORS",
    "PROBLEM_BACKGROUND",
    "PROBLEM_COLOR",
    "StripPanel",
    "TurnStrip",
    "plain_tip",
]
