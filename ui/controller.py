"""LiveController: the GUI thread's handle on the engine and capture threads.

It owns the two QThreads and their workers, turns the widgets' requests into queued signals,
keeps the live :class:`app.session.Session` (the transcript) and the session log, and says in
one place which state the live tab is in. Widgets connect to its signals, never to the workers.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.session import Session, SessionLog, SessionMeta, TranscriptEntry
from app.settings import LiveOptions, ModelOptions, SourceOptions
from ui.capture import CaptureRequest, CaptureWorker, FrameMailbox
from ui.workers import (
    EngineWorker,
    ModelInfo,
    RunRequest,
    StepReport,
    WorkerError,
)

log = logging.getLogger(__name__)

IDLE, LOADING, RUNNING, PAUSED = "idle", "loading", "running", "paused"


class LiveController(QObject):
    # to the workers (queued: the receivers live on other threads)
    load_requested = Signal(object)  # ModelOptions
    run_started = Signal(object)  # RunRequest
    run_stopped = Signal()
    paused_changed = Signal(bool)
    question_asked = Signal(str)
    options_changed = Signal(object)  # LiveOptions
    capture_requested = Signal(object)  # CaptureRequest

    # to the widgets
    state_changed = Signal(str)  # idle | loading | running | paused
    model_ready = Signal(object)  # ModelInfo
    message = Signal(str, str)  # (level: "error" | "warning" | "info", text)
    entries_added = Signal(list)  # list[TranscriptEntry]
    session_changed = Signal(object)  # Session: a new run or a reopened file
    step_finished = Signal(object)  # StepReport
    source_opened = Signal(object)  # SourceInfo
    load_progress = Signal(object)  # LoadProgress
    load_failed = Signal(str)  # user-facing message (also sent as a message)
    token_streamed = Signal(object)  # TokenChunk
    pause_applied = Signal(bool)  # the engine took the pause: no step follows a True
    run_finished = Signal()  # the engine ended a run: its last step is reported, its log closed

    def __init__(
        self,
        loader: Any = None,
        engine_factory: Any = None,
        opener: Any = None,
        sessions_root: Path | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.mailbox = FrameMailbox()
        kwargs = {k: v for k, v in (("loader", loader), ("engine_factory", engine_factory)) if v is not None}
        self.engine = EngineWorker(self.mailbox, **kwargs)
        self.capture = CaptureWorker(self.mailbox, **({"opener": opener} if opener else {}))
        self._sessions_root = sessions_root
        self._engine_thread = QThread()
        self._engine_thread.setObjectName("engine")
        self._capture_thread = QThread()
        self._capture_thread.setObjectName("capture")
        self.engine.moveToThread(self._engine_thread)
        self.capture.moveToThread(self._capture_thread)

        self.load_requested.connect(self.engine.on_load_requested)
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
        self.engine.run_finished.connect(self.run_finished)
        self.engine.model_loaded.connect(self.on_model_loaded)
        self.engine.load_failed.connect(self.on_load_failed)
        self.engine.step_finished.connect(self.on_step_finished)
        self.engine.error.connect(self.on_error)
        self.capture.source_opened.connect(self.source_opened)
        self.capture.source_failed.connect(self.on_source_failed)
        self.capture.source_ended.connect(self.on_source_ended)

        # The engine thread runs Python between torch calls; with the default 5 ms GIL switch
        # interval every Qt call the GUI thread makes can wait that long for the GIL, and a paint
        # makes dozens. 1 ms keeps the event loop responsive at a negligible cost to the engine.
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_interval, 0.001))
        self._engine_thread.start()
        self._capture_thread.start()
        self.state = IDLE
        self.model: ModelInfo | None = None
        self.session = Session()
        self._log: SessionLog | None = None
        self._captures = 0  # capture requests whose source_ended has not come back yet
        self._generation = 0  # of the latest capture request
        self.threads_stopped = False

    # -- requests from the widgets
    def load_model(self, options: ModelOptions) -> None:
        if self.state in (RUNNING, PAUSED):
            self.stop()
        self.model = None
        self._set_state(LOADING)
        self.load_requested.emit(options)

    def start(self, source: SourceOptions, live: LiveOptions, model_label: str = "") -> bool:
        """Open the source and start a run; False (with a message) when no model is ready."""
        if self.state in (RUNNING, PAUSED):
            return False
        if self.model is None:
            text = (
                "The model is still loading; start again when it is ready."
                if self.state == LOADING
                else ("No model is loaded. Choose one in Model > Manage models (or the demo model).")
            )
            self.message.emit("warning", text)
            return False
        if not source.spec:
            self.message.emit("warning", "Choose a source first: a video file, a webcam or a screen.")
            return False
        meta = SessionMeta(
            source=source.spec, model=model_label or self.model.options.source, task=live.task, fps=live.fps
        )
        try:
            self._log = SessionLog.create(meta, self._sessions_root)
        except OSError as e:
            self.message.emit("warning", f"Cannot write the session log ({e}); this session will not be saved.")
            self._log = None
        self.session = Session(meta=meta, path=self._log.path if self._log else None)
        self.session_changed.emit(self.session)
        self.run_started.emit(RunRequest(live, self._log))
        self._captures += 1
        self._generation += 1
        self.capture_requested.emit(CaptureRequest(source, float(live.fps), self._generation))
        self._set_state(RUNNING)
        return True

    def pause(self, paused: bool) -> None:
        if self.state not in (RUNNING, PAUSED):
            return
        self.paused_changed.emit(paused)
        self._set_state(PAUSED if paused else RUNNING)

    def stop(self) -> None:
        if self.state not in (RUNNING, PAUSED):
            return
        self.capture.stop(self._generation)
        self.run_stopped.emit()
        self._set_state(IDLE)

    def ask(self, text: str) -> None:
        text = text.strip()
        if text:
            self.question_asked.emit(text)

    def update_options(self, live: LiveOptions) -> None:
        self.options_changed.emit(live)

    def latest_frame(self) -> Any:
        return self.capture.latest()

    def open_session(self, session: Session) -> None:
        """Show a reopened session (only while no run is going on)."""
        self.session = session
        self.session_changed.emit(session)

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """Stop the run, let the engine close the log, and end both threads. False when a thread
        is still busy (a model load cannot be interrupted); the caller then exits the process
        without waiting, which loses nothing: the session log is on disk line by line."""
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
        self.model_ready.emit(info)
        for w in info.warnings:
            self.message.emit("info", w)
        if self.state == LOADING:
            self._set_state(IDLE)

    @Slot(str)
    def on_load_failed(self, text: str) -> None:
        self.model = None
        self.load_failed.emit(text)
        self.message.emit("error", text)
        if self.state == LOADING:
            self._set_state(IDLE)

    @Slot(object)
    def on_step_finished(self, report: StepReport) -> None:
        added: list[TranscriptEntry] = self.session.add(report.record)
        self.step_finished.emit(report)
        if added:
            self.entries_added.emit(added)

    @Slot(object)
    def on_error(self, error: WorkerError) -> None:
        self.message.emit("error" if error.fatal else "warning", error.message)
        if error.fatal and self.state in (RUNNING, PAUSED):
            self.capture.stop(self._generation)
            self._set_state(IDLE)

    @Slot(str)
    def on_source_failed(self, text: str) -> None:
        if self._log is not None:
            self._log.write_note(text)
        self.message.emit("error", text)

    @Slot(bool)
    def on_source_ended(self, finished: bool) -> None:
        self._captures -= 1
        if self._captures > 0:
            return  # the end of an earlier capture, stopped before this run started
        if self.state in (RUNNING, PAUSED):
            # The last sampled frame is already queued before this: the engine steps it first.
            self.run_stopped.emit()
            self._set_state(IDLE)
            if finished:
                self.message.emit("info", "The video ended.")

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.state_changed.emit(state)
