"""Frame sources: a video file, a webcam or the screen behind one interface.

Every source hands out :class:`Frame` objects holding an RGB ``uint8`` image. Two ways to read:

* ``latest()`` - the newest captured frame, cheap and non-blocking, for a 25-30 fps preview;
* ``frames(fps)`` - a generator of *sampled* frames (1 fps by default) for the model.

Stream time ``Frame.t`` is the start of the frame's sampling interval, ``k / fps`` for the
``k``-th interval, which is what the model's ``<Xs-Ys>`` labels count. For video files the
sampled frame of interval ``k`` is frame ``k * step`` with ``step = max(1, int(video_fps / fps))``
and there are ``frame_count // step`` samples, exactly as the training data were built
(``model.protocol.turn_count``). The true media time of a file frame is ``index / info.fps``;
it differs from ``t`` only when ``video_fps / fps`` is not an integer (29.97 fps video, say).

Live sources (webcam, screen, and files with ``realtime=True``) are paced by the wall clock and
never queue up: when the consumer is slower than ``fps`` the missed intervals are skipped, so
``t`` keeps tracking the wall clock the way a live stream must.

No Qt here: the GUI polls ``latest()`` from a timer and runs ``frames()`` on a worker thread.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

import cv2
import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "COMMON_RESOLUTIONS",
    "CameraInfo",
    "CaptureLike",
    "Frame",
    "FrameSource",
    "MonitorInfo",
    "ScreenSource",
    "SourceError",
    "SourceInfo",
    "VideoFileSource",
    "WebcamSource",
    "list_cameras",
    "list_monitors",
    "open_source",
    "parse_source",
]

#: Resolutions worth offering in a camera picker; the camera may pick the nearest mode it has.
COMMON_RESOLUTIONS: tuple[tuple[int, int], ...] = ((640, 480), (1280, 720), (1920, 1080))


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


@dataclass(frozen=True)
class CameraInfo:
    index: int
    name: str
    width: int  # the camera's default resolution
    height: int

    @property
    def spec(self) -> str:
        return f"webcam:{self.index}"


@dataclass(frozen=True)
class MonitorInfo:
    index: int  # mss numbering: 0 = all monitors together, 1.. = single monitors
    left: int
    top: int
    width: int
    height: int
    is_primary: bool = False
    output: str = ""  # xrandr output name where known

    @property
    def name(self) -> str:
        where = f"{self.width}x{self.height} at {self.left},{self.top}"
        if self.index == 0:
            return f"All monitors ({where})"
        label = f"Monitor {self.index}"
        if self.output:
            label += f" {self.output}"
        return f"{label} ({where}{', primary' if self.is_primary else ''})"

    @property
    def spec(self) -> str:
        return f"screen:{self.index}"


class CaptureLike(Protocol):
    """The part of ``cv2.VideoCapture`` the webcam source uses (tests pass a fake)."""

    def isOpened(self) -> bool: ...  # noqa: N802 - OpenCV's name
    def read(self) -> tuple[bool, np.ndarray | None]: ...
    def set(self, prop: int, value: float) -> bool: ...
    def get(self, prop: int) -> float: ...
    def release(self) -> None: ...


CaptureFactory = Callable[[int], CaptureLike]
Grabber = Callable[[], np.ndarray]
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
            frame = self._current()
            yield Frame(frame.image, t=k * interval, index=frame.index, wall_time=frame.wall_time)
            # A slow consumer skips the intervals it missed instead of being fed stale frames.
            due = int((time.monotonic() - start) / interval + 1e-9)
            k = max(k + 1, due)


# ---------------------------------------------------------------------------------------------
# Video file


class VideoFileSource(FrameSource):
    """A video file. ``realtime=False`` (default): every sample, as fast as the consumer reads.
    ``realtime=True``: played at its native speed on a player thread, like a live stream
    (``latest()`` then advances at the file's frame rate, for a smooth preview)."""

    kind = "file"

    def __init__(self, path: str | os.PathLike[str], realtime: bool = False) -> None:
        super().__init__()
        self.path = Path(path)
        self.realtime = realtime
        self._cap: Any = None
        self._cap_lock = threading.Lock()  # close() may run on another thread than frames()
        self._player: threading.Thread | None = None
        self._gen = 0  # frames() generation: the newest call owns the decoder
        self._next_index = 0  # index of the frame the decoder returns next
        self._cancel = threading.Event()  # ends the current realtime player

    def _unreadable(self, why: str) -> SourceError:
        return SourceError(
            f"Cannot read video file '{self.path}': {why}. Choose another file or re-encode it (H.264 MP4 works)."
        )

    def _open(self) -> None:
        path = self.path
        if not path.exists():
            raise SourceError(f"Video file not found: '{path}'. Check the path or choose another file.")
        if path.is_dir():
            raise SourceError(f"'{path}' is a folder, not a video file. Choose a video file.")
        if not os.access(path, os.R_OK):
            raise SourceError(f"Cannot read video file '{path}': permission denied.")
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            cap.release()
            raise self._unreadable("the file is corrupt or not a supported video format")
        ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            raise self._unreadable("it contains no decodable video frames (corrupt or truncated?)")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not (0 < fps <= 1000 and math.isfinite(fps)):
            log.warning("%s reports a frame rate of %r; assuming 30 fps", path, fps)
            fps = 30.0
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        h, w = first.shape[:2]
        self._cap = cap
        self._next_index = 1  # the decoder sits after frame 0
        self._publish(Frame(_bgr_to_rgb(first), t=0.0, index=0, wall_time=time.time()))
        self._info = SourceInfo(
            spec=str(path),
            name=path.name,
            kind=self.kind,
            width=int(w),
            height=int(h),
            fps=fps,
            frame_count=count if count > 0 else None,
            duration=count / fps if count > 0 else None,
        )

    def _close(self) -> None:
        self._cancel.set()
        player, self._player = self._player, None
        if player is not None and player is not threading.current_thread():
            player.join(2.0)
        with self._cap_lock:
            if self._cap is not None:
                self._cap.release()
                self._cap = None

    def step_for(self, fps: float) -> int:
        """Source frames per sample at ``fps`` (the training data's rule)."""
        return max(1, int(self.info.fps / _check_fps(fps)))  # type: ignore[operator]

    def sample_count(self, fps: float = 1.0) -> int | None:
        """How many samples ``frames(fps)`` yields (``frame_count // step``); None if unknown."""
        count = self.info.frame_count
        return None if count is None else count // self.step_for(fps)

    def _rewind(self) -> None:
        """Back to frame 0. Reopening is exact for every container, unlike a seek. Caller holds
        ``_cap_lock``."""
        if self._next_index != 0:
            self._cap.release()
            self._cap = cv2.VideoCapture(str(self.path))
            if not self._cap.isOpened():
                self._cap = None
                raise self._unreadable("it could not be reopened")
            self._next_index = 0

    def _read_next(self, decode: bool, gen: int) -> np.ndarray | None:
        """Advance one frame; decode to RGB only when asked (grab() alone skips the colour
        conversion). None at end of file, after close(), or once a newer frames() call took
        over the decoder (``gen`` is the caller's frames() generation)."""
        with self._cap_lock:
            cap = self._cap
            if cap is None or gen != self._gen:
                return None
            if decode:
                ok, bgr = cap.read()
            else:
                ok, bgr = cap.grab(), None
            if not ok:
                return None
            self._next_index += 1
        return _bgr_to_rgb(bgr) if decode and bgr is not None else np.empty(0, np.uint8)

    def frames(self, fps: float = 1.0) -> Iterator[Frame]:
        """Samples from the start of the file. Starting to iterate a new frames() generator ends
        any earlier one of this source and restarts from frame 0."""
        self._require_open()
        step = self.step_for(fps)
        n = self.sample_count(fps)
        # Take over the decoder: stop an earlier realtime player before rewinding under it.
        with self._cap_lock:
            self._gen += 1
            gen = self._gen
            previous, self._cancel = self._cancel, threading.Event()
        previous.set()
        player = self._player
        if player is not None and player is not threading.current_thread():
            player.join(2.0)
        with self._cap_lock:
            if self._cap is None or gen != self._gen:
                return
            self._rewind()
        if self.realtime:
            yield from self._frames_realtime(fps, step, n, gen, self._cancel)
        else:
            yield from self._frames_fast(fps, step, n, gen)

    def _frames_fast(self, fps: float, step: int, n: int | None, gen: int) -> Iterator[Frame]:
        k = 0
        while (n is None or k < n) and not self._stop.is_set() and gen == self._gen:
            target = k * step
            image = None
            while self._next_index <= target:
                image = self._read_next(self._next_index == target, gen)
                if image is None:
                    if n is not None and gen == self._gen and self._opened:
                        log.warning(
                            "%s ended at frame %d, before the %d frames it reports",
                            self.path,
                            self._next_index,
                            self.info.frame_count,
                        )
                    return
            frame = Frame(image, t=k / fps, index=target, wall_time=time.time())  # type: ignore[arg-type]
            self._publish(frame)
            yield frame
            k += 1

    def _frames_realtime(
        self, fps: float, step: int, n: int | None, gen: int, cancel: threading.Event
    ) -> Iterator[Frame]:
        mailbox: list[Frame] = []  # at most one: the newest sample not yet taken
        cond = threading.Condition()
        done = threading.Event()
        native = float(self.info.fps)  # type: ignore[arg-type]

        def play() -> None:
            start = time.monotonic()
            try:
                while not cancel.is_set():
                    i = self._next_index
                    if n is not None and i >= n * step:
                        break
                    # Decode ahead, then wait for the frame's presentation time.
                    image = self._read_next(True, gen)
                    if image is None:
                        break
                    delay = start + i / native - time.monotonic()
                    if delay > 0 and cancel.wait(delay):
                        break
                    frame = Frame(image, t=(i // step) / fps, index=i, wall_time=time.time())
                    self._publish(frame)
                    if i % step == 0:
                        with cond:
                            mailbox[:] = [frame]  # an untaken older sample is dropped, as live
                            cond.notify_all()
            finally:
                done.set()
                with cond:
                    cond.notify_all()

        player = threading.Thread(target=play, name=f"player:{self.path.name}", daemon=True)
        self._player = player
        player.start()
        try:
            while True:
                with cond:
                    while not mailbox and not done.is_set():
                        cond.wait(0.1)
                    if not mailbox:
                        return
                    frame = mailbox.pop()
                yield frame
        finally:
            cancel.set()
            if player is not threading.current_thread():
                player.join(2.0)
            if self._player is player:
                self._player = None


# ---------------------------------------------------------------------------------------------
# Webcam


def _camera_name(index: int) -> str:
    # Linux exposes the product name; elsewhere OpenCV has no portable way to ask.
    try:
        name = Path(f"/sys/class/video4linux/video{index}/name").read_text(encoding="utf-8").strip()
    except OSError:
        name = ""
    return f"Camera {index}" + (f" ({name})" if name else "")


class _QuietOpenCV:
    """Silence OpenCV's console warnings while probing absent camera indices."""

    def __enter__(self) -> None:
        try:
            self._old = cv2.utils.logging.getLogLevel()
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        except AttributeError:
            self._old = None

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            cv2.utils.logging.setLogLevel(self._old)


def _default_capture_factory(index: int) -> CaptureLike:
    return cv2.VideoCapture(index)


def list_cameras(max_index: int = 5, capture_factory: CaptureFactory | None = None) -> list[CameraInfo]:
    """Cameras at indices ``0..max_index-1`` that open. Opening a camera takes a moment; call
    this off the GUI thread. A camera in use by another program may be missing from the list."""
    factory = capture_factory or _default_capture_factory
    found: list[CameraInfo] = []
    for index in range(max_index):
        # Skip absent devices without touching them: probing is slow and noisy otherwise.
        if capture_factory is None and sys.platform.startswith("linux") and not os.path.exists(f"/dev/video{index}"):
            continue
        with _QuietOpenCV():
            try:
                cap = factory(index)
            except Exception:  # noqa: BLE001 - a broken device is just not listed
                continue
        try:
            if not cap.isOpened():
                continue
            w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
            h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
            found.append(CameraInfo(index=index, name=_camera_name(index), width=w, height=h))
        finally:
            cap.release()
    return found


class WebcamSource(_LiveSource):
    """A camera read by a background thread that keeps only the newest frame.

    ``width``/``height`` request a resolution; the camera may choose the nearest one it has,
    ``info`` reports what it delivers. ``capture_factory(index)`` must return an object with the
    ``cv2.VideoCapture`` methods in :class:`CaptureLike` (tests use a video file)."""

    kind = "webcam"

    def __init__(
        self,
        index: int = 0,
        width: int | None = None,
        height: int | None = None,
        capture_factory: CaptureFactory | None = None,
        first_frame_timeout: float = 5.0,
    ) -> None:
        super().__init__()
        self.index = int(index)
        self.width = width
        self.height = height
        self.capture_factory = capture_factory
        self.first_frame_timeout = first_frame_timeout
        self._cap: Any = None

    def _describe_stall(self) -> str:
        return (
            f"Camera {self.index} stopped delivering frames. Check that it is still connected "
            "and not taken over by another application, then restart the source."
        )

    def _open(self) -> None:
        factory = self.capture_factory or _default_capture_factory
        with _QuietOpenCV():
            try:
                cap = factory(self.index)
            except Exception as e:  # noqa: BLE001 - surfaced as a user-facing error
                raise SourceError(f"Camera {self.index} could not be opened: {e}") from e
        if not cap.isOpened():
            cap.release()
            raise SourceError(self._missing_message())
        try:
            if hasattr(cv2, "CAP_PROP_BUFFERSIZE"):
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # less latency where the backend allows it
            if self.width and self.height:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, float(self.width))
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, float(self.height))
            native = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        except Exception:
            cap.release()
            raise
        self._cap = cap
        self._start_reader(f"webcam:{self.index}")
        busy = (
            f"Camera {self.index} opened but returned no frames within {self.first_frame_timeout:g} s. "
            "It may be in use by another application (video call, browser tab); close that "
            "application or choose another source."
        )
        try:
            self._wait_first_frame(self.first_frame_timeout, busy)
        except SourceError as e:
            self._stop_reader()
            raise SourceError(busy) from e
        first = self.latest()
        assert first is not None
        h, w = first.image.shape[:2]
        if self.width and self.height and (w, h) != (self.width, self.height):
            log.info(
                "camera %d delivers %dx%d instead of the requested %dx%d", self.index, w, h, self.width, self.height
            )
        self._info = SourceInfo(
            spec=f"webcam:{self.index}",
            name=_camera_name(self.index),
            kind=self.kind,
            width=int(w),
            height=int(h),
            fps=native if 0 < native <= 1000 else None,
        )

    def _missing_message(self) -> str:
        device = f"/dev/video{self.index}"
        if sys.platform.startswith("linux") and self.capture_factory is None and os.path.exists(device):
            return (
                f"Camera {self.index} ({device}) exists but could not be opened. It may be in use by "
                "another application, or you may lack permission (add your user to the 'video' group)."
            )
        others = [c for c in list_cameras(capture_factory=self.capture_factory) if c.index != self.index]
        listing = ", ".join(c.name for c in others) if others else "none"
        return f"No camera at index {self.index}. Connect a camera or choose another source; found cameras: {listing}."

    def _run_reader(self) -> None:
        cap = self._cap
        failing_since: float | None = None
        try:
            while not self._stop.is_set():
                ok, bgr = cap.read()
                if ok and bgr is not None:
                    failing_since = None
                    self._push(_bgr_to_rgb(bgr))
                    continue
                now = time.monotonic()
                failing_since = failing_since or now
                # Cameras drop the odd frame, and some fail their first reads while warming up.
                grace = self.read_failure_grace if self._first_frame.is_set() else self.first_frame_timeout
                if now - failing_since > grace:
                    self._fail(self._describe_stall())
                    return
                self._stop.wait(0.01)
        finally:
            cap.release()  # on this thread: it may still have been blocked in read()

    def _close(self) -> None:
        self._stop_reader()


# ---------------------------------------------------------------------------------------------
# Screen


def _new_mss() -> Any:
    import mss

    # mss >= 10.2 deprecates the mss.mss() factory in favour of the MSS class.
    return mss.MSS() if hasattr(mss, "MSS") else mss.mss()


def _connect_mss(stop: threading.Event | None = None) -> Any:
    """An mss instance, or SourceError saying which display refused."""
    for attempt in range(3):
        try:
            return _new_mss()
        except Exception as e:  # noqa: BLE001 - mss raises platform-specific errors
            # A bare X server (Xvfb without -noreset) resets when its last client leaves and
            # refuses connections for a moment; a real session would fail every time.
            if attempt < 2 and not (stop or threading.Event()).wait(0.2):
                continue
            display = os.environ.get("DISPLAY", "")
            where = f" on display {display}" if display else ""
            raise SourceError(
                f"Cannot capture the screen{where}: {e}. Check that DISPLAY names a running X session, "
                "or choose another source."
            ) from e
    raise AssertionError("unreachable")


def _no_display_message() -> str | None:
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        if os.environ.get("WAYLAND_DISPLAY"):
            return (
                "Screen capture needs X11, but DISPLAY is unset (Wayland session without XWayland?). "
                "Log in with an X11 session or start the app under XWayland."
            )
        return (
            "Screen capture needs a display, but DISPLAY is unset. Run the app inside a desktop "
            "session (or a virtual one such as Xvfb) or choose another source."
        )
    return None


def _monitor_infos(monitors: list[dict[str, Any]]) -> list[MonitorInfo]:
    return [
        MonitorInfo(
            index=i,
            left=int(m["left"]),
            top=int(m["top"]),
            width=int(m["width"]),
            height=int(m["height"]),
            is_primary=bool(m.get("is_primary", False)),
            output=str(m.get("output") or m.get("name") or ""),
        )
        for i, m in enumerate(monitors)
    ]


def list_monitors() -> list[MonitorInfo]:
    """Monitors as mss numbers them: index 0 is all monitors together, 1.. single monitors.
    Raises SourceError when the screen cannot be captured (no display)."""
    message = _no_display_message()
    if message:
        raise SourceError(message)
    with _connect_mss() as sct:
        try:
            return _monitor_infos(list(sct.monitors))
        except Exception as e:  # noqa: BLE001 - mss raises platform-specific errors
            raise SourceError(f"Cannot list the monitors: {e}") from e


def _describe_monitors(monitors: list[MonitorInfo]) -> str:
    return "; ".join(f"{m.index} = {m.name}" for m in monitors) or "none"


class ScreenSource(_LiveSource):
    """A monitor or a region of it, grabbed ``capture_fps`` times a second on a thread.

    ``region=(x, y, w, h)`` is relative to the monitor's top-left corner. ``grabber``, for
    tests, replaces mss: a callable returning an (H, W, 3) RGB uint8 array."""

    kind = "screen"

    def __init__(
        self,
        monitor: int = 1,
        region: tuple[int, int, int, int] | None = None,
        capture_fps: float = 15.0,
        grabber: Grabber | None = None,
    ) -> None:
        super().__init__()
        self.monitor = int(monitor)
        self.region = tuple(int(v) for v in region) if region is not None else None
        self.capture_fps = _check_fps(capture_fps)
        self.grabber = grabber
        self._bbox: dict[str, int] | None = None

    @property
    def spec(self) -> str:
        spec = f"screen:{self.monitor}"
        if self.region:
            spec += "@" + ",".join(str(v) for v in self.region)
        return spec

    def _describe_stall(self) -> str:
        return f"Screen capture of {self.spec} stopped working (display closed or changed?). Restart the source."

    def _resolve_bbox(self, monitors: list[MonitorInfo]) -> dict[str, int]:
        if not 0 <= self.monitor < len(monitors):
            raise SourceError(f"No monitor {self.monitor}. Available monitors: {_describe_monitors(monitors)}.")
        m = monitors[self.monitor]
        if self.region is None:
            return {"left": m.left, "top": m.top, "width": m.width, "height": m.height}
        x, y, w, h = self.region
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > m.width or y + h > m.height:
            raise SourceError(
                f"Region {x},{y},{w},{h} does not fit on monitor {self.monitor} "
                f"({m.width}x{m.height}); x,y,w,h must lie inside the monitor."
            )
        return {"left": m.left + x, "top": m.top + y, "width": w, "height": h}

    @staticmethod
    def _grab_rgb(sct: Any, bbox: dict[str, int]) -> np.ndarray:
        shot = sct.grab(bbox)
        return cv2.cvtColor(np.asarray(shot), cv2.COLOR_BGRA2RGB)

    def _grab_injected(self) -> np.ndarray:
        image = np.asarray(self.grabber())  # type: ignore[misc]
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise SourceError(f"Screen grabber returned {image.shape} {image.dtype}; expected (H, W, 3) uint8")
        return image

    def _open(self) -> None:
        if self.grabber is None:
            message = _no_display_message()
            if message:
                raise SourceError(message)
        # The capture thread makes the first grab itself, so errors (no such monitor, X refuses
        # the connection) surface here in open(). One X connection, owned by that thread:
        # connections are not safely shared across threads, and connecting twice in a row
        # trips over X servers that reset when their last client leaves (plain Xvfb).
        self._start_reader(f"screen:{self.monitor}")
        try:
            self._wait_first_frame(10.0, f"Screen capture of {self.spec} delivered no image within 10 s.")
        except SourceError:
            self._stop_reader()
            raise
        first = self.latest()
        assert first is not None
        h, w = first.image.shape[:2]
        name = f"Screen {self.monitor}" + (f" region {self.region[2]}x{self.region[3]}" if self.region else "")
        self._info = SourceInfo(
            spec=self.spec, name=name, kind=self.kind, width=int(w), height=int(h), fps=self.capture_fps
        )

    def _connect(self) -> tuple[Any, dict[str, int]]:
        sct = _connect_mss(self._stop)
        try:
            return sct, self._resolve_bbox(_monitor_infos(list(sct.monitors)))
        except BaseException:
            sct.close()
            raise

    def _run_reader(self) -> None:
        interval = 1.0 / self.capture_fps
        sct = None
        try:
            if self.grabber is None:
                try:
                    sct, bbox = self._connect()
                except SourceError as e:
                    self._fail(str(e))
                    return
                self._bbox = bbox
            while True:
                try:
                    image = self._grab_injected() if sct is None else self._grab_rgb(sct, self._bbox)  # type: ignore[arg-type]
                except SourceError as e:
                    self._fail(str(e))
                    return
                self._push(image)
                if self._stop.wait(interval):
                    return
        finally:
            if sct is not None:
                sct.close()

    def _close(self) -> None:
        self._stop_reader()


# ---------------------------------------------------------------------------------------------
# Specs

_WEBCAM_RE = re.compile(r"^webcam(?::(\d+))?(?:@(\d+)x(\d+))?$", re.IGNORECASE)
_SCREEN_RE = re.compile(r"^screen(?::(\d+))?(?:@(-?\d+),(-?\d+),(\d+),(\d+))?$", re.IGNORECASE)
_LIVE_IGNORED = ("realtime",)  # live sources are always real time


def parse_source(spec: str, **opts: Any) -> FrameSource:
    """Build an unopened source from a spec:

    * ``webcam``, ``webcam:N``, ``webcam:N@WxH`` (requested resolution);
    * ``screen`` (monitor 1), ``screen:N`` (0 = all monitors), ``screen:N@x,y,w,h`` (region
      relative to monitor N);
    * anything else is a video file path (write ``./webcam`` for a file of that name).

    ``opts`` go to the source's constructor; ``realtime`` is ignored for live sources.
    """
    text = spec.strip()
    lowered = text.lower()
    if lowered.startswith("webcam"):
        m = _WEBCAM_RE.match(text)
        if not m:
            raise SourceError(f"Invalid source '{spec}': expected webcam, webcam:N or webcam:N@WIDTHxHEIGHT.")
        index, w, h = m.groups()
        live_opts = {k: v for k, v in opts.items() if k not in _LIVE_IGNORED}
        if w and h:
            live_opts.setdefault("width", int(w))
            live_opts.setdefault("height", int(h))
        return WebcamSource(int(index or 0), **live_opts)
    if lowered.startswith("screen"):
        m = _SCREEN_RE.match(text)
        if not m:
            raise SourceError(f"Invalid source '{spec}': expected screen, screen:N or screen:N@x,y,w,h.")
        index, *region = m.groups()
        live_opts = {k: v for k, v in opts.items() if k not in _LIVE_IGNORED}
        if region[0] is not None:
            live_opts.setdefault("region", tuple(int(v) for v in region))
        return ScreenSource(int(index) if index is not None else 1, **live_opts)
    if not text:
        raise SourceError("No source given: choose a video file, webcam or screen.")
    return VideoFileSource(os.path.expanduser(text), **opts)


def open_source(spec: str, **opts: Any) -> FrameSource:
    """``parse_source(spec, **opts).open()``: an opened source (use it in a ``with`` block)."""
    return parse_source(spec, **opts).open()
