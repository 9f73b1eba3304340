"""Pick a saved session to reopen in the transcript panel; rename or delete saved ones; review a
session's steps, with the frame the model saw at each when the run kept them (Live's "Keep the
frames the model saw": ``app.session.frames_dir``)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPixmap, QResizeEvent
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
    QSizePolicy,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.live.frames import frame_name
from app.session import (
    QUESTION,
    SessionSummary,
    delete_session,
    format_clock,
    frames_dir,
    list_sessions,
    load_session,
    rename_session,
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
        self.list = QListWidget()
        self.list.itemDoubleClicked.connect(lambda _item: self.accept())
        self.list.currentItemChanged.connect(lambda _item, _previous: self.show_review())
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
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.list)
        split.addWidget(review)
        split.setSizes([400, 560])
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
        layout.addWidget(split, 1)
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
                self,
                "Delete session",
                f"Delete {self.list.currentItem().text()}?\nThe file {path} is removed"
                + (f", and the frames kept in {frames_dir(path)}." if frames_dir(path).is_dir() else "."),
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
