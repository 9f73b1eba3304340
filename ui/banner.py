"""An inline message strip at the top of the window: errors and warnings without a modal dialog,
so the live session keeps going while the user reads. The newest message shows; every message is
kept in a history (View > Messages); a message that no longer holds (a camera error once a source
opens, a load error once a model loads) is cleared by its topic."""

from __future__ import annotations

import time
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

_STYLES = {
    "error": "background: #5c1f24; color: #ffe3e3; border: 1px solid #a8434b;",
    "warning": "background: #5a4711; color: #fff4d6; border: 1px solid #a88a2c;",
    "info": "background: #1d3b57; color: #e2f0ff; border: 1px solid #3f6e99;",
}
HISTORY = 200  # messages kept


@dataclass(frozen=True)
class Message:
    wall: float
    level: str  # error | warning | info
    text: str
    topic: str  # source | model | engine | session | hint | info ...


def dismissable_row(strip: QFrame, label: QLabel, *extras: QWidget) -> QHBoxLayout:
    """A message strip's layout: the text, ``extras`` beside it, and a close button that hides it."""
    close = QToolButton(text="✕")
    close.setAutoRaise(True)
    close.setToolTip("Dismiss")
    close.clicked.connect(strip.hide)
    row = QHBoxLayout(strip)
    row.setContentsMargins(8, 4, 4, 4)
    row.addWidget(label, 1)
    for w in (*extras, close):
        row.addWidget(w, 0, Qt.AlignmentFlag.AlignTop)
    return row


class MessageBanner(QFrame):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.more = QLabel()
        self.more.setToolTip("Other messages: View > Messages (Ctrl+Shift+M)")
        dismissable_row(self, self.label, self.more)
        self.level = ""
        self.topic = ""
        self.history: list[Message] = []  # newest last
        self._unseen = 0  # messages that arrived while this one was up
        self.hide()

    def show_message(self, level: str, text: str, topic: str = "info") -> None:
        """Show ``text``. Every message goes to the history; an info does not cover an error or a
        warning still on screen, it is counted there instead ("+1 more")."""
        self.history = [*self.history, Message(time.time(), level, text, topic)][-HISTORY:]
        if self.isVisible():
            self._unseen += 1
            self.more.setText(f"+{self._unseen} more")
            if level == "info" and self.level in ("error", "warning"):
                return
        self.level, self.topic = level, topic
        self.label.setText(text)
        self.setStyleSheet(
            f"QFrame, QLabel, QToolButton {{ {_STYLES.get(level, _STYLES['info'])} }} QLabel, QToolButton {{ border: none; }}"
        )
        self.show()

    def clear_topic(self, topic: str) -> None:
        """What the shown message said no longer holds: hide it (the history keeps it)."""
        if self.isVisible() and self.topic == topic:
            self.hide()

    def hide(self) -> None:
        self._unseen = 0
        self.more.setText("")
        super().hide()

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""


class MessageHistoryDialog(QDialog):
    """Every message of this session of the app, newest first."""

    def __init__(self, history: list[Message], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Messages")
        self.resize(640, 360)
        self.list = QListWidget()
        self.list.setWordWrap(True)
        for m in reversed(history):
            stamp = time.strftime("%H:%M:%S", time.localtime(m.wall))
            QListWidgetItem(f"{stamp}  {m.level.upper():8} {m.text}", self.list)
        if not history:
            QListWidgetItem("No messages yet.", self.list)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list)
        layout.addWidget(buttons)
