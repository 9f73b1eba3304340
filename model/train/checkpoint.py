"""Training checkpoints: ``<out>/checkpoints/step-000123/`` holding the adapter weights, the
optimiser and scheduler state, the RNG state and the step, written to a temporary folder and
renamed into place, so a crash or Ctrl-C mid-write never leaves a broken checkpoint. Every file and
folder is fsynced before and after the rename (durable against power loss, not only a kill), and so
is the final adapter (``final_folder``).

A write that fails (a full disk: ``ENOSPC``, or any ``OSError``) removes what it had written, keeps
the last good checkpoint and ends the run with a one-line ``TrainingError`` naming the folder and
what to do (``write_failed``), never a torch traceback that leaves the partial folder filling the disk."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.atomic import _fsync_file, _fsync_folder  # the one fsync rule (model/atomic.py)

if TYPE_CHECKING:  # listing checkpoints (the Training tab, on the GUI thread) needs no torch
    import torch

log = logging.getLogger(__name__)

_NAME = re.compile(r"^step-(\d+)$")
STATE_FILE = "trainer_state.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int

    def state(self) -> dict[str, Any]:
        return json.loads((self.path / STATE_FILE).read_text(encoding="utf-8"))


def checkpoints_dir(out: Path) -> Path:
    return Path(out) / "checkpoints"


def list_checkpoints(out: Path) -> list[Checkpoint]:
    """Complete checkpoints, oldest first (a folder without its state file is not complete)."""
    root = checkpoints_dir(out)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _NAME.match(p.name)
        if m and (p / STATE_FILE).is_file() and (p / ADAPTER_WEIGHTS).is_file():
            found.append(Checkpoint(p, int(m.group(1))))
    return sorted(found, key=lambda c: c.step)


def latest_checkpoint(out: Path) -> Checkpoint | None:
    found = list_checkpoints(out)
    return found[-1] if found else None


def save_checkpoint(
    out: Path,
    step: int,
    adapter_state: dict[str, torch.Tensor],
    adapter_config: Any,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any,
    state: dict[str, Any],
    keep: int,
) -> Checkpoint:
    """Write one checkpoint and prune all but the newest ``keep``. ``TrainingError`` when it cannot be
    written: the partial folder is removed, the older checkpoints stay."""
    import torch
    from safetensors.torch import save_file

    root = checkpoints_dir(out)
    final = root / f"step-{step:06d}"
    tmp = root / f".step-{step:06d}.part-{os.getpid()}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in adapter_state.items()}, str(tmp / ADAPTER_WEIGHTS))
        adapter_config.save_pretrained(str(tmp))
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        if scheduler is not None:
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save({"torch": torch.get_rng_state()}, tmp / "rng.pt")
        (tmp / STATE_FILE).write_text(json.dumps({**state, "step": step}, indent=2), encoding="utf-8")
        _fsync_tree(tmp)
        if final.exists():  # a re-save of the same step (Ctrl-C right after a scheduled save)
            shutil.rmtree(final)
        tmp.rename(final)
        _fsync_folder(root)
        _fsync_folder(root.parent)  # a first checkpoint made the folder itself
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_failed(out, f"the checkpoint of step {step}", e) from None
    for old in list_checkpoints(out)[:-keep]:
        shutil.rmtree(old.path, ignore_errors=True)
    return Checkpoint(final, step)


def _fsync_tree(folder: Path) -> None:
    """Every file in ``folder`` (one level) and the folder itself on disk."""
    for p in folder.iterdir():
        if p.is_file():
            _fsync_file(p)
    _fsync_folder(folder)


def write_failed(out: Path, what: str, error: OSError) -> Exception:
    """The one-line ``TrainingError`` for a write into the run folder ``out`` that failed."""
    from model.train.run_folder import TrainingError  # run_folder imports this module

    reason = os.strerror(error.errno) if error.errno else str(error)
    kept = latest_checkpoint(out)
    keep = f"the last good checkpoint is kept ({kept.path})" if kept else "no checkpoint was written yet"
    return TrainingError(
        f"could not write {what} in {out} ({reason}); {keep}. Free some space on that disk and continue with "
        "--resume, or choose another --out"
    )


def save_best(out: Path, folder: Path, adapter_state: dict[str, torch.Tensor], record: dict[str, Any]) -> None:
    """The best held-out step's adapter state and its record (``best.json``) in ``folder``, each atomic and
    fsynced (``model.atomic``); ``write_failed``'s error when they cannot be written."""
    from safetensors.torch import save_file

    from model.atomic import atomic_path, write_text_atomic

    try:
        with atomic_path(folder / ADAPTER_WEIGHTS) as tmp:
            save_file({k: v.detach().contiguous().cpu() for k, v in adapter_state.items()}, str(tmp))
        write_text_atomic(folder / "best.json", json.dumps(record))
    except OSError as e:
        raise write_failed(out, "the best step's adapter", e) from None


def remove_partial(out: Path) -> int:
    """Remove the temporary checkpoint and final folders a killed run left in ``out`` (call it only while
    holding the run folder's lock: then no writer is using them). Returns how many went."""
    found = [*checkpoints_dir(out).glob(".step-*.part-*"), *Path(out).glob(".final.part-*")]
    for p in found:
        shutil.rmtree(p, ignore_errors=True)
    return len(found)


@contextmanager
def final_folder(out: Path) -> Iterator[Path]:
    """A temporary folder to write the final adapter (or model) into; when the block ends its files are
    fsynced and moved to the top of ``out`` one at a time, each atomically, the weights last (a complete
    config never points at missing weights of a first save), and ``out`` is fsynced. A failing write
    removes the temporary folder and raises ``write_failed``'s error; what was at the top stays."""
    tmp = Path(out) / f".final.part-{os.getpid()}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        yield tmp
        _fsync_tree(tmp)
        names = sorted((p.name for p in tmp.iterdir()), key=lambda n: n.endswith(".safetensors"))
        for name in names:
            os.replace(tmp / name, Path(out) / name)
        tmp.rmdir()
        _fsync_folder(Path(out))
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_failed(Path(out), "the final adapter", e) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_adapter_state(checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(checkpoint.path / ADAPTER_WEIGHTS))


def restore_training_state(checkpoint: Checkpoint, optimizer: Any, scheduler: Any) -> bool:
    """Optimiser, scheduler and RNG from a checkpoint; False where the optimiser state is missing
    (a checkpoint from a sharded run), in which case the optimiser starts afresh."""
    import torch

    opt_file, sched_file = checkpoint.path / "optimizer.pt", checkpoint.path / "scheduler.pt"
    complete = opt_file.is_file() and sched_file.is_file()
    if complete:
        optimizer.load_state_dict(torch.load(opt_file, map_location="cpu", weights_only=True))
        scheduler.load_state_dict(torch.load(sched_file, map_location="cpu", weights_only=True))
    rng = checkpoint.path / "rng.pt"
    if rng.is_file():
        torch.set_rng_state(torch.load(rng, map_location="cpu", weights_only=True)["torch"])
    return complete
