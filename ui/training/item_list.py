"""The annotator's list of a clip's events, instant answers and questions (time order), with
every problem of every item (the selected item's all listed under the list), and the notice
that the released converter would turn a question into the clip's instruction."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QRadioButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.session import format_clock
from app.training.library import QUESTION, RESPONSE, Clip, ItemRef, Problem, describe_item
from model.presets import INSTRUCTION_FROM_KEY
from model.presets import instruction_trap as _released_rule_trap
from ui.training.strip import INSTRUCTION_COLOR, KIND_COLORS, PROBLEM_BACKGROUND, PROBLEM_COLOR, plain_tip

SHOWN_PROBLEMS = 4  # of the other items, under the list (all of them in each row's tooltip)


def instruction_from(clip: Clip) -> str:
    """The clip's choice: "task" (Live's instruction on turn 0) or "first_question" (the released rule)."""
    return str(dict(clip.extra).get(INSTRUCTION_FROM_KEY, "task"))


def instruction_trap(clip: Clip) -> str | None:
    """The plain-words explanation when the released converter would make a question of this clip
    its instruction from 0:00 (``model.presets.instruction_trap``), else None."""
    return _released_rule_trap(clip.to_raw(), clip.n_turns) if clip.meta is not None else None


class InstructionNotice(QFrame):
    """Shown above the list when a question would become the clip's instruction; the user chooses."""

    choice_changed = Signal(str)  # "task" | "first_question"

    CHOICES = (
        ("task", "Keep Live's instruction (recommended)"),
        ("first_question", "Use the question as the clip's instruction from 0:00, as the released converter does"),
    )

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet(f"InstructionNotice {{ border: 1px solid {INSTRUCTION_COLOR.name()}; }}")
        self.text = QLabel()
        self.text.setTextFormat(Qt.TextFormat.PlainText)
        self.text.setWordWrap(True)
        self.group = QButtonGroup(self)
        self.buttons: dict[str, QRadioButton] = {}
        box = QVBoxLayout(self)
        box.setContentsMargins(8, 6, 8, 6)
        box.setSpacing(3)
        box.addWidget(self.text)
        for key, label in self.CHOICES:
            b = QRadioButton(label)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            self.group.addButton(b)
            self.buttons[key] = b
            b.clicked.connect(lambda _=False, key=key: self._clicked(key))
            box.addWidget(b)
        self.value = "task"
        self.hide()

    def show_for(self, clip: Clip | None) -> None:
        trap = instruction_trap(clip) if clip is not None else None
        if trap is None:
            self.hide()
            return
        self.text.setText(trap)
        self.value = instruction_from(clip)  # type: ignore[arg-type]
        self.buttons.get(self.value, self.buttons["task"]).setChecked(True)
        self.show()

    def _clicked(self, key: str) -> None:
        if key != self.value:
            self.value = key
            self.choice_changed.emit(key)


