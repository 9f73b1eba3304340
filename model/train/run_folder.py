"""The run folder of a training run: its settings made ready (``prepare_config``: validated, paths
absolute, a resumed run's saved settings, a run stopped before its first checkpoint cleared), its
metrics file (``metrics.jsonl``: appended per step, cut back to the checkpoint on resume), and its guard
and lock (``hold_run_folder``).

The guard is the app's one output guard (``model.outputs``): ``--out`` must be a folder that can be
written, not an input of the run, and not a model or adapter folder this app's training did not make
(a downloaded adapter would have had its weights replaced and its metrics dropped). The lock
(``model.locks``, a ``flock`` on ``.train.lock`` in the folder, holding the pid) lets one training run
write a folder at a time: a second is refused at once, naming the first's process.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from model.train import checkpoint as ckpt
from model.train.config import TrainConfig

log = logging.getLogger(__name__)

CONFIG_FILE, METRICS_FILE, LOCK_FILE = "train_config.json", "metrics.jsonl", ".train.lock"

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


def _main_process() -> bool:
    """The process that writes the run folder: the only one, or rank 0 of an ``accelerate launch``."""
    return os.environ.get("RANK", "0") == "0"


def _ours(out: Path) -> bool:
    """Whether ``out`` holds the settings of a run of this app's training (its train_config.json)."""
    try:
        return isinstance(json.loads((out / CONFIG_FILE).read_text(encoding="utf-8")), dict)
    except (OSError, ValueError):
        return False


def check_out_folder(config: TrainConfig) -> Path:
    """The real ``--out`` folder, or ``TrainingError`` (one line: the folder and what to do) where the
    one output guard refuses it: a file, an input of the run (an annotation file, the base model folder),
    a place that cannot be written or a full disk; or a folder holding a model or adapter that this app's
    training did not make."""
    from model.outputs import OutputRefused, check_output, model_folder_of

    inputs = [d for d in config.data if Path(d).expanduser().is_file()]
    if config.model and Path(config.model).expanduser().is_dir():
        inputs.append(config.model)
    try:
        out = check_output(config.out, "--out", inputs, folder=True)
    except OutputRefused as e:
        raise TrainingError(str(e)) from None
    if model_folder_of(out / CONFIG_FILE) is not None and not _ours(out):
        found = sorted(p.name for p in out.iterdir() if p.name.endswith((".safetensors", "config.json")))
        raise TrainingError(
            f"--out {out} holds a model or adapter this app's training did not make ({', '.join(found[:4])}; no "
            f"{CONFIG_FILE}); choose another --out (nothing was overwritten)."
        )
    return out


@contextmanager
def hold_run_folder(config: TrainConfig) -> Iterator[Path]:
    """Check ``--out`` (``check_out_folder``) and hold its lock for the block (the main process only: the
    others of a data-parallel run write nothing there). ``TrainingError`` when another training run holds
    it. The lock goes when the block ends, on an error too, and with the process however it ends; the
    temporary folders a killed run left are removed once the lock is held."""
    from model.locks import LockHeld, hold_lock

    config.validate()
    out = check_out_folder(config)
    if not _main_process():
        yield out
        return
    with ExitStack() as held:
        try:
            if not out.exists():  # removed again at the end if nothing was written (unusable data, ...)
                out.mkdir(parents=True)
                held.callback(_remove_if_empty, out)
            held.enter_context(hold_lock(out / LOCK_FILE))
        except LockHeld as e:
            raise TrainingError(
                f"{out} is being written by another training run (pid {e.pid or 'unknown'}); wait for it to end, "
                "or choose another --out."
            ) from None
        except OSError as e:
            raise ckpt.write_failed(out, "the lock file", e) from None
        if ckpt.remove_partial(out):
            log.info("removed the partial checkpoint or adapter a stopped run left in %s", out)
        yield out


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # something was written: it stays
        pass


def _stopped_before_first_checkpoint(out: Path) -> bool:
    """Settings of ours, but no checkpoint and no weights: a run stopped or killed before it saved."""
    from model.outputs import model_folder_of

    return _ours(out) and ckpt.latest_checkpoint(out) is None and model_folder_of(out / CONFIG_FILE) is None


