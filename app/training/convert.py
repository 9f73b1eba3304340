"""Between the library's clips and the stream format: the turns a clip trains as (the one converter,
never re-implemented here) and stream-format samples read back into raw events (``stream_to_raw``,
whose result is checked by converting it again)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.training.clips import FPS, Clip, Question, Response, Turn
from model import protocol as P
from model.presets import convert_for_live

__all__ = ["clip_turns", "stream_to_raw"]


def clip_turns(clip: Clip) -> list[Turn]:
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
    # Check by converting back: every turn must come out as it was (its text made data, as the converter
    # makes it: protocol.neutralize_data_text).
    again = P.convert_sample(raw, n, FPS)["messages"][1:]
    differ = []
    for k in range(n):
        state_differs = again[2 * k + 1]["content"] != P.neutralize_turn(
            "assistant", str(body[2 * k + 1].get("content"))
        )
        question = asked.get(k)
        question_differs = P.parse_user_content(again[2 * k]["content"])[0] != (
            P.neutralize_data_text(question) if question else None
        )
        if k not in noted and (state_differs or question_differs):
            differ.append(k)
    if differ:
        shown = ", ".join(map(str, differ[:5])) + (f" and {len(differ) - 5} more" if len(differ) > 5 else "")
        notes.append(f"turns {shown} come out differently after conversion (the raw format cannot say them exactly)")
    return raw, notes
