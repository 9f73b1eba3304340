"""Training and evaluation for the Training tab, each in a process of its own (never in the GUI
process): a crash, an out-of-memory error or a stuck driver there never takes the window down, and
the GPU memory is returned when the process ends. QtCore only, no widgets.

``TrainingJob`` wraps ``model.train.worker.start_training``: a QTimer drains the child's event queue
(never blocking the GUI) and turns the events into signals. ``stop()`` asks the trainer to save a
checkpoint and exit; resuming is a new job with ``resume=True`` (``TrainingJob.resuming``). A child
that dies without its last word (killed, a segfault, the power of the OOM killer) is reported as a
``crash`` with the last log lines received and the newest checkpoint that survived on disk.

``EvaluationJob`` runs the base model and base + adapter through the live engine on the run's
held-out clips (the trainer's own split) in a spawned process, as ``streamo-live evaluate --compare``
does, and delivers both reports.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import signal
import time
import traceback
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from app.exports import write_text_atomic

_log = logging.getLogger(__name__)

POLL_MS = 100
LOG_TAIL = 40  # lines kept for a failure report
CRASH_GRACE_POLLS = 3  # polls after the child died before its silence counts as a crash (queued events)
EXIT_GRACE_S = 30.0  # a child that sent its last event but has not exited by then is terminated

STATE_NAMES = {"</Silence>": "Silence", "</Standby>": "Standby", "</Response>": "Response"}

# What to do next, in the panel's words, per failure kind (the trainer's message says what happened).
ADVICE = {
    "data": "Check the clips and their annotations (each problem is listed in the log), then press Start again.",
    "config": "Change the setting named in the message, then press Start again.",
    "model": "Choose another base model, or check that its folder holds a complete checkpoint.",
    "training": "Read the message: it says what to change. Nothing was overwritten.",
}


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def latest_checkpoint_path(out: str | Path) -> str:
    """The newest complete checkpoint of a run's folder, "" when there is none."""
    from model.train import checkpoint as ckpt

    latest = ckpt.latest_checkpoint(Path(out))
    return str(latest.path) if latest is not None else ""


def _remove_partial_checkpoints(out: str | Path) -> list[str]:
    """Half-written checkpoint folders (``.step-N.part-PID``) of processes that no longer run."""
    import shutil

    import psutil

    from model.train.checkpoint import checkpoints_dir

    removed = []
    root = checkpoints_dir(Path(out))
    if not root.is_dir():
        return removed
    for folder in root.glob(".step-*.part-*"):
        pid = folder.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed


