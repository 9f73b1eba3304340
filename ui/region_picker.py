"""Screen regions you can see: :class:`RegionPicker` lays a still of one monitor over it, dimmed, and
the user drags the rectangle to share; :class:`RegionOutline` rings the shared area while a run
captures it, so what the model sees is never a guess.

Coordinates: a region is ``(x, y, w, h)`` in the monitor's own pixels from its top-left corner (what
``screen:N@x,y,w,h`` means and mss grabs). Qt places widgets in logical pixels, so both classes take
the monitor's geometry in physical pixels and the screen's device pixel ratio and convert. The outline
is drawn just outside the region (and is a ring: a mask, so it needs no compositor and takes no clicks),
so it never appears in the frames it marks.
"""

from __future__ import annotations

import re
import shutil

from PySide6.QtCore import QObject, QPoint, QProcess, QRect, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QKeyEvent, QMouseEvent, QPainter, QPaintEvent, QPen, QPixmap, QRegion
from PySide6.QtWidgets import QWidget

Region = tuple[int, int, int, int]
MIN_SIDE = 16  # physical pixels: a smaller drag is a slip of the hand, not a region
OUTLINE = 3  # the ring's width, logical pixels, outside the region


def _logical(rect: tuple[int, int, int, int], ratio: float) -> QRect:
    x, y, w, h = rect
    return QRect(round(x / ratio), round(y / ratio), max(1, round(w / ratio)), max(1, round(h / ratio)))


def screen_for(left: int, top: int) -> tuple[object | None, float]:
    """The QScreen whose top-left corner is the monitor's (physical pixels ``left, top``), and its pixel
    ratio; ``(None, 1.0)`` when Qt knows no such screen (then logical = physical)."""
    for screen in QGuiApplication.screens():
        ratio = screen.devicePixelRatio() or 1.0
        g = screen.geometry()
        if round(g.x() * ratio) == left and round(g.y() * ratio) == top:
            return screen, ratio
    return None, 1.0


class RegionPicker(QWidget):
    """Drag a rectangle over a still of the monitor; release to choose it, Esc to cancel.

    ``monitor``: the monitor's ``(left, top, width, height)`` in physical pixels; ``picture``: what it
    showed (dimmed under the selection's surround); ``ratio``: its device pixel ratio."""

    chosen = Signal(object)  # Region, in the monitor's pixels
    cancelled = Signal()

    def __init__(self, monitor: Region, picture: QPixmap | None = None, ratio: float = 1.0) -> None:
        super().__init__(
            None, Qt.WindowType.FramelessWindowHint | Qt.WindowType.WindowStaysOnTopHint | Qt.WindowType.Tool
        )
        self.setWindowTitle("Drag the area to share")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.monitor, self.ratio = monitor, ratio
        self.picture = picture if picture is not None else QPixmap()
        self.setGeometry(_logical(monitor, ratio))
        self._from: QPoint | None = None
        self._to: QPoint | None = None

    # -- the selection
    def selection(self) -> QRect | None:
        """The dragged rectangle in widget (logical) coordinates, or None before a drag."""
        if self._from is None or self._to is None:
            return None
        a, b = self._from, self._to  # corners; QRect(a, b) would count the end pixel in (one too wide)
        rect = QRect(min(a.x(), b.x()), min(a.y(), b.y()), abs(a.x() - b.x()), abs(a.y() - b.y()))
        return rect.intersected(self.rect())

    def region(self) -> Region | None:
        """The dragged rectangle in the monitor's pixels, or None when it is too small to be meant."""
        sel = self.selection()
        if sel is None:
            return None
        r = self.ratio
        x, y = round(sel.x() * r), round(sel.y() * r)
        w = min(round(sel.width() * r), self.monitor[2] - x)
        h = min(round(sel.height() * r), self.monitor[3] - y)
        return (x, y, w, h) if w >= MIN_SIDE and h >= MIN_SIDE else None

    # -- events
    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt's name
        if event.button() == Qt.MouseButton.LeftButton:
            self._from = self._to = event.position().toPoint()
            self.update()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._from is not None:
            self._to = event.position().toPoint()
            self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.button() != Qt.MouseButton.LeftButton or self._from is None:
            return
        self._to = event.position().toPoint()
        region = self.region()
        if region is None:  # a click or a tiny drag: start again
            self._from = self._to = None
            self.update()
            return
        self.chosen.emit(region)
        self.close()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Escape:
            self.cancelled.emit()
            self.close()
        else:
            super().keyPressEvent(event)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        p = QPainter(self)
        if not self.picture.isNull():
            p.drawPixmap(self.rect(), self.picture)
        else:
            p.fillRect(self.rect(), QColor(40, 40, 40))
        sel = self.selection()
        shade = QRegion(self.rect())
        if sel is not None:
            shade = shade.subtracted(QRegion(sel))
        p.setClipRegion(shade)
        p.fillRect(self.rect(), QColor(0, 0, 0, 140))
        p.setClipping(False)
        p.setPen(QColor("white"))
        hint = "Drag the area to share; release to choose it, Esc to cancel."
        region = self.region()
        if sel is not None:
            p.setPen(QPen(QColor("#ff3b30"), 2))
            p.drawRect(sel.adjusted(0, 0, -1, -1))
            if region is not None:
                hint = "{2} x {3} at {0},{1}".format(*region)
            p.setPen(QColor("white"))
        p.drawText(
            self.rect().adjusted(12, 12, -12, -12), Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignHCenter, hint
        )


