"""The overlay window: frameless, translucent, on top, no taskbar entry, click-through toggle,
draggable, appearance persisted; the Wayland fallback says so once."""

from __future__ import annotations

from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from app.live.qt import TokenChunk
from app.settings import OverlayOptions
from ui import overlay as overlay_module
from ui.overlay import OverlayWindow
from ui.subtitles import SubtitleFeed


def test_overlay_window_flags(qtbot):
    w = OverlayWindow(SubtitleFeed(), OverlayOptions())
    qtbot.addWidget(w)
    flags = w.windowFlags()
    assert flags & Qt.WindowType.FramelessWindowHint
    assert flags & Qt.WindowType.WindowStaysOnTopHint
    assert (flags & Qt.WindowType.Tool) == Qt.WindowType.Tool  # no taskbar entry
    assert not flags & Qt.WindowType.WindowTransparentForInput
    assert w.testAttribute(Qt.WidgetAttribute.WA_TranslucentBackground)


def test_click_through_toggles_input_transparency(make_harness):
    h = make_harness()
    w = h.window
    w.toggle_overlay(True)
    w.toggle_click_through(True)
    o = w.overlay
    assert o.enabled and not o.isVisible()  # click-through and nothing to say: not there at all
    assert o.windowFlags() & Qt.WindowType.WindowTransparentForInput
    assert o.testAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
    w.toggle_click_through(False)
    assert not o.windowFlags() & Qt.WindowType.WindowTransparentForInput
    assert w.settings.load(OverlayOptions).click_through is False


def test_drag_moves_the_overlay_and_the_position_persists(make_harness):
    h = make_harness()
    w = h.window
    w.toggle_overlay(True)
    o = w.overlay
    start = o.pos()
    with h.qtbot.waitSignal(o.moved):
        QTest.mousePress(o, Qt.MouseButton.LeftButton, pos=QPoint(20, 20))
        QTest.mouseMove(o, QPoint(60, 45))
        QTest.mouseRelease(o, Qt.MouseButton.LeftButton, pos=QPoint(60, 45))
    assert o.pos() != start
    saved = w.settings.load(OverlayOptions)
    assert (saved.x, saved.y) == (o.pos().x(), o.pos().y()) and saved.visible


def test_click_through_overlay_does_not_drag(qtbot):
    o = OverlayWindow(SubtitleFeed(), OverlayOptions(click_through=True, x=50, y=60))
    qtbot.addWidget(o)
    o.show()
    QTest.mousePress(o, Qt.MouseButton.LeftButton, pos=QPoint(20, 20))
    QTest.mouseMove(o, QPoint(80, 80))
    QTest.mouseRelease(o, Qt.MouseButton.LeftButton, pos=QPoint(80, 80))
    assert o.pos() == QPoint(50, 60)


def test_appearance_applies_and_streams_text(qtbot):
    feed = SubtitleFeed()
    o = OverlayWindow(feed, OverlayOptions(font_size=30, width=700, text_color="#ffff00", x=10, y=20))
    qtbot.addWidget(o)
    o.set_enabled(True)
    assert o.width() == 700 and o.pos() == QPoint(10, 20) and o.subtitle_font().pointSize() == 30
    feed.on_token_streamed(TokenChunk(3.0, "Hello"))
    feed.on_token_streamed(TokenChunk(3.0, " world"))
    qtbot.waitUntil(lambda: "Hello world" in o.painted_texts, timeout=2000)
    image = o.grab().toImage()
    yellow = sum(
        1
        for x in range(0, image.width(), 3)
        for y in range(0, image.height(), 3)
        if image.pixelColor(x, y).red() > 200
        and image.pixelColor(x, y).green() > 200
        and image.pixelColor(x, y).blue() < 80
    )
    assert yellow > 5  # the text is drawn in the chosen colour


def test_wayland_falls_back_to_a_normal_window_and_says_so_once(make_harness, monkeypatch):
    monkeypatch.setattr(overlay_module, "on_wayland", lambda: True)
    h = make_harness()
    w = h.window
    w.overlay = OverlayWindow(w.feed, OverlayOptions())
    h.qtbot.addWidget(w.overlay)
    assert not w.overlay.windowFlags() & Qt.WindowType.WindowStaysOnTopHint
    w.toggle_overlay(True)
    assert "Wayland" in w.banner.text()
    w.banner.hide()
    w.toggle_overlay(False)
    w.toggle_overlay(True)
    assert sum("Wayland" in m.text for m in w.banner.history) == 1


