"""Webcams through OpenCV: :class:`WebcamSource` (a reader thread keeping the newest frame),
:func:`list_cameras`, and the :class:`CaptureLike` protocol that lets tests pass a fake camera."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from app.sources.base import SourceError, SourceInfo, _bgr_to_rgb, _LiveSource

log = logging.getLogger(__name__)

__all__ = [
    "COMMON_RESOLUTIONS",
    "CameraInfo",
    "CaptureFactory",
    "CaptureLike",
    "WebcamSource",
    "list_cameras",
]


#: Resolutions worth offering in a camera picker; the camera may pick the nearest mode it has.
COMMON_RESOLUTIONS: tuple[tuple[int, int], ...] = ((640, 480), (1280, 720), (1920, 1080))


@dataclass(frozen=True)
class CameraInfo:
    index: int
    name: str
    width: int  # the camera's default resolution
    height: int

    @property
    def spec(self) -> str:
        return f"webcam:{self.index}"


class CaptureLike(Protocol):
    """The part of ``cv2.VideoCapture`` the webcam source uses (tests pass a fake)."""

    def isOpened(self) -> bool: ...  # noqa: N802 - OpenCV's name
    def read(self) -> tuple[bool, np.ndarray | None]: ...
    def set(self, prop: int, value: float) -> bool: ...
    def get(self, prop: int) -> float: ...
    def release(self) -> None: ...


CaptureFactory = Callable[[int], CaptureLike]


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
