"""The window's one notice system: a strip at the top of the window for errors, warnings and hints,
so the live session keeps going while the user reads.

Notices are keyed by their cause (``topic``: source, model, engine, start, voice, ...): a new notice of a
cause replaces the old one, the same notice again is folded into it ("(3x)"), and when the cause goes
away (:meth:`MessageBanner.clear_topic`: a source opened, a model loaded, the field was filled) its
notice goes too. The newest notice shows, unless a graver one still holds (an info does not cover an
error); the others are behind "+N more", a menu that brings any of them up. Every message also goes
to the history (View > Messages).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
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
_RANK = {"error": 2, "warning": 1}  # anything else: 0


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


@dataclass
class Notice:
    """A notice that still holds: the latest words for its cause, and how often they came."""

    level: str
    text: str
    topic: str
    count: int = 1

    def shown(self) -> str:
        return self.text + (f"  ({self.count}x)" if self.count > 1 else "")


class MessageBanner(QFrame):
    """The strip. It floats over the top of the window's content rather than taking a row of the layout, so
    nothing below it jumps when a notice comes, changes height or goes (the window places it: ``changed``)."""

    changed = Signal()  # shown, hidden or new words: the owner places it again

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.more = QToolButton()
        self.more.setAutoRaise(True)
        self.more.setToolTip("Other notices that still hold; every message: View > Messages (Ctrl+Shift+M)")
        self.more.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.more.setMenu(QMenu(self.more))
        self.more.menu().aboutToShow.connect(self._fill_more)
        self.more.hide()
        row = dismissable_row(self, self.label, self.more)
        close = row.itemAt(row.count() - 1).widget()
        close.clicked.disconnect()
        close.clicked.connect(lambda _checked=False: self.dismiss())
        self.history: list[Message] = []  # newest last
        self.notices: dict[str, Notice] = {}  # by cause, oldest first: the last one shows
        self._shown = ""  # the topic on screen
        super().hide()

    # -- what callers use
    @property
    def level(self) -> str:
        notice = self.notices.get(self._shown)
        return notice.level if notice is not None else ""

    @property
    def topic(self) -> str:
        return self._shown

    def show_message(self, level: str, text: str, topic: str = "info") -> None:
        """Show ``text`` as the notice of its cause ``topic``: it replaces that cause's last notice (or
        folds into it when the words are the same) and comes to the front."""
        self.history = [*self.history, Message(time.time(), level, text, topic)][-HISTORY:]
        old = self.notices.pop(topic, None)
        if old is not None and (old.level, old.text) == (level, text):
            old.count += 1
            self.notices[topic] = old
        else:
            self.notices[topic] = Notice(level, text, topic)
        shown = self.notices.get(self._shown)
        if shown is None or shown.topic == topic or _RANK.get(level, 0) >= _RANK.get(shown.level, 0):
            self._show(topic)
        else:
            self._show(self._shown)  # stays, with one more behind it

    def clear_topic(self, topic: str) -> None:
        """The cause is gone: its notice goes (the history keeps it); the newest other one shows."""
        if self.notices.pop(topic, None) is not None:
            self._show(self._gravest())

    def dismiss(self) -> None:
        """The user closed the notice on screen: the next newest shows, if any."""
        self.clear_topic(self._shown)

    def hide(self) -> None:
        """Hide the strip and forget every notice (the history keeps them)."""
        self.notices.clear()
        self._show("")

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""

    def notice_texts(self) -> list[str]:
        """Every notice that still holds, newest first."""
        return [n.shown() for n in reversed(self.notices.values())]

    # -- drawing
    def _gravest(self) -> str:
        """The topic of the gravest notice that still holds, the newest of its level; "" when none."""
        best = ""
        for topic, notice in self.notices.items():  # oldest first: a later equal one wins
            if not best or _RANK.get(notice.level, 0) >= _RANK.get(self.notices[best].level, 0):
                best = topic
        return best

    def _show(self, topic: str) -> None:
        notice = self.notices.get(topic)
        self._shown = topic if notice is not None else ""
        if notice is None:
            self.label.setText("")
            super().hide()
            self.changed.emit()
            return
        self.label.setText(notice.shown())
        self.setStyleSheet(
            f"QFrame, QLabel, QToolButton {{ {_STYLES.get(notice.level, _STYLES['info'])} }} QLabel, QToolButton {{ border: none; }}"
        )
        others = len(self.notices) - 1
        self.more.setText(f"+{others} more")
        self.more.setVisible(others > 0)
        self.show()
        self.raise_()
        self.changed.emit()

    def _fill_more(self) -> None:
        menu = self.more.menu()
        menu.clear()
        for notice in reversed(list(self.notices.values())):
            if notice.topic == self._shown:
                continue
            label = notice.shown() if len(notice.shown()) <= 90 else notice.shown()[:89] + "\u2026"
            action = menu.addAction(f"{notice.level.capitalize()}: {label}")
            action.triggered.connect(lambda _checked=False, t=notice.topic: self._show(t))


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
