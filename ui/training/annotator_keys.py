"""The annotator's keys, in one table (the annotator's docstring lists them for users).

On the player, the strip, the item list (and the library's clip list, which installs the
annotator as its event filter) a key is the annotator's, not a window shortcut's: it is claimed
on ShortcutOverride and acted on at the key press. Text fields keep their own keys except
Escape (leave the field, cancel the form) and Enter in the seconds fields (save).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeyEvent

if TYPE_CHECKING:
    from ui.training.annotator import Annotator

KEYS_HINT = (
    "Space play · ←/→ 1 s · Shift+←/→ or , . 1 frame · J K L · [ ] mark an event · A answer · Q question · + − 0 zoom"
)


def filter_key(a: Annotator, obj: QObject, event: QEvent) -> bool:
    """The annotator's eventFilter: True when the key was the annotator's."""
    kind = event.type()
    if kind not in (QEvent.Type.KeyPress, QEvent.Type.ShortcutOverride):
        return False
    key_event: QKeyEvent = event  # type: ignore[assignment]
    if obj in a.text_fields():
        return _text_key(a, obj, key_event)
    action = action_for(a, key_event, obj is a.items)
    if action is None:
        return False
    if kind == QEvent.Type.ShortcutOverride:
        event.accept()  # ours, not a window shortcut's: the key press comes to us next
        return True
    action()
    return True


def _text_key(a: Annotator, obj: QObject, event: QKeyEvent) -> bool:
    key = event.key()
    if key == Qt.Key.Key_Escape:
        if event.type() == QEvent.Type.ShortcutOverride:
            event.accept()
            return True
        if obj is a.task.lineEdit():
            a.task.setCurrentText(a.clip.task_type if a.clip else "")
            a.view.setFocus(Qt.FocusReason.OtherFocusReason)
        else:
            a.cancel_form()
        return True
    if (
        key in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        and event.type() == QEvent.Type.KeyPress
        and obj in (a.form.start, a.form.end, a.form.at)
    ):
        a.submit()
        return True
    return False


def action_for(a: Annotator, event: QKeyEvent, in_list: bool) -> Callable[[], Any] | None:
    """What the key does on the player, the strip or a list; None: not the annotator's key."""
    key, mods = event.key(), event.modifiers()
    ctrl = bool(mods & Qt.KeyboardModifier.ControlModifier)
    shift = bool(mods & Qt.KeyboardModifier.ShiftModifier)
    K = Qt.Key  # noqa: N806
    if ctrl:
        if key == K.Key_Z:
            return a.redo if shift else a.undo
        if key == K.Key_Y:
            return a.redo
        return None
    if mods & (Qt.KeyboardModifier.AltModifier | Qt.KeyboardModifier.MetaModifier):
        return None
    if in_list:
        if key in (K.Key_Delete, K.Key_Backspace):
            return a.delete_selected
        if key in (K.Key_Return, K.Key_Enter):
            return a.edit_selected
        if key in (K.Key_Up, K.Key_Down, K.Key_PageUp, K.Key_PageDown, K.Key_Home, K.Key_End):
            return None  # the list's own navigation
    table: dict[Any, Callable[[], Any]] = {
        K.Key_Space: a.toggle_play,
        K.Key_Left: (lambda: a.step_frames(-1)) if shift else (lambda: a.step_seconds(-1)),
        K.Key_Right: (lambda: a.step_frames(1)) if shift else (lambda: a.step_seconds(1)),
        K.Key_Comma: lambda: a.step_frames(-1),
        K.Key_Period: lambda: a.step_frames(1),
        K.Key_Home: lambda: (a.pause(), a.seek(0)),
        K.Key_End: lambda: (a.pause(), a.seek(a.frames - 1)),
        K.Key_J: lambda: a.play(-1),
        K.Key_K: a.pause,
        K.Key_L: lambda: a.play(1),
        K.Key_BracketLeft: a.mark_start,
        K.Key_BracketRight: a.mark_end,
        K.Key_A: a.answer_here,
        K.Key_Q: a.question_here,
        K.Key_Plus: a.zoom_in,
        K.Key_Equal: a.zoom_in,
        K.Key_Minus: a.zoom_out,
        K.Key_0: a.zoom_fit,
    }
    return table.get(key)


__all__ = ["KEYS_HINT", "action_for", "filter_key"]
