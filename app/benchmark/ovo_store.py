"""Where an OVO-Bench run keeps what it has done: RESULTS.json (the benchmark's own layout, what its
official scorer reads) and the run file (the run's settings, every finished query's response with
its turn, delay and the window it saw, per-query errors and timings: what ``--resume`` continues
from). The run file and the scores live OUTSIDE the results folder, beside it
(``results/Streamo/RESULTS.json`` -> ``results/Streamo.RESULTS.run.json`` and
``results/Streamo.RESULTS.scores.json``): the official ``score.py`` loads every file in a model's
results folder as a results file, so the folder must hold results files only.

Both files are rewritten atomically (a temporary file renamed over the old one): the run file after
every finished query, RESULTS.json whenever an item completes, so a run killed at any moment leaves
the last finished query on disk and never a half-written file. RESULTS.json holds only complete items: a backward/real-time query once answered,
a forward entry once every probe of it is; the probes of a forward entry still in progress live
only in the run file, so the official scorer can read RESULTS.json at any time.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from app.benchmark.ovo_data import CATEGORIES, CATEGORY_OF, Query, entry_key
from app.exports import write_text_atomic

RUN_FORMAT = "streamo-live ovo-bench run 1"


class StoreError(ValueError):
    """The output cannot be written or resumed; the message says which file and what to do."""


def outside(out: str | Path, suffix: str) -> Path:
    """DIR/RESULTS.json -> DIR/../DIR.RESULTS<suffix> (e.g. ``.scores.json``): beside the results
    folder, not in it; a name without .json keeps it whole."""
    out = Path(out).absolute()
    folder = out.parent
    if folder.parent == folder:
        raise StoreError(f"{out}: put the results file in a folder of its own (e.g. results/mymodel/{out.name})")
    stem = out.name[:-5] if out.name.endswith(".json") else out.name
    return folder.parent / f"{folder.name}.{stem}{suffix}"


class RunStore:
    def __init__(self, out: str | Path, entries: list[dict[str, Any]], settings: dict[str, Any], resume: bool) -> None:
        self.out = Path(out)
        self.run_path = outside(self.out, ".run.json")
        self.scores_path = outside(self.out, ".scores.json")
        self.entries = entries
        self.settings = dict(settings)
        self.responses: dict[str, str | None] = {}
        self.errors: dict[str, str] = {}
        self.seconds: dict[str, float] = {}
        self.details: dict[str, dict[str, Any]] = {}  # per query: turn, answered_at_s, delay_s, context
        self.info: dict[str, Any] = {}  # run facts to keep (device, precision, pass timings)
        if self.out.is_dir():
            raise StoreError(f"--out {self.out} is a folder; give a file name such as results.json")
        if resume:
            self._load()
        elif self.out.exists() or self.run_path.exists():
            raise StoreError(
                f"{self.out if self.out.exists() else self.run_path} exists: add --resume to continue that run, "
                "or choose another --out"
            )

    def _load(self) -> None:
        if not self.run_path.is_file():
            raise StoreError(
                f"--resume: no {self.run_path} to continue from (it is written beside the folder of --out "
                f"{self.out}); "
                "run without --resume to start"
            )
        try:
            state = json.loads(self.run_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise StoreError(f"--resume: {self.run_path} is unreadable ({e})") from None
        if not isinstance(state, dict) or state.get("format") != RUN_FORMAT:
            raise StoreError(f"--resume: {self.run_path} is not a streamo-live OVO-Bench run file")
        before = state.get("settings", {})
        changed = [k for k in self.settings if before.get(k) != self.settings[k]]
        if changed:
            what = "; ".join(f"{k}: {before.get(k)!r} then, {self.settings[k]!r} now" for k in changed)
            raise StoreError(
                f"--resume: {self.run_path} was made with other settings ({what}). "
                "Resume with the same settings, or choose another --out"
            )
        self.responses = dict(state.get("responses", {}))
        self.errors = dict(state.get("errors", {}))
        self.seconds = dict(state.get("seconds", {}))
        self.details = dict(state.get("queries", {}))
        self.info = dict(state.get("info", {}))

    # -- what is done
    def finished(self, key: str) -> bool:
        """Answered without an error (a query that failed is run again on --resume)."""
        return key in self.responses and key not in self.errors

    def record(
        self,
        query: Query,
        response: str | None,
        seconds: float,
        error: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self.responses[query.key] = response
        self.seconds[query.key] = round(seconds, 4)
        if detail is None:
            self.details.pop(query.key, None)
        else:
            self.details[query.key] = {"time_s": query.time, **detail}
        if error is None:
            self.errors.pop(query.key, None)
        else:
            self.errors[query.key] = error
        # RESULTS.json changes only when an item completes: a forward probe that leaves its entry
        # unfinished changes the run file alone.
        entry = self.entries[query.index]
        complete = query.probe is None or all(
            f"{query.entry}/{j}" in self.responses for j in range(len(entry["test_info"]))
        )
        self.save(results=complete)

    # -- the files
    def results(self) -> dict[str, list[dict[str, Any]]]:
        """The OVO-Bench layout over every complete item, in annotation order."""
        out: dict[str, list[dict[str, Any]]] = {c: [] for c in CATEGORIES}
        for entry in self.entries:
            category = CATEGORY_OF[entry["task"]]
            key = entry_key(entry["task"], entry["id"])
            if category != "forward":
                if key in self.responses:
                    out[category].append(
                        {
                            "id": entry["id"],
                            "video": entry["video"],
                            "task": entry["task"],
                            "question": entry["question"],
                            "response": self.responses[key],
                            "ground_truth": chr(65 + entry["gt"]),
                        }
                    )
                continue
            keys = [f"{key}/{j}" for j in range(len(entry["test_info"]))]
            if all(k in self.responses for k in keys):
                item = copy.deepcopy(entry)
                for probe, k in zip(item["test_info"], keys, strict=True):
                    probe["response"] = self.responses[k]
                out["forward"].append(item)
        return out

    def save(self, results: bool = True) -> None:
        state = {
            "format": RUN_FORMAT,
            "settings": self.settings,
            "info": self.info,
            "responses": self.responses,
            "errors": self.errors,
            "seconds": self.seconds,
            "queries": self.details,
        }
        try:
            if results or not self.out.exists():
                write_text_atomic(self.out, json.dumps(self.results(), indent=1, ensure_ascii=False))
            write_text_atomic(self.run_path, json.dumps(state, indent=1, ensure_ascii=False))
        except OSError as e:
            raise StoreError(f"cannot write {self.out} or {self.run_path}: {e}") from e
