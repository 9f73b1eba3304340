"""Evaluation metrics: the live model's per-second states and answers against labelled clips.

Pure Python (no torch, no model): the ``evaluate`` command runs the model over labelled clips,
collects one :class:`ClipOutcome` per clip and hands them to :func:`evaluation_report`.

A clip is a sequence of turns; turn ``i`` covers ``[i / fps, (i + 1) / fps)`` seconds. Each turn
has a labelled and an emitted state (one of ``STATE_TOKENS``); only ``</Response>`` carries text.

Definitions (all turns of all clips pooled unless said otherwise):

- Per state: ``precision`` = correct turns / turns emitted with that state (0.0 when never
  emitted), ``recall`` = correct turns / labelled turns of that state (0.0 when the support is 0),
  ``f1`` = their harmonic mean (0.0 when both are 0), ``support`` = labelled turns of that state.
- ``macro_f1``: mean F1 over the states whose support is > 0 (a state absent from the labels
  neither helps nor hurts); 0.0 when there are no turns.
- ``state_accuracy``: share of labelled turns whose emitted state equals the label (0.0 when
  there are no turns).
- Timing: each labelled Response is matched to the nearest emitted Response of the same clip
  (ties: the earlier one); its timing error is the distance in seconds, turn difference / fps.
  When the clip has no emitted Response the labelled one is "missed": counted in
  ``missed_responses`` and left out of the timing mean. ``timing_error_s`` is the mean over the
  matched labelled Responses, None when there are none.
- ``answer_f1``: :func:`token_f1` between each labelled Response's text and the text of its
  matched emitted Response (a missed one scores 0.0), averaged over all labelled Responses;
  None when there are none.
- ``seconds``: labelled duration, ``len(labels) / fps`` per clip, summed over clips at the top
  level (a float: at fps 2 a clip may last a half second more than a whole number).
- ``labelled_responses`` / ``emitted_responses``: counts of Response turns in the labels / output.
- Per-clip entries use the same definitions restricted to the clip, and carry the detail a person
  checks by eye: ``labelled_states`` / ``predicted_states`` (the state token of every turn),
  ``answers`` (``{"second", "labelled", "predicted"}`` for every turn where either side responded, in
  time order; None on the side that did not) and ``instruction`` (the standing instruction the clip
  was evaluated with). :func:`format_clip_detail` draws them as strips.

Floats in the report are plain, unrounded Python floats; :func:`format_report` and
:func:`compare_reports` round for display only.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from model.protocol import RESPONSE, SILENCE, STANDBY, STATE_TOKENS

_PUNCT = str.maketrans("", "", string.punctuation)


@dataclass
class SecondLabel:
    """One turn of a clip: its state and, for ``</Response>``, the answer text."""

    state: str  # one of STATE_TOKENS
    text: str = ""  # the answer after </Response>, "" otherwise


@dataclass
class ClipOutcome:
    """One labelled clip and what the model emitted for it, turn by turn."""

    video: str  # name/path, for the report
    fps: float  # turns per second (1 or 2); turn i covers [i/fps, (i+1)/fps)
    labels: list[SecondLabel]  # the data's labels, one per turn
    emitted: list[SecondLabel]  # what the model emitted, one per turn (same length)
    instruction: str | None = None  # the standing instruction the clip was evaluated with


def _tokens(text: str) -> list[str]:
    return text.lower().translate(_PUNCT).split()


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style token F1: lowercase, strip punctuation, split on whitespace, multiset overlap."""
    pred, ref = _tokens(prediction), _tokens(reference)
    if not pred and not ref:
        return 1.0
    if not pred or not ref:
        return 0.0
    overlap = sum((Counter(pred) & Counter(ref)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def _check(clip: ClipOutcome) -> None:
    if len(clip.labels) != len(clip.emitted):
        raise ValueError(f"{clip.video}: {len(clip.labels)} labelled turns but {len(clip.emitted)} emitted")
    if not clip.fps > 0:
        raise ValueError(f"{clip.video}: fps must be positive, got {clip.fps}")
    for kind, turns in (("labelled", clip.labels), ("emitted", clip.emitted)):
        for i, turn in enumerate(turns):
            if turn.state not in STATE_TOKENS:
                raise ValueError(f"{clip.video}: {kind} turn {i} has unknown state {turn.state!r}")


def _match_responses(clip: ClipOutcome) -> list[tuple[float | None, float]]:
    """(timing error in seconds or None when missed, answer F1) for each labelled Response of the clip."""
    emitted = [j for j, turn in enumerate(clip.emitted) if turn.state == RESPONSE]
    out: list[tuple[float | None, float]] = []
    for i, turn in enumerate(clip.labels):
        if turn.state != RESPONSE:
            continue
        if not emitted:
            out.append((None, 0.0))
            continue
        j = min(emitted, key=lambda k: (abs(k - i), k))  # nearest; ties: the earlier one
        out.append((abs(j - i) / clip.fps, token_f1(clip.emitted[j].text, turn.text)))
    return out


def _second(i: int, fps: float) -> float | int:
    """Turn ``i``'s start in seconds (a whole number at 1 turn a second)."""
    return i if fps == 1 else i / fps


def _answers(clip: ClipOutcome) -> list[dict[str, Any]]:
    """The answers of both sides, turn by turn, where either responded."""
    out = []
    for i, (label, out_turn) in enumerate(zip(clip.labels, clip.emitted, strict=True)):
        if RESPONSE in (label.state, out_turn.state):
            out.append({
                "second": _second(i, clip.fps),
                "labelled": label.text if label.state == RESPONSE else None,
                "predicted": out_turn.text if out_turn.state == RESPONSE else None,
            })  # fmt: skip
    return out


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _summary(matches: list[tuple[float | None, float]]) -> tuple[float | None, float | None, int]:
    """(timing_error_s, answer_f1, missed) over a list of labelled-Response matches."""
    timings = [t for t, _ in matches if t is not None]
    return _mean(timings), _mean([f for _, f in matches]), len(matches) - len(timings)


def evaluation_report(clips: Sequence[ClipOutcome]) -> dict[str, Any]:
    """The JSON-serialisable evaluation report over ``clips`` (definitions in the module docstring)."""
    labelled = Counter[str]()
    predicted = Counter[str]()
    correct = Counter[str]()
    all_matches: list[tuple[float | None, float]] = []
    clip_entries: list[dict[str, Any]] = []
    for clip in clips:
        _check(clip)
        hits = 0
        for label, out in zip(clip.labels, clip.emitted, strict=True):
            labelled[label.state] += 1
            predicted[out.state] += 1
            if label.state == out.state:
                correct[label.state] += 1
                hits += 1
        matches = _match_responses(clip)
        all_matches += matches
        timing, answer, _ = _summary(matches)
        n = len(clip.labels)
        clip_entries.append(
            {
                "video": clip.video,
                "seconds": n / clip.fps,
                "state_accuracy": hits / n if n else 0.0,
                "labelled_responses": sum(t.state == RESPONSE for t in clip.labels),
                "emitted_responses": sum(t.state == RESPONSE for t in clip.emitted),
                "timing_error_s": timing,
                "answer_f1": answer,
                "instruction": clip.instruction,
                "labelled_states": [t.state for t in clip.labels],
                "predicted_states": [t.state for t in clip.emitted],
                "answers": _answers(clip),
            }
        )

    states: dict[str, dict[str, Any]] = {}
    for state in STATE_TOKENS:
        p = correct[state] / predicted[state] if predicted[state] else 0.0
        r = correct[state] / labelled[state] if labelled[state] else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        states[state] = {"precision": p, "recall": r, "f1": f1, "support": labelled[state]}
    present = [states[s]["f1"] for s in STATE_TOKENS if labelled[s]]
    turns = sum(labelled.values())
    timing, answer, missed = _summary(all_matches)
    return {
        "states": states,
        "macro_f1": sum(present) / len(present) if present else 0.0,
        "state_accuracy": sum(correct.values()) / turns if turns else 0.0,
        "timing_error_s": timing,
        "answer_f1": answer,
        "clips": clip_entries,
        "seconds": sum(c["seconds"] for c in clip_entries),
        "labelled_responses": sum(c["labelled_responses"] for c in clip_entries),
        "emitted_responses": sum(c["emitted_responses"] for c in clip_entries),
        "missed_responses": missed,
    }


def _fmt(value: float | int | None) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4f}"


# (label, report key) for the rows after the per-state table.
_SUMMARY_ROWS: tuple[tuple[str, str], ...] = (
    ("macro-F1", "macro_f1"),
    ("state accuracy", "state_accuracy"),
    ("timing error (s)", "timing_error_s"),
    ("answer F1", "answer_f1"),
    ("missed responses", "missed_responses"),
)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(max(map(len, rows)))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(widths[i + 1]) for i, cell in enumerate(row[1:])]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def format_report(report: dict[str, Any]) -> str:
    """A plain-text table of ``report`` for the terminal: one row per state, then the summary rows."""
    rows = [["state", "precision", "recall", "F1", "support"]]
    for state in STATE_TOKENS:
        m = report["states"][state]
        rows.append([state, _fmt(m["precision"]), _fmt(m["recall"]), _fmt(m["f1"]), _fmt(m["support"])])
    rows.append([""])
    rows += [[label, _fmt(report[key])] for label, key in _SUMMARY_ROWS]
    return _table(rows)


