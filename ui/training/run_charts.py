"""The train panel's right side: the loss plot (training loss and held-out loss), the held-out state
accuracy and the training log. A run chosen later has its curves read back from its metrics.jsonl
on the thread pool (``app.training.runs.read_history``; a long run's file has a line per step)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal
from PySide6.QtWidgets import QPlainTextEdit, QSplitter, QWidget

from app.training import runs
from ui.training.plots import AccuracyPlot, LossPlot


class _HistoryJob(QRunnable):
    """A run's curves and last evaluation, read off the GUI thread."""

    class Signals(QObject):
        done = Signal(str, object, object)  # folder, runs.History, evaluation dict | None

    def __init__(self, out: Path, last_step: int | None) -> None:
        super().__init__()
        self.out, self.last_step = out, last_step
        self.signals = _HistoryJob.Signals()

    def run(self) -> None:
        history = runs.read_history(self.out, self.last_step)
        self.signals.done.emit(str(self.out), history, runs.load_evaluation(self.out))


class RunCharts(QSplitter):
    history_loaded = Signal(str, object)  # folder, its last evaluation (dict | None)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(Qt.Orientation.Vertical, parent)
        self.shown = ""  # the run folder whose curves are shown ("" none, or a new run's before it trains)
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
        for w, stretch in ((self.loss_plot, 3), (self.accuracy_plot, 3), (self.log_view, 2)):
            self.addWidget(w)
            self.setStretchFactor(self.count() - 1, stretch)
        self.setChildrenCollapsible(False)

    def clear(self, folder: str | Path = "", log: bool = False) -> None:
        """Empty plots, standing for ``folder`` (a new run's)."""
        self.shown = str(folder)
        self.loss_plot.clear_points()
        self.accuracy_plot.clear_points()
        if log:
            self.log_view.clear()

    def load(self, out: Path, last_step: int | None = None) -> None:
        """Show ``out``'s curves (up to ``last_step``) once read; ``history_loaded`` follows."""
        if str(out) != self.shown:
            self.clear(out)  # another run's points must not mix in
        job = _HistoryJob(Path(out), last_step)
        job.signals.done.connect(self._on_history)
        QThreadPool.globalInstance().start(job)

    def _on_history(self, folder: str, history: runs.History, evaluation: dict | None) -> None:
        if folder != self.shown:
            return  # another folder was chosen meanwhile
        # Points a resumed run sent before its history arrived stay (they come after it).
        after = history.last_step
        newer = [(s, v) for s, v in zip(self.loss_plot.steps, self.loss_plot.values, strict=True) if s > after]
        self.loss_plot.clear_points()
        self.loss_plot.add_points(history.loss + newer)
        self.loss_plot.set_split(history.split)
        self.loss_plot.add_heldout_points(history.eval_loss)
        self.accuracy_plot.clear_points()
        self.accuracy_plot.set_split(history.split)
        for step, accuracy in history.accuracy:
            self.accuracy_plot.add_point(step, accuracy)
        self.history_loaded.emit(folder, evaluation)

    # -- a run's events
    def on_started(self, event: dict) -> None:
        split = str(event.get("eval_split", "heldout"))
        for plot in (self.loss_plot, self.accuracy_plot):
            plot.set_split(split)
            plot.truncate(int(event["start_step"]))

    def on_evaluated(self, step: int, event: dict) -> None:
        split = str(event.get("split", "heldout"))
        self.accuracy_plot.set_split(split)
        self.accuracy_plot.add_point(step, event.get("state_accuracy") or {})
        self.loss_plot.set_split(split)
        self.loss_plot.add_heldout_point(step, event.get("loss"))

    def append_log(self, line: str) -> None:
        self.log_view.appendPlainText(line)
