"""The frame source interface: :class:`Frame`, :class:`SourceInfo`, :class:`SourceError`,
:class:`FrameSource` and the wall-clock paced base of the live sources, with small helpers.

Every source hands out :class:`Frame` objects holding an RGB ``uint8`` image. Two ways to read:

* ``latest()`` - the newest captured frame, cheap and non-blocking, for a 25-30 fps preview;
* ``frames(fps)`` - a generator of *sampled* frames (1 fps by default) for the model.

Live sources (:class:`_LiveSource`: webcam and screen) keep only the newest frame on a reader
thread and sample it on a wall-clock schedule; a slow consumer skips intervals instead of
queueing them.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import TypeVar

import cv2
import numpy as np

log = logging.getLogger(__name__)

__all__ = ["Frame", "FrameSource", "SourceError", "SourceInfo"]


class SourceError(Exception):
    """A source cannot be opened or stopped delivering; the message tells the user what to do."""


@dataclass(frozen=True, eq=False)
class Frame:
    """One captured frame. Treat ``image`` as read-only: it may be shared with the preview."""

    image: np.ndarray = field(repr=False)  # (H, W, 3) uint8 RGB
    t: float  # stream seconds: start of this frame's sampling interval
    index: int  # frame number in the source (file frame index, or capture counter)
    wall_time: float  # time.time() when the frame was captured / decoded

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return int(self.image.shape[1]), int(self.image.shape[0])


@dataclass(frozen=True)
class SourceInfo:
    spec: str  # recreates the source with open_source()
    name: str  # human readable, for the window title / status bar
    kind: str  # "file" | "webcam" | "screen"
    width: int
    height: int
    fps: float | None  # native rate: the file's, the camera's, or the screen capture rate
    frame_count: int | None = None  # files only
    duration: float | None = None  # files only, seconds


_S = TypeVar("_S", bound="FrameSource")


def _bgr_to_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _check_fps(fps: float) -> float:
    fps = float(fps)
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    return fps


# ---------------------------------------------------------------------------------------------
# Base classes


class FrameSource(ABC):
    """Common life cycle. ``open()`` is idempotent and returns ``self``; ``close()`` may be called
    from any thread and makes a running ``frames()`` generator end."""

    kind: str = ""

    def __init__(self) -> None:
        self._info: SourceInfo | None = None
        self._latest: Frame | None = None
        self._latest_lock = threading.Lock()
        self._stop = threading.Event()
        self._opened = False
        self._running = threading.Event()  # cleared while paused
        self._running.set()

    # -- pausing
    def pause(self, paused: bool) -> None:
        """Hold ``frames()``: a file played in real time stops its clock (no second of it goes by
        unseen); a live source yields nothing while paused and skips the seconds it missed (the
        world does not pause). A file read as fast as the consumer goes needs no pause: it waits
        for the consumer anyway. May be called from any thread."""
        if paused:
            self._running.clear()
        else:
            self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def _hold(self, cancel: threading.Event | None = None) -> float:
        """Wait while paused (until resumed, closed or ``cancel``); returns the seconds waited."""
        if self._running.is_set():
            return 0.0
        started = time.monotonic()
        while not self._running.wait(0.05):
            if self._stop.is_set() or (cancel is not None and cancel.is_set()):
                break
        return time.monotonic() - started

    # -- life cycle
    def open(self: _S) -> _S:
        if not self._opened:
            self._stop.clear()
            self._open()
            self._opened = True
        return self

    def close(self) -> None:
        if self._opened:
            self._opened = False
            self._stop.set()
            self._close()

    @property
    def is_open(self) -> bool:
        return self._opened

    def __enter__(self: _S) -> _S:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # A forgotten source must not keep a camera busy or a thread alive after the GC gets it.
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: nothing useful to do
            pass

    @property
    def info(self) -> SourceInfo:
        if self._info is None:
            raise RuntimeError(f"{type(self).__name__} is not open; call open() first")
        return self._info

    @property
    def error(self) -> str | None:
        """Why a live source stopped delivering (device gone), for the preview to show; None
        while it works. ``frames()`` raises the same message as SourceError."""
        return None

    # -- reading
    def latest(self) -> Frame | None:
        with self._latest_lock:
            return self._latest

    def _publish(self, frame: Frame) -> None:
        with self._latest_lock:
            self._latest = frame

    @abstractmethod
    def frames(self, fps: float = 1.0) -> Iterator[Frame]:
        """Sampled frames with ``t = k / fps``; ends at end of file or when the source is closed."""

    @abstractmethod
    def _open(self) -> None: ...

    @abstractmethod
    def _close(self) -> None: ...

    def _require_open(self) -> None:
        if not self._opened:
            raise RuntimeError(f"{type(self).__name__} is not open; call open() first")


class _LiveSource(FrameSource):
    """A source whose reader thread keeps only the newest frame; ``frames()`` samples it on a
    wall-clock schedule. Subclasses implement ``_run_reader`` and ``_describe_stall``."""

    #: How long the newest frame may be old before frames() gives up on the device.
    stall_timeout: float = 5.0
    #: How long reads may fail in a row before the device counts as gone (cameras drop frames).
    read_failure_grace: float = 1.0

    def __init__(self) -> None:
        super().__init__()
        self._reader: threading.Thread | None = None
        self._reader_error: str | None = None
        self._first_frame = threading.Event()
        self._new_frame = threading.Condition()
        self._count = 0
        self._last_push = 0.0  # monotonic: wall_time may jump with NTP, stall checks must not

    @property
    def error(self) -> str | None:
        return self._reader_error

    def _start_reader(self, name: str) -> None:
        self._reader_error = None
        self._first_frame.clear()
        self._reader = threading.Thread(target=self._reader_main, name=name, daemon=True)
        self._reader.start()

    def _reader_main(self) -> None:
        try:
            self._run_reader()
        except Exception as e:  # noqa: BLE001 - reported to the consumer through frames()
            log.exception("%s reader failed", type(self).__name__)
            self._fail(f"{self._describe_stall()} ({e})")
        finally:
            with self._new_frame:
                self._new_frame.notify_all()

    @abstractmethod
    def _run_reader(self) -> None: ...

    @abstractmethod
    def _describe_stall(self) -> str: ...

    def _fail(self, message: str) -> None:
        if self._reader_error is None:
            self._reader_error = message
        with self._new_frame:
            self._new_frame.notify_all()

    def _push(self, rgb: np.ndarray) -> None:
        frame = Frame(rgb, t=0.0, index=self._count, wall_time=time.time())
        self._count += 1
        self._last_push = time.monotonic()
        self._publish(frame)
        self._first_frame.set()
        with self._new_frame:
            self._new_frame.notify_all()

    def _stop_reader(self, timeout: float = 2.0) -> None:
        self._stop.set()
        with self._new_frame:
            self._new_frame.notify_all()
        reader, self._reader = self._reader, None
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout)
            if reader.is_alive():
                # The thread owns the device and releases it itself once its blocking read returns.
                log.warning("%s reader did not stop within %.1f s", type(self).__name__, timeout)

    def _wait_first_frame(self, timeout: float, message: str) -> None:
        """Block until the reader delivered a frame; a reader error that comes first is raised
        as it is, a timeout with ``message``."""
        deadline = time.monotonic() + timeout
        while not self._first_frame.wait(0.02):
            if self._reader_error is not None:
                raise SourceError(self._reader_error)
            if time.monotonic() > deadline:
                raise SourceError(message)

    def _current(self) -> Frame:
        """The newest frame, or SourceError when the device failed or went quiet."""
        frame = self.latest()
        if self._reader_error is not None:
            raise SourceError(self._reader_error)
        if frame is None or time.monotonic() - self._last_push > self.stall_timeout:
            # Give the device one more chance before declaring it dead.
            with self._new_frame:
                self._new_frame.wait(self.stall_timeout if frame is None else 0.5)
            frame = self.latest()
            if self._reader_error is not None:
                raise SourceError(self._reader_error)
            if frame is None or time.monotonic() - self._last_push > self.stall_timeout:
                raise SourceError(self._describe_stall())
        return frame

    def frames(self, fps: float = 1.0) -> Iterator[Frame]:
        self._require_open()
        interval = 1.0 / _check_fps(fps)
        start = time.monotonic()
        k = 0
        while True:
            delay = start + k * interval - time.monotonic()
            if self._stop.wait(max(0.0, delay)) or not self._opened:
                return
            if self._hold():  # paused: the seconds it lasted are skipped below
                if self._stop.is_set() or not self._opened:
                    return
                k = max(k, int((time.monotonic() - start) / interval))
            frame = self._current()
            yield Frame(frame.image, t=k * interval, index=frame.index, wall_time=frame.wall_time)
            # A slow consumer skips the intervals it missed instead of being fed stale frames.
            due = int((time.monotonic() - start) / interval + 1e-9)
            k = max(k + 1, due)