def compare_reports(before: dict[str, Any], after: dict[str, Any], names: tuple[str, str] = ("base", "adapter")) -> str:
    """The rows of :func:`format_report` for two reports side by side, with the change in the summary rows."""
    a, b = names
    rows = [["state"] + [f"{n} {col}" for n in names for col in ("precision", "recall", "F1")] + ["support"]]
    for state in STATE_TOKENS:
        x, y = before["states"][state], after["states"][state]
        cells = [_fmt(m[k]) for m in (x, y) for k in ("precision", "recall", "f1")]
        support = _fmt(x["support"]) if x["support"] == y["support"] else f"{x['support']}/{y['support']}"
        rows.append([state, *cells, support])
    rows.append([""])
    rows.append(["metric", a, b, "change"])
    for label, key in _SUMMARY_ROWS:
        x, y = before[key], after[key]
        change = "n/a" if x is None or y is None else (f"{y - x:+d}" if isinstance(x, int) else f"{y - x:+.4f}")
        rows.append([label, _fmt(x), _fmt(y), change])
    notes = cautions(before, after, names)
    return _table(rows) + ("\n\n" + "\n".join(f"caution: {n}" for n in notes) if notes else "")


# Below these the figures move a lot with one clip or one answer (issue 18: one clip held out of 14).
FEW_CLIPS, FEW_RESPONSES = 2, 5


