"""The clip library of one training project folder, without widgets.

A project is a folder holding ``annotations.json``: ONE raw annotation file in the Streamo format
(PROTOCOL.md section 3), one sample per clip, video paths relative to the folder where the video
lies inside it (absolute otherwise). So the trainer takes it unchanged::

    streamo-live train --data FOLDER/annotations.json --video-prefix FOLDER ...

Every edit goes through :class:`Library`: it is applied, recorded for undo/redo (a list of
clip-level changes; clips are immutable values, so the history shares them instead of copying)
and saved at once, atomically (a temporary file renamed over the old one, the previous version
kept as ``annotations.json.bak``). A save that fails keeps the edit in memory and says why in
``save_error``; the next successful save writes everything.

Times. The editor works in *seconds of the stream* (turn indices): second ``i`` is the turn
``<is-(i+1)s>``, the turn the model sees the ``i``-th sampled frame on. The raw format's time T
stands for the turn ``<T-1s-Ts>`` (rule 3), so:

- a question or an instant answer at second ``i`` is written with ``time = "i+1"``;
- an event from second ``s`` to second ``e`` (Standby on ``s .. e-1``, the answer on ``e``) is
  written as ``st_time = s+1``, ``end_time = e`` (what ``model/train/synthetic.py`` writes for a
  shape that appears at ``s`` and leaves at ``e``).

What the converter makes of a clip (``turns``) is always computed by ``protocol.convert_sample``,
never re-implemented here. Stream-format files are read back into raw events by
:func:`stream_to_raw`, whose result is checked by converting it again.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from app.exports import write_text_atomic
from app.session import format_clock
from model import protocol as P
from model.presets import convert_for_live

log = logging.getLogger(__name__)

FPS = 1.0  # the protocol's rate: one turn per second
ANNOTATION_FILE = "annotations.json"
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
DEFAULT_SOURCE = "custom"
DEFAULT_TASK_TYPE = "Narration"
# Suggestions for the task type (free text in the format; Streamo-Instruct's kinds of tasks).
TASK_TYPES = ("Narration", "Event Caption", "Action Caption", "Event Grounding", "QA")
QUESTION, RESPONSE = "question", "response"

__all__ = [
    "ANNOTATION_FILE",
    "Clip",
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
    "probe_clip",
    "stream_to_raw",
    "thumbnail",
]


class LibraryError(Exception):
    """A project that cannot be opened or a file that cannot be written; the message says what to do."""


# ---------------------------------------------------------------------------------------------
# Items and clips (immutable values: the undo history shares them)

_Extra = tuple[tuple[str, Any], ...]  # keys of a raw entry this editor does not know, kept as they were


def _second(value: Any) -> int | None:
    """The stream second (turn index) a raw time stands for, by the converter's rules 2 and 3."""
    t = P.parse_time(value, FPS)
    return None if t is None else P.time_to_turn(t)


@dataclass(frozen=True)
class Question:
    content: str
    time: Any = ""  # raw, as in the file: "5", 5, "00:05", ...
    extra: _Extra = ()

    @property
    def second(self) -> int | None:
        return _second(self.time)

    def to_raw(self) -> dict[str, Any]:
        return {"content": self.content, "time": self.time, **dict(self.extra)}

    @classmethod
    def at(cls, content: str, second: int) -> Question:
        return cls(P.neutralize_user_text(content), str(int(second) + 1))


