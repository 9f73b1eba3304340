"""The live preview: the newest captured frame at the capture rate, with the subtitle and the
Standby indicator drawn on top. Accepts a dropped video file."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import numpy as np
from PySide6.QtCore import QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent, QFont, QImage, QPainter, QPaintEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

from ui.subtitles import SubtitleFeed, paint_standby, paint_subtitle

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")


def frame_to_qimage(image: np.ndarray) -> QImage:
    """Wrap an (H, W, 3) uint8 RGB array without copying; the caller keeps the array alive."""
    image = np.ascontiguousarray(image)
    h, w = image.shape[:2]
    return QImage(image.data, w, h, int(image.strides[0]), QImage.Format.Format_RGB888)


class PreviewWidget(QWidget):
    file_dropped = Signal(str)  # path of a dropped video file

    def __init__(self, feed: SubtitleFeed, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.feed = feed
        self.setAcceptDrops(True)
        self.setMinimumSize(320, 180)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.placeholder = "Choose a source and press Start, or drop a video file here."
        self.paused = False  # a "Paused" mark over the picture
        self.frames_shown = 0
        self.painted_texts: deque[str] = deque(maxlen=64)  # subtitles actually drawn, newest last
        self._array: np.ndarray | None = None  # keeps the QImage's memory alive
        self._image: QImage | None = None
        self._scaled: QImage | None = None  # the frame at its drawn size, made once per frame
        self._frame_key: Any = None
        self._subtitle_font = QFont(self.font())
        self._subtitle_font.setPointSizeF(max(12.0, self.font().pointSizeF() * 1.5))
        self._subtitle_font.setWeight(QFont.Weight.DemiBold)
        # A subtitle change repaints the overlay band only, not the whole frame.
        feed.changed.connect(self._on_feed_changed)
        # The Standby dots breathe; this timer runs only while the model stands by.
        self._pulse = QTimer(self)
        self._pulse.setInterval(80)
        self._pulse.timeout.connect(self._update_overlays)

    def set_frame(self, frame: Any) -> bool:
        """Show ``frame`` (an app.sources.Frame) unless it is the one already shown."""
        key = (id(frame.image), frame.index, frame.wall_time)
        if key == self._frame_key:
            return False
        self._frame_key = key
        self._array = np.ascontiguousarray(frame.image)
        self._image = frame_to_qimage(self._array)
        self._scaled = None
        self.frames_shown += 1
        self.update()
        return True

    def clear_frame(self) -> None:
        self._array = self._image = self._scaled = self._frame_key = None
        self.update()

    def _scaled_frame(self, target: QRectF) -> QImage:
        """Scale once per frame (bilinear, a few ms at 720p); repaints for subtitles only blit."""
        size = target.size().toSize()
        if self._scaled is None or self._scaled.size() != size:
            self._scaled = self._image.scaled(
                size, Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation
            )
        return self._scaled

    def image_rect(self) -> QRectF:
        """Where the frame is drawn: fitted to the widget, aspect ratio kept."""
        if self._image is None:
            return QRectF(self.rect())
        iw, ih = self._image.width(), self._image.height()
        scale = min(self.width() / iw, self.height() / ih)
        w, h = iw * scale, ih * scale
        return QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)

    def _on_feed_changed(self) -> None:
        if self.feed.standby and not self._pulse.isActive():
            self._pulse.start()
        elif not self.feed.standby:
            self._pulse.stop()
        self._update_overlays()

    def _update_overlays(self) -> None:
        """Repaint where subtitles and the Standby dots go: the lower half and the top-right corner."""
        r = self.image_rect().toAlignedRect()
        self.update(r.adjusted(0, r.height() // 2, 0, 0))
        self.update(r.adjusted(r.width() * 3 // 4, 0, 0, -r.height() * 3 // 4))

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(16, 16, 20))
        target = self.image_rect()
        if self._image is not None:
            p.drawImage(target.topLeft(), self._scaled_frame(target))
        else:
            p.setPen(QColor(170, 170, 180))
            p.drawText(
                self.rect().adjusted(20, 20, -20, -20),
                Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                self.placeholder,
            )
        font = QFont(self._subtitle_font)
        text = self.feed.text
        font.setPointSizeF(max(11.0, min(28.0, target.height() / 22)))
        box = paint_subtitle(
            p, target.adjusted(8, 8, -8, -8), text, font, QColor("white"), QColor(0, 0, 0, 170), self.feed.opacity
        )
        if not box.isEmpty() and (not self.painted_texts or self.painted_texts[-1] != text):
            self.painted_texts.append(text)
        if self.feed.standby:
            r = max(3.0, target.height() / 110)
            paint_standby(p, target.right() - 6 * r, target.top() + 4 * r, r, time.monotonic())
        if self.paused:
            mark = QRectF(target.left() + 10, target.top() + 10, 110, 32)
            p.setRenderHint(QPainter.RenderHint.Antialiasing)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor(0, 0, 0, 170))
            p.drawRoundedRect(mark, 6, 6)
            p.setPen(QColor("white"))
            p.drawText(mark, Qt.AlignmentFlag.AlignCenter, "\u23f8 Paused")
        p.end()

    def set_paused(self, paused: bool) -> None:
        if paused != self.paused:
            self.paused = paused
            self.update()

    # -- drag and drop
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if self._dropped_file(event) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        path = self._dropped_file(event)
        if path is not None:
            event.acceptProposedAction()
            self.file_dropped.emit(path)

    @staticmethod
    def _dropped_file(event: QDragEnterEvent | QDropEvent) -> str | None:
        mime = event.mimeData()
        for url in mime.urls() if mime.hasUrls() else []:
            if url.isLocalFile() and url.toLocalFile().lower().endswith(VIDEO_SUFFIXES):
                return url.toLocalFile()
        return None