def pick_region(monitor: Region) -> RegionPicker:
    """Open a :class:`RegionPicker` over ``monitor`` (physical ``left, top, width, height``) with a still
    of what it shows; the caller connects ``chosen``/``cancelled``."""
    screen, ratio = screen_for(monitor[0], monitor[1])
    picture = screen.grabWindow(0) if screen is not None else None
    picker = RegionPicker(monitor, picture, ratio)
    picker.show()
    picker.activateWindow()
    picker.setFocus()
    return picker


class RegionOutline(QWidget):
    """A red ring just outside a shared screen area, on top, taking no clicks. A mask makes it a ring,
    so it is not an opaque box without a compositor."""

    def __init__(self, parent: QWidget | None = None) -> None:
        flags = (
            Qt.WindowType.FramelessWindowHint
            | Qt.WindowType.WindowStaysOnTopHint
            | Qt.WindowType.Tool
            | Qt.WindowType.WindowTransparentForInput
            | Qt.WindowType.WindowDoesNotAcceptFocus
        )
        super().__init__(parent, flags)  # a window of its own, closed with its parent's
        self.setAttribute(Qt.WidgetAttribute.WA_ShowWithoutActivating)
        self.setStyleSheet("background: #ff3b30;")
        self.area = QRect()  # the region itself, logical desktop coordinates

    def place(self, monitor: Region, region: Region) -> QRect:
        """Ring ``region`` of ``monitor`` (both physical pixels); returns the outlined area (logical)."""
        _screen, ratio = screen_for(monitor[0], monitor[1])
        x, y, w, h = region
        self.area = _logical((monitor[0] + x, monitor[1] + y, w, h), ratio)
        outer = self.area.adjusted(-OUTLINE, -OUTLINE, OUTLINE, OUTLINE)
        self.setGeometry(outer)
        inner = QRect(OUTLINE, OUTLINE, self.area.width(), self.area.height())
        self.setMask(QRegion(QRect(0, 0, outer.width(), outer.height())).subtracted(QRegion(inner)))
        return self.area


# -- a window, where the platform lets us ask for one


def window_picking_available() -> bool:
    """On X11 with ``xwininfo`` (Debian x11-utils): the user clicks a window and its area is shared. Wayland,
    macOS and Windows: not here (drag the region instead)."""
    return QGuiApplication.platformName().lower() == "xcb" and shutil.which("xwininfo") is not None


_XWININFO = {
    "x": r"Absolute upper-left X:\s*(-?\d+)",
    "y": r"Absolute upper-left Y:\s*(-?\d+)",
    "w": r"Width:\s*(\d+)",
    "h": r"Height:\s*(\d+)",
}


def parse_xwininfo(text: str) -> Region | None:
    """The clicked window's area (desktop pixels) from ``xwininfo``'s report, or None."""
    found = {k: re.search(pattern, text) for k, pattern in _XWININFO.items()}
    if not all(found.values()):
        return None
    x, y, w, h = (int(found[k].group(1)) for k in ("x", "y", "w", "h"))  # type: ignore[union-attr]
    return (x, y, w, h) if w > 0 and h > 0 else None


class WindowPick(QObject):
    """Ask the user to click a window (``xwininfo`` waits for the click in a process of its own, so the GUI
    never waits); ``chosen`` gives its area in desktop pixels, ``failed`` why there is none. The area is the
    window's at the moment it was clicked: if the window moves, pick it again."""

    chosen = Signal(object)  # Region, desktop pixels
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.process = QProcess(self)
        self.process.finished.connect(self._finished)
        self.process.errorOccurred.connect(
            lambda _error: self.failed.emit(f"xwininfo could not run: {self.process.errorString()}")
        )

    def start(self) -> None:
        self.process.start("xwininfo", ["-frame"])

    def cancel(self) -> None:
        self.process.kill()

    def _finished(self, code: int, _status: object) -> None:
        text = bytes(self.process.readAllStandardOutput()).decode(errors="replace")
        area = parse_xwininfo(text) if code == 0 else None
        if area is None:
            self.failed.emit("No window was picked (the click found no window, or it was cancelled).")
        else:
            self.chosen.emit(area)
