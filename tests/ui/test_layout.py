"""The window's layout at the sizes people use: 800x600 (a window beside another, a small laptop) goes
compact with every control reachable; 1280x800 and larger keep preview and controls beside the transcript."""

from __future__ import annotations

from PySide6.QtWidgets import QAbstractButton, QComboBox, QLineEdit, QWidget


def reachable(tab, w: QWidget) -> bool:
    """On screen now, or one tab away in the compact layout's lower tabs (scrolled to if need be)."""
    if tab.compact:
        for i in range(tab.bottom_tabs.count()):
            if tab.bottom_tabs.widget(i).isAncestorOf(w):
                tab.bottom_tabs.setCurrentIndex(i)
                if tab.controls_area.isAncestorOf(w):
                    tab.controls_area.ensureWidgetVisible(w)
    if not w.isVisibleTo(tab.window()):
        return False
    scroll = tab.controls_area
    if scroll.isAncestorOf(w):  # inside the scrolled area: within its viewport
        top_left = w.mapTo(scroll.viewport(), w.rect().topLeft())
        return scroll.viewport().rect().contains(top_left)
    return True


def test_800x600_goes_compact_with_every_control_in_reach(make_harness):
    h = make_harness()
    w = h.window
    w.resize(1280, 800)
    tab = w.live_tab
    h.qtbot.waitUntil(lambda: not tab.compact and tab.transcript.isVisible(), timeout=2000)
    controls = [
        c
        for c in (*tab.findChildren(QAbstractButton), *tab.findChildren(QComboBox), *tab.findChildren(QLineEdit))
        if c.isVisibleTo(w) and not c.objectName().startswith("qt_")  # Qt's own parts (a table's corner ...)
    ]
    assert len(controls) > 20
    w.resize(800, 600)
    h.qtbot.waitUntil(lambda: tab.compact, timeout=2000)
    assert w.width() <= 800 and w.height() <= 600  # the window really is that small
    assert tab.transport.start_button.isVisible() and tab.transport.stop_button.isVisible()  # under the preview
    assert tab.preview.isVisible() and tab.preview.height() > 150
    for c in controls:
        assert reachable(tab, c), f"{type(c).__name__} {getattr(c, 'text', lambda: '')()!r} out of reach"
    assert tab.transport.start_button.isVisible()  # whichever lower tab is open
    w.resize(1280, 800)
    h.qtbot.waitUntil(lambda: not tab.compact, timeout=2000)
    h.qtbot.waitUntil(lambda: tab.controls_area.horizontalScrollBar().maximum() == 0, timeout=2000)
    assert tab.transcript.isVisible() and all(c.isVisibleTo(w) for c in controls)  # all back in place
