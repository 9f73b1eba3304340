"""One way to add a menu action (the window's menus and the Voice menu)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu


def menu_action(
    parent: QObject, menu: QMenu, text: str, slot: Callable[..., Any], shortcut: Any = None, checkable: bool = False
) -> QAction:
    """An action in ``menu`` calling ``slot`` (with the checked state when ``checkable``)."""
    action = QAction(text, parent)
    action.setCheckable(checkable)
    if shortcut is not None:
        action.setShortcut(shortcut)
    action.triggered.connect(lambda checked=False: slot(checked) if checkable else slot())
    menu.addAction(action)
    return action
