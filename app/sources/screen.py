"""The screen through mss: :class:`ScreenSource` (a monitor or a region of it, grabbed on a
thread) and :func:`list_monitors`. Linux needs an X11 display (``DISPLAY``)."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from app.sources.base import SourceError, SourceInfo, _check_fps, _LiveSource

__all__ = ["Grabber", "MonitorInfo", "ScreenSource", "list_monitors"]


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


Grabber = Callable[[], np.ndarray]


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
