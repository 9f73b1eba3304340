"""The train panel's evaluation: base model vs base + adapter through the live engine on the held-out
clips. The scores side by side, the cautions in plain words above them (too few clips, got worse),
then per clip the labelled and predicted state strips one above the other (labelled / base /
adapter, in the timeline's colours) and the answers side by side at their seconds.

``show_result`` takes ``app.training.job.compare_on_heldout``'s dict; each report's ``clips`` entries
carry ``labelled_states`` / ``predicted_states`` (a state token per second), ``answers``
([{"second", "labelled", "predicted"}]) and ``instruction`` (model/train/metrics.py).
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import (
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.training import runs
from app.training.job import EvaluationJob
from model.protocol import RESPONSE, SILENCE, STANDBY
from ui.timeline import STATE_COLORS, STATE_NAMES

_log = logging.getLogger(__name__)

ERROR_STYLE = "color: #c0392b"
OK_STYLE = "color: #2e7d32"
CAUTION_STYLE = "color: #a15c00"
ROWS = ("labelled", "base", "adapter")
ROW_LABELS = {"labelled": "Labelled", "base": "Base model", "adapter": "With the adapter"}


def _state_f1(state: str) -> Callable[[dict], float | None]:
    return lambda report: report["states"][state]["f1"]


EVAL_ROWS: tuple[tuple[str, Callable[[dict], Any]], ...] = (
    (f"{STATE_NAMES[SILENCE]} F1", _state_f1(SILENCE)),
    (f"{STATE_NAMES[STANDBY]} F1", _state_f1(STANDBY)),
    (f"{STATE_NAMES[RESPONSE]} F1", _state_f1(RESPONSE)),
    ("macro-F1", lambda r: r["macro_f1"]),
    ("State accuracy", lambda r: r["state_accuracy"]),
    ("Timing error (s)", lambda r: r["timing_error_s"]),
    ("Answer F1", lambda r: r["answer_f1"]),
)
_TIMING_ROW = 5


def _fmt(value: Any, row: int) -> str:
    if value is None:
        return "n/a"
    if row == _TIMING_ROW:
        return f"{value:.2f} s"
    return f"{value:.3f}"


def _clock(second: float) -> str:
    s = int(second)
    return f"{s // 60}:{s % 60:02d}" + (f".{round((second - s) * 10)}" if second != s else "")


class StateStrip(QWidget):
    """One row of states, a cell per turn in the timeline's colours (a missing turn: blank)."""

    def __init__(self, states: Sequence[str], length: int | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.states = list(states)
        self.length = max(length or 0, len(self.states), 1)
        self.setMinimumSize(120, 12)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        names = [STATE_NAMES.get(s, s) for s in self.states]
        self.setToolTip(", ".join(f"{_clock(i)} {n}" for i, n in enumerate(names[:120])))

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(360, 14)

    def colour_at(self, turn: int) -> QColor | None:
        if 0 <= turn < len(self.states):
            return QColor(STATE_COLORS.get(self.states[turn], QColor("gray")))
        return None

    def paintEvent(self, event) -> None:  # noqa: N802, ANN001 - Qt override
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(236, 237, 240))
        w = self.width() / self.length
        for i in range(len(self.states)):
            colour = self.colour_at(i)
            if colour is not None:
                p.fillRect(QRectF(i * w, 0, max(1.0, w - (1 if w > 4 else 0)), self.height()), colour)
        p.end()


def answer_rows(base: dict[str, Any], adapter: dict[str, Any]) -> list[tuple[float, str, str, str]]:
    """(second, labelled, base, adapter) at every second where either side responded or a response
    was labelled ("" where that side gave none; its state then shows in brackets)."""
    by_second: dict[float, dict[str, str]] = {}
    for name, entry in (("base", base), ("adapter", adapter)):
        for a in entry.get("answers") or []:
            cell = by_second.setdefault(float(a.get("second", 0)), {})
            if a.get("labelled") is not None:
                cell["labelled"] = str(a["labelled"])
            if a.get("predicted") is not None:
                cell[name] = str(a["predicted"])
    rows = []
    for second in sorted(by_second):
        cell = by_second[second]
        texts = []
        for name, entry in (("labelled", base), ("base", base), ("adapter", adapter)):
            text = cell.get(name)
            if text is None:
                key = "labelled_states" if name == "labelled" else "predicted_states"
                states = entry.get(key) or []
                turn = round(second * _fps(entry))
                state = states[turn] if 0 <= turn < len(states) else ""
                text = f"({STATE_NAMES.get(state, state).lower()})" if state else ""
            texts.append(text)
        rows.append((second, *texts))
    return rows


def _fps(entry: dict[str, Any]) -> float:
    n, seconds = len(entry.get("labelled_states") or []), entry.get("seconds") or 0
    return n / seconds if n and seconds else 1.0


