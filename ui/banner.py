"""An inline message strip at the top of the window: errors and warnings without a modal dialog,
so the live session keeps going while the user reads."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget

_STYLES = {
    "error": "background: #5c1f24; color: #ffe3e3; border: 1px solid #a8434b;",
    "warning": "background: #5a4711; color: #fff4d6; border: 1px solid #a88a2c;",
    "info": "background: #1d3b57; color: #e2f0ff; border: 1px solid #3f6e99;",
}


class MessageBanner(QFrame):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton(text="✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 4, 4, 4)
        row.addWidget(self.label, 1)
        row.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.level = ""
        self.history: list[tuple[float, str, str]] = []  # (wall time, level, text), newest last
        self.hide()

    def show_message(self, level: str, text: str) -> None:
        """Show ``text``; an info does not cover an error or warning the user has not dismissed."""
        self.history.append((time.time(), level, text))
        if level == "info" and self.isVisible() and self.level in ("error", "warning"):
            return
        self.level = level
        self.label.setText(text)
        self.setStyleSheet(
            f"QFrame, QLabel, QToolButton {{ {_STYLES.get(level, _STYLES['info'])} }} QLabel, QToolButton {{ border: none; }}"
        )
        self.show()

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""
