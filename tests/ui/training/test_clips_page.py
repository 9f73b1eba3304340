"""The Training tab's clip page, driven with key presses offscreen: import two generated clips,
annotate an event at the playhead, check the saved raw JSON and that the timeline shows what
to-stream makes of it; bad inputs (a corrupt clip, a malformed annotation file) leave the library
intact with a clear message; problems are highlighted; undo/redo; the player's keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import write_video
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from app.settings import Settings
from app.training.library import ItemRef
from model import protocol as P
from ui.training.annotator import PROBLEM_COLOR, plain_tip
from ui.training.clips_page import PROJECT_KEY, ClipsPage

FPS = 10  # video frames per second of the generated clips: one turn is 10 frames


@pytest.fixture
def clips(tmp_path: Path) -> list[Path]:
    return [
        write_video(tmp_path / "phone" / "one.mp4", 6 * FPS, FPS, (96, 64)),
        write_video(tmp_path / "phone" / "two.mp4", 4 * FPS, FPS, (96, 64)),
    ]


@pytest.fixture
def page(qtbot, settings: Settings, tmp_path: Path) -> ClipsPage:
    page = ClipsPage(settings)
    qtbot.addWidget(page)
    page.resize(1280, 760)
    page.show()
    assert page.open_project(tmp_path / "project")
    return page


def press(qtbot, widget, *keys, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    for key in keys:
        qtbot.keyClick(widget, key, modifier)


def saved(page: ClipsPage) -> list[dict]:
    return json.loads(page.annotation_path().read_text(encoding="utf-8"))


def stream_states(page: ClipsPage, index: int) -> list[str]:
    """What `streamo-live data to-stream` makes of the saved file: each turn's assistant content."""
    converted = P.to_stream(saved(page), video_prefix=page.video_prefix())
    return [m["content"] for m in converted[index]["messages"][2::2]]


def test_import_two_clips_and_annotate_an_event_by_keys(
    qtbot, page: ClipsPage, clips: list[Path], settings: Settings
) -> None:
    changes: list[int] = []
    page.changed.connect(lambda: changes.append(1))
    page.library_view.import_paths(clips)
    assert page.library_view.list.count() == 2
    assert "Imported 2 clips" in page.library_view.notice.text()
    page.library_view.list.setCurrentRow(0)
    a = page.annotator
    assert a.clip is not None and a.clip.name == "one.mp4" and a.frames == 6 * FPS

    view = a.view
    press(qtbot, view, Qt.Key.Key_Right, Qt.Key.Key_Right)  # second 2
    assert a.position == 2 * FPS
    press(qtbot, view, Qt.Key.Key_BracketLeft)  # the event starts here
    press(qtbot, view, Qt.Key.Key_Right, Qt.Key.Key_Right, Qt.Key.Key_Period)  # second 4, one frame in
    assert a.position == 4 * FPS + 1 and a.second == 4
    press(qtbot, view, Qt.Key.Key_BracketRight)  # ...and is going on in this second
    assert a.form.text.hasFocus() or qtbot.waitUntil(a.form.text.hasFocus, timeout=1000) is None
    qtbot.keyClicks(a.form.text, "A bar sweeps <right>")
    press(qtbot, a.form.text, Qt.Key.Key_Return)

    sample = saved(page)[0]
    assert sample["video_name"] == "one.mp4" and Path(sample["video_path"]).name == "one.mp4"
    assert sample["response"] == [{"content": "A bar sweeps <right>", "st_time": 3.0, "end_time": 5.0, "time": ""}]
    assert sample["question"] == []
    assert changes  # the page said an edit was saved
    # The strip shows the turns to-stream makes of the saved file, turn for turn.
    expected = stream_states(page, 0)
    assert expected == ["</Silence>"] * 2 + ["</Standby>"] * 3 + ["</Response> A bar sweeps <right>"]
    shown = [P.assistant_turn_content(t.state, t.text) for t in a.strip.turns]
    assert shown == expected
    # The list shows the event with its seconds; the second clip is still not annotated.
    row = a.items.topLevelItem(0)
    assert (row.text(0), row.text(1), row.text(2)) == ("Event", "0:02 – 0:05", "A bar sweeps <right>")
    assert "not annotated" in page.library_view.list.item(1).text()
    assert "1 event" in page.library_view.list.item(0).text()
    # The trainer's inputs and the remembered project.
    assert page.annotation_path() == page.library.folder / "annotations.json"
    assert settings.value(PROJECT_KEY, "") == str(page.library.folder)


