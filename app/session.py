"""The session store: a live session appended to disk as JSON Lines, listed and reopened later.

One file per session under ``<data>/sessions/`` (``STREAMO_LIVE_DATA``, else
``$XDG_DATA_HOME/streamo-live``). Records, one per line, each fsynced as it is written so a
crash loses at most the second being processed:

* ``{"type": "session", "format": ..., "version": 1, "id", "started", "source", "model", "task", "fps"}``
* ``{"type": "step", "t", "end", "state", "wall", "text", "question", "p", "latency_ms"}``
  (``text``/``question`` only when present; every step is kept so the state timeline survives)
* ``{"type": "note", "wall", "level", "text"}`` (errors and warnings shown to the user)
* ``{"type": "end", "wall"}``

:class:`Session` turns records into transcript entries and state spans; the live window and a
reopened file go through the same :meth:`Session.add`. Exports reuse ``app.exports``.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from app.exports import JsonlWriter, Subtitle, read_jsonl, to_srt, to_vtt, write_text_atomic
from model.paths import data_dir

log = logging.getLogger(__name__)

FORMAT = "streamo-live-session"
VERSION = 1
EXPORT_FORMATS = ("srt", "vtt", "json")
RESPONSE, QUESTION = "response", "question"


def sessions_dir(root: Path | None = None) -> Path:
    return (root or data_dir()) / "sessions"


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


@dataclass(frozen=True)
class StepRecord:
    """One model step as logged: the second ``[t, end)`` of stream time and what the model did."""

    t: float
    end: float
    state: str  # model.protocol.SILENCE / STANDBY / RESPONSE
    wall: float
    text: str = ""
    question: str | None = None  # a question that entered the stream at this step
    p: dict[str, float] = field(default_factory=dict)
    latency_ms: float = 0.0


@dataclass(frozen=True)
class TranscriptEntry:
    kind: str  # "response" | "question"
    t: float  # stream seconds
    end: float
    wall: float  # wall clock
    text: str


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
        if step.question:
            added.append(TranscriptEntry(QUESTION, step.t, step.end, step.wall, step.question))
        if step.text.strip():
            added.append(TranscriptEntry(RESPONSE, step.t, step.end, step.wall, step.text.strip()))
        self.entries.extend(added)
        self.states.append(StateSpan(step.t, step.end, step.state))
        return added

    @property
    def duration(self) -> float:
        return self.states[-1].end if self.states else 0.0

    def subtitles(self, hold: float = 6.0, questions: bool = False) -> list[Subtitle]:
        """Responses as subtitles: each shows from its step until the next one or ``hold`` seconds."""
        picked = [e for e in self.entries if e.kind == RESPONSE or (questions and e.kind == QUESTION)]
        subs = []
        for i, e in enumerate(picked):
            end = e.t + max(hold, e.end - e.t)
            if i + 1 < len(picked) and picked[i + 1].t > e.t:
                end = min(end, picked[i + 1].t)
            text = f"Q: {e.text}" if e.kind == QUESTION else e.text
            subs.append(Subtitle(e.t, end, text))
        return subs

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "streamo-live-transcript",
            "version": VERSION,
            "session": asdict(self.meta),
            "entries": [asdict(e) for e in self.entries],
            "states": [asdict(s) for s in self.states],
        }

    def export_text(self, fmt: str, hold: float = 6.0) -> str:
        if fmt == "srt":
            return to_srt(self.subtitles(hold))
        if fmt == "vtt":
            return to_vtt(self.subtitles(hold))
        if fmt == "json":
            return json.dumps(self.to_json(), ensure_ascii=False, indent=1) + "\n"
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")

    def export(self, path: str | os.PathLike[str], fmt: str | None = None, hold: float = 6.0) -> Path:
        """Write the transcript as SRT, WebVTT or JSON (by ``fmt`` or the file's suffix)."""
        path = Path(path)
        fmt = fmt or path.suffix.lstrip(".").lower()
        write_text_atomic(path, self.export_text(fmt, hold))
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


class SessionLog:
    """Appends a session's records to its JSONL file. Thread-safe (the engine thread writes steps,
    the GUI thread notes); every record is on disk before ``write`` returns."""

    def __init__(self, path: Path, meta: SessionMeta) -> None:
        self.path = Path(path)
        self.meta = meta
        self._writer = JsonlWriter(self.path)
        self._writer.write({"type": "session", "format": FORMAT, "version": VERSION, **asdict(meta)})

    @classmethod
    def create(cls, meta: SessionMeta, root: Path | None = None) -> SessionLog:
        folder = sessions_dir(root)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(meta.started))
        return cls(folder / f"{stamp}-{meta.id}.jsonl", meta)

    def write_step(self, step: StepRecord) -> None:
        record: dict[str, Any] = {
            "type": "step",
            "t": step.t,
            "end": step.end,
            "state": step.state,
            "wall": round(step.wall, 3),
            "p": {k: round(float(v), 4) for k, v in step.p.items()},
            "latency_ms": round(step.latency_ms, 1),
        }
        if step.text:
            record["text"] = step.text
        if step.question:
            record["question"] = step.question
        self._write(record)

    def write_note(self, text: str, level: str = "error") -> None:
        self._write({"type": "note", "wall": round(time.time(), 3), "level": level, "text": text})

    def close(self) -> None:
        if not self._writer.closed:
            self._write({"type": "end", "wall": round(time.time(), 3)})
            self._writer.close()

    @property
    def closed(self) -> bool:
        return self._writer.closed

    def _write(self, record: dict[str, Any]) -> None:
        if self._writer.closed:
            return  # a late note after the run ended
        try:
            self._writer.write(record)
        except (OSError, ValueError) as e:  # a full disk must not stop the live session
            log.error("could not append to %s: %s", self.path, e)


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class SessionSummary:
    path: Path
    meta: SessionMeta
    responses: int
    duration: float

    @property
    def title(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.meta.started))
        source = Path(self.meta.source).name if self.meta.source else "?"
        return f"{when}  {source}  ({format_clock(self.duration)}, {self.responses} responses)"


def _meta_from(record: dict[str, Any]) -> SessionMeta:
    known = {f for f in SessionMeta.__dataclass_fields__}
    return SessionMeta(**{k: v for k, v in record.items() if k in known})


def _step_from(record: dict[str, Any]) -> StepRecord:
    return StepRecord(
        t=float(record["t"]),
        end=float(record.get("end", record["t"])),
        state=str(record.get("state", "")),
        wall=float(record.get("wall", 0.0)),
        text=str(record.get("text") or ""),
        question=record.get("question") or None,
        p=dict(record.get("p") or {}),
        latency_ms=float(record.get("latency_ms", 0.0)),
    )


def load_session(path: str | os.PathLike[str]) -> Session:
    """Reopen a session file (tolerates the torn last line a crash leaves)."""
    path = Path(path)
    records = read_jsonl(path)
    if not records or records[0].get("type") != "session":
        raise ValueError(f"{path} is not a Streamo Live session (no session header)")
    session = Session(meta=_meta_from(records[0]), path=path)
    for r in records[1:]:
        kind = r.get("type")
        if kind == "step" and "t" in r:
            session.add(_step_from(r))
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
        out.append(SessionSummary(path, s.meta, responses, s.duration))
    return out
