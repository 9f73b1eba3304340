"""The one stream clock of a live run: which stream second it is now, and which stream second a
moment on the monotonic clock (``time.monotonic``) was.

Everything that needs the stream's time asks this one object: the capture (it starts the clock
when the source opens, keeps it in step with a live source's frames, pauses and stops it), the
engine's driver (``LiveRunner.step`` moves it to each stepped second), the window, and the
microphone, whose questions carry the monotonic time their speech ended and are placed in the
stream by :meth:`StreamClock.question`.

Stream time runs at wall speed while a run goes (a file read at the model's pace: at most one
interval past the second being stepped, since the model sets the pace), stands still while
paused, and starts again at 0 with every new run. The clock keeps the recent history of the run
(what it said from which monotonic instant), so ``at(m)`` answers for a moment that has passed:
a question recognised a second after its speech ended still enters at the second it ended.

Outside a run (before Start, between runs) there is no stream second: ``now()`` and ``at()`` say
None. A question whose speech ended then enters at second 0 of the next run (the runtime asks it
with ``t=None``, like a question typed before Start); one that ended before the current run began
enters at its second 0.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from app.live.records import Question

#: How much of a run's history ``at`` remembers (seconds of monotonic time): far more than an
#: utterance (15 s at most) plus its recognition takes.
KEEP_SECONDS = 120.0


@dataclass(frozen=True)
class Spoken:
    """A question heard by the microphone, timed on the monotonic clock: when its speech started and
    when it ended. :meth:`StreamClock.question` places it in the stream."""

    text: str
    started: float  # time.monotonic() when the speech started
    ended: float  # time.monotonic() when the speech ended


@dataclass(frozen=True)
class _Piece:
    """From monotonic instant ``m0`` on, the stream second is ``min(t0 + (m - m0), limit)``."""

    m0: float
    t0: float
    limit: float  # inf while running live; t0 while paused; the stepped second + one interval when paced

    def at(self, m: float) -> float:
        return min(self.t0 + max(0.0, m - self.m0), self.limit)


class StreamClock:
    """Stream seconds of the current run. Thread-safe: the capture, the engine, the GUI and the voice
    threads all use it. ``monotonic`` is the time source (tests pass one they can move on)."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic, keep_seconds: float = KEEP_SECONDS) -> None:
        self.monotonic = monotonic
        self.keep_seconds = keep_seconds
        self._lock = threading.Lock()
        self._run = 0  # runs started so far; the current (or last) run's id
        self._pieces: list[_Piece] = []  # the current run's history, oldest first; [] outside a run
        self._began = 0.0  # monotonic instant the current run began
        self._interval: float | None = None  # paced (a file at the model's pace): the step interval
        self._paused = False
        self._resume_t, self._resume_limit = 0.0, math.inf  # where a paused run goes on from

    # -- the run's life cycle (the capture drives it)
    def start(self, interval: float | None = None, at: float | None = None) -> int:
        """A new run starts at stream second 0 (now, or at monotonic instant ``at``); returns its id.
        ``interval``: the stream is paced by the model (a file read at the model's pace), so the clock
        runs at most one interval past the last second the engine stepped (:meth:`sync`)."""
        m = self.monotonic() if at is None else at
        with self._lock:
            self._run += 1
            self._began = m
            self._interval = interval
            self._paused = False
            self._pieces = [_Piece(m, 0.0, self._limit(0.0))]
            return self._run

    def stop(self, run: int | None = None) -> None:
        """The run ends (``run``: only if it is still the current one); it has no stream second now."""
        with self._lock:
            if run is None or run == self._run:
                self._pieces = []
                self._paused = False

    def pause(self, paused: bool = True, at: float | None = None) -> None:
        """Pause (the stream second stands still) or resume (it runs on from there)."""
        m = self.monotonic() if at is None else at
        with self._lock:
            if not self._pieces or paused == self._paused:
                return
            last = self._pieces[-1]
            t = last.at(m)
            if paused:
                self._resume_t, self._resume_limit = t, last.limit
                self._add(_Piece(m, t, t))
            else:
                t = max(t, self._resume_t)
                self._add(_Piece(m, t, max(t, self._resume_limit)))
            self._paused = paused

    def resume(self, at: float | None = None) -> None:
        self.pause(False, at)

    def sync(self, t: float, at: float | None = None) -> None:
        """Stream second ``t`` is (at least) happening now: a live source's frame for ``t`` was taken,
        or the engine starts the step of second ``t``. The clock never runs backwards: it moves to
        ``t`` when it is behind (a live source skipping the seconds of a pause, a paced file's next
        step) and otherwise keeps running."""
        m = self.monotonic() if at is None else at
        with self._lock:
            if not self._pieces:
                return
            last = self._pieces[-1]
            now = last.at(m)
            if self._paused:
                # A step that began after the pause was pressed (its request was on the way): the
                # paused second stays what it was, and the run resumes from the step's second.
                self._resume_t = max(self._resume_t, t)
                self._resume_limit = max(self._resume_limit, self._limit(t))
                return
            limit = max(self._limit(t), now)
            if t > now or limit != last.limit:
                self._add(_Piece(m, max(t, now), limit))

    # -- questions
    def now(self) -> float | None:
        """The stream second now; None outside a run."""
        return self.at(self.monotonic())

    def at(self, m: float) -> float | None:
        """The stream second the current run was at monotonic instant ``m``: paused time does not
        count; an instant before the run began is its second 0; None outside a run."""
        with self._lock:
            if not self._pieces:
                return None
            if m <= self._began:
                return 0.0
            for piece in reversed(self._pieces):
                if piece.m0 <= m:
                    return piece.at(m)
            return self._pieces[0].at(m)  # older than the kept history: as close as it knows

    def question(self, spoken: Spoken) -> Question:
        """The runtime's placing of a spoken question: it enters at the stream second its speech
        ended (paused: the paused second), with its utterance's span in stream seconds. Outside a
        run it has no second: ``t=None``, and it enters the next run's first turn."""
        end = self.at(spoken.ended)
        if end is None:
            return Question(spoken.text, None, "voice")
        start = self.at(spoken.started)
        start = end if start is None else min(start, end)
        end = round(end, 3)
        return Question(spoken.text, end, "voice", (round(start, 3), end))

    @property
    def run(self) -> int:
        """The current (or last) run's id; 0 before the first."""
        return self._run

    @property
    def running(self) -> bool:
        """A run is going (paused or not)."""
        return bool(self._pieces)

    @property
    def paused(self) -> bool:
        return self._paused

    # -- inside the lock
    def _limit(self, t: float) -> float:
        return math.inf if self._interval is None else t + self._interval

    def _add(self, piece: _Piece) -> None:
        self._pieces.append(piece)
        # Forget what no question can still ask about (the first piece kept covers the rest).
        horizon = piece.m0 - self.keep_seconds
        drop = 0
        while drop + 1 < len(self._pieces) and self._pieces[drop + 1].m0 <= horizon:
            drop += 1
        if drop:
            del self._pieces[:drop]
