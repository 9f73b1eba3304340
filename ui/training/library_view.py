"""The clip library: every clip of the project with its thumbnail, length and annotation status;
importing videos (files, folders, drag and drop) and annotation files, exporting, removing.
Files that cannot be imported are listed with the reason in the notice above the list (one
notice per import, never a dialog per file)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QRunnable, QSize, Qt, QThreadPool, Signal
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent, QIcon, QImage, QKeyEvent, QPainter, QPaintEvent, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.session import format_clock
from app.training.library import VIDEO_SUFFIXES, Clip, ImportReport, Library, LibraryError, thumbnail
from ui.banner import dismissable_row
from ui.training.annotator import PROBLEM_COLOR, plain_tip

THUMB = QSize(96, 60)
PATH_ROLE = Qt.ItemDataRole.UserRole + 1  # the row's video file (thumbnails arrive by path)
ANNOTATION_SUFFIXES = (".json", ".jsonl")
NOTICE_LINES = 10
_NOTICE_STYLES = {
    "error": "background: #fbe3e4; color: #6b1017; border: 1px solid #e3a1a6;",
    "warning": "background: #fff4d6; color: #5a4300; border: 1px solid #e6c766;",
    "info": "background: #e2f0ff; color: #12375c; border: 1px solid #a9c8ea;",
}


@contextmanager
def busy() -> Iterator[None]:
    """A wait cursor while the GUI thread probes videos (an import of many clips takes a moment)."""
    QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
    try:
        yield
    finally:
        QApplication.restoreOverrideCursor()


def report_text(report: ImportReport, what: str) -> tuple[str, str]:
    """(level, text) of an import for the notice: what came in, then what did not and why."""
    lines = []
    n = report.imported
    if n or not report.failed:
        parts = [f"Imported {len(report.added)} {what}{'s' if len(report.added) != 1 else ''}"]
        if report.updated:
            parts.append(f"annotated {len(report.updated)} clip{'s' if len(report.updated) != 1 else ''} already here")
        lines.append(", ".join(parts) + ".")
    if report.failed:
        k = len(report.failed)
        lines.append(f"{k} could not be imported:" if n else f"Nothing imported: {k} failed:")
        lines += [f"• {Path(p).name if Path(p).exists() else p}: {why}" for p, why in report.failed]
    lines += [f"• {note}" for note in report.notes]
    if len(lines) > NOTICE_LINES:
        lines = [*lines[: NOTICE_LINES - 1], f"… and {len(lines) - NOTICE_LINES + 1} more lines"]
    level = "warning" if report.failed or report.notes else "info"
    if report.failed and not n:
        level = "error"
    return level, "\n".join(lines)


class Notice(QFrame):
    """Plain text above the list: what the last action did, with a close button."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel()
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        dismissable_row(self, self.label)
        self.level = ""
        self.hide()

    def show_text(self, level: str, text: str) -> None:
        self.level = level
        self.label.setText(text)
        self.setStyleSheet(
            f"Notice {{ {_NOTICE_STYLES.get(level, _NOTICE_STYLES['info'])} }} QLabel, QToolButton {{ border: none; background: transparent; color: inherit; }}"
        )
        self.show()

    def text(self) -> str:
        return self.label.text() if not self.isHidden() else ""


