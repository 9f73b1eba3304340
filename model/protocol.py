"""The Streamo streaming protocol: state tokens, the system prompt, turn rendering and the
raw-annotation -> stream-format conversion (shared/streamo/PROTOCOL.md, sections 1-3).

This module is the one place that renders a turn and the one place that maps raw
annotations to turns; training, inference and the data CLI all go through it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from model import json_text

log = logging.getLogger(__name__)

SILENCE = "</Silence>"
STANDBY = "</Standby>"
RESPONSE = "</Response>"
STATE_TOKENS: tuple[str, str, str] = (SILENCE, STANDBY, RESPONSE)
# Plain-text pieces whose embedding rows initialise each new state token (PROTOCOL.md section 1).
STATE_TOKEN_WORDS: dict[str, str] = {SILENCE: "Silence", STANDBY: "Standby", RESPONSE: "Response"}

DEFAULT_QUESTION = "Find all significant events in the video and describe them."

# Placeholders: stored data uses <stream>; frames extracted at 1 fps turn it into <image>.
STREAM_PLACEHOLDER = "<stream>"
IMAGE_PLACEHOLDER = "<image>"

# Qwen2.5-VL chat template pieces (what apply_chat_template renders for string content).
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"
ENDOFTEXT = "<|endoftext|>"
CHAT_SPECIAL_TOKENS: tuple[str, ...] = (
    ENDOFTEXT,
    IM_START,
    IM_END,
    VISION_START,
    VISION_END,
    IMAGE_PAD,
    VIDEO_PAD,
)
IMAGE_TEXT = f"{VISION_START}{IMAGE_PAD}{VISION_END}"


def _load_system_prompt() -> str:
    # Byte for byte from shared/streamo/system_prompt.txt; newline="" keeps it untouched.
    with resources.files("model").joinpath("system_prompt.txt").open(encoding="utf-8", newline="") as f:
        return f.read()


SYSTEM_PROMPT: str = _load_system_prompt()


class AnnotationError(ValueError):
    """Raw annotations that cannot be converted (malformed JSON or a wrong schema)."""


# ---------------------------------------------------------------------------------------------
# Turn rendering


def format_seconds(x: float) -> str:
    """'3' for whole seconds, '3.5' otherwise (2 fps streams have half-second intervals)."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def interval_label(start: float, end: float) -> str:
    return f"<{format_seconds(start)}s-{format_seconds(end)}s>"


def user_turn_content(
    start: float, end: float, question: str | None = None, placeholder: str = IMAGE_PLACEHOLDER
) -> str:
    """The content of one user turn: ``[question\\n]<Xs-Ys>\\n<image>``."""
    body = f"{interval_label(start, end)}\n{placeholder}"
    return f"{question}\n{body}" if question else body


# User text is data, never chat structure. A WORD JOINER (U+2060, invisible) after the "<" of a
# placeholder, chat special token, state token or time-label line breaks it up for both
# render_message's placeholder replacement and the tokenizer's special-token matching.
WORD_JOINER = "\u2060"
_STRUCTURE = re.compile(
    "<(?="
    + "|".join(re.escape(s[1:]) for s in (IMAGE_PLACEHOLDER, STREAM_PLACEHOLDER, *STATE_TOKENS))
    + r"|\|[^<>]*\|>)"  # <|...|>: every chat special token (<|im_end|>, <|vision_start|>, ...)
)
_LABEL_LINE = re.compile(r"^([ \t]*)<(?=[\d.]+s-[\d.]+s>[ \t]*$)", re.MULTILINE)


def neutralize_user_text(text: str) -> str:
    """User text (a question, a grounding target) made safe to put into a user turn: the one
    place that does it. Surrounding whitespace is stripped; ``<image>``/``<stream>``, anything
    of the form ``<|...|>`` (the chat special tokens), the three state tokens and a line that
    looks like a time label (``<3s-4s>``) get a WORD JOINER after their ``<``, so they cannot
    open a vision block, end a turn, fake a state or a turn boundary. Everything else is kept
    byte for byte (ordinary ``<`` and ``>`` included); applying it twice changes nothing."""
    text = _STRUCTURE.sub("<" + WORD_JOINER, text.strip())
    return _LABEL_LINE.sub(r"\1<" + WORD_JOINER, text)


