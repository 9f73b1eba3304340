"""Sampling a video file by time: the one inference rule (torch-free, no OpenCV).

The sample of stream second ``k / fps`` is the decoded frame whose presentation time (the
container's timestamp, relative to the stream's start) is nearest ``k / fps``; a tie goes to the
earlier frame. Variable frame rate needs nothing special: only timestamps are compared. Every file
consumer at inference uses this (``app.sources.file.VideoFileSource``: the window, ``narrate`` and
the OVO-Bench runner).

Training keeps the release's rule instead (``model.train.video``: the first frame of each
``int(video_fps / fps)`` block), because that is what the released data were built with; at
29.97 fps that frame sits at 0.968 k s, 19 s early after 10 minutes (docs/training.md, "Frames").

The picker is fed frames in decoding order and decides a sample as soon as the next frame shows
which of two neighbours is nearer, so it holds at most one frame and never looks back.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

TIE = 1e-6  # seconds: distances closer than this are a tie (float noise in k / fps and timestamps)
COUNT_SLACK = 1e-3  # of a step: frame_count / fps rounds (17982 frames at 30000/1001 fps is 600.0006 s)


def sample_times_count(duration: float, fps: float) -> int:
    """Samples in a video of ``duration`` seconds at ``fps``: every whole interval ``[k/fps, (k+1)/fps)``
    the video covers (a last part-interval shorter than one step is not sampled)."""
    return max(0, math.floor(duration * fps + COUNT_SLACK))


@dataclass(frozen=True)
class Sample(Generic[T]):
    k: int  # sample number: stream time k / fps
    item: T  # what was pushed with the chosen frame (its image, say)
    pts: float  # the chosen frame's presentation time, seconds
    index: int  # the chosen frame's position in decoding order (0 = first frame)


class TimePicker(Generic[T]):
    """Chooses, among frames pushed in presentation order, the one nearest each ``k / fps`` for
    ``k < count`` (``count`` None: as long as frames come).

    ``push(item, pts)`` returns the samples that frame decided (zero or more: a long gap between two
    frames repeats the earlier or later frame for each second inside it); ``finish()`` those left
    at the end of the stream, up to the last frame's display span (``last pts + one frame interval``),
    so a file that ends before it said it would gives fewer samples, never invented ones.

    Timestamps that do not increase (a broken container, a backend that reports none) are replaced
    by the previous one plus ``1 / nominal_fps``, so such a file is sampled by its frame rate."""

    def __init__(self, fps: float, count: int | None = None, nominal_fps: float | None = None) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps!r}")
        self.fps = float(fps)
        self.count = count
        self.nominal = 1.0 / nominal_fps if nominal_fps and nominal_fps > 0 else 1.0 / 30
        self.k = 0  # next sample to decide
        self.index = -1  # decoding position of the last pushed frame
        self.repaired = 0  # timestamps replaced (see class docstring)
        self._prev: tuple[T, float, int] | None = None
        self._interval = self.nominal  # last frame interval seen: the last frame's display span

    @property
    def done(self) -> bool:
        return self.count is not None and self.k >= self.count

    def target(self, k: int | None = None) -> float:
        return (self.k if k is None else k) / self.fps

    def push(self, item: T, pts: float | None) -> list[Sample[T]]:
        self.index += 1
        prev = self._prev
        if pts is None or not math.isfinite(pts) or (prev is not None and pts <= prev[1]) or (prev is None and pts < 0):
            pts = prev[1] + self.nominal if prev is not None else 0.0
            self.repaired += 1
        out: list[Sample[T]] = []
        while not self.done and pts >= self.target() - TIE:
            t = self.target()
            if prev is not None and t - prev[1] <= pts - t + TIE:
                out.append(Sample(self.k, prev[0], prev[1], prev[2]))
            else:
                out.append(Sample(self.k, item, pts, self.index))
            self.k += 1
        if prev is not None:
            self._interval = pts - prev[1]
        self._prev = (item, pts, self.index)
        return out

    def finish(self) -> list[Sample[T]]:
        out: list[Sample[T]] = []
        if self._prev is None:
            return out
        item, pts, index = self._prev
        end = pts + max(self._interval, 0.0)
        while not self.done and self.target() < end - TIE:
            out.append(Sample(self.k, item, pts, index))
            self.k += 1
        return out


def pick_by_time(
    frames: Iterator[tuple[T, float | None]], fps: float, count: int | None = None, nominal_fps: float | None = None
) -> Iterator[Sample[T]]:
    """The samples of ``frames`` ((item, pts) in presentation order), by :class:`TimePicker`."""
    picker: TimePicker[T] = TimePicker(fps, count, nominal_fps)
    for item, pts in frames:
        yield from picker.push(item, pts)
        if picker.done:
            return
    yield from picker.finish()
