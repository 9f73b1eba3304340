"""OVO-Bench scoring, rule for rule as the benchmark's official scorer (shared/streamo/OVO_BENCH.md),
on a results file in its layout ``{"backward": [...], "realtime": [...], "forward": [...]}``.

- Backward / real-time item: 1 if its ``ground_truth`` letter occurs anywhere in ``response`` (a
  plain, case-sensitive substring test), 0 if the response is null or lacks it.
- REC probe: every run of digits in the response (``\\d+``), concatenated, equals ``str(count)``. A
  response that is a list of strings (the official Qwen2-VL runner stores ``batch_decode``'s list)
  is scored by the digits of all its strings, and named in ``list_responses``: the official script
  itself fails on it (``re.findall`` on a list). Backward/real-time and SSR/CRR lists score as the
  official script does (``in`` on a list: an element equal to the letter or word).
- SSR / CRR probe: 1 if the response is exactly "N" with type 0 or exactly "Y" with type 1; else 1
  if "No" (type 0) / "Yes" (type 1) occurs in it; a null response scores 0.
- A task's accuracy is the mean over its items (forward: over its probes); a category's score is
  the mean of its tasks' accuracies; the total is the mean of the three category scores (as the
  paper and OVO_BENCH.md define it), and only when all three are present (None otherwise: a mean
  over fewer is not the benchmark's total). ``task_mean``, the plain mean over the tasks, is what
  the version of the official ``score.py`` we could read (commit 19677d2) prints as "Total Avg.";
  both are kept, under the same condition.

A category is scored from the results file's section the item is in, as the official script does.
"""

from __future__ import annotations

import re
from typing import Any

from app.benchmark.ovo_data import CATEGORIES

CATEGORY_TITLES = {"backward": "Backward", "realtime": "Real-time", "forward": "Forward"}

# PROTOCOL.md section 6: the paper's OVO-Bench rows (percent).
PAPER_ROWS: tuple[tuple[str, dict[str, float]], ...] = (
    ("Streamo-7B, 1 fps", {"realtime": 65.98, "backward": 46.10, "forward": 54.77, "total": 55.61}),
    ("Streamo-7B, 2 fps", {"realtime": 67.44, "backward": 49.18, "forward": 56.96, "total": 57.86}),
    ("Streamo-3B", {"realtime": 61.51, "backward": 41.76, "forward": 53.72, "total": 52.33}),
)
_DIGITS = re.compile(r"\d+")


def score_choice(response: str | None, ground_truth: str) -> int:
    return 0 if response is None else int(ground_truth in response)


class ScoreError(ValueError):
    """A response the scorer cannot read; the message names the item."""


def score_count(response: str | list[str] | None, count: Any) -> int:
    if response is None:
        return 0
    if isinstance(response, list):  # the official Qwen2-VL runner's batch_decode output
        return int("".join(d for r in response for d in _DIGITS.findall(r)) == str(count))
    return int("".join(_DIGITS.findall(response)) == str(count))


def _check_response(response: Any, where: str) -> bool:
    """True for a list of strings (scored, and named); raises on what is neither that, a string nor null."""
    if response is None or isinstance(response, str):
        return False
    if isinstance(response, list) and all(isinstance(r, str) for r in response):
        return True
    raise ScoreError(f"{where}: the response must be a string, null or a list of strings, got {response!r:.80}")


def score_yes_no(response: str | None, kind: int) -> int:
    if (response == "N" and kind == 0) or (response == "Y" and kind == 1):
        return 1
    if response is None:
        return 0
    return int(("No" if kind == 0 else "Yes") in response)


