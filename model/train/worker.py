"""Training in a process of its own, for the app: a crash, an out-of-memory error or a stuck
driver there never takes the window down, and the GPU memory is returned when it ends.

``start_training(config)`` spawns ``run_training(config, events, stop)``; the child sends the
trainer's events (dicts) over ``events`` and ends with exactly one of ``done``, ``stopped`` or
``error`` (kind ``oom``, ``data``, ``config``, ``model``, ``training`` or ``crash``, with the last log lines for a crash).
Setting ``stop`` asks for a checkpoint and a clean exit at the next step.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import traceback
from collections import deque
from dataclasses import asdict
from typing import Any

from model.train.config import TrainConfig

LOG_LINES = 40  # log lines kept for a crash report


class _QueueLog(logging.Handler):
    """Log records as ``log`` events, and the last few kept for a crash report."""

    def __init__(self, events: Any) -> None:
        super().__init__(logging.INFO)
        self.events = events
        self.tail: deque[str] = deque(maxlen=LOG_LINES)

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        self.tail.append(line)
        try:
            self.events.put({"event": "log", "level": record.levelname, "message": line})
        except Exception:  # noqa: BLE001 - a closed queue must not turn logging into a crash
            pass


def run_training(config: dict[str, Any], events: Any, stop: Any) -> None:
    """The child process's entry point (picklable: a module-level function of plain arguments)."""
    from model.errors import ModelLoadError
    from model.train.config import ConfigError
    from model.train.data import DataError
    from model.train.trainer import OutOfMemory, TrainingError, train

    handler = _QueueLog(events)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        result = train(TrainConfig.from_dict(config), on_event=events.put, stop=stop)
        if result.status == "stopped":
            return  # the trainer sent "stopped"
    except OutOfMemory:
        return  # the trainer sent the "error" event with its advice
    except (ConfigError, DataError, TrainingError, ModelLoadError) as e:
        kinds = {ConfigError: "config", DataError: "data", ModelLoadError: "model"}
        kind = next((k for cls, k in kinds.items() if isinstance(e, cls)), "training")
        events.put({"event": "error", "kind": kind, "message": str(e), "checkpoint": None})
    except BaseException as e:  # noqa: BLE001 - report anything, then let the process end
        events.put(
            {
                "event": "error",
                "kind": "crash",
                "message": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(),
                "log_tail": list(handler.tail),
                "checkpoint": None,
            }
        )
    finally:
        root.removeHandler(handler)
        parent = mp.parent_process()
        if parent is not None and not parent.is_alive():
            # The app closed while training went on in the background: nobody reads the events, and
            # exiting must not wait to flush them into a full pipe (the adapter is already written).
            events.cancel_join_thread()


def start_training(config: TrainConfig, context: str = "spawn") -> tuple[mp.Process, Any, Any]:
    """Start training in a new process: (process, event queue, stop event). ``spawn`` gives the
    child a fresh interpreter (no inherited Qt or CUDA state)."""
    config.validate()
    ctx = mp.get_context(context)
    events, stop = ctx.Queue(), ctx.Event()
    process = ctx.Process(target=run_training, args=(asdict(config), events, stop), name="streamo-train", daemon=False)
    process.start()
    return process, events, stop
