"""The annotator's player: a frame-accurate view of one video whose frames are decoded on a
worker thread, never on the GUI thread.

The GUI asks for frame N (``FrameWorker.request``); the worker keeps only the newest request,
decodes it with its own ``FrameReader`` (its own ``cv2.VideoCapture``), fits it to the view and
hands the RGB array back by a queued signal. The playhead, slider and time label move at once;
the picture follows. A picture the user no longer wants (a newer seek came in while it decoded)
is dropped; while playing, a picture a tick late is still the best one there is and is shown.
Playing backwards decodes a run of frames before the asked one forwards (one seek) and keeps
them, so reverse play does not seek once per frame.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QSlider, QStyle, QToolButton, QVBoxLayout, QWidget

from app.training.library import FrameReader
from ui.preview import frame_to_qimage

ReaderFactory = Callable[[Path], Any]  # path -> an object with read(index), frame_count, close()


def lower_priority(step: int = 5) -> None:
    """Let the window's thread come first: the calling thread, and the decoder threads it starts
    (FFmpeg's, which inherit it), run ``step`` nice levels lower. Linux only, where the nice value
    is per thread; elsewhere nothing. On 2 busy cores the GUI thread's worst gap while a thread
    decoded 1080p fell from about 48 ms to what it is with no decoding (about 28 ms)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + step))
    except OSError:
        pass  # best effort


def fit_image(image: np.ndarray, box: tuple[int, int]) -> np.ndarray:
    """``image`` shrunk (never enlarged) to fit ``box`` (width, height); (0, 0): as it is."""
    import cv2

    w, h = box
    ih, iw = image.shape[:2]
    if w <= 0 or h <= 0 or (iw <= w and ih <= h):
        return image
    scale = min(w / iw, h / ih)
    size = (max(1, round(iw * scale)), max(1, round(ih * scale)))
    # Halving by INTER_AREA (its fast path), then INTER_LINEAR: 1080p to 533x300 in 7 ms where
    # INTER_AREA at an odd factor took 27 ms, with no visible aliasing.
    while image.shape[1] >= 2 * size[0] and image.shape[0] >= 2 * size[1]:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


# ---------------------------------------------------------------------------------------------
# The view


class FrameView(QWidget):
    """The current frame, scaled to fit; it takes the keyboard focus for the player's keys."""

    resized = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(320, 180)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.placeholder = "Choose a clip in the library."
        self._array: np.ndarray | None = None  # keeps the QImage's memory alive
        self._image = None

    def set_image(self, image: np.ndarray | None) -> None:
        self._array = None if image is None else np.ascontiguousarray(image)
        self._image = None if self._array is None else frame_to_qimage(self._array)
        self.update()

    def has_image(self) -> bool:
        return self._image is not None

    def box(self) -> tuple[int, int]:
        """The device pixels a picture needs to fill the view (the worker shrinks frames to it)."""
        ratio = self.devicePixelRatioF()
        return max(1, round(self.width() * ratio)), max(1, round(self.height() * ratio))

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(16, 16, 20))
        if self._image is not None:
            size = self._image.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
            x, y = (self.width() - size.width()) / 2, (self.height() - size.height()) / 2
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            p.drawImage(QRectF(x, y, size.width(), size.height()), self._image)
        else:
            p.setPen(QColor(170, 170, 180))
            p.drawText(
                self.rect().adjusted(12, 12, -12, -12),
                Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                self.placeholder,
            )
        if self.hasFocus():
            p.setPen(QPen(QColor(90, 150, 240), 2))
            p.drawRect(self.rect().adjusted(1, 1, -1, -1))
        p.end()

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self.resized.emit()

    def focusInEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        super().focusInEvent(event)
        self.update()

    def focusOutEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        super().focusOutEvent(event)
        self.update()


# ---------------------------------------------------------------------------------------------
# The decoding thread


@dataclass(frozen=True)
class FrameRequest:
    seq: int  # increasing per worker: the newest request has the largest
    frame: int
    box: tuple[int, int]  # fit the picture in (width, height) device pixels; (0, 0): full size
    rate: float = 0.0  # video frames per second the playhead moves (< 0: backwards; 0: paused)
    late_ok: bool = False  # playing: deliver it even if a newer request came in meanwhile


