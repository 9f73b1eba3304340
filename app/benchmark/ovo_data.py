"""OVO-Bench's annotation file, its twelve tasks and its prompts (shared/streamo/OVO_BENCH.md).

The annotation file as released (``ovo_bench_new.json``) is a JSON list of entries. Backward and
real-time entries are one query each (a multiple-choice question at ``realtime`` seconds); forward
entries carry ``test_info``, a list of probes, each its own query. ``load_annotations`` checks every
field a run or the scorer reads and names the file, the entry's index, id and task on a bad one, so
a broken file fails before any model loads. The prompt templates are the benchmark's own, verbatim
(``ovo_bench_prompts.json`` beside this file).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from model import json_text

_PROMPTS_FILE = Path(__file__).with_name("ovo_bench_prompts.json")


@cache
def prompts() -> dict[str, Any]:
    """The benchmark's constants: task lists per category and the four prompt templates."""
    return json.loads(_PROMPTS_FILE.read_text(encoding="utf-8"))


CATEGORIES: tuple[str, ...] = ("backward", "realtime", "forward")  # the result file's sections, in its order
CATEGORY_TASKS: dict[str, tuple[str, ...]] = {
    "backward": tuple(prompts()["BACKWARD_TASKS"]),
    "realtime": tuple(prompts()["REAL_TIME_TASKS"]),
    "forward": tuple(prompts()["FORWARD_TASKS"]),
}
CATEGORY_OF: dict[str, str] = {task: cat for cat, tasks in CATEGORY_TASKS.items() for task in tasks}
TASKS: tuple[str, ...] = tuple(CATEGORY_OF)  # EPM ASI HLD OCR ACR ATR STU FPD OJR REC SSR CRR


class OvoDataError(ValueError):
    """A bad annotation file; the message names the file and the entry."""


@dataclass(frozen=True)
class Query:
    """One scored question: a backward/real-time entry, or one probe of a forward entry."""

    key: str  # "EPM/12" (task/id) or "REC/3/0" (task/id/probe): unique in a file
    entry: str  # the entry's key, "REC/3"
    task: str
    category: str
    index: int  # the entry's index in the annotation list
    probe: int | None  # the test_info index of a forward probe
    video: str  # path relative to the videos folder, as the entry names it
    time: float  # seconds: the query's (or the probe's) ``realtime``
    prompt: str  # the benchmark's prompt for it


def entry_key(task: str, entry_id: Any) -> str:
    return f"{task}/{entry_id}"


def options_text(options: list[str]) -> str:
    """ "A. opt0; B. opt1; C. opt2; D. opt3;" as the benchmark formats them."""
    return "; ".join(f"{chr(65 + i)}. {opt}" for i, opt in enumerate(options)) + ";"


def build_prompt(entry: dict[str, Any], probe: int | None = None) -> str:
    """The benchmark's prompt for an entry (backward/real-time) or one of its probes (forward)."""
    p = prompts()
    task = entry["task"]
    if CATEGORY_OF[task] != "forward":
        return p["BR_PROMPT_TEMPLATE"].format(entry["question"], options_text(entry["options"]))
    if task == "REC":
        return p["REC_PROMPT_TEMPLATE"].format("How many times did they " + entry["activity"] + "?")
    if task == "SSR":
        return p["SSR_PROMPT_TEMPLATE"].format(entry["test_info"][probe]["step"])
    return p["CRR_PROMPT_TEMPLATE"].format(entry["question"])


def queries_for(entry: dict[str, Any], index: int) -> list[Query]:
    task = entry["task"]
    category = CATEGORY_OF[task]
    key = entry_key(task, entry["id"])
    if category != "forward":
        time = float(entry["realtime"])
        return [Query(key, key, task, category, index, None, entry["video"], time, build_prompt(entry))]
    return [
        Query(
            f"{key}/{j}",
            key,
            task,
            category,
            index,
            j,
            entry["video"],
            float(probe["realtime"]),
            build_prompt(entry, j),
        )
        for j, probe in enumerate(entry["test_info"])
    ]


