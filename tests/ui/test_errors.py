"""Every failure shows a message in the window, leaves the app running and loses no transcript."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fakes import DeadCamera

from app.settings import ModelOptions, SourceOptions
from app.sources import open_source


class FailingEngine:
    """The real engine, except that step number ``at`` raises ``error``."""

    def __init__(self, loaded, options, at: int, error: BaseException) -> None:
        from model.engine import StreamEngine

        self.inner = StreamEngine(loaded, options)
        self.at, self.error, self.calls = at, error, 0
        self.resets = 0

    def step(self, frame, t=None, on_token=None):
        self.calls += 1
        if self.calls == self.at:
            raise self.error
        return self.inner.step(frame, t=t, on_token=on_token)

    def reset(self) -> None:
        self.resets += 1
        self.inner.reset()

    def __getattr__(self, name):
        return getattr(self.inner, name)


def failing_factory(at: int, error: BaseException, made: list):
    def factory(loaded, options):
        engine = FailingEngine(loaded, options, at, error)
        made.append(engine)
        return engine

    return factory


def with_camera(factory):
    """An opener whose webcams come from ``factory``; files open as usual."""

    def opener(spec: str, **kw):
        if spec.startswith("webcam"):
            kw["capture_factory"] = factory
        return open_source(spec, **kw)

    return opener


def assert_still_usable(h, tiny_options, sample_source) -> None:
    """The window is alive and a new run works."""
    assert h.window.isVisible()
    before = len(h.reports)
    h.run(sample_source)
    assert len(h.reports) - before == 10


def test_missing_camera_shows_a_message(make_harness, shared_loader, tiny_options, sample_source):
    h = make_harness(loader=shared_loader, opener=with_camera(DeadCamera))
    h.load(tiny_options)
    h.run(SourceOptions(spec="webcam:3"))
    assert h.window.banner.level == "error"
    assert "No camera at index 3" in h.window.banner.text()
    # A start that never got a frame saves no empty "0 responses" session.
    assert not h.sessions.exists() or not list(h.sessions.glob("*.jsonl"))
    h.window.live_tab.set_options(sample_source, h.window.live_tab.live_options())
    assert h.window.live_tab.preview._image is None  # no frame of an earlier source stays up
    assert_still_usable(h, tiny_options, sample_source)
    assert "No camera" not in h.window.banner.text()  # the camera error no longer holds
    assert len(list(h.sessions.glob("*.jsonl"))) == 1


def test_camera_that_stops_delivering_shows_a_message(make_harness, shared_loader, tiny_options, sample_clip):
    import cv2

    class DiesAfterTwoReads:
        def __init__(self, index: int) -> None:
            self.cap, self.reads = cv2.VideoCapture(str(sample_clip)), 0

        def isOpened(self) -> bool:  # noqa: N802
            return True

        def read(self):
            self.reads += 1
            return self.cap.read() if self.reads <= 2 else (False, None)

        def set(self, prop, value):
            return True

        def get(self, prop):
            return 0.0

        def release(self):
            self.cap.release()

    def opener(spec, **kw):
        source = open_source(spec, capture_factory=DiesAfterTwoReads, **kw)
        source.stall_timeout = 0.5
        source.read_failure_grace = 0.2
        return source

    h = make_harness(loader=shared_loader, opener=opener)
    h.load(tiny_options)
    h.run(SourceOptions(spec="webcam:0"))
    assert h.window.banner.level == "error" and "stopped delivering frames" in h.window.banner.text()


def test_unreadable_file_shows_a_message(make_harness, shared_loader, tiny_options, sample_source, tmp_path: Path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x01 not a video " * 100)
    h = make_harness(loader=shared_loader)
    h.load(tiny_options)
    h.run(SourceOptions(spec=str(bad), realtime=False))
    assert "Cannot read video file" in h.window.banner.text() and "broken.mp4" in h.window.banner.text()
    assert_still_usable(h, tiny_options, sample_source)


def test_model_load_failure_shows_a_message(make_harness, tiny_options, sample_source, tmp_path: Path):
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    (empty / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    h = make_harness()
    with h.qtbot.waitSignal(h.controller.load_failed, timeout=60_000):
        h.window.load_model(ModelOptions(source=str(empty), device="cpu"))
    assert h.window.banner.level == "error"
    assert "has no *.safetensors weights" in h.window.banner.text() and str(empty) in h.window.banner.text()
    assert h.window.status.fields()["model"] == "model not loaded"
    # Start without a model says so; then a good model loads in the same window.
    h.window.live_tab.set_options(sample_source, h.window.live_tab.live_options())
    assert not h.window.live_tab.start()
    assert "No model is loaded" in h.window.banner.text()
    h.load(tiny_options)
    assert_still_usable(h, tiny_options, sample_source)


def test_out_of_memory_clears_the_context_and_goes_on(make_harness, shared_loader, tiny_options, sample_source):
    made: list = []
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    h = make_harness(loader=shared_loader, engine_factory=failing_factory(3, oom, made))
    h.load(tiny_options)
    h.run(sample_source)
    assert h.window.banner.level == "warning" and "Out of memory at 2 s" in h.window.banner.text()
    assert made[0].resets == 1 and made[0].inner.opts.max_turns == 60
    # The run went on: 9 of the 10 seconds stepped, all of them logged, with a note.
    records = h.session_records()
    steps = [r for r in records if r["type"] == "step"]
    assert [r["t"] for r in steps] == [0, 1, 3, 4, 5, 6, 7, 8, 9]
    assert any(r["type"] == "note" and "Out of memory" in r["text"] for r in records)


@pytest.mark.parametrize("error", [RuntimeError("boom in the engine"), ValueError("shape mismatch")])
def test_worker_exception_stops_the_run_and_keeps_the_transcript(
    make_harness, shared_loader, tiny_options, sample_source, error
):
    made: list = []
    h = make_harness(loader=shared_loader, engine_factory=failing_factory(4, error, made))
    h.load(tiny_options)
    h.run(sample_source)
    text = h.window.banner.text()
    assert h.window.banner.level == "error" and "The model failed at 3 s" in text and str(error) in text
    records = h.session_records()
    assert [r["t"] for r in records if r["type"] == "step"] == [0, 1, 2]
    assert records[-1]["type"] == "end" and any(r["type"] == "note" for r in records)
    assert len(h.window.live_tab.transcript.timeline.spans) == 3


def test_capture_exception_mid_run_shows_a_message(make_harness, shared_loader, tiny_options, sample_source):
    class Exploding:
        kind = "file"

        def __init__(self, inner) -> None:
            self.inner = inner
            self.info = inner.info

        def frames(self, fps=1.0):
            for i, frame in enumerate(self.inner.frames(fps)):
                if i == 2:
                    raise OSError("disk went away")
                yield frame

        def latest(self):
            return self.inner.latest()

        def close(self):
            self.inner.close()

    h = make_harness(loader=shared_loader, opener=lambda spec, **kw: Exploding(open_source(spec, **kw)))
    h.load(tiny_options)
    h.run(sample_source)
    assert "disk went away" in h.window.banner.text()
    assert [r["t"] for r in h.session_records() if r["type"] == "step"] == [0, 1]


def test_grounding_without_a_target_says_what_is_missing(make_harness, shared_loader, tiny_options, sample_source):
    h = make_harness(loader=shared_loader)
    h.load(tiny_options)
    controls = h.window.live_tab.controls
    h.window.live_tab.picker.set_options(sample_source)
    controls.task.setCurrentIndex(controls.task.findData("grounding"))
    assert not h.window.live_tab.start()
    assert "Watch for" in h.window.banner.text()
    assert h.controller.state == "idle" and not h.reports
