"""Pick a saved session to reopen in the transcript panel."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.session import SessionSummary, list_sessions, sessions_dir


class SessionsDialog(QDialog):
    def __init__(self, root: Path | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Open a saved session")
        self.resize(560, 380)
        self.selected_path: Path | None = None
        self._root = root
        self.list = QListWidget()
        self.list.itemDoubleClicked.connect(lambda _item: self.accept())
        folder = sessions_dir(root)
        info = QLabel(f"Sessions are saved as they happen in {folder}")
        info.setWordWrap(True)
        info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        browse = QPushButton("Other file...")
        browse.clicked.connect(self._browse)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel)
        buttons.addButton(browse, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(info)
        layout.addWidget(self.list, 1)
        layout.addWidget(buttons)
        self.refresh()

    def refresh(self) -> list[SessionSummary]:
        self.list.clear()
        summaries = list_sessions(self._root)
        for s in summaries:
            item = QListWidgetItem(s.title)
            item.setData(Qt.ItemDataRole.UserRole, str(s.path))
            item.setToolTip(str(s.path))
            self.list.addItem(item)
        if summaries:
            self.list.setCurrentRow(0)
        else:
            self.list.addItem("No saved sessions yet.")
        return summaries

    def accept(self) -> None:
        item = self.list.currentItem()
        path = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        if path:
            self.selected_path = Path(path)
            super().accept()

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open session", str(sessions_dir(self._root)), "Sessions (*.jsonl)")
        if path:
            self.selected_path = Path(path)
            super().accept()
