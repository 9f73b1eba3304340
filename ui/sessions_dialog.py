"""The session library: pick a saved session to reopen in the transcript panel; search sessions by
name, source, model or words said; see where each came from; rename one; delete to the trash, with
Undo; review a session's steps, with the frame the model saw at each when the run kept them (Live's
"Keep the frames the model saw": ``app.session.frames_dir``)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QKeySequence, QPixmap, QResizeEvent, QShortcut
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.live.frames import frame_name
from app.session import (
    QUESTION,
    TRASH_DAYS,
    SessionSummary,
    Trashed,
    delete_session,
    empty_trash,
    format_clock,
    frames_dir,
    list_sessions,
    load_session,
    rename_session,
    restore_session,
    sessions_dir,
)

NO_FRAMES = "Frames were not kept for this session (Live: Keep the frames the model saw)."


class FrameView(QLabel):
    """A saved frame, scaled to fit (kept in proportion) as the view is resized."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(QSize(240, 135))
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.original = QPixmap()

    def set_frame(self, pixmap: QPixmap) -> None:
        self.original = pixmap
        self._fit()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        if self.original.isNull():
            self.clear()
            return
        mode = Qt.TransformationMode.SmoothTransformation
        self.setPixmap(self.original.scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio, mode))


class SessionsDialog(QDialog):
    def __init__(self, root: Path | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Open a saved session")
        self.resize(960, 540)
        self.selected_path: Path | None = None
        self._root = root
        self._summaries: list[SessionSummary] = []
        self.trashed: list[Trashed] = []  # this dialog's deletions, newest last: what Undo brings back
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search by name, source, task, model or words said (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(lambda _text: self.show_list())
        self.count = QLabel()
        self.list = QListWidget()
        self.list.itemDoubleClicked.connect(lambda _item: self.accept())
        self.list.currentItemChanged.connect(lambda _item, _previous: (self.show_details(), self.show_review()))
        # The review: the selected session's steps, and the frame the model saw at the selected one.
        self.steps = QListWidget()
        self.steps.setToolTip("Every step of the session: its second, what the model chose and what was said")
        self.steps.currentRowChanged.connect(self.show_frame)
        self.frame = FrameView()
        self.frame_note = QLabel()
        self.frame_note.setWordWrap(True)
        self.frame_path: Path | None = None  # the picture shown, None when there is none
        self._step_times: list[float] = []
        self._frames: Path | None = None  # the session's frames folder, when it has one
        review = QSplitter(Qt.Orientation.Vertical)
        review.addWidget(self.steps)
        frame_box = QWidget()
        frame_layout = QVBoxLayout(frame_box)
        frame_layout.setContentsMargins(0, 0, 0, 0)
        frame_layout.addWidget(self.frame, 1)
        frame_layout.addWidget(self.frame_note)
        review.addWidget(frame_box)
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        library = QWidget()
        library_layout = QVBoxLayout(library)
        library_layout.setContentsMargins(0, 0, 0, 0)
        library_layout.addWidget(self.list, 1)
        library_layout.addWidget(self.details)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(library)
        split.addWidget(review)
        split.setSizes([400, 560])
        folder = sessions_dir(root)
        info = QLabel(f"Sessions are saved as they happen in {folder}")
        info.setWordWrap(True)
        info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        browse = QPushButton("Other file...")
        browse.clicked.connect(self._browse)
        # clicked(bool) must not land in rename_selected's title or delete_selected's confirm
        self.rename_button = QPushButton("Rename...")
        self.rename_button.setToolTip("Give the selected session a name (F2)")
        self.rename_button.clicked.connect(lambda _checked=False: self.rename_selected())
        self.delete_button = QPushButton("Delete...")
        self.delete_button.setToolTip(f"Move the selected session to the trash, for {TRASH_DAYS} days (Delete)")
        self.delete_button.clicked.connect(lambda _checked=False: self.delete_selected())
        # After a deletion: what went, and the way back.
        self.undo_note = QLabel()
        self.undo_note.setWordWrap(True)
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip("Bring the deleted session back (Ctrl+Z)")
        self.undo_button.clicked.connect(lambda _checked=False: self.undo_delete())
        undo_bar = QWidget()
        undo_layout = QHBoxLayout(undo_bar)
        undo_layout.setContentsMargins(0, 0, 0, 0)
        undo_layout.addWidget(self.undo_note, 1)
        undo_layout.addWidget(self.undo_button)
        self.undo_bar = undo_bar
        undo_bar.hide()
        for keys, slot in (
            (QKeySequence.StandardKey.Find, self.search.setFocus),
            (QKeySequence(Qt.Key.Key_F2), self.rename_selected),
            (QKeySequence.StandardKey.Delete, self.delete_selected),
            (QKeySequence.StandardKey.Undo, self.undo_delete),
        ):
            QShortcut(keys, self, activated=lambda slot=slot: slot())
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel)
        for b in (self.rename_button, self.delete_button, browse):
            buttons.addButton(b, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        search_row = QHBoxLayout()
        search_row.addWidget(self.search, 1)
        search_row.addWidget(self.count)
        layout = QVBoxLayout(self)
        layout.addWidget(info)
        layout.addLayout(search_row)
        layout.addWidget(split, 1)
        layout.addWidget(undo_bar)
        layout.addWidget(buttons)
        empty_trash(root)  # sessions deleted more than TRASH_DAYS ago go for good
        self.refresh()

    def refresh(self) -> list[SessionSummary]:
        """Read the saved sessions again and show those the search matches."""
        self._summaries = list_sessions(self._root)
        self.show_list()
        return self._summaries

    def show_list(self) -> list[SessionSummary]:
        """The sessions matching the search, newest first; the first is selected."""
        query = self.search.text().strip()
        shown = [s for s in self._summaries if s.matches(query)] if query else list(self._summaries)
        self.list.clear()
        for s in shown:
            item = QListWidgetItem(s.title)
            item.setData(Qt.ItemDataRole.UserRole, str(s.path))
            item.setToolTip(str(s.path))
            self.list.addItem(item)
        if shown:
            self.list.setCurrentRow(0)
        elif self._summaries:
            self.list.addItem(f"No session matches \u201c{query}\u201d.")
        else:
            self.list.addItem("No saved sessions yet.")
        self.count.setText(f"{len(shown)} of {len(self._summaries)}" if query else f"{len(shown)} sessions")
        for b in (self.rename_button, self.delete_button):
            b.setEnabled(bool(shown))
        self.show_details()
        return shown

    def current_summary(self) -> SessionSummary | None:
        path = self.current_path()
        return next((s for s in self._summaries if s.path == path), None)

    def show_details(self) -> None:
        summary = self.current_summary()
        self.details.setText(summary.details() if summary is not None else "")

    def show_review(self) -> None:
        """The selected session's steps, one row each; the first is selected (its frame shown)."""
        self.steps.clear()
        self._step_times = []
        self._frames = None
        path = self.current_path()
        session = None
        if path is not None:
            try:
                session = load_session(path)
            except (OSError, ValueError) as e:
                self.frame_note.setText(f"Cannot read {path.name}: {e}")
        if session is None:
            self.show_frame(-1)
            return
        said: dict[float, list[str]] = {}
        for e in session.entries:
            said.setdefault(e.t, []).append(f"{'Q' if e.kind == QUESTION else 'A'}: {e.text}")
        for span in session.states:
            state = span.state.strip("</>")
            self.steps.addItem(f"{format_clock(span.t)} ({span.t:.1f} s)  {state}  {'  '.join(said.get(span.t, []))}")
            self._step_times.append(span.t)
        folder = frames_dir(path)
        self._frames = folder if folder.is_dir() else None
        if self._step_times:
            self.steps.setCurrentRow(0)
        else:
            self.show_frame(-1)

    def show_frame(self, row: int) -> None:
        """The frame the model saw at step ``row`` of the reviewed session, or a note saying why not."""
        self.frame_path = None
        if not 0 <= row < len(self._step_times):
            self.frame.set_frame(QPixmap())
            if self.current_path() is None:
                self.frame_note.setText("")
            elif self._frames is None:
                self.frame_note.setText(NO_FRAMES if self._step_times else "This session has no steps.")
            return
        t = self._step_times[row]
        if self._frames is None:
            self.frame.set_frame(QPixmap())
            self.frame_note.setText(NO_FRAMES)
            return
        path = self._frames / frame_name(t)
        pixmap = QPixmap(str(path)) if path.is_file() else QPixmap()
        self.frame.set_frame(pixmap)
        if pixmap.isNull():
            self.frame_note.setText(f"No frame was kept for {format_clock(t)} ({t:.1f} s).")
            return
        self.frame_path = path
        self.frame_note.setText(f"What the model saw at {format_clock(t)} ({t:.1f} s): {path}")

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
        """Give the selected session a name (asked for, the current one filled in, when ``title`` is None)."""
        summary = self.current_summary()
        if summary is None:
            return False
        path = summary.path
        if title is None:
            title, ok = QInputDialog.getText(
                self, "Rename session", "Name (empty: show the source's name):", text=summary.meta.title or summary.name
            )
            if not ok:
                return False
        try:
            rename_session(path, title)
        except (OSError, ValueError) as e:
            QMessageBox.warning(self, "Rename session", f"Could not rename {path.name}: {e}")
            return False
        self.refresh()
        self._select(path)
        return True

    def delete_selected(self, confirm: bool = True) -> bool:
        """Move the selected session (and its kept frames) to the trash, after asking; Undo brings it back."""
        summary = self.current_summary()
        if summary is None:
            return False
        path = summary.path
        if confirm:
            frames = frames_dir(path)
            answer = QMessageBox.question(
                self,
                "Delete session",
                f"Delete {summary.title}?\n\nIt goes to the trash ({path.parent / '.trash'})"
                + (" with the frames kept for it" if frames.is_dir() else "")
                + f" for {TRASH_DAYS} days; Undo brings it back.",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return False
        try:
            self.trashed.append(delete_session(path))
        except (OSError, ValueError) as e:
            QMessageBox.warning(self, "Delete session", f"Could not delete {path.name}: {e}")
            return False
        self.undo_note.setText(f"Deleted {summary.name}. It stays in the trash for {TRASH_DAYS} days.")
        self.undo_bar.show()
        self.refresh()
        return True

    def undo_delete(self) -> bool:
        """Bring back the session deleted last in this dialog."""
        if not self.trashed:
            return False
        trashed = self.trashed[-1]
        try:
            path = restore_session(trashed)
        except OSError as e:
            QMessageBox.warning(self, "Undo delete", f"Could not bring back {trashed.original.name}: {e}")
            return False
        self.trashed.pop()
        if self.trashed:
            self.undo_note.setText(f"Brought back {path.name}. Undo again for the one deleted before it.")
        else:
            self.undo_bar.hide()
        self.refresh()
        self._select(path)
        return True

    def _select(self, path: Path) -> None:
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.ItemDataRole.UserRole) == str(path):
                self.list.setCurrentRow(i)
                return

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open session", str(sessions_dir(self._root)), "Sessions (*.jsonl)")
        if path:
            self.selected_path = Path(path)
            super().accept()
