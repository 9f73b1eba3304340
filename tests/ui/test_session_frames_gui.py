"""Live's "Keep the frames the model saw": a run keeps every frame the engine got beside the session
log, named by its stream second; the session review shows the frame of the selected step; deleting
the session deletes them; with the option off nothing is written."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
from fakes import FakeEngine
from PySide6.QtGui import QImage

from app.live.frames import frame_name
from app.session import frames_dir
from app.settings import LiveOptions


class SeeingEngine(FakeEngine):
    """Keeps every (second, image) it is stepped on."""

    def __init__(self, fps: float = 1.0) -> None:
        super().__init__(["</Silence>", "</Response>"], fps=fps)
        self.seen: list[tuple[float, np.ndarray]] = []

    def step(self, image, t=None, on_token=None):
        self.seen.append((t, image.copy()))
        return super().step(image, t=t, on_token=on_token)


def seeing(made: list[SeeingEngine]):
    def factory(loaded, options):
        made.append(SeeingEngine(options.fps))
        return made[-1]

    return factory


def rgb_of(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h, stride = image.width(), image.height(), image.bytesPerLine()
    rows = np.frombuffer(image.constBits(), np.uint8, stride * h).reshape(h, stride)
    return rows[:, : w * 3].reshape(h, w, 3).copy()  # a copy: the buffer dies with the QImage


def test_kept_frames_are_what_the_model_saw_and_the_review_shows_them(
    make_harness, shared_loader, tiny_options, sample_source, talkative, qtbot, tmp_path
):
    from ui.sessions_dialog import SessionsDialog

    made: list[SeeingEngine] = []
    h = make_harness(loader=shared_loader, engine_factory=seeing(made))
    h.load(tiny_options)
    h.run(sample_source, replace(talkative, keep_frames=True))
    [engine] = made
    log_path = h.controller.session.path
    folder = frames_dir(log_path)
    assert folder == log_path.with_suffix(".frames") and folder.parent == log_path.parent
    steps = [r.record.t for r in h.reports]
    assert len(steps) == 10 and [t for t, _ in engine.seen] == steps
    assert sorted(p.name for p in folder.iterdir()) == [frame_name(t) for t in steps]
    assert frame_name(3.0) == "000003.0.png"
    for t, image in engine.seen:
        saved = cv2.cvtColor(cv2.imread(str(folder / frame_name(t))), cv2.COLOR_BGR2RGB)
        assert np.array_equal(saved, image)  # PNG is lossless: exactly what the engine got

    dialog = SessionsDialog(root=h.sessions.parent)
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.current_path() == log_path and dialog.steps.count() == 10
    dialog.steps.setCurrentRow(3)
    assert dialog.frame_path == folder / "000003.0.png"
    assert np.array_equal(rgb_of(dialog.frame.original.toImage()), engine.seen[3][1])
    assert not dialog.frame.pixmap().isNull() and "0:03" in dialog.frame_note.text()
    dialog.steps.setCurrentRow(7)
    assert np.array_equal(rgb_of(dialog.frame.original.toImage()), engine.seen[7][1])
    dialog.grab().save(str(tmp_path / "session_review.png"))

    assert dialog.delete_selected(confirm=False)
    assert not log_path.exists() and not folder.exists()
    assert dialog.frame_path is None and dialog.steps.count() == 0


def test_without_the_option_nothing_is_kept_and_the_review_says_so(
    make_harness, shared_loader, tiny_options, sample_source, talkative, qtbot
):
    from ui.sessions_dialog import NO_FRAMES, SessionsDialog

    made: list[SeeingEngine] = []
    h = make_harness(loader=shared_loader, engine_factory=seeing(made))
    h.load(tiny_options)
    assert not h.window.live_tab.controls.keep_frames.isChecked()  # off by default
    h.run(sample_source, talkative)
    assert len(made[0].seen) == 10
    assert [p.name for p in h.sessions.iterdir()] == [h.controller.session.path.name]  # the log alone

    dialog = SessionsDialog(root=h.sessions.parent)
    qtbot.addWidget(dialog)
    dialog.steps.setCurrentRow(4)
    assert dialog.frame_path is None and dialog.frame.original.isNull()
    assert dialog.frame_note.text() == NO_FRAMES


def test_the_option_is_kept_in_settings_and_fixed_during_a_run(make_harness, settings):
    assert settings.load(LiveOptions).keep_frames is False
    settings.save(LiveOptions(keep_frames=True))
    h = make_harness()  # the window reads its options from the settings
    controls = h.window.live_tab.controls
    assert controls.keep_frames.isChecked() and controls.options().keep_frames
    controls.keep_frames.setChecked(False)
    assert h.window.live_tab.live_options().keep_frames is False
    controls.set_running(True)
    assert not controls.keep_frames.isEnabled()
    controls.set_running(False)
    assert controls.keep_frames.isEnabled()


def test_frames_that_cannot_be_kept_are_a_warning_and_the_run_goes_on(
    make_harness, shared_loader, tiny_options, sample_source, talkative, tmp_path, monkeypatch
):
    blocker = tmp_path / "a file"
    blocker.write_text("x")
    monkeypatch.setattr("app.live.qt.frames_dir", lambda log_path: blocker / "frames")  # cannot be made
    made: list[SeeingEngine] = []
    h = make_harness(loader=shared_loader, engine_factory=seeing(made))
    h.load(tiny_options)
    h.run(sample_source, replace(talkative, keep_frames=True))
    assert len(h.reports) == 10 and h.log_closed()
    warnings = [m.text for m in h.window.banner.history if "frames the model saw" in m.text]
    assert len(warnings) == 1 and str(blocker / "frames") in warnings[0]