def neutralize_data_text(text: str) -> str:
    """Annotation text (a question or an answer of a training sample) made data by the same rule as
    Live's user text, :func:`neutralize_user_text`, applied to the text within its surrounding
    whitespace, which is kept: the released converter keeps it, so clean data converts and renders
    byte for byte as the release's does. ``<|im_end|>`` in an answer stays words (it would train as
    a real end of turn) and ``<image>`` in a question opens no vision block (one image too many for
    the clip's frames). Applying it twice changes nothing."""
    core = text.strip()
    if not core:
        return text
    lead = len(text) - len(text.lstrip())
    return text[:lead] + neutralize_user_text(core) + text[lead + len(core) :]


def assistant_turn_content(state: str, text: str = "") -> str:
    """Exactly one state token; only </Response> is followed by one space and the answer."""
    if state not in STATE_TOKENS:
        raise ValueError(f"unknown state {state!r}; expected one of {STATE_TOKENS}")
    if state == RESPONSE and text:
        return f"{RESPONSE} {text}"
    return state


_USER_CONTENT = re.compile(
    r"^(?:(?P<question>.*)\n)?<(?P<start>[\d.]+)s-(?P<end>[\d.]+)s>\n(?:<stream>|<image>)\Z", re.DOTALL
)


def parse_user_content(content: str) -> tuple[str | None, float, float]:
    """Inverse of user_turn_content: (question or None, start, end). Raises ValueError when the
    content is not ``[question\n]<Xs-Ys>\n<stream>`` (or ``<image>``)."""
    m = _USER_CONTENT.match(content)
    if m is None:
        raise ValueError(f"user turn is not '[question\\n]<Xs-Ys>\\n<stream>': {content[:60]!r}")
    return m.group("question") or None, float(m.group("start")), float(m.group("end"))


def parse_assistant_content(content: str) -> tuple[str, str]:
    """Inverse of assistant_turn_content: (state, answer text)."""
    for state in STATE_TOKENS:
        if content.startswith(state):
            return state, content[len(state) :].strip()
    raise ValueError(f"assistant turn does not start with a state token: {content[:40]!r}")


def neutralize_turn(role: str, content: str) -> str:
    """One stream-format message with its text made data (:func:`neutralize_data_text`): a user
    turn's question (before its ``<Xs-Ys>`` label and placeholder) and an assistant turn's text after
    its state token. The system prompt, time labels, placeholders and state tokens are the protocol's
    and stay; content of another shape is returned as it is (the sample checks refuse it)."""
    if role == "user":
        m = _USER_CONTENT.match(content)
        if m is not None and m.group("question"):
            return neutralize_data_text(m.group("question")) + content[m.end("question") :]
    elif role == "assistant":
        for state in STATE_TOKENS:
            if content.startswith(state):
                return state + neutralize_data_text(content[len(state) :])
    return content


