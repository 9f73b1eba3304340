"""Reading and tidying a training run's folder (no Qt, no torch): what it holds (``run_state``), its
curves (``read_history`` from metrics.jsonl), its last evaluation (``evaluation.json``, written by the
Training tab after each evaluation), the next free adapter name, and the removal of a run stopped
before it trained a single step.

A run folder, as the trainer writes it: ``train_config.json`` (its settings), ``metrics.jsonl`` (one
record per step: step, loss, ...; at each held-out evaluation also ``heldout`` or ``train``:
{"state_accuracy": {state: acc|None}, "loss": float|None, ...}), ``checkpoints/step-NNNNNN/``, ``best/``
and, once finished, the adapter (``adapter_model.safetensors``) with its card ``README.md``.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model import json_text

CONFIG_FILE = "train_config.json"
METRICS_FILE = "metrics.jsonl"
EVALUATION_FILE = "evaluation.json"  # the Training tab's last base-vs-adapter comparison of this run
SPLITS = ("heldout", "train")


def run_state(out: Path) -> dict[str, Any]:
    """What an adapter folder holds: {"run": bool, "finished": bool, "checkpoint": path|"", "step": int,
    "total": int, "model": str}. Reads files only (no torch): fine on the GUI thread."""
    from model.train import checkpoint as ckpt

    out = Path(out)
    state: dict[str, Any] = {"run": False, "finished": False, "checkpoint": "", "step": 0, "total": 0, "model": ""}
    saved = out / CONFIG_FILE
    if not saved.is_file():
        return state
    # A folder with settings but no checkpoint and no adapter is a start stopped before its first
    # checkpoint: nothing to resume, and Start begins it afresh (model/train/run_folder.prepare_config).
    latest = ckpt.latest_checkpoint(out)
    state["run"] = latest is not None or (out / ckpt.ADAPTER_WEIGHTS).is_file()
    try:
        state["model"] = json_text.loads(saved.read_text(encoding="utf-8")).get("model", "")
    except (OSError, ValueError, AttributeError):
        pass
    if latest is not None:
        state["checkpoint"], state["step"] = str(latest.path), latest.step
        try:
            state["total"] = int(latest.state().get("total_steps", 0))
        except (OSError, ValueError):
            pass
    state["finished"] = (out / ckpt.ADAPTER_WEIGHTS).is_file() and (out / "README.md").is_file()
    return state


def is_taken(out: Path) -> bool:
    """A folder a new run cannot start in: it holds a run with a checkpoint or an adapter. Settings
    alone (a start stopped before its first checkpoint) do not count: Start begins that afresh."""
    return bool(run_state(Path(out))["run"])


_NUMBERED = re.compile(r"^(?P<base>.*\S)-(?P<n>\d{1,4})$")


def start_problem(out: Path, state: dict[str, Any], resume: bool, next_name: Callable[[], str]) -> str:
    """Why a run cannot start (``resume``: continue) in ``out`` holding ``state`` (``run_state``), with
    what to do; "" when it can. ``next_name`` gives the free name to offer instead."""
    if not resume and state["run"]:
        where = f" (last checkpoint at step {state['step']})" if state["checkpoint"] else ""
        return (
            f"The folder {out} already holds a training run{where}. Press Resume to continue it, or start a "
            f"new adapter as \u201c{next_name()}\u201d (nothing was overwritten)."
        )
    if resume and not state["checkpoint"]:
        return f"{out} has no checkpoint to continue from. Press Start to begin a new run."
    if resume and state["finished"]:
        return f"{out} holds a finished adapter: there is nothing to resume. Start a new one under another name."
    return ""


def next_free_name(root: Path, name: str) -> str:
    """``name`` when its folder under ``root`` is free, else the next free "NAME-2", "NAME-3", ...
    (a name that already ends in "-N" counts on from N)."""
    name = name.strip()
    if not name or not is_taken(Path(root) / name):
        return name
    m = _NUMBERED.match(name)
    base, n = (m.group("base"), int(m.group("n"))) if m else (name, 1)
    k = max(2, n + 1)
    while is_taken(Path(root) / f"{base}-{k}"):
        k += 1
    return f"{base}-{k}"


@dataclass
class History:
    """A run's curves: the training loss per step, the loss and per-class state accuracy on the
    evaluation split at each evaluation ("heldout", or "train" when nothing was held out)."""

    loss: list[tuple[int, float]] = field(default_factory=list)
    eval_loss: list[tuple[int, float]] = field(default_factory=list)
    accuracy: list[tuple[int, dict[str, float | None]]] = field(default_factory=list)
    split: str = "heldout"

    @property
    def last_step(self) -> int:
        return self.loss[-1][0] if self.loss else 0


def read_history(out: Path, last_step: int | None = None) -> History:
    """The curves in ``out/metrics.jsonl``, up to ``last_step`` (None: all). Torn or foreign lines are
    skipped; a step written twice (a run resumed from an earlier checkpoint) keeps its last record.
    Reads the whole file: for a long run, call it off the GUI thread."""
    history = History()
    path = Path(out) / METRICS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return history
    for line in text.splitlines():
        try:
            record = json_text.loads(line)
            step, loss = int(record["step"]), float(record["loss"])
        except (ValueError, KeyError, TypeError):
            continue
        if last_step is not None and step > last_step:
            continue
        if history.loss and step <= history.loss[-1][0]:  # trained again from an earlier checkpoint
            history.loss = [p for p in history.loss if p[0] < step]
            history.eval_loss = [p for p in history.eval_loss if p[0] < step]
            history.accuracy = [p for p in history.accuracy if p[0] < step]
        history.loss.append((step, loss))
        for split in SPLITS:
            metrics = record.get(split)
            if not isinstance(metrics, dict):
                continue
            history.split = split
            accuracy = metrics.get("state_accuracy")
            if isinstance(accuracy, dict):
                history.accuracy.append((step, dict(accuracy)))
            if isinstance(metrics.get("loss"), (int, float)):
                history.eval_loss.append((step, float(metrics["loss"])))
    return history


def save_evaluation(out: Path, result: dict[str, Any]) -> None:
    """Keep a run's last evaluation next to it (shown again when the run is chosen later)."""
    from model.atomic import write_text_atomic

    write_text_atomic(Path(out) / EVALUATION_FILE, json.dumps(result, indent=1, default=str))


