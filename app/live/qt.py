"""The live runtime hosted for the desktop app: QtCore threads and workers, no widgets.

:class:`LiveController` is the GUI thread's handle. It owns two QThreads: the engine thread, where
:class:`EngineWorker` keeps the model (``ModelHolder``) and runs the :class:`LiveRunner` (the only
thread touching torch), and the capture thread, where :class:`CaptureWorker` runs a
:class:`Capture`. Widgets connect to the controller's signals and call its methods; they never
reach the workers, the engine or torch.

The controller owns the run's one :class:`StreamClock` (``clock``): the capture starts, pauses and
stops it, the engine's steps move it on, and spoken questions are placed in the stream by it
(:meth:`LiveController.ask_spoken`).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.live import RunState
from app.live.capture import Capture
from app.live.clock import Spoken, StreamClock
from app.live.frames import FrameSaver
from app.live.mailbox import FrameMailbox
from app.live.models import Loader, ModelHolder, default_loader
from app.live.records import Question, StepRecord
from app.live.runner import EngineFactory, LiveError, LiveRunner, RunEvents, make_engine
from app.session import Session, SessionLog, SessionMeta, TranscriptEntry, frames_dir
from app.settings import LiveOptions, ModelOptions, SourceOptions, engine_options
from model.catalog import active_model_label
from model.engine_types import Engine  # torch-free

log = logging.getLogger(__name__)

# Message topics: a newer message of a topic replaces the older one, and what no longer holds is
# cleared (a camera error once a source opens, a load error once a model loads).
SOURCE, MODEL, ENGINE, SESSION, INFO = "source", "model", "engine", "session", "info"


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
    memory: str  # "RSS 1.2 GB" or "GPU 5.1 / 80.0 GB"
    kernel_path: str


@dataclass(frozen=True)
class RunRequest:
    live: LiveOptions
    log: SessionLog | None  # thread-safe; the engine thread appends steps


@dataclass(frozen=True)
class CaptureRequest:
    options: SourceOptions
    fps: float  # model steps per second: the sampling rate
    generation: int  # increases with every request; stop(generation) cancels it and older ones


# ---------------------------------------------------------------------------------------------
# Engine thread


class EngineWorker(QObject):
    """Owns the model and the run. Every slot runs on the engine thread, one at a time, in order."""

    load_progress = Signal(object)  # LoadProgress
    model_loaded = Signal(object)  # ModelInfo
    load_failed = Signal(str)  # user-facing message
    token_streamed = Signal(object)  # TokenChunk
    step_finished = Signal(object)  # StepReport
    question_entered = Signal(object)  # Question
    error = Signal(object)  # LiveError
    run_finished = Signal()  # the run's log is closed
    pause_applied = Signal(bool)  # the engine has taken the pause / resume (no step after a True)
    model_unloaded = Signal()  # the model's memory is returned (the training process needs it)

    def __init__(
        self,
        mailbox: FrameMailbox,
        loader: Loader = default_loader,
        engine_factory: EngineFactory = make_engine,
        clock: StreamClock | None = None,
    ) -> None:
        super().__init__()
        self._mailbox = mailbox
        self._clock = clock
        self._models = ModelHolder(loader)
        self._engine_factory = engine_factory
        self._runner: LiveRunner | None = None
        self._saver: FrameSaver | None = None  # the run's "Keep the frames the model saw"
        self._paused = False
        self._pending: list[Question] = []  # asked while no run was going: they enter the next run
        self.cancel_load = threading.Event()  # set from the GUI thread when the app closes

    # -- model
    @Slot(object)
    def on_load_requested(self, options: ModelOptions) -> None:
        self._end_run()
        started = time.perf_counter()
        self.load_progress.emit(LoadProgress("Starting torch"))
        try:
            from model.device import describe_device, is_out_of_memory
            from model.errors import ModelLoadError
        except Exception as e:  # noqa: BLE001 - a broken install must still say so in the window
            self.load_failed.emit(f"Could not start torch: {e}")
            return
        self.load_progress.emit(LoadProgress(f"Loading {options.label()}"))

        def download(done: int, total: int, filename: str) -> None:
            self.load_progress.emit(LoadProgress(f"Downloading {filename}", done, total))

        def training(done: int, total: int, what: str) -> None:
            self.load_progress.emit(LoadProgress(what, done, total, unit="steps"))

        try:
            loaded = self._models.load(options, download, training, self.cancel_load)
        except ModelLoadError as e:
            self.load_failed.emit(self._kept(str(e)))
            return
        except Exception as e:  # noqa: BLE001 - out of memory, transformers, the hub
            if is_out_of_memory(e):
                from model.device import free_cuda_memory

                free_cuda_memory()
                text = (
                    f"Out of memory loading {options.source} ({e}). Choose 4-bit precision or a smaller model "
                    "in Model > Manage models, or close other programs using the GPU."
                )
            else:
                log.exception("model load failed")
                text = f"Could not load {options.source}: {type(e).__name__}: {e}"
            self.load_failed.emit(self._kept(text))
            return
        self.model_loaded.emit(
            ModelInfo(
                options=options,
                device=describe_device(loaded.device),
                precision=loaded.precision,
                kernel_path=loaded.kernel_path,
                is_demo=bool(loaded.is_demo),
                warnings=tuple(loaded.warnings),
                load_seconds=time.perf_counter() - started,
                adapter=str(loaded.adapter) if loaded.adapter else "",
            )
        )

    @Slot()
    def on_unload_requested(self) -> None:
        """End any run and return the model's memory (CPU and GPU); the next load starts afresh."""
        self._end_run()
        self._models.unload()
        self.model_unloaded.emit()

    def _kept(self, text: str) -> str:
        """A failed load leaves the working model in place: say which."""
        kept = self._models.options
        return f"{text} The model loaded before ({kept.label()}) is still in use." if kept else text

    # -- runs
    @Slot(object)
    def on_run_started(self, request: RunRequest) -> None:
        self._end_run()
        loaded = self._models.loaded
        if loaded is None:
            if request.log is not None:
                request.log.close()
            self.error.emit(LiveError("engine", "No model is loaded yet: wait for it or choose one in Model.", True))
            self.run_finished.emit()
            return
        try:
            engine = self._engine_factory(loaded, engine_options(request.live))
        except Exception as e:  # noqa: BLE001
            log.exception("engine creation failed")
            self.error.emit(LiveError("engine", f"Could not start the engine: {type(e).__name__}: {e}", True))
            if request.log is not None:
                request.log.close()
            self.run_finished.emit()
            return
        from model.device import memory_text

        events = RunEvents(
            step=self._on_step,
            token=lambda t, piece: self.token_streamed.emit(TokenChunk(t, piece)),
            question=self.question_entered.emit,
            error=self._on_error,
        )
        if request.live.keep_frames and request.log is not None:
            self._keep_frames(engine, request.log)
        self._runner = LiveRunner(
            engine,
            request.log,
            events,
            request.live.subtitle_seconds,
            lambda: memory_text(loaded.device),
            clock=self._clock,
        )
        self._paused = False
        for question in self._pending:
            self._runner.ask(question)
        self._pending.clear()
        # The capture starts before the run does (the run waits for the source to open): a frame
        # that arrived meanwhile is waiting, and a file read at the model's pace waits for it.
        if self._mailbox.has_frame():
            self.on_frame_sampled()

    def _keep_frames(self, engine: Engine, log_file: SessionLog) -> None:
        """Save every frame the engine is given beside the session log; PNGs are written on the
        saver's own thread (a failure is a warning: the run goes on)."""
        folder = frames_dir(log_file.path)

        def failed(text: str) -> None:  # on the saver's thread: the signal is queued to the controller
            self.error.emit(LiveError("engine", text, False))

        try:
            self._saver = FrameSaver(folder, label="Keeping the frames the model saw", on_error=failed)
        except OSError as e:
            failed(f"Cannot keep the frames the model saw in {folder} ({e}); the run goes on without them.")
            return
        self._saver.wrap(engine)

    def _on_step(self, record: StepRecord) -> None:
        runner = self._runner
        assert runner is not None
        memory = runner.memory() if runner.memory else ""
        kernel = runner.engine.kernel_path
        self.step_finished.emit(StepReport(record, memory, kernel))

    def _on_error(self, error: LiveError) -> None:
        self.error.emit(error)
        if error.fatal:
            self._end_run()

    @Slot()
    def on_run_stopped(self) -> None:
        self._end_run()

    @Slot(bool)
    def on_paused(self, paused: bool) -> None:
        self._paused = paused
        self.pause_applied.emit(paused)
        if not paused and self._mailbox.has_frame():
            self.on_frame_sampled()

    @Slot(object)
    def on_question(self, question: Question) -> None:
        if self._runner is None:
            self._pending.append(question)  # enters the stream when the next run starts
            return
        try:
            self._runner.ask(question)
        except ValueError as e:
            self.error.emit(LiveError("engine", f"Question not asked: {e}", False))

    @Slot(object)
    def on_options_changed(self, live: LiveOptions) -> None:
        if self._runner is None:
            return
        try:
            later = self._runner.update(engine_options(live))
        except ValueError as e:
            self.error.emit(LiveError("engine", f"Option not applied: {e}", False))
            return
        self._runner.subtitles.hold = live.subtitle_seconds
        if later:
            self.error.emit(LiveError("engine", f"{', '.join(later)} will change at the next Start.", False))

    @Slot()
    def on_frame_sampled(self) -> None:
        if self._runner is None or self._paused:
            return  # a paused run leaves the frame in the mailbox
        frame = self._mailbox.take()
        if frame is None:
            return  # an earlier call took it, or the end-of-file marker
        self._runner.step(frame.image, frame.t)

    def _end_run(self) -> None:
        runner, self._runner = self._runner, None
        saver, self._saver = self._saver, None
        if saver is not None:
            saver.close()  # the last frames are on disk before run_finished
        if runner is None:
            return
        runner.close()
        self.run_finished.emit()


