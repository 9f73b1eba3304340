"""The overlay: subtitles in a frameless, translucent, always-on-top window over any application.

Not in the taskbar (a tool window), click-through on request (mouse events pass to the window
below), draggable when not click-through, and its font, size, colours, position and width come
from :class:`app.settings.OverlayOptions`. Wayland does not let a client keep itself on top, so
there it becomes a normal window and the main window says so once.

It never loses words: the window grows upwards from its bottom edge to hold a long answer whole (up
to :data:`MAX_SCREEN_SHARE` of the screen; past that the newest lines show), and it keeps its bottom
centre when its size or font changes. Only the caption box is the window (a mask), so the rest of it
is neither a black box without a compositor nor a place that takes clicks; with nothing to say it is
hidden altogether. After it is switched on or restyled it shows "drag to move" for a few seconds,
the time to grab it.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import replace

from PySide6.QtCore import QPoint, QRect, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetricsF,
    QGuiApplication,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QRegion,
)
from PySide6.QtWidgets import QWidget

from app.settings import OverlayOptions
from ui.subtitles import SubtitleFeed, paint_standby, paint_subtitle, subtitle_box

IDLE_HINT = "Streamo Live overlay: drag to move"
HINT_SECONDS = 8.0  # "drag to move" shows this long after the overlay is switched on or restyled
MAX_SCREEN_SHARE = 0.4  # the overlay grows up to this share of the screen's height, then shows the newest lines


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


def on_x11() -> bool:
    return QGuiApplication.platformName().lower() == "xcb"


def on_wayland() -> bool:
    return QGuiApplication.platformName().lower().startswith("wayland")


class OverlayWindow(QWidget):
    moved = Signal(QPoint)  # new top-left after a drag

    def __init__(self, feed: SubtitleFeed, options: OverlayOptions | None = None) -> None:
        super().__init__(None)
        self.feed = feed
        self.options = options or OverlayOptions()
        self.always_on_top = not on_wayland()
        self.enabled = False  # the user's switch (View > Overlay); the window shows only when there is something
        self._anchor: QPoint | None = None  # its bottom centre, global: what stays put as it grows or restyles
        self._hint_until = 0.0
        self._hint_timer = QTimer(self)
        self._hint_timer.setSingleShot(True)
        self._hint_timer.timeout.connect(self.refresh)
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
            if on_x11():
                # A reparenting window manager (openbox, xfwm, ...) puts the window in a frame of its own; the
                # empty input shape then sends clicks to that frame, not to the window below. Unmanaged, there
                # is no frame: the clicks pass (tried under Xvfb with openbox).
                flags |= Qt.WindowType.X11BypassWindowManagerHint
        return flags

    def apply_options(self, options: OverlayOptions) -> None:
        """Restyle. It keeps its bottom centre, so a bigger font or a wider box grows it in place rather than
        jumping elsewhere; only the first time (or after :meth:`reset_place`) the options' position places it."""
        moved = self._anchor is None
        self.options = options
        # The attribute first: while it is set, Qt keeps WindowTransparentForInput in the flags.
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents, options.click_through)
        self.setWindowFlags(self.window_flags(options.click_through))  # hides the window
        self.resize(max(200, options.width), self.base_height())
        if moved:
            top_left = self._position(options)
            self._anchor = QPoint(top_left.x() + self.width() // 2, top_left.y() + self.height())
        elif options.x >= 0 and options.y >= 0:  # a place of the user's: kept as its new size has it
            pos = self.saved_position()
            self.options = replace(options, x=pos.x(), y=pos.y())
        self.move(self._anchor.x() - self.width() // 2, self._anchor.y() - self.height())
        if self.enabled:
            self.show_hint()
        self.refresh()

    def reset_place(self) -> None:
        """Place it anew from the options (the default place, away from ``avoid``, when they have none)."""
        self._anchor = None
        self.apply_options(self.options)

    def set_enabled(self, on: bool) -> None:
        """The user's switch: on, it shows whenever there is something to show (and the drag hint now)."""
        self.enabled = on
        if on:
            self.show_hint()
        self.refresh()

    def show_hint(self, seconds: float = HINT_SECONDS) -> None:
        """Show "drag to move" for ``seconds`` while nothing is said (not when clicks pass through)."""
        self._hint_until = time.monotonic() + seconds
        self._hint_timer.start(int(seconds * 1000) + 20)
        self.refresh()

    def content(self) -> tuple[str, float]:
        """What to show now: the subtitle, else the drag hint while it lasts, else nothing."""
        text, opacity = self.feed.text, self.feed.opacity
        if (not text or opacity <= 0.0) and not self.options.click_through and time.monotonic() < self._hint_until:
            return IDLE_HINT, 0.6
        return (text, opacity) if opacity > 0.0 else ("", 0.0)

    def base_height(self) -> int:
        return self._height_for(self.options)

    def max_lines(self) -> int:
        """As many lines as :data:`MAX_SCREEN_SHARE` of the screen holds."""
        screen = self.screen() or QGuiApplication.primaryScreen()
        height = screen.availableGeometry().height() if screen is not None else 1080
        return max(2, int(height * MAX_SCREEN_SHARE / QFontMetricsF(self.subtitle_font()).lineSpacing()))

    def _standby_space(self) -> float:
        return 4 * max(3.0, self.options.font_size / 6) if self.feed.standby else 0.0

    def refresh(self) -> None:
        """Size, shape and show or hide the window for what it has to show now."""
        text, _opacity = self.content()
        wanted = self.enabled and bool(text or self.feed.standby)
        if not wanted:
            if self.isVisible():
                self.hide()
            return
        box, _bound, pad = subtitle_box(
            QRectF(0, 0, self.width(), 100_000), text, self.subtitle_font(), True, self.max_lines()
        )
        height = max(self.base_height(), int(box.height() + 2 * pad + self._standby_space() + 1))
        anchor = self._anchor or QPoint(self.x() + self.width() // 2, self.y() + self.height())
        self.setGeometry(anchor.x() - self.width() // 2, anchor.y() - height, self.width(), height)
        self.setMask(self.shape())
        if not self.isVisible():
            self.show()
        self.update()

    def shape(self) -> QRegion:
        """The window's visible and clickable part: the caption box and the Standby dots above it."""
        text, _opacity = self.content()
        area = QRectF(self.rect())
        box, _bound, _pad = subtitle_box(area, text, self.subtitle_font(), True, self.max_lines())
        region = QRegion(box.toAlignedRect().adjusted(-1, -1, 1, 1)) if not box.isEmpty() else QRegion()
        if self.feed.standby:
            space = int(self._standby_space())
            top = int(box.top() if not box.isEmpty() else area.bottom()) - space
            region = region.united(QRegion(QRect(self.width() // 2 - 3 * space, max(0, top), 6 * space, space)))
        return region

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
        self.refresh()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.setCompositionMode(QPainter.CompositionMode.CompositionMode_Source)
        p.fillRect(self.rect(), Qt.GlobalColor.transparent)
        p.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceOver)
        area = QRectF(self.rect())
        fg = QColor(self.options.text_color)
        bg = QColor(self.options.background_color)
        text, opacity = self.content()
        box = paint_subtitle(p, area, text, self.subtitle_font(), fg, bg, opacity, max_lines=self.max_lines())
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
            self._anchor = QPoint(self.x() + self.width() // 2, self.y() + self.height())
            event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._drag_from is not None:
            self._drag_from = None
            self.moved.emit(self.saved_position())
            event.accept()

    def saved_position(self) -> QPoint:
        """Its place as the settings keep it: the top-left corner it has at its base height."""
        anchor = self._anchor or QPoint(self.x() + self.width() // 2, self.y() + self.height())
        return QPoint(anchor.x() - self.width() // 2, anchor.y() - self.base_height())
