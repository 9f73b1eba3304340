"""A video file as a frame source: every sample as fast as the consumer reads, or played at its
native speed like a live stream (``realtime=True``).

Stream time ``Frame.t`` is the start of the frame's sampling interval, ``k / fps`` for the
``k``-th interval. The sample of interval ``k`` is the decoded frame whose presentation time (the
container's timestamp, OpenCV's ``CAP_PROP_POS_MSEC`` after each read) is nearest ``k / fps``,
variable frame rate included: the one inference rule, ``model.frame_times``. There are
``floor(duration * fps)`` samples, ``duration = frame_count / video_fps``. ``Frame.index`` is the
chosen frame's position in decoding order.

Training samples differently (the release's rule, ``model.train.video``: frame ``k * int(video_fps /
fps)``, which at 29.97 fps lies 3 % early); docs/training.md, "Frames", compares the two.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from app.sources.base import Frame, FrameSource, SourceError, SourceInfo, _bgr_to_rgb, _check_fps
from model.frame_times import TimePicker, sample_times_count
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

    def sample_count(self, fps: float = 1.0) -> int | None:
        """How many samples ``frames(fps)`` yields (``floor(duration * fps)``; fewer if the file ends
        before the frame count it reports); None if unknown."""
        duration = self.info.duration
        return None if duration is None else sample_times_count(duration, _check_fps(fps))

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

    def _read_next(self, gen: int) -> tuple[np.ndarray, float] | None:
        """Decode the next frame: (BGR image, presentation time in seconds). None at end of file,
        after close(), or once a newer frames() call took over the decoder (``gen`` is the caller's
        frames() generation). Every frame is read, not only grabbed: which frame is nearest a sample
        time is known only once the next frame's time is. Only the samples are turned into RGB."""
        with self._cap_lock:
            cap = self._cap
            if cap is None or gen != self._gen:
                return None
            ok, bgr = cap.read()
            if not ok or bgr is None:
                return None
            pts = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0  # this frame's timestamp from the stream's start
            self._next_index += 1
        return bgr, pts

    def _picker(self, fps: float, n: int | None) -> TimePicker[np.ndarray]:
        return TimePicker(fps, n, self.info.fps)

    def _warn_short(self, picker: TimePicker[np.ndarray], gen: int) -> None:
        if picker.count is not None and not picker.done and gen == self._gen and self._opened:
            log.warning(
                "%s ended at frame %d (%.2f s), before the %.2f s it reports",
                self.path,
                self._next_index,
                picker.target(),
                self.info.duration,
            )

    def frames(self, fps: float = 1.0) -> Iterator[Frame]:
        """Samples from the start of the file. Starting to iterate a new frames() generator ends
        any earlier one of this source and restarts from frame 0."""
        self._require_open()
        fps = _check_fps(fps)
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
            yield from self._frames_realtime(fps, n, gen, self._cancel)
        else:
            yield from self._frames_fast(fps, n, gen)

    def _frames_fast(self, fps: float, n: int | None, gen: int) -> Iterator[Frame]:
        picker = self._picker(fps, n)
        while not picker.done and not self._stop.is_set() and gen == self._gen:
            got = self._read_next(gen)
            if got is None and (gen != self._gen or self._cap is None):
                return  # closed, or a newer frames() took the decoder: not the end of the file
            samples = picker.finish() if got is None else picker.push(*got)
            for sample in samples:
                if self._stop.is_set() or gen != self._gen:
                    return
                image = _bgr_to_rgb(sample.item)  # a fresh array per sample, even when a frame repeats
                frame = Frame(image, t=sample.k / fps, index=sample.index, wall_time=time.time())
                self._publish(frame)
                yield frame
            if got is None:
                self._warn_short(picker, gen)
                return

    def _frames_realtime(self, fps: float, n: int | None, gen: int, cancel: threading.Event) -> Iterator[Frame]:
        mailbox: list[Frame] = []  # at most one: the newest sample not yet taken
        cond = threading.Condition()
        done = threading.Event()
        picker = self._picker(fps, n)

        def offer(samples: list) -> None:
            if samples:
                s = samples[-1]  # an untaken older sample is dropped, as live
                with cond:
                    mailbox[:] = [Frame(s.item, t=s.k / fps, index=s.index, wall_time=time.time())]
                    cond.notify_all()

        def play() -> None:
            start = time.monotonic()
            try:
                while not cancel.is_set():
                    # Decode ahead, then wait for the frame's presentation time; a pause moves the
                    # clock's start along by the time it lasted.
                    got = self._read_next(gen)
                    if got is None:
                        if not cancel.is_set() and gen == self._gen and self._cap is not None:
                            offer(picker.finish())
                        break
                    bgr, pts = got
                    image = _bgr_to_rgb(bgr)  # every frame is previewed
                    if picker.done and pts >= picker.target() - 1e-6:
                        break  # the last sampled interval has been shown
                    while not cancel.is_set():
                        start += self._hold(cancel)
                        delay = start + pts - time.monotonic()
                        if delay <= 0 or cancel.wait(min(delay, 0.05)):
                            break
                    if cancel.is_set():
                        break
                    # The preview shows every frame, labelled with the interval it falls in; a sample
                    # is decided once the first frame at or after its time is shown.
                    interval = math.floor(pts * fps + 1e-6) / fps
                    self._publish(Frame(image, t=interval, index=picker.index + 1, wall_time=time.time()))
                    offer(picker.push(image, pts))
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
