"""Spoken questions on the one stream clock, through the real audio path: a recording (quiet, a
question spoken by espeak-ng, quiet) played in real time through the microphone's PortAudio
callback (the fake sounddevice), segmented by Silero VAD; the question carries the monotonic
instants its speech started and ended, and the stream clock places it: voice armed before Start,
a question during a pause, a second run, a question spoken across a pause.

Long stretches of a run pass at once: the clock and the microphone share a monotonic time source
that the test moves on (``Skipping``), while the audio itself plays on the real clock."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from fakes import FakeEngine, FakeSoundDevice

from app.live.clock import Spoken, StreamClock
from app.live.runner import LiveRunner
from app.voice.audio import Microphone, resample
from app.voice.input import VoiceInput
from app.voice.vad import Segmenter, SileroVad

RATE = 16000


class Skipping:
    """time.monotonic, plus the seconds the test skipped."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.skipped

    def skip(self, seconds: float) -> None:
        self.skipped += seconds


class Words:
    """A recogniser that always hears the same words: these tests are about time, not words."""

    def transcribe(self, samples: np.ndarray) -> str:
        return "What is moving?"


class Listening:
    """A VoiceInput on the fake microphone, sharing the clock's time source."""

    def __init__(self, audio: np.ndarray, now: Skipping) -> None:
        self.heard: list[Spoken] = []
        self.ended = threading.Event()  # the fake device's recording ran out
        sd = FakeSoundDevice(audio, rate=RATE, speed=1.0)
        self.voice = VoiceInput(
            Words(),
            self.heard.append,
            Microphone(sd=sd),
            on_error=lambda m: self.ended.set(),
            segmenter=Segmenter(vad=SileroVad()),  # loaded before: the reader must not stall on torch
            monotonic=now,
        )

    def start(self) -> Listening:
        self.voice.start()
        return self

    def at_mic(self, seconds: float, timeout: float = 20.0) -> float:
        """Wait until the microphone has delivered ``seconds`` of audio; returns where it is."""
        deadline = time.monotonic() + timeout
        while self.voice.heard_seconds < seconds:
            assert time.monotonic() < deadline, "the fake microphone stalled"
            time.sleep(0.005)
        return self.voice.heard_seconds

    def question(self) -> Spoken:
        assert self.ended.wait(30), "the recording never ended"
        self.voice.stop()
        assert len(self.heard) == 1, self.heard
        return self.heard[0]


@pytest.fixture
def listening():
    """``listening(audio, now)``: a :class:`Listening`, stopped after the test whatever happened."""
    made: list[Listening] = []

    def make(audio: np.ndarray, now: Skipping) -> Listening:
        made.append(Listening(audio, now))
        return made[-1]

    yield make
    for m in made:
        m.voice.stop()


@pytest.fixture(scope="module")
def question_16k(speech) -> np.ndarray:
    SileroVad()  # the first load imports torch: seconds, which a real-time microphone would not wait for
    return resample(speech.samples, speech.rate, RATE)


def recording(compose, question: np.ndarray, lead: float, tail: float = 1.2) -> tuple[np.ndarray, float, float]:
    """Quiet, the question, quiet; with where the speech starts and ends (seconds)."""
    return compose([lead, question, tail], RATE), lead, lead + len(question) / RATE


def entered_at(question, steps: int) -> float:
    """The turn a question enters when the runner steps seconds 0, 1, ... (the fake engine's rule)."""
    runner = LiveRunner(FakeEngine())
    runner.ask(question)
    frame = np.zeros((8, 8, 3), np.uint8)
    entered = [r.t for r in (runner.step(frame, float(t)) for t in range(steps)) if r.question is not None]
    assert len(entered) == 1, entered
    return entered[0]


def test_voice_armed_before_start_times_the_question_in_the_run(compose, question_16k, listening):
    audio, _, speech_end = recording(compose, question_16k, lead=3.0)
    now = Skipping()
    clock = StreamClock(now)
    mic = listening(audio, now).start()  # listening while no run goes
    assert clock.now() is None
    mic.at_mic(1.0)
    clock.start()  # Start
    started_at = mic.voice.heard_seconds
    now.skip(18.0)  # 18 s of the run go by before the user speaks
    q = clock.question(mic.question())
    expected = 18.0 + speech_end - started_at
    assert q.t == pytest.approx(expected, abs=0.3), (q, expected)  # ~20 s into the run, not ~4 (the microphone's)
    assert q.origin == "voice" and q.span[0] < q.t
    assert entered_at(q, 25) == float(int(q.t))  # the turn that covers the second it ended


def test_a_question_during_a_pause_enters_at_the_paused_second(compose, question_16k, listening):
    audio, speech_start, _ = recording(compose, question_16k, lead=1.5)
    now = Skipping()
    clock = StreamClock(now)
    clock.start()
    now.skip(7.0)
    mic = listening(audio, now).start()
    mic.at_mic(speech_start - 0.7)
    clock.pause(True)  # the user pauses, then asks
    paused = clock.now()
    assert 7.0 < paused < 8.5
    now.skip(40.0)  # and takes their time
    q = clock.question(mic.question())
    assert q.t == pytest.approx(paused, abs=1e-3) and q.span == (q.t, q.t)
    assert clock.now() == pytest.approx(paused)  # the clock stood still
    assert entered_at(q, 12) == 7.0  # after Resume, the turn of the paused second


def test_a_second_run_starts_the_clock_again_and_the_microphone_is_not_stale(compose, question_16k, listening):
    audio, _, speech_end = recording(compose, question_16k, lead=3.0)
    now = Skipping()
    clock = StreamClock(now)
    first = clock.start()
    now.skip(30.0)
    mic = listening(audio, now).start()  # armed 30 s into the first run
    mic.at_mic(0.5)
    clock.stop(first)  # Stop
    mic.at_mic(1.2)
    clock.start()  # Start again: second 0
    started_at = mic.voice.heard_seconds
    q = clock.question(mic.question())
    assert q.t == pytest.approx(speech_end - started_at, abs=0.3), q  # not 30 + ...: nothing of run 1 is left
    assert q.t < speech_end - 1.0  # counted from the second run's start, not from when listening began


def test_a_question_spoken_across_a_pause_is_timed_by_when_it_ended(compose, question_16k, listening):
    audio, speech_start, speech_end = recording(compose, question_16k, lead=1.0)
    assert speech_end - speech_start > 1.2, "the spoken question is too short to pause in"
    now = Skipping()
    clock = StreamClock(now)
    mic = listening(audio, now)
    clock.start()
    started_at = 0.0  # the run and the microphone start together (within a read)
    mic.start()
    mic.at_mic(speech_start + 0.4)  # the user is talking
    clock.pause(True)
    paused_at = clock.now()
    now.skip(5.0)  # 5 s of pause
    clock.resume()
    q = clock.question(mic.question())
    # The pause does not count: the speech ended (speech_end - started_at) s into the run, minus 5 s paused.
    assert q.t == pytest.approx(speech_end - started_at, abs=0.3), q
    assert q.span[0] == pytest.approx(speech_start - started_at, abs=0.3) and q.span[0] < paused_at < q.t
