"""The train panel's live plots (pyqtgraph): the training loss per step (raw points and a smoothed
line) with the loss on the held-out clips at each evaluation (the trainer's ``eval`` events: where it
turns up while the training loss goes on falling, more steps only fit the training clips), and the per-class state accuracy on the held-out split (Silence / Standby / Response in the
timeline's colours). Plain widgets: they render offscreen as on a screen."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pyqtgraph as pg
from PySide6.QtCore import QSize
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QWidget

from model.protocol import RESPONSE, SILENCE, STANDBY
from ui.timeline import STATE_COLORS, STATE_NAMES

BACKGROUND = QColor(252, 252, 253)
AXIS = QColor(90, 94, 104)
GRID_ALPHA = 0.15
LOSS_RAW = QColor(150, 156, 170)
LOSS_SMOOTH = QColor(52, 120, 220)
LOSS_HELDOUT = QColor(214, 96, 40)
STATES = (SILENCE, STANDBY, RESPONSE)


def smooth(values: Iterable[float], weight: float = 0.9) -> list[float]:
    """An exponential moving average with bias correction (TensorBoard's smoothing): early points are
    not pulled towards zero."""
    out, avg, norm = [], 0.0, 0.0
    for v in values:
        avg = weight * avg + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out.append(avg / norm)
    return out


class _Plot(pg.PlotWidget):
    def __init__(self, title: str, y_label: str, parent: QWidget | None = None) -> None:
        super().__init__(parent, background=BACKGROUND)
        item = self.getPlotItem()
        item.setTitle(title, color=AXIS.name(), size="10pt")
        item.setLabel("bottom", "step", color=AXIS.name())
        item.setLabel("left", y_label, color=AXIS.name())
        item.showGrid(x=True, y=True, alpha=GRID_ALPHA)
        item.setMenuEnabled(False)
        for name in ("bottom", "left"):
            axis = item.getAxis(name)
            axis.setPen(pg.mkPen(AXIS))
            axis.setTextPen(pg.mkPen(AXIS))
        self.setMinimumSize(260, 160)
        self.placeholder = pg.TextItem("", color=AXIS, anchor=(0.5, 0.5))
        item.addItem(self.placeholder, ignoreBounds=True)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(420, 220)

    def _show_placeholder(self, text: str) -> None:
        self.placeholder.setText(text)
        self.placeholder.setVisible(bool(text))
        if text:
            vr = self.getPlotItem().vb.viewRange()
            self.placeholder.setPos((vr[0][0] + vr[0][1]) / 2, (vr[1][0] + vr[1][1]) / 2)


class LossPlot(_Plot):
    """Training loss against step: each step's loss as a faint point, and the smoothed curve; the
    held-out loss at each evaluation as a second line with markers."""

    def __init__(self, parent: QWidget | None = None, smoothing: float = 0.8) -> None:
        super().__init__("Training loss", "loss", parent)
        self.smoothing = smoothing
        self.steps: list[int] = []
        self.values: list[float] = []
        self.heldout_steps: list[int] = []
        self.heldout_values: list[float] = []
        self.heldout_label = "held-out loss"
        self.raw = pg.ScatterPlotItem(size=4, pen=None, brush=pg.mkBrush(LOSS_RAW), antialias=True)
        self.line = pg.PlotDataItem(pen=pg.mkPen(LOSS_SMOOTH, width=2), antialias=True, name="training (smoothed)")
        self.heldout = pg.PlotDataItem(
            pen=pg.mkPen(LOSS_HELDOUT, width=2), symbol="o", symbolSize=6, symbolBrush=pg.mkBrush(LOSS_HELDOUT),
            symbolPen=None, antialias=True, name=self.heldout_label,
        )  # fmt: skip
        item = self.getPlotItem()
        self.legend = item.addLegend(offset=(-8, 4), labelTextColor=AXIS, brush=pg.mkBrush(255, 255, 255, 210))
        item.addItem(self.raw)
        item.addItem(self.line)
        item.addItem(self.heldout)
        item.setLogMode(x=False, y=False)
        self._show_placeholder("The loss of each step appears here once training runs")

    def add_point(self, step: int, loss: float) -> None:
        self.add_points([(step, loss)])

    def add_points(self, points: Iterable[tuple[int, float]]) -> None:
        for step, loss in points:
            self.steps.append(int(step))
            self.values.append(float(loss))
        self._redraw()

    def add_heldout_point(self, step: int, loss: float | None) -> None:
        """The loss on the evaluation split at ``step`` (None: not measured, nothing drawn)."""
        self.add_heldout_points([(step, loss)] if loss is not None else [])

    def add_heldout_points(self, points: Iterable[tuple[int, float]]) -> None:
        for step, loss in points:
            self.heldout_steps.append(int(step))
            self.heldout_values.append(float(loss))
        self._redraw()

    def set_split(self, split: str) -> None:
        """What the evaluation loss is measured on: "heldout", or "train" when none was held out."""
        label = "held-out loss" if split == "heldout" else "loss on the training clips (none held out)"
        if label != self.heldout_label:
            self.heldout_label = label
            self.legend.removeItem(self.heldout)
            self.legend.addItem(self.heldout, label)

    def truncate(self, last_step: int) -> None:
        """Forget points after ``last_step`` (a resumed run trains them again)."""
        keep = [i for i, s in enumerate(self.steps) if s <= last_step]
        self.steps = [self.steps[i] for i in keep]
        self.values = [self.values[i] for i in keep]
        keep = [i for i, s in enumerate(self.heldout_steps) if s <= last_step]
        self.heldout_steps = [self.heldout_steps[i] for i in keep]
        self.heldout_values = [self.heldout_values[i] for i in keep]
        self._redraw()

    def clear_points(self) -> None:
        self.steps, self.values = [], []
        self.heldout_steps, self.heldout_values = [], []
        self._redraw()

    def smoothed(self) -> list[float]:
        return smooth(self.values, self.smoothing)

    def _redraw(self) -> None:
        self.raw.setData(self.steps, self.values)
        self.line.setData(self.steps, self.smoothed())
        self.heldout.setData(self.heldout_steps, self.heldout_values)
        self._show_placeholder("" if self.steps else "The loss of each step appears here once training runs")


class AccuracyPlot(_Plot):
    """Per-class state accuracy on the held-out clips (teacher forced, the trainer's evaluation),
    one line per state in the timeline's colours, 0-100 %."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Held-out state accuracy", "accuracy (%)", parent)
        item = self.getPlotItem()
        item.setYRange(-2, 118, padding=0)  # room above 100 % for the legend
        item.getAxis("left").setTicks([[(v, str(v)) for v in range(0, 101, 25)]])
        item.enableAutoRange(axis="y", enable=False)
        item.setMouseEnabled(x=True, y=False)
        legend = item.addLegend(offset=(8, 4), labelTextColor=AXIS, brush=pg.mkBrush(255, 255, 255, 210), colCount=3)
        self.legend = legend
        self.series: dict[str, tuple[list[int], list[float]]] = {s: ([], []) for s in STATES}
        self.curves: dict[str, pg.PlotDataItem] = {}
        for state in STATES:
            colour = self.colour(state)
            self.curves[state] = item.plot(
                [], [], pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=6, symbolBrush=pg.mkBrush(colour),
                symbolPen=None, name=STATE_NAMES[state], antialias=True,
            )  # fmt: skip
        self.split = "heldout"
        self._show_placeholder("Accuracy on the held-out clips appears at each evaluation")

    @staticmethod
    def colour(state: str) -> QColor:
        return QColor(STATE_COLORS[state])

    def set_split(self, split: str) -> None:
        """The split the accuracy is measured on: "heldout", or "train" when none was held out."""
        self.split = split
        title = "Held-out state accuracy" if split == "heldout" else "State accuracy (training clips: none held out)"
        self.getPlotItem().setTitle(title, color=AXIS.name(), size="10pt")

    def add_point(self, step: int, accuracy: Mapping[str, float | None]) -> None:
        for state in STATES:
            value = accuracy.get(state)
            if value is None:  # the class does not occur in the held-out windows
                continue
            steps, values = self.series[state]
            steps.append(int(step))
            values.append(100.0 * float(value))
        self._redraw()

    def truncate(self, last_step: int) -> None:
        for state, (steps, values) in self.series.items():
            keep = [i for i, s in enumerate(steps) if s <= last_step]
            self.series[state] = ([steps[i] for i in keep], [values[i] for i in keep])
        self._redraw()

    def clear_points(self) -> None:
        self.series = {s: ([], []) for s in STATES}
        self._redraw()

    def points(self) -> int:
        return sum(len(steps) for steps, _ in self.series.values())

    def _redraw(self) -> None:
        for state, (steps, values) in self.series.items():
            self.curves[state].setData(steps, values)
        self._show_placeholder("" if self.points() else "Accuracy on the held-out clips appears at each evaluation")