# ---------------------------------------------------------------------------------------------
# Capture thread


class CaptureWorker(QObject):
    """Runs one :class:`Capture` at a time. ``stop``, ``pause`` and ``latest`` may be called from any thread."""

    source_opened = Signal(object)  # app.sources.SourceInfo
    frame_sampled = Signal()  # a Frame waits in the mailbox
    source_failed = Signal(str)  # user-facing message
    source_ended = Signal(bool)  # True at the end of a file, False when stopped or failed

    def __init__(self, mailbox: FrameMailbox, opener: Any = None, clock: StreamClock | None = None) -> None:
        super().__init__()
        self._mailbox = mailbox
        self._opener = opener
        self._clock = clock
        self._capture: Capture | None = None
        self._lock = threading.Lock()
        # A request may still wait in this thread's queue when Stop is pressed; it must not start
        # afterwards. Requests up to this generation are cancelled.
        self._stopped_generation = 0

    def latest(self) -> Any:
        capture = self._capture
        return capture.latest() if capture is not None else None

    def stop(self, generation: int) -> None:
        """Cancel request ``generation`` and older ones, whether running or still queued."""
        with self._lock:
            self._stopped_generation = max(self._stopped_generation, generation)
            capture = self._capture
        self._mailbox.close()
        if capture is not None:
            capture.stop()

    def pause(self, paused: bool) -> None:
        capture = self._capture
        if capture is not None:
            capture.pause(paused)

    @Slot(object)
    def on_start_requested(self, request: CaptureRequest) -> None:
        options = request.options
        with self._lock:
            cancelled = request.generation <= self._stopped_generation
        if cancelled:
            self.source_ended.emit(False)
            return
        kwargs = {"opener": self._opener} if self._opener is not None else {}
        capture = Capture(
            options.spec,
            request.fps,
            realtime=options.realtime,
            open_kwargs=options.open_kwargs(),
            mailbox=self._mailbox,
            on_opened=self.source_opened.emit,
            on_frame=self.frame_sampled.emit,
            on_error=self.source_failed.emit,
            clock=self._clock,
            **kwargs,
        )
        with self._lock:
            if request.generation <= self._stopped_generation:  # Stop pressed meanwhile
                self.source_ended.emit(False)
                return
            self._capture = capture
        finished = capture.run()
        self.source_ended.emit(finished)


