"""The clip library of one training project folder, without widgets: the store.

A project is a folder holding ``annotations.json``: ONE raw annotation file in the Streamo format
(PROTOCOL.md section 3), one sample per clip, video paths relative to the folder where the video
lies inside it (absolute otherwise). So the trainer takes it unchanged::

    streamo-live train --data FOLDER/annotations.json --video-prefix FOLDER ...

Every edit goes through :class:`Library`: it is applied, recorded for undo/redo (a list of
clip-level changes; clips are immutable values, so the history shares them instead of copying)
and saved at once, atomically (``model.atomic``: a temporary file renamed over the old one, the
previous version kept as ``annotations.json.bak``). A save that fails keeps the edit in memory and
says why in ``save_error``; the next successful save writes everything.

The rest lives beside it, and is re-exported here: the values (``clips``: Clip, its items, the
seconds convention), video files (``video_files``: the one probe's verdict, thumbnails, the
player's FrameReader) and conversion (``convert``: a clip's turns by the one converter, stream
files read back into raw events). What is wrong with a clip is ``model.sample_check``'s, the rule
set the command line uses too.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from app.training.clips import (
    FPS,
    QUESTION,
    RESPONSE,
    Clip,
    ItemRef,
    LibraryError,
    Problem,
    Question,
    Response,
    Turn,
    clip_from_sample,
    describe_item,
)
from app.training.convert import clip_turns, stream_to_raw
from app.training.video_files import VIDEO_SUFFIXES, FrameReader, probe_clip, thumbnail
from model import protocol as P
from model.atomic import write_text_atomic
from model.presets import INSTRUCTION_FROM, INSTRUCTION_FROM_KEY
from model.sample_check import check_raw_sample
from model.video_probe import NO_SUCH_FILE

log = logging.getLogger(__name__)

ANNOTATION_FILE = "annotations.json"
DEFAULT_SOURCE = "custom"
DEFAULT_TASK_TYPE = "Narration"
# Suggestions for the task type (free text in the format; Streamo-Instruct's kinds of tasks).
TASK_TYPES = ("Narration", "Event Caption", "Action Caption", "Event Grounding", "QA")
# Where a clip's first turn takes its instruction from (the raw key INSTRUCTION_FROM_KEY; absent: "task").
INSTRUCTION_FROM_VALUES = INSTRUCTION_FROM
INSTRUCTION_FROM_DEFAULT = INSTRUCTION_FROM[0]

__all__ = [
    "ANNOTATION_FILE",
    "DEFAULT_SOURCE",
    "DEFAULT_TASK_TYPE",
    "FPS",
    "INSTRUCTION_FROM_KEY",
    "INSTRUCTION_FROM_VALUES",
    "QUESTION",
    "RESPONSE",
    "TASK_TYPES",
    "VIDEO_SUFFIXES",
    "Clip",
    "Edit",
    "ExportReport",
    "FrameReader",
    "ImportReport",
    "ItemRef",
    "Library",
    "LibraryError",
    "Problem",
    "Question",
    "Response",
    "Turn",
    "describe_item",
    "probe_clip",
    "stream_to_raw",
    "thumbnail",
]


@dataclass
class ImportReport:
    added: list[Clip] = field(default_factory=list)
    updated: list[Clip] = field(default_factory=list)  # clips that had no annotation and got the file's
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path or "FILE sample N", reason)
    notes: list[str] = field(default_factory=list)  # what was imported but changed, or left out

    @property
    def imported(self) -> int:
        return len(self.added) + len(self.updated)


@dataclass
class ExportReport:
    path: Path
    written: int
    skipped: list[str] = field(default_factory=list)  # "clip: why"


# ---------------------------------------------------------------------------------------------
# The library


@dataclass(frozen=True)
class _Change:
    position: int  # index in the clip list (before the change for a removal, after it for an insertion)
    before: Clip | None  # None: inserted
    after: Clip | None  # None: removed


@dataclass(frozen=True)
class Edit:
    label: str
    changes: tuple[_Change, ...]

    @property
    def clip_ids(self) -> list[str]:
        return list(dict.fromkeys(c.id for ch in self.changes for c in (ch.after, ch.before) if c is not None))


class Library:
    """The clips of one project folder and their annotations; see the module docstring."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(os.path.abspath(folder))
        self._clips: list[Clip] = []
        self._kept: list[Any] = []  # samples of the file this editor cannot show; written back unchanged
        self._undo: list[Edit] = []
        self._redo: list[Edit] = []
        self._probes: dict[tuple, tuple[P.VideoMeta | None, str]] = {}
        self.notes: list[str] = []  # what opening the file left out or changed
        self.save_error: str | None = None  # why the last save failed (the edits are kept in memory)
        self._load()

    # -- where things are
    @property
    def annotation_path(self) -> Path:
        return self.folder / ANNOTATION_FILE

    @property
    def backup_path(self) -> Path:
        return self.folder / (ANNOTATION_FILE + ".bak")

    @property
    def video_prefix(self) -> Path:
        return self.folder

    @property
    def clips(self) -> tuple[Clip, ...]:
        return tuple(self._clips)

    def clip(self, clip_id: str) -> Clip:
        for c in self._clips:
            if c.id == clip_id:
                return c
        raise KeyError(clip_id)

    def find(self, clip_id: str) -> Clip | None:
        return next((c for c in self._clips if c.id == clip_id), None)

    def resolve(self, clip: Clip) -> Path:
        """The clip's video file on disk."""
        return self._resolve(clip.video_path, self.folder)

    @staticmethod
    def _resolve(video_path: str, prefix: Path) -> Path:
        p = Path(video_path)
        return p if p.is_absolute() else prefix / p

    def _stored_path(self, path: Path, base: Path | None = None) -> str:
        """``path`` relative to ``base`` (the project folder) when it lies inside it, else absolute."""
        base = base or self.folder
        full = Path(os.path.abspath(path))
        try:
            return full.relative_to(base).as_posix()
        except ValueError:
            return str(full)

    def _probe(self, path: Path) -> tuple[P.VideoMeta | None, str]:
        try:
            st = path.stat()
            key: tuple = (str(path), st.st_size, st.st_mtime_ns)
        except OSError:
            return probe_clip(path)
        if key not in self._probes:
            self._probes[key] = probe_clip(path)
        return self._probes[key]

    def _with_meta(self, clip: Clip) -> Clip:
        meta, why = self._probe(self.resolve(clip))
        return replace(clip, meta=meta, unreadable=why, id=clip.id)

    def refresh_videos(self) -> None:
        """Probe every clip's video again (a file moved back, re-encoded)."""
        self._probes.clear()
        self._clips = [self._with_meta(c) for c in self._clips]

    # -- reading and writing the project file
    def _load(self) -> None:
        path = self.annotation_path
        if path.is_dir():
            raise LibraryError(f"'{path}' is a folder; the project needs that name for its annotation file.")
        if not path.exists():
            return
        try:
            samples = P.load_raw_annotations(path)
        except P.AnnotationError as e:
            raise LibraryError(
                f"Cannot open the project: {e}. The file was left as it is: fix it, or replace it with "
                f"{self.backup_path.name} (the version before the last change), then open the project again."
            ) from None
        except (OSError, UnicodeDecodeError) as e:
            raise LibraryError(f"Cannot read {path}: {e}.") from None
        for i, sample in enumerate(samples):
            clip, why = clip_from_sample(sample, i)
            if clip is None:
                self._kept.append(sample)
                self.notes.append(f"{ANNOTATION_FILE} sample {i} is kept in the file but not shown: {why}")
            else:
                self._clips.append(self._with_meta(clip))

    def raw_samples(self) -> list[dict[str, Any]]:
        """The project file's content: one raw sample per clip (then samples kept as they were)."""
        return [c.to_raw() for c in self._clips] + list(self._kept)

    def save(self) -> None:
        """Write the project file atomically, the previous one kept as ``.bak``. Raises LibraryError."""
        text = json.dumps(self.raw_samples(), indent=2, ensure_ascii=False) + "\n"
        path = self.annotation_path
        try:
            write_text_atomic(path, text, backup=self.backup_path)
        except OSError as e:
            raise LibraryError(
                f"Could not save {path}: {e.strerror or e}. Your edits are kept while the app runs; "
                "free some space or fix the folder's permissions, and the next change saves them all."
            ) from None

    def _autosave(self) -> None:
        try:
            self.save()
        except LibraryError as e:
            self.save_error = str(e)
            log.warning("%s", e)
        else:
            self.save_error = None

    # -- history
    def _apply(self, changes: Sequence[_Change], reverse: bool = False) -> None:
        for ch in reversed(changes) if reverse else changes:
            before, after = (ch.after, ch.before) if reverse else (ch.before, ch.after)
            if before is None:  # insert
                self._clips.insert(ch.position, after)  # type: ignore[arg-type]
            elif after is None:  # remove
                del self._clips[self._index(before.id)]
            else:
                self._clips[self._index(before.id)] = after

    def _index(self, clip_id: str) -> int:
        for i, c in enumerate(self._clips):
            if c.id == clip_id:
                return i
        raise KeyError(clip_id)

    def _commit(self, label: str, changes: Sequence[_Change]) -> Edit | None:
        if not changes:
            return None
        edit = Edit(label, tuple(changes))
        self._apply(edit.changes)
        self._undo.append(edit)
        self._redo.clear()
        self._autosave()
        return edit

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_label(self) -> str:
        return self._undo[-1].label if self._undo else ""

    @property
    def redo_label(self) -> str:
        return self._redo[-1].label if self._redo else ""

    def undo(self) -> Edit | None:
        if not self._undo:
            return None
        edit = self._undo.pop()
        self._apply(edit.changes, reverse=True)
        self._redo.append(edit)
        self._autosave()
        return edit

    def redo(self) -> Edit | None:
        if not self._redo:
            return None
        edit = self._redo.pop()
        self._apply(edit.changes)
        self._undo.append(edit)
        self._autosave()
        return edit

    # -- edits of one clip
    def _replace(self, clip_id: str, label: str, **fields: Any) -> Edit | None:
        old = self.clip(clip_id)
        new = replace(old, **fields, id=old.id)
        if new == old:
            return None
        return self._commit(label, [_Change(self._index(clip_id), old, new)])

    def set_task_type(self, clip_id: str, task_type: str) -> Edit | None:
        return self._replace(clip_id, "change the task type", task_type=task_type.strip())

    def set_instruction_from(self, clip_id: str, value: str) -> Edit | None:
        """Where the clip's first turn takes its instruction from: ``"task"`` (the default: the Live
        task's instruction; the raw key is removed) or ``"first_question"`` (the released converter's
        rule 7: the clip's first question), kept as the raw key ``instruction_from``. Undoable."""
        if value not in INSTRUCTION_FROM_VALUES:
            raise ValueError(f"instruction_from must be one of {', '.join(INSTRUCTION_FROM_VALUES)}, not {value!r}")
        clip = self.clip(clip_id)
        extra = tuple((k, v) for k, v in clip.extra if k != INSTRUCTION_FROM_KEY)
        if value != INSTRUCTION_FROM_DEFAULT:
            extra += ((INSTRUCTION_FROM_KEY, value),)
        if dict(extra) == dict(clip.extra):
            return None  # already so (a key's place among the others is no change)
        source = "the task" if value == INSTRUCTION_FROM_DEFAULT else "the first question"
        return self._replace(clip_id, f"take the instruction from {source}", extra=extra)

    def add_event(self, clip_id: str, content: str, start: int, end: int) -> ItemRef:
        clip = self.clip(clip_id)
        self._replace(clip_id, "add an event", responses=(*clip.responses, Response.event(content, start, end)))
        return ItemRef(RESPONSE, len(clip.responses))

    def add_answer(self, clip_id: str, content: str, second: int) -> ItemRef:
        clip = self.clip(clip_id)
        self._replace(clip_id, "add an answer", responses=(*clip.responses, Response.answer(content, second)))
        return ItemRef(RESPONSE, len(clip.responses))

    def add_question(self, clip_id: str, content: str, second: int) -> ItemRef:
        clip = self.clip(clip_id)
        self._replace(clip_id, "add a question", questions=(*clip.questions, Question.at(content, second)))
        return ItemRef(QUESTION, len(clip.questions))

    def update_item(
        self,
        clip_id: str,
        ref: ItemRef,
        content: str | None = None,
        start: int | None = None,
        end: int | None = None,
        second: int | None = None,
    ) -> Edit | None:
        """Change an item's text and seconds (events: ``start``/``end``; answers and questions:
        ``second``). Raw times that still say the same seconds are left as they were written."""
        clip = self.clip(clip_id)
        old = clip.item(ref)
        new: Question | Response = old
        if content is not None and content.strip() != old.content.strip():
            new = replace(new, content=P.neutralize_user_text(content))
        if isinstance(old, Question):
            if second is not None and second != old.second:
                new = replace(new, time=str(int(second) + 1))
            return self._replace(clip_id, "edit a question", questions=_put(clip.questions, ref.index, new))
        if old.is_event:
            span = old.span
            s = span[0] if start is None else start  # type: ignore[index]
            e = span[1] if end is None else end  # type: ignore[index]
            if (s, e) != span:
                ev = Response.event("", s, e)
                new = replace(new, st_time=ev.st_time, end_time=ev.end_time)
        elif second is not None and second != old.second:
            new = replace(new, time=str(int(second) + 1))
        return self._replace(clip_id, f"edit an {old.kind}", responses=_put(clip.responses, ref.index, new))

    def remove_item(self, clip_id: str, ref: ItemRef) -> Edit | None:
        clip = self.clip(clip_id)
        if ref.kind == QUESTION:
            return self._replace(clip_id, "delete a question", questions=_drop(clip.questions, ref.index))
        kind = clip.responses[ref.index].kind
        return self._replace(clip_id, f"delete an {kind}", responses=_drop(clip.responses, ref.index))

    def remove_clips(self, clip_ids: Iterable[str]) -> Edit | None:
        """Take clips out of the library (their video files stay where they are)."""
        ids = set(clip_ids)
        changes = []
        for pos in reversed(range(len(self._clips))):  # from the end: each position holds at its turn
            if self._clips[pos].id in ids:
                changes.append(_Change(pos, self._clips[pos], None))
        # Undo re-inserts in reverse order, i.e. front to back, each at its old index.
        n = len(changes)
        return self._commit(f"remove {n} clip{'s' if n != 1 else ''}", changes)

    # -- imports
    def _known_paths(self) -> dict[str, Clip]:
        return {os.path.normcase(os.path.abspath(self.resolve(c))): c for c in self._clips}

    def import_videos(self, paths: Iterable[str | os.PathLike[str]]) -> ImportReport:
        """Add video files and the videos in folders (recursively, hidden folders skipped; there, files
        with a video suffix). Files the one probe refuses come back in ``report.failed`` with its
        reason; nothing raises."""
        report = ImportReport()
        known = self._known_paths()
        files: list[Path] = []
        for p in map(Path, paths):
            if p.is_dir():
                found = sorted(
                    q
                    for q in p.rglob("*")
                    if q.suffix.lower() in VIDEO_SUFFIXES
                    and q.is_file()
                    and not any(part.startswith(".") for part in q.relative_to(p).parts)
                )
                if not found:
                    report.notes.append(f"{p}: no video files ({', '.join(VIDEO_SUFFIXES)}) in this folder")
                files += found
            else:  # a file named on its own: the probe decides, whatever its suffix (as Live's does)
                files.append(p)
        new: list[Clip] = []
        for f in files:
            key = os.path.normcase(os.path.abspath(f))
            if key in known:
                report.notes.append(f"{f.name} is already in the library")
                continue
            meta, why = self._probe(Path(os.path.abspath(f)))
            if meta is None:
                report.failed.append((str(f), why))
                continue
            clip = Clip(
                video_path=self._stored_path(f),
                video_name=f.name,
                task_type=DEFAULT_TASK_TYPE,
                source=DEFAULT_SOURCE,
                meta=meta,
            )
            known[key] = clip
            new.append(clip)
        start = len(self._clips)
        self._commit(
            f"import {len(new)} clip{'s' if len(new) != 1 else ''}",
            [_Change(start + k, None, c) for k, c in enumerate(new)],
        )
        report.added = new
        return report

    def import_annotations(
        self, path: str | os.PathLike[str], video_prefix: str | os.PathLike[str] | None = None
    ) -> ImportReport:
        """Bring in a raw or stream-format annotation file (JSON or JSON Lines; Streamo-Instruct
        files included); relative video paths start from ``video_prefix`` (default: the file's
        folder). A clip already in the library without annotations gets the file's; others are added.
        A file that cannot be read is ``report.failed`` and changes nothing."""
        # Lazy: model.train.data imports torch (seconds); only this action needs its reader.
        from model.train.data import DataIssue, read_annotation_file, stream_sample_problems

        path = Path(path)
        prefix = Path(os.path.abspath(video_prefix)) if video_prefix else Path(os.path.abspath(path.parent))
        report = ImportReport()
        issues: list[DataIssue] = []
        pairs = read_annotation_file(path, issues)
        for issue in issues:
            if issue.index is None:
                report.failed.append((str(path), issue.message))
            else:
                report.notes.append(f"{path.name} sample {issue.index}: {issue.message}")
        if report.failed:
            return report
        if not pairs:
            report.failed.append((str(path), "it holds no samples"))
            return report

        known = self._known_paths()
        existing = {id(c): c for c in self._clips}
        changes: list[_Change] = []
        position = len(self._clips)
        missing: list[str] = []
        for index, sample in pairs:
            where = f"{path.name} sample {index}"
            if isinstance(sample, dict) and "messages" in sample:
                try:
                    raw, notes = stream_to_raw(sample)
                except ValueError as e:
                    why = "; ".join(stream_sample_problems(sample)) or str(e)
                    report.failed.append((where, f"{why}; skipped"))
                    continue
                report.notes += [f"{where}: {n}" for n in notes]
            elif isinstance(sample, dict) and "video_path" in sample:
                raw = sample
            else:
                report.failed.append(
                    (where, "neither a raw annotation (video_path) nor a stream sample (messages); skipped")
                )
                continue
            clip, why = clip_from_sample(raw, index)
            if clip is None:
                report.failed.append((where, f"{why}; skipped"))
                continue
            video = self._resolve(clip.video_path, prefix)
            clip = replace(clip, video_path=self._stored_path(video), id=clip.id)
            clip = self._with_meta(clip)
            if clip.meta is None:
                missing.append(f"{where}: video {video}: {clip.unreadable}")
            key = os.path.normcase(os.path.abspath(video))
            old = known.get(key)
            if old is not None and id(old) in existing and not old.annotated:
                clip = replace(clip, id=old.id)
                changes.append(_Change(self._index(old.id), old, clip))
                report.updated.append(clip)
                del existing[id(old)]  # one file sample per empty clip
                known[key] = clip
                continue
            if old is not None and old.to_raw() == clip.to_raw():
                report.notes.append(f"{where}: already in the library")
                continue
            changes.append(_Change(position, None, clip))
            position += 1
            report.added.append(clip)
            known.setdefault(key, clip)
        if missing:
            shown = missing[:5] + ([f"... and {len(missing) - 5} more"] if len(missing) > 5 else [])
            report.notes.append(
                f"{len(missing)} imported clip(s) have no readable video (annotations kept; put the videos "
                f"there or import again with the folder the paths start from):\n" + "\n".join(shown)
            )
        self._commit(f"import {path.name}", changes)
        return report

    # -- exports
    def _export_samples(self, folder: Path) -> list[dict[str, Any]]:
        return [c.to_raw(self._stored_path(self.resolve(c), Path(os.path.abspath(folder)))) for c in self._clips]

    def export_raw(self, path: str | os.PathLike[str]) -> ExportReport:
        """The library as a raw annotation file; video paths relative to that file's folder where
        the videos lie inside it (train it with ``--video-prefix`` that folder)."""
        path = Path(path)
        samples = self._export_samples(path.parent)
        try:
            write_text_atomic(path, json.dumps(samples, indent=2, ensure_ascii=False) + "\n")
        except OSError as e:
            raise LibraryError(f"Could not write {path}: {e.strerror or e}.") from None
        return ExportReport(path, len(samples))

    def export_stream(self, path: str | os.PathLike[str]) -> ExportReport:
        """The library converted by ``protocol.to_stream`` (what ``streamo-live data to-stream``
        writes); clips without a readable video are left out and named."""
        path = Path(path)
        folder = Path(os.path.abspath(path.parent))
        skipped = [f"{c.name}: {c.unreadable}" for c in self._clips if c.meta is None]
        samples = [s for s, c in zip(self._export_samples(folder), self._clips, strict=True) if c.meta is not None]
        out = P.to_stream(samples, video_prefix=folder, fps=FPS, join_prefix=False)
        try:
            write_text_atomic(path, P.dump_stream(out) + "\n")
        except OSError as e:
            raise LibraryError(f"Could not write {path}: {e.strerror or e}.") from None
        return ExportReport(path, len(out), skipped)

    # -- what the converter makes of a clip, and what is wrong with it
    def turns(self, clip: Clip) -> list[Turn]:
        """The clip's turns exactly as the Training tab trains them (``convert.clip_turns``)."""
        return clip_turns(clip)

    def problems(self, clip: Clip) -> list[Problem]:
        """Every problem of the clip, each naming its item: its video's (the one probe's reason), then
        the annotation's by the one checker the command line uses too (``model.sample_check``)."""
        out: list[Problem] = []
        if clip.meta is None:
            advice = " Put the file back, or remove the clip." if clip.unreadable == NO_SUCH_FILE else ""
            out.append(Problem(f"Video {self.resolve(clip)}: {clip.unreadable}.{advice}"))
        for p in check_raw_sample(clip.to_raw(), clip.n_turns if clip.meta else None, FPS):
            out.append(Problem(p.message, ItemRef(p.kind, p.index) if p.kind else None))  # type: ignore[arg-type]
        return out


def _put(items: tuple, index: int, item: Any) -> tuple:
    return (*items[:index], item, *items[index + 1 :])


def _drop(items: tuple, index: int) -> tuple:
    return (*items[:index], *items[index + 1 :])
