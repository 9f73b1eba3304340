"""The capture worker and the one-frame mailbox between it and the engine.

:class:`CaptureWorker` lives on the capture thread: it opens the frame source and feeds sampled
frames into a :class:`FrameMailbox`, which holds at most one frame so a slow model never falls
behind a live source (a file not played in real time waits for the model instead). The source's
own reader thread captures; the preview reads ``latest()`` from the GUI thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

from app.settings import SourceOptions

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Frame hand-over


class FrameMailbox:
    """At most one sampled frame between the capture thread and the engine thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Any = None
        self._closed = False

    def put(self, frame: Any, wait: bool = False) -> bool:
        """Leave ``frame``; an untaken older one is dropped, or with ``wait`` first taken.
        Returns False once the mailbox is closed."""
        with self._cond:
            while wait and self._frame is not None and not self._closed:
                self._cond.wait()
            if self._closed:
                return False
            self._frame = frame
            return True

    def take(self) -> Any:
        with self._cond:
            frame, self._frame = self._frame, None
            self._cond.notify_all()
            return frame

    def has_frame(self) -> bool:
        with self._cond:
            return self._frame is not None

    def open(self) -> None:
        with self._cond:
            self._closed, self._frame = False, None

    def close(self) -> None:
        with self._cond:
            self._closed, self._frame = True, None
            self._cond.notify_all()


# ---------------------------------------------------------------------------------------------
# Capture


def _default_open(spec: str, **kwargs: Any) -> Any:
    from app.sources import open_source

    return open_source(spec, **kwargs)


@dataclass(frozen=True)
class CaptureRequest:
    options: SourceOptions
    fps: float  # model steps per second: the sampling rate
    generation: int  # increases with every request; stop(generation) cancels it and older ones


class CaptureWorker(QObject):
    """Opens a source and samples it at the model's rate. ``stop`` and ``latest`` may be called
    from any thread (the preview reads ``latest`` from the GUI thread)."""

    source_opened = Signal(object)  # app.sources.SourceInfo
    frame_sampled = Signal()  # a Frame waits in the mailbox
    source_failed = Signal(str)  # user-facing message
    source_ended = Signal(bool)  # True at the end of a file, False when stopped or failed

    def __init__(self, mailbox: FrameMailbox, opener: Callable[..., Any] = _default_open) -> None:
        super().__init__()
        self._mailbox = mailbox
        self._opener = opener
        self._source: Any = None
        self._lock = threading.Lock()
        # A request may still wait in this thread's queue when Stop is pressed; it must not start
        # afterwards. Requests up to this generation are cancelled.
        self._stopped_generation = 0

    def latest(self) -> Any:
        source = self._source
        return source.latest() if source is not None else None

    def stop(self, generation: int) -> None:
        """Cancel request ``generation`` and older ones, whether running or still queued."""
        with self._lock:
            self._stopped_generation = max(self._stopped_generation, generation)
            source = self._source
        self._mailbox.close()
        if source is not None:
            source.close()  # ends a running frames() generator

    def _cancelled(self, generation: int) -> bool:
        with self._lock:
            return generation <= self._stopped_generation

    @Slot(object)
    def on_start_requested(self, request: CaptureRequest) -> None:
        from app.sources import SourceError

        options, generation = request.options, request.generation
        if self._cancelled(generation):
            self.source_ended.emit(False)
            return
        self._mailbox.open()
        try:
            source = self._opener(options.spec, **options.open_kwargs())
        except SourceError as e:
            self.source_failed.emit(str(e))
            self.source_ended.emit(False)
            return
        except Exception as e:  # noqa: BLE001
            log.exception("opening %s failed", options.spec)
            self.source_failed.emit(f"Could not open {options.spec}: {type(e).__name__}: {e}")
            self.source_ended.emit(False)
            return
        with self._lock:
            self._source = source
            cancelled = generation <= self._stopped_generation  # Stop pressed while it opened
        if cancelled:
            source.close()
            self.source_ended.emit(False)
            return
        self.source_opened.emit(source.info)
        wait = source.kind == "file" and not options.realtime  # every sample, at the model's pace
        finished = False
        try:
            for frame in source.frames(request.fps):
                if not self._mailbox.put(frame, wait=wait):
                    break
                self.frame_sampled.emit()
            else:
                finished = not self._cancelled(generation)
        except SourceError as e:
            self.source_failed.emit(str(e))
        except Exception as e:  # noqa: BLE001
            log.exception("capture of %s failed", options.spec)
            self.source_failed.emit(f"Capture from {options.spec} failed: {type(e).__name__}: {e}")
        finally:
            source.close()
        if finished and wait:
            # Let the model take the last frame before saying the file is done.
            self._mailbox.put(None, wait=True)
        self.source_ended.emit(finished)
