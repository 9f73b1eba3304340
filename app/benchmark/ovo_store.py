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

Several processes (``accelerate launch``, docs/benchmark.md): each process records into a part file
of its own beside the run file (``results/Streamo.RESULTS.run.part-1of2-<hex>.json``, written
atomically after every query, holding only what that process finished in that run), never into
RESULTS.json or the run file; after every process is done, the main one merges the parts into
the run file and RESULTS.json (the same files a single process writes) and deletes them. Results
are keyed by query, never by process: ``--resume`` reads the run file and every part (a run killed
before its merge leaves its parts), whatever the number of processes that wrote them.
"""

from __future__ import annotations

import copy
import glob
import json
from pathlib import Path
from typing import Any

from app.benchmark.ovo_data import CATEGORIES, CATEGORY_OF, Query, entry_key
from app.exports import write_text_atomic
from model import json_text

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


def part_paths(out: str | Path) -> list[Path]:
    """The part files of ``out``'s run on disk (oldest first): a multi-process run not yet merged."""
    run_path = outside(out, ".run.json")
    stem = run_path.name[: -len(".json")]
    return sorted(
        run_path.parent.glob(f"{glob.escape(stem)}.part-*.json"), key=lambda p: (p.stat().st_mtime_ns, p.name)
    )


class RunStore:
    """``part``: this process's tag (e.g. "1of2-3fa2c0de") when several processes share the run:
    what it records goes to its own part file only (``merge_parts`` makes the run's files)."""

    def __init__(
        self,
        out: str | Path,
        entries: list[dict[str, Any]],
        settings: dict[str, Any],
        resume: bool,
        part: str | None = None,
    ) -> None:
        self.out = Path(out)
        self.run_path = outside(self.out, ".run.json")
        self.part_path = outside(self.out, f".run.part-{part}.json") if part else None
        self.absorbed: list[Path] = []  # parts read into this store, deleted once the run file holds them
        self.mine: set[str] = set()  # the queries this store recorded (a part holds these only)
        self.runs_before = 0  # info["runs"] read from disk (a part holds only the runs after them)
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
        else:
            there = [p for p in (self.out, self.run_path, *part_paths(self.out)) if p.exists()]
            if there:
                raise StoreError(f"{there[0]} exists: add --resume to continue that run, or choose another --out")

    def _load(self) -> None:
        parts = part_paths(self.out)
        if not self.run_path.is_file() and not parts:
            raise StoreError(
                f"--resume: no {self.run_path} to continue from (it is written beside the folder of --out "
                f"{self.out}); "
                "run without --resume to start"
            )
        if self.run_path.is_file():
            self._absorb(self.run_path)
        for path in parts:  # a multi-process run killed before its merge: its parts hold what it finished
            self._absorb(path)
            self.absorbed.append(path)
        self.runs_before = len(self.info.get("runs", []))

    def _read(self, path: Path) -> dict[str, Any]:
        try:
            state = json_text.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise StoreError(f"--resume: {path} is unreadable ({e}); move it aside to run its queries again") from None
        if not isinstance(state, dict) or state.get("format") != RUN_FORMAT:
            raise StoreError(f"--resume: {path} is not a streamo-live OVO-Bench run file")
        before = state.get("settings", {})
        changed = [k for k in self.settings if before.get(k) != self.settings[k]]
        if changed:
            what = "; ".join(f"{k}: {before.get(k)!r} then, {self.settings[k]!r} now" for k in changed)
            raise StoreError(
                f"--resume: {path} was made with other settings ({what}). "
                "Resume with the same settings, or choose another --out"
            )
        return state

    def _absorb(self, path: Path) -> None:
        """Add a run file's or a part's queries and runs to this store. A query answered without an
        error keeps that answer (it is never run again, so no later file holds a second answer)."""
        state = self._read(path)
        errors = state.get("errors", {})
        seconds = state.get("seconds", {})
        details = state.get("queries", {})
        for key, response in state.get("responses", {}).items():
            if self.finished(key) and key in errors:
                continue
            self.responses[key] = response
            self.seconds[key] = seconds.get(key, 0.0)
            for have, given in ((self.errors, errors), (self.details, details)):
                if key in given:
                    have[key] = given[key]
                else:
                    have.pop(key, None)
        info = state.get("info", {})
        for k, v in info.items():
            if k != "runs":
                self.info.setdefault(k, v)
        self.info.setdefault("runs", []).extend(info.get("runs", []))

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
        self.mine.add(query.key)
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

    def _state(self, keys: set[str] | None = None) -> dict[str, Any]:
        """The run file's content; ``keys``: only those queries, and only the runs after the loaded ones (a part)."""

        def only(d: dict[str, Any]) -> dict[str, Any]:
            return d if keys is None else {k: v for k, v in d.items() if k in keys}

        info = self.info if keys is None else {**self.info, "runs": self.info.get("runs", [])[self.runs_before :]}
        return {
            "format": RUN_FORMAT,
            "settings": self.settings,
            "info": info,
            "responses": only(self.responses),
            "errors": only(self.errors),
            "seconds": only(self.seconds),
            "queries": only(self.details),
        }

    def save(self, results: bool = True) -> None:
        if self.part_path is not None:  # one of several processes: its own part, nothing else
            try:
                write_text_atomic(self.part_path, json.dumps(self._state(self.mine), indent=1, ensure_ascii=False))
            except OSError as e:
                raise StoreError(f"cannot write {self.part_path}: {e}") from e
            return
        try:
            if results or not self.out.exists():
                write_text_atomic(self.out, json.dumps(self.results(), indent=1, ensure_ascii=False))
            write_text_atomic(self.run_path, json.dumps(self._state(), indent=1, ensure_ascii=False))
        except OSError as e:
            raise StoreError(f"cannot write {self.out} or {self.run_path}: {e}") from e
        # The run file now holds every part read so far: they can go (a kill before this line leaves
        # them, and reading them again on --resume changes nothing).
        for path in self.absorbed:
            path.unlink(missing_ok=True)
        self.absorbed = []

    def merge_parts(self) -> None:
        """The main process, once every process is done: the other processes' parts of this run
        added to its own state, written as the run file and RESULTS.json (a single process's
        files), and the parts deleted."""
        own = self.part_path
        for path in part_paths(self.out):
            if path != own and path not in self.absorbed:
                self._absorb(path)
                self.absorbed.append(path)
        if own is not None and own.exists():
            self.absorbed.append(own)
        self.part_path = None
        self.save()
