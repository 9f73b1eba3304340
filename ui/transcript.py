"""The transcript panel: every question and response with stream and wall time, the state
timeline, search, copy, export (SRT, WebVTT, JSON) and reopening saved sessions."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.session import EXPORT_FORMATS, QUESTION, Session, TranscriptEntry, format_clock
from ui.subtitles import display_text
from ui.timeline import StateTimeline, timeline_legend

EXPORT_FILTERS = {
    "srt": "SubRip subtitles (*.srt)",
    "vtt": "WebVTT subtitles (*.vtt)",
    "json": "JSON transcript (*.json)",
}
_Index = QModelIndex | QPersistentModelIndex


WHO = {"typed": "You", "voice": "Voice", "preset": "Task"}  # who asked; answers say "Model"
COLUMN_TIPS = (
    "Time in the stream (the video's clock)",
    "Time of day it happened",
    "Who: your question, the task's standing instruction, or the model's answer",
    "What was asked or answered",
)


class TranscriptModel(QAbstractTableModel):
    COLUMNS = ("Stream", "Clock", "Who", "Text")

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.entries: list[TranscriptEntry] = []

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802, B008 - Qt API
        return 0 if parent.isValid() else len(self.entries)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: N802
        if orientation != Qt.Orientation.Horizontal:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.COLUMNS[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            return COLUMN_TIPS[section]
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        e = self.entries[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return format_clock(e.t)
            if col == 1:
                return time.strftime("%H:%M:%S", time.localtime(e.wall))
            if col == 2:
                return WHO.get(e.origin, "You") if e.kind == QUESTION else "Model"
            return display_text(e.text)
        if role == Qt.ItemDataRole.ToolTipRole and col == 3:
            return display_text(e.text)
        if role == Qt.ItemDataRole.ForegroundRole and e.kind == QUESTION:
            return QColor(90, 150, 240)
        return None

    def set_entries(self, entries: list[TranscriptEntry]) -> None:
        self.beginResetModel()
        self.entries = list(entries)
        self.endResetModel()

    def append(self, entries: list[TranscriptEntry]) -> None:
        if not entries:
            return
        first = len(self.entries)
        self.beginInsertRows(QModelIndex(), first, first + len(entries) - 1)
        self.entries.extend(entries)
        self.endInsertRows()


class TranscriptPanel(QWidget):
    open_requested = Signal()  # the user wants to reopen a saved session
    exported = Signal(str)  # path written
    export_failed = Signal(str)  # user-facing message

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = Session()
        self.hold_seconds = 6.0
        self.model = TranscriptModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setFilterKeyColumn(3)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)

        self.title = QLabel("Transcript")
        self.title.setStyleSheet("font-weight: 600")
        self.timeline = StateTimeline()
        self.legend = timeline_legend()
        self.search = QLineEdit(placeholderText="Search the transcript", clearButtonEnabled=True)
        self.search.textChanged.connect(self.proxy.setFilterFixedString)

        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setWordWrap(True)
        self.table.verticalHeader().hide()
        self.table.setShowGrid(False)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        for col in (0, 1):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        # "Who" holds a few fixed words: as wide as the longest, so "Model" is never cut to "M...".
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Fixed)
        widest = max(self.table.fontMetrics().horizontalAdvance(w) for w in (*WHO.values(), "Model", "Who"))
        header.resizeSection(2, widest + 16)
        header.setStretchLastSection(True)

        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the selected lines (all lines when none is selected)")
        self.copy_button.clicked.connect(self.copy_to_clipboard)
        self.export_button = QToolButton(text="Export")
        self.export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.export_button)
        for fmt in EXPORT_FORMATS:
            menu.addAction(EXPORT_FILTERS[fmt].split(" (")[0], lambda f=fmt: self.export_dialog(f))
        self.export_button.setMenu(menu)
        self.open_button = QPushButton("Open session...")
        self.open_button.clicked.connect(self.open_requested)

        buttons = QHBoxLayout()
        buttons.addWidget(self.copy_button)
        buttons.addWidget(self.export_button)
        buttons.addStretch(1)
        buttons.addWidget(self.open_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.timeline)
        layout.addWidget(self.legend)
        layout.addWidget(self.search)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)

    # -- content
    def set_session(self, session: Session, reopened: bool = False) -> None:
        self.session = session
        self.model.set_entries(session.entries)
        self.timeline.set_spans(session.states)
        name = Path(session.meta.source).name if session.meta.source else ""
        self.title.setText(f"Transcript: {'reopened ' if reopened else ''}{name}".rstrip(": "))
        self.table.scrollToBottom()

    def on_entries_added(self, entries: list[TranscriptEntry]) -> None:
        at_end = self.table.verticalScrollBar().value() >= self.table.verticalScrollBar().maximum() - 2
        self.model.append(entries)
        if at_end:
            self.table.scrollToBottom()

    def on_step_finished(self, report: Any) -> None:
        if self.session.states:
            self.timeline.add_span(self.session.states[-1])

    def texts(self) -> list[str]:
        return [e.text for e in self.model.entries]

    def visible_entries(self) -> list[TranscriptEntry]:
        return [
            self.model.entries[self.proxy.mapToSource(self.proxy.index(r, 0)).row()]
            for r in range(self.proxy.rowCount())
        ]

    # -- copy and export
    def copy_to_clipboard(self) -> str:
        rows = sorted({self.proxy.mapToSource(i).row() for i in self.table.selectionModel().selectedRows()})
        entries = [self.model.entries[r] for r in rows] if rows else self.visible_entries()
        text = self.session.plain_text(entries)
        QGuiApplication.clipboard().setText(text)
        return text

    def export_to(self, path: str | Path, fmt: str | None = None) -> Path:
        written = self.session.export(path, fmt, hold=self.hold_seconds)
        self.exported.emit(str(written))
        return written

    def export_dialog(self, fmt: str) -> None:
        stem = Path(self.session.meta.source).stem if self.session.meta.source else "transcript"
        path, _ = QFileDialog.getSaveFileName(self, "Export transcript", f"{stem}.{fmt}", EXPORT_FILTERS[fmt])
        if path:
            if not path.lower().endswith(f".{fmt}"):
                path += f".{fmt}"
            try:
                self.export_to(path, fmt)
            except OSError as e:
                self.export_failed.emit(f"Could not write {path}: {e.strerror or e}. Choose another folder.")
