"""The dataset preview: what a training run will see, before Start.

Per clip the conversation exactly as it trains (``app.training.preview``: the trainer's converter,
Live's instruction on the first turn, each second's state, the questions and answers at their
seconds), the seconds per state and the clips per task, the held-out clips by name (automatic, or
ticked by the user, a tick per clip), epochs and steps, and a plain-words warning when fewer than 2
clips or under 20% are held out. Reading the annotations and probing the videos runs on the thread
pool; changing the held-out choice only re-plans (no I/O).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.training.preview import DatasetPreview, Split, dataset_preview

CAUTION_STYLE = "color: #a15c00"
ERROR_STYLE = "color: #c0392b"
# (config with the held-out choice, preset or None): the panel's settings for a held-out choice
ConfigFor = Callable[[list[str]], tuple[Any, Any]]
COLUMNS = ("Clip", "Held out", "Task", "Seconds", "Answers")


class PreviewJob(QRunnable):
    """``dataset_preview`` off the GUI thread (it reads the annotations and probes the videos)."""

    class Signals(QObject):
        done = Signal(object, object)  # key, DatasetPreview
        failed = Signal(object, str)  # key, message

    def __init__(self, key: Any, paths: Sequence[str], prefix: str | None, use_unannotated: bool) -> None:
        super().__init__()
        self.key, self.paths, self.prefix, self.use_unannotated = key, list(paths), prefix, use_unannotated
        self.signals = PreviewJob.Signals()

    def run(self) -> None:
        try:
            preview = dataset_preview(self.paths, self.prefix, use_unannotated=self.use_unannotated)
        except Exception as e:  # noqa: BLE001 - shown in the dialog with what to do
            self.signals.failed.emit(
                self.key,
                f"Could not read the clips: {e}. Check the project's annotations and videos on the Clips page.",
            )
        else:
            self.signals.done.emit(self.key, preview)


class DatasetPreviewDialog(QDialog):
    start_requested = Signal()  # "Start training" pressed (the held-out choice was reported already)
    heldout_changed = Signal(list)  # the videos the user chose to hold out ([]: automatic)
    dont_show_changed = Signal(bool)  # "don't show before Start again"

    def __init__(
        self,
        config_for: ConfigFor,
        chosen: Sequence[str] = (),
        *,
        offer_start: bool = True,
        dont_show: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("What training will see")
        self.config_for = config_for
        self.chosen: list[str] = list(chosen)
        self.preview: DatasetPreview | None = None
        self.split: Split | None = None
        self._key: Any = None
        self._filling = False

        self.status = QLabel("Reading the clips and probing the videos...")
        self.status.setWordWrap(True)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.warning = QLabel()
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet(CAUTION_STYLE)
        self.warning.hide()
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in range(1, len(COLUMNS)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setToolTip("Tick the clips to hold out (scored after training, never trained on)")
        self.automatic_button = QPushButton("Choose held-out clips automatically")
        self.automatic_button.setToolTip("At least 2 clips or 20 %, chosen by the trainer's seeded rule")
        self.conversation = QPlainTextEdit(readOnly=True)
        self.conversation.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.conversation.setPlaceholderText("Choose a clip to see its conversation as the model will see it.")
        font = self.conversation.font()
        font.setFamily("monospace")
        font.setStyleHint(font.StyleHint.Monospace)
        self.conversation.setFont(font)
        left = QWidget()
        left_box = QVBoxLayout(left)
        left_box.setContentsMargins(0, 0, 0, 0)
        left_box.addWidget(self.table)
        left_box.addWidget(self.automatic_button)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(self.conversation)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        split.setChildrenCollapsible(False)

        self.dont_show = QCheckBox("Don't show this before Start again (Preview data... still shows it)")
        self.dont_show.setChecked(dont_show)
        self.buttons = QDialogButtonBox()
        self.start_button = self.buttons.addButton("Start training", QDialogButtonBox.ButtonRole.AcceptRole)
        self.start_button.setVisible(offer_start)
        self.start_button.setEnabled(False)
        self.close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        bottom = QHBoxLayout()
        bottom.addWidget(self.dont_show, 1)
        bottom.addWidget(self.buttons)

        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addWidget(self.summary)
        layout.addWidget(self.warning)
        layout.addWidget(split, 1)
        layout.addLayout(bottom)
        self.resize(980, 620)

        self.table.itemChanged.connect(self._on_item_changed)
        self.table.currentCellChanged.connect(lambda row, *_: self._show_clip(row))
        self.automatic_button.clicked.connect(self.choose_automatically)
        self.dont_show.toggled.connect(self.dont_show_changed)
        self.start_button.clicked.connect(self._start)
        self.close_button.clicked.connect(self.reject)

    # -- loading
    def load(self, paths: Sequence[str], prefix: str | None, use_unannotated: bool) -> None:
        """Read the clips on the thread pool; the dialog fills in when they are read."""
        key = (tuple(paths), prefix, use_unannotated)
        self._key = key
        self.status.setText("Reading the clips and probing the videos...")
        self.status.setStyleSheet("")
        job = PreviewJob(key, paths, prefix, use_unannotated)
        job.signals.done.connect(self._on_done)
        job.signals.failed.connect(self._on_failed)
        QThreadPool.globalInstance().start(job)

    def _on_done(self, key: Any, preview: DatasetPreview) -> None:
        if key != self._key:
            return
        self.set_preview(preview)

    def _on_failed(self, key: Any, message: str) -> None:
        if key == self._key:
            self.status.setText(message)
            self.status.setStyleSheet(ERROR_STYLE)

    def set_preview(self, preview: DatasetPreview) -> None:
        self.preview = preview
        known = {c.video for c in preview.clips}
        self.chosen = [v for v in self.chosen if v in known]  # a clip since removed is no choice
        issues = preview.issues
        self.status.setText(
            "Each clip below is what trains, second by second."
            + (f" {len(issues)} sample(s) cannot train and are left out: " + "; ".join(issues[:3]) if issues else "")
        )
        self.status.setStyleSheet(CAUTION_STYLE if issues else "")
        self.replan()
        if preview.clips and self.table.currentRow() < 0:
            self.table.selectRow(0)
            self._show_clip(0)

    # -- the held-out choice
    def replan(self) -> None:
        """Apply the held-out choice (no I/O) and show the summary, the warning and the table."""
        if self.preview is None:
            return
        config, preset = self.config_for(list(self.chosen))
        self.split = split = self.preview.split(config, preset)
        self.summary.setText("\n".join(self.preview.summary(split)))
        warning = split.error or split.warning or ""
        self.warning.setText(("\u26a0 " + warning) if warning else "")
        self.warning.setStyleSheet(ERROR_STYLE if split.error else CAUTION_STYLE)
        self.warning.setVisible(bool(warning))
        self.start_button.setEnabled(bool(self.preview.clips) and not split.error)
        self.automatic_button.setEnabled(bool(self.chosen))
        self._fill_table()

    def _fill_table(self) -> None:
        assert self.preview is not None and self.split is not None
        held = set(self.split.held)
        self._filling = True
        try:
            self.table.setRowCount(len(self.preview.clips))
            for row, clip in enumerate(self.preview.clips):
                name = QTableWidgetItem(clip.name)
                name.setToolTip(clip.video)
                name.setData(Qt.ItemDataRole.UserRole, clip.video)
                tick = QTableWidgetItem()
                tick.setFlags(
                    Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
                )
                tick.setCheckState(Qt.CheckState.Checked if clip.video in held else Qt.CheckState.Unchecked)
                task = "nothing happening" if clip.unannotated else clip.task
                cells = [name, tick, QTableWidgetItem(task), QTableWidgetItem(f"{clip.turns}"),
                         QTableWidgetItem(f"{clip.answers}")]  # fmt: skip
                for col, item in enumerate(cells):
                    self.table.setItem(row, col, item)
        finally:
            self._filling = False

    def held_out(self) -> list[str]:
        """The videos ticked in the table (the split shown)."""
        out = []
        for row in range(self.table.rowCount()):
            if self.table.item(row, 1).checkState() == Qt.CheckState.Checked:
                out.append(self.table.item(row, 0).data(Qt.ItemDataRole.UserRole))
        return list(dict.fromkeys(out))  # a clip's conversations (asked, unasked) are one video

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if self._filling or item.column() != 1:
            return
        video = self.table.item(item.row(), 0).data(Qt.ItemDataRole.UserRole)
        chosen = [v for v in self.held_out() if v != video]  # the video's other rows follow this tick
        if item.checkState() == Qt.CheckState.Checked:
            chosen.append(video)
        self.set_held_out(chosen)

    def set_held_out(self, videos: Sequence[str]) -> None:
        """The user's choice of held-out videos ([]: automatic)."""
        self.chosen = list(videos)
        self.heldout_changed.emit(list(self.chosen))
        self.replan()

    def choose_automatically(self) -> None:
        self.set_held_out([])

    # -- a clip's conversation
    def _show_clip(self, row: int) -> None:
        if self.preview is None or not 0 <= row < len(self.preview.clips):
            return
        clip = self.preview.clips[row]
        states = ", ".join(f"{n} {k.strip('</>')}" for k, n in clip.states.items())
        head = [f"{clip.name} ({clip.turns} s; {states})", f"video: {Path(clip.video)}"]
        if clip.unannotated:
            head.append("An example of nothing happening: no question and no answer, Silence every second.")
        if self.split is not None and clip.video in self.split.held:
            head.append("Held out: scored after training, never trained on.")
        self.conversation.setPlainText("\n".join(head + [""] + clip.lines))

    def _start(self) -> None:
        self.start_requested.emit()
        self.accept()
