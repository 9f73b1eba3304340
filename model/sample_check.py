"""The one annotation-problem checker: what in a raw sample will not train as it says.

The clip editor (``app.training.library.Library.problems``, shown against each item) and the
command line (``model.train.data.load_clips`` through ``protocol.raw_sample_problems``: warnings of
``train``, ``evaluate`` and the Training tab's estimate) both ask :func:`check_raw_sample`, so a
sample gets the same list in both, every problem rather than the first. The conversion itself is
the converter's (``protocol.convert_sample``); these sentences only explain what it does with the
sample. Seconds are stream seconds (turn indices): raw time T is the turn ``<T-1s-Ts>`` (rule 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from model import protocol as P

__all__ = ["QUESTION", "RESPONSE", "SampleProblem", "check_raw_sample"]

QUESTION, RESPONSE = "question", "response"


@dataclass(frozen=True)
class SampleProblem:
    message: str  # a sentence: what is wrong, what the converter does with it, what to do
    kind: str | None = None  # QUESTION | RESPONSE | None (the sample as a whole)
    index: int | None = None  # in the sample's questions / responses

    def __str__(self) -> str:
        """As the command line prints it: the item named, then the sentence."""
        return f"{self.kind} {self.index}: {self.message}" if self.kind else self.message


def _clock(second: int) -> str:
    """M:SS (H:MM:SS past an hour), as the editor shows seconds."""
    h, rem = divmod(max(0, int(second)), 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60}:{rem % 60:02d}"


def _text(entry: dict) -> str:
    content = entry.get("content")
    return content.strip() if isinstance(content, str) else ""


def check_raw_sample(sample: dict, n_turns: int | None, fps: float = 1) -> list[SampleProblem]:
    """Every problem of a raw sample whose video has ``n_turns`` turns at ``fps`` (None: the video
    is unusable, so only what does not depend on its length is checked), in item order. A sample
    whose ``question``/``response`` is not a list of objects raises ``protocol.AnnotationError``
    (the converter's schema error)."""
    out: list[SampleProblem] = []
    n = n_turns
    end = _clock(n) if n is not None else ""

    def second(value: Any, kind: str, i: int) -> tuple[int | None, bool]:
        """(stream second, the time is no time at all); a BadTime is that item's problem."""
        try:
            t = P.parse_time(value, fps)
        except P.BadTime as e:
            out.append(SampleProblem(f"Its {e}; the converter skips the whole sample: fix the time.", kind, i))
            return None, True
        return (None if t is None else P.time_to_turn(t)), False

    for i, q in enumerate(P.raw_entries(sample, QUESTION, 0)):
        add = lambda message, i=i: out.append(SampleProblem(message, QUESTION, i))  # noqa: E731
        if not _text(q):
            add("This question has no text; it is ignored: type it or delete the question.")
        s, bad = second(q.get("time"), QUESTION, i)
        if s is None and not bad:
            add(f"Its time ({q.get('time')!r}) is not a time; it is ignored: set its second.")
        elif s is not None and n is not None and s >= n:
            add(f"Asked at {_clock(s)} (time {q.get('time')!r}), past the clip's end ({end}); it is ignored.")
    for i, r in enumerate(P.raw_entries(sample, RESPONSE, 0)):
        add = lambda message, i=i: out.append(SampleProblem(message, RESPONSE, i))  # noqa: E731
        start, bad_start = second(r.get("st_time"), RESPONSE, i)
        last, bad_end = second(r.get("end_time"), RESPONSE, i)
        if bad_start or bad_end:
            continue
        if start is not None and last is not None:  # an event (rule 6): Standby on start..last, the answer after
            answer = last + 1
            if answer <= start:
                add(f"It ends ({_clock(answer)}) before it starts ({_clock(start)}); mark the end later.")
            if n is not None and start >= n:
                add(f"It starts at {_clock(start)}, past the clip's end ({end}); it is ignored.")
            elif n is not None and answer >= n and _text(r):
                add(f"Its answer would come at {_clock(answer)}, past the clip's last second ({_clock(n - 1)}); "
                    "end it earlier, or only its Standby seconds train.")  # fmt: skip
            if not _text(r):
                add("This event has no description: it gets Standby seconds but no answer; describe it or delete it.")
            continue
        s, bad = second(r.get("time"), RESPONSE, i)
        if s is None and not bad:
            add("This answer has no usable time (st_time and end_time, or time); it is ignored: set its second.")
        elif s is not None and n is not None and s >= n:
            add(f"Answered at {_clock(s)}, past the clip's end ({end}); it is ignored.")
        if not _text(r):
            add("This answer has no text; it is ignored: type it or delete the answer.")
    if n is not None:
        out += _overwritten(sample, n, fps)
    out.sort(key=lambda p: (p.kind != QUESTION, p.kind or "", p.index or 0))  # stable: item order, then rule order
    return out


def _turn(value: Any, fps: float) -> int | None:
    try:
        t = P.parse_time(value, fps)
    except P.BadTime:
        return None
    return None if t is None else P.time_to_turn(t)


def _overwritten(sample: dict, n: int, fps: float) -> list[SampleProblem]:
    """Items the converter overwrites with a later one on the same second (rules 5 and 6)."""
    try:
        messages = P.convert_sample(sample, n, fps)["messages"][1:]
    except P.AnnotationError:
        return []  # the converter's own error is the sample's problem (a bad time, above)
    asked = [P.parse_user_content(messages[k]["content"])[0] for k in range(0, len(messages), 2)]
    states = [messages[k]["content"] for k in range(1, len(messages), 2)]
    out = []
    for i, q in enumerate(P.raw_entries(sample, QUESTION, 0)):
        s = _turn(q.get("time"), fps)
        if q.get("content") and s is not None and s < n and asked[s] != P.neutralize_data_text(q["content"]):
            out.append(SampleProblem(f"Another question asked at {_clock(s)} replaces this one.", QUESTION, i))
    for i, r in enumerate(P.raw_entries(sample, RESPONSE, 0)):
        content = r.get("content")
        start, last = _turn(r.get("st_time"), fps), _turn(r.get("end_time"), fps)
        if start is not None and last is not None:
            s = last + 1
            if s <= start:
                continue  # backwards: its own problem above
        else:
            s = _turn(r.get("time"), fps)
        if (
            content
            and s is not None
            and s < n
            and states[s] != P.assistant_turn_content(P.RESPONSE, P.neutralize_data_text(content))
        ):  # the converter's text is data (protocol.neutralize_data_text)
            out.append(
                SampleProblem(
                    f"Its answer at {_clock(s)} is overwritten by a later item on that second; move one of them.",
                    RESPONSE,
                    i,
                )
            )
    return out
