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
    assert panel.export_to(tmp_path / "t.srt").read_text(encoding="utf-8").startswith("1\n00:00:02,000 --> ")
