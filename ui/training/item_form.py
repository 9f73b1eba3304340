"""The annotator's form: add or edit one event, instant answer or question. Nothing is added
without its text: the Add button waits for it and Enter on an empty field says so."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QButtonGroup,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.training.library import ItemRef


def set_spin(spin: QSpinBox, value: int) -> None:
    """Set a spin box without its valueChanged (the marks follow typed values only)."""
    spin.blockSignals(True)
    spin.setValue(int(value))
    spin.blockSignals(False)


class ItemForm(QFrame):
    """Add or edit one event, instant answer or question."""

    submitted = Signal()
    cancelled = Signal()

    KINDS = (("event", "Event"), ("answer", "Answer"), ("question", "Question"))
    PLACEHOLDERS = {
        "event": "What happened (the answer given when it is over)",
        "answer": "The answer, given at this second",
        "question": "The question, asked at this second",
    }
    NEEDS_TEXT = {
        "event": "Type what happened first: an event is added with its caption.",
        "answer": "Type the answer first.",
        "question": "Type the question first.",
    }

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.editing: ItemRef | None = None
        self.title = QLabel("New event")
        self.title.setStyleSheet("font-weight: 600")
        self.kind_group = QButtonGroup(self)
        kinds = QHBoxLayout()
        kinds.setSpacing(4)
        self.kind_buttons: dict[str, QToolButton] = {}
        for key, label in self.KINDS:
            b = QToolButton(text=label, checkable=True)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            b.setMinimumWidth(72)
            self.kind_group.addButton(b)
            self.kind_buttons[key] = b
            kinds.addWidget(b)
            b.toggled.connect(self._kind_toggled)
        kinds.addStretch(1)
        self.start = self._spin(
            "Standby starts at this second: the first second the event is going on ([ at the playhead)"
        )
        self.end = self._spin("The event is over at this second: the answer comes here (] at the playhead)")
        self.at = self._spin("The second it is answered or asked at")
        self.start_label, self.end_label, self.at_label = QLabel("Start"), QLabel("End"), QLabel("At")
        times = QHBoxLayout()
        for label, spin in ((self.start_label, self.start), (self.end_label, self.end), (self.at_label, self.at)):
            times.addWidget(label)
            times.addWidget(spin)
        times.addStretch(1)
        self.text = QLineEdit()
        self.text.setClearButtonEnabled(True)
        self.text.returnPressed.connect(self.submitted)
        self.text.textChanged.connect(self._update_add)
        self.add = QPushButton("Add")
        self.add.setDefault(False)
        self.add.clicked.connect(self.submitted)
        self.cancel = QPushButton("Cancel")
        self.cancel.clicked.connect(self.cancelled)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.cancel)
        buttons.addWidget(self.add)
        self.hint = QLabel()
        self.hint.setTextFormat(Qt.TextFormat.PlainText)
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: palette(mid)")
        box = QVBoxLayout(self)
        box.setContentsMargins(10, 8, 10, 8)
        box.setSpacing(6)
        box.addWidget(self.title)
        box.addLayout(kinds)
        box.addLayout(times)
        box.addWidget(self.text)
        box.addLayout(buttons)
        box.addWidget(self.hint)
        box.addStretch(1)
        self.set_kind("event")

    def _spin(self, tip: str) -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(0, 24 * 3600)
        spin.setSuffix(" s")
        spin.setToolTip(tip)
        spin.setButtonSymbols(QAbstractSpinBox.ButtonSymbols.UpDownArrows)
        spin.setMinimumWidth(78)
        return spin

    @property
    def kind(self) -> str:
        return next((k for k, b in self.kind_buttons.items() if b.isChecked()), "event")

    def has_text(self) -> bool:
        return bool(self.text.text().strip())

    def needs_text(self) -> str:
        """What to say when there is no text to add."""
        return self.NEEDS_TEXT[self.kind]

    def set_kind(self, kind: str) -> None:
        self.kind_buttons[kind].setChecked(True)
        self._kind_toggled()

    def _kind_toggled(self, *_: Any) -> None:
        event = self.kind == "event"
        for w in (self.start_label, self.start, self.end_label, self.end):
            w.setVisible(event)
        self.at_label.setVisible(not event)
        self.at.setVisible(not event)
        self.text.setPlaceholderText(self.PLACEHOLDERS[self.kind] + " — Enter to save")
        self._update_title()

    def _update_title(self) -> None:
        name = dict(self.KINDS)[self.kind].lower()
        self.title.setText(f"Edit the {name}" if self.editing else f"New {name}")
        self.add.setText("Save" if self.editing else "Add")
        for b in self.kind_buttons.values():
            b.setEnabled(self.editing is None)
        self._update_add()

    def _update_add(self, *_: Any) -> None:
        ok = self.has_text()
        self.add.setEnabled(ok)
        self.add.setToolTip("" if ok else self.needs_text())

    def start_edit(self, ref: ItemRef, kind: str, text: str, start: int, end: int, at: int) -> None:
        self.editing = ref
        self.set_kind(kind)
        self.start.setValue(start)
        self.end.setValue(end)
        self.at.setValue(at)
        self.text.setText(text)
        self._update_title()

    def reset(self) -> None:
        self.editing = None
        self.text.clear()
        self._update_title()


__all__ = ["ItemForm", "set_spin"]
