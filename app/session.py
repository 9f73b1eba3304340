"""The session store: a live session appended to disk as JSON Lines, listed and reopened later.

One file per session under ``<data>/sessions/`` (``STREAMO_LIVE_DATA``, else
``$XDG_DATA_HOME/streamo-live``), written the same way by the desktop app and by ``narrate``.
Records, one per line, each fsynced as it is written so a crash loses at most the second being
processed:

* ``{"type": "session", "format": ..., "schema": 2, "id", "started", "source", "model", "task", "fps", "title"}``
* ``{"type": "step", ...}``: one per model step, the schema of ``app.live.records.StepRecord``
  (every step is kept so the state timeline survives)
* ``{"type": "note", "wall", "level", "text"}`` (errors and warnings shown to the user)
* ``{"type": "end", "wall"}``

A session whose run kept the frames the model saw has them beside its log (:func:`frames_dir`).
Schema 1 files (``"version": 1`` in the header) open too: their steps convert on read.
:class:`Session` turns records into transcript entries and state spans; the live window and a
reopened file go through the same :meth:`Session.add`. Subtitles follow ``app.live.subtitles``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from app.exports import JsonlWriter, Subtitle, read_jsonl, to_srt, to_vtt, write_text_atomic
from app.live.records import SCHEMA, StepRecord, clean_text
from app.live.subtitles import HOLD_SECONDS, asked_by_someone, transcript_cues
from model import json_text
from model.atomic import private_folder
from model.locks import Lock, LockHeld, acquire
from model.paths import data_dir

log = logging.getLogger(__name__)

FORMAT = "streamo-live-session"
EXPORT_FORMATS = ("srt", "vtt", "json")
RESPONSE, QUESTION = "response", "question"


def sessions_dir(root: Path | None = None) -> Path:
    return (root or data_dir()) / "sessions"


def frames_dir(session_path: str | os.PathLike[str]) -> Path:
    """Where a session keeps the frames the model saw (Live's "Keep the frames the model saw"):
    beside its log, ``<stamp>-<id>.frames/000123.0.png`` (``app.live.frames.frame_name``)."""
    return Path(session_path).with_suffix(".frames")


# ---------------------------------------------------------------------------------------------
# Records and what a transcript shows


@dataclass(frozen=True)
class SessionMeta:
    source: str = ""
    model: str = ""
    task: str = ""
    fps: float = 1.0
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started: float = field(default_factory=time.time)  # wall clock, seconds since the epoch
    title: str = ""  # a name the user gave it ("" shows the date and source)


@dataclass(frozen=True)
class TranscriptEntry:
    kind: str  # "response" | "question"
    t: float  # stream seconds
    end: float
    wall: float  # wall clock
    text: str  # cleaned for display (the record keeps the raw text)
    origin: str = ""  # a question's: typed | preset | voice


@dataclass(frozen=True)
class StateSpan:
    t: float
    end: float
    state: str


@dataclass
class Session:
    """A transcript being built live or reopened from disk."""

    meta: SessionMeta = field(default_factory=SessionMeta)
    path: Path | None = None
    entries: list[TranscriptEntry] = field(default_factory=list)
    states: list[StateSpan] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ended: bool = False

    def add(self, step: StepRecord) -> list[TranscriptEntry]:
        """Take one step; returns the transcript entries it added (question first)."""
        added = []
        q = step.question
        if q is not None and clean_text(q.text).strip():
            added.append(TranscriptEntry(QUESTION, step.t, step.end, step.wall, clean_text(q.text).strip(), q.origin))
        if clean_text(step.text).strip():
            added.append(TranscriptEntry(RESPONSE, step.t, step.end, step.wall, clean_text(step.text).strip()))
        self.entries.extend(added)
        self.states.append(StateSpan(step.t, step.end, step.state))
        return added

    @property
    def duration(self) -> float:
        return self.states[-1].end if self.states else 0.0

    def subtitles(self, hold: float = HOLD_SECONDS) -> list[Subtitle]:
        """The responses and the asked questions as subtitles, by the one rule of
        ``app.live.subtitles.transcript_cues`` (what ``narrate`` writes; cut at the stream's end)."""
        answers = ((e.t, e.end, e.text) for e in self.entries if e.kind == RESPONSE)
        asked = ((e.t, e.end, e.text) for e in self.entries if e.kind == QUESTION and asked_by_someone(e.origin))
        return transcript_cues(answers, asked, hold, self.duration if self.states else None)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "streamo-live-transcript",
            "schema": SCHEMA,
            "session": asdict(self.meta),
            "entries": [asdict(e) for e in self.entries],
            "states": [asdict(s) for s in self.states],
        }

    def export_text(self, fmt: str, hold: float = HOLD_SECONDS) -> str:
        if fmt == "srt":
            return to_srt(self.subtitles(hold))
        if fmt == "vtt":
            return to_vtt(self.subtitles(hold))
        if fmt == "json":
            return json.dumps(self.to_json(), ensure_ascii=False, indent=1) + "\n"
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")

    def export(self, path: str | os.PathLike[str], fmt: str | None = None, hold: float = HOLD_SECONDS) -> Path:
        """Write the transcript as SRT, WebVTT or JSON (by ``fmt`` or the file's suffix)."""
        from model.outputs import check_output

        path = Path(path)
        fmt = fmt or path.suffix.lstrip(".").lower()
        text = self.export_text(fmt, hold)
        # The one output guard: never the video itself, a model's file or a device (OutputRefused, a ValueError).
        target = check_output(path, "Export", [self.meta.source] if Path(self.meta.source).is_file() else [])
        write_text_atomic(target, text, private=True)
        return path

    def plain_text(self, entries: Iterable[TranscriptEntry] | None = None) -> str:
        """What "copy" puts on the clipboard: one line per entry."""
        lines = []
        for e in self.entries if entries is None else entries:
            who = "Q" if e.kind == QUESTION else "A"
            lines.append(f"[{format_clock(e.t)}] {who}: {e.text}")
        return "\n".join(lines)


def format_clock(seconds: float) -> str:
    """Stream time as M:SS (H:MM:SS past an hour)."""
    s = int(max(0.0, seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


# ---------------------------------------------------------------------------------------------
# Writing


def header(meta: SessionMeta) -> dict[str, Any]:
    return {"type": "session", "format": FORMAT, "schema": SCHEMA, **asdict(meta)}


class SessionLog:
    """Appends a session's records to its JSONL file (and to ``mirror``, the same records again,
    for ``narrate --jsonl``). Thread-safe (the engine thread writes steps, the GUI thread notes);
    every record is on disk before ``write`` returns.

    A file that cannot be written (a full disk, a folder made read-only) never stops the run: its writer
    is dropped at the first failure, ``on_problem`` hears of it once (the text names the file and says why),
    the other file goes on, and :attr:`problems` keeps why for the run's end. ``close`` never raises.
    ``path`` None: no session store (it could not be made; only the mirror is written)."""

    def __init__(
        self,
        path: Path | None,
        meta: SessionMeta,
        mirror: Path | None = None,
        on_problem: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.meta = meta
        self.on_problem = on_problem
        self.problems: dict[Path, str] = {}  # a file whose records stopped: why
        self._guard = threading.Lock()
        self._closed = False
        self._lock: Lock | None = None
        self._writers = [JsonlWriter(self.path, private=True)] if self.path is not None else []
        if mirror is not None:
            try:  # the mirror starts afresh: a second run to the same --jsonl path replaces the first
                self._writers.append(JsonlWriter(Path(mirror), append=False, private=True))
            except OSError as e:
                self._failed(Path(mirror), e, None)
        self._write(header(meta))
        if self.path is not None:
            self._lock_log()

    @classmethod
    def create(
        cls,
        meta: SessionMeta,
        root: Path | None = None,
        mirror: Path | None = None,
        on_problem: Callable[[str], None] | None = None,
    ) -> SessionLog:
        """A new log in the session store (OSError when the store cannot be written: the caller decides)."""
        folder = private_folder(sessions_dir(root))  # owner-only: what the camera, screen and voice recorded
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(meta.started))
        return cls(folder / f"{stamp}-{meta.id}.jsonl", meta, mirror, on_problem)

    def write_step(self, step: StepRecord) -> None:
        self._write(step.to_json())

    def _lock_log(self) -> None:
        """Hold a lock on the log while it is written: the window's rename and delete ask for it and refuse a
        session another process (a ``narrate``) is still writing (a rename replaced the file under it)."""
        try:
            self._lock = _try_lock(self.path)
        except (OSError, SessionBusy) as e:  # the file is written all the same; only the guard is missing
            log.warning("could not lock %s: %s", self.path, e)

    def write_note(self, text: str, level: str = "error") -> None:
        self._write({"type": "note", "wall": round(time.time(), 3), "level": level, "text": text})

    def close(self) -> None:
        if not self._closed:
            self._write({"type": "end", "wall": round(time.time(), 3)})
            self._closed = True
            for writer in list(self._writers):
                try:  # a full disk: the data still buffered cannot be flushed
                    writer.close()
                except OSError as e:
                    self._failed(writer.path, e, writer)
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def stored(self) -> bool:
        """Every record so far is in the session store."""
        return self.path is not None and self.path not in self.problems

    def _write(self, record: dict[str, Any]) -> None:
        for writer in list(self._writers):
            if writer.closed:
                continue  # a late note after the run ended
            try:
                writer.write(record)
            except (OSError, ValueError) as e:  # a full disk must not stop the live session
                self._failed(writer.path, e, writer)

    def _failed(self, path: Path, error: Exception, writer: JsonlWriter | None) -> None:
        """Drop a writer that failed and say so once (``on_problem``, else the log)."""
        with self._guard:
            if writer is not None:
                if writer not in self._writers:
                    return  # another thread said it already
                self._writers.remove(writer)
            if path in self.problems:
                return
            reason = getattr(error, "strerror", None) or str(error)
            self.problems[path] = reason
        if writer is not None:
            try:
                writer.close()
            except OSError:
                pass
        what = "the session log" if path == self.path else "the session's records"
        text = f"Cannot write {what} to {path} ({reason}); its records stop here and the run goes on."
        log.warning("%s", text)
        if self.on_problem is not None:
            self.on_problem(text)


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class SessionSummary:
    path: Path
    meta: SessionMeta
    responses: int
    duration: float
    said: str = ""  # every question and answer, one per line: what the library's search looks through

    @property
    def name(self) -> str:
        """The name the user gave it, else its source's file name."""
        return self.meta.title or (Path(self.meta.source).name if self.meta.source else "?")

    @property
    def title(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.meta.started))
        return f"{when}  {self.name}  ({format_clock(self.duration)}, {self.responses} responses)"

    def details(self) -> str:
        """What the library shows of a session: where it came from, with what, how long, how much was said."""
        m = self.meta
        rows = [
            ("Source", m.source or "?"),
            ("Task", m.task or "?"),
            ("Model", m.model or "?"),
            ("Length", f"{format_clock(self.duration)} at {m.fps:g} frame(s) a second"),
            ("Responses", str(self.responses)),
            ("File", str(self.path)),
        ]
        return "\n".join(f"{k}: {v}" for k, v in rows)

    def matches(self, query: str) -> bool:
        """Every word of ``query`` (any case) appears in its name, source, task, model or what was said."""
        m = self.meta
        hay = "\n".join((self.title, m.source, m.task, m.model, self.said)).casefold()
        return all(word in hay for word in query.casefold().split())


def _meta_from(record: dict[str, Any]) -> SessionMeta:
    known = {f for f in SessionMeta.__dataclass_fields__}
    return SessionMeta(**{k: v for k, v in record.items() if k in known})


def load_session(path: str | os.PathLike[str]) -> Session:
    """Reopen a session file of either schema (tolerates the torn last line a crash leaves)."""
    path = Path(path)
    skipped: list[int] = []
    records = read_jsonl(path, skip_bad=True, skipped=skipped)  # one garbled line costs that line only
    if not records or not isinstance(records[0], dict) or records[0].get("type") != "session":
        raise ValueError(f"{path} is not a Streamo Live session (no session header)")
    session = Session(meta=_meta_from(records[0]), path=path)
    if skipped:
        lines = ", ".join(str(n) for n in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        session.notes.append(f"{len(skipped)} damaged line(s) of {path.name} were skipped (line {lines}).")
    for r in records[1:]:
        if not isinstance(r, dict):
            continue
        kind = r.get("type")
        if kind == "step" and "t" in r:
            try:
                session.add(StepRecord.from_json(r))
            except (TypeError, ValueError, KeyError) as e:  # one damaged line costs one step
                log.warning("%s: skipping a step that cannot be read (%s)", path, e)
        elif kind == "note":
            session.notes.append(str(r.get("text", "")))
        elif kind == "end":
            session.ended = True
    return session


def list_sessions(root: Path | None = None) -> list[SessionSummary]:
    """Saved sessions, newest first; unreadable files are skipped with a log line."""
    out = []
    for path in sorted(sessions_dir(root).glob("*.jsonl"), reverse=True):
        try:
            s = load_session(path)
        except (OSError, ValueError) as e:
            log.warning("skipping %s: %s", path, e)
            continue
        responses = sum(1 for e in s.entries if e.kind == RESPONSE)
        said = "\n".join(e.text for e in s.entries)
        out.append(SessionSummary(path, s.meta, responses, s.duration, said))
    return out


TRASH = ".trash"  # beside the sessions: deleted ones wait here (listing skips it)
TRASH_DAYS = 30  # how long a deleted session can be brought back


def trash_dir(session_path: str | os.PathLike[str]) -> Path:
    return Path(session_path).parent / TRASH


@dataclass(frozen=True)
class Trashed:
    """A deleted session waiting in the trash: where it was and where it is now."""

    original: Path
    path: Path  # the log in the trash (its frames, when kept, beside it: :func:`frames_dir`)


class SessionBusy(ValueError):
    """The session is still being written (a run in this or another process)."""


def _try_lock(path: Path) -> Lock:
    """The one lock rule (``model.locks``) on the session log itself: its content untouched, released by
    ``release()``. SessionBusy when another holder (a live run, a ``narrate``) has it."""
    try:
        return acquire(path, own_file=False)
    except LockHeld:
        raise SessionBusy(
            f"{path.name} is still being written (a live run or a narrate); rename or delete it when it ends."
        ) from None


def _unless_busy(path: Path) -> None:
    _try_lock(path).release()


def delete_session(path: str | os.PathLike[str]) -> Trashed:
    """Move a session file and its kept frames to the trash beside it, whence :func:`restore_session`
    brings them back (only a Streamo Live session: the header is checked first). The trash keeps them
    :data:`TRASH_DAYS` days (:func:`empty_trash`)."""
    path = Path(path)
    load_session(path)  # raises ValueError for anything else
    _unless_busy(path)  # SessionBusy (a ValueError) while a run writes it
    trash = trash_dir(path)
    trash.mkdir(parents=True, exist_ok=True)
    target = trash / path.name
    n = 1
    while target.exists() or frames_dir(target).exists():  # the same name deleted before
        target = trash / f"{path.stem}~{n}{path.suffix}"
        n += 1
    frames = frames_dir(path)
    if frames.is_dir():  # first: a failure leaves the session listed, so it can be deleted again
        os.replace(frames, frames_dir(target))
    os.replace(path, target)
    now = time.time()
    os.utime(target, (now, now))  # the trash counts its days from the deletion
    return Trashed(path, target)


def restore_session(trashed: Trashed) -> Path:
    """Undo :func:`delete_session`: the log and its frames back where they were. FileExistsError when a
    file has taken its place since."""
    if trashed.original.exists() or frames_dir(trashed.original).exists():
        raise FileExistsError(f"{trashed.original} exists again; the deleted session stays in {trashed.path.parent}")
    frames = frames_dir(trashed.path)
    if frames.is_dir():
        os.replace(frames, frames_dir(trashed.original))
    os.replace(trashed.path, trashed.original)
    return trashed.original


def empty_trash(root: Path | None = None, older_than_days: float = TRASH_DAYS) -> int:
    """Remove sessions deleted more than ``older_than_days`` ago for good; returns how many."""
    trash = sessions_dir(root) / TRASH
    cutoff = time.time() - older_than_days * 86400
    removed = 0
    for log_path in trash.glob("*.jsonl") if trash.is_dir() else ():
        try:
            if log_path.stat().st_mtime > cutoff:
                continue
            frames = frames_dir(log_path)
            if frames.is_dir():
                shutil.rmtree(frames)
            log_path.unlink()
            removed += 1
        except OSError as e:  # one stuck file does not stop the rest
            log.warning("could not empty %s from the trash: %s", log_path, e)
    return removed


def rename_session(path: str | os.PathLike[str], title: str) -> None:
    """Give a session a title: the header line is rewritten, the records are kept byte for byte,
    through a temporary file renamed into place. SessionBusy while a run still writes it (the rename would
    replace the file under the writer, whose later records would go nowhere)."""
    path = Path(path)
    _unless_busy(path)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    try:
        record = json_text.loads(lines[0]) if lines else {}
    except json.JSONDecodeError:
        record = {}
    if not isinstance(record, dict) or record.get("type") != "session":
        raise ValueError(f"{path} is not a Streamo Live session (no session header)")
    record["title"] = title.strip()
    lines[0] = json.dumps(record, ensure_ascii=False) + "\n"
    write_text_atomic(path, "".join(lines))
