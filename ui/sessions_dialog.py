"""Pick a saved session to reopen in the transcript panel; rename or delete saved ones."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.session import SessionSummary, delete_session, list_sessions, rename_session, sessions_dir


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
        self.rename_button = QPushButton("Rename...")
        self.rename_button.clicked.connect(self.rename_selected)
        self.delete_button = QPushButton("Delete...")
        self.delete_button.clicked.connect(self.delete_selected)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel)
        for b in (self.rename_button, self.delete_button, browse):
            buttons.addButton(b, QDialogButtonBox.ButtonRole.ActionRole)
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

    def current_path(self) -> Path | None:
        item = self.list.currentItem()
        path = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        return Path(path) if path else None

    def accept(self) -> None:
        path = self.current_path()
        if path is not None:
            self.selected_path = path
            super().accept()

    def rename_selected(self, title: str | None = None) -> bool:
        """Give the selected session a name (asked for when ``title`` is None)."""
        path = self.current_path()
        if path is None:
            return False
        if title is None:
            title, ok = QInputDialog.getText(self, "Rename session", "Name:")
            if not ok:
                return False
        try:
            rename_session(path, title)
        except (OSError, ValueError) as e:
            QMessageBox.warning(self, "Rename session", f"Could not rename {path.name}: {e}")
            return False
        self.refresh()
        return True

    def delete_selected(self, confirm: bool = True) -> bool:
        """Delete the selected session file, after asking."""
        path = self.current_path()
        if path is None:
            return False
        if confirm:
            answer = QMessageBox.question(
                self, "Delete session", f"Delete {self.list.currentItem().text()}?\nThe file {path} is removed."
            )
            if answer != QMessageBox.StandardButton.Yes:
                return False
        try:
            delete_session(path)
        except (OSError, ValueError) as e:
            QMessageBox.warning(self, "Delete session", f"Could not delete {path.name}: {e}")
            return False
        self.refresh()
        return True

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open session", str(sessions_dir(self._root)), "Sessions (*.jsonl)")
        if path:
            self.selected_path = Path(path)
            super().accept()
