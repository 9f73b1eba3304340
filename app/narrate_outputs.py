"""``narrate``'s files while it runs, and the account of them at its end: the SRT and WebVTT files
(rewritten whole after each response), the session log (the store, and ``--jsonl``), the spoken track.

Failures degrade, they do not stop (issue 23): a file that cannot be written mid-run (a full disk, a
folder made read-only after the start check) is one warning, the first time, and the narration and the
session go on. SRT and WebVTT are tried again at each response and at the end (each write is the whole
file, atomically: one that succeeds is complete, one that fails leaves no ``.part``); a JSON Lines file
stops at its first failure (a log with holes would mislead). A session store that cannot be made at the
start is a warning too: the run goes on, with ``--jsonl`` alone when given. The end names every file that
was not written; the requested ones fail the command (rc 2) once everything else is kept.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from pathlib import Path

from app import session as store
from app.exports import Subtitle, to_srt, to_vtt, write_text_atomic
from app.session import SessionLog, SessionMeta

Warn = Callable[[str], None]

__all__ = ["Exports", "account", "open_session_log"]


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


class Exports:
    """``--srt`` and ``--vtt``: :meth:`write` rewrites each whole; a failure is ``warn``-ed once per file,
    and :attr:`failed` says why for the files whose last write failed."""

    def __init__(self, srt: str | None, vtt: str | None, warn: Warn) -> None:
        pairs = (("--srt", srt, to_srt), ("--vtt", vtt, to_vtt))
        self.files = [(label, Path(path), render) for label, path, render in pairs if path]
        self.warn = warn
        self.failed: dict[Path, str] = {}
        self._warned: set[Path] = set()
        self._good: set[Path] = set()  # written whole at least once

    def write(self, cues: Iterable[Subtitle]) -> None:
        cues = list(cues)
        for label, path, render in self.files:
            try:
                write_text_atomic(path, render(cues), private=True)
            except OSError as e:  # model.atomic removed its temporary file: nothing half-written is left
                self.failed[path] = _reason(e)
                if path not in self._warned:
                    self._warned.add(path)
                    self.warn(
                        f"{label} {path} cannot be written ({_reason(e)}); the narration goes on and tries again "
                        "at the next response"
                    )
            else:
                self.failed.pop(path, None)
                self._good.add(path)

    def lost(self) -> list[str]:
        """A phrase for each file whose last write failed."""
        return [
            f"{label} {path} was not written ({self.failed[path]})"
            + ("; it holds the subtitles of its last good write" if path in self._good else "")
            for label, path, _ in self.files
            if path in self.failed
        ]


def open_session_log(meta: SessionMeta, mirror: str | None, warn: Warn) -> SessionLog:
    """The run's session log; a store that cannot be made (a read-only or full data folder) is a warning
    and the run goes on without it (its records still go to ``mirror``, ``--jsonl``, when given)."""
    mirror_path = Path(mirror) if mirror else None
    try:
        return SessionLog.create(meta, mirror=mirror_path, on_problem=warn)
    except OSError as e:
        folder = store.sessions_dir()
        why = "a file is in the way" if folder.exists() and not folder.is_dir() else _reason(e)
        also = f"; its records go to --jsonl {mirror}" if mirror else ""
        warn(
            f"the session store {folder} cannot be written ({why}): this run is not saved there{also}; the "
            "narration goes on"
        )
        return SessionLog(None, meta, mirror_path, on_problem=warn)


def account(
    args: argparse.Namespace, session: SessionLog, exports: Exports, track_problem: str | None
) -> tuple[list[str], list[str], list[str]]:
    """(files written, requested files not written or incomplete, notes on the session store), each an
    entry the end's lines can join."""
    lost = exports.lost()
    written = [str(path) for _, path, _ in exports.files if path not in exports.failed]
    if args.jsonl:
        path = Path(args.jsonl)
        if path in session.problems:
            lost.append(f"--jsonl {path} is incomplete: its records stop where it failed ({session.problems[path]})")
        else:
            written.append(args.jsonl)
    if args.speak_to:
        if track_problem:
            lost.append(f"the spoken track {args.speak_to} was not written: {track_problem}")
        else:
            written.append(args.speak_to)
    notes = []
    if session.path is not None:
        if session.stored:
            written.append(str(session.path))
        else:
            notes.append(
                f"the session log {session.path} is incomplete: its records stop where it failed "
                f"({session.problems[session.path]})"
            )
    return written, lost, notes