class ItemList(QWidget):
    """The items of one clip as rows (kind, when, text), their problems, Edit and Delete."""

    edit_requested = Signal()
    delete_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.clip: Clip | None = None
        self.problems: list[Problem] = []
        self.notice = InstructionNotice()
        self.tree = QTreeWidget()
        t = self.tree
        t.setColumnCount(3)
        t.setHeaderLabels(["Kind", "When", "Text"])
        t.setRootIsDecorated(False)
        t.setUniformRowHeights(True)
        t.setAlternatingRowColors(True)
        t.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = t.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        t.itemDoubleClicked.connect(lambda *_: self.edit_requested.emit())
        self.edit_button = QPushButton("Edit")
        self.edit_button.clicked.connect(self.edit_requested)
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(self.delete_requested)
        for b in (self.edit_button, self.delete_button):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.problems_label = QLabel()
        self.problems_label.setTextFormat(Qt.TextFormat.PlainText)
        self.problems_label.setWordWrap(True)
        self.problems_label.setStyleSheet(f"color: {PROBLEM_COLOR.name()}")
        self.problems_label.hide()
        self.counts = QLabel()
        self.counts.setTextFormat(Qt.TextFormat.PlainText)
        buttons = QHBoxLayout()
        buttons.addWidget(self.counts, 1)
        buttons.addWidget(self.edit_button)
        buttons.addWidget(self.delete_button)
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(4)
        box.addWidget(self.notice)
        box.addWidget(t, 1)
        box.addWidget(self.problems_label)
        box.addLayout(buttons)

    def problems_of(self, ref: ItemRef) -> list[str]:
        return [p.message for p in self.problems if p.ref == ref]

    def clear(self) -> None:
        self.clip, self.problems = None, []
        self.tree.clear()
        self.counts.setText("")
        self.problems_label.hide()
        self.notice.hide()

    def fill(self, clip: Clip, problems: list[Problem]) -> None:
        """Rows of ``clip``'s items in time order, the selection kept; problems in red with all of
        their reasons in the row's tooltip."""
        self.clip, self.problems = clip, list(problems)
        self.notice.show_for(clip)
        selected = self.selected_ref()
        self.tree.blockSignals(True)
        self.tree.clear()
        rows: list[tuple[tuple, ItemRef, str, str, str, str]] = []
        for i, q in enumerate(clip.questions):
            s = q.second
            when = format_clock(s) if s is not None else "?"
            key = (s if s is not None else -1, 0, i)
            rows.append((key, ItemRef(QUESTION, i), "question", when, q.content, f"time {q.time!r}"))
        for i, r in enumerate(clip.responses):
            span = r.span
            if span is not None:
                when, key = f"{format_clock(span[0])} – {format_clock(span[1])}", span[0]
                raw = f"st_time {r.st_time!r}, end_time {r.end_time!r}"
            else:
                s = r.second
                when, key = (format_clock(s) if s is not None else "?"), (s if s is not None else -1)
                raw = f"time {r.time!r}"
            rows.append(((key, 1, i), ItemRef(RESPONSE, i), r.kind, when, r.content, raw))
        rows.sort(key=lambda row: row[0])
        n_bad = 0
        for _, ref, kind, when, text, raw in rows:
            bad = self.problems_of(ref)
            item = QTreeWidgetItem([("⚠ " if bad else "") + kind.capitalize(), when, text or "(no text)"])
            item.setData(0, Qt.ItemDataRole.UserRole, ref)
            item.setForeground(0, QBrush(KIND_COLORS[kind].darker(130) if not bad else PROBLEM_COLOR))
            tip = f"{kind.capitalize()} {when}: {text}\nIn the file: {raw}"
            if bad:
                n_bad += 1
                tip += "\n\nProblems:\n" + "\n".join(f"• {m}" for m in bad)
                for col in range(3):
                    item.setForeground(col, QBrush(PROBLEM_COLOR))
                    item.setBackground(col, QBrush(PROBLEM_BACKGROUND))
            elif not text:
                item.setForeground(2, QBrush(QColor(140, 140, 150)))
            for col in range(3):
                item.setToolTip(col, plain_tip(tip))
            self.tree.addTopLevelItem(item)
            if ref == selected:
                self.tree.setCurrentItem(item)
        self.tree.blockSignals(False)
        n_events, n_answers, n_questions = len(clip.events), len(clip.answers), len(clip.questions)
        parts = [
            f"{n_events} event{'s' if n_events != 1 else ''}",
            f"{n_answers} answer{'s' if n_answers != 1 else ''}",
            f"{n_questions} question{'s' if n_questions != 1 else ''}",
        ]
        if n_bad:
            parts.append(f"{n_bad} with problems")
        self.counts.setText(" · ".join(parts))
        self.show_problems()

    def show_problems(self) -> None:
        """Under the list: every problem of the selected item, then the others (the first few)."""
        clip = self.clip
        if clip is None or not self.problems:
            self.problems_label.hide()
            return
        selected = self.selected_ref()
        lines: list[str] = []
        mine = self.problems_of(selected) if selected is not None else []
        if mine:
            lines.append(f"{describe_item(clip.item(selected)).capitalize()}:")  # type: ignore[arg-type]
            lines += [f"• {m}" for m in mine]
        others = [p for p in self.problems if p.ref is None or p.ref != selected]
        if others and mine:
            lines.append("Other items:")
        for p in others[:SHOWN_PROBLEMS]:
            lines.append(
                f"• {p.message}" if p.ref is None else f"• {describe_item(clip.item(p.ref)).capitalize()}: {p.message}"
            )
        if len(others) > SHOWN_PROBLEMS:
            lines.append(f"… and {len(others) - SHOWN_PROBLEMS} more (select or hover the red items)")
        self.problems_label.setText("\n".join(lines))
        self.problems_label.show()

    def selected_ref(self) -> ItemRef | None:
        item = self.tree.currentItem()
        return None if item is None else item.data(0, Qt.ItemDataRole.UserRole)

    def select_ref(self, ref: ItemRef | None) -> None:
        """Select the item's row without telling anyone (the annotator updates what follows)."""
        self.tree.blockSignals(True)
        self.tree.setCurrentItem(self.row_of(ref) if ref is not None else None)  # type: ignore[arg-type]
        self.tree.blockSignals(False)

    def row_of(self, ref: ItemRef) -> QTreeWidgetItem | None:
        for k in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(k)
            if item.data(0, Qt.ItemDataRole.UserRole) == ref:
                return item
        return None

    def set_selected_enabled(self, has: bool) -> None:
        self.edit_button.setEnabled(has)
        self.delete_button.setEnabled(has)


__all__ = ["INSTRUCTION_FROM_KEY", "InstructionNotice", "ItemList", "instruction_from", "instruction_trap"]