class ClipComparison(QWidget):
    """One held-out clip: its three state strips and its answers side by side."""

    def __init__(self, base: dict[str, Any], adapter: dict[str, Any], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = str(adapter.get("video") or base.get("video") or "clip")
        seconds = adapter.get("seconds") or base.get("seconds") or 0
        title = f"<b>{html.escape(self.name)}</b> ({seconds:g} s)"
        if adapter.get("instruction"):
            title += f" · instruction: \u201c{html.escape(str(adapter['instruction']))}\u201d"
        heading = QLabel(title)
        heading.setWordWrap(True)
        series = {
            "labelled": adapter.get("labelled_states") or base.get("labelled_states") or [],
            "base": base.get("predicted_states") or [],
            "adapter": adapter.get("predicted_states") or [],
        }
        length = max(len(s) for s in series.values()) if series else 0
        grid = QGridLayout()
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setVerticalSpacing(2)
        self.strips: dict[str, StateStrip] = {}
        for row, key in enumerate(ROWS):
            label = QLabel(ROW_LABELS[key])
            label.setStyleSheet("color: palette(mid); font-size: 11px")
            strip = StateStrip(series[key], length)
            self.strips[key] = strip
            grid.addWidget(label, row, 0)
            grid.addWidget(strip, row, 1)
        grid.setColumnStretch(1, 1)
        self.rows = answer_rows(base, adapter)
        self.answers = QTableWidget(len(self.rows), 4)
        self.answers.setHorizontalHeaderLabels(["Second", "Labelled", "Base model", "With the adapter"])
        self.answers.verticalHeader().hide()
        self.answers.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.answers.setWordWrap(True)
        header = self.answers.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        for col in (1, 2, 3):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Stretch)
        for r, (second, *texts) in enumerate(self.rows):
            self.answers.setItem(r, 0, QTableWidgetItem(_clock(second)))
            for c, text in enumerate(texts, start=1):
                item = QTableWidgetItem(text)
                if text.startswith("("):
                    item.setForeground(QColor(130, 134, 144))
                self.answers.setItem(r, c, item)
        self.answers.resizeRowsToContents()
        rows_height = sum(self.answers.rowHeight(r) for r in range(len(self.rows)))
        self.answers.setFixedHeight(header.sizeHint().height() + rows_height + 6)
        self.answers.setVisible(bool(self.rows))
        none = QLabel("No answer labelled or given on this clip.")
        none.setStyleSheet("color: palette(mid)")
        none.setVisible(not self.rows)
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 4, 0, 4)
        box.addWidget(heading)
        box.addLayout(grid)
        box.addWidget(self.answers)
        box.addWidget(none)


