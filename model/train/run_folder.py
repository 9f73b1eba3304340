"""The run folder of a training run: its settings made ready (``prepare_config``: validated, paths
absolute, a resumed run's saved settings, a run stopped before its first checkpoint cleared) and its
metrics file (``metrics.jsonl``: appended per step, cut back to the checkpoint on resume)."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from model.train import checkpoint as ckpt
from model.train.config import TrainConfig

log = logging.getLogger(__name__)

# Settings a resumed run may change (they change memory use, not the adapter's shape or the data).
RESUME_OVERRIDES = ("steps", "epochs", "save_every", "eval_every", "max_turns", "max_pixels", "min_pixels",
                    "gradient_checkpointing", "precision", "device", "cache_dir", "command",
                    "early_stop", "save_minutes")  # fmt: skip


class TrainingError(Exception):
    """Training cannot start or continue; the message says what to do."""


def _absolute(path: str | None) -> str | None:
    return None if not path else str(Path(path).expanduser().resolve())


def _gone_local_folder(model: str) -> bool:
    """A saved base model that named a local folder (not a hub id "org/name", not "demo") that is gone."""
    if not model or model == "demo" or Path(model).expanduser().exists():
        return False
    return Path(model).is_absolute() or model.startswith((".", "~")) or model.count("/") != 1


def _local_model(model: str) -> str:
    """A local model folder as an absolute path (a hub id or "demo" as it is)."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


def prepare_config(config: TrainConfig) -> TrainConfig:
    """Validate; paths made absolute (train_config.json then works from any folder); on --resume the
    run in ``--out`` continues with its saved settings but the few that only change memory use.

    The run that continues is the one in the ``--out`` given, wherever it was copied or moved: the
    saved ``out`` is never used. ``--data`` and ``--video-prefix`` given now win over the saved ones
    (the data moved with the run, or was given relative to another folder); the saved base model is
    kept unless it was a local folder that is no longer there."""
    config.validate()
    out = Path(config.out).expanduser().resolve()
    saved = out / "train_config.json"
    if config.resume:
        if not saved.is_file() or ckpt.latest_checkpoint(out) is None:
            raise TrainingError(f"--resume: {out} has no checkpoint to continue from; start without --resume")
        old = TrainConfig.load(saved)
        changed = {k: getattr(config, k) for k in RESUME_OVERRIDES if getattr(config, k) != getattr(TrainConfig(), k)}
        if config.data:
            changed["data"] = [_absolute(d) for d in config.data]
        if config.video_prefix:
            changed["video_prefix"] = _absolute(config.video_prefix)
        model = old.model
        if config.model and _gone_local_folder(model):  # the base folder moved: take the one given now
            model = _local_model(config.model)
        return replace(old, **changed, model=model, out=str(out), resume=True)
    if ckpt.latest_checkpoint(out) is None and not (out / ckpt.ADAPTER_WEIGHTS).is_file() and saved.is_file():
        # A run stopped or killed before its first checkpoint: nothing to continue, so it starts afresh
        # (before, Start said "use --resume" and --resume said "no checkpoint": a dead end).
        log.warning("%s holds a run stopped before its first checkpoint; starting it afresh", out)
        for name in ("train_config.json", "metrics.jsonl"):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "best", ignore_errors=True)
    if saved.is_file() or ckpt.latest_checkpoint(out) is not None:
        raise TrainingError(
            f"{out} already holds a training run. Continue it with --resume, or choose another --out "
            "(nothing was overwritten)."
        )
    return replace(
        config,
        out=str(out),
        data=[_absolute(d) for d in config.data],
        video_prefix=_absolute(config.video_prefix),
        cache_dir=_absolute(config.cache_dir),
        model=_local_model(config.model),
    )


def _truncate_metrics(path: Path, last_step: int) -> None:
    """On resume: forget records of steps after the checkpoint (they are trained again)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= last_step:
                keep.append(line)
        except json.JSONDecodeError:
            continue  # a torn last line
    path.write_text("".join(k + "\n" for k in keep), encoding="utf-8")


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
