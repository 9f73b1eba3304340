"""The transcript panel: every question and response with stream and wall time, the state
timeline, search (matches highlighted and counted; cleared for each new run), copy, export (SRT,
WebVTT, JSON), reopening saved sessions and playing a reopened one back (a click on a line or on
the timeline plays it from there: ``ui.session_player``)."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QAbstractTextDocumentLayout, QColor, QGuiApplication, QPainter, QPalette, QTextDocument
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
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


def highlighted(text: str, query: str) -> str:
    """``text`` as HTML (escaped: the model's words are never markup) with every case-insensitive match
    of ``query`` marked."""
    if not query:
        return html.escape(text)
    parts = re.split(f"({re.escape(query)})", text, flags=re.IGNORECASE)
    return "".join(
        f'<span style="background:#ffd54f;color:#000">{html.escape(part)}</span>' if i % 2 else html.escape(part)
        for i, part in enumerate(parts)
    )


class HighlightDelegate(QStyledItemDelegate):
    """Draws a cell's text with the search's matches marked (word-wrapped like the plain cells)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.query = ""

    def _document(self, option: QStyleOptionViewItem, index: _Index) -> QTextDocument:
        doc = QTextDocument()
        doc.setDefaultFont(option.font)
        doc.setDocumentMargin(2)
        doc.setHtml(highlighted(str(index.data() or ""), self.query))
        doc.setTextWidth(max(10, option.rect.width()))
        return doc

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: _Index) -> None:
        if not self.query:
            super().paint(painter, option, index)
            return
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        doc = self._document(opt, index)
        opt.text = ""
        style = opt.widget.style() if opt.widget is not None else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        ctx = QAbstractTextDocumentLayout.PaintContext()
        selected = bool(opt.state & QStyle.StateFlag.State_Selected)
        role = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        ctx.palette.setColor(QPalette.ColorRole.Text, opt.palette.color(role))
        painter.save()
        painter.translate(opt.rect.topLeft())
        painter.setClipRect(opt.rect.translated(-opt.rect.topLeft()))
        doc.documentLayout().draw(painter, ctx)
        painter.restore()


class TranscriptPanel(QWidget):
    open_requested = Signal()  # the user wants to reopen a saved session
    play_requested = Signal(float)  # play the reopened session back from this stream second
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
        self.search.textChanged.connect(self._search)
        self.matches = QLabel()
        self.matches.setToolTip("Lines that hold the search, of all lines")
        self.delegate = HighlightDelegate(self)
        self.reopened = False  # a saved session is shown (not a run): lines and timeline play it back

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
        self.table.setItemDelegateForColumn(3, self.delegate)
        # Rows as tall as their wrapped text (never cut after two lines): new rows at once, all rows once
        # the text column's width settles after a resize.
        self._rewrap = QTimer(self)
        self._rewrap.setSingleShot(True)
        self._rewrap.timeout.connect(self.table.resizeRowsToContents)
        header.sectionResized.connect(lambda col, _old, _new: self._rewrap.start(60) if col == 3 else None)
        self.proxy.rowsInserted.connect(
            lambda _parent, first, last: [self.table.resizeRowToContents(r) for r in range(first, last + 1)]
        )
        self.proxy.modelReset.connect(lambda: self._rewrap.start(0))
        self.proxy.layoutChanged.connect(lambda: self._rewrap.start(0))
        self.table.clicked.connect(self._line_clicked)
        self.timeline.seek_requested.connect(lambda t: self.play_requested.emit(t) if self.reopened else None)

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
        self.play_button = QPushButton("Play back")
        self.play_button.setToolTip(
            "Play the reopened session with its video and what the model said (or click a line)"
        )
        self.play_button.clicked.connect(lambda _checked=False: self.play_requested.emit(0.0))
        self.play_button.hide()

        buttons = QHBoxLayout()
        buttons.addWidget(self.copy_button)
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.play_button)
        buttons.addStretch(1)
        buttons.addWidget(self.open_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.timeline)
        layout.addWidget(self.legend)
        search_row = QHBoxLayout()
        search_row.addWidget(self.search, 1)
        search_row.addWidget(self.matches)
        layout.addLayout(search_row)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)

    # -- content
    def set_session(self, session: Session, reopened: bool = False) -> None:
        self.session = session
        self.reopened = reopened
        if not reopened:
            self.search.clear()  # a new run starts unfiltered: last run's search would hide its lines
        self.play_button.setVisible(reopened)
        self.table.setToolTip("Click a line to play the session from there" if reopened else "")
        self.model.set_entries(session.entries)
        self._count()
        self.timeline.set_spans(session.states)
        name = Path(session.meta.source).name if session.meta.source else ""
        self.title.setText(f"Transcript: {'reopened ' if reopened else ''}{name}".rstrip(": "))
        self.table.scrollToBottom()

    def on_entries_added(self, entries: list[TranscriptEntry]) -> None:
        at_end = self.table.verticalScrollBar().value() >= self.table.verticalScrollBar().maximum() - 2
        self.model.append(entries)
        self._count()
        if at_end:
            self.table.scrollToBottom()

    def on_step_finished(self, report: Any) -> None:
        if self.session.states:
            self.timeline.add_span(self.session.states[-1])

    def _search(self, text: str) -> None:
        self.proxy.setFilterFixedString(text)
        self.delegate.query = text if text.strip() else ""
        self.table.viewport().update()
        self._count()

    def _count(self) -> None:
        query = self.search.text()
        shown, total = self.proxy.rowCount(), self.model.rowCount()
        self.matches.setText(f"{shown} of {total}" if query else "")
        self.matches.setVisible(bool(query))

    def _line_clicked(self, index: QModelIndex) -> None:
        if self.reopened and index.isValid():
            self.play_requested.emit(self.model.entries[self.proxy.mapToSource(index).row()].t)

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
            except ValueError as e:  # the output guard refused it (the video itself, a model's file, a device)
                self.export_failed.emit(str(e))