def cautions(before: dict[str, Any], after: dict[str, Any], names: tuple[str, str] = ("base", "adapter")) -> list[str]:
    """Plain-words warnings for a comparison: too few clips or answers to trust it, and a score that
    got worse (the adapter below the base on macro-F1 or answer F1)."""
    a, b = names
    out = []
    clips, answers = len(after.get("clips", [])), after.get("labelled_responses", 0)
    if clips < FEW_CLIPS or answers < FEW_RESPONSES:
        out.append(
            f"only {clips} clip{'s' * (clips != 1)} and {answers} labelled answer{'s' * (answers != 1)} were "
            "scored: one clip more or less can swing these figures. Hold out at least 2 clips (or 20%) to trust them."
        )
    for label, key in (("macro-F1", "macro_f1"), ("answer F1", "answer_f1")):
        x, y = before.get(key), after.get(key)
        if x is not None and y is not None and y < x - 1e-9:
            out.append(
                f"the {b} scored lower than the {a} on {label} ({x:.2f} -> {y:.2f}): it may have learnt the "
                "training clips too closely (too many steps for few clips), or the scored clips differ from them. "
                "Try fewer steps or more clips."
            )
    return out


# One character per turn in the state strips of format_clip_detail.
STRIP_CHARS = {SILENCE: ".", STANDBY: "-", RESPONSE: "!"}
STRIP_WIDTH = 60  # turns per line
ANSWER_WIDTH = 36  # characters per answer column before it wraps


