"""A video file as a frame source: every sample as fast as the consumer reads, or played at its
native speed like a live stream (``realtime=True``).

Stream time ``Frame.t`` is the start of the frame's sampling interval, ``k / fps`` for the
``k``-th interval. The sampled frame of interval ``k`` is frame ``k * step`` with
``step = max(1, int(video_fps / fps))`` and there are ``frame_count // step`` samples, exactly as
the training data were built (``model.protocol.turn_count``). The true media time of a file
frame is ``index / info.fps``; it differs from ``t`` only when ``video_fps / fps`` is not an
integer (29.97 fps video, say).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from app.sources.base import Frame, FrameSource, SourceError, SourceInfo, _bgr_to_rgb, _check_fps
from model.video_probe import MISSING, inspect_video

log = logging.getLogger(__name__)

__all__ = ["VideoFileSource"]


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
        # The one rule (model.video_probe): a file Live plays is a file the clip library and the
        # trainer take, and a file it refuses is refused with the same reason.
        facts = inspect_video(path)
        if facts.problem == MISSING:
            raise SourceError(f"Video file not found: '{path}'. Check the path or choose another file.")
        if not facts.ok:
            raise SourceError(f"Cannot read video file '{path}': {facts.reason}.")
        cap = cv2.VideoCapture(str(path))
        ok, first = cap.read() if cap.isOpened() else (False, None)
        if not ok or first is None:  # it passed the probe a moment ago: changed or removed since
            cap.release()
            raise self._unreadable("it could not be opened again (was it changed or removed?)")
        fps, count = facts.fps, facts.frames
        h, w = first.shape[:2]
        self._cap = cap
        self._next_index = 1  # the decoder sits after frame 0
        self._publish(Frame(_bgr_to_rgb(first), t=0.0, index=0, wall_time=time.time()))
        from app.sources.spec import SourceSpec  # spec.py imports this module

        self._info = SourceInfo(
            spec=str(SourceSpec.file(path)),  # "./webcam" for a file named webcam
            name=path.name,
            kind=self.kind,
            width=int(w),
            height=int(h),
            fps=fps,
            frame_count=count,
            duration=count / fps,
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
                    # Decode ahead, then wait for the frame's presentation time; a pause moves the
                    # clock's start along by the time it lasted.
                    image = self._read_next(True, gen)
                    if image is None:
                        break
                    while not cancel.is_set():
                        start += self._hold(cancel)
                        delay = start + i / native - time.monotonic()
                        if delay <= 0 or cancel.wait(min(delay, 0.05)):
                            break
                    if cancel.is_set():
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
