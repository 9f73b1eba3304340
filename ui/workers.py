"""The engine worker and the dataclasses the workers send to the GUI.

:class:`EngineWorker` lives on the engine thread and is the only code that touches torch and the
model: it loads the model, steps the engine on each sampled frame (taken from the
``ui.capture.FrameMailbox``), streams tokens and appends every step to the session log. It is a
QObject without widget code, moved to its QThread by ``ui.controller``; it receives option
dataclasses and never reads settings.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

from app.session import SessionLog, StepRecord
from app.settings import LiveOptions, ModelOptions, engine_options
from ui.capture import FrameMailbox

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# What crosses the threads


@dataclass(frozen=True)
class LoadProgress:
    stage: str  # what is happening, for the status bar
    done: int = 0  # bytes while downloading (steps with unit "steps"); 0/0 shows a busy indicator
    total: int = 0
    unit: str = "bytes"  # "bytes" | "steps"


@dataclass(frozen=True)
class ModelInfo:
    options: ModelOptions
    device: str  # "cpu", "cuda:0 (NVIDIA H100)"
    precision: str
    kernel_path: str
    is_demo: bool
    warnings: tuple[str, ...]
    load_seconds: float
    adapter: str = ""  # the adapter folder in use ("" for none); the demo's shapes adapter included


@dataclass(frozen=True)
class TokenChunk:
    t: float  # stream second of the step that is answering
    text: str  # the new piece


@dataclass(frozen=True)
class StepReport:
    record: StepRecord  # what the session log got
    timings: dict[str, float]  # ms: vision, prefill, decision, decode, rebuild, total
    context_turns: int
    context_tokens: int
    memory: str  # "RSS 1.2 GB" or "GPU 5.1 / 80.0 GB"
    kernel_path: str


@dataclass(frozen=True)
class WorkerError:
    where: str  # "engine" | "capture" | "oom"
    message: str  # user-facing: what failed and what to do
    fatal: bool  # True: the run stopped


@dataclass(frozen=True)
class RunRequest:
    live: LiveOptions
    log: SessionLog | None  # thread-safe; the engine thread appends steps


# ---------------------------------------------------------------------------------------------
# Engine


def _describe_device(device: Any) -> str:
    import torch

    if device.type == "cuda" and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def _memory_text(device: Any) -> str:
    import torch

    if device.type == "cuda" and torch.cuda.is_available():
        used = torch.cuda.memory_allocated(device) / 1024**3
        total = torch.cuda.get_device_properties(device).total_memory / 1024**3
        return f"GPU {used:.1f} / {total:.0f} GB"
    import psutil

    return f"RSS {psutil.Process().memory_info().rss / 1024**3:.2f} GB"


def _default_engine_factory(loaded: Any, options: Any) -> Any:
    from model.engine import StreamEngine

    return StreamEngine(loaded, options)


def _default_loader(options: ModelOptions, progress: Callable[[int, int, str], None]) -> Any:
    from model.loading import load_model

    return load_model(
        options.source,
        precision=options.precision,
        device=options.device,
        adapter=options.adapter or None,
        kernels=options.kernels,
        progress=progress,
    )


class EngineWorker(QObject):
    """Owns the model. Every slot runs on the engine thread, one at a time, in arrival order."""

    load_progress = Signal(object)  # LoadProgress
    model_loaded = Signal(object)  # ModelInfo
    load_failed = Signal(str)  # user-facing message
    token_streamed = Signal(object)  # TokenChunk
    step_finished = Signal(object)  # StepReport
    error = Signal(object)  # WorkerError
    run_finished = Signal()  # the run's log is closed
    pause_applied = Signal(bool)  # the engine has taken the pause / resume (no step after a True)

    def __init__(
        self,
        mailbox: FrameMailbox,
        loader: Callable[[ModelOptions, Callable[[int, int, str], None]], Any] = _default_loader,
        engine_factory: Callable[[Any, Any], Any] = _default_engine_factory,
    ) -> None:
        super().__init__()
        self._mailbox = mailbox
        self._loader = loader
        self._engine_factory = engine_factory
        self._loaded: Any = None
        self._engine: Any = None
        self._log: SessionLog | None = None
        self._paused = False
        self._pending_questions: list[str] = []
        self.cancel_load = threading.Event()  # set from the GUI thread when the app closes

    # -- model
    @Slot(object)
    def on_load_requested(self, options: ModelOptions) -> None:
        # Python's cyclic GC runs on whichever thread allocates and holds the GIL throughout: a full
        # pass over torch's and transformers' ~400k objects takes ~0.3 s, a frozen GUI. No GC while
        # loading, then freeze what was loaded (it lives as long as the process) so later passes
        # only scan new objects.
        gc_enabled = gc.isenabled()
        gc.disable()
        try:
            self._load(options)
        finally:
            gc.freeze()
            if gc_enabled:
                gc.enable()

    def _load(self, options: ModelOptions) -> None:
        self._end_run()
        self._loaded = None
        started = time.perf_counter()
        self.load_progress.emit(LoadProgress("Starting torch"))
        try:
            import torch

            from model.errors import ModelLoadError

            oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
        except Exception as e:  # noqa: BLE001 - a broken install must still say so in the window
            self.load_failed.emit(f"Could not start torch: {e}")
            return
        self.load_progress.emit(LoadProgress(f"Loading {options.label()}"))

        def progress(done: int, total: int, filename: str) -> None:
            self.load_progress.emit(LoadProgress(f"Downloading {filename}", done, total))

        def training(done: int, total: int, what: str) -> None:
            self.load_progress.emit(LoadProgress(what, done, total, unit="steps"))

        try:
            from model.train.demo import demo_adapter_for

            adapter = demo_adapter_for(options.source, options.adapter or None, training, self.cancel_load)
            loaded = self._loader(replace(options, adapter=str(adapter) if adapter else ""), progress)
        except ModelLoadError as e:
            self.load_failed.emit(str(e))
            return
        except oom as e:
            torch.cuda.empty_cache()
            self.load_failed.emit(
                f"Out of GPU memory loading {options.source} ({e}). Choose 4-bit precision or a smaller model "
                "in the model manager, or close other programs using the GPU."
            )
            return
        except Exception as e:  # noqa: BLE001 - anything else from transformers or the hub
            log.exception("model load failed")
            self.load_failed.emit(f"Could not load {options.source}: {type(e).__name__}: {e}")
            return
        self._loaded = loaded
        self.model_loaded.emit(
            ModelInfo(
                options=options,
                device=_describe_device(loaded.device),
                precision=loaded.precision,
                kernel_path=loaded.kernel_path,
                is_demo=bool(loaded.is_demo),
                warnings=tuple(loaded.warnings),
                load_seconds=time.perf_counter() - started,
                adapter=str(loaded.adapter) if getattr(loaded, "adapter", None) else "",
            )
        )

    # -- runs
    @Slot(object)
    def on_run_started(self, request: RunRequest) -> None:
        self._end_run()
        if self._loaded is None:
            if request.log is not None:
                request.log.close()
            self.error.emit(WorkerError("engine", "No model is loaded yet: wait for it or choose one in Model.", True))
            self.run_finished.emit()
            return
        try:
            self._engine = self._engine_factory(self._loaded, engine_options(request.live))
        except Exception as e:  # noqa: BLE001
            log.exception("engine creation failed")
            self.error.emit(WorkerError("engine", f"Could not start the engine: {type(e).__name__}: {e}", True))
            if request.log is not None:
                request.log.close()
            self.run_finished.emit()
            return
        self._log = request.log
        self._paused = False
        for q in self._pending_questions:
            self._engine.ask(q)
        self._pending_questions.clear()

    @Slot()
    def on_run_stopped(self) -> None:
        self._end_run()

    @Slot(bool)
    def on_paused(self, paused: bool) -> None:
        self._paused = paused
        self.pause_applied.emit(paused)
        if not paused and self._mailbox.has_frame():
            self.on_frame_sampled()

    @Slot(str)
    def on_question(self, text: str) -> None:
        if self._engine is None:
            self._pending_questions.append(text)  # enters the stream when the next run starts
        else:
            self._engine.ask(text)

    @Slot(object)
    def on_options_changed(self, live: LiveOptions) -> None:
        if self._engine is None:
            return
        o = engine_options(live)
        current = self._engine.opts
        # Only what changed: a task given again would be put on the next turn as a new instruction.
        changes = {
            name: getattr(o, name)
            for name in ("threshold", "task", "task_target", "max_answer_tokens")
            if getattr(o, name) != getattr(current, name)
        }
        if changes:
            try:
                self._engine.set_options(**changes)
            except ValueError as e:
                self.error.emit(WorkerError("engine", f"Option not applied: {e}", False))

    @Slot()
    def on_frame_sampled(self) -> None:
        if self._engine is None or self._paused:
            return  # a paused run leaves the frame in the mailbox
        frame = self._mailbox.take()
        if frame is None:
            return  # an earlier call took it
        self._step(frame)

    def _step(self, frame: Any) -> None:
        import torch

        oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
        engine = self._engine

        def on_token(piece: str) -> None:
            self.token_streamed.emit(TokenChunk(frame.t, piece))

        try:
            result = engine.step(frame.image, t=frame.t, on_token=on_token)
        except oom:
            self._recover_from_oom(frame.t)
            return
        except Exception as e:  # noqa: BLE001 - surfaced in the window; the transcript is on disk
            log.error("engine step at %.1f s failed:\n%s", frame.t, traceback.format_exc())
            message = f"The model failed at {frame.t:.0f} s ({type(e).__name__}: {e}). The run stopped; the transcript is saved."
            self._note(message)
            self.error.emit(WorkerError("engine", message, True))
            self._end_run()
            return
        record = StepRecord(
            t=float(result.t),
            end=float(result.end),
            state=result.state,
            wall=round(time.time(), 3),  # as the log stores it: live and reopened agree
            text=result.text or "",
            question=result.question,
            p={k: float(v) for k, v in result.probs.items()},
            latency_ms=float(result.timings.get("total", 0.0)),
        )
        if self._log is not None:
            self._log.write_step(record)
        self.step_finished.emit(
            StepReport(
                record=record,
                timings=dict(result.timings),
                context_turns=int(result.context_turns),
                context_tokens=int(result.context_tokens),
                memory=_memory_text(self._loaded.device),
                kernel_path=str(getattr(engine, "kernel_path", self._loaded.kernel_path)),
            )
        )

    def _recover_from_oom(self, t: float) -> None:
        """Free the context and keep going with a smaller window; say what happened."""
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        turns = getattr(getattr(self._engine, "opts", None), "max_turns", 120) or 120
        smaller = max(8, int(turns) // 2)
        try:
            self._engine.reset()
            self._engine.set_options(max_turns=smaller)
        except Exception:  # noqa: BLE001 - the message below still applies
            log.exception("could not shrink the context after running out of memory")
        message = (
            f"Out of GPU memory at {t:.0f} s. The context was cleared and now keeps {smaller} turns. "
            "If this repeats, choose 4-bit precision or a smaller model in Model > Manage models."
        )
        self._note(message)
        self.error.emit(WorkerError("oom", message, False))

    def _note(self, message: str) -> None:
        if self._log is not None:
            self._log.write_note(message)

    def _end_run(self) -> None:
        if self._engine is None and self._log is None:
            return
        self._engine = None
        run_log, self._log = self._log, None
        if run_log is not None:
            run_log.close()
        self.run_finished.emit()
