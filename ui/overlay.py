"""The overlay: subtitles in a frameless, translucent, always-on-top window over any application.

Not in the taskbar (a tool window), click-through on request (mouse events pass to the window
below), draggable when not click-through, and its font, size, colours, position and width come
from :class:`app.settings.OverlayOptions`. Wayland does not let a client keep itself on top, so
there it becomes a normal window and the main window says so once.
"""

from __future__ import annotations

import time
from collections import deque

from PySide6.QtCore import QPoint, QRect, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QGuiApplication, QMouseEvent, QPainter, QPaintEvent
from PySide6.QtWidgets import QWidget

from app.settings import OverlayOptions
from ui.subtitles import SubtitleFeed, paint_standby, paint_subtitle

IDLE_HINT = "Streamo Live overlay: drag to move"


def default_position(width: int, height: int, avoid: QRect | None) -> QPoint:
    """Centred near the bottom of the primary screen, like TV captions, unless that covers ``avoid``
    (the main window, whose Start/Stop buttons sit at its bottom): then just below it if there is
    room, else at the top of the screen."""
    screen = QGuiApplication.primaryScreen()
    if screen is None:
        return QPoint(100, 100)
    geo = screen.availableGeometry()
    margin = geo.height() // 24
    x = geo.center().x() - width // 2
    bottom = QRect(x, geo.bottom() - height - margin, width, height)
    if avoid is None or not bottom.intersects(avoid):
        return bottom.topLeft()
    if avoid.bottom() + margin + height <= geo.bottom():
        return QPoint(x, avoid.bottom() + margin)
    return QPoint(x, geo.top() + margin)


def on_wayland() -> bool:
    return QGuiApplication.platformName().lower().startswith("wayland")


class OverlayWindow(QWidget):
    moved = Signal(QPoint)  # new top-left after a drag

    def __init__(self, feed: SubtitleFeed, options: OverlayOptions | None = None) -> None:
        super().__init__(None)
        self.feed = feed
        self.options = options or OverlayOptions()
        self.always_on_top = not on_wayland()
        self._drag_from: QPoint | None = None
        self.painted_texts: deque[str] = deque(maxlen=64)  # subtitles actually drawn, newest last
        self.setWindowTitle("Streamo Live subtitles")
        self.setAttribute(Qt.WidgetAttribute.WA_TranslucentBackground)
        self.setAttribute(Qt.WidgetAttribute.WA_ShowWithoutActivating)
        self._pulse = QTimer(self)
        self._pulse.setInterval(80)
        self._pulse.timeout.connect(self.update)
        feed.changed.connect(self._on_feed_changed)
        self.apply_options(self.options)

    # -- options
    def window_flags(self, click_through: bool) -> Qt.WindowType:
        flags = Qt.WindowType.FramelessWindowHint | Qt.WindowType.Tool  # Tool: no taskbar entry
        if self.always_on_top:
            flags |= Qt.WindowType.WindowStaysOnTopHint
        if click_through:
            flags |= Qt.WindowType.WindowTransparentForInput
        return flags

    def apply_options(self, options: OverlayOptions) -> None:
        was_visible = self.isVisible()
        self.options = options
        # The attribute first: while it is set, Qt keeps WindowTransparentForInput in the flags.
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents, options.click_through)
        self.setWindowFlags(self.window_flags(options.click_through))  # hides the window
        self.resize(max(200, options.width), self._height_for(options))
        self.move(self._position(options))
        if was_visible:
            self.show()
        self.update()

    def subtitle_font(self) -> QFont:
        font = QFont(self.options.font_family) if self.options.font_family else QFont(self.font())
        font.setPointSize(max(8, self.options.font_size))
        font.setWeight(QFont.Weight.DemiBold)
        return font

    def _height_for(self, options: OverlayOptions) -> int:
        font = QFont(options.font_family) if options.font_family else QFont(self.font())
        font.setPointSize(max(8, options.font_size))
        return int(QFontMetricsF(font).height() * 3.6)  # two lines (live captions), padding, the Standby dots

    def _position(self, options: OverlayOptions) -> QPoint:
        if options.x >= 0 and options.y >= 0:
            return QPoint(options.x, options.y)
        return default_position(self.width(), self.height(), self.avoid)

    avoid: QRect | None = None  # a window the default place should not cover (the main window)

    # -- painting
    def _on_feed_changed(self) -> None:
        if self.feed.standby and not self._pulse.isActive():
            self._pulse.start()
        elif not self.feed.standby:
            self._pulse.stop()
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.setCompositionMode(QPainter.CompositionMode.CompositionMode_Source)
        p.fillRect(self.rect(), Qt.GlobalColor.transparent)
        p.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceOver)
        area = QRectF(self.rect())
        fg = QColor(self.options.text_color)
        bg = QColor(self.options.background_color)
        text, opacity = self.feed.text, self.feed.opacity
        if not text and not self.options.click_through and self.underMouse():
            text, opacity = IDLE_HINT, 0.6  # something to grab while nothing is said
        box = paint_subtitle(p, area, text, self.subtitle_font(), fg, bg, opacity)
        if not box.isEmpty() and (not self.painted_texts or self.painted_texts[-1] != text):
            self.painted_texts.append(text)
        if self.feed.standby:
            r = max(3.0, self.options.font_size / 6)
            # Above the caption box (two lines fill the window's lower part), never on top of its text.
            y = (box.top() if not box.isEmpty() else area.bottom()) - 2 * r
            paint_standby(p, area.center().x(), max(area.top() + 2 * r, y), r, time.monotonic())
        p.end()

    # -- dragging (only when the overlay takes mouse input)
    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton and not self.options.click_through:
            self._drag_from = event.globalPosition().toPoint() - self.frameGeometry().topLeft()
            event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._drag_from is not None:
            self.move(event.globalPosition().toPoint() - self._drag_from)
            event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._drag_from is not None:
            self._drag_from = None
            self.moved.emit(self.pos())
            event.accept()

    def enterEvent(self, event: object) -> None:  # noqa: N802
        self.update()

    def leaveEvent(self, event: object) -> None:  # noqa: N802
        self.update()
