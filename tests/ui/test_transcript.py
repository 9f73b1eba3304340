"""The transcript panel: entries with stream and wall time, search, copy, timeline, export."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QGuiApplication

from app.live.records import Question
from app.session import Session, SessionMeta, StepRecord
from model.protocol import RESPONSE, SILENCE, STANDBY
from ui.timeline import StateTimeline
from ui.transcript import TranscriptPanel


def filled_panel(qtbot) -> TranscriptPanel:
    panel = TranscriptPanel()
    qtbot.addWidget(panel)
    session = Session(meta=SessionMeta(source="/v/clip.mp4"))
    panel.set_session(session)
    steps = [
        StepRecord(0.0, 1.0, SILENCE, 1_700_000_000.0, question=Question("Where is the cat?", 0.0)),
        StepRecord(1.0, 2.0, STANDBY, 1_700_000_001.0),
        StepRecord(2.0, 3.0, RESPONSE, 1_700_000_002.0, text="The cat is on the sofa."),
        StepRecord(65.0, 66.0, RESPONSE, 1_700_000_065.0, text="A dog walks in."),
    ]
    for s in steps:
        panel.on_entries_added(session.add(s))
        panel.on_step_finished(None)
    return panel


def test_rows_show_stream_and_wall_time(qtbot):
    panel = filled_panel(qtbot)
    m = panel.model
    assert m.rowCount() == 3
    row = [m.data(m.index(2, c)) for c in range(4)]
    assert row[0] == "1:05" and row[2] == "Model" and row[3] == "A dog walks in."
    assert len(row[1]) == 8 and row[1].count(":") == 2  # local wall clock HH:MM:SS
    assert m.data(m.index(0, 2)) == "You"
    # Plain-word headers with an explanation each, and a legend for the timeline's colours.
    from PySide6.QtCore import Qt

    headers = [m.headerData(c, Qt.Orientation.Horizontal) for c in range(4)]
    assert headers == ["Stream", "Clock", "Who", "Text"]
    assert all(m.headerData(c, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole) for c in range(4))
    legend = [w.text() for w in panel.legend.findChildren(type(panel.title))]
    assert [t.split("</span> ")[1] for t in legend] == ["Silence", "Standby", "Response"]


def test_search_filters_and_copy_takes_what_is_shown(qtbot):
    panel = filled_panel(qtbot)
    panel.search.setText("CAT")
    assert [e.text for e in panel.visible_entries()] == ["Where is the cat?", "The cat is on the sofa."]
    text = panel.copy_to_clipboard()
    assert QGuiApplication.clipboard().text() == text
    assert text.splitlines() == ["[0:00] Q: Where is the cat?", "[0:02] A: The cat is on the sofa."]
    panel.search.clear()
    panel.table.selectRow(2)
    assert panel.copy_to_clipboard() == "[1:05] A: A dog walks in."


def test_timeline_counts_states(qtbot):
    panel = filled_panel(qtbot)
    assert panel.timeline.counts() == {SILENCE: 1, STANDBY: 1, RESPONSE: 2}
    assert "Response 2" in panel.timeline.toolTip()
    panel.resize(400, 300)
    image = panel.timeline.grab().toImage()
    assert image.width() > 0


def test_timeline_keeps_a_lone_response_visible_when_squeezed(qtbot):
    from app.session import StateSpan

    strip = StateTimeline()
    qtbot.addWidget(strip)
    strip.resize(50, 10)
    strip.set_spans([StateSpan(float(t), t + 1.0, RESPONSE if t == 500 else SILENCE) for t in range(1000)])
    image = strip.grab().toImage()
    greens = [x for x in range(image.width()) if image.pixelColor(x, 5).green() > 150]
    assert greens, "a single response among 1000 silent seconds must still show"


def test_export_writes_each_format(qtbot, tmp_path: Path):
    panel = filled_panel(qtbot)
    written = []
    panel.exported.connect(written.append)
    for fmt in ("srt", "vtt", "json"):
        path = panel.export_to(tmp_path / f"t.{fmt}")
        assert path.read_text(encoding="utf-8")
    assert len(written) == 3
    srt = panel.export_to(tmp_path / "t.srt").read_text(encoding="utf-8")
    assert srt.startswith("1\n00:00:00,000 --> 00:00:06,000\nQ: Where is the cat?\n\n2\n00:00:02,000 --> ")


def test_search_marks_and_counts_matches_and_a_new_run_starts_unfiltered(qtbot):
    from ui.transcript import highlighted

    panel = filled_panel(qtbot)
    panel.search.setText("cat")
    assert panel.matches.text() == "2 of 3" and panel.delegate.query == "cat"
    marked = highlighted("The Cat <b>sat</b> & the cat", "cat")
    assert marked.count("background:#ffd54f") == 2 and "&lt;b&gt;" in marked and "&amp;" in marked  # escaped
    panel.grab()  # the highlighting delegate paints without error
    panel.set_session(Session(meta=SessionMeta(source="/v/next.mp4")))  # the next run
    assert panel.search.text() == "" and panel.matches.isHidden()


def test_the_timeline_has_an_axis_and_a_click_names_its_second(qtbot):
    from app.session import StateSpan

    timeline = StateTimeline()
    qtbot.addWidget(timeline)
    timeline.set_spans([StateSpan(float(t), t + 1.0, SILENCE) for t in range(120)])
    timeline.resize(600, timeline.sizeHint().height())
    assert timeline.height() > 10 + 6  # room for the time labels under the strip
    seen: list[float] = []
    timeline.seek_requested.connect(seen.append)
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtTest import QTest

    QTest.mouseClick(timeline, Qt.MouseButton.LeftButton, pos=QPoint(300, 5))
    assert seen == [60.0]
    timeline.grab()  # paints its axis


def test_a_reopened_session_plays_back_from_the_clicked_line(make_harness, sample_clip, qtbot):
    """Clicking a line of a reopened session opens the player there: the picture of that second and the
    words the model said then (a line of a live run does nothing: it cannot be sought)."""
    from PySide6.QtTest import QTest

    h = make_harness()
    panel = h.window.live_tab.transcript
    session = Session(meta=SessionMeta(source=str(sample_clip)))
    for s in (
        StepRecord(0.0, 1.0, SILENCE, 1_700_000_000.0),
        StepRecord(1.0, 2.0, RESPONSE, 1_700_000_001.0, text="A red ball <rolls> in."),
        StepRecord(2.0, 3.0, SILENCE, 1_700_000_002.0),
    ):
        session.add(s)
    panel.set_session(session)  # as a run: no play back
    assert panel.play_button.isHidden()
    panel.table.clicked.emit(panel.proxy.index(0, 3))
    assert h.window.session_player is None
    panel.set_session(session, reopened=True)
    assert not panel.play_button.isHidden()
    panel.table.clicked.emit(panel.proxy.index(0, 3))
    player = h.window.session_player
    assert player is not None and player.isVisible()
    qtbot.waitUntil(lambda: player.fps > 0 and player.player.shown_frame is not None, timeout=15000)
    assert abs(player.seconds - 1.0) < 0.1 and player.subtitle.text() == "A red ball <rolls> in."  # plain text
    assert player.player.shown_frame == round(1.0 * player.fps)
    player.timeline.seek_requested.emit(2.5)
    assert abs(player.seconds - 2.5) < 0.1
    QTest.qWait(50)
    player.close()
    qtbot.waitUntil(lambda: h.window.session_player is None, timeout=5000)


def test_a_session_whose_video_is_gone_still_plays_its_words(qtbot, tmp_path):
    from ui.session_player import SessionPlayer

    session = Session(meta=SessionMeta(source=str(tmp_path / "gone.mp4")))
    session.add(StepRecord(0.0, 1.0, SILENCE, 0.0, question=Question("Narrate everything.", 0.0, "preset")))
    session.add(StepRecord(1.0, 2.0, SILENCE, 0.5, question=Question("Where is it?", 1.0, "typed")))
    session.add(StepRecord(3.0, 4.0, RESPONSE, 1.0, text="Hello."))
    player = SessionPlayer(session, at=0.5)
    assert player.subtitle.text() == ""  # the task's standing instruction was never a subtitle
    player.seek_to(1.5)
    assert player.subtitle.text() == "Q: Where is it?"  # a question someone asked was
    player.seek_to(3.2)
    qtbot.addWidget(player)
    assert "not there any more" in player.note.text()
    assert player.subtitle.text() == "Q: Where is it?\nHello."  # the question still shows over its answer
    player.seek_to(30.0)
    assert player.subtitle.text() == ""


def test_a_long_line_wraps_whole(qtbot):
    panel = filled_panel(qtbot)
    panel.resize(360, 400)
    panel.show()
    session = panel.session
    long = "The person walks to the window, opens it, looks outside at the street for a while and then " * 3
    panel.on_entries_added(session.add(StepRecord(70.0, 71.0, RESPONSE, 1_700_000_070.0, text=long)))
    qtbot.waitUntil(lambda: panel.table.rowHeight(3) > 4 * panel.table.fontMetrics().lineSpacing(), timeout=2000)
    short = panel.table.rowHeight(2)
    assert panel.table.rowHeight(3) > 3 * short  # as tall as its text, not cut after two lines
