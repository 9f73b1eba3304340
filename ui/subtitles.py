"""The subtitle shown on the preview and the overlay: tokens stream in, the text fades after a
configurable time, and Standby shows as a small indicator rather than as words.

The rule is ``app.live.subtitles``' (a newer answer replaces the older one; an answer fades
``hold`` seconds after its last token; the newest two lines show, like live captions).
:class:`SubtitleFeed` holds the current text, opacity and state; the preview and the overlay
both listen to its ``changed`` signal and draw with :func:`paint_subtitle`.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, QRectF, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPainterPath

from app.live.qt import StepReport, TokenChunk
from app.live.records import clean_text
from app.live.subtitles import HOLD_SECONDS, MAX_LINES
from model.protocol import RESPONSE, STANDBY

FADE_SECONDS = 0.8  # the fade itself, after the hold time
MAX_CHARS = 4000  # a bound on what one answer keeps; the overlay grows to show it from its start


class SubtitleFeed(QObject):
    changed = Signal()  # text, opacity or state changed: repaint

    def __init__(self, hold_seconds: float = HOLD_SECONDS, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.hold_seconds = hold_seconds
        self.text = ""
        self.opacity = 0.0
        self.state = ""  # the latest step's state token
        self.history: list[str] = []  # every finished subtitle, for tests and screenshots
        self._step_t: float | None = None
        self._last_update = 0.0
        self._timer = QTimer(self)
        self._timer.setInterval(40)
        self._timer.timeout.connect(self._tick)

    def set_hold_seconds(self, seconds: float) -> None:
        self.hold_seconds = max(0.5, float(seconds))

    @Slot(object)
    def on_token_streamed(self, chunk: TokenChunk) -> None:
        if chunk.t != self._step_t:  # the first token of a new answer replaces the old one
            self._step_t = chunk.t
            self.text = ""
        self.text = (self.text + display_text(chunk.text))[-MAX_CHARS:]
        self._show()

    @Slot(object)
    def on_step_finished(self, report: StepReport) -> None:
        record = report.record
        state_changed = record.state != self.state
        self.state = record.state
        if record.text.strip():
            self.text = display_text(record.text.strip())[-MAX_CHARS:]  # the authoritative full answer
            self._step_t = record.t
            self.history.append(record.text.strip())
            self._show()
        elif state_changed:
            self.changed.emit()

    def clear(self) -> None:
        self.text, self.opacity, self.state, self._step_t = "", 0.0, "", None
        self._timer.stop()
        self.changed.emit()

    @property
    def standby(self) -> bool:
        return self.state == STANDBY

    @property
    def responding(self) -> bool:
        return self.state == RESPONSE

    def _show(self) -> None:
        self._last_update = time.monotonic()
        self.opacity = 1.0
        if not self._timer.isActive():
            self._timer.start()
        self.changed.emit()

    def _tick(self) -> None:
        age = time.monotonic() - self._last_update
        if age < self.hold_seconds:
            return
        opacity = max(0.0, 1.0 - (age - self.hold_seconds) / FADE_SECONDS)
        if opacity != self.opacity:
            self.opacity = opacity
            self.changed.emit()
        if opacity == 0.0:
            self.text = ""
            self._timer.stop()


display_text = clean_text  # model text as screens show it


def subtitle_box(
    area: QRectF, text: str, font: QFont, align_bottom: bool = True, max_lines: int = MAX_LINES
) -> tuple[QRectF, QRectF, float]:
    """Where :func:`paint_subtitle` draws ``text`` in ``area``: the rounded box, the text's full wrapped
    bounds and the padding. The box holds at most ``max_lines`` lines (a longer text shows its newest);
    an empty box when there is no text."""
    if not text:
        return QRectF(), QRectF(), 0.0
    metrics = QFontMetricsF(font)
    pad = metrics.height() * 0.35
    max_w = max(40.0, area.width() - 2 * pad)
    flags = int(Qt.AlignmentFlag.AlignHCenter) | int(Qt.TextFlag.TextWordWrap)
    bound = metrics.boundingRect(QRectF(0, 0, max_w, 10_000), flags, text)
    h = min(bound.height(), metrics.lineSpacing() * (max(1, max_lines) - 1) + metrics.height())
    box = QRectF(0, 0, bound.width() + 2 * pad, h + 2 * pad)
    box.moveCenter(area.center())
    box.moveBottom(area.bottom() - pad) if align_bottom else box.moveTop(area.top() + pad)
    return box, bound, pad


def paint_subtitle(
    painter: QPainter,
    area: QRectF,
    text: str,
    font: QFont,
    fg: QColor,
    bg: QColor,
    opacity: float,
    align_bottom: bool = True,
    max_lines: int = MAX_LINES,
) -> QRectF:
    """Word-wrapped text in a rounded box, centred in ``area`` at its bottom (or top), at most
    ``max_lines`` lines: a longer text shows its newest lines, like live captions. Returns the box
    drawn (empty when there is nothing to show)."""
    if not text or opacity <= 0.0:
        return QRectF()
    box, bound, pad = subtitle_box(area, text, font, align_bottom, max_lines)
    flags = int(Qt.AlignmentFlag.AlignHCenter) | int(Qt.TextFlag.TextWordWrap)
    painter.save()
    painter.setOpacity(opacity)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    path = QPainterPath()
    path.addRoundedRect(box, pad, pad)
    painter.fillPath(path, bg)
    painter.setFont(font)
    painter.setPen(fg)
    inner = box.adjusted(pad, pad, -pad, -pad)
    painter.setClipRect(inner)
    text_rect = QRectF(inner.left(), inner.bottom() - bound.height(), inner.width(), bound.height())
    painter.drawText(text_rect, flags, text)
    painter.restore()
    return box


def paint_standby(painter: QPainter, center_x: float, center_y: float, radius: float, phase: float) -> None:
    """Three small dots that breathe: the model is holding an answer back."""
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    for i in range(3):
        alpha = 90 + int(120 * (0.5 + 0.5 * _wave(phase - i * 0.18)))
        painter.setBrush(QColor(255, 196, 64, alpha))
        painter.drawEllipse(QRectF(center_x + (i - 1) * radius * 3 - radius, center_y - radius, 2 * radius, 2 * radius))
    painter.restore()


def _wave(x: float) -> float:
    import math

    return math.sin(2 * math.pi * x)