class _ChildJob(QObject):
    """A spawned child whose event queue a QTimer drains; the common part of both jobs."""

    def __init__(self, parent: QObject | None = None, poll_ms: int = POLL_MS) -> None:
        super().__init__(parent)
        self._process: Any = None
        self._events: Any = None
        self._terminal: str | None = None  # the last word: "done", "stopped", "failed"
        self._terminal_at = 0.0
        self._dead_polls = 0
        self._ended = False
        self._detached = False
        self.tail: deque[str] = deque(maxlen=LOG_TAIL)
        self._timer = QTimer(self)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self.poll)

    # -- state
    @property
    def process(self) -> Any:
        return self._process

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """True from start() until the child has exited and its outcome was reported."""
        return self._process is not None and not self._ended

    @property
    def outcome(self) -> str | None:
        return self._terminal

    def _begin(self, process: Any, events: Any) -> None:
        self._process, self._events = process, events
        self._timer.start()

    # -- polling
    def poll(self) -> None:
        """Drain the queue, then look at the child (called by the timer; tests may call it too)."""
        if self._process is None or self._ended:
            return
        for _ in range(500):  # a bounded batch per tick keeps the GUI responsive
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            except (EOFError, OSError, ValueError):  # a queue broken by a dying child
                break
            if not self._detached:
                self._handle(event)
        alive = self._process.is_alive()
        if self._terminal is not None:
            if not alive:
                self._end()
            elif time.monotonic() - self._terminal_at > EXIT_GRACE_S:
                _log.warning("the %s process did not exit after its last event; terminating it", self._kind())
                self._process.terminate()
            return
        if alive:
            self._dead_polls = 0
            return
        self._dead_polls += 1  # events it sent just before exiting may still be on their way
        if self._dead_polls >= CRASH_GRACE_POLLS:
            self._set_terminal("failed")
            if not self._detached:
                self._crashed(self._process.exitcode)
            self._end()

    def _set_terminal(self, outcome: str) -> None:
        self._terminal, self._terminal_at = outcome, time.monotonic()

    def _end(self) -> None:
        self._process.join(0)
        self._ended = True
        self._timer.stop()
        if not self._detached:
            self._on_end()

    def wait(self, timeout: float) -> bool:
        """Poll until the child has exited and its outcome was reported, or ``timeout`` seconds
        passed (blocks the caller: for closing the window). True when it ended."""
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            self.poll()
            if self.running:
                time.sleep(0.05)
        return not self.running

    def kill(self) -> None:
        """End the child at once (no checkpoint); reported as a crash by the next polls."""
        if self._process is not None and self._process.is_alive():
            self._process.kill()

    def detach(self) -> None:
        """Let the child run on after this program exits: no more signals, and the interpreter's exit
        no longer waits for it. The queue is still drained while this object lives."""
        self._detached = True
        if self._process is not None:
            children = getattr(mp.process, "_children", None)  # what multiprocessing joins at exit
            if isinstance(children, set):
                children.discard(self._process)

    # -- for subclasses
    def _kind(self) -> str:
        return "child"

    def _handle(self, event: dict[str, Any]) -> None:
        raise NotImplementedError

    def _crashed(self, exitcode: int | None) -> None:
        raise NotImplementedError

    def _on_end(self) -> None:
        pass