def _clear_unstarted(out: Path, settings: bool) -> None:
    """What a run stopped before its first checkpoint left that a new start must not read: its metrics, its
    best step and (``settings``) its settings; a new start writes its own."""
    if _main_process():  # the only writer (the other processes of a data-parallel run read the folder)
        for name in (METRICS_FILE, CONFIG_FILE) if settings else (METRICS_FILE,):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "best", ignore_errors=True)


def _load_saved(saved: Path) -> TrainConfig:
    try:
        return TrainConfig.load(saved)
    except (OSError, ValueError, TypeError) as e:
        raise TrainingError(f"--resume: {saved} cannot be read ({e}); start without --resume") from None


def _resumed(config: TrainConfig, out: Path) -> TrainConfig:
    """--resume: the saved settings with what may change taken from ``config``; a run stopped before its
    first checkpoint starts afresh with them (said in one line)."""
    saved = out / CONFIG_FILE
    latest = ckpt.latest_checkpoint(out)
    if not saved.is_file():
        if latest is not None:
            raise TrainingError(f"--resume: {out} has checkpoints but no {CONFIG_FILE} (its settings) to continue "
                                "with; start a new run with another --out")  # fmt: skip
        raise TrainingError(f"--resume: {out} has no checkpoint to continue from; start without --resume")
    if latest is None and not _stopped_before_first_checkpoint(out):
        what = "holds a finished adapter and no checkpoint" if _ours(out) else "has no checkpoint"
        raise TrainingError(f"--resume: {out} {what} to continue from; start a new run with another --out")
    old = _load_saved(saved)
    changed = {k: getattr(config, k) for k in RESUME_OVERRIDES if getattr(config, k) != getattr(TrainConfig(), k)}
    if config.data:
        changed["data"] = [_absolute(d) for d in config.data]
    if config.video_prefix:
        changed["video_prefix"] = _absolute(config.video_prefix)
    model = old.model
    if config.model and _gone_local_folder(model):  # the base folder moved: take the one given now
        model = _local_model(config.model)
    if latest is None:
        # Killed or stopped before its first checkpoint: nothing to continue, so the run starts again
        # (before, --resume said "no checkpoint" and a plain start "use --resume": a dead end).
        log.warning("--resume: %s was stopped before its first checkpoint; starting it afresh from its %s",
                    out, CONFIG_FILE)  # fmt: skip
        _clear_unstarted(out, settings=False)  # they are read (again) by the other processes of a parallel run
    return replace(old, **changed, model=model, out=str(out), resume=latest is not None)


def prepare_config(config: TrainConfig) -> TrainConfig:
    """Validate; paths made absolute (train_config.json then works from any folder); on --resume the
    run in ``--out`` continues with its saved settings but the few that only change memory use.

    The run that continues is the one in the ``--out`` given, wherever it was copied or moved: the
    saved ``out`` is never used. ``--data`` and ``--video-prefix`` given now win over the saved ones
    (the data moved with the run, or was given relative to another folder); the saved base model is
    kept unless it was a local folder that is no longer there. A run stopped before its first
    checkpoint starts afresh, with or without --resume."""
    config.validate()
    out = check_out_folder(config)
    if config.resume:
        return _resumed(config, out)
    if _stopped_before_first_checkpoint(out):
        log.warning("%s holds a run stopped before its first checkpoint; starting it afresh", out)
        _clear_unstarted(out, settings=True)
    elif (latest := ckpt.latest_checkpoint(out)) is not None:
        what = (
            "Continue it with --resume, or choose" if (out / CONFIG_FILE).is_file() else "Its settings are gone: choose"
        )
        raise TrainingError(
            f"{out} already holds a training run (last checkpoint: step {latest.step}). {what} another --out "
            "(nothing was overwritten)."
        )
    elif (out / CONFIG_FILE).is_file():
        what = "a finished adapter (no checkpoint left to continue from)" if _ours(out) else f"a {CONFIG_FILE}"
        raise TrainingError(f"{out} already holds {what}; choose another --out for a new run (nothing was "
                            "overwritten).")  # fmt: skip
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
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as e:
        raise ckpt.write_failed(path.parent, path.name, e) from None


def write_settings(out: Path, config: TrainConfig) -> None:
    """``train_config.json``: atomic and fsynced (file and folder, ``model.atomic``)."""
    from model.atomic import write_text_atomic

    try:
        write_text_atomic(out / CONFIG_FILE, config.to_json())
    except OSError as e:
        raise ckpt.write_failed(out, CONFIG_FILE, e) from None