def item_scores(results: dict[str, Any], lists: list[str] | None = None) -> dict[str, dict[str, list[int]]]:
    """Per section, per task (in order of first appearance), the 0/1 score of every item or probe.
    ``lists`` collects the names ("REC/3/1", "EPM/7") of the responses that were lists."""
    out: dict[str, dict[str, list[int]]] = {}
    lists = lists if lists is not None else []
    for category in CATEGORIES:
        per_task: dict[str, list[int]] = {}
        for item in results.get(category) or []:
            task = item["task"]
            name = f"{task}/{item.get('id')}"
            if category != "forward":
                if _check_response(item["response"], name):
                    lists.append(name)
            else:
                for j, p in enumerate(item["test_info"]):
                    if _check_response(p["response"], f"{name} test_info[{j}]"):
                        lists.append(f"{name}/{j}")
            if category != "forward":
                scores = [score_choice(item["response"], item["ground_truth"])]
            elif task == "REC":
                scores = [score_count(p["response"], p["count"]) for p in item["test_info"]]
            elif task in ("SSR", "CRR"):
                scores = [score_yes_no(p["response"], p["type"]) for p in item["test_info"]]
            else:
                raise ValueError(f"forward item of unknown task {task!r} (id {item.get('id')!r})")
            per_task.setdefault(task, []).extend(scores)
        out[category] = per_task
    return out


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def score_results(results: dict[str, Any]) -> dict[str, Any]:
    """``{"tasks": {task: percent}, "backward", "realtime", "forward", "total", "task_mean",
    "counts": {task: [correct, total]}}``; a category without items (and a total without any
    category) is None. Percentages are unrounded; the official script prints two decimals."""
    lists: list[str] = []
    per_category = item_scores(results, lists)
    tasks: dict[str, float] = {}
    counts: dict[str, list[int]] = {}
    report: dict[str, Any] = {"tasks": tasks}
    category_scores = []
    for category in CATEGORIES:
        accuracies = []
        for task, scores in per_category[category].items():
            if not scores:  # a forward entry with no probes: nothing to average
                continue
            acc = 100 * sum(scores) / len(scores)
            tasks[task] = acc
            counts[task] = [sum(scores), len(scores)]
            accuracies.append(acc)
        report[category] = _mean(accuracies)
        if report[category] is not None:
            category_scores.append(report[category])
    complete = len(category_scores) == len(CATEGORIES)  # a total over fewer categories is not the benchmark's
    report["total"] = _mean(category_scores) if complete else None
    report["task_mean"] = _mean(list(tasks.values())) if complete else None
    report["counts"] = counts
    report["list_responses"] = lists
    return report


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_scores(report: dict[str, Any]) -> str:
    """The per-task table, the category averages and the total, then the paper's rows beside ours."""
    lines = [f"{'task':<6}{'correct':>9}{'queries':>9}{'acc. %':>9}"]
    for task, acc in report["tasks"].items():
        correct, total = report["counts"][task]
        lines.append(f"{task:<6}{correct:>9}{total:>9}{acc:>9.2f}")
    lines.append("")
    for category in CATEGORIES:
        lines.append(f"{CATEGORY_TITLES[category] + ' avg.':<19}{_pct(report[category]):>9}")
    if report["total"] is None:
        missing = [CATEGORY_TITLES[c] for c in CATEGORIES if report[c] is None]
        lines.append(f"{'Total avg.':<19}{'-':>9}   (needs all three categories; no {', '.join(missing)} items)")
    else:
        lines.append(f"{'Total avg.':<19}{_pct(report['total']):>9}   (mean of the category averages)")
        lines.append(f"{'Mean of the tasks':<19}{_pct(report['task_mean']):>9}")
    lists = report.get("list_responses") or []
    if lists:
        named = ", ".join(lists[:5]) + (f" and {len(lists) - 5} more" if len(lists) > 5 else "")
        lines.append(f"{len(lists)} responses were lists of strings (the official Qwen2-VL runner's output): {named}. "
                     "Scored element by element as the official rules do; REC by the digits of all the strings "
                     "(the official script fails on a REC list).")  # fmt: skip
    lines.append("")
    lines.append(format_comparison(report))
    return "\n".join(lines)


def format_comparison(report: dict[str, Any]) -> str:
    """This run beside the paper's Streamo rows (PROTOCOL.md section 6), with our difference to each."""
    cols = ("realtime", "backward", "forward", "total")
    width = 17
    lines = [
        "OVO-Bench: this run and the paper's rows (percent; in brackets: this run minus the row)",
        f"{'':<19}" + "".join(f"{CATEGORY_TITLES.get(c, 'Overall'):>{width}}" for c in cols),
        f"{'this run':<19}" + "".join(f"{_pct(report[c]):>{width}}" for c in cols),
    ]
    for name, row in PAPER_ROWS:
        cells = [f"{row[c]:.2f}" + ("" if report[c] is None else f" ({report[c] - row[c]:+.2f})") for c in cols]
        lines.append(f"{name:<19}" + "".join(f"{cell:>{width}}" for cell in cells))
    scored = len(report["tasks"])
    if scored < 12:
        lines.append(f"Only {scored} of the 12 tasks were scored: these averages are not comparable with the paper's.")
    return "\n".join(lines)