def test_instant_answer_and_question_at_the_playhead(qtbot, page: ClipsPage, clips: list[Path]) -> None:
    page.library_view.import_paths(clips[:1])
    a = page.annotator
    press(qtbot, a.view, Qt.Key.Key_Q)
    qtbot.keyClicks(a.form.text, "What moves?")
    press(qtbot, a.form.text, Qt.Key.Key_Return)
    press(qtbot, a.view, Qt.Key.Key_Right, Qt.Key.Key_Right, Qt.Key.Key_Right, Qt.Key.Key_A)
    qtbot.keyClicks(a.form.text, "A bar.")
    press(qtbot, a.form.text, Qt.Key.Key_Enter)
    sample = saved(page)[0]
    assert sample["question"] == [{"content": "What moves?", "time": "1"}]
    assert sample["response"] == [{"content": "A bar.", "st_time": "", "end_time": "", "time": "4"}]
    assert [P.assistant_turn_content(t.state, t.text) for t in a.strip.turns] == stream_states(page, 0)
    assert a.strip.turns[3].text == "A bar." and a.strip.turns[0].question == "What moves?"
    # The task type is the clip's, saved too.
    a.task.setCurrentText("QA")
    a.task.lineEdit().editingFinished.emit()
    assert saved(page)[0]["task_type"] == "QA"


def test_problems_are_highlighted_with_the_reason_and_fixed_by_editing(
    qtbot, page: ClipsPage, clips: list[Path]
) -> None:
    page.library_view.import_paths(clips[:1])
    a = page.annotator
    press(qtbot, a.view, Qt.Key.Key_End, Qt.Key.Key_BracketLeft)  # the last second
    press(qtbot, a.view, Qt.Key.Key_Home, Qt.Key.Key_Right, Qt.Key.Key_BracketRight)  # end before the start
    qtbot.keyClicks(a.form.text, "backwards")
    press(qtbot, a.form.text, Qt.Key.Key_Return)
    row = a.row_of(ItemRef("response", 0))
    assert row is not None and row.text(0).startswith("⚠")
    assert row.foreground(2).color() == PROBLEM_COLOR
    assert "before it starts" in row.toolTip(2)
    assert a.problems_label.isVisible() and "before it starts" in a.problems_label.text()
    assert "1 problem" in page.library_view.list.item(0).text()

    # Fix it: select, Enter edits, move the start to second 0, Enter saves.
    a.select_ref(ItemRef("response", 0))
    press(qtbot, a.items, Qt.Key.Key_Return)
    assert a.form.editing == ItemRef("response", 0) and a.form.end.value() == 2
    a.form.start.setValue(0)
    press(qtbot, a.form.text, Qt.Key.Key_Return)
    assert saved(page)[0]["response"][0] == {"content": "backwards", "st_time": 1.0, "end_time": 2.0, "time": ""}
    row = a.row_of(ItemRef("response", 0))
    assert not row.text(0).startswith("⚠") and row.foreground(2).color() != PROBLEM_COLOR
    assert not a.problems_label.isVisible()
    assert "problem" not in page.library_view.list.item(0).text()
    assert page.library_view.list.item(0).foreground().color() != PROBLEM_COLOR