@dataclass(frozen=True)
class Response:
    """An event (``st_time`` and ``end_time``) or an instant answer (``time`` only)."""

    content: str
    st_time: Any = ""
    end_time: Any = ""
    time: Any = ""
    extra: _Extra = ()

    @property
    def is_event(self) -> bool:
        # The converter's test (rule 6): both times usable, whatever ``time`` says.
        return P.parse_time(self.st_time, FPS) is not None and P.parse_time(self.end_time, FPS) is not None

    @property
    def kind(self) -> str:
        return "event" if self.is_event else "answer"

    @property
    def span(self) -> tuple[int, int] | None:
        """(start, end) seconds of an event: Standby on ``start .. end-1``, the answer on ``end``."""
        if not self.is_event:
            return None
        return _second(self.st_time), _second(self.end_time) + 1  # type: ignore[operator, return-value]

    @property
    def second(self) -> int | None:
        """The second the answer is given on: an event's end, an instant answer's time."""
        span = self.span
        return span[1] if span else _second(self.time)

    def to_raw(self) -> dict[str, Any]:
        return {
            "content": self.content,
            "st_time": self.st_time,
            "end_time": self.end_time,
            "time": self.time,
            **dict(self.extra),
        }

    @classmethod
    def event(cls, content: str, start: int, end: int) -> Response:
        return cls(P.neutralize_user_text(content), float(int(start) + 1), float(int(end)), "")

    @classmethod
    def answer(cls, content: str, second: int) -> Response:
        return cls(P.neutralize_user_text(content), "", "", str(int(second) + 1))


_SAMPLE_KEYS = ("video_name", "video_path", "task_type", "source", "question", "response")


@dataclass(frozen=True)
class Clip:
    """One sample of the raw annotation file and what its video file says about itself."""

    video_path: str  # as written: relative to the project folder, or absolute
    video_name: str = ""
    task_type: str = ""
    source: str = ""
    questions: tuple[Question, ...] = ()
    responses: tuple[Response, ...] = ()
    extra: _Extra = ()
    meta: P.VideoMeta | None = None  # None: the video is missing or unreadable (``unreadable`` says why)
    unreadable: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12], compare=False)

    @property
    def name(self) -> str:
        return self.video_name or Path(self.video_path).name

    @property
    def block(self) -> int:
        """Video frames per turn (rule 1: ``max(1, int(video_fps / fps))``); a turn shows the first one."""
        return max(1, int(self.meta.fps / FPS)) if self.meta else 1

    @property
    def n_turns(self) -> int:
        return P.turn_count(self.meta.total_frames, self.meta.fps, FPS) if self.meta else 0

    @property
    def duration(self) -> float | None:
        return self.meta.total_frames / self.meta.fps if self.meta else None

    @property
    def annotated(self) -> bool:
        return bool(self.questions or self.responses)

    @property
    def events(self) -> list[tuple[int, Response]]:
        return [(i, r) for i, r in enumerate(self.responses) if r.is_event]

    @property
    def answers(self) -> list[tuple[int, Response]]:
        return [(i, r) for i, r in enumerate(self.responses) if not r.is_event]

    def turn_at_frame(self, frame: int) -> int:
        """The turn (stream second) video frame ``frame`` belongs to."""
        return max(0, int(frame)) // self.block

    def item(self, ref: ItemRef) -> Question | Response:
        return (self.questions if ref.kind == QUESTION else self.responses)[ref.index]

    def to_raw(self, video_path: str | None = None) -> dict[str, Any]:
        return {
            "video_name": self.video_name,
            "video_path": self.video_path if video_path is None else video_path,
            "task_type": self.task_type,
            "source": self.source,
            "question": [q.to_raw() for q in self.questions],
            "response": [r.to_raw() for r in self.responses],
            **dict(self.extra),
        }

    @classmethod
    def from_raw(cls, sample: dict[str, Any]) -> Clip:
        """A validated raw sample (``convert_sample`` accepted it) as a clip, without its video's facts."""

        def entries(key: str) -> list[dict]:
            value = sample.get(key) or []
            return [value] if isinstance(value, dict) else list(value)

        questions = tuple(
            Question(q.get("content") or "", q.get("time", ""), _extras(q, ("content", "time")))
            for q in entries("question")
        )
        responses = tuple(
            Response(
                r.get("content") or "",
                r.get("st_time", ""),
                r.get("end_time", ""),
                r.get("time", ""),
                _extras(r, ("content", "st_time", "end_time", "time")),
            )
            for r in entries("response")
        )
        return cls(
            video_path=sample["video_path"],
            video_name=str(sample.get("video_name") or ""),
            task_type=str(sample.get("task_type") or ""),
            source=str(sample.get("source") or ""),
            questions=questions,
            responses=responses,
            extra=_extras(sample, _SAMPLE_KEYS),
        )


