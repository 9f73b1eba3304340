"""The values the clip library is made of: clips and their items, immutable so the undo history
shares them instead of copying (the store is ``app.training.library``).

Times. The editor works in *seconds of the stream* (turn indices): second ``i`` is the turn
``<is-(i+1)s>``, the turn the model sees the ``i``-th sampled frame on. The raw format's time T
stands for the turn ``<T-1s-Ts>`` (rule 3), so:

- a question or an instant answer at second ``i`` is written with ``time = "i+1"``;
- an event from second ``s`` to second ``e`` (Standby on ``s .. e-1``, the answer on ``e``) is
  written as ``st_time = s+1``, ``end_time = e`` (what ``model/train/synthetic.py`` writes for a
  shape that appears at ``s`` and leaves at ``e``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.session import format_clock
from model import protocol as P
from model.sample_check import QUESTION, RESPONSE

FPS = 1.0  # the protocol's rate: one turn per second

__all__ = [
    "FPS",
    "QUESTION",
    "RESPONSE",
    "Clip",
    "ItemRef",
    "LibraryError",
    "Problem",
    "Question",
    "Response",
    "Turn",
    "clip_from_sample",
    "describe_item",
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


def clip_from_sample(sample: Any, index: int) -> tuple[Clip | None, str]:
    """A raw sample as a clip (without its video's facts), or (None, why the editor cannot show it)."""
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
