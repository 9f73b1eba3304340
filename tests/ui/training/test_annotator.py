"""The annotator on its own (offscreen): frames decoded off the GUI thread and only the newest
asked for shown; the zoomable strip and its draggable event edges; no item without its text;
every problem of an item listed; the notice where the released converter would turn a question
into the clip's instruction, and the user's choice recorded through the library."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from fakes import write_video
from PySide6.QtCore import QEvent, QObject, QPoint, QPointF, Qt, Slot
from PySide6.QtGui import QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication

from app.training.library import FrameReader, ItemRef, Library
from model.presets import task_instruction
from ui.training.annotator import Annotator
from ui.training.player import FrameWorker, Player
from ui.training.thumbnails import cached

FPS = 10  # video frames per second of the generated clip: one turn is 10 frames
SECONDS = 120  # a long clip: at fit zoom one second is a few pixels wide


@pytest.fixture
def library(tmp_path: Path) -> Library:
    video = write_video(tmp_path / "clips" / "long.mp4", SECONDS * FPS, FPS, (96, 64))
    library = Library(tmp_path / "project")
    assert library.import_videos([video]).added
    return library


@pytest.fixture
def annotator(qtbot, library: Library):
    a = Annotator()
    qtbot.addWidget(a)
    a.resize(1100, 760)
    a.show()
    a.set_library(library)
    a.set_clip(library.clips[0].id)
    qtbot.waitUntil(a.view.has_image, timeout=5000)
    yield a
    a.shutdown()


def saved(library: Library) -> list[dict]:
    return json.loads(library.annotation_path.read_text(encoding="utf-8"))


def mouse(widget, kind: QEvent.Type, x: float, buttons=Qt.MouseButton.LeftButton) -> None:
    """A mouse event at (x, the middle of the strip's bar), with ``buttons`` held."""
    pos = QPointF(x, widget.BAR_TOP + widget.BAR_HEIGHT / 2)
    button = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseMove else Qt.MouseButton.LeftButton
    event = QMouseEvent(kind, pos, widget.mapToGlobal(pos), button, buttons, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)


def drag(strip, x0: float, x1: float, steps: int = 6) -> None:
    mouse(strip, QEvent.Type.MouseButtonPress, x0)
    for k in range(1, steps + 1):
        mouse(strip, QEvent.Type.MouseMove, x0 + (x1 - x0) * k / steps)


# ---------------------------------------------------------------------------------------------
# Decoding off the GUI thread


class GatedReader:
    """A FrameReader stand-in whose read of ``gated`` (None: the first read) waits at a gate, so
    requests pile up behind it."""

    def __init__(self, gated: int | None = None) -> None:
        self.frame_count, self.reads, self.closed, self.gated = 100, [], False, gated
        self.entered, self.gate = threading.Event(), threading.Event()

    def read(self, index: int) -> np.ndarray:
        self.reads.append(index)
        if self.gated is None or index == self.gated:
            self.entered.set()
            assert self.gate.wait(5)
        return np.full((8, 8, 3), index, np.uint8)

    def close(self) -> None:
        self.closed = True


class Sink(QObject):
    """Receives the worker's pictures (a QObject in the GUI thread: the connection is queued)."""

    def __init__(self) -> None:
        super().__init__()
        self.got: list[tuple[int, int]] = []  # (frame, the picture's value)
        self.on_gui_thread: list[bool] = []

    @Slot(int, int, int, object)
    def on_frame(self, generation: int, seq: int, frame: int, image: object) -> None:
        self.got.append((frame, int(image[0, 0, 0])))  # type: ignore[index]
        self.on_gui_thread.append(threading.current_thread() is threading.main_thread())


def test_the_worker_delivers_the_frame_asked_last_not_the_stale_ones(qtbot) -> None:
    reader = GatedReader()
    worker = FrameWorker("clip.mp4", lambda path: reader)
    sink = Sink()
    worker.frame_ready.connect(sink.on_frame)
    worker.start()
    worker.request(1)
    assert reader.entered.wait(5)  # the worker is decoding frame 1...
    for frame in range(2, 51):  # ...while the user seeks on, 49 times
        worker.request(frame)
    reader.gate.set()
    qtbot.waitUntil(lambda: bool(sink.got), timeout=5000)
    qtbot.wait(150)  # nothing else arrives
    assert sink.got == [(50, 50)]  # frame 1 was stale when it was ready; 2..49 were never decoded
    assert reader.reads == [1, 50]
    assert sink.on_gui_thread == [True]  # handed over by a queued signal
    assert worker.stop(wait=5) and reader.closed


def test_while_playing_a_late_picture_is_still_shown(qtbot) -> None:
    reader = GatedReader()
    worker = FrameWorker("clip.mp4", lambda path: reader)
    sink = Sink()
    worker.frame_ready.connect(sink.on_frame)
    worker.start()
    worker.request(1, rate=10.0, late_ok=True)
    assert reader.entered.wait(5)
    worker.request(2, rate=10.0, late_ok=True)
    reader.gate.set()
    qtbot.waitUntil(lambda: len(sink.got) == 2, timeout=5000)
    assert [f for f, _ in sink.got] == [1, 2]
    assert worker.stop(wait=5)


@pytest.mark.parametrize("scrubbing", [False, True])
def test_a_drag_shows_pictures_on_the_way_a_seek_only_its_own(qtbot, scrubbing: bool) -> None:
    reader = GatedReader(gated=30)
    player = Player(lambda path: reader)
    qtbot.addWidget(player)
    shown: list[int] = []
    player.frame_shown.connect(shown.append)
    player.open(Path("clip.mp4"), frames=100)
    qtbot.waitUntil(lambda: shown == [0], timeout=5000)
    player.seek(30, scrubbing=scrubbing)
    assert reader.entered.wait(5)
    player.seek(60, scrubbing=scrubbing)
    reader.gate.set()
    qtbot.waitUntil(lambda: shown[-1] == 60, timeout=5000)
    assert shown == ([0, 30, 60] if scrubbing else [0, 60])
    assert player.shutdown()


def test_the_view_ends_on_the_last_seek(qtbot, annotator: Annotator) -> None:
    a = annotator
    for frame in (300, 990, 40, 700):
        a.seek(frame)
    assert a.position == 700  # the playhead moves at once
    assert "frame 700" in a.time_label.text()
    qtbot.waitUntil(lambda: a.player.shown_frame == 700, timeout=5000)
    qtbot.wait(200)
    assert a.player.shown_frame == 700  # no older picture came after it


def test_playing_shows_pictures_both_ways_and_stops_at_the_ends(qtbot, annotator: Annotator) -> None:
    a = annotator
    shown: list[int] = []
    a.player.frame_shown.connect(shown.append)
    a.seek(a.frames - 8)
    a.play(1)
    qtbot.waitUntil(lambda: a.direction == 0, timeout=5000)
    assert a.position == a.frames - 1
    qtbot.waitUntil(lambda: a.player.shown_frame == a.frames - 1, timeout=5000)
    a.seek(12)
    qtbot.keyClick(a.view, Qt.Key.Key_J)
    qtbot.waitUntil(lambda: a.direction == 0, timeout=5000)
    assert a.position == 0
    qtbot.waitUntil(lambda: a.player.shown_frame == 0, timeout=5000)
    backwards = shown[shown.index(a.frames - 1) + 1 :]
    assert len(backwards) >= 3 and backwards[-1] == 0  # the picture followed the playhead back
    assert backwards == sorted(backwards, reverse=True)


def test_nothing_is_decoded_on_the_gui_thread(qtbot, library: Library, monkeypatch) -> None:
    on_main: list[tuple[str, bool]] = []
    real_init, real_read = FrameReader.__init__, FrameReader.read

    def init(self, path):  # noqa: ANN001, ANN202
        on_main.append(("open", threading.current_thread() is threading.main_thread()))
        real_init(self, path)

    def read(self, index):  # noqa: ANN001, ANN202
        on_main.append(("read", threading.current_thread() is threading.main_thread()))
        return real_read(self, index)

    monkeypatch.setattr(FrameReader, "__init__", init)
    monkeypatch.setattr(FrameReader, "read", read)
    a = Annotator()
    qtbot.addWidget(a)
    a.resize(1100, 760)
    a.show()
    a.set_library(library)
    a.set_clip(library.clips[0].id)
    qtbot.waitUntil(a.view.has_image, timeout=5000)
    a.seek(600)
    a.step_seconds(1)
    a.step_frames(-1)
    a.play(-1)
    qtbot.wait(300)
    a.play(1)
    qtbot.wait(300)
    a.pause()
    for _ in range(4):
        a.zoom_in()
    path = a.thumbnails.path
    qtbot.waitUntil(lambda: cached(path, a.thumbnails.visible_seconds()[0] * FPS, a.thumbnails.HEIGHT)[0], timeout=5000)
    a.set_clip(None)
    a.shutdown()
    kinds = {kind for kind, _ in on_main}
    assert kinds == {"open", "read"} and len(on_main) > 10
    assert not any(main for _, main in on_main), "a video was opened or decoded on the GUI thread"


def test_switching_clips_and_shutdown_end_the_decoding_threads(qtbot, annotator: Annotator, library: Library) -> None:
    a = annotator
    first, thumbs = a.player.worker, a.thumbnails.worker
    assert first is not None and first.is_alive() and thumbs is not None
    a.set_clip(None)  # the GUI does not wait: the threads end on their own
    qtbot.waitUntil(lambda: not first.is_alive() and not thumbs.is_alive(), timeout=5000)
    a.set_clip(library.clips[0].id)
    qtbot.waitUntil(a.view.has_image, timeout=5000)
    a.play(1)
    a.shutdown()
    assert a.player.threads_alive() == 0 and a.direction == 0
    alive = [t.name for t in threading.enumerate() if t.name.startswith(("frames:", "thumbs:"))]
    assert alive == []


# ---------------------------------------------------------------------------------------------
# The strip: zoom, scroll, edges


def test_zoom_changes_seconds_per_pixel_and_keeps_the_playhead_visible(qtbot, annotator: Annotator) -> None:
    a, strip = annotator, annotator.strip
    a.seek(80 * FPS)
    fit = strip.seconds_per_pixel()
    assert fit == pytest.approx(SECONDS / strip.width(), rel=0.02)  # the whole clip: under 10 px a second
    x = strip.playhead_x()
    qtbot.keyClick(a.view, Qt.Key.Key_Plus)
    assert strip.seconds_per_pixel() == pytest.approx(fit / strip.ZOOM_STEP)
    assert strip.playhead_x() == pytest.approx(x, abs=1)  # zoomed around the playhead
    for _ in range(12):
        qtbot.keyClick(a.view, Qt.Key.Key_Plus)
    assert strip.seconds_per_pixel() == pytest.approx(1 / strip.MAX_SECOND_PX)  # one second: 240 px
    assert 0 <= strip.playhead_x() <= strip.width()
    # Clicking the zoomed strip lands in the second under the mouse.
    qtbot.mouseClick(strip, Qt.MouseButton.LeftButton, pos=QPoint(int(strip.x_of_second(81.5)), strip.BAR_TOP + 5))
    assert a.second == 81
    # A playhead moved out of sight brings the strip along.
    a.seek(5 * FPS)
    assert 0 <= strip.playhead_x() <= strip.width() and strip.offset > 0
    a.seek(0)
    assert strip.offset == 0
    # Ctrl+wheel zooms out; the plain wheel scrolls; - and 0.
    zoomed = strip.seconds_per_pixel()
    wheel = QWheelEvent(
        QPointF(50, 10),
        strip.mapToGlobal(QPointF(50, 10)),
        QPoint(),
        QPoint(0, -120),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.ControlModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(strip, wheel)
    assert strip.seconds_per_pixel() == pytest.approx(zoomed * strip.ZOOM_STEP)
    qtbot.keyClick(a.view, Qt.Key.Key_Minus)
    assert strip.seconds_per_pixel() == pytest.approx(zoomed * strip.ZOOM_STEP**2)
    assert a.strip_panel.scroll.isEnabled() and a.strip_panel.scroll.maximum() == int(strip.max_offset())
    qtbot.keyClick(a.view, Qt.Key.Key_0)
    assert strip.seconds_per_pixel() == pytest.approx(fit) and strip.offset == 0
    assert not a.strip_panel.scroll.isEnabled()


def test_dragging_an_events_edge_is_one_undoable_edit(qtbot, annotator: Annotator, library: Library) -> None:
    a, strip = annotator, annotator.strip
    clip_id = library.clips[0].id
    ref = library.add_event(clip_id, "A bar sweeps", 20, 25)
    a.refresh()
    for _ in range(5):
        a.zoom_in()
    a.seek(22 * FPS)
    edits: list[list] = []
    a.edited.connect(edits.append)

    drag(strip, strip.x_of_second(25), strip.x_of_second(28))  # the end edge, three seconds later
    assert library.clip(clip_id).responses[0].span == (20, 25)  # nothing changes while dragging
    assert strip.dragging is not None and strip.dragging[2:] == (20, 28)
    mouse(strip, QEvent.Type.MouseButtonRelease, strip.x_of_second(28), Qt.MouseButton.NoButton)
    assert library.clip(clip_id).responses[0].span == (20, 28)
    assert saved(library)[0]["response"][0]["content"] == "A bar sweeps"
    assert edits == [[clip_id]]
    assert a.selected_ref() == ref and strip.selection == (20, 28)

    # The start edge: past the end it stops one second before it.
    drag(strip, strip.x_of_second(20), strip.x_of_second(40))
    mouse(strip, QEvent.Type.MouseButtonRelease, strip.x_of_second(40), Qt.MouseButton.NoButton)
    assert library.clip(clip_id).responses[0].span == (27, 28)
    assert len(edits) == 2

    # Each drag was one edit: two undos take both back, a third the adding of the event.
    a.undo()
    assert library.clip(clip_id).responses[0].span == (20, 28)
    a.undo()
    assert library.clip(clip_id).responses[0].span == (20, 25)
    assert library.undo_label == "add an event"

    # A click on an edge without moving seeks there and edits nothing.
    mouse(strip, QEvent.Type.MouseButtonPress, strip.x_of_second(20))
    mouse(strip, QEvent.Type.MouseButtonRelease, strip.x_of_second(20), Qt.MouseButton.NoButton)
    assert a.second == 20 and library.clip(clip_id).responses[0].span == (20, 25)
    assert library.undo_label == "add an event"


def test_the_thumbnail_row_follows_the_zoom(qtbot, annotator: Annotator) -> None:
    a, row = annotator, annotator.thumbnails
    fit_every = row.every()
    shown = row.visible_seconds()
    assert shown and all(s % fit_every == 0 for s in shown)
    qtbot.waitUntil(lambda: all(cached(row.path, s * FPS, row.HEIGHT)[0] for s in shown), timeout=10_000)
    known, image = cached(row.path, shown[1] * FPS, row.HEIGHT)
    assert known and image is not None and image.height() == row.HEIGHT
    for _ in range(6):
        a.zoom_in()
    assert row.every() < fit_every  # more thumbnails the deeper the zoom
    before = a.second  # a thumbnail clicked: its second
    qtbot.mouseClick(row, Qt.MouseButton.LeftButton, pos=QPoint(int(a.strip.x_of_second(before + 1.5)), 10))
    assert a.second == before + 1


# ---------------------------------------------------------------------------------------------
# The form and the list


def test_nothing_is_added_without_its_text(qtbot, annotator: Annotator, library: Library) -> None:
    a = annotator
    qtbot.keyClick(a.view, Qt.Key.Key_BracketLeft)
    qtbot.keyClick(a.view, Qt.Key.Key_Right)
    qtbot.keyClick(a.view, Qt.Key.Key_BracketRight)
    assert a.form.text.hasFocus() or qtbot.waitUntil(a.form.text.hasFocus, timeout=1000) is None
    assert not a.form.add.isEnabled()
    qtbot.keyClicks(a.form.text, "   ")
    assert not a.form.add.isEnabled()  # whitespace is no caption
    qtbot.keyClick(a.form.text, Qt.Key.Key_Return)
    assert library.clips[0].responses == ()
    assert "Type what happened" in a.form.hint.text()
    qtbot.mouseClick(a.form.add, Qt.MouseButton.LeftButton)
    assert library.clips[0].responses == ()
    qtbot.keyClicks(a.form.text, "A bar sweeps")
    assert a.form.add.isEnabled()
    qtbot.keyClick(a.form.text, Qt.Key.Key_Return)
    assert [r.content for r in library.clips[0].responses] == ["A bar sweeps"]
    # The same for a question.
    qtbot.keyClick(a.view, Qt.Key.Key_Q)
    qtbot.keyClick(a.form.text, Qt.Key.Key_Return)
    assert library.clips[0].questions == () and "question" in a.form.hint.text()
    assert not a.form.add.isEnabled()


def test_every_problem_of_an_item_is_listed(qtbot, annotator: Annotator, library: Library) -> None:
    a = annotator
    clip_id = library.clips[0].id
    for k in range(6):  # other items with a problem each: more than the list shows under it
        library.add_answer(clip_id, f"late {k}", SECONDS + 10 + k)
    bad = library.add_event(clip_id, "", SECONDS + 5, SECONDS + 2)  # three problems at once
    a.refresh()
    mine = a.problems_of(bad)
    assert len(mine) == 3
    assert any("before it starts" in m for m in mine)
    assert any("past the clip's end" in m for m in mine)
    assert any("no description" in m for m in mine)
    row = a.row_of(bad)
    assert all(m.replace("'", "&#x27;") in row.toolTip(2) for m in mine)
    a.select_ref(bad)
    text = a.problems_label.text()
    assert a.problems_label.isVisible()
    assert all(m in text for m in mine), text  # all of the selected item's, not only the first
    assert "more" in text  # the others are summarised
    a.select_ref(ItemRef("response", 0))
    assert sum(m in a.problems_label.text() for m in mine) < 3


# ---------------------------------------------------------------------------------------------
# The converter trap


def test_the_trap_notice_shows_and_the_choice_goes_to_the_library(
    qtbot, annotator: Annotator, library: Library, monkeypatch
) -> None:
    a = annotator
    clip_id = library.clips[0].id
    assert not a.notice.isVisible()  # no question: nothing to warn about
    library.add_event(clip_id, "A bar sweeps", 2, 4)
    library.add_question(clip_id, "What colour is the bar?", 5)
    a.refresh()
    assert a.notice.isVisible()
    notice = a.notice.text.text()
    assert "What colour is the bar?" in notice and "0:05" in notice
    assert a.notice.buttons["task"].isChecked() and not a.notice.buttons["first_question"].isChecked()
    narrate = task_instruction("narrate")
    assert f"Instruction the model gets from 0:00: {narrate}" in a.strip.describe(0)
    assert "Question asked at 0:05: What colour is the bar?" in a.strip.describe(5)

    calls: list[tuple[str, str]] = []
    real = library.set_instruction_from

    def spy(clip: str, value: str):  # noqa: ANN202
        calls.append((clip, value))
        return real(clip, value)

    monkeypatch.setattr(library, "set_instruction_from", spy)
    qtbot.mouseClick(a.notice.buttons["first_question"], Qt.MouseButton.LeftButton)
    assert calls == [(clip_id, "first_question")]
    assert saved(library)[0]["instruction_from"] == "first_question"
    assert a.notice.isVisible() and a.notice.buttons["first_question"].isChecked()
    assert "Instruction the model gets from 0:00: What colour is the bar?" in a.strip.describe(0)
    qtbot.mouseClick(a.notice.buttons["first_question"], Qt.MouseButton.LeftButton)
    assert len(calls) == 1  # the same choice again is no edit
    a.undo()
    assert "instruction_from" not in saved(library)[0]
    assert a.notice.buttons["task"].isChecked()
    assert narrate in a.strip.describe(0)