def _extras(entry: dict, known: Sequence[str]) -> _Extra:
    return tuple((k, v) for k, v in entry.items() if k not in known)


@dataclass(frozen=True)
class ItemRef:
    kind: str  # QUESTION | RESPONSE
    index: int  # in the clip's questions / responses (the file's order: later ones overwrite earlier)


@dataclass(frozen=True)
class Problem:
    message: str
    ref: ItemRef | None = None  # None: the clip itself (its video)


@dataclass(frozen=True)
class Turn:
    """One turn as the converter produces it."""

    index: int  # the turn <index s - index+1 s>
    state: str  # P.SILENCE | P.STANDBY | P.RESPONSE
    text: str  # the answer of a Response turn
    question: str | None  # the question on this turn's user message


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


def describe_item(item: Question | Response) -> str:
    """The item as the editor lists it: kind and seconds, e.g. 'event 0:04-0:07'."""
    if isinstance(item, Question):
        s = item.second
        return f"question at {format_clock(s) if s is not None else '?'}"
    span = item.span
    if span is not None:
        return f"event {format_clock(span[0])}-{format_clock(span[1])}"
    s = item.second
    return f"answer at {format_clock(s) if s is not None else '?'}"


# ---------------------------------------------------------------------------------------------
# Video files: probing with a reason, thumbnails, random access for the player


def probe_clip(path: str | os.PathLike[str]) -> tuple[P.VideoMeta | None, str]:
    """(frame count and rate as the trainer's converter counts them, "") or (None, why not)."""
    import cv2

    path = Path(path)
    if not path.exists():
        return None, "no such file"
    if path.is_dir():
        return None, "it is a folder, not a video file"
    if not os.access(path, os.R_OK):
        return None, "permission denied"
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return (
                None,
                "OpenCV cannot open it: the file is corrupt or not a video format it reads; re-encode it as H.264 MP4",
            )
        ok, image = cap.read()
        if not ok or image is None:
            return None, "it holds no decodable video frames (corrupt or truncated?); re-encode it as H.264 MP4"
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        cap.release()
    if not (0 < fps <= 1000 and math.isfinite(fps)):
        return None, f"it reports no usable frame rate ({fps:g}); re-encode it as H.264 MP4"
    if frames <= 0:
        return None, "it does not report its frame count, so its seconds cannot be counted; re-encode it as H.264 MP4"
    # The same two properties the converter's probe (model.protocol.probe_video) reads: what training sees.
    return P.VideoMeta(frames, fps), ""


_THUMBS: OrderedDict[tuple, np.ndarray | None] = OrderedDict()
_THUMBS_LOCK = threading.Lock()
_THUMBS_MAX = 512