def test_the_default_place_does_not_cover_the_main_window(make_harness):
    from PySide6.QtCore import QRect

    from ui.overlay import default_position

    h = make_harness()
    geo = h.window.screen().availableGeometry()
    w, hgt = 400, 60
    # Nothing to avoid: centred near the bottom, like TV captions.
    free = QRect(default_position(w, hgt, None), h.window.overlay.size().__class__(w, hgt))
    assert free.center().y() > geo.center().y()
    # A window over the lower half (its Start/Stop buttons at its bottom): the overlay goes to the top.
    lower = QRect(geo.x(), geo.y() + geo.height() // 2, geo.width(), geo.height() // 2)
    top = QRect(default_position(w, hgt, lower), free.size())
    assert not top.intersects(lower) and top.y() < lower.y()
    # A window in the upper part with room under it: just below the window.
    upper = QRect(geo.x() + 20, geo.y(), geo.width() - 40, geo.height() // 3)
    below = QRect(default_position(w, hgt, upper), free.size())
    assert not below.intersects(upper) and below.y() > upper.bottom()
    # The window hands its own place to the overlay before showing it there.
    h.window.toggle_overlay(True)
    assert h.window.overlay.avoid == h.window.frameGeometry()
    h.window.toggle_overlay(False)


def test_colours_read_as_words(qtbot):
    from app.settings import OverlayOptions
    from ui.overlay_settings import OverlaySettingsDialog, colour_words

    assert colour_words("#b4000000") == "black, 71% opaque"
    assert colour_words("#ffffff") == "white" and colour_words("#ff336699") == "#336699"
    dialog = OverlaySettingsDialog(OverlayOptions())
    qtbot.addWidget(dialog)
    assert dialog.background_button.text() == "black, 71% opaque" and "#" not in dialog.text_button.text()


def long_answer(words: int) -> str:
    return "Start of the answer. " + " ".join(f"word{i}" for i in range(words)) + " end."


def test_a_long_answer_grows_the_overlay_upwards_and_keeps_its_start(qtbot):
    from ui.subtitles import subtitle_box

    feed = SubtitleFeed()
    o = OverlayWindow(feed, OverlayOptions(font_size=30, width=400, x=100, y=500))
    qtbot.addWidget(o)
    o.set_enabled(True)
    o._hint_until = 0.0  # the drag hint's time is up
    bottom = o.geometry().bottom()
    assert bottom == 500 + o.base_height() - 1  # its saved place, at its base height
    feed.on_token_streamed(TokenChunk(1.0, long_answer(5)))
    qtbot.waitUntil(lambda: o.height() > o.base_height(), timeout=2000)
    assert o.geometry().bottom() == bottom and o.isVisible()  # grew upwards, its bottom edge in place
    font = o.subtitle_font()
    from PySide6.QtCore import QRectF
    from PySide6.QtGui import QFontMetricsF

    box, bound, pad = subtitle_box(QRectF(o.rect()), feed.text, font, True, o.max_lines())
    assert box.height() - 2 * pad >= bound.height() - 1  # every line fits: the start is not cut off
    assert bound.height() > 2.5 * QFontMetricsF(font).lineSpacing()  # (more than the two lines it had room for)
    assert not o.shape().contains(QPoint(2, 2))  # only the caption box is the window: no black box


def test_restyling_keeps_the_overlay_in_place_and_empty_hides_it(qtbot):
    feed = SubtitleFeed()
    o = OverlayWindow(feed, OverlayOptions(font_size=20, width=600, x=200, y=600))
    qtbot.addWidget(o)
    o.set_enabled(True)
    anchor = (o.geometry().center().x(), o.geometry().bottom())
    o.apply_options(OverlayOptions(font_size=40, width=400, x=200, y=600))  # bigger and narrower
    assert (o.geometry().center().x(), o.geometry().bottom()) == anchor
    assert (o.options.x, o.options.y) == (o.saved_position().x(), o.saved_position().y())  # saved as it is now
    o._hint_until = 0.0  # the drag hint's time is up
    o.refresh()
    assert o.enabled and not o.isVisible()  # nothing to say: nothing on screen to take clicks
    feed.on_token_streamed(TokenChunk(2.0, "Hello"))
    assert o.isVisible()
