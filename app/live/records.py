"""The one step-record schema, written by every front end (the desktop app and ``narrate``).

A session file (JSON Lines, ``app/session.py``) starts with a header
``{"type": "session", "format": "streamo-live-session", "schema": 2, ...meta}`` and holds one
record per model step:

``{"type": "step", "t", "end", "state", "p": {state: probability}, "text", "question": {"text", "t",
"origin"} | null, "latency_ms": {"vision", "prefill", "decision", "decode", "rebuild", "total"},
"context_turns", "context_tokens", "exact", "wall", "token_ids"}``

``text`` is the answer exactly as the model produced it (``token_ids`` its tokens); what a screen
or an export shows goes through :func:`clean_text`. Schema 1 files (the app's first session log:
``p``, a single ``latency_ms`` number, ``question`` as a string) convert on read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

SCHEMA = 2
ORIGINS = ("typed", "preset", "voice")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffd]")


def clean_text(text: str) -> str:
    """Model text for display and export: no control characters, no U+FFFD from bytes that did not
    decode (a random demo model emits them). Newlines and tabs stay."""
    return _CONTROL.sub("", text or "")


@dataclass(frozen=True)
class Question:
    """A question (or a task instruction) and the stream second it was asked at."""

    text: str
    t: float | None = None  # stream seconds; None: "the next turn"
    origin: str = "typed"  # typed | preset | voice
    span: tuple[float, float] | None = None  # a spoken question: the utterance's start and end, stream seconds

    def __post_init__(self) -> None:
        if self.origin not in ORIGINS:
            raise ValueError(f"question origin must be one of {ORIGINS}, got {self.origin!r}")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"text": self.text, "t": self.t, "origin": self.origin}
        if self.span is not None:
            data["span"] = [round(self.span[0], 3), round(self.span[1], 3)]
        return data

    @classmethod
    def from_json(cls, value: Any) -> Question | None:
        if not value:
            return None
        if isinstance(value, str):  # schema 1: the text alone, typed by the user
            return cls(value)
        origin = value.get("origin") if value.get("origin") in ORIGINS else "typed"
        t, span = value.get("t"), value.get("span")
        span = (float(span[0]), float(span[1])) if isinstance(span, list | tuple) and len(span) == 2 else None
        return cls(str(value.get("text", "")), None if t is None else float(t), origin, span)


@dataclass(frozen=True)
class StepRecord:
    """One model step: the interval ``[t, end)`` of stream time and what the model did there."""

    t: float
    end: float
    state: str  # model.protocol.SILENCE / STANDBY / RESPONSE
    wall: float  # wall clock when the step finished, seconds since the epoch
    text: str = ""  # the answer, raw
    question: Question | None = None  # what entered the stream on this turn
    p: dict[str, float] = field(default_factory=dict)  # the three state probabilities
    latency_ms: dict[str, float] = field(default_factory=dict)  # vision, prefill, decision, decode, rebuild, total
    context_turns: int = 0
    context_tokens: int = 0
    exact: bool = True  # False once an approximate window drop has touched the context
    token_ids: tuple[int, ...] = ()  # the answer's tokens as generated

    @property
    def total_ms(self) -> float:
        return float(self.latency_ms.get("total", 0.0))

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "step",
            "t": self.t,
            "end": self.end,
            "state": self.state,
            "p": {k: round(float(v), 6) for k, v in self.p.items()},
            "text": self.text,
            "question": self.question.to_json() if self.question else None,
            "latency_ms": {k: round(float(v), 3) for k, v in self.latency_ms.items()},
            "context_turns": self.context_turns,
            "context_tokens": self.context_tokens,
            "exact": self.exact,
            "wall": round(self.wall, 3),
            "token_ids": list(self.token_ids),
        }

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> StepRecord:
        """A step of either schema (schema 1: ``p`` rounded to 4 places, ``latency_ms`` a number)."""
        latency = record.get("latency_ms", {})
        if not isinstance(latency, dict):
            latency = {"total": float(latency or 0.0)}
        return cls(
            t=float(record["t"]),
            end=float(record.get("end", record["t"])),
            state=str(record.get("state", "")),
            wall=float(record.get("wall", 0.0)),
            text=str(record.get("text") or ""),
            question=Question.from_json(record.get("question")),
            p={str(k): float(v) for k, v in (record.get("p") or {}).items()},
            latency_ms={str(k): float(v) for k, v in latency.items()},
            context_turns=int(record.get("context_turns", 0)),
            context_tokens=int(record.get("context_tokens", 0)),
            exact=bool(record.get("exact", True)),
            token_ids=tuple(int(i) for i in record.get("token_ids") or ()),
        )


def comparable(record: StepRecord) -> dict[str, Any]:
    """A record without what depends on the machine's speed (wall clock, latencies): two runs of
    the same clip, model and options give equal ``comparable`` records."""
    data = record.to_json()
    data.pop("wall")
    data.pop("latency_ms")
    return data