def test_undo_and_redo_keys(qtbot, page: ClipsPage, clips: list[Path]) -> None:
    page.library_view.import_paths(clips)
    page.library_view.list.setCurrentRow(1)
    a = page.annotator
    press(qtbot, a.view, Qt.Key.Key_BracketLeft, Qt.Key.Key_Right, Qt.Key.Key_BracketRight)
    qtbot.keyClicks(a.form.text, "x")
    press(qtbot, a.form.text, Qt.Key.Key_Return)
    assert len(saved(page)[1]["response"]) == 1
    qtbot.keyClick(a.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert saved(page)[1]["response"] == [] and a.items.topLevelItemCount() == 0
    qtbot.keyClick(a.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert len(saved(page)[1]["response"]) == 1 and a.items.topLevelItemCount() == 1
    # Removing a clip from the list, then undoing it from the player, brings the clip back.
    page.library_view.list.setCurrentRow(0)
    press(qtbot, page.library_view.list, Qt.Key.Key_Delete)
    assert [s["video_name"] for s in saved(page)] == ["two.mp4"]
    qtbot.keyClick(a.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert [s["video_name"] for s in saved(page)] == ["one.mp4", "two.mp4"]
    assert page.library_view.list.count() == 2 and a.clip is not None and a.clip.name == "one.mp4"


def test_bad_inputs_leave_the_library_intact_with_clear_messages(
    qtbot, page: ClipsPage, clips: list[Path], tmp_path: Path
) -> None:
    messages: list[tuple[str, str]] = []
    page.message.connect(lambda level, text: messages.append((level, text)))
    corrupt = tmp_path / "phone" / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    report = page.library_view.import_paths([tmp_path / "phone"])  # a folder: two good clips, one corrupt
    assert report is not None and len(report.added) == 2
    notice = page.library_view.notice.text()
    assert "1 could not be imported" in notice and "corrupt.mp4" in notice and "re-encode" in notice
    assert page.library_view.list.count() == 2
    assert messages and messages[-1][0] == "warning"
    page.library_view.list.setCurrentRow(0)
    press(qtbot, page.annotator.view, Qt.Key.Key_A)
    qtbot.keyClicks(page.annotator.form.text, "kept")
    press(qtbot, page.annotator.form.text, Qt.Key.Key_Return)
    before = page.annotation_path().read_bytes()

    bad = tmp_path / "broken.json"
    bad.write_text('[{"video_path": "one.mp4", "response": [', encoding="utf-8")
    page.library_view.import_paths([bad])  # dropped or chosen: an annotation file
    notice = page.library_view.notice.text()
    assert "broken.json" in notice and "not valid JSON" in notice and page.library_view.notice.level == "error"
    assert page.annotation_path().read_bytes() == before and page.library_view.list.count() == 2

    # A project whose file is malformed is not opened; the open one stays, the file is untouched.
    other = tmp_path / "other"
    other.mkdir()
    (other / "annotations.json").write_text("{oops", encoding="utf-8")
    assert not page.open_project(other)
    assert "annotations.json.bak" in page.library_view.notice.text()
    assert (other / "annotations.json").read_text() == "{oops"
    assert page.library is not None and page.library.folder == tmp_path / "project"


def test_player_keys_strip_click_and_playback(qtbot, page: ClipsPage, clips: list[Path]) -> None:
    page.library_view.import_paths(clips[:1])
    a = page.annotator
    press(qtbot, a.view, Qt.Key.Key_Right)
    assert a.position == FPS
    press(qtbot, a.view, Qt.Key.Key_Right, modifier=Qt.KeyboardModifier.ShiftModifier)
    press(qtbot, a.view, Qt.Key.Key_Period, Qt.Key.Key_Period, Qt.Key.Key_Comma)
    assert a.position == FPS + 2
    press(qtbot, a.view, Qt.Key.Key_Left, modifier=Qt.KeyboardModifier.ShiftModifier)
    press(qtbot, a.view, Qt.Key.Key_Left)
    assert a.position == 1
    press(qtbot, a.view, Qt.Key.Key_Comma, Qt.Key.Key_Comma)  # not before the first frame
    assert a.position == 0
    qtbot.waitUntil(a.view.has_image, timeout=5000)  # decoded on the player's worker thread
    # Clicking the strip seeks: the middle of the strip is the middle of the clip.
    strip = a.strip
    qtbot.mouseClick(strip, Qt.MouseButton.LeftButton, pos=QPoint(strip.width() // 2, strip.BAR_TOP + 5))
    assert abs(a.position - 3 * FPS) <= 1
    # Space plays forward until K pauses; L plays, J plays backwards.
    press(qtbot, a.view, Qt.Key.Key_Home, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: a.position >= 3, timeout=3000)
    press(qtbot, a.view, Qt.Key.Key_K)
    stopped = a.position
    qtbot.wait(150)
    assert a.position == stopped and a.direction == 0
    press(qtbot, a.view, Qt.Key.Key_J)
    qtbot.waitUntil(lambda: a.position < stopped, timeout=3000)
    press(qtbot, a.view, Qt.Key.Key_Space)
    assert a.direction == 0


def test_drop_files_and_reopen_the_last_project(qtbot, page: ClipsPage, clips: list[Path], settings: Settings) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in clips])
    drop = QDropEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    page.library_view.dropEvent(drop)
    assert page.library_view.list.count() == 2
    again = ClipsPage(settings)
    qtbot.addWidget(again)
    assert again.library is not None and again.library.folder == page.library.folder
    assert [c.name for c in again.library.clips] == ["one.mp4", "two.mp4"]


def test_user_text_shows_as_plain_text(qtbot, page: ClipsPage, clips: list[Path]) -> None:
    page.library_view.import_paths(clips[:1])
    a = page.annotator
    press(qtbot, a.view, Qt.Key.Key_A)
    qtbot.keyClicks(a.form.text, "<b>bold?</b>")
    press(qtbot, a.form.text, Qt.Key.Key_Return)
    row = a.items.topLevelItem(0)
    assert row.text(2) == "<b>bold?</b>"
    assert "&lt;b&gt;bold?&lt;/b&gt;" in row.toolTip(2) and row.toolTip(2).startswith("<qt>")
    assert plain_tip("a < b & c") == "<qt>a &lt; b &amp; c</qt>"
