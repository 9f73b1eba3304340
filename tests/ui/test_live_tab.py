"""Live tab pieces: source picker specs, drag and drop, subtitle streaming and fading, the
Standby indicator."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from app.live.qt import StepReport, TokenChunk
from app.session import StepRecord
from app.settings import SourceOptions
from model.protocol import RESPONSE, SILENCE, STANDBY
from ui.preview import PreviewWidget
from ui.source_picker import SCREEN, WEBCAM, SourcePicker
from ui.subtitles import SubtitleFeed


def report(t: float, state: str, text: str = "") -> StepReport:
    record = StepRecord(t, t + 1, state, 0.0, text=text, latency_ms={"total": 5.0}, context_turns=1, context_tokens=10)
    return StepReport(record, "RSS 0.1 GB", "torch")


def test_picker_builds_source_specs(qtbot):
    p = SourcePicker()
    qtbot.addWidget(p)
    p.set_options(SourceOptions(spec="webcam:0", width=1280, height=720))
    assert p.kind.currentIndex() == WEBCAM
    assert p.options() == SourceOptions(spec="webcam:0", width=1280, height=720)
    p.kind.setCurrentIndex(SCREEN)  # no X display here: monitor 1 with an explanation
    p.region.setText("10, 20, 640, 360")
    assert p.options().spec == "screen:1@10,20,640,360"
    assert p.problem_text() is None and p.region_note.isHidden()
    for typo in ("not a region", "top left", "100,100,640"):  # never the whole monitor instead
        p.region.setText(typo)
        assert p.options().spec == "" and "Invalid region" in p.problem_text()
        assert not p.region_note.isHidden() and "clear it to capture the whole monitor" in p.region_note.text()
    p.region.setText("")
    assert p.options().spec == "screen:1" and p.problem_text() is None and p.region_note.isHidden()
    p.set_file("/videos/a.mp4")
    assert p.options() == SourceOptions(spec="/videos/a.mp4", realtime=True)


def test_a_half_typed_region_does_not_start_a_capture(make_harness):
    h = make_harness()
    picker = h.window.live_tab.picker
    picker.kind.setCurrentIndex(SCREEN)
    picker.region.setText("100,100,640")
    assert not h.window.live_tab.start()
    assert h.window.controller.state.name == "IDLE" and "Invalid region '100,100,640'" in h.window.banner.text()


def test_dropping_a_video_file_on_the_preview_selects_it(make_harness, tmp_path: Path):
    h = make_harness()
    preview = h.window.live_tab.preview
    clip = tmp_path / "holiday.mkv"
    clip.write_bytes(b"")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(clip))])
    event = QDropEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    preview.dropEvent(event)
    assert h.window.live_tab.source_options().spec == str(clip)
    assert "holiday.mkv" in h.window.banner.text()
    text = QMimeData()
    text.setUrls([QUrl.fromLocalFile(str(tmp_path / "notes.txt"))])
    assert (
        PreviewWidget._dropped_file(
            QDropEvent(
                QPoint(1, 1), Qt.DropAction.CopyAction, text, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
            )
        )
        is None
    )


def test_subtitle_streams_token_by_token_then_fades(qtbot):
    feed = SubtitleFeed(hold_seconds=0.5)
    seen: list[str] = []
    feed.changed.connect(lambda: seen.append(feed.text))
    for piece in ("The ", "door ", "opens."):
        feed.on_token_streamed(TokenChunk(4.0, piece))
    assert seen[:3] == ["The ", "The door ", "The door opens."]
    feed.on_step_finished(report(4.0, RESPONSE, "The door opens."))
    assert feed.text == "The door opens." and feed.opacity == 1.0
    qtbot.waitUntil(lambda: 0.0 < feed.opacity < 1.0, timeout=3000)  # fading
    qtbot.waitUntil(lambda: feed.opacity == 0.0 and feed.text == "", timeout=3000)
    feed.on_token_streamed(TokenChunk(7.0, "Next"))  # a new answer starts fresh
    assert feed.text == "Next" and feed.opacity == 1.0


def test_standby_is_an_indicator_not_text(qtbot):
    feed = SubtitleFeed()
    preview = PreviewWidget(feed)
    qtbot.addWidget(preview)
    preview.show()
    feed.on_step_finished(report(1.0, STANDBY))
    assert feed.standby and feed.text == ""
    assert preview._pulse.isActive()  # the dots breathe
    feed.on_step_finished(report(2.0, SILENCE))
    assert not feed.standby and not preview._pulse.isActive()


def test_subtitles_show_the_newest_two_lines_like_live_captions(qtbot):
    from PySide6.QtCore import QRectF
    from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage, QPainter

    from ui.subtitles import paint_subtitle

    image = QImage(640, 480, QImage.Format.Format_ARGB32)
    font = QFont()
    font.setPointSize(18)
    metrics = QFontMetricsF(font)
    painter = QPainter(image)
    long = " ".join(f"word{i}" for i in range(80))  # many lines at this width
    box = paint_subtitle(painter, QRectF(0, 0, 640, 480), long, font, QColor("white"), QColor("black"), 1.0)
    one = paint_subtitle(painter, QRectF(0, 0, 640, 480), "Short.", font, QColor("white"), QColor("black"), 1.0)
    painter.end()
    pad = 2 * metrics.height() * 0.35
    assert box.height() - pad <= metrics.lineSpacing() + metrics.height() + 0.5  # two lines, not five
    assert box.height() - pad > metrics.lineSpacing()  # and not one
    assert one.height() < box.height()


def test_a_region_is_dragged_on_a_still_of_the_monitor(qtbot):
    from PySide6.QtTest import QTest

    from ui.region_picker import RegionPicker

    picker = RegionPicker((0, 0, 800, 600), ratio=2.0)  # a HiDPI monitor: 400x300 logical
    qtbot.addWidget(picker)
    picker.show()
    chosen: list = []
    picker.chosen.connect(chosen.append)
    assert picker.geometry().size().toTuple() == (400, 300)
    QTest.mouseClick(picker, Qt.MouseButton.LeftButton, pos=QPoint(10, 10))  # a click is no region
    assert chosen == [] and picker.isVisible()
    QTest.mousePress(picker, Qt.MouseButton.LeftButton, pos=QPoint(50, 40))
    QTest.mouseMove(picker, QPoint(250, 140))
    QTest.mouseRelease(picker, Qt.MouseButton.LeftButton, pos=QPoint(250, 140))
    assert chosen == [(100, 80, 400, 200)]  # the monitor's pixels


def test_the_picked_region_fills_the_field_and_is_outlined_while_captured(make_harness, qtbot):
    from PySide6.QtTest import QTest

    from app.live.qt import RunState

    h = make_harness()
    tab = h.window.live_tab
    picker = tab.picker
    picker.kind.setCurrentIndex(SCREEN)
    picker.monitors[1] = (0, 0, 640, 480)  # what mss lists on a display
    picker._monitors_listed = True
    if picker.monitor.findData(1) < 0:
        picker.monitor.addItem("Monitor 1", 1)
    picker.monitor.setCurrentIndex(picker.monitor.findData(1))
    assert picker.pick_region()
    layer = picker._region_picker
    QTest.mousePress(layer, Qt.MouseButton.LeftButton, pos=QPoint(20, 30))
    QTest.mouseRelease(layer, Qt.MouseButton.LeftButton, pos=QPoint(340, 210))
    assert picker.region.text() == "20,30,320,180" and picker.problem_text() is None
    tab.on_state_changed(RunState.RUNNING)
    assert tab.outline is not None and tab.outline.isVisible()
    assert tab.outline.area.getRect() == (20, 30, 320, 180)
    assert not tab.outline.mask().contains(QPoint(3 + 160, 3 + 90))  # a ring: the area itself stays clear
    tab.on_state_changed(RunState.IDLE)
    assert not tab.outline.isVisible()


def test_a_first_run_tries_the_sample_clip_in_one_click(make_harness, shared_loader, tiny_options, monkeypatch):
    """No source, no model: one click picks the sample clip, loads a model (the demo's path, here the
    tiny one) and starts as soon as it is ready."""
    from ui.live_tab import SAMPLE_CLIP

    h = make_harness(loader=shared_loader)
    tab = h.window.live_tab
    assert not tab.try_sample.isHidden()  # no source chosen yet
    tab.picker.realtime.setChecked(False)  # every sampled frame as fast as it goes: a short test
    loads: list = []
    monkeypatch.setattr(h.window, "use_demo_model", lambda: (loads.append(1), h.window.load_model(tiny_options)))
    with h.qtbot.waitSignal(h.controller.run_finished, timeout=60_000):
        tab.try_sample.click()
    assert loads == [1] and tab.source_options().spec == str(SAMPLE_CLIP)
    assert h.controller.session.entries or h.controller.session.states  # it ran on the sample
    assert tab.try_sample.isHidden()  # a source is chosen now


def test_pause_shows_on_the_preview_and_resume_has_a_play_icon(make_harness):
    from app.live.qt import RunState

    h = make_harness()
    tab = h.window.live_tab
    pause = tab.transport.pause_button
    running_icon = pause.icon().cacheKey()
    tab.on_state_changed(RunState.PAUSED)
    assert tab.preview.paused and pause.text() == "Resume" and pause.icon().cacheKey() != running_icon
    tab.on_state_changed(RunState.RUNNING)
    assert not tab.preview.paused and pause.text() == "Pause"


def test_no_camera_found_refuses_to_start_and_says_why(make_harness):
    h = make_harness()
    picker = h.window.live_tab.picker
    picker.kind.setCurrentIndex(WEBCAM)
    picker._on_cameras([])  # what the scan found
    assert picker.camera.currentText() == "No camera found"
    assert not h.window.live_tab.start() and "No camera was found" in h.window.banner.text()


def test_xwininfos_report_gives_the_windows_area():
    from ui.region_picker import parse_xwininfo

    report = """
xwininfo: Window id: 0x1a00003 "notes"
  Absolute upper-left X:  298
  Absolute upper-left Y:  177
  Relative upper-left X:  0
  Relative upper-left Y:  0
  Width: 404
  Height: 285
"""
    assert parse_xwininfo(report) == (298, 177, 404, 285)
    assert parse_xwininfo("xwininfo: error: no window") is None
