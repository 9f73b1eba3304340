"""The one stream clock: runs, pauses, restarts, a live source's jumps, a paced file's steps, and
spoken questions placed at the second their speech ended."""

from __future__ import annotations

import math
import threading

import pytest
from fakes import write_video

from app.live.capture import Capture
from app.live.clock import Spoken, StreamClock


class Time:
    """A monotonic clock the test moves on."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def time_():
    return Time()


def test_no_stream_second_outside_a_run(time_):
    clock = StreamClock(time_)
    assert clock.now() is None and clock.at(time_.now) is None and not clock.running and clock.run == 0
    run = clock.start()
    assert run == 1 and clock.running and clock.now() == 0.0
    time_.wait(2.5)
    assert clock.now() == pytest.approx(2.5)
    clock.stop(run)
    assert clock.now() is None and not clock.running


def test_a_pause_stops_the_clock_and_remembers_it(time_):
    clock = StreamClock(time_)
    clock.start()
    time_.wait(12.0)
    paused_at = time_.now
    clock.pause(True)
    assert clock.paused
    time_.wait(8.0)
    assert clock.now() == pytest.approx(12.0)  # stands still
    during = time_.now - 3.0
    clock.resume()
    time_.wait(2.0)
    assert clock.now() == pytest.approx(14.0)  # the pause does not count
    # The history: before, during and after the pause, asked afterwards.
    assert clock.at(paused_at - 2.0) == pytest.approx(10.0)
    assert clock.at(during) == pytest.approx(12.0)
    assert clock.at(time_.now - 1.0) == pytest.approx(13.0)
    clock.pause(False)  # resuming a running clock changes nothing
    assert clock.now() == pytest.approx(14.0)


def test_a_new_run_starts_at_zero_and_an_older_instant_is_its_second_zero(time_):
    clock = StreamClock(time_)
    first = clock.start()
    time_.wait(30.0)
    clock.stop(first)
    time_.wait(5.0)
    between = time_.now
    time_.wait(5.0)
    second = clock.start()
    assert second == 2 and clock.now() == 0.0
    time_.wait(3.0)
    assert clock.now() == pytest.approx(3.0)  # not 43: nothing of the first run is left
    assert clock.at(between) == 0.0  # ended before this run began: its second 0
    clock.stop(first)  # a stale stop (the first run's capture ending late) leaves the new run alone
    assert clock.running and clock.now() == pytest.approx(3.0)


def test_a_live_source_that_skips_the_paused_seconds_moves_the_clock_on(time_):
    clock = StreamClock(time_)
    clock.start()
    time_.wait(4.0)
    clock.sync(4.0)
    clock.pause(True)
    time_.wait(6.0)
    clock.sync(3.0)  # a frame in flight when the pause came: no effect while paused
    assert clock.now() == pytest.approx(4.0)
    clock.resume()
    time_.wait(0.5)
    clock.sync(10.0)  # the webcam's next frame is labelled with the present (the world did not pause)
    assert clock.now() == pytest.approx(10.0)
    time_.wait(0.25)
    clock.sync(9.0)  # never backwards
    assert clock.now() == pytest.approx(10.25)


def test_a_file_at_the_models_pace_runs_on_the_engines_steps(time_):
    clock = StreamClock(time_)
    clock.start(interval=0.5)
    time_.wait(3.0)  # the model is slow: the stream waits for it
    assert clock.now() == pytest.approx(0.5)  # at most one interval past the step under way
    clock.sync(0.5)
    time_.wait(0.1)
    assert clock.now() == pytest.approx(0.6)
    clock.pause(True)
    time_.wait(2.0)
    assert clock.now() == pytest.approx(0.6)
    clock.sync(1.0)  # a step that began after Pause (its request was on the way)
    assert clock.now() == pytest.approx(0.6)  # the paused second stays
    clock.resume()
    assert clock.now() == pytest.approx(1.0)  # and the run goes on from the step's second
    time_.wait(5.0)
    assert clock.now() == pytest.approx(1.5)


def test_a_spoken_question_enters_where_its_speech_ended(time_):
    clock = StreamClock(time_)
    before = Spoken("Where is the ball?", time_.now - 2.0, time_.now - 0.5)
    assert clock.question(before).t is None  # no run: the next run's first turn
    clock.start()
    q = clock.question(before)
    assert (q.t, q.span, q.origin) == (0.0, (0.0, 0.0), "voice")  # ended before Start: second 0
    time_.wait(20.0)
    q = clock.question(Spoken("What moved?", time_.now - 2.0, time_.now - 0.4))
    assert q.t == pytest.approx(19.6) and q.span == (pytest.approx(18.0), pytest.approx(19.6))
    # Across a pause: started while running, ended while paused -> the paused second.
    started = time_.now
    time_.wait(1.0)
    clock.pause(True)
    time_.wait(3.0)
    q = clock.question(Spoken("And now?", started, time_.now))
    assert q.t == pytest.approx(21.0) and q.span == (pytest.approx(20.0), pytest.approx(21.0))
    # Started while paused, ended after resuming: timed by when it ended.
    started = time_.now
    time_.wait(1.0)
    clock.resume()
    time_.wait(1.5)
    q = clock.question(Spoken("Still?", started, time_.now))
    assert q.t == pytest.approx(22.5) and q.span == (pytest.approx(21.0), pytest.approx(22.5))


def test_history_is_bounded_and_old_instants_stay_sensible(time_):
    clock = StreamClock(time_, keep_seconds=10.0)
    clock.start(interval=1.0)
    for k in range(1, 200):
        time_.wait(1.0)
        clock.sync(float(k))
    assert len(clock._pieces) <= 12
    assert clock.at(time_.now - 5.0) == pytest.approx(194.0)
    assert math.isfinite(clock.at(time_.now - 100.0))


def test_the_capture_drives_the_clock(tmp_path):
    """Opening starts a run at 0, pausing the capture pauses the clock, the end stops it."""
    video = write_video(tmp_path / "clip.mp4", 30, 10)  # 3 s at 10 fps
    clock = StreamClock()
    seen: list[tuple[float, float | None, bool]] = []
    capture = Capture(str(video), 2.0, realtime=True, clock=clock)
    worker = threading.Thread(target=capture.run, daemon=True)
    worker.start()
    while True:
        frame = capture.mailbox.take(timeout=0.1)
        if frame is not None:
            seen.append((frame.t, clock.now(), clock.paused))
            if frame.t == 1.0:
                capture.pause(True)
                frozen = clock.now()
                threading.Event().wait(0.6)
                assert clock.now() == frozen  # the stream stands still with the source
                capture.pause(False)
        elif capture.done and not capture.mailbox.has_frame():
            break
    worker.join(5)
    assert clock.run == 1 and not clock.running  # the capture ended: no run
    for t, now, paused in seen:
        assert not paused and now is not None and t <= now < t + 0.35  # the clock agrees with the frames