class TrainingJob(_ChildJob):
    """One training run in a spawned process. Construct with a ``TrainConfig``; ``start()``."""

    started = Signal(object)  # the trainer's "start" event (total_steps, start_step, clips, device, ...)
    progress = Signal(int, int, float)  # step, total steps, ETA in seconds (-1: not known yet)
    loss = Signal(int, float)  # step, training loss of that step
    evaluated = Signal(int, object)  # step, {"split", "state_accuracy": {state: acc|None}, "loss", ...}
    checkpoint = Signal(str)  # a checkpoint folder was written
    log = Signal(str)  # a line for the log view
    issue = Signal(str)  # a data problem (the sample was skipped)
    finished = Signal(str)  # the adapter folder
    stopped = Signal(str)  # the checkpoint saved on stop ("" if none)
    failed = Signal(str, str, str, object, str)  # kind, message, advice, log lines (list[str]), checkpoint ("" none)
    ended = Signal(str)  # the process has exited: "done" | "stopped" | "failed"

    def __init__(
        self, config: Any, parent: QObject | None = None, *, starter: Any = None, poll_ms: int = POLL_MS
    ) -> None:
        super().__init__(parent, poll_ms)
        self.config = config
        self._starter = starter
        self._stop_event: Any = None
        self.total_steps = 0
        self.start_step = 0
        self.last_step = 0
        self.last_checkpoint = ""
        self.adapter = ""
        self.done_event: dict[str, Any] = {}  # the trainer's "done" event (selected, early_stopped, metrics)
        self._last_step_line = ""
        self.failure: tuple[str, str, str, list[str], str] | None = None

    @property
    def out(self) -> Path:
        return Path(self.config.out)

    @classmethod
    def resuming(cls, config: Any, parent: QObject | None = None, **kwargs: Any) -> TrainingJob:
        """A job that continues ``config.out``'s run from its last checkpoint (the trainer keeps the
        run's saved settings but those that only change memory use: max turns, pixels, steps)."""
        return cls(replace(config, resume=True), parent, **kwargs)

    def start(self) -> None:
        """Spawn the trainer. ConfigError (a ValueError) for a bad setting, before any process."""
        if self._process is not None:
            raise RuntimeError("this job was started already; make a new one to train again")
        starter = self._starter
        if starter is None:
            from model.train.worker import start_training as starter
        process, events, stop = starter(self.config)
        self._stop_event = stop
        self._say(f"Training process started (pid {process.pid}).")
        self._begin(process, events)

    def stop(self) -> None:
        """Ask the trainer to finish its step, save a checkpoint and exit (``stopped`` follows). A
        detached run is no longer this job's to stop."""
        if self.running and self._stop_event is not None and self._terminal is None and not self._detached:
            self._stop_event.set()
            self._say("Stopping: finishing this step, then saving a checkpoint...")

    def _kind(self) -> str:
        return "training"

    def _say(self, line: str) -> None:
        self.tail.append(line)
        if not self._detached:
            self.log.emit(line)

    def _handle(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "start":
            self.total_steps = int(event["total_steps"])
            self.start_step = self.last_step = int(event["start_step"])
            self._say(
                f"Training {event['train_windows']} windows ({event['train_turns']} turns) from "
                f"{event['train_clips']} clips, {event['heldout_clips']} held out; steps {self.start_step + 1} to "
                f"{self.total_steps}, learning rate {event['lr']:.3g}, on {event['device']} ({event['precision']}), "
                f"{event['trainable_parameters']:,} trainable parameters"
            )
            self.started.emit(dict(event))
            self.progress.emit(self.start_step, self.total_steps, -1.0)
        elif kind == "step":
            step, total = int(event["step"]), int(event["total_steps"])
            self.last_step, self.total_steps = step, total
            self.progress.emit(step, total, float(event.get("eta_s", -1.0)))
            self.loss.emit(step, float(event["loss"]))
            line = f"step {step}/{total}  loss {event['loss']:.4f}  lr {event['lr']:.2e}"
            self._last_step_line = line  # a failure report ends with it even between the logged tenths
            if step % 10 == 0 or step == total or step == self.start_step + 1:
                self._say(line)
        elif kind == "eval":
            acc = event.get("state_accuracy") or {}
            parts = [f"{STATE_NAMES.get(s, s)} {v:.0%}" for s, v in acc.items() if v is not None]
            where = "held-out" if event.get("split") == "heldout" else "training-clip"
            loss = event.get("loss")
            self._say(
                f"step {event['step']}: {where} state accuracy {', '.join(parts) or 'n/a'}"
                + (f"; loss {loss:.4f}" if loss is not None else "")
            )
            self.evaluated.emit(int(event["step"]), dict(event))
        elif kind == "checkpoint":
            self.last_checkpoint = str(event["path"])
            self._say(f"checkpoint saved at step {event['step']}: {self.last_checkpoint}")
            self.checkpoint.emit(self.last_checkpoint)
        elif kind == "issue":
            self._say(f"warning: {event['message']}")
            self.issue.emit(str(event["message"]))
        elif kind == "log":
            self._say(str(event.get("message", "")))
        elif kind == "done":
            self._set_terminal("done")
            self.done_event = dict(event)
            self.adapter = str(event.get("adapter") or self.config.out)
            self._say(f"Done: {event['step']} steps; adapter written to {self.adapter}")
            self.finished.emit(self.adapter)
        elif kind == "stopped":
            self._set_terminal("stopped")
            path = str(event.get("checkpoint") or "") or latest_checkpoint_path(self.out)
            self.last_checkpoint = path or self.last_checkpoint
            self._say(f"Stopped at step {event['step']}/{event['total_steps']}; checkpoint {path or 'none'}")
            self.stopped.emit(path)
        elif kind == "error":
            self._set_terminal("failed")
            err_kind = str(event.get("kind") or "training")
            message = str(event.get("message") or "training failed")
            lines = list(self.tail)
            for line in event.get("log_tail") or []:
                if line not in lines:
                    lines.append(str(line))
            if event.get("traceback"):
                lines += str(event["traceback"]).rstrip().splitlines()[-12:]
            checkpoint = str(event.get("checkpoint") or "") or latest_checkpoint_path(self.out)
            self._fail(err_kind, message, self._advice(err_kind, checkpoint), lines, checkpoint)

    def _advice(self, kind: str, checkpoint: str) -> str:
        cfg = self.config
        if kind == "oom":
            then = "press Resume to continue from the kept checkpoint" if checkpoint else "press Start again"
            return (
                f"Out of memory. Lower 'Max turns' (now {cfg.max_turns}) in the advanced settings, then {then}; "
                f"or start again with a smaller LoRA rank (now {cfg.rank}). Closing other programs that use the "
                "GPU or memory also helps."
            )
        if kind == "crash":
            if checkpoint:
                return f"Press Resume to continue from the last checkpoint ({Path(checkpoint).name})."
            return "No checkpoint was written yet: press Start to begin again."
        return ADVICE.get(kind, ADVICE["training"])

    def _fail(self, kind: str, message: str, advice: str, lines: list[str], checkpoint: str) -> None:
        if self._last_step_line and self._last_step_line not in lines:
            lines.append(self._last_step_line)
        self.failure = (kind, message, advice, lines, checkpoint)
        self.last_checkpoint = checkpoint or self.last_checkpoint
        self._say(f"Failed ({kind}): {message}")
        self.failed.emit(kind, message, advice, lines, checkpoint)

    def _crashed(self, exitcode: int | None) -> None:
        try:
            _remove_partial_checkpoints(self.out)
        except Exception:  # noqa: BLE001 - tidying must never hide the report
            _log.exception("could not remove partial checkpoints in %s", self.out)
        checkpoint = latest_checkpoint_path(self.out)
        where = f" after step {self.last_step} of {self.total_steps}" if self.total_steps else " before training began"
        message = f"The training process ended unexpectedly ({describe_exit(exitcode)}){where}."
        if checkpoint:
            message += f" The last checkpoint survived: {checkpoint}"
        self._fail("crash", message, self._advice("crash", checkpoint), list(self.tail), checkpoint)

    def _on_end(self) -> None:
        self.ended.emit(self._terminal or "failed")


# ---------------------------------------------------------------------------------------------
# Evaluation: base model vs base + adapter on the run's held-out clips


def compare_on_heldout(
    adapter: str | Path,
    *,
    model: str | None = None,
    device: str | None = None,
    precision: str | None = None,
    max_answer_tokens: int = 64,
    progress: Any = None,
) -> dict[str, Any]:
    """``streamo-live evaluate --compare`` on the clips the run held out (its own split of its own
    data, from ``train_config.json``: ``model.train.data.choose_heldout``, as the trainer and the
    Training tab's preview; all of them when it held none out): the base model, then the base with the
    adapter, through the live engine (``model.train.evaluate.compare_models``). Returns ``{"base":
    report, "adapter": report, "cautions": [...], "heldout_warning": str | None, "split": "heldout" |
    "train", "clips": [names], "issues": [...], "model", "adapter_path"}``; each report's ``clips``
    entries carry the state strips and answers per clip."""
    from model.train.config import TrainConfig
    from model.train.data import choose_heldout, heldout_warning, load_clips
    from model.train.evaluate import compare_models
    from model.train.trainer import default_cache_dir

    adapter = Path(adapter)
    saved = adapter / "train_config.json"
    if not saved.is_file():
        raise FileNotFoundError(f"{adapter} has no train_config.json: it is not a folder this app trained into")
    cfg = TrainConfig.load(saved)
    source = model or cfg.model
    clips, issues = load_clips(cfg.data, cfg.video_prefix, cfg.fps, live_instructions=cfg.live_instructions,
                               skip_unannotated=cfg.skip_unannotated)  # fmt: skip
    warning: list[str | None] = [None]

    def select(usable: list[Any]) -> tuple[list[Any], str]:
        train, held = choose_heldout(usable, cfg)
        warning[0] = heldout_warning(len({c.video for c in held}), len({c.video for c in usable}))
        return (held, "heldout") if held else (train, "train")

    result = compare_models(source, adapter, clips, cache_dir=cfg.cache_dir or default_cache_dir(), fps=cfg.fps,
                            max_turns=cfg.max_turns, max_answer_tokens=max_answer_tokens,
                            precision=precision or cfg.precision, device=device or cfg.device,
                            min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels, issues=issues, select=select,
                            progress=progress)  # fmt: skip
    result["heldout_warning"] = warning[0]
    try:  # the adapter's card carries its evaluation (the model manager shows the card)
        from model.train.lora import card_with_evaluation

        card = adapter / "README.md"
        if card.is_file():
            write_text_atomic(card, card_with_evaluation(card.read_text(encoding="utf-8"), result))
    except OSError as e:
        _log.warning("could not add the evaluation to %s: %s", adapter / "README.md", e)
    return result


def run_comparison(spec: dict[str, Any], events: Any) -> None:
    """The evaluation child's entry point (module level, plain arguments: picklable for spawn)."""
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING)

    def progress(done: int, total: int, what: str) -> None:
        events.put({"event": "progress", "done": done, "total": total, "what": what})

    try:
        result = compare_on_heldout(progress=progress, **spec)
        events.put({"event": "done", "result": result})
    except BaseException as e:  # noqa: BLE001 - report anything, then let the process end
        from model.device import is_out_of_memory

        kind = "oom" if is_out_of_memory(e) else "error"
        events.put({"event": "error", "kind": kind, "message": f"{type(e).__name__}: {e}",
                    "traceback": traceback.format_exc()})  # fmt: skip


