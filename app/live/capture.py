"""Capture for a live run: open a source and sample it at the model's rate into a mailbox.

:meth:`Capture.run` blocks (run it on a thread of its own): it opens the source, then puts every
sampled frame into the :class:`FrameMailbox`. A file read at the model's pace (not in real time)
waits until each frame was taken, so every sample is processed; a live source (a webcam, the
screen, a file played in real time) leaves only the newest frame, so a slow model never falls
behind. ``pause`` pauses the source itself: a file played in real time stops its clock, so no
second of it goes by unprocessed.

The capture drives the run's :class:`StreamClock` (``app/live/clock.py``): it starts it when the
source opens (a file at the model's pace: paced by the engine's steps), keeps it in step with a
live source's frames (a webcam skips the seconds of a pause), pauses it with the source, and
stops it when the capture ends.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from app.live.clock import StreamClock
from app.live.mailbox import FrameMailbox

log = logging.getLogger(__name__)


def _default_open(spec: str, **kwargs: Any) -> Any:
    from app.sources import open_source

    return open_source(spec, **kwargs)


class Capture:
    """One capture of ``spec`` at ``fps`` samples a second. ``stop``, ``pause`` and ``latest`` may be
    called from any thread. ``clock``: the run's stream clock (the window's controller shares one
    across runs; by default the capture has its own)."""

    def __init__(
        self,
        spec: str,
        fps: float,
        realtime: bool = True,
        open_kwargs: dict[str, Any] | None = None,
        mailbox: FrameMailbox | None = None,
        opener: Callable[..., Any] = _default_open,
        on_opened: Callable[[Any], None] | None = None,  # SourceInfo
        on_frame: Callable[[], None] | None = None,  # a frame waits in the mailbox
        on_error: Callable[[str], None] | None = None,  # user-facing message
        clock: StreamClock | None = None,
    ) -> None:
        self.spec, self.fps, self.realtime = spec, float(fps), realtime
        self.open_kwargs = {"realtime": realtime, **(open_kwargs or {})}  # live sources ignore realtime
        self.mailbox = mailbox or FrameMailbox()
        self.clock = clock or StreamClock()
        self._run_id: int | None = None  # this capture's run of the clock, once the source opened
        self._opener = opener
        self._on_opened, self._on_frame, self._on_error = on_opened, on_frame, on_error
        self._lock = threading.Lock()
        self._source: Any = None
        self._stopped = False
        self.done = False  # run() returned
        self.finished = False  # the file played to its end (not stopped, not failed)
        # A file read at the model's pace that played to its end leaves its clock running: the model
        # still steps the last frame, and the consumer ends the clock when it is done (the runner's
        # close, or stop()).
        self._clock_to_consumer = False
        self.error: str | None = None
        self.info: Any = None

    def latest(self) -> Any:
        source = self._source
        return source.latest() if source is not None else None

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            source = self._source
        self.mailbox.close()
        self._stop_clock()
        if source is not None:
            source.close()  # ends a running frames() generator

    @property
    def stopped(self) -> bool:
        with self._lock:
            return self._stopped

    def pause(self, paused: bool) -> None:
        source = self._source
        if source is not None and hasattr(source, "pause"):
            source.pause(paused)
        if self._run_id is not None and self._run_id == self.clock.run:
            self.clock.pause(paused)

    def _stop_clock(self) -> None:
        run = self._run_id
        if run is not None:
            self.clock.stop(run)

    def _fail(self, message: str) -> None:
        self.error = message
        if self._on_error:
            self._on_error(message)

    def run(self) -> bool:
        """Open and sample until the source ends, fails or ``stop``; True when a file played to its end."""
        from app.sources import SourceError

        try:
            return self._run()
        except SourceError as e:
            self._fail(str(e))
        except Exception as e:  # noqa: BLE001 - a driver or decoder failure
            log.exception("capture of %s failed", self.spec)
            self._fail(f"Capture from {self.spec} failed: {type(e).__name__}: {e}")
        finally:
            if not self._clock_to_consumer:
                self._stop_clock()
            self.done = True
        return False

    def _run(self) -> bool:
        if self.stopped:
            return False
        self.mailbox.open()
        source = self._opener(self.spec, **self.open_kwargs)
        with self._lock:
            self._source = source
            stopped = self._stopped  # stop pressed while it opened
        try:
            if stopped:
                return False
            self.info = source.info
            if self._on_opened:
                self._on_opened(source.info)
            wait = source.kind == "file" and not self.realtime  # every sample, at the model's pace
            # The stream's second 0 is now: a live source's schedule starts with the first frames() call.
            run = self.clock.start(interval=1.0 / self.fps if wait else None)
            with self._lock:
                self._run_id = run
                stopped = self._stopped
            if stopped:  # stop() came before the clock had a run to stop
                return False
            for frame in source.frames(self.fps):
                if not wait:
                    self.clock.sync(frame.t)  # a live source after a pause jumps to the present second
                if not self.mailbox.put(frame, wait=wait):
                    return False
                if self._on_frame:
                    self._on_frame()
            if self.stopped or (source.error is not None):
                if source.error:
                    self._fail(source.error)
                return False
            if wait:  # let the model take the last frame before saying the file is done
                self.mailbox.put(None, wait=True)
                self._clock_to_consumer = True  # it is stepping that frame now: its second goes on
            self.finished = source.kind == "file"
            return self.finished
        finally:
            source.close()