def neutralize_turns(messages: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """A conversation whose questions and answers are data (:func:`neutralize_turn`), as training
    renders it; clean conversations come back equal."""
    return [{**m, "content": neutralize_turn(m["role"], m["content"])} for m in messages]


def render_message(role: str, content: str) -> str:
    """One chat message as the Qwen2.5-VL template renders string content; <image> and
    <stream> placeholders become one vision block each (the processor expands the pad)."""
    content = content.replace(STREAM_PLACEHOLDER, IMAGE_TEXT).replace(IMAGE_PLACEHOLDER, IMAGE_TEXT)
    return f"{IM_START}{role}\n{content}{IM_END}\n"


ASSISTANT_PREFIX = f"{IM_START}assistant\n"
# What follows the assistant content to close the turn; training labels cover it too.
ASSISTANT_SUFFIX = f"{IM_END}\n"


def render_segments(messages: Sequence[dict[str, str]], final_newline: bool = True) -> list[tuple[str, bool]]:
    """The rendered conversation as (text, labelled) pieces that concatenate to
    ``render_conversation``. Labelled (PROTOCOL.md section 4): each assistant turn's content
    (state token and answer) and its closing ``<|im_end|>``; not labelled: everything else,
    including ``<|im_start|>assistant\n`` and the newline after ``<|im_end|>``. The released
    training sequences end without the last turn's newline (``final_newline=False``)."""
    out: list[tuple[str, bool]] = []
    for m in messages:
        if m["role"] == "assistant":
            out += [(ASSISTANT_PREFIX, False), (m["content"], True), (IM_END, True), ("\n", False)]
        else:
            out.append((render_message(m["role"], m["content"]), False))
    if not final_newline and out:
        text, labelled = out[-1]
        if text.endswith("\n"):
            out[-1] = (text[:-1], labelled)
        if not out[-1][0]:
            out.pop()
    return out


def render_conversation(messages: Sequence[dict[str, str]], add_generation_prompt: bool = False) -> str:
    text = "".join(text for text, _ in render_segments(messages))
    return text + (ASSISTANT_PREFIX if add_generation_prompt else "")


def count_images(messages: Iterable[dict[str, str]]) -> int:
    return sum(m["content"].count(STREAM_PLACEHOLDER) + m["content"].count(IMAGE_PLACEHOLDER) for m in messages)


# ---------------------------------------------------------------------------------------------
# Raw annotations -> stream format (PROTOCOL.md section 3, rule for rule)

_CLOCK = re.compile(r"^\s*(\d+(?:\.\d+)?)(?::(\d+(?:\.\d+)?)){1,2}\s*$")


class BadTime(AnnotationError):
    """A time that is a number but no time: infinite, not a number, or negative."""


def _checked(x: float, value: Any) -> float:
    if not math.isfinite(x) or x < 0:
        raise BadTime(f"time {value!r} is not a time (a finite number of seconds, 0 or more)")
    return x


def parse_time(value: Any, fps: float = 1) -> int | None:
    """Rule 2. Empty or null -> None; a JSON number -> int(x) (not scaled by fps, as the
    official converter does); a string -> int, else int(float * fps), else MM:SS / HH:MM:SS.
    A number that is no time (inf, NaN, negative) raises BadTime: the official converter crashes
    on the first two and puts a negative one on turn 0; here it is that sample's error."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return int(_checked(value, value))
    if not isinstance(value, str):
        return None
    try:
        n = int(value)
    except ValueError:
        pass
    else:
        return int(_checked(n, value))
    try:
        x = float(value)
    except ValueError:
        pass
    else:
        return int(_checked(x, value) * fps)
    if _CLOCK.match(value):
        parts = [float(p) for p in value.strip().split(":")]
        seconds = 0.0
        for p in parts:
            seconds = seconds * 60 + p
        return int(seconds * fps)
    return None


def time_to_turn(t: int) -> int:
    """Rule 3: time T is the turn <T-1s-Ts>; T <= 0 is the first turn."""
    return t - 1 if t > 0 else 0


def turn_count(total_frames: int, video_fps: float, fps: float = 1) -> int:
    """Rule 1: n = total_frames // max(1, int(video_fps / fps))."""
    return int(total_frames) // max(1, int(video_fps / fps))


def raw_entries(sample: dict, key: str, index: int) -> list[dict]:
    value = sample.get(key)
    if value is None:
        return []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        raise AnnotationError(f"sample {index}: '{key}' must be a list of objects, got {type(value).__name__}")
    return value


def _content(entry: dict, key: str, index: int) -> str:
    content = entry.get("content")
    if content is None:
        return ""
    if not isinstance(content, str):
        raise AnnotationError(f"sample {index}: a '{key}' entry has non-string content {content!r}")
    return neutralize_data_text(content)  # annotation text is data, as Live's user text is


def convert_sample(sample: dict, n_turns: int, fps: float = 1, index: int = 0) -> dict:
    """Rules 4-9 for one raw sample whose video has ``n_turns`` turns. Question and answer texts are
    data (:func:`neutralize_data_text`, Live's rule): markup in them cannot become chat structure,
    and clean text comes out exactly as the released converter writes it."""
    try:
        return _convert_sample(sample, n_turns, fps, index)
    except BadTime as e:
        raise AnnotationError(f"sample {index}: {e}") from None


def _convert_sample(sample: dict, n_turns: int, fps: float, index: int) -> dict:
    if not isinstance(sample, dict):
        raise AnnotationError(f"sample {index}: expected an object, got {type(sample).__name__}")
    video_path = sample.get("video_path")
    if not isinstance(video_path, str) or not video_path:
        raise AnnotationError(f"sample {index}: 'video_path' is missing or not a string")
    questions = raw_entries(sample, "question", index)
    responses = raw_entries(sample, "response", index)

    states = [SILENCE] * n_turns  # rule 4
    asked: dict[int, str] = {}
    for q in questions:  # rule 5
        content, t = _content(q, "question", index), parse_time(q.get("time"), fps)
        if content and t is not None:
            turn = time_to_turn(t)
            if 0 <= turn < n_turns:
                asked[turn] = content
    for r in responses:  # rule 6
        content = _content(r, "response", index)
        st, end = parse_time(r.get("st_time"), fps), parse_time(r.get("end_time"), fps)
        if st is not None and end is not None:
            first, last = time_to_turn(st), time_to_turn(end)
            for turn in range(max(0, first), min(n_turns - 1, last) + 1):
                states[turn] = STANDBY
            after = last + 1
            if 0 <= after < n_turns and content:
                states[after] = assistant_turn_content(RESPONSE, content)
        else:
            t = parse_time(r.get("time"), fps)
            if t is not None:
                turn = time_to_turn(t)
                if 0 <= turn < n_turns and content:
                    states[turn] = assistant_turn_content(RESPONSE, content)
    if 0 not in asked and n_turns > 0:  # rule 7
        first = _content(questions[0], "question", index) if questions else ""
        asked[0] = first or DEFAULT_QUESTION

    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for i in range(n_turns):  # rule 8
        messages.append({"role": "user", "content": user_turn_content(i, i + 1, asked.get(i), STREAM_PLACEHOLDER)})
        messages.append({"role": "assistant", "content": states[i]})
    out: dict[str, Any] = {"messages": messages, "videos": [video_path]}  # rule 9
    for key in ("video_name", "task_type", "source"):
        if sample.get(key):
            out[key] = sample[key]
    return out


def raw_sample_problems(sample: dict, n_turns: int, fps: float = 1) -> list[str]:
    """What the converter silently drops, overwrites or leaves out of one raw sample, as lines for a
    warning ("question 1: ..."). The rules are ``model.sample_check`` (the clip editor's too); the
    conversion itself is unchanged: these only explain it."""
    from model.sample_check import check_raw_sample  # it imports this module

    return [str(p) for p in check_raw_sample(sample, n_turns, fps)]


@dataclass(frozen=True)
class VideoMeta:
    total_frames: int
    fps: float


def probe_video(path: str | Path) -> VideoMeta | None:
    """Frame count and frame rate of a video file, or None when it is unusable by the one rule
    (``model.video_probe.inspect_video``, whose ``reason`` says why)."""
    from model.video_probe import inspect_video  # local: the protocol's pure parts need no OpenCV

    facts = inspect_video(path)
    return VideoMeta(facts.frames, facts.fps) if facts.ok else None


def read_annotation_text(path: str | Path) -> str:
    """The text of an annotation file (JSON or JSON Lines): the one reader of the command line, the
    Training tab and training. UTF-8, with or without a byte-order mark (Windows editors write one).
    Raises AnnotationError with one sentence that does not name the file (callers name it): no such
    file, a folder, unreadable, or not UTF-8 (a Latin-1 or Windows-1252 file: save it as UTF-8)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AnnotationError("no such file") from None
    except IsADirectoryError:
        raise AnnotationError("it is a folder, not an annotation file; give the JSON file in it") from None
    except OSError as e:
        if path.is_dir():  # Windows says "permission denied" for a folder
            raise AnnotationError("it is a folder, not an annotation file; give the JSON file in it") from None
        raise AnnotationError(f"cannot be read ({e.strerror or e})") from None
    try:
        return data.decode("utf-8-sig")  # a leading byte-order mark is dropped, as JSON readers must accept
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise AnnotationError(
            f"not UTF-8 text (byte 0x{data[e.start]:02x} on line {line}; Latin-1 or Windows-1252?): save it as "
            "UTF-8 in your editor and try again"
        ) from None


def parse_annotation_json(text: str, position: bool = True) -> Any:
    """``json.loads`` for annotation files: what is no JSON, or JSON nested too deeply for Python to
    read, raises AnnotationError with one phrase that does not name the file ("not valid JSON (...)",
    "JSON nested too deeply ..."; ``position`` False: without the line and column, for one line of a
    JSON Lines file). NaN and Infinity read as numbers (Python's JSON does): as times they are that
    sample's error (``parse_time``)."""
    try:
        return json_text.loads(text)
    except json_text.NestedTooDeep:
        raise AnnotationError(
            "JSON nested too deeply to read (brackets inside brackets thousands of levels down): annotations "
            "are a list of samples, each a few levels deep"
        ) from None
    except json.JSONDecodeError as e:
        where = f" at line {e.lineno}, column {e.colno}" if position else ""
        raise AnnotationError(f"not valid JSON ({e.msg}{where})") from None


def load_raw_annotations(path: str | Path) -> list[dict]:
    """The samples of a raw annotation file (a JSON list, or one sample object); AnnotationError with
    one line naming the file otherwise (``read_annotation_text``, ``parse_annotation_json``)."""
    path = Path(path)
    try:
        data = parse_annotation_json(read_annotation_text(path))
    except AnnotationError as e:
        raise AnnotationError(f"{path}: {e}") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise AnnotationError(f"{path}: expected a JSON list of samples or one sample object")
    return data


def to_stream(
    samples: list[dict],
    video_prefix: str | Path | None = None,
    fps: float = 1,
    probe: Callable[[Path], VideoMeta | None] = probe_video,
    skipped: list[str] | None = None,
    join_prefix: bool = True,
) -> list[dict]:
    """Convert raw samples; a missing or unreadable video skips its sample with a warning. A
    malformed sample (schema, a time that is no time) raises AnnotationError naming it, or, when
    ``skipped`` is a list, is skipped and its error appended there.

    With ``video_prefix``, ``videos`` holds the joined path, as the released converter writes it
    (rule 9: the path it probed), so the output trains without a prefix; ``join_prefix=False`` keeps
    the sample's own path (a file exported into the folder its paths start from)."""
    out = []
    for i, sample in enumerate(samples):
        try:
            if not isinstance(sample, dict) or not isinstance(sample.get("video_path"), str):
                convert_sample(sample, 0, fps, i)  # raises the schema error naming the sample
            path = Path(video_prefix) / sample["video_path"] if video_prefix else Path(sample["video_path"])
            meta = probe(path)
            if meta is None:
                log.warning("sample %d: skipped, video %s is missing or unreadable", i, path)
                continue
            converted = convert_sample(sample, turn_count(meta.total_frames, meta.fps, fps), fps, i)
            if video_prefix and join_prefix:
                converted["videos"] = [os.path.join(str(video_prefix), sample["video_path"])]
            out.append(converted)
        except AnnotationError as e:
            if skipped is None:
                raise
            skipped.append(str(e))
    return out


def dump_stream(samples: list[dict]) -> str:
    """The official files' formatting (2-space indent, UTF-8 kept)."""
    return json.dumps(samples, indent=2, ensure_ascii=False)