class FrameWorker(QObject):
    """Decodes one video's frames on its own thread (its own reader); one worker per open clip."""

    # Every payload starts with the worker's generation: a signal still queued from a closed clip's
    # worker is told apart from the open one's.
    opened = Signal(int, int, str)  # (generation, frame count the decoder reports, "" or why it cannot open)
    frame_ready = Signal(int, int, int, object)  # (generation, request seq, video frame, fitted RGB array or None)

    BACK_RUN = 300  # at most this many frames decoded forwards (one seek) per step back in reverse play
    CACHE_BYTES = 96 * 1024**2  # fitted pictures kept for reverse play and going back and forth
    _generations = 0

    def __init__(self, path: str | Path, reader_factory: ReaderFactory = FrameReader) -> None:
        super().__init__()
        self.path = Path(path)
        FrameWorker._generations += 1
        self.generation = FrameWorker._generations
        self._factory = reader_factory
        self._cond = threading.Condition()
        self._wanted: FrameRequest | None = None
        self._seq = 0
        self._stopping = False
        self._cache: OrderedDict[tuple[int, tuple[int, int]], np.ndarray | None] = OrderedDict()
        self._cache_bytes = 0
        self.decoded = 0  # frames the reader returned (tests, the bench)
        self._frame_cost, self._seek_cost = 0.005, 0.05  # seconds per decoded frame / per seek (running means)
        self._last_index = -2
        self._frame_bytes = 0  # of the last fitted picture
        self._thread = threading.Thread(target=self._run, name=f"frames:{self.path.name}", daemon=True)

    def start(self) -> FrameWorker:
        self._thread.start()
        return self

    @property
    def latest_seq(self) -> int:
        return self._seq

    def request(self, frame: int, box: tuple[int, int] = (0, 0), rate: float = 0.0, late_ok: bool = False) -> int:
        """Ask for ``frame``; replaces any request not yet started. Returns the request's seq."""
        with self._cond:
            self._seq += 1
            self._wanted = FrameRequest(self._seq, int(frame), box, rate, late_ok)
            self._cond.notify()
            return self._seq

    def stop(self, wait: float = 0.0) -> bool:
        """Ask the thread to end (it closes its reader); wait up to ``wait`` s. True once it has ended."""
        with self._cond:
            self._stopping = True
            self._wanted = None
            self._cond.notify()
        if wait > 0 and self._thread.is_alive():
            self._thread.join(wait)
        return not self._thread.is_alive()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    # -- the thread
    def _run(self) -> None:
        lower_priority()
        try:
            reader = self._factory(self.path)
        except Exception as e:  # noqa: BLE001 - any failure to open is the clip's, said on screen
            self.opened.emit(self.generation, 0, str(e))
            return
        try:
            self.opened.emit(self.generation, int(getattr(reader, "frame_count", 0) or 0), "")
            while True:
                with self._cond:
                    while self._wanted is None and not self._stopping:
                        self._cond.wait()
                    if self._stopping:
                        return
                    req, self._wanted = self._wanted, None
                image = self._picture(reader, req)
                with self._cond:
                    if self._stopping:
                        return
                    newer = self._wanted is not None
                if newer and not req.late_ok:
                    continue  # stale: the user has moved on; decode what they want now
                self.frame_ready.emit(self.generation, req.seq, req.frame, image)
        finally:
            reader.close()

    def _picture(self, reader: Any, req: FrameRequest) -> np.ndarray | None:
        key = (req.frame, req.box)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        if req.rate < 0 and req.frame > 0:
            # Backwards: one seek, then decode forwards up to the frame, keeping the run.
            first = max(0, req.frame - self.back_run(-req.rate) + 1)
            image = None
            for index in range(first, req.frame + 1):
                pending = self._wanted  # a plain read: a stale view only costs one more frame
                if self._stopping or (pending is not None and (pending.rate >= 0 or pending.frame > req.frame)):
                    return None  # paused, sought or played forwards: this run is no use now
                if (index, req.box) in self._cache:
                    continue
                image = self._decode(reader, index, req.box)
            return self._cache.get(key, image)
        return self._decode(reader, req.frame, req.box)

    def back_run(self, rate: float) -> int:
        """Frames to decode per seek playing backwards at ``rate`` frames/s: enough that the
        playhead is still inside the run when it is decoded (seek + run < the run's playing time);
        one where decoding cannot keep up at all (then each picture costs a seek, as before)."""
        room = 1.0 - rate * self._frame_cost
        if room <= 0.1:
            return 1
        # A seek decodes from the key frame before it (up to a GOP, seconds on real footage), so
        # the run grows with the measured seek cost; the cache bounds it (half of it for the run).
        fits = max(2, self.CACHE_BYTES // 2 // max(1, self._frame_bytes))
        return int(min(self.BACK_RUN, fits, max(2, math.ceil(1.5 * rate * self._seek_cost / room))))

    def _decode(self, reader: Any, index: int, box: tuple[int, int]) -> np.ndarray | None:
        started = time.perf_counter()
        rgb = reader.read(index)
        cost = time.perf_counter() - started
        if index == self._last_index + 1:
            self._frame_cost = 0.8 * self._frame_cost + 0.2 * cost
        else:
            self._seek_cost = 0.5 * self._seek_cost + 0.5 * cost
        self._last_index = index
        self.decoded += rgb is not None
        image = None if rgb is None else np.ascontiguousarray(fit_image(rgb, box))
        self._frame_bytes = self._frame_bytes if image is None else image.nbytes
        self._cache[(index, box)] = image
        self._cache_bytes += 0 if image is None else image.nbytes
        while self._cache_bytes > self.CACHE_BYTES and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= 0 if old is None else old.nbytes
        return image


# ---------------------------------------------------------------------------------------------
# The player


class Player(QWidget):
    """The view, a slider, the transport buttons and the time; seeking and playing one video.
    ``transport`` is the row of buttons, for the annotator's own buttons."""

    position_changed = Signal(int)  # video frame at the playhead (set at once; the picture follows)
    frame_shown = Signal(int)  # video frame whose picture the view now shows
    opened = Signal(int, str)  # (frames, "" or why the video cannot be played), once per clip

    SPEEDS = (1, 2, 4, 8)

    def __init__(self, reader_factory: ReaderFactory = FrameReader, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.reader_factory = reader_factory
        self.worker: FrameWorker | None = None
        self._retired: list[FrameWorker] = []  # stopped, possibly still finishing a decode
        self.position = 0  # video frame at the playhead
        self.frames = 0  # frames of the video (the converter's count when known)
        self.fps = 30.0
        self.block = 1  # video frames per turn
        self.n_turns = 0
        self.direction = 0  # -1 playing backwards, 1 forwards, 0 paused
        self.speed = 1
        self.shown_frame: int | None = None  # the frame whose picture is on screen
        self._shown_seq = 0
        self._late_ok = False  # the newest request takes pictures that arrive late (playing, scrubbing)
        self._play_origin = (0.0, 0)  # (monotonic time, frame) the current play started from
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._tick)
        self._scrub = QTimer(self)  # the newest slider position, once per event-loop pass
        self._scrub.setSingleShot(True)
        self._scrub.timeout.connect(lambda: self.seek(self.slider.value(), scrubbing=self.slider.isSliderDown()))
        self._refit = QTimer(self)  # a resized view: the picture again at its new size
        self._refit.setSingleShot(True)
        self._refit.timeout.connect(self._request_picture)

        self.view = FrameView()
        self.view.resized.connect(lambda: self._refit.start(120))
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.slider.setToolTip("Drag to scrub")
        self.slider.valueChanged.connect(self._slider_moved)
        self.play_button = self._tool("", "Play / pause (Space; J back, K pause, L forward)", self.toggle_play)
        self.transport = QHBoxLayout()
        self.transport.setSpacing(2)
        to_start = self._tool("", "To the start (Home)", lambda: (self.pause(), self.seek(0)))
        to_start.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaSkipBackward))
        self.transport.addWidget(to_start)
        self.transport.addWidget(self._tool("−1 s", "One second back (Left)", lambda: self.step_seconds(-1)))
        self.transport.addWidget(self._tool("−1 f", "One frame back (Shift+Left or ,)", lambda: self.step_frames(-1)))
        self.transport.addWidget(self.play_button)
        self.transport.addWidget(
            self._tool("+1 f", "One frame forward (Shift+Right or .)", lambda: self.step_frames(1))
        )
        self.transport.addWidget(self._tool("+1 s", "One second forward (Right)", lambda: self.step_seconds(1)))
        self.transport.addSpacing(10)
        self.time_label = QLabel("0:00.0 / 0:00.0")
        self.time_label.setTextFormat(Qt.TextFormat.PlainText)
        self.time_label.setMinimumWidth(230)
        self.transport.addWidget(self.time_label)
        self.transport.addStretch(1)
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(6)
        box.addWidget(self.view, 1)
        box.addWidget(self.slider)
        box.addLayout(self.transport)
        self._update_play_button()

    def _tool(self, text: str, tip: str, slot: Any) -> QToolButton:
        b = QToolButton(text=text)
        b.setToolTip(tip)
        b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        b.clicked.connect(slot)
        return b

    # -- the video
    def open(self, path: Path | None, frames: int = 0, fps: float = 30.0, block: int = 1, n_turns: int = 0) -> None:
        """Play ``path`` (None: nothing); ``frames`` as the converter counts them (0: the decoder's
        count, once the worker has opened the file). Opening happens on the worker thread."""
        self.close_video()
        self.frames, self.fps, self.block, self.n_turns = max(0, frames), fps or 30.0, max(1, block), n_turns
        self.position, self.shown_frame, self._shown_seq = 0, None, 0
        self.view.set_image(None)
        if path is not None:
            self.worker = FrameWorker(path, self.reader_factory)
            self.worker.opened.connect(self._on_opened)
            self.worker.frame_ready.connect(self._on_frame_ready)
            self.worker.start()
        self._set_range()
        self.seek(0)

    def set_turns(self, block: int, n_turns: int) -> None:
        self.block, self.n_turns = max(1, block), n_turns
        self._update_time_label()

    def close_video(self) -> None:
        """Stop playing and let the worker end (it closes its file); the GUI does not wait for it."""
        self.pause()
        if self.worker is not None:
            self.worker.opened.disconnect(self._on_opened)
            self.worker.frame_ready.disconnect(self._on_frame_ready)
            if not self.worker.stop():
                self._retired.append(self.worker)
            self.worker = None
        self._retired = [w for w in self._retired if w.is_alive()]

    def shutdown(self, wait: float = 2.0) -> bool:
        """Close the video and wait (up to ``wait`` s) for every decoding thread to end."""
        self.close_video()
        deadline = time.monotonic() + wait
        for w in self._retired:
            w.stop(max(0.0, deadline - time.monotonic()))
        self._retired = [w for w in self._retired if w.is_alive()]
        return not self._retired

    def threads_alive(self) -> int:
        return sum(w.is_alive() for w in [*self._retired, *([self.worker] if self.worker else [])])

    def _on_opened(self, generation: int, frames: int, error: str) -> None:
        if self.worker is None or generation != self.worker.generation:
            return
        if error:
            self.view.placeholder = f"{error} Its annotations can still be edited."
            self.view.update()
        elif not self.frames and frames:
            self.frames = frames
            self._set_range()
            self._update_time_label()
        self.opened.emit(self.frames, error)

    def _set_range(self) -> None:
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, self.frames - 1))
        self.slider.setValue(self.position)
        self.slider.blockSignals(False)

    # -- seeking: the playhead now, the picture when the worker has it
    @property
    def seconds(self) -> float:
        return self.position / self.fps if self.fps else 0.0

    @property
    def second(self) -> int:
        """The turn (stream second) at the playhead."""
        return max(0, self.position) // self.block

    def seek(self, frame: int, scrubbing: bool = False) -> None:
        """Move the playhead to ``frame`` now; its picture follows. ``scrubbing`` (a drag of the
        slider or the strip): pictures that arrive after the drag moved on are still shown, as
        while playing, so a drag shows where it passes; a plain seek shows only its own frame."""
        frame = max(0, min(int(frame), max(0, self.frames - 1)))
        self.position = frame
        self._request_picture(scrubbing)
        self.slider.blockSignals(True)
        self.slider.setValue(frame)
        self.slider.blockSignals(False)
        self._update_time_label()
        self.position_changed.emit(frame)

    def _request_picture(self, scrubbing: bool = False) -> None:
        if self.worker is not None:
            rate = self.direction * self.speed * self.fps
            self._late_ok = bool(self.direction) or scrubbing
            self.worker.request(self.position, self.view.box(), rate, late_ok=self._late_ok)

    def _on_frame_ready(self, generation: int, seq: int, frame: int, image: Any) -> None:
        worker = self.worker
        if worker is None or generation != worker.generation or seq <= self._shown_seq:
            return  # a closed clip's, or older than the picture on screen
        if seq != worker.latest_seq and not self._late_ok:
            return  # stale: a newer seek is on its way
        self._shown_seq = seq
        if image is not None:
            self.view.set_image(image)
            self.shown_frame = frame
            self.frame_shown.emit(frame)

    def _update_time_label(self) -> None:
        if self.worker is None and not self.frames:
            self.time_label.setText("")
            return
        total = self.frames / self.fps if self.fps else 0
        second = self.second
        turn = f"<{second}s-{second + 1}s>" if second < max(1, self.n_turns) else "past the last turn"
        self.time_label.setText(f"{self.seconds:0.1f} s / {total:0.1f} s · frame {self.position} · turn {turn}")

    def _slider_moved(self, value: int) -> None:
        if not self._scrub.isActive():
            self._scrub.start(0)

    def step_frames(self, n: int) -> None:
        self.pause()
        self.seek(self.position + n)

    def step_seconds(self, n: int) -> None:
        """Move by whole turns, so the playhead stays on its frame of the second."""
        self.pause()
        self.seek(self.position + n * self.block)

    # -- playing
    def play(self, direction: int = 1) -> None:
        if self.worker is None or not self.frames:
            return
        if self.direction == direction:
            self.speed = self.SPEEDS[min(self.SPEEDS.index(self.speed) + 1, len(self.SPEEDS) - 1)]
        else:
            self.speed = 1
            if direction > 0 and self.position >= self.frames - 1:
                self.seek(0)
        self.direction = direction
        self._play_origin = (time.monotonic(), self.position)
        self._timer.start(max(15, min(100, int(1000 / (self.fps * self.speed)))))
        self._update_play_button()

    def pause(self) -> None:
        self._timer.stop()
        was = self.direction
        self.direction = 0
        self.speed = 1
        self._update_play_button()
        if was and self.worker is not None and self.shown_frame != self.position:
            self._request_picture()  # the exact frame where it stopped

    def toggle_play(self) -> None:
        if self.direction:
            self.pause()
        else:
            self.play(1)

    def _update_play_button(self) -> None:
        icons = {0: QStyle.StandardPixmap.SP_MediaPlay, 1: QStyle.StandardPixmap.SP_MediaPause}
        icon = icons.get(self.direction, QStyle.StandardPixmap.SP_MediaSeekBackward)
        self.play_button.setIcon(self.style().standardIcon(icon))
        self.play_button.setText(f"{self.speed}×" if self.direction and self.speed > 1 else "")
        self.play_button.setToolButtonStyle(
            Qt.ToolButtonStyle.ToolButtonTextBesideIcon
            if self.play_button.text()
            else Qt.ToolButtonStyle.ToolButtonIconOnly
        )

    def _tick(self) -> None:
        started, origin = self._play_origin
        target = origin + round(self.direction * self.speed * (time.monotonic() - started) * self.fps)
        target = max(0, min(target, self.frames - 1))
        if target != self.position:
            self.seek(target)
        if target <= 0 and self.direction < 0 or target >= self.frames - 1 and self.direction > 0:
            self.pause()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        self.shutdown()
        super().closeEvent(event)


__all__ = ["FrameRequest", "FrameView", "FrameWorker", "Player", "fit_image", "lower_priority"]
