"""The one live run: frames in, steps out, questions in at a stream second, answers out to the
subtitles, the session log and whoever listens. The desktop app (``app/live/qt.py``) and
``narrate`` (``app/narrate.py``) both run it, so they write the same records and subtitles.

A :class:`LiveRunner` owns a streaming engine for one run. It is used from one thread, the one
that steps the model (the window's engine thread, ``narrate``'s main thread): ``ask``, ``update``
and ``step`` are called there. ``run`` drives it from a :class:`Capture` on the sampling clock for a
blocking front end. Events go out through :class:`RunEvents` callbacks, on the stepping thread.
Each step moves the run's :class:`StreamClock` to the second it steps (a file read at the model's
pace runs on the model's time), so a spoken question is placed on the seconds the model sees.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.live.capture import Capture
from app.live.clock import StreamClock
from app.live.records import Question, StepRecord
from app.live.subtitles import HOLD_SECONDS, SubtitleTimeline
from app.session import SessionLog
from model.engine_types import Engine, EngineOptions, StepResult  # torch-free

if TYPE_CHECKING:
    import numpy as np

    from model.interrupt import StopOnInterrupt
    from model.loading import LoadedModel

log = logging.getLogger(__name__)

EngineFactory = Callable[["LoadedModel", EngineOptions], Engine]  # make_engine, or a test's stand-in


MAX_QUESTION_CHARS = 2000  # about 500 tokens: far above a spoken or typed question, far below the window


@dataclass(frozen=True)
class LiveError:
    where: str  # "engine" | "capture" | "oom" | "question" | "session"
    message: str  # user-facing: what failed and what to do
    fatal: bool  # True: the run stopped


@dataclass
class RunEvents:
    """Callbacks, each optional; all are called on the thread that steps the model."""

    step: Callable[[StepRecord], None] | None = None  # a step finished (logged already)
    token: Callable[[float, str], None] | None = None  # (stream second of the step, new text)
    question: Callable[[Question], None] | None = None  # a question (or the task's instruction) entered the stream
    error: Callable[[LiveError], None] | None = None


def make_engine(loaded: LoadedModel, options: EngineOptions) -> Engine:
    """A streaming engine for ``loaded`` (imported here: it pulls in torch)."""
    from model.engine import StreamEngine

    return StreamEngine(loaded, options)


class LiveRunner:
    """One run of the engine over a stream. ``log`` (optional) gets the header already written and
    every step; ``close`` ends it with an end record. A log that fails to write is a non-fatal
    "session" error (once per file), never the run's end. ``clock``: the run's stream clock (``run``
    takes its capture's when none is given)."""

    def __init__(
        self,
        engine: Engine,
        log: SessionLog | None = None,
        events: RunEvents | None = None,
        hold: float = HOLD_SECONDS,
        memory: Callable[[], str] | None = None,
        clock: StreamClock | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self._clock_run: int | None = None  # the clock's run the last step was on
        self.log = log
        self.events = events or RunEvents()
        self.subtitles = SubtitleTimeline(hold)
        self.steps = 0
        self.failed = False  # a fatal error ended the run
        self.memory = memory  # text for the status bar ("RSS 1.2 GB"), read after each step
        self._asked: list[Question] = []  # handed to the engine, not yet in the stream
        if log is not None and log.on_problem is None:
            # A session log that cannot be written (a full disk, a folder made read-only) is one warning to
            # whoever listens (the window's message bar, narrate's terminal); the run goes on.
            log.on_problem = lambda text: self._error("session", text, False)

    # -- requests (on the stepping thread)
    def ask(self, question: Question) -> Question:
        """Queue ``question`` for the turn that covers ``question.t`` (or the next turn). Returns it
        with the text as it will enter the stream (user text is neutralised by the protocol layer). A
        question longer than :data:`MAX_QUESTION_CHARS` goes in cut there, with a warning: 100 KB of text
        was once 46,446 tokens, past the model's positions, and the stream never answered again."""
        if len(question.text) > MAX_QUESTION_CHARS:
            kept = question.text[:MAX_QUESTION_CHARS].rsplit(" ", 1)[0] or question.text[:MAX_QUESTION_CHARS]
            self._error(
                "question",
                f"Your question was {len(question.text):,} characters; its first {len(kept):,} went in (a question "
                "must leave the model room to see the video and answer).",
                False,
            )
            question = Question(kept, question.t, question.origin, question.span)
        text = self.engine.ask(question.text, question.t, tag=question)
        self._asked.append(question)
        return Question(text, question.t, question.origin, question.span)

    def update(self, options: EngineOptions) -> list[str]:
        """New engine options mid-run; returns the changed ones that wait for the next run."""
        return self.engine.update(options)

    @property
    def pending_questions(self) -> list[Question]:
        return list(self._asked)

    # -- one step
    def step(self, image: np.ndarray, t: float) -> StepRecord | None:
        """Step the engine on one sampled frame. None when the step failed: an out-of-memory error
        shrinks the window and the run goes on; any other error ends the run (``failed``)."""
        if self.failed:
            return None
        from model.device import is_out_of_memory

        def on_token(piece: str) -> None:
            if self.events.token:
                self.events.token(t, piece)

        if self.clock is not None:
            self.clock.sync(t)  # the model is at second t now (never moves the clock back)
            self._clock_run = self.clock.run  # the clock's run this one steps; close() ends it
        try:
            result = self.engine.step(image, t=t, on_token=on_token)
        except Exception as e:  # noqa: BLE001 - reported in the window / terminal; the log is on disk
            if is_out_of_memory(e):
                self._recover_from_oom(t)
                return None
            log.error("engine step at %.1f s failed:\n%s", t, traceback.format_exc())
            self.failed = True
            self._error(
                "engine",
                f"The model failed at {t:.0f} s ({type(e).__name__}: {e}). The run stopped; the transcript is saved.",
                True,
            )
            return None
        question = self._entered(result)
        record = StepRecord(
            t=float(result.t),
            end=float(result.end),
            state=result.state,
            wall=round(time.time(), 3),
            text=result.text or "",
            question=question,
            p={k: float(v) for k, v in result.probs.items()},
            latency_ms={k: float(v) for k, v in result.timings.items()},
            context_turns=int(result.context_turns),
            context_tokens=int(result.context_tokens),
            exact=not result.approximate,
            token_ids=tuple(int(i) for i in result.token_ids),
        )
        if self.log is not None:
            self.log.write_step(record)
        self.subtitles.add(record)
        self.steps += 1
        if question is not None and self.events.question:
            self.events.question(question)
        if self.events.step:
            self.events.step(record)
        return record

    def _entered(self, result: StepResult) -> Question | None:
        """The question that entered on this step: one of ours (by its tag), else the task's instruction."""
        if not result.question:
            return None
        tag = result.question_tag
        if not isinstance(tag, Question):
            return Question(result.question, float(result.t), "preset")
        self._asked = [q for q in self._asked if q is not tag]
        return Question(result.question, tag.t if tag.t is not None else float(result.t), tag.origin, tag.span)

    def _recover_from_oom(self, t: float) -> None:
        """Free the context and keep going with a smaller window; say what happened."""
        from model.device import free_cuda_memory

        free_cuda_memory()
        smaller = max(8, self.engine.opts.max_turns // 2)
        try:
            self.engine.reset()
            self.engine.set_options(max_turns=smaller)
        except Exception:  # noqa: BLE001 - the message below still applies
            log.exception("could not shrink the context after running out of memory")
        self._error(
            "oom",
            f"Out of memory at {t:.0f} s. The context was cleared and now keeps {smaller} turns. If this "
            "repeats, choose 4-bit precision or a smaller model (Model > Manage models; narrate: its precision option).",
            False,
        )

    def _error(self, where: str, message: str, fatal: bool) -> None:
        self.note(message, "error" if fatal else "warning")
        if self.events.error:
            self.events.error(LiveError(where, message, fatal))

    def note(self, text: str, level: str = "error") -> None:
        if self.log is not None:
            self.log.write_note(text, level)

    def close(self) -> None:
        """End the run: its stream clock stops (a file read at the model's pace leaves it running
        while its last frame is stepped), and the log gets its end record (also after a failure or
        a stop)."""
        if self.clock is not None and self._clock_run is not None:
            self.clock.stop(self._clock_run)  # only if no newer run started on it
        if self.log is not None:
            self.log.close()

    # -- a blocking run for terminal front ends
    def run(self, capture: Capture, stop: threading.Event | StopOnInterrupt | None = None) -> str:
        """Step every frame ``capture`` samples until the source ends ("ended"), ``stop`` is set
        ("stopped") or the run fails ("failed"). Capture runs on its own thread and hands frames
        over through its mailbox (every sample of a file; the newest of a live source)."""
        stopped = lambda: stop is not None and stop.is_set()  # noqa: E731
        if self.clock is None:
            self.clock = capture.clock
        else:
            capture.clock = self.clock  # one clock for the source and the engine
        worker = threading.Thread(target=capture.run, name="capture", daemon=True)
        worker.start()
        reason = "ended"
        try:
            while True:
                frame = capture.mailbox.take(timeout=0.1)
                if frame is None:
                    if capture.done and not capture.mailbox.has_frame():
                        break
                    if stopped():
                        reason = "stopped"
                        break
                    continue
                self.step(frame.image, frame.t)
                if self.failed:
                    reason = "failed"
                    break
                if stopped():
                    reason = "stopped"
                    break
        finally:
            capture.stop()
            worker.join(5)
        if capture.error and reason == "ended":
            reason = "failed"
        return reason
