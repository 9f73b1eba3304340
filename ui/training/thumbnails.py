"""The row of thumbnails under the annotator's strip: a small frame every few seconds (more often
the deeper the zoom), decoded on a worker thread with its own reader and kept in a cache shared
by every clip (switching back to a clip shows its thumbnails at once).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPaintEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.training.library import FrameReader
from ui.training.player import ReaderFactory, fit_image, lower_priority
from ui.training.strip import TurnStrip

_CACHE: OrderedDict[tuple[str, int, int], QImage | None] = OrderedDict()  # (path, frame, height) -> image
_CACHE_LOCK = threading.Lock()
_CACHE_MAX = 4000  # about 40 MB of 96x54 thumbnails


def cached(path: Path, frame: int, height: int) -> tuple[bool, QImage | None]:
    """(known, image): known is False when it has not been decoded yet; image None: unreadable."""
    key = (str(path), frame, height)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return True, _CACHE[key]
    return False, None


def _store(path: Path, frame: int, height: int, image: QImage | None) -> None:
    with _CACHE_LOCK:
        _CACHE[(str(path), frame, height)] = image
        while len(_CACHE) > _CACHE_MAX:
            _CACHE.popitem(last=False)


def to_qimage(rgb: np.ndarray) -> QImage:
    """An RGB array as a QImage that owns its pixels (safe to hand to another thread)."""
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, int(rgb.strides[0]), QImage.Format.Format_RGB888).copy()


class ThumbnailWorker(QObject):
    """Decodes the thumbnails asked for, on its own thread, newest wish list first."""

    ready = Signal(int, int)  # (generation, video frame): its thumbnail is in the cache

    _generations = 0

    def __init__(self, path: str | Path, height: int, reader_factory: ReaderFactory = FrameReader) -> None:
        super().__init__()
        self.path, self.height = Path(path), height
        ThumbnailWorker._generations += 1
        self.generation = ThumbnailWorker._generations
        self._factory = reader_factory
        self._cond = threading.Condition()
        self._wanted: list[int] = []
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"thumbs:{self.path.name}", daemon=True)
        self._thread.start()

    def want(self, frames: list[int]) -> None:
        """Decode these frames (in this order), instead of what was asked before."""
        with self._cond:
            self._wanted = list(frames)
            self._cond.notify()

    def stop(self, wait: float = 0.0) -> bool:
        with self._cond:
            self._stopping = True
            self._wanted = []
            self._cond.notify()
        if wait > 0 and self._thread.is_alive():
            self._thread.join(wait)
        return not self._thread.is_alive()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        lower_priority(10)  # below the player's decoding too: the picture first, thumbnails after
        reader = None
        try:
            while True:
                with self._cond:
                    while not self._wanted and not self._stopping:
                        self._cond.wait()
                    if self._stopping:
                        return
                    frame = self._wanted.pop(0)
                if cached(self.path, frame, self.height)[0]:
                    continue
                if reader is None:
                    try:
                        reader = self._factory(self.path)
                    except Exception:  # noqa: BLE001 - the player says why the video cannot be read
                        return
                rgb = reader.read(frame)
                image = None if rgb is None else to_qimage(fit_image(rgb, (self.height * 4, self.height)))
                _store(self.path, frame, self.height, image)
                self.ready.emit(self.generation, frame)
        finally:
            if reader is not None:
                reader.close()


class ThumbnailRow(QWidget):
    """Thumbnails at the strip's positions: one every N seconds, N such that they do not overlap
    at the strip's zoom. Clicking one seeks to its second."""

    seek_requested = Signal(int)  # video frame

    HEIGHT = 36
    STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1200)

    def __init__(self, strip: TurnStrip, reader_factory: ReaderFactory = FrameReader) -> None:
        super().__init__()
        self.strip = strip
        self.reader_factory = reader_factory
        self.path: Path | None = None
        self.worker: ThumbnailWorker | None = None
        self._retired: list[ThumbnailWorker] = []
        self.aspect = 16 / 9  # until the first thumbnail says
        self.setFixedHeight(self.HEIGHT + 2)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("A frame every few seconds (zoom the strip for more); click to go there")
        strip.view_changed.connect(self.request_visible)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(600, self.HEIGHT + 2)

    def set_video(self, path: Path | None) -> None:
        """Thumbnails of ``path`` (None: none). The old worker ends on its own; nobody waits."""
        if self.worker is not None:
            self.worker.ready.disconnect(self._on_ready)
            if not self.worker.stop():
                self._retired.append(self.worker)
            self.worker = None
        self._retired = [w for w in self._retired if w.is_alive()]
        self.path = path
        if path is not None:
            self.worker = ThumbnailWorker(path, self.HEIGHT, self.reader_factory)
            self.worker.ready.connect(self._on_ready)
        self.request_visible()

    def shutdown(self, wait: float = 2.0) -> bool:
        self.set_video(None)
        for w in self._retired:
            w.stop(wait)
        self._retired = [w for w in self._retired if w.is_alive()]
        return not self._retired

    def every(self) -> int:
        """Seconds between thumbnails at the strip's zoom."""
        width = self.HEIGHT * self.aspect + 2
        second_px = 1.0 / self.strip.seconds_per_pixel()
        return next((k for k in self.STEPS if k * second_px >= width), self.STEPS[-1])

    def visible_seconds(self) -> list[int]:
        s = self.strip
        if not s.turns or self.path is None:
            return []
        every = self.every()
        first = max(0, int(s.offset * s.seconds_per_pixel()) // every * every)
        out = []
        for second in range(first, len(s.turns), every):
            if s.x_of_second(second) > self.width():
                break
            out.append(second)
        return out

    def request_visible(self) -> None:
        """Ask the worker for the visible thumbnails not yet decoded, the playhead's first."""
        if self.worker is None or self.path is None:
            self.update()
            return
        block, head = self.strip.block, self.strip.playhead
        missing = [s * block for s in self.visible_seconds() if not cached(self.path, s * block, self.HEIGHT)[0]]
        missing.sort(key=lambda f: abs(f - head))
        self.worker.want(missing)
        self.update()

    def _on_ready(self, generation: int, frame: int) -> None:
        if self.worker is None or generation != self.worker.generation or self.path is None:
            return
        image = cached(self.path, frame, self.HEIGHT)[1]
        if image is not None and not image.isNull():
            aspect = image.width() / max(1, image.height())
            if abs(aspect - self.aspect) > 0.01:
                self.aspect = aspect  # the spacing follows the video's shape: ask for the new set
                self.request_visible()
        self.update()

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self.request_visible()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(24, 24, 28))
        if self.path is None:
            p.end()
            return
        block, h = self.strip.block, self.HEIGHT
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        for second in self.visible_seconds():
            x = self.strip.x_of_second(second)
            known, image = cached(self.path, second * block, h)
            if image is not None and not image.isNull():
                p.drawImage(QRectF(x, 1, h * self.aspect, h), image)
            else:
                p.fillRect(QRectF(x, 1, h * self.aspect, h), QColor(44, 44, 52) if not known else QColor(60, 30, 34))
        p.end()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if event.button() == Qt.MouseButton.LeftButton and self.strip.frames:
            self.seek_requested.emit(self.strip.frame_at(event.position().x()))


__all__ = ["ThumbnailRow", "ThumbnailWorker", "cached", "to_qimage"]
