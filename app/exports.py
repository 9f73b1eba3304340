"""Session exports: SubRip / WebVTT subtitles and JSON Lines logs.

The JSONL writer is the crash-safe session log: every record is flushed and fsynced as one line,
so a crash or power loss costs at most the line being written, and ``read_jsonl`` skips such a
torn last line.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from model import json_text
from model.atomic import write_text_atomic  # the one atomic writer (re-exported: exports' callers use it)

log = logging.getLogger(__name__)

__all__ = [
    "JsonlWriter",
    "Subtitle",
    "format_timestamp",
    "read_jsonl",
    "to_srt",
    "to_vtt",
    "write_jsonl",
    "write_text_atomic",
]

StrPath = str | os.PathLike[str]


@dataclass(frozen=True)
class Subtitle:
    start: float  # seconds
    end: float  # seconds
    text: str


# ---------------------------------------------------------------------------------------------
# Subtitles


def format_timestamp(seconds: float, decimal: str = ",") -> str:
    """``HH:MM:SS,mmm`` (SRT) or, with ``decimal='.'``, ``HH:MM:SS.mmm`` (WebVTT). Negative times
    clamp to zero; hours grow past two digits rather than wrap."""
    ms = max(0, round(float(seconds) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{decimal}{ms:03d}"


def _clean_text(text: str) -> str:
    # A blank line ends a cue in both formats, and "-->" would read as a timing line.
    lines = (line.strip() for line in str(text).replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return "\n".join(line.replace("-->", "->") for line in lines if line)


def _cues(entries: Iterable[Subtitle], decimal: str) -> list[tuple[str, str]]:
    cues = []
    for e in entries:
        text = _clean_text(e.text)
        if not text:
            continue  # an empty cue is invalid in SRT and useless in VTT
        start = max(0.0, float(e.start))
        end = max(start, float(e.end))
        cues.append((f"{format_timestamp(start, decimal)} --> {format_timestamp(end, decimal)}", text))
    return cues


def to_srt(entries: Iterable[Subtitle]) -> str:
    """SubRip text: cues numbered from 1; entries whose text is empty are left out."""
    blocks = [f"{i}\n{timing}\n{text}" for i, (timing, text) in enumerate(_cues(entries, ","), start=1)]
    return "\n\n".join(blocks) + "\n" if blocks else ""


def _vtt_escape(text: str) -> str:
    # WebVTT cue text is markup: '<' opens a tag and '&' an entity. Model answers may well
    # contain "<3s-5s>" style labels, which must show literally.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(entries: Iterable[Subtitle]) -> str:
    """WebVTT text: ``WEBVTT`` header, numbered cue identifiers, ``HH:MM:SS.mmm`` timings."""
    blocks = [f"{i}\n{timing}\n{_vtt_escape(text)}" for i, (timing, text) in enumerate(_cues(entries, "."), start=1)]
    return "WEBVTT\n\n" + "\n\n".join(blocks) + "\n" if blocks else "WEBVTT\n"


# ---------------------------------------------------------------------------------------------
# JSON Lines


def _json_default(obj: Any) -> Any:
    # Records carry numpy scalars (timings, scores), paths and dataclasses; store them plainly.
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy array or scalar
        return obj.tolist()
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _dumps(record: Any) -> str:
    # ensure_ascii=False keeps answers readable; JSON escapes newlines inside strings, so one
    # record is always one line.
    return json.dumps(record, ensure_ascii=False, default=_json_default)


def write_jsonl(path: StrPath, records: Iterable[Any]) -> int:
    """Write all ``records`` as a new JSONL file (atomically replaced); returns the count."""
    lines = [_dumps(r) + "\n" for r in records]
    write_text_atomic(path, "".join(lines))
    return len(lines)


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line left without its newline by a crash, so appends start on a clean line."""
    with open(path, "rb+") as f:
        end = f.seek(0, os.SEEK_END)
        if end == 0:
            return
        f.seek(end - 1)
        if f.read(1) == b"\n":
            return
        pos, chunk = end, 4096
        while pos > 0:
            start = max(0, pos - chunk)
            f.seek(start)
            data = f.read(pos - start)
            nl = data.rfind(b"\n")
            if nl >= 0:
                cut = start + nl + 1
                break
            pos = start
        else:
            cut = 0
        log.warning("%s: dropping %d bytes of an incomplete last line", path, end - cut)
        f.truncate(cut)


class JsonlWriter:
    """Appends one JSON record per line, flushed and fsynced before ``write`` returns.

    Thread-safe. Opening an existing file first removes a torn last line a crash may have left.
    """

    def __init__(self, path: StrPath, append: bool = True, fsync: bool = True, private: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if append and self.path.exists():
            _drop_torn_tail(self.path)
        # ``private``: a file this makes is owner-only (0600): sessions record the camera, the screen, the voice.
        opener = (lambda p, flags: os.open(p, flags, 0o600)) if private else None
        self._file = open(self.path, "a" if append else "w", encoding="utf-8", newline="\n", opener=opener)  # noqa: SIM115
        self._lock = threading.Lock()

    def write(self, record: Any) -> None:
        line = _dumps(record) + "\n"  # serialize first: a bad record must not leave half a line
        with self._lock:
            if self._file.closed:
                raise ValueError(f"JsonlWriter for {self.path} is closed")
            self._file.write(line)
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def read_jsonl(path: StrPath, skip_bad: bool = False, skipped: list[int] | None = None) -> list[Any]:
    """All records of a JSONL file. Blank lines are skipped; an unparsable *last* line (a write
    cut short by a crash) is dropped with a warning; an unparsable line elsewhere raises
    ValueError naming the file and line number, or with ``skip_bad`` is skipped with a warning (its
    line number added to ``skipped``): one damaged record then costs that record, not the file."""
    path = Path(path)
    with open(path, encoding="utf-8", errors="replace", newline="\n") as f:
        lines = f.read().split("\n")
    # Index of the last non-blank line: only that one may be torn.
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json_text.loads(line))
        except json.JSONDecodeError as e:  # json_text.NestedTooDeep too: brackets thousands of levels deep
            if i == last:
                log.warning("%s: ignoring incomplete last line %d", path, i + 1)
                break
            if not skip_bad:
                raise ValueError(f"{path}: line {i + 1} is not valid JSON ({e.msg})") from None
            log.warning("%s: skipping line %d, which is not valid JSON (%s)", path, i + 1, e.msg)
            if skipped is not None:
                skipped.append(i + 1)
    return records
