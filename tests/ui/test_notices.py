"""The window's one notice system (ui/banner.py): notices keyed by cause, replaced and folded, cleared
when their cause goes, an info never covering an error, the others one click away; and the Live tab's
notices going when what they complained of is fixed."""

from __future__ import annotations

from ui.banner import MessageBanner


def test_notices_are_keyed_by_cause_folded_and_cleared(qtbot):
    b = MessageBanner()
    qtbot.addWidget(b)
    b.show_message("error", "The camera is gone.", "source")
    b.show_message("error", "The camera is gone.", "source")
    assert b.text() == "The camera is gone.  (2x)" and b.more.isHidden()  # folded, not "+1 more"
    b.show_message("info", "Exported a.srt", "export")
    assert b.text().startswith("The camera is gone.")  # an info does not cover an error
    assert not b.more.isHidden() and b.more.text() == "+1 more"
    b.more.menu().aboutToShow.emit()
    [action] = b.more.menu().actions()
    assert "Exported a.srt" in action.text()
    action.trigger()
    assert b.text() == "Exported a.srt"  # one click brings it up
    b.show_message("error", "No camera at index 3.", "source")  # the cause's newer words replace the old
    assert b.notice_texts() == ["No camera at index 3.", "Exported a.srt"] and b.level == "error"
    b.clear_topic("source")  # the camera opened
    assert b.text() == "Exported a.srt" and b.more.isHidden()
    b.dismiss()
    assert not b.isVisible() and b.notice_texts() == []
    assert [m.text for m in b.history].count("The camera is gone.") == 2  # the history keeps everything


def test_the_live_tabs_complaints_go_when_their_cause_does(make_harness):
    h = make_harness()
    tab, banner = h.window.live_tab, h.window.banner
    tab.controls.task.setCurrentIndex(tab.controls.task.findData("grounding"))
    tab.controls.target.setText("")
    assert not tab.start() and "watch for" in banner.text()
    tab.controls.target.setText("a person at the door")  # filled: the complaint has no cause left
    assert "watch for" not in banner.text() and not any("watch for" in t for t in banner.notice_texts())


def test_a_notice_moves_nothing_below_it(make_harness):
    h = make_harness()
    w = h.window
    w.resize(1280, 800)
    before = w.live_tab.geometry()
    w.show_message("error", "A long notice that wraps. " * 30, "engine")
    assert w.banner.isVisible() and w.live_tab.geometry() == before
    text_height = w.banner.label.heightForWidth(w.banner.label.width())
    assert w.banner.height() >= text_height > 30  # every line of it shows
    assert w.banner.geometry().top() >= w.tabs.tabBar().geometry().bottom()  # the tabs stay clickable
    w.banner.dismiss()
    assert w.live_tab.geometry() == before