def load_evaluation(out: Path) -> dict[str, Any] | None:
    """The run's last evaluation, None when it has none (or it cannot be read)."""
    try:
        result = json_text.loads((Path(out) / EVALUATION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (
        not isinstance(result, dict)
        or not isinstance(result.get("base"), dict)
        or not isinstance(result.get("adapter"), dict)
    ):
        return None
    return result


def discard_unstarted_run(out: Path) -> bool:
    """Remove what a fresh run left in ``out`` when it stopped before training a single step (its
    settings, an empty metrics file, a step-0 checkpoint): nothing there is worth resuming, and left
    behind it would hold the name. A folder with a trained checkpoint or an adapter is never touched.
    The folder itself goes too when nothing else is in it. True when something was removed."""
    from model.train import checkpoint as ckpt

    out = Path(out)
    if (out / ckpt.ADAPTER_WEIGHTS).is_file():
        return False
    found = ckpt.list_checkpoints(out)
    if any(c.step > 0 for c in found):
        return False
    removed = False
    for name in (CONFIG_FILE, METRICS_FILE, EVALUATION_FILE):
        path = out / name
        if path.is_file():
            path.unlink()
            removed = True
    for folder in (ckpt.checkpoints_dir(out), out / "best"):
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            removed = True
    try:
        out.rmdir()  # only when empty
    except OSError:
        pass
    return removed


def finished_text(done: dict[str, Any], adapter: str) -> str:
    """What a finished run did, in plain words, from the trainer's "done" event: where the adapter is,
    whether it stopped early, and which step it is (``selected``: the lowest held-out loss; absent:
    the last step)."""
    step = done.get("step")
    parts = [f"Adapter written to {adapter}."]
    early = done.get("early_stopped")
    if early:
        parts.append(f"Stopped early at step {early['step']}: the held-out loss had not gone lower since step "
                     f"{early['best_step']}.")  # fmt: skip
    selected = done.get("selected")
    if not selected:
        parts.append(f"Kept: the last step ({step})." if step else "Kept: the last step.")
    else:
        text = f"Kept: step {selected['step']}, the lowest held-out loss"
        if selected.get("heldout_loss") is not None and selected.get("last_heldout_loss") is not None:
            text += (f" ({selected['heldout_loss']:.3f}; step {selected.get('last_step', step)}: "
                     f"{selected['last_heldout_loss']:.3f})")  # fmt: skip
        parts.append(text + ".")
    return " ".join(parts)