class ClipList(QListWidget):
    """The list, with a hint painted where there are no clips yet."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.placeholder = ""

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        super().paintEvent(event)
        if self.count() == 0 and self.placeholder:
            p = QPainter(self.viewport())
            p.setPen(QColor(130, 130, 140))
            rect = self.viewport().rect().adjusted(16, 16, -16, -16)
            p.drawText(rect, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.placeholder)
            p.end()


class ThumbnailJob(QRunnable):
    """Grabs thumbnails off the GUI thread (a phone video's frame can take a while to decode)."""

    class Signals(QObject):
        ready = Signal(str, QImage)  # (video path, thumbnail)

    def __init__(self, paths: Sequence[str]) -> None:
        super().__init__()
        self.paths = list(paths)
        self.signals = ThumbnailJob.Signals()
        self.cancelled = threading.Event()

    def run(self) -> None:
        for path in self.paths:
            if self.cancelled.is_set():
                return
            image = thumbnail(path, (THUMB.width(), THUMB.height()))
            if image is not None:
                image = np.ascontiguousarray(image)
                h, w = image.shape[:2]
                q = QImage(image.data, w, h, int(image.strides[0]), QImage.Format.Format_RGB888).copy()
                self.signals.ready.emit(path, q)


def clip_status(library: Library, clip: Clip) -> tuple[str, list[str]]:
    """(the list's status line, the clip's problems as sentences)."""
    length = format_clock(clip.duration) if clip.duration is not None else "?"
    problems = [p.message for p in library.problems(clip)]
    if clip.meta is None:
        return f"{length} · video not readable", problems
    if not clip.annotated:
        return f"{length} · not annotated", problems
    counts = (("event", len(clip.events)), ("answer", len(clip.answers)), ("question", len(clip.questions)))
    parts = [f"{n} {name}{'s' if n != 1 else ''}" for name, n in counts if n]
    return f"{length} · {', '.join(parts)}", problems


class LibraryView(QWidget):
    clip_selected = Signal(str)  # clip id; "" when none
    edited = Signal(list)  # ids of the clips an import or a removal changed (saved by the library)
    message = Signal(str, str)  # (level, text) for the window's banner
    project_requested = Signal()  # the user wants to open or create a project folder

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.library: Library | None = None
        # Set by the page: asks for a project folder when there is none yet; True when one is open.
        self.ensure_project: Callable[[], bool] | None = None
        self._thumbs: dict[str, QPixmap] = {}  # video path -> thumbnail
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._jobs: list[ThumbnailJob] = []
        self.setAcceptDrops(True)

        title = QLabel("Clips")
        title.setStyleSheet("font-weight: 600; font-size: 11pt")
        self.project_label = QLabel("No project folder")
        self.project_label.setTextFormat(Qt.TextFormat.PlainText)
        self.project_label.setStyleSheet("color: palette(mid)")
        self.project_button = QPushButton("Project…")
        self.project_button.setToolTip("Open or create a project folder (its annotations.json holds the annotations)")
        self.project_button.clicked.connect(self.project_requested)
        head = QHBoxLayout()
        head.addWidget(title)
        head.addWidget(self.project_label, 1)
        head.addWidget(self.project_button)

        self.import_files_button = QPushButton("Import files…")
        self.import_files_button.setToolTip(
            f"Add video files ({', '.join(VIDEO_SUFFIXES)}); or drop files and folders on the list"
        )
        self.import_files_button.clicked.connect(self._ask_import_files)
        self.import_folder_button = QPushButton("Import folder…")
        self.import_folder_button.setToolTip("Add every video in a folder and its subfolders")
        self.import_folder_button.clicked.connect(self._ask_import_folder)
        self.import_annotations_button = QPushButton("Import annotations…")
        self.import_annotations_button.setToolTip(
            "Bring in a raw or stream-format annotation file (JSON or JSON Lines; Streamo-Instruct files too)"
        )
        self.import_annotations_button.clicked.connect(self._ask_import_annotations)
        self.export_button = QPushButton("Export")
        export_menu = QMenu(self.export_button)
        export_menu.addAction("Raw annotations (Streamo format)…", lambda: self._ask_export("raw"))
        export_menu.addAction("Stream format (what to-stream makes)…", lambda: self._ask_export("stream"))
        self.export_button.setMenu(export_menu)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip(
            "Take the selected clips out of the library (the video files stay; Ctrl+Z brings them back)"
        )
        self.remove_button.clicked.connect(self.remove_selected)
        row1 = QHBoxLayout()
        row1.addWidget(self.import_files_button)
        row1.addWidget(self.import_folder_button)
        row2 = QHBoxLayout()
        row2.addWidget(self.import_annotations_button)
        row2.addWidget(self.export_button)
        row2.addWidget(self.remove_button)

        self.notice = Notice()
        self.list = ClipList()
        self.list.setIconSize(THUMB)
        self.list.setSpacing(2)
        self.list.setUniformItemSizes(True)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.setWordWrap(False)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.currentItemChanged.connect(self._current_changed)
        self.list.itemSelectionChanged.connect(self._update_buttons)
        self.list.installEventFilter(self)
        self.summary = QLabel()
        self.summary.setTextFormat(Qt.TextFormat.PlainText)
        self.summary.setStyleSheet("color: palette(mid)")

        box = QVBoxLayout(self)
        box.setContentsMargins(6, 6, 6, 6)
        box.setSpacing(6)
        box.addLayout(head)
        box.addLayout(row1)
        box.addLayout(row2)
        box.addWidget(self.notice)
        box.addWidget(self.list, 1)
        box.addWidget(self.summary)
        self.set_library(None)

    # -- the library
    def set_library(self, library: Library | None) -> None:
        self.library = library
        if library is None:
            self.project_label.setText("No project folder")
            self.project_label.setToolTip("")
        else:
            self.project_label.setText(library.folder.name)
            self.project_label.setToolTip(plain_tip(f"{library.folder}\nAnnotations: {library.annotation_path}"))
        self.refresh()

    def current_id(self) -> str:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else ""

    def selected_ids(self) -> list[str]:
        return [i.data(Qt.ItemDataRole.UserRole) for i in self.list.selectedItems()]

    def item_of(self, clip_id: str) -> QListWidgetItem | None:
        for k in range(self.list.count()):
            if self.list.item(k).data(Qt.ItemDataRole.UserRole) == clip_id:
                return self.list.item(k)
        return None

    def refresh(self, select: str | None = None) -> None:
        """Rebuild the rows from the library, keeping (or moving to ``select``) the current clip.
        Emits ``clip_selected`` only when the current clip changes."""
        before = self.current_id()
        target = select if select is not None else before
        self.list.blockSignals(True)
        self.list.clear()
        lib = self.library
        self.list.placeholder = (
            "Drop video files or folders here, or use Import files…"
            if lib is not None
            else "Choose a project folder (Project…), then import your clips: the annotations are saved in it."
        )
        missing: list[str] = []
        if lib is not None:
            for clip in lib.clips:
                item = QListWidgetItem()
                item.setData(Qt.ItemDataRole.UserRole, clip.id)
                item.setData(PATH_ROLE, str(lib.resolve(clip)))
                self._fill(item, clip)
                self.list.addItem(item)
                path = str(lib.resolve(clip))
                if path not in self._thumbs and clip.meta is not None:
                    missing.append(path)
        current = self.item_of(target) if target else None
        if current is None and self.list.count() and target:
            current = self.list.item(min(self.list.count() - 1, 0))
        if current is not None:
            self.list.setCurrentItem(current)
        self.list.blockSignals(False)
        self._load_thumbs(missing)
        self._update_buttons()
        self._update_summary()
        if self.current_id() != before:
            self.clip_selected.emit(self.current_id())

    def update_rows(self, clip_ids: Sequence[str]) -> None:
        """Refresh the status of these clips' rows (after an edit in the annotator)."""
        if self.library is None:
            return
        for clip_id in clip_ids:
            item, clip = self.item_of(clip_id), self.library.find(clip_id)
            if item is not None and clip is not None:
                self._fill(item, clip)
        self._update_summary()

    def _fill(self, item: QListWidgetItem, clip: Clip) -> None:
        assert self.library is not None
        status, problems = clip_status(self.library, clip)
        lines = [clip.name, status]
        if clip.meta is None:
            lines = [clip.name, f"⚠ video: {clip.unreadable}"]
        elif problems:
            lines.append(f"⚠ {len(problems)} problem{'s' if len(problems) != 1 else ''}")
        item.setText("\n".join(lines))
        path = str(self.library.resolve(clip))
        item.setIcon(QIcon(self._thumbs.get(path) or self._blank()))
        tip = f"{clip.name}\n{path}\n{status}"
        if problems:
            tip += "\n\n" + "\n".join(f"• {m}" for m in problems)  # every one, not the first few
            item.setForeground(PROBLEM_COLOR)
        elif not clip.annotated:
            item.setForeground(QColor(120, 120, 130))
        else:
            item.setForeground(self.palette().text())
        item.setToolTip(plain_tip(tip))

    def _blank(self) -> QPixmap:
        pix = QPixmap(THUMB)
        pix.fill(QColor(36, 38, 44))
        return pix

    def _load_thumbs(self, paths: list[str]) -> None:
        if not paths:
            return
        job = ThumbnailJob(paths)
        job.signals.ready.connect(self._thumb_ready)
        self._jobs = [j for j in self._jobs if not j.cancelled.is_set()] + [job]
        self._pool.start(job)

    def _thumb_ready(self, path: str, image: QImage) -> None:
        pix = self._blank()
        p = QPainter(pix)
        p.drawImage((THUMB.width() - image.width()) // 2, (THUMB.height() - image.height()) // 2, image)
        p.end()
        self._thumbs[path] = pix
        for k in range(self.list.count()):
            item = self.list.item(k)
            if item.data(PATH_ROLE) == path:
                item.setIcon(QIcon(pix))

    def wait_for_thumbnails(self, msecs: int = 5000) -> bool:
        return self._pool.waitForDone(msecs)

    def _update_buttons(self) -> None:
        has = self.library is not None
        self.export_button.setEnabled(has and bool(self.library.clips))  # type: ignore[union-attr]
        self.remove_button.setEnabled(has and bool(self.list.selectedItems()))

    def _update_summary(self) -> None:
        lib = self.library
        if lib is None or not lib.clips:
            self.summary.setText("")
            return
        clips = lib.clips
        annotated = sum(c.annotated for c in clips)
        total = sum(c.duration or 0 for c in clips)
        self.summary.setText(f"{len(clips)} clips · {annotated} annotated · {format_clock(total)} in all")

    def _current_changed(self, *_: Any) -> None:
        self.clip_selected.emit(self.current_id())

    # -- actions
    def _require_library(self) -> Library | None:
        if self.library is None and self.ensure_project is not None:
            self.ensure_project()
        if self.library is None:
            self.show_notice(
                "warning", "Choose a project folder first (Project…): the clips' annotations are saved there."
            )
        return self.library

    def show_notice(self, level: str, text: str) -> None:
        self.notice.show_text(level, text)
        first = text.splitlines()[0] if text else ""
        self.message.emit(level, first if level == "info" else text)

    def import_paths(self, paths: Sequence[str | Path]) -> ImportReport | None:
        """Videos and folders of videos; annotation files (.json, .jsonl) among them are imported as
        annotations. Returns the video import's report."""
        lib = self._require_library()
        if lib is None:
            return None
        paths = [Path(p) for p in paths]
        annotations = [p for p in paths if p.suffix.lower() in ANNOTATION_SUFFIXES and p.is_file()]
        videos = [p for p in paths if p not in annotations]
        report = None
        if videos:
            with busy():
                report = lib.import_videos(videos)
            self._after_import(report, "clip")
        for p in annotations:
            self.import_annotation_file(p)
        return report

    def import_annotation_file(self, path: str | Path, video_prefix: str | Path | None = None) -> ImportReport | None:
        lib = self._require_library()
        if lib is None:
            return None
        with busy():
            report = lib.import_annotations(path, video_prefix)
        self._after_import(report, "annotated clip", source=Path(path).name)
        return report

    def _after_import(self, report: ImportReport, what: str, source: str = "") -> None:
        level, text = report_text(report, what)
        if source:
            text = f"{source}: {text}"
        assert self.library is not None
        if self.library.save_error:
            level, text = "error", f"{text}\n{self.library.save_error}"
        changed = [c.id for c in (*report.added, *report.updated)]
        first = changed[0] if changed and not self.current_id() else None
        self.refresh(select=first)
        self.show_notice(level, text)
        if changed:
            self.edited.emit(changed)

    def remove_selected(self) -> None:
        lib = self.library
        ids = self.selected_ids()
        if lib is None or not ids:
            return
        row = self.list.currentRow()
        edit = lib.remove_clips(ids)
        self.refresh()
        if not self.current_id() and self.list.count():
            self.list.setCurrentRow(min(row, self.list.count() - 1))
        if edit is not None:
            self.show_notice(
                "info",
                f"Removed {len(ids)} clip{'s' if len(ids) != 1 else ''} from the library; the video files are untouched (Ctrl+Z brings them back).",
            )
            self.edited.emit(edit.clip_ids)

    def export_to(self, path: str | Path, kind: str) -> bool:
        lib = self.library
        if lib is None:
            return False
        try:
            report = lib.export_raw(path) if kind == "raw" else lib.export_stream(path)
        except LibraryError as e:
            self.show_notice("error", str(e))
            return False
        text = f"Exported {report.written} clip{'s' if report.written != 1 else ''} to {report.path}; video paths in it start from its folder, {report.path.parent}."
        if report.skipped:
            text += "\nLeft out (no readable video):\n" + "\n".join(f"• {s}" for s in report.skipped[:NOTICE_LINES])
        self.show_notice("warning" if report.skipped else "info", text)
        return True

    # -- dialogs
    def _start_dir(self) -> str:
        return str(self.library.folder) if self.library is not None else str(Path.home())

    def _ask_import_files(self) -> None:
        if self._require_library() is None:
            return
        patterns = " ".join(f"*{s}" for s in VIDEO_SUFFIXES)
        files, _ = QFileDialog.getOpenFileNames(
            self, "Import video files", self._start_dir(), f"Videos ({patterns});;All files (*)"
        )
        if files:
            self.import_paths(files)

    def _ask_import_folder(self) -> None:
        if self._require_library() is None:
            return
        folder = QFileDialog.getExistingDirectory(self, "Import every video in a folder", self._start_dir())
        if folder:
            self.import_paths([folder])

    def _ask_import_annotations(self) -> None:
        if self._require_library() is None:
            return
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Import annotations (raw or stream format)",
            self._start_dir(),
            "Annotations (*.json *.jsonl);;All files (*)",
        )
        if not path:
            return
        prefix = QFileDialog.getExistingDirectory(
            self,
            "The folder the file's video paths start from; Cancel: the file's own folder",
            str(Path(path).parent),
        )
        self.import_annotation_file(path, prefix or None)

    def _ask_export(self, kind: str) -> None:
        if self.library is None:
            return
        name = "annotations-export.json" if kind == "raw" else "stream.json"
        title = "Export raw annotations" if kind == "raw" else "Export in the stream format"
        path, _ = QFileDialog.getSaveFileName(self, title, str(self.library.folder / name), "JSON (*.json)")
        if path:
            self.export_to(path, kind)

    # -- drag and drop
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        if any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dragMoveEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.import_paths(paths)

    def eventFilter(self, obj: QObject, event: Any) -> bool:  # noqa: N802 - Qt override
        if obj is self.list and event.type() == event.Type.KeyPress:
            key_event: QKeyEvent = event
            if key_event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace) and not key_event.modifiers():
                self.remove_selected()
                return True
        return False

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop loading thumbnails (waits for the one being grabbed)."""
        for job in self._jobs:
            job.cancelled.set()
        self._pool.waitForDone(3000)


__all__ = ["LibraryView", "Notice", "ThumbnailJob", "clip_status", "report_text"]