def thumbnail(path: str | os.PathLike[str], box: tuple[int, int] = (96, 64)) -> np.ndarray | None:
    """A small RGB frame (one second in, or the middle of a shorter clip) fitting ``box``, cached by
    the file's path, size and modification time; None when the video cannot be read."""
    import cv2

    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path.absolute()), st.st_size, st.st_mtime_ns, box)
    with _THUMBS_LOCK:
        if key in _THUMBS:
            _THUMBS.move_to_end(key)
            return _THUMBS[key]
    image = None
    cap = cv2.VideoCapture(str(path))
    try:
        if cap.isOpened():
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            target = min(int(fps) if fps > 0 else 0, frames // 2) if frames > 0 else 0
            if target > 0:
                cap.set(cv2.CAP_PROP_POS_FRAMES, target)
            ok, bgr = cap.read()
            if not ok and target > 0:  # a seek the container does not support: the first frame then
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, bgr = cap.read()
            if ok and bgr is not None:
                h, w = bgr.shape[:2]
                scale = min(box[0] / w, box[1] / h)
                size = (max(1, round(w * scale)), max(1, round(h * scale)))
                image = np.ascontiguousarray(
                    cv2.cvtColor(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
                )
    finally:
        cap.release()
    with _THUMBS_LOCK:
        _THUMBS[key] = image
        while len(_THUMBS) > _THUMBS_MAX:
            _THUMBS.popitem(last=False)
    return image


class FrameReader:
    """Frames of one video by index, for the player: sequential reads decode on, short jumps
    forward decode through, anything else seeks."""

    FORWARD_DECODE = 48  # frames; decoding on is cheaper than a seek (which decodes from a key frame)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import cv2

        self.path = Path(path)
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            self._cap.release()
            raise LibraryError(f"Cannot open video '{self.path}': the file is missing, corrupt or not a video.")
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0) or 30.0
        self.frame_count = max(0, int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
        self._next = 0  # the index the decoder returns next

    def read(self, index: int) -> np.ndarray | None:
        """Frame ``index`` as RGB, or None past the decodable end."""
        import cv2

        if self._cap is None or index < 0:
            return None
        if not (self._next <= index <= self._next + self.FORWARD_DECODE):
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            self._next = index
        while self._next < index:
            if not self._cap.grab():
                return None
            self._next += 1
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            return None
        self._next = index + 1
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


# ---------------------------------------------------------------------------------------------
# Stream format -> raw (checked by converting back with the one converter)


def _raw_question_seconds(asked: dict[int, str]) -> list[tuple[int, str]]:
    """Undo rule 7: the first question copied onto turn 0, or the default question there."""
    later = sorted((i, q) for i, q in asked.items() if i > 0)
    if 0 not in asked:
        return later
    first = asked[0]
    if later and later[0][1] == first:
        return later  # rule 7's copy of the first question
    if not later and first == P.DEFAULT_QUESTION:
        return []  # rule 7's default
    return [(0, first), *later]


def stream_to_raw(sample: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A stream-format sample (``messages`` + ``videos``) as a raw sample, and what could not be
    represented. A run of Standby turns ended by a Response is an event; a Response on its own an
    instant answer; Standby not followed by an answer an event without text. Raises ValueError when
    the conversation is not Streamo turns at one per second."""
    messages, videos = sample.get("messages"), sample.get("videos")
    if not isinstance(videos, list) or len(videos) != 1 or not isinstance(videos[0], str) or not videos[0]:
        raise ValueError("'videos' must be a list with one video path")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise ValueError("'messages' must be a non-empty list of {role, content} objects")
    body = messages[1:]
    if len(body) % 2:
        raise ValueError("messages after the system prompt must be user/assistant pairs")
    n = len(body) // 2
    asked: dict[int, str] = {}
    states: list[tuple[str, str]] = []
    for i in range(n):
        if body[2 * i].get("role") != "user" or body[2 * i + 1].get("role") != "assistant":
            raise ValueError(f"turn {i}: expected a user then an assistant message")
        question, start, end = P.parse_user_content(str(body[2 * i].get("content")))
        if (start, end) != (i, i + 1):
            raise ValueError(
                f"turn {i} is labelled <{start:g}s-{end:g}s>, not <{i}s-{i + 1}s>: only one turn per second can be edited"
            )
        if question:
            asked[i] = question
        states.append(P.parse_assistant_content(str(body[2 * i + 1].get("content"))))

    notes: list[str] = []
    noted: set[int] = set()  # turns a note already explains
    responses: list[Response] = []
    i = 0
    while i < n:
        state, text = states[i]
        if state == P.STANDBY:
            j = i
            while j + 1 < n and states[j + 1][0] == P.STANDBY:
                j += 1
            if j + 1 < n and states[j + 1][0] == P.RESPONSE and states[j + 1][1]:
                responses.append(Response(states[j + 1][1], float(i + 1), float(j + 1), ""))
                i = j + 2
            else:
                responses.append(Response("", float(i + 1), float(j + 1), ""))  # Standby that is never answered
                i = j + 1
            continue
        if state == P.RESPONSE:
            if text:
                responses.append(Response(text, "", "", str(i + 1)))
            else:
                noted.add(i)
                notes.append(f"turn {i}: '{P.RESPONSE}' without an answer cannot be written as raw; it becomes Silence")
        i += 1

    raw: dict[str, Any] = {
        "video_name": str(sample.get("video_name") or Path(videos[0]).name),
        "video_path": videos[0],
        "task_type": str(sample.get("task_type") or ""),
        "source": str(sample.get("source") or ""),
        "question": [Question(q, str(s + 1)).to_raw() for s, q in _raw_question_seconds(asked)],
        "response": [r.to_raw() for r in responses],
    }
    if str(messages[0].get("content")) != P.SYSTEM_PROMPT:
        notes.append("its system prompt differs from Streamo's; the standard one is used")
    # Check by converting back: every turn must come out as it was.
    again = P.convert_sample(raw, n, FPS)["messages"][1:]
    differ = []
    for k in range(n):
        state_differs = again[2 * k + 1]["content"] != body[2 * k + 1].get("content")
        question_differs = P.parse_user_content(again[2 * k]["content"])[0] != (asked.get(k) or None)
        if k not in noted and (state_differs or question_differs):
            differ.append(k)
    if differ:
        shown = ", ".join(map(str, differ[:5])) + (f" and {len(differ) - 5} more" if len(differ) > 5 else "")
        notes.append(f"turns {shown} come out differently after conversion (the raw format cannot say them exactly)")
    return raw, notes


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
            clip, why = self._clip_from_sample(sample, i)
            if clip is None:
                self._kept.append(sample)
                self.notes.append(f"{ANNOTATION_FILE} sample {i} is kept in the file but not shown: {why}")
            else:
                self._clips.append(self._with_meta(clip))

    @staticmethod
    def _clip_from_sample(sample: Any, index: int) -> tuple[Clip | None, str]:
        if not isinstance(sample, dict):
            return None, f"expected an object, got {type(sample).__name__}"
        if "video_path" not in sample:
            if "messages" in sample:
                return None, "it is in the stream format; use Import annotations to bring it in"
            return None, "it has no video_path"
        try:
            P.convert_sample(sample, 0, FPS, index)  # the converter's own schema check
        except P.AnnotationError as e:
            return None, str(e)
        except (ValueError, TypeError, OverflowError) as e:  # a time such as NaN or Infinity
            return None, f"sample {index}: a time the converter cannot read ({e})"
        return Clip.from_raw(sample), ""

    def raw_samples(self) -> list[dict[str, Any]]:
        """The project file's content: one raw sample per clip (then samples kept as they were)."""
        return [c.to_raw() for c in self._clips] + list(self._kept)

    def save(self) -> None:
        """Write the project file atomically, the previous one kept as ``.bak``. Raises LibraryError."""
        text = json.dumps(self.raw_samples(), indent=2, ensure_ascii=False) + "\n"
        path = self.annotation_path
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if path.exists():
                part = self.backup_path.with_name(self.backup_path.name + ".part")
                shutil.copyfile(path, part)
                os.replace(part, self.backup_path)
            write_text_atomic(path, text)
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
        """Add video files and the videos in folders (recursively, hidden folders skipped). Files that
        cannot be read come back in ``report.failed`` with the reason; nothing raises."""
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
            elif p.exists() and p.suffix.lower() not in VIDEO_SUFFIXES:
                report.failed.append(
                    (
                        str(p),
                        f"not a video file ({p.suffix or 'no suffix'}); the library takes {', '.join(VIDEO_SUFFIXES)}",
                    )
                )
            else:
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
            clip, why = self._clip_from_sample(raw, index)
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
        out = P.to_stream(samples, video_prefix=folder, fps=FPS)
        try:
            write_text_atomic(path, P.dump_stream(out) + "\n")
        except OSError as e:
            raise LibraryError(f"Could not write {path}: {e.strerror or e}.") from None
        return ExportReport(path, len(out), skipped)

    # -- what the converter makes of a clip, and what is wrong with it
    def turns(self, clip: Clip) -> list[Turn]:
        """The clip's turns exactly as the Training tab trains them (``presets.convert_for_live``: the
        released converter's turns, with the first turn carrying the instruction Live sends for the
        clip's task); empty when the video cannot be read."""
        if clip.meta is None:
            return []
        messages = convert_for_live(clip.to_raw(), clip.n_turns, FPS)["messages"][1:]
        out = []
        for i in range(0, len(messages), 2):
            question, start, _ = P.parse_user_content(messages[i]["content"])
            state, text = P.parse_assistant_content(messages[i + 1]["content"])
            out.append(Turn(int(start), state, text, question))
        return out

    def problems(self, clip: Clip) -> list[Problem]:
        """What will not train as the annotation says, each naming its item."""
        out: list[Problem] = []
        if clip.meta is None:
            out.append(
                Problem(f"Video {self.resolve(clip)}: {clip.unreadable}. Put the file back, or remove the clip.")
            )
        n = clip.n_turns if clip.meta else None
        end_s = format_clock(n) if n is not None else ""
        clock = format_clock
        for i, q in enumerate(clip.questions):
            ref, s = ItemRef(QUESTION, i), q.second
            if not q.content.strip():
                out.append(Problem("This question has no text; type it or delete the question.", ref))
            if s is None:
                out.append(Problem(f"This question's time ({q.time!r}) is not a time; set its second.", ref))
            elif n is not None and s >= n:
                out.append(Problem(f"Asked at {clock(s)}, past the clip's end ({end_s}); it is ignored.", ref))
        for i, r in enumerate(clip.responses):
            ref = ItemRef(RESPONSE, i)
            span = r.span
            if span is not None:
                start, end = span
                if end <= start:
                    out.append(
                        Problem(f"It ends ({clock(end)}) before it starts ({clock(start)}); mark the end later.", ref)
                    )
                if n is not None and start >= n:
                    out.append(
                        Problem(f"It starts at {clock(start)}, past the clip's end ({end_s}); it is ignored.", ref)
                    )
                elif n is not None and end >= n and r.content.strip():
                    out.append(
                        Problem(
                            f"Its answer would come at {clock(end)}, past the clip's last second "
                            f"({clock(n - 1)}); end it earlier, or only its Standby seconds train.",
                            ref,
                        )
                    )
                if not r.content.strip():
                    out.append(Problem("This event has no description: it gets Standby seconds but no answer.", ref))
                continue
            s = r.second
            if s is None:
                out.append(Problem("This answer has no usable time; set its second.", ref))
            elif n is not None and s >= n:
                out.append(Problem(f"Answered at {clock(s)}, past the clip's end ({end_s}); it is ignored.", ref))
            if not r.content.strip():
                out.append(Problem("This answer has no text; it is ignored.", ref))
        if clip.meta is not None:
            out += self._overwritten(clip)
        return out

    def _overwritten(self, clip: Clip) -> list[Problem]:
        """Items the converter overwrites with a later one (rules 5 and 6: later entries win)."""
        turns = self.turns(clip)
        n = len(turns)
        out = []
        for i, q in enumerate(clip.questions):
            s = q.second
            if q.content and s is not None and 0 <= s < n and turns[s].question != q.content:
                out.append(
                    Problem(f"Another question asked at {format_clock(s)} replaces this one.", ItemRef(QUESTION, i))
                )
        for i, r in enumerate(clip.responses):
            s = r.second
            if r.content and s is not None and 0 <= s < n and (r.span is None or r.span[1] > r.span[0]):
                expected = P.assistant_turn_content(P.RESPONSE, r.content)
                got = P.assistant_turn_content(turns[s].state, turns[s].text)
                if got != expected:
                    out.append(
                        Problem(
                            f"Its answer at {format_clock(s)} is overwritten by a later item on that second; "
                            "move one of them.",
                            ItemRef(RESPONSE, i),
                        )
                    )
        return out


def _put(items: tuple, index: int, item: Any) -> tuple:
    return (*items[:index], item, *items[index + 1 :])


def _drop(items: tuple, index: int) -> tuple:
    return (*items[:index], *items[index + 1 :])
