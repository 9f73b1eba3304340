"""Capture: a file read at the model's pace hands over every sample; a file played in real time
pauses with the run (its clock stops, no second goes by unseen); errors say what failed."""

from __future__ import annotations

import threading
import time

from fakes import write_video

from app.live.capture import Capture


def consume(capture: Capture, on_frame=None) -> list[float]:
    """Take frames from the capture's mailbox until it is done; their stream times."""
    worker = threading.Thread(target=capture.run, daemon=True)
    worker.start()
    times = []
    while True:
        frame = capture.mailbox.take(timeout=0.1)
        if frame is not None:
            times.append(frame.t)
            if on_frame is not None:
                on_frame(frame)
        elif capture.done and not capture.mailbox.has_frame():
            break
    worker.join(5)
    return times


def test_a_file_at_the_models_pace_gives_every_sample(tmp_path):
    video = write_video(tmp_path / "clip.mp4", 24, 4)
    opened = []
    capture = Capture(str(video), 2.0, realtime=False, on_opened=opened.append)

    def slow(frame):
        time.sleep(0.05)  # a model slower than the decoder: nothing may be dropped

    assert consume(capture, slow) == [k / 2 for k in range(12)]
    assert capture.finished and opened[0].name == "clip.mp4"


def test_pausing_a_file_in_real_time_stops_its_clock(tmp_path):
    video = write_video(tmp_path / "clip.mp4", 30, 10)  # 3 s at 10 fps
    capture = Capture(str(video), 2.0, realtime=True)
    paused_for = 1.2

    def pause_once(frame):
        if frame.t == 0.5:
            capture.pause(True)
            time.sleep(paused_for)  # the user looks away; the video must not play on
            capture.pause(False)

    started = time.monotonic()
    times = consume(capture, pause_once)
    elapsed = time.monotonic() - started
    assert times == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]  # no sample was skipped while paused
    assert elapsed >= 3.0 + paused_for - 0.2  # the clock stood still for the pause


def test_errors_name_the_source_and_end_the_capture(tmp_path):
    missing = Capture(str(tmp_path / "none.mp4"), 1.0)
    assert missing.run() is False and missing.done
    assert "not found" in missing.error and "none.mp4" in missing.error
    failures = []
    bad_spec = Capture("webcam:x", 1.0, on_error=failures.append)
    assert bad_spec.run() is False and failures and "webcam:x" in failures[0]


def test_stop_ends_a_running_capture(tmp_path):
    video = write_video(tmp_path / "clip.mp4", 100, 10)
    capture = Capture(str(video), 1.0, realtime=True)
    worker = threading.Thread(target=capture.run, daemon=True)
    worker.start()
    assert capture.mailbox.take(timeout=5) is not None
    capture.stop()
    worker.join(5)
    assert not worker.is_alive() and capture.done and not capture.finished