class EvaluationView(QGroupBox):
    """The Evaluate / Use in Live buttons, the status line, the cautions, the score table and the
    per-clip comparisons; ``start`` runs an evaluation in a process of its own (``EvaluationJob``) and
    keeps its result in the run's folder (``runs.save_evaluation``: shown again when the run is chosen)."""

    finished = Signal(object)  # the comparison (shown already)
    ended = Signal(str)  # the evaluation process has exited: "done" | "failed"
    log = Signal(str)  # a line for the training log

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Evaluation on the held-out clips", parent)
        self.job: EvaluationJob | None = None
        self.evaluate_button = QPushButton("Evaluate")
        self.evaluate_button.setToolTip("Run the live engine on the held-out clips with and without the adapter")
        self.use_button = QPushButton("Use in Live")
        self.use_button.setToolTip("Load this adapter into the live engine")
        self.status = QLabel("After training, the base model and the adapter are compared here.")
        self.status.setWordWrap(True)
        self.cautions = QLabel()
        self.cautions.setWordWrap(True)
        self.cautions.setStyleSheet(CAUTION_STYLE)
        self.cautions.setTextFormat(Qt.TextFormat.RichText)
        self.cautions.hide()
        self.table = QTableWidget(len(EVAL_ROWS), 2)
        self.table.setHorizontalHeaderLabels(["Base model", "With the adapter"])
        self.table.setVerticalHeaderLabels([label for label, _ in EVAL_ROWS])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        height = self.table.horizontalHeader().sizeHint().height() + sum(
            self.table.verticalHeader().sectionSizeHint(i) for i in range(len(EVAL_ROWS))
        )
        self.table.setFixedHeight(height + 4)
        self.legend = QLabel(
            "Per clip: "
            + " ".join(
                f'<span style="color:{STATE_COLORS[s].name()}">\u25a0</span> {STATE_NAMES[s]}'
                for s in (SILENCE, STANDBY, RESPONSE)
            )
        )
        self.legend.setStyleSheet("font-size: 11px")
        self.legend.hide()
        self.clips_box = QVBoxLayout()
        self.clips_box.setContentsMargins(0, 0, 0, 0)
        self.comparisons: list[ClipComparison] = []
        buttons = QHBoxLayout()
        buttons.addWidget(self.evaluate_button)
        buttons.addWidget(self.use_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(self.cautions)
        layout.addWidget(self.table)
        layout.addWidget(self.legend)
        layout.addLayout(self.clips_box)

    # -- the evaluation process
    @property
    def running(self) -> bool:
        return bool(self.job and self.job.running)

    def start(self, out: Path, max_answer_tokens: int, before_spawn: Callable[[], None]) -> str:
        """Compare the base model with the adapter in ``out`` on its held-out clips; ``before_spawn``
        runs just before the process starts (the window frees the GPU). "" or why it did not start."""
        job = EvaluationJob(out, self, max_answer_tokens=max_answer_tokens)
        job.progress.connect(lambda done, total, what: self.set_status(f"Evaluating: {what}"))
        job.finished.connect(self._on_finished)
        job.failed.connect(self._on_failed)
        job.ended.connect(self.ended)
        before_spawn()
        try:
            job.start()
        except Exception as e:  # noqa: BLE001 - a process that cannot start is reported, never raised
            job.deleteLater()
            return f"Could not start the evaluation process: {e}"
        self.job = job
        self.clear()
        self.set_status("Evaluating: starting the evaluation process...")
        return ""

    def _on_finished(self, result: dict) -> None:
        self.show_result(result)
        out = Path(self.job.adapter) if self.job is not None else None
        if out is not None:
            try:
                runs.save_evaluation(out, result)
            except (OSError, TypeError, ValueError) as e:
                _log.warning("could not keep the evaluation in %s: %s", out, e)
        self.finished.emit(result)

    def _on_failed(self, message: str, lines: list) -> None:
        self.set_status(message, ERROR_STYLE)
        for line in lines[-8:]:
            self.log.emit(f"  {line}")

    # -- what it shows
    def clear(self) -> None:
        self.table.clearContents()
        self.status.setStyleSheet("")
        self.cautions.clear()
        self.cautions.hide()
        self.legend.hide()
        for w in self.comparisons:
            self.clips_box.removeWidget(w)
            w.deleteLater()
        self.comparisons = []

    def set_status(self, text: str, style: str = "") -> None:
        self.status.setText(text)
        self.status.setStyleSheet(style)

    def show_result(self, result: dict[str, Any], note: str = "") -> None:
        """A comparison: scores, cautions, per-clip strips and answers. ``note`` goes after the line."""
        self.clear()
        base, adapted = result["base"], result["adapter"]
        for row, (_, getter) in enumerate(EVAL_ROWS):
            for col, report in enumerate((base, adapted)):
                try:
                    value = getter(report)
                except (KeyError, TypeError):
                    value = None
                item = QTableWidgetItem(_fmt(value, row))
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.table.setItem(row, col, item)
        clips = result.get("clips") or []
        where = (
            f"{len(clips)} held-out clip(s)"
            if result.get("split") == "heldout"
            else f"the {len(clips)} training clip(s) (too few clips to hold any out)"
        )
        before, after = base.get("macro_f1") or 0.0, adapted.get("macro_f1") or 0.0
        change = after - before
        text = f"Live engine on {where}: macro-F1 {before:.2f} -> {after:.2f} ({change:+.2f})."
        self.set_status(text + (f" {note}" if note else ""), OK_STYLE if change >= 0 else "")
        notes = self.cautions_of(result)
        if notes:
            self.cautions.setText("<br>".join(f"\u26a0 {html.escape(n)}" for n in notes))
            self.cautions.show()
        pairs = list(zip(base.get("clips") or [], adapted.get("clips") or [], strict=False))
        for b, a in pairs:
            if a.get("labelled_states") is None and b.get("labelled_states") is None:
                continue  # a report without per-second detail (an older evaluation)
            view = ClipComparison(b, a)
            self.comparisons.append(view)
            self.clips_box.addWidget(view)
        self.legend.setVisible(bool(self.comparisons))

    @staticmethod
    def cautions_of(result: dict[str, Any]) -> list[str]:
        """The result's cautions in plain words (computed from the reports when an older result lacks
        them), the held-out warning first."""
        notes: list[str] = []
        if result.get("heldout_warning"):
            notes.append(str(result["heldout_warning"]))
        found = result.get("cautions")
        if found is None:
            try:
                from model.train.metrics import cautions

                found = cautions(result["base"], result["adapter"])
            except Exception:  # noqa: BLE001 - a caution never hides the scores
                found = []
        for c in found:
            text = str(c)
            text = text[:1].upper() + text[1:]
            if text not in notes:
                notes.append(text)
        return notes
