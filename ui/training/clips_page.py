"""The Training tab's clip side: the library (left) and the annotator (right) of one project
folder. The train panel takes ``annotation_path()`` and ``video_prefix()`` from here."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFileDialog, QSplitter, QVBoxLayout, QWidget

from app.settings import Settings
from app.training.library import Library, LibraryError
from ui.training.annotator import Annotator
from ui.training.library_view import LibraryView

PROJECT_KEY = "training/project_folder"
SPLITTER_KEY = "training/clips_splitter"


class ClipsPage(QWidget):
    changed = Signal()  # an edit was saved to the project's annotation file
    message = Signal(str, str)  # (level, text) for the window's banner
    project_opened = Signal(str)  # the project folder

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self._library: Library | None = None
        self.library_view = LibraryView()
        self.library_view.ensure_project = self.choose_project
        self.annotator = Annotator()
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.library_view)
        self.splitter.addWidget(self.annotator)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setChildrenCollapsible(False)
        self.library_view.setMinimumWidth(280)
        self.splitter.setSizes([340, 940])
        saved = settings.bytes_value(SPLITTER_KEY)
        if saved is not None:
            self.splitter.restoreState(saved)
        self.splitter.splitterMoved.connect(lambda *_: settings.set_value(SPLITTER_KEY, self.splitter.saveState()))
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.splitter)

        self.library_view.clip_selected.connect(self.annotator.set_clip)
        self.library_view.edited.connect(self._on_edited)
        self.library_view.message.connect(self.message)
        self.library_view.project_requested.connect(self.choose_project)
        self.annotator.edited.connect(self._on_edited)
        # The player's keys (Space, arrows, J/K/L, [ ], Ctrl+Z ...) also work from the clip list.
        self.library_view.list.installEventFilter(self.annotator)

        last = settings.value(PROJECT_KEY, "")
        if last and Path(last).is_dir():
            self.open_project(last)

    # -- what the trainer needs
    @property
    def library(self) -> Library | None:
        return self._library

    def annotation_path(self) -> Path | None:
        """The project's raw annotation file (``--data``); None without a project."""
        return self._library.annotation_path if self._library is not None else None

    def video_prefix(self) -> Path | None:
        """The folder the file's video paths start from (``--video-prefix``)."""
        return self._library.video_prefix if self._library is not None else None

    # -- the project
    def open_project(self, folder: str | Path) -> bool:
        """Open (or start) the project in ``folder``. A project file that cannot be read is left as
        it is and the one open stays open; the notice says what to do."""
        try:
            library = Library(folder)
        except LibraryError as e:
            self.library_view.show_notice("error", str(e))
            return False
        self._library = library
        self.settings.set_value(PROJECT_KEY, str(library.folder))
        self.annotator.set_library(library)
        self.library_view.set_library(library)
        if library.clips:
            self.library_view.list.setCurrentRow(0)
        if library.notes:
            self.library_view.show_notice("warning", "\n".join(library.notes))
        else:
            self.library_view.notice.hide()
        unreadable = [c for c in library.clips if c.meta is None]
        if unreadable:
            names = "\n".join(f"• {c.name}: {c.unreadable} ({library.resolve(c)})" for c in unreadable[:8])
            self.library_view.show_notice(
                "warning", f"{len(unreadable)} clip(s) have no readable video; their annotations are kept:\n{names}"
            )
        self.project_opened.emit(str(library.folder))
        return True

    def choose_project(self) -> bool:
        """Ask for a project folder and open it; True when one is open afterwards."""
        start = str(self._library.folder) if self._library is not None else str(Path.home())
        folder = QFileDialog.getExistingDirectory(
            self,
            "Project folder: its annotations.json holds your clips' annotations (an empty folder starts one)",
            start,
        )
        if folder:
            self.open_project(folder)
        return self._library is not None

    # -- edits
    def _on_edited(self, clip_ids: list) -> None:
        """After every edit (the library has applied and saved it): redraw what shows the changed
        clips; an undo or redo that changed another clip than the one shown brings that clip up."""
        lib = self._library
        if lib is None:
            return
        if self.sender() is self.annotator:
            shown = self.annotator.clip.id if self.annotator.clip else ""
            alive = [i for i in clip_ids if lib.find(i) is not None]
            if alive == list(clip_ids) == [shown] and self.library_view.list.count() == len(lib.clips):
                self.library_view.update_rows(alive)  # an edit of the clip on screen: its row only
            else:
                select = alive[0] if alive and shown not in alive else None
                self.library_view.refresh(select=select)  # emits clip_selected when the current clip changes
        if self.annotator.clip is not None:
            self.annotator.refresh()
        if lib.save_error:
            self.library_view.show_notice("error", lib.save_error)
            return
        if self.library_view.notice.level == "error" and "Could not save" in self.library_view.notice.text():
            self.library_view.notice.hide()
        self.changed.emit()

    def undo(self) -> None:
        self.annotator.undo()

    def redo(self) -> None:
        self.annotator.redo()

    def closeEvent(self, event) -> None:  # noqa: N802, ANN001 - Qt override
        self.library_view.shutdown()
        self.annotator.shutdown()
        super().closeEvent(event)


__all__ = ["ClipsPage"]
