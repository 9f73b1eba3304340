"""A thin strip coloured by the model's state each second (Silence, Standby, Response), over a time
axis; a click on it asks to go to that second (``seek_requested``: a played-back session seeks)."""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPaintEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QWidget

from app.session import StateSpan, format_clock
from model.protocol import RESPONSE, SILENCE, STANDBY

STATE_COLORS = {SILENCE: QColor(70, 74, 84), STANDBY: QColor(236, 178, 46), RESPONSE: QColor(64, 190, 110)}
STATE_NAMES = {SILENCE: "Silence", STANDBY: "Standby", RESPONSE: "Response"}
STATE_MEANINGS = {
    SILENCE: "nothing worth saying",
    STANDBY: "something is happening: waiting for it to finish",
    RESPONSE: "it answered",
}
LEGEND_TIP = "What the model decided each second, left (start) to right (now)"
# Priority when several seconds share one pixel column: an answer must not vanish in a long run.
_RANK = {SILENCE: 0, STANDBY: 1, RESPONSE: 2}


STRIP = 10  # the coloured strip's height; the axis's labels go under it
TICKS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)  # seconds between labelled ticks


class StateTimeline(QWidget):
    seek_requested = Signal(float)  # a click: the stream second under it

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.spans: list[StateSpan] = []
        self.setMinimumHeight(STRIP)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self._update_tip()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(300, STRIP + self.fontMetrics().height() + 2)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(60, self.sizeHint().height())

    def total(self) -> float:
        return self.spans[-1].end if self.spans else 0.0

    def second_at(self, x: float) -> float:
        """The stream second under pixel column ``x``."""
        return max(0.0, min(1.0, x / max(1, self.width()))) * self.total()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if event.button() == Qt.MouseButton.LeftButton and self.spans:
            self.seek_requested.emit(self.second_at(event.position().x()))

    def set_spans(self, spans: list[StateSpan]) -> None:
        self.spans = list(spans)
        self._update_tip()
        self.update()

    def add_span(self, span: StateSpan) -> None:
        self.spans.append(span)
        self._update_tip()
        self.update()

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATE_NAMES, 0)
        for s in self.spans:
            out[s.state] = out.get(s.state, 0) + 1
        return out

    def _update_tip(self) -> None:
        c = self.counts()
        parts = ", ".join(f"{STATE_NAMES[k]} {c[k]}" for k in STATE_NAMES)
        end = self.spans[-1].end if self.spans else 0.0
        self.setToolTip(f"State per second over {format_clock(end)}: {parts}. Click to go to a second.")

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.fillRect(QRectF(0, 0, self.width(), STRIP), QColor(36, 38, 44))
        if self.spans:
            total = max(self.spans[-1].end, 1e-6)
            width = self.width()
            # One state per pixel column, the highest-ranked one that falls in it.
            columns: dict[int, str] = {}
            for s in self.spans:
                first = int(s.t / total * width)
                last = max(first, int(s.end / total * width) - 1)
                for x in range(first, min(last, width - 1) + 1):
                    old = columns.get(x)
                    if old is None or _RANK.get(s.state, 0) > _RANK.get(old, 0):
                        columns[x] = s.state
            for x, state in columns.items():
                p.fillRect(QRectF(x, 0, 1, STRIP), STATE_COLORS.get(state, QColor("gray")))
            self._paint_axis(p, total, width)
        p.end()

    def _paint_axis(self, p: QPainter, total: float, width: int) -> None:
        """Labelled ticks under the strip, as many as fit (a label every 80 pixels at most)."""
        if self.height() <= STRIP + 4:
            return
        step = next((t for t in TICKS if t / total * width >= 80), TICKS[-1])
        p.setPen(self.palette().color(self.foregroundRole()))
        font = p.font()
        font.setPointSizeF(max(6.0, font.pointSizeF() * 0.8))
        p.setFont(font)
        t = 0.0
        while t <= total:
            x = t / total * width
            p.drawLine(int(x), STRIP, int(x), STRIP + 3)
            label = format_clock(t)
            w = p.fontMetrics().horizontalAdvance(label)
            p.drawText(QRectF(min(max(0.0, x - w / 2), width - w), STRIP + 2, w + 2, self.height() - STRIP - 2), label)
            t += step


def timeline_legend() -> QWidget:
    """The timeline's colours in words, one small swatch each."""
    legend = QWidget()
    row = QHBoxLayout(legend)
    row.setContentsMargins(0, 0, 0, 0)
    row.setSpacing(10)
    for state, name in STATE_NAMES.items():
        label = QLabel(f'<span style="color:{STATE_COLORS[state].name()}">■</span> {name}')
        label.setToolTip(f"{name}: {STATE_MEANINGS[state]}")
        row.addWidget(label)
    row.addStretch(1)
    legend.setToolTip(LEGEND_TIP)
    return legend
