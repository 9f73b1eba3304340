"""Training checkpoints: ``<out>/checkpoints/step-000123/`` holding the adapter weights, the
optimiser and scheduler state, the RNG state and the step, written to a temporary folder and
renamed into place, so a crash or Ctrl-C mid-write never leaves a broken checkpoint."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    """Write one checkpoint and prune all but the newest ``keep``."""
    import torch
    from safetensors.torch import save_file

    root = checkpoints_dir(out)
    final = root / f"step-{step:06d}"
    tmp = root / f".step-{step:06d}.part-{os.getpid()}"
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
    if final.exists():  # a re-save of the same step (Ctrl-C right after a scheduled save)
        shutil.rmtree(final)
    tmp.rename(final)
    for old in list_checkpoints(out)[:-keep]:
        shutil.rmtree(old.path, ignore_errors=True)
    return Checkpoint(final, step)


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