def file_digest(path: str | Path) -> str:
    """sha256 of the annotation file's bytes: a resumed run must continue on the same file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_annotations(path: str | Path) -> list[dict[str, Any]]:
    """The entries of an OVO-Bench annotation file, every field a run reads checked."""
    path = Path(path)
    try:
        data = json_text.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OvoDataError(f"{path}: no such annotation file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OvoDataError(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(data, list):
        raise OvoDataError(f"{path}: expected a JSON list of entries, as in OVO-Bench's ovo_bench_new.json")
    seen: dict[str, int] = {}
    for i, entry in enumerate(data):
        _check_entry(path, i, entry)
        key = entry_key(entry["task"], entry["id"])
        if key in seen:
            raise OvoDataError(f"{path}: entry {i} repeats task {entry['task']} id {entry['id']} of entry {seen[key]}")
        seen[key] = i
    return data


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _check_entry(path: Path, i: int, entry: Any) -> None:
    def bad(what: str) -> OvoDataError:
        where = f"entry {i}"
        if isinstance(entry, dict):
            where += f" (id {entry.get('id')!r}, task {entry.get('task')!r})"
        return OvoDataError(f"{path}: {where}: {what}")

    if not isinstance(entry, dict):
        raise bad("is not a JSON object")
    task = entry.get("task")
    if task not in CATEGORY_OF:
        raise bad(f"unknown task; OVO-Bench's tasks are {', '.join(TASKS)}")
    entry_id = entry.get("id")
    if not isinstance(entry_id, (int, str)) or isinstance(entry_id, bool) or "/" in str(entry_id):
        raise bad("'id' must be an integer or a string without '/'")
    if not isinstance(entry.get("video"), str) or not entry["video"].strip():
        raise bad("'video' must be the video's path relative to the videos folder")
    if CATEGORY_OF[task] != "forward":
        if not _number(entry.get("realtime")):
            raise bad("'realtime' must be a number of seconds >= 0")
        if not isinstance(entry.get("question"), str):
            raise bad("'question' must be a string")
        options = entry.get("options")
        if not isinstance(options, list) or not 2 <= len(options) <= 26 or not all(isinstance(o, str) for o in options):
            raise bad("'options' must be a list of 2 to 26 strings")
        gt = entry.get("gt")
        if not isinstance(gt, int) or isinstance(gt, bool) or not 0 <= gt < len(options):
            raise bad(f"'gt' must be the index of the right option, 0..{len(options) - 1}")
        return
    probes = entry.get("test_info")
    if not isinstance(probes, list) or not probes:
        raise bad("'test_info' must be a non-empty list of probes")
    if task == "REC" and not isinstance(entry.get("activity"), str):
        raise bad("'activity' must be a string")
    if task == "CRR" and not isinstance(entry.get("question"), str):
        raise bad("'question' must be a string")
    for j, probe in enumerate(probes):
        if not isinstance(probe, dict):
            raise bad(f"test_info[{j}] is not a JSON object")
        if not _number(probe.get("realtime")):
            raise bad(f"test_info[{j}]: 'realtime' must be a number of seconds >= 0")
        if task == "REC" and (not isinstance(probe.get("count"), int) or isinstance(probe.get("count"), bool)):
            raise bad(f"test_info[{j}]: 'count' must be an integer")
        if task == "SSR" and not isinstance(probe.get("step"), str):
            raise bad(f"test_info[{j}]: 'step' must be a string")
        if task in ("SSR", "CRR") and probe.get("type") not in (0, 1):
            raise bad(f"test_info[{j}]: 'type' must be 0 or 1")


def select(entries: list[dict[str, Any]], tasks: list[str] | None = None, limit: int | None = None) -> list[int]:
    """Indices of the entries to run, in file order: only ``tasks`` (all twelve when None), at
    most ``limit`` entries of each task (a forward entry counts once, with all its probes)."""
    wanted = set(tasks or TASKS)
    taken: dict[str, int] = {}
    out = []
    for i, entry in enumerate(entries):
        task = entry["task"]
        if task in wanted and (limit is None or taken.get(task, 0) < limit):
            taken[task] = taken.get(task, 0) + 1
            out.append(i)
    return out


def parse_tasks(text: str) -> list[str]:
    """ "EPM,REC" -> ["EPM", "REC"]; category names ("backward", ...) stand for their tasks."""
    out: list[str] = []
    for name in (t.strip() for t in text.split(",")):
        if not name:
            continue
        found = CATEGORY_TASKS.get(name.lower()) or ((name.upper(),) if name.upper() in CATEGORY_OF else None)
        if found is None:
            raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)} or backward, realtime, forward")
        out += [t for t in found if t not in out]
    if not out:
        raise ValueError("no task named")
    return out


def parse_answer_limits(text: str) -> dict[str, float | None]:
    """``--answer-limit``: "end" (every task answers until the video ends, as the release's script),
    "30" (every task: within 30 s after the question's turn) or "backward=10,REC=end,..." (tasks or
    categories; the rest: the end). -> {task: seconds or None (the end)} for all twelve tasks."""
    limits: dict[str, float | None] = dict.fromkeys(TASKS)
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.rpartition("=")
        tasks = parse_tasks(name) if sep else list(TASKS)
        if value.strip().lower() == "end":
            seconds = None
        else:
            try:
                seconds = float(value)
            except ValueError:
                raise ValueError(f"{part!r}: the limit must be seconds >= 0 or 'end'") from None
            if not math.isfinite(seconds) or seconds < 0:
                raise ValueError(f"{part!r}: the limit must be seconds >= 0 or 'end'")
        limits.update(dict.fromkeys(tasks, seconds))
    return limits