def _ruler(first: int, count: int, fps: float) -> str:
    """Second marks over turns ``first`` .. ``first + count - 1``: every tenth turn's start time."""
    line = [" "] * count
    free = 0  # the first column a mark may start at (marks never overlap)
    for k in range(count):
        if (first + k) % 10 == 0 and k >= free:
            mark = f"{_second(first + k, fps):g}"
            if k + len(mark) > count and k:
                break
            line[k : k + len(mark)] = mark
            free = k + len(mark) + 1
    return "".join(line).rstrip()


def _clip_fps(entry: dict[str, Any]) -> float:
    n, seconds = len(entry.get("labelled_states", [])), entry.get("seconds") or 0
    return n / seconds if n and seconds else 1.0


def format_clip_detail(
    entry: dict[str, Any], predicted_by: dict[str, dict[str, Any]] | None = None, width: int = STRIP_WIDTH
) -> str:
    """One clip of an evaluation report for a person: the labelled state strip with the predicted one
    under it ('.' Silence, '-' Standby, '!' Response; ``width`` turns a line under a ruler of seconds),
    then the answers side by side at each second where either side responded.

    ``entry`` is a ``clips`` entry of :func:`evaluation_report`; ``predicted_by`` shows several models'
    predictions for the same clip under their names (``{"base": ..., "adapter": ...}``); by default the
    entry's own, as "predicted"."""
    rows = {"labelled": entry.get("labelled_states", [])}
    models = predicted_by or {"predicted": entry}
    rows.update({name: e.get("predicted_states", []) for name, e in models.items()})
    fps = _clip_fps(entry)
    head = f"{entry.get('video', 'clip')} ({entry.get('seconds', 0):g} s)"
    if entry.get("instruction"):
        head += f", instruction: \u201c{entry['instruction']}\u201d"
    lines = [head, "  strips: '.' Silence  '-' Standby  '!' Response, one character a " + (
        "second" if fps == 1 else f"{1 / fps:g} s")]  # fmt: skip
    pad = max(map(len, rows)) + 2
    n = max((len(r) for r in rows.values()), default=0)
    for first in range(0, n, width):
        lines.append(" " * (pad + 2) + _ruler(first, min(width, n - first), fps))
        for name, states in rows.items():
            strip = "".join(STRIP_CHARS.get(s, "?") for s in states[first : first + width])
            lines.append(f"  {name.ljust(pad)}{strip}")
    lines += _answer_lines(rows, models, fps)
    return "\n".join(lines)


def _answer_lines(rows: dict[str, list[str]], models: dict[str, dict[str, Any]], fps: float) -> list[str]:
    import textwrap

    by_second: dict[float, dict[str, str | None]] = {}
    for name, e in models.items():
        for a in e.get("answers", []):
            cell = by_second.setdefault(a["second"], {})
            if a["labelled"] is not None:
                cell["labelled"] = a["labelled"]
            if a["predicted"] is not None:
                cell[name] = a["predicted"]
    if not by_second:
        return ["  answers: none, labelled or predicted"]
    names = list(rows)
    table = [["second", *names]]
    for second in sorted(by_second):
        turn = round(second * fps)
        cells = []
        for name in names:
            text = by_second[second].get(name)
            if text is None:  # that side did not respond here: say what it did instead
                states = rows[name]
                state = states[turn] if turn < len(states) else ""
                text = f"({state.strip('</>').lower()})" if state else "-"
            cells.append(text)
        table.append([f"{second:g}", *cells])
    widths = [max(len(r[0]) for r in table)] + [
        min(ANSWER_WIDTH, max(len(r[k]) for r in table)) for k in range(1, len(names) + 1)
    ]
    out = ["  answers:"]
    for row in table:
        wrapped = [[row[0]]] + [textwrap.wrap(c, widths[k + 1]) or [""] for k, c in enumerate(row[1:])]
        for j in range(max(map(len, wrapped))):
            parts = [(w[j] if j < len(w) else "").ljust(widths[k]) for k, w in enumerate(wrapped)]
            out.append(("    " + "  ".join(parts)).rstrip())
    return out
