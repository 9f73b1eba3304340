"""The annotator: a frame-accurate player (frames decoded on a worker thread, ``player.py``), the
per-second turns the converter will make of the clip's annotations on a zoomable strip with a
thumbnail row (``strip.py``, ``thumbnails.py``), and the list of its events, instant answers and
questions (``item_list.py``) with a form to add and edit them (``item_form.py``). Every edit goes
through the ``Library`` (undo/redo, saved at once).

Keys (on the player, the strip and the item list; text fields keep their own keys;
``annotator_keys.py`` holds the table):
Space play/pause; Left/Right one second; Shift+Left/Right or ``,``/``.`` one frame; Home/End;
J/K/L back, pause, forward (J or L again: faster); ``[`` mark an event's start at the playhead,
``]`` its end (then type the description, Enter adds it: nothing is added without it); A an
instant answer at the playhead; Q a question at the playhead; Enter or double-click edits the
selected item, Delete deletes it; ``+``/``-`` zoom the strip around the playhead (also Ctrl+wheel),
``0`` fits the whole clip; Escape leaves a text field; Ctrl+Z undo, Ctrl+Shift+Z or Ctrl+Y redo.

Mouse on the strip: click or drag to seek; drag an event's start or end edge to move it (one
undoable edit on release); the wheel scrolls a zoomed strip. Click a thumbnail to go there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from app.session import format_clock
from app.training.library import RESPONSE, TASK_TYPES, Clip, Edit, FrameReader, ItemRef, Library, Question
from ui.timeline import timeline_legend
from ui.training.annotator_keys import KEYS_HINT, filter_key
from ui.training.item_form import ItemForm, set_spin
from ui.training.item_list import ItemList, instruction_from
from ui.training.player import FrameView, Player, ReaderFactory
from ui.training.strip import KIND_COLORS, PROBLEM_COLOR, StripPanel, TurnStrip, plain_tip
from ui.training.thumbnails import ThumbnailRow


class Annotator(QWidget):
    """The player, the turns and the items of one clip of a ``Library``."""

    edited = Signal(list)  # ids of the clips an edit (or an undo/redo) changed; the library has saved it
    position_changed = Signal(int)  # video frame

    def __init__(self, parent: QWidget | None = None, reader_factory: ReaderFactory | None = None) -> None:
        super().__init__(parent)
        self.library: Library | None = None
        self.clip: Clip | None = None
        self._marked_start: int | None = None  # seconds marked with [ / ] for the form
        self._marked_end: int | None = None

        # Header: clip, task type, undo/redo.
        self.title = QLabel("No clip")
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        self.title.setStyleSheet("font-weight: 600; font-size: 11pt")
        self.info = QLabel()
        self.info.setTextFormat(Qt.TextFormat.PlainText)
        self.info.setStyleSheet("color: palette(mid)")
        self.task = QComboBox()
        self.task.setEditable(True)
        self.task.addItems(TASK_TYPES)
        self.task.setMinimumWidth(150)
        self.task.setToolTip("The sample's task_type (free text; kept in the annotation file)")
        self.task.activated.connect(lambda *_: self._set_task_type())
        self.task.lineEdit().editingFinished.connect(self._set_task_type)
        self.undo_button = QToolButton(text="↶ Undo")
        self.redo_button = QToolButton(text="↷ Redo")
        for b, slot in ((self.undo_button, self.undo), (self.redo_button, self.redo)):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.setAutoRaise(True)
            b.clicked.connect(slot)
        header = QHBoxLayout()
        header.addWidget(self.title)
        header.addWidget(self.info)
        header.addStretch(1)
        header.addWidget(QLabel("Task type"))
        header.addWidget(self.task)
        header.addSpacing(8)
        header.addWidget(self.undo_button)
        header.addWidget(self.redo_button)

        # Player, with the marking buttons on its transport row.
        reader_factory = reader_factory or FrameReader  # tests pass a stand-in
        self.player = Player(reader_factory)
        self.view: FrameView = self.player.view
        self.slider = self.player.slider
        self.time_label = self.player.time_label
        self.play_button = self.player.play_button
        self.player.position_changed.connect(self._position_changed)
        self.player.opened.connect(self._video_opened)
        for text, tip, slot in (
            ("[ Start", "Mark an event's start at the playhead ([)", self.mark_start),
            ("End ]", "Mark the event's end at the playhead (])", self.mark_end),
            ("+ Answer", "An instant answer at the playhead (A)", self.answer_here),
            ("+ Question", "A question asked at the playhead (Q)", self.question_here),
        ):
            b = QToolButton(text=text)
            b.setToolTip(tip)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.clicked.connect(slot)
            self.player.transport.addWidget(b)

        # The strip, its thumbnails, scroll bar and zoom.
        self.strip = TurnStrip()
        self.strip.seek_requested.connect(self.seek)
        self.strip.scrub_requested.connect(lambda frame: self.player.seek(frame, scrubbing=True))
        self.strip.span_dragged.connect(self._span_dragged)
        self.strip.setToolTip("The turns the converter makes of these annotations (what training sees)")
        self.thumbnails = ThumbnailRow(self.strip, reader_factory)
        self.thumbnails.seek_requested.connect(self.seek)
        self.strip_panel = StripPanel(self.strip, self.thumbnails)
        legend = QHBoxLayout()
        legend.addWidget(timeline_legend(), 0)
        legend.addStretch(1)
        keys = QLabel(KEYS_HINT)
        keys.setTextFormat(Qt.TextFormat.PlainText)
        keys.setStyleSheet("color: palette(mid)")
        legend.addWidget(keys)

        # Items and the form.
        self.item_list = ItemList()
        self.items = self.item_list.tree
        self.problems_label = self.item_list.problems_label
        self.counts = self.item_list.counts
        self.edit_button, self.delete_button = self.item_list.edit_button, self.item_list.delete_button
        self.notice = self.item_list.notice
        self.notice.choice_changed.connect(self._set_instruction_from)
        self.items.currentItemChanged.connect(self._current_item_changed)
        self.item_list.edit_requested.connect(self.edit_selected)
        self.item_list.delete_requested.connect(self.delete_selected)
        self.form = ItemForm()
        self.form.setMinimumWidth(300)
        self.form.submitted.connect(self.submit)
        self.form.cancelled.connect(self.cancel_form)
        self.form.start.valueChanged.connect(self._form_times_changed)
        self.form.end.valueChanged.connect(self._form_times_changed)
        for b in self.form.kind_buttons.values():
            b.clicked.connect(self._kind_clicked)
        bottom = QHBoxLayout()
        bottom.setContentsMargins(0, 0, 0, 0)
        bottom.addWidget(self.item_list, 3)
        bottom.addWidget(self.form, 2)
        bottom_widget = QWidget()
        bottom_widget.setLayout(bottom)

        box = QVBoxLayout(self)
        box.setContentsMargins(6, 6, 6, 6)
        box.setSpacing(6)
        box.addLayout(header)
        box.addWidget(self.player, 5)
        box.addWidget(self.strip_panel)
        box.addLayout(legend)
        box.addWidget(bottom_widget, 4)

        # The player's keys work on these; text fields keep their own keys (annotator_keys).
        for w in (self, self.view, self.strip, self.thumbnails, self.items):
            w.installEventFilter(self)
        for w in self.text_fields():
            w.installEventFilter(self)
        self.set_clip(None)

    def text_fields(self) -> tuple[QObject, ...]:
        return (self.form.text, self.form.start, self.form.end, self.form.at, self.task.lineEdit())

    # -- the player's state, as the annotator's
    @property
    def position(self) -> int:
        return self.player.position

    @property
    def frames(self) -> int:
        return self.player.frames

    @property
    def fps(self) -> float:
        return self.player.fps

    @property
    def direction(self) -> int:
        return self.player.direction

    @property
    def speed(self) -> int:
        return self.player.speed

    @property
    def seconds(self) -> float:
        return self.player.seconds

    @property
    def second(self) -> int:
        """The turn (stream second) at the playhead."""
        return self.clip.turn_at_frame(self.position) if self.clip else 0

    def seek(self, frame: int) -> None:
        self.player.seek(frame)

    def step_frames(self, n: int) -> None:
        self.player.step_frames(n)

    def step_seconds(self, n: int) -> None:
        """Move by whole turns (the clip's frames per turn), so the playhead stays on its frame of the second."""
        self.player.step_seconds(n)

    def play(self, direction: int = 1) -> None:
        self.player.play(direction)

    def pause(self) -> None:
        self.player.pause()

    def toggle_play(self) -> None:
        self.player.toggle_play()

    def zoom_in(self) -> None:
        self.strip.zoom_in()

    def zoom_out(self) -> None:
        self.strip.zoom_out()

    def zoom_fit(self) -> None:
        self.strip.zoom_fit()

    def _position_changed(self, frame: int) -> None:
        self.strip.set_playhead(frame)
        self.position_changed.emit(frame)

    def _video_opened(self, frames: int, error: str) -> None:
        if error and self.clip is not None and self.clip.meta is None and self.library is not None:
            self.view.placeholder = self._unreadable(self.clip)
        if frames and self.clip is not None and self.library is not None and not self.strip.frames:
            self.strip.set_turns(self.library.turns(self.clip), frames, self.clip.block)

    # -- the clip
    def set_library(self, library: Library | None) -> None:
        self.library = library
        self.set_clip(None)

    def set_clip(self, clip_id: str | None) -> None:
        """Show the clip ``clip_id`` of the library (None: nothing). The video opens on the
        player's worker thread; the old clip's thread ends on its own."""
        self.clip = self.library.find(clip_id) if (self.library is not None and clip_id) else None
        self._marked_start = self._marked_end = None
        self.form.reset()
        self.form.set_kind("event")
        self.form.hint.setText("")
        for spin in (self.form.start, self.form.end, self.form.at):
            set_spin(spin, 0)
        clip, lib = self.clip, self.library
        path = None
        if clip is None or lib is None:
            self.view.placeholder = "Choose a clip in the library, or import videos."
            self.player.open(None)
        else:
            meta = clip.meta
            path = lib.resolve(clip)
            if meta is None:
                self.view.placeholder = self._unreadable(clip)
            self.player.open(
                path,
                frames=meta.total_frames if meta else 0,
                fps=meta.fps if meta else 30.0,
                block=clip.block,
                n_turns=clip.n_turns,
            )
        enabled = clip is not None
        for w in (self.task, self.form, self.item_list, self.slider):
            w.setEnabled(enabled)
        self.strip.zoom_fit()
        self.refresh()
        self.thumbnails.set_video(path if clip is not None and clip.meta is not None else None)

    def _unreadable(self, clip: Clip) -> str:
        path = self.library.resolve(clip) if self.library is not None else clip.video_path
        return f"Cannot read the video ({clip.unreadable}): {path}. Its annotations can still be edited."

    def refresh(self) -> None:
        """Read the clip again from the library (after an edit, an undo) and redraw what shows it."""
        lib = self.library
        if self.clip is not None and lib is not None:
            current = lib.find(self.clip.id)
            if current is None:
                self.set_clip(None)
                return
            self.clip = current
        clip = self.clip
        if clip is None or lib is None:
            self.title.setText("No clip")
            self.info.setText("")
            self.strip.placeholder = ""
            self.strip.set_turns([], 0, 1)
            self.strip.set_events([])
            self.task.blockSignals(True)
            self.task.setCurrentText("")
            self.task.blockSignals(False)
            self.item_list.clear()
        else:
            self.title.setText(clip.name)
            meta = clip.meta
            self.info.setText(
                f"{format_clock(clip.duration or 0)} · {meta.fps:g} fps · {meta.total_frames} frames · {clip.n_turns} turns"
                if meta
                else "video not readable"
            )
            self.task.blockSignals(True)
            self.task.setCurrentText(clip.task_type)
            self.task.blockSignals(False)
            self.player.set_turns(clip.block, clip.n_turns)
            self.strip.placeholder = "No turns: the video cannot be read" if meta is None else ""
            self.strip.set_turns(lib.turns(clip), self.frames, clip.block)
            self.strip.set_events([(ItemRef(RESPONSE, i), *r.span) for i, r in clip.events if r.span is not None])
            self.strip.instruction_note = (
                "The clip's first question, as the released converter does (see the notice above the list)."
                if instruction_from(clip) == "first_question"
                else ""
            )
            self.item_list.fill(clip, lib.problems(clip))
            self._item_selected()
        self._update_undo_buttons()
        self._update_marks()

    def _update_undo_buttons(self) -> None:
        lib = self.library
        self.undo_button.setEnabled(bool(lib and lib.can_undo))
        self.redo_button.setEnabled(bool(lib and lib.can_redo))
        self.undo_button.setToolTip(f"Undo {lib.undo_label} (Ctrl+Z)" if lib and lib.can_undo else "Nothing to undo")
        self.redo_button.setToolTip(
            f"Redo {lib.redo_label} (Ctrl+Shift+Z)" if lib and lib.can_redo else "Nothing to redo"
        )

    # -- the item list
    def problems_of(self, ref: ItemRef) -> list[str]:
        return self.item_list.problems_of(ref)

    def selected_ref(self) -> ItemRef | None:
        return self.item_list.selected_ref()

    def select_ref(self, ref: ItemRef | None) -> None:
        """Select the item's row without moving the playhead."""
        self.item_list.select_ref(ref)
        self._item_selected()

    def row_of(self, ref: ItemRef) -> Any:
        return self.item_list.row_of(ref)

    def _current_item_changed(self, *_: Any) -> None:
        """The user chose a row: show its seconds and move the playhead to them."""
        self._item_selected()
        ref, clip = self.selected_ref(), self.clip
        if ref is not None and clip is not None:
            item = clip.item(ref)
            span = item.span if not isinstance(item, Question) else None
            second = span[0] if span else item.second
            if second is not None:
                self.pause()
                self.seek(second * clip.block)

    def _item_selected(self, *_: Any) -> None:
        ref = self.selected_ref()
        has = ref is not None and self.clip is not None
        self.item_list.set_selected_enabled(has)
        self.item_list.show_problems()
        if not has:
            self.strip.set_selection(None)
            return
        item = self.clip.item(ref)  # type: ignore[union-attr, arg-type]
        span = item.span if not isinstance(item, Question) else None
        second = item.second
        if span is None and second is not None:
            span = (second, second + 1)
        self.strip.set_selection(span, bool(self.problems_of(ref)), ref)  # type: ignore[arg-type]

    # -- edits from the strip and the notice
    def _span_dragged(self, ref: ItemRef, start: int, end: int) -> None:
        """An event's edge dragged on the strip: one undoable edit of its span."""
        lib, clip = self.library, self.clip
        if lib is None or clip is None:
            return
        edit = lib.update_item(clip.id, ref, None, start=start, end=end)
        if edit is None:
            return
        if self.form.editing == ref:
            set_spin(self.form.start, start)
            set_spin(self.form.end, end)
            self._marked_start, self._marked_end = start, end
        self.refresh()
        self.select_ref(ref)
        self.form.hint.setText(f"Moved to {format_clock(start)} – {format_clock(end)} (Ctrl+Z undoes it).")
        self.edited.emit([clip.id])

    def _set_instruction_from(self, value: str) -> None:
        lib, clip = self.library, self.clip
        if lib is None or clip is None:
            return
        edit = lib.set_instruction_from(clip.id, value)
        self.refresh()
        if edit is not None:
            self.form.hint.setText(f"Saved: {edit.label} (Ctrl+Z undoes it).")
        self.edited.emit([clip.id])

    # -- marking and the form
    def _update_marks(self) -> None:
        self.strip.set_marks(self._marked_start, self._marked_end)

    def mark_start(self) -> None:
        if not self.clip:
            return
        s = min(self.second, max(0, self.clip.n_turns - 1)) if self.clip.n_turns else self.second
        if self.form.editing is None or self.form.kind != "event":
            if self.form.editing is not None:
                self.cancel_form()
            self.form.set_kind("event")
        self._marked_start = s
        set_spin(self.form.start, s)
        if self._marked_end is not None and self._marked_end <= s:
            self._marked_end = None
        self._update_marks()
        self.form.hint.setText(f"Start marked at {format_clock(s)}. Play or step to where it is over and press ].")

    def mark_end(self) -> None:
        if not self.clip:
            return
        if self.form.kind != "event":
            if self.form.editing is not None:
                self.cancel_form()
            self.form.set_kind("event")
        end = self.second + 1  # the event is going on in this second; the answer comes in the next one
        if self._marked_start is None and self.form.editing is None:
            self._marked_start = max(0, end - 1)
            set_spin(self.form.start, self._marked_start)
            note = "No start was marked: it starts at the playhead's second (press [ to set it). "
        else:
            note = ""
        self._marked_end = end
        set_spin(self.form.end, end)
        self._update_marks()
        self.form.hint.setText(note + "Describe what happened and press Enter.")
        self.form.text.setFocus(Qt.FocusReason.ShortcutFocusReason)

    def answer_here(self) -> None:
        self._start_at("answer")

    def question_here(self) -> None:
        self._start_at("question")

    def _start_at(self, kind: str) -> None:
        if not self.clip:
            return
        if self.form.editing is not None:
            self.cancel_form()
        self.form.set_kind(kind)
        set_spin(self.form.at, self.second)
        self._marked_start = self._marked_end = None
        self._update_marks()
        what = "answer" if kind == "answer" else "question"
        self.form.hint.setText(f"Type the {what} for {format_clock(self.second)} and press Enter.")
        self.form.text.setFocus(Qt.FocusReason.ShortcutFocusReason)

    def _kind_clicked(self, *_: Any) -> None:
        """A kind chosen by hand starts at the playhead: a one-second event, or an answer or question there."""
        second = self.second
        if self.form.kind == "event":
            self._marked_start, self._marked_end = second, second + 1
            set_spin(self.form.start, second)
            set_spin(self.form.end, second + 1)
        else:
            self._marked_start = self._marked_end = None
            set_spin(self.form.at, second)
        self._update_marks()
        self.form.text.setFocus(Qt.FocusReason.OtherFocusReason)

    def _form_times_changed(self, *_: Any) -> None:
        """The user typed an event's seconds: show them as the marks."""
        if self.form.kind == "event":
            self._marked_start, self._marked_end = self.form.start.value(), self.form.end.value()
            self._update_marks()

    def submit(self) -> None:
        """Add the form's item (or save the one being edited) through the library; never without text."""
        lib, clip, f = self.library, self.clip, self.form
        if lib is None or clip is None:
            return
        if not f.has_text():
            f.hint.setText(f.needs_text())
            f.text.setFocus(Qt.FocusReason.OtherFocusReason)
            return
        text, kind, ref = f.text.text(), f.kind, f.editing
        if ref is not None:
            if kind == "event":
                lib.update_item(clip.id, ref, text, start=f.start.value(), end=f.end.value())
            else:
                lib.update_item(clip.id, ref, text, second=f.at.value())
            new_ref = ref
        elif kind == "event":
            new_ref = lib.add_event(clip.id, text, f.start.value(), f.end.value())
        elif kind == "answer":
            new_ref = lib.add_answer(clip.id, text, f.at.value())
        else:
            new_ref = lib.add_question(clip.id, text, f.at.value())
        self._marked_start = self._marked_end = None
        f.reset()
        f.hint.setText("Saved." if lib.save_error is None else "Kept in memory: the save failed (see the message).")
        self.refresh()
        self.select_ref(new_ref)
        self.view.setFocus(Qt.FocusReason.OtherFocusReason)
        self.edited.emit([clip.id])

    def cancel_form(self) -> None:
        self._marked_start = self._marked_end = None
        self.form.reset()
        self.form.hint.setText("")
        self._update_marks()
        self.view.setFocus(Qt.FocusReason.OtherFocusReason)

    def edit_selected(self) -> None:
        ref, clip = self.selected_ref(), self.clip
        if ref is None or clip is None:
            return
        item = clip.item(ref)
        if isinstance(item, Question):
            kind, start, end, at = "question", 0, 0, item.second or 0
        elif item.is_event:
            (start, end), at, kind = item.span, 0, "event"  # type: ignore[misc]
        else:
            kind, start, end, at = "answer", 0, 0, item.second or 0
        for spin in (self.form.start, self.form.end, self.form.at):
            spin.blockSignals(True)
        self.form.start_edit(ref, kind, item.content, start, end, at)
        for spin in (self.form.start, self.form.end, self.form.at):
            spin.blockSignals(False)
        if kind == "event":
            self._marked_start, self._marked_end = start, end
        self._update_marks()
        self.form.hint.setText(
            "Change it and press Enter to save ([ and ] move an event's ends to the playhead); Escape cancels."
        )
        self.seek((start if kind == "event" else at) * clip.block)
        self.form.text.setFocus(Qt.FocusReason.OtherFocusReason)

    def delete_selected(self) -> None:
        ref, clip, lib = self.selected_ref(), self.clip, self.library
        if ref is None or clip is None or lib is None:
            return
        if self.form.editing is not None:
            self.cancel_form()
        lib.remove_item(clip.id, ref)
        self.refresh()
        self.edited.emit([clip.id])

    def _set_task_type(self) -> None:
        lib, clip = self.library, self.clip
        if lib is None or clip is None or self.task.currentText().strip() == clip.task_type:
            return
        lib.set_task_type(clip.id, self.task.currentText())
        self.refresh()
        self.edited.emit([clip.id])

    def undo(self) -> None:
        self._history(self.library.undo if self.library is not None else None)

    def redo(self) -> None:
        self._history(self.library.redo if self.library is not None else None)

    def _history(self, step: Any) -> None:
        edit: Edit | None = step() if step is not None else None
        if edit is None:
            return
        self.cancel_form()
        self.refresh()
        self.form.hint.setText(f"Undone: {edit.label}." if step == self.library.undo else f"Redone: {edit.label}.")  # type: ignore[union-attr]
        self.edited.emit(edit.clip_ids)

    # -- keys (annotator_keys.py)
    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        return filter_key(self, obj, event)

    # -- for the page
    def clip_path(self) -> Path | None:
        return self.library.resolve(self.clip) if self.library and self.clip else None

    def shutdown(self) -> None:
        """Stop playing and end the decoding threads (they release the video file)."""
        self.player.shutdown()
        self.thumbnails.shutdown()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        self.shutdown()
        super().closeEvent(event)


__all__ = ["KIND_COLORS", "PROBLEM_COLOR", "Annotator", "FrameView", "ItemForm", "TurnStrip", "plain_tip"]
