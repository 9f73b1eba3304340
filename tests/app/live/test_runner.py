"""LiveRunner: steps become records in the session log and the subtitle timeline, questions enter
with their origin, errors are reported (out of memory goes on, anything else ends the run), and a
blocking run over a capture steps every sample of a file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fakes import FakeEngine, write_video

from app.live.capture import Capture
from app.live.records import Question, StepRecord
from app.live.runner import LiveRunner, RunEvents
from app.session import SessionLog, SessionMeta, load_session
from model.protocol import RESPONSE, SILENCE, STANDBY

FRAME = np.zeros((8, 8, 3), np.uint8)


def events_log() -> tuple[RunEvents, list]:
    seen: list = []
    return (
        RunEvents(
            step=lambda r: seen.append(("step", r.t)),
            token=lambda t, piece: seen.append(("token", t, piece)),
            question=lambda q: seen.append(("question", q)),
            error=lambda e: seen.append(("error", e)),
        ),
        seen,
    )


def test_steps_become_records_log_lines_and_subtitles(tmp_path):
    log = SessionLog.create(SessionMeta(source="clip.mp4"), tmp_path)
    events, seen = events_log()
    runner = LiveRunner(FakeEngine([SILENCE, STANDBY, RESPONSE]), log, events, hold=6.0)
    records = [runner.step(FRAME, float(t)) for t in range(4)]
    runner.close()
    assert [r.state for r in records] == [SILENCE, STANDBY, RESPONSE, SILENCE]
    assert records[2].text == "answer at 2" and records[2].latency_ms["total"] == 3.5
    assert records[2].context_turns == 3 and records[2].exact
    # Events: tokens stream during the step, the step event follows.
    assert [e for e in seen if e[0] != "question"] == [
        ("step", 0.0), ("step", 1.0), ("token", 2.0, "answer"), ("token", 2.0, " at"), ("token", 2.0, " 2"),
        ("step", 2.0), ("step", 3.0),
    ]  # fmt: skip
    lines = [json.loads(line) for line in log.path.read_text().splitlines()]
    assert [line["type"] for line in lines] == ["session", "step", "step", "step", "step", "end"]
    assert [StepRecord.from_json(line) for line in lines[1:-1]] == records
    assert [(c.start, c.end, c.text) for c in runner.subtitles.cues] == [(2.0, 4.0, "answer at 2")]
    assert runner.steps == 4


def test_questions_enter_with_their_origin_and_time():
    events, seen = events_log()
    runner = LiveRunner(FakeEngine(), events=events)
    typed = runner.ask(Question("What is in this <image> now?", None, "typed"))
    assert "<image>" not in typed.text  # user text is data: neutralised on the way in
    runner.ask(Question("And now?", 2.4, "voice"))
    assert [q.text for q in runner.pending_questions] == ["What is in this <image> now?", "And now?"]
    records = [runner.step(FRAME, float(t)) for t in range(4)]
    assert records[0].question == Question(typed.text, 0.0, "typed")  # asked for "the next turn": entered at 0
    assert records[1].question is None
    assert records[2].question == Question("And now?", 2.4, "voice")  # the turn covering 2.4 s
    assert [e[1] for e in seen if e[0] == "question"] == [records[0].question, records[2].question]
    assert runner.pending_questions == []


def test_an_instruction_enters_as_a_preset():
    class Instructing(FakeEngine):
        def step(self, image, t=None, on_token=None):
            result = super().step(image, t, on_token)
            if t == 0.0:
                result.question = "Find all significant events in the video and describe them."
            return result

    record = LiveRunner(Instructing()).step(FRAME, 0.0)
    assert record.question.origin == "preset" and record.question.t == 0.0


def test_out_of_memory_shrinks_the_window_and_goes_on(tmp_path):
    import torch

    log = SessionLog.create(SessionMeta(), tmp_path)
    engine = FakeEngine(fail_at=2, error=torch.OutOfMemoryError("CUDA out of memory"))
    events, seen = events_log()
    runner = LiveRunner(engine, log, events)
    results = [runner.step(FRAME, float(t)) for t in range(3)]
    runner.close()
    assert results[1] is None and results[2] is not None and not runner.failed
    assert engine.resets == 1 and engine.opts.max_turns == 60
    errors = [e[1] for e in seen if e[0] == "error"]
    assert len(errors) == 1 and errors[0].where == "oom" and not errors[0].fatal
    session = load_session(log.path)
    assert [s.t for s in session.states] == [0.0, 2.0] and "Out of memory at 1 s" in session.notes[0]


def test_any_other_error_ends_the_run_and_keeps_the_log(tmp_path):
    log = SessionLog.create(SessionMeta(), tmp_path)
    events, seen = events_log()
    runner = LiveRunner(FakeEngine(fail_at=2, error=ValueError("shape mismatch")), log, events)
    assert runner.step(FRAME, 0.0) is not None
    assert runner.step(FRAME, 1.0) is None and runner.failed
    assert runner.step(FRAME, 2.0) is None  # a failed run takes no more steps
    runner.close()
    error = [e[1] for e in seen if e[0] == "error"][0]
    assert error.fatal and "The model failed at 1 s" in error.message and "shape mismatch" in error.message
    session = load_session(log.path)
    assert session.ended and len(session.states) == 1


def test_a_blocking_run_steps_every_sample_of_a_file(tmp_path):
    video = write_video(tmp_path / "clip.mp4", 20, 4)  # 5 s at 4 fps
    runner = LiveRunner(FakeEngine([RESPONSE]))
    capture = Capture(str(video), 1.0, realtime=False)
    assert runner.run(capture) == "ended"
    assert runner.steps == 5 and capture.finished and capture.error is None
    assert [c.start for c in runner.subtitles.cues] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_a_file_at_the_models_pace_runs_the_stream_clock_on_the_models_steps(tmp_path):
    """A file read at the model's pace: the one clock is at the stepped second while the model works,
    however long a step takes (no wall-clock drift), and has no second once the run is over."""
    import time

    video = write_video(tmp_path / "clip.mp4", 20, 4)  # 5 s at 4 fps
    seen: list[tuple[float, float | None]] = []

    class Slow(FakeEngine):
        def step(self, image, t=None, on_token=None):
            # A slow step must not push the stream past its interval; a slow last step must still
            # find the clock at its second (the file has ended, the model has not).
            time.sleep(0.3 if t in (1.0, 4.0) else 0.0)
            seen.append((t, runner.clock.now()))
            return super().step(image, t, on_token)

    runner = LiveRunner(Slow())
    capture = Capture(str(video), 1.0, realtime=False)
    assert runner.run(capture) == "ended"
    assert runner.clock is capture.clock and capture.clock.run == 1 and capture.clock.now() is None
    assert [t for t, _ in seen] == [0.0, 1.0, 2.0, 3.0, 4.0]
    for t, now in seen:
        assert t <= now <= t + 0.35, seen


def test_a_blocking_run_stops_and_reports_a_broken_source(tmp_path):
    import threading

    video = write_video(tmp_path / "clip.mp4", 40, 4)
    stop = threading.Event()
    engine = FakeEngine()
    runner = LiveRunner(engine, events=RunEvents(step=lambda r: stop.set() if r.t >= 2 else None))
    assert runner.run(Capture(str(video), 1.0, realtime=False), stop) == "stopped"
    assert runner.steps == 3
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video" * 50)
    capture = Capture(str(broken), 1.0, realtime=False)
    assert LiveRunner(FakeEngine()).run(capture) == "failed"
    assert "Cannot read video file" in capture.error and "broken.mp4" in capture.error


@pytest.mark.parametrize("hold", [2.0, 6.0])
def test_the_timeline_follows_the_one_rule(hold):
    runner = LiveRunner(FakeEngine([RESPONSE, SILENCE, SILENCE, SILENCE, RESPONSE]), hold=hold)
    for t in range(5):
        runner.step(FRAME, float(t))
    cues = [(c.start, c.end) for c in runner.subtitles.cues]
    assert cues == [(0.0, min(hold, 4.0)), (4.0, 5.0)]  # cut by the next answer and by the end of the stream