class EvaluationJob(_ChildJob):
    """Base vs base + adapter on the held-out clips, in a spawned process."""

    progress = Signal(int, int, str)  # done, total, what
    finished = Signal(object)  # compare_on_heldout's dict
    failed = Signal(str, object)  # user-facing message, log lines (list[str])
    ended = Signal(str)  # "done" | "failed"

    def __init__(
        self,
        adapter: str | Path,
        parent: QObject | None = None,
        *,
        model: str | None = None,
        device: str | None = None,
        precision: str | None = None,
        max_answer_tokens: int = 64,
        poll_ms: int = POLL_MS,
        context: str = "spawn",
    ) -> None:
        super().__init__(parent, poll_ms)
        self.adapter = str(adapter)
        self.spec = {"adapter": str(adapter), "model": model, "device": device, "precision": precision,
                     "max_answer_tokens": max_answer_tokens}  # fmt: skip
        self.context = context
        self.result: dict[str, Any] | None = None

    def start(self) -> None:
        if self._process is not None:
            raise RuntimeError("this evaluation was started already")
        ctx = mp.get_context(self.context)
        events = ctx.Queue()
        process = ctx.Process(target=run_comparison, args=(self.spec, events), name="streamo-evaluate")
        process.start()
        self._begin(process, events)

    def _kind(self) -> str:
        return "evaluation"

    def _handle(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "progress":
            self.tail.append(str(event["what"]))
            self.progress.emit(int(event["done"]), int(event["total"]), str(event["what"]))
        elif kind == "done":
            self._set_terminal("done")
            self.result = event["result"]
            self.finished.emit(self.result)
        elif kind == "error":
            self._set_terminal("failed")
            lines = list(self.tail) + str(event.get("traceback") or "").rstrip().splitlines()[-12:]
            message = f"Evaluation failed: {event['message']}"
            if event.get("kind") == "oom":
                message += ". Out of memory: close the live model or other programs using the GPU, then Evaluate again."
            self.failed.emit(message, lines)

    def _crashed(self, exitcode: int | None) -> None:
        self.failed.emit(
            f"The evaluation process ended unexpectedly ({describe_exit(exitcode)}). Press Evaluate to try again.",
            list(self.tail),
        )

    def _on_end(self) -> None:
        self.ended.emit(self._terminal or "failed")