# ---------------------------------------------------------------------------------------------
# The GUI thread's handle


class LiveController(QObject):
    # to the workers (queued: the receivers live on other threads)
    load_requested = Signal(object)  # ModelOptions
    unload_requested = Signal()
    run_started = Signal(object)  # RunRequest
    run_stopped = Signal()
    paused_changed = Signal(bool)
    question_asked = Signal(object)  # Question
    options_changed = Signal(object)  # LiveOptions
    capture_requested = Signal(object)  # CaptureRequest

    # to the widgets
    state_changed = Signal(object)  # RunState
    model_ready = Signal(object)  # ModelInfo
    message = Signal(str, str, str)  # (level: "error" | "warning" | "info", text, topic)
    message_cleared = Signal(str)  # topic: what it said no longer holds
    entries_added = Signal(list)  # list[TranscriptEntry]
    session_changed = Signal(object)  # Session: a new run or a reopened file
    step_finished = Signal(object)  # StepReport
    source_opened = Signal(object)  # SourceInfo
    load_progress = Signal(object)  # LoadProgress
    load_failed = Signal(str)  # user-facing message (also sent as a message)
    token_streamed = Signal(object)  # TokenChunk
    pause_applied = Signal(bool)  # the engine took the pause: no step follows a True
    run_finished = Signal()  # the engine ended a run: its last step is reported, its log closed
    model_unloaded = Signal()  # no model is loaded any more (unload_model)

    def __init__(
        self,
        loader: Loader | None = None,
        engine_factory: EngineFactory | None = None,
        opener: Any = None,
        sessions_root: Path | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.mailbox = FrameMailbox()
        self.clock = StreamClock()  # the one stream clock: capture, engine, window and microphone ask it
        kwargs = {k: v for k, v in (("loader", loader), ("engine_factory", engine_factory)) if v is not None}
        self.engine = EngineWorker(self.mailbox, clock=self.clock, **kwargs)
        self.capture = CaptureWorker(self.mailbox, opener, self.clock)
        self._sessions_root = sessions_root
        self._engine_thread = QThread()
        self._engine_thread.setObjectName("engine")
        self._capture_thread = QThread()
        self._capture_thread.setObjectName("capture")
        self.engine.moveToThread(self._engine_thread)
        self.capture.moveToThread(self._capture_thread)

        self.load_requested.connect(self.engine.on_load_requested)
        self.unload_requested.connect(self.engine.on_unload_requested)
        self.run_started.connect(self.engine.on_run_started)
        self.run_stopped.connect(self.engine.on_run_stopped)
        self.paused_changed.connect(self.engine.on_paused)
        self.question_asked.connect(self.engine.on_question)
        self.options_changed.connect(self.engine.on_options_changed)
        self.capture_requested.connect(self.capture.on_start_requested)
        self.capture.frame_sampled.connect(self.engine.on_frame_sampled)

        # Every worker signal lands on this GUI-thread object (queued), never on a widget or a plain
        # callable, which would run on the worker's thread: on a slot where the controller acts, or
        # on its own signal of the same name (a queued signal-to-signal relay) where it only forwards.
        self.engine.load_progress.connect(self.load_progress)
        self.engine.token_streamed.connect(self.token_streamed)
        self.engine.pause_applied.connect(self.pause_applied)
        self.engine.run_finished.connect(self.on_run_finished)
        self.engine.model_loaded.connect(self.on_model_loaded)
        self.engine.model_unloaded.connect(self.on_model_unloaded)
        self.engine.load_failed.connect(self.on_load_failed)
        self.engine.step_finished.connect(self.on_step_finished)
        self.engine.error.connect(self.on_error)
        self.capture.source_opened.connect(self.on_source_opened)
        self.capture.source_failed.connect(self.on_source_failed)
        self.capture.source_ended.connect(self.on_source_ended)

        # The engine thread runs Python between torch calls; with the default 5 ms GIL switch
        # interval every Qt call the GUI thread makes can wait that long for the GIL, and a paint
        # makes dozens. 1 ms keeps the event loop responsive at a negligible cost to the engine.
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_interval, 0.001))
        self._engine_thread.start()
        self._capture_thread.start()
        self.state = RunState.IDLE
        self.model: ModelInfo | None = None
        self.session = Session()
        self._pending_run: tuple[SessionMeta, LiveOptions] | None = None  # waits for the source to open
        self._captures = 0  # capture requests whose source_ended has not come back yet
        self._generation = 0  # of the latest capture request
        self.threads_stopped = False

    # -- requests from the widgets
    def load_model(self, options: ModelOptions) -> None:
        if self.state in (RunState.RUNNING, RunState.PAUSED):
            self.stop()
        self._set_state(RunState.LOADING)
        self.load_requested.emit(options)

    def unload_model(self) -> None:
        """Stop any run and unload the model (its GPU memory goes back); ``model_unloaded`` follows."""
        if self.state in (RunState.RUNNING, RunState.PAUSED):
            self.stop()
        self.unload_requested.emit()

    def start(self, source: SourceOptions, live: LiveOptions, model_label: str = "") -> bool:
        """Open the source; the run (and its session file) starts once the source delivers. False
        (with a message) when no model is ready or no source is chosen."""
        if self.state in (RunState.RUNNING, RunState.PAUSED):
            return False
        if self.model is None:
            text = (
                "The model is still loading; start again when it is ready."
                if self.state == RunState.LOADING
                else "No model is loaded. Choose one in Model > Manage models, or Model > Use the demo model."
            )
            self.message.emit("warning", text, MODEL)
            return False
        if not source.spec:
            self.message.emit("warning", "Choose a source first: a video file, a webcam or a screen.", SOURCE)
            return False
        label = model_label or active_model_label(self.model.options.source, self.model.adapter or None, card=True)
        meta = SessionMeta(source=source.spec, model=label, task=live.task, fps=live.fps)
        self._pending_run = (meta, live)
        self._captures += 1
        self._generation += 1
        self.capture_requested.emit(CaptureRequest(source, float(live.fps), self._generation))
        self._set_state(RunState.RUNNING)
        return True

    def pause(self, paused: bool) -> None:
        if self.state not in (RunState.RUNNING, RunState.PAUSED):
            return
        self.capture.pause(paused)  # the source and the stream clock stop (a file played in real time too)
        self.paused_changed.emit(paused)
        self._set_state(RunState.PAUSED if paused else RunState.RUNNING)

    def stop(self) -> None:
        if self.state not in (RunState.RUNNING, RunState.PAUSED):
            return
        self.capture.stop(self._generation)
        self.run_stopped.emit()
        never_started = self._pending_run is not None
        self._pending_run = None
        self._set_state(RunState.IDLE)
        if never_started:  # stopped before the source delivered: no run, no session, nothing to close
            self.run_finished.emit()

    def ask(self, text: str, t: float | None = None, origin: str = "typed") -> Question | None:
        """Ask ``text`` at stream second ``t`` (None: the next turn). Returns the question, or None
        for an empty text."""
        text = text.strip()
        if not text:
            return None
        return self.ask_question(Question(text, t, origin))

    def ask_question(self, question: Question) -> Question:
        """A question as a value (with its stream second, or None: the next turn)."""
        self.question_asked.emit(question)
        return question

    def ask_spoken(self, spoken: Spoken) -> Question:
        """A spoken question, timed on the monotonic clock: it enters at the stream second its speech
        ended (while paused: the paused second); spoken outside a run, at the next run's first turn."""
        return self.ask_question(self.clock.question(spoken))

    def stream_time(self) -> float | None:
        """The stream second now (the one clock's), None outside a run."""
        return self.clock.now()

    def update_options(self, live: LiveOptions) -> None:
        self.options_changed.emit(live)

    def latest_frame(self) -> Any:
        return self.capture.latest()

    def open_session(self, session: Session) -> None:
        """Show a reopened session (only while no run is going on)."""
        self.session = session
        self.session_changed.emit(session)

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """Stop the run, let the engine close the log (its end record), and end both threads. False
        when a thread is still busy (a model load cannot be interrupted); the caller then exits the
        process without waiting, which loses nothing: the session log is on disk line by line."""
        self.capture.stop(self._generation)
        self.run_stopped.emit()
        self.engine.cancel_load.set()  # a first-use demo adapter build stops at its next step
        for thread in (self._capture_thread, self._engine_thread):
            thread.quit()
        stopped = True
        for thread in (self._capture_thread, self._engine_thread):
            if not thread.wait(timeout_ms):
                log.warning("%s thread did not stop within %d ms", thread.objectName(), timeout_ms)
                stopped = False
        self.threads_stopped = stopped
        sys.setswitchinterval(self._switch_interval)
        return stopped

    # -- from the workers
    @Slot(object)
    def on_model_loaded(self, info: ModelInfo) -> None:
        self.model = info
        self.message_cleared.emit(MODEL)
        for w in info.warnings:  # before model_ready: the window's own word on the model comes last
            self.message.emit("info", w, MODEL)
        self.model_ready.emit(info)
        if self.state == RunState.LOADING:
            self._set_state(RunState.IDLE)

    @Slot()
    def on_model_unloaded(self) -> None:
        self.model = None
        self.model_unloaded.emit()

    @Slot(str)
    def on_load_failed(self, text: str) -> None:
        self.load_failed.emit(text)
        self.message.emit("error", text, MODEL)
        if self.state == RunState.LOADING:
            self._set_state(RunState.IDLE)

    @Slot(object)
    def on_source_opened(self, info: Any) -> None:
        """The source delivers: the run and its session file start now (a failed start saves nothing)."""
        self.message_cleared.emit(SOURCE)
        self.source_opened.emit(info)
        if self._pending_run is None or self.state not in (RunState.RUNNING, RunState.PAUSED):
            return
        meta, live = self._pending_run
        self._pending_run = None
        try:
            log_file = SessionLog.create(meta, self._sessions_root)
        except OSError as e:
            self.message.emit(
                "warning", f"Cannot write the session log ({e}); this session will not be saved.", SESSION
            )
            log_file = None
        self.session = Session(meta=meta, path=log_file.path if log_file else None)
        self.session_changed.emit(self.session)
        self.run_started.emit(RunRequest(live, log_file))

    @Slot(object)
    def on_step_finished(self, report: StepReport) -> None:
        added: list[TranscriptEntry] = self.session.add(report.record)
        self.step_finished.emit(report)
        if added:
            self.entries_added.emit(added)

    @Slot(object)
    def on_error(self, error: LiveError) -> None:
        self.message.emit("error" if error.fatal else "warning", error.message, ENGINE)
        if error.fatal and self.state in (RunState.RUNNING, RunState.PAUSED):
            self.capture.stop(self._generation)
            self._set_state(RunState.IDLE)

    @Slot(str)
    def on_source_failed(self, text: str) -> None:
        self.message.emit("error", text, SOURCE)

    @Slot()
    def on_run_finished(self) -> None:
        self.session.ended = True
        self.run_finished.emit()

    @Slot(bool)
    def on_source_ended(self, finished: bool) -> None:
        self._captures -= 1
        if self._captures > 0:
            return  # the end of an earlier capture, stopped before this run started
        if self.state in (RunState.RUNNING, RunState.PAUSED):
            # The last sampled frame is already queued before this: the engine steps it first.
            started = self._pending_run is None
            self._pending_run = None
            self.run_stopped.emit()
            self._set_state(RunState.IDLE)
            if finished:
                self.message.emit("info", "The video ended.", SOURCE)
            elif not started:
                self.run_finished.emit()  # nothing ran: the source never delivered

    def _set_state(self, state: RunState) -> None:
        if state != self.state:
            self.state = state
            self.state_changed.emit(state)
