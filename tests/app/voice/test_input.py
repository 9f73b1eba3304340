"""Voice input end to end: a spoken question played through the real microphone callback (a fake
sounddevice feeds the WAV), segmented by Silero VAD, recognised by the tiny Whisper, entered into
the real engine on the turn where the speaker stopped, and recorded with origin "voice"; the
assistant's own voice is not heard as a question; barge-in and push-to-talk; an unplugged
microphone is reported and the run goes on; recorded questions from a file. The stream second of a
spoken question comes from the one stream clock (``app/live/clock.py``): tests of voice armed
before Start, a pause, a second run and a question spoken across a pause are in test_clock_voice.py."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from fakes import FakeSoundDevice

from app.live.clock import Spoken, StreamClock
from app.live.records import Question
from app.voice import VoiceError
from app.voice.audio import Microphone
from app.voice.input import PUSH_TO_TALK, VoiceInput, questions_from_file
from app.voice.wav import write_wav


@pytest.fixture(scope="module")
def recognizer():
    from app.voice.asr import Recognizer

    r = Recognizer("demo", device="cpu")
    r.load()
    return r


class Speaking:
    """A speaker stand-in: speaking while ``on``; records stops (barge-in)."""

    def __init__(self, on: bool = True) -> None:
        self.speaking, self.stops = on, 0

    def stop(self) -> None:
        self.stops += 1
        self.speaking = False


def listen(recognizer, sd, **kwargs) -> tuple[list[Spoken], list[str], VoiceInput]:
    """Run a VoiceInput over the fake microphone until its audio ran out (the fake device then goes away)."""
    heard: list[Spoken] = []
    errors: list[str] = []
    done = threading.Event()

    def on_error(message: str) -> None:
        errors.append(message)
        done.set()

    voice = VoiceInput(recognizer, heard.append, Microphone(sd=sd), on_error=on_error, **kwargs)
    voice.start()
    assert done.wait(60), "the fake microphone never ended"
    voice.stop()
    return heard, errors, voice


def test_a_spoken_question_enters_the_stream_where_the_speaker_stopped(recording, recognizer, tiny_loaded, tmp_path):
    import time

    from app.live.runner import LiveRunner, make_engine
    from app.session import SessionLog, SessionMeta, load_session
    from model.engine import EngineOptions

    rec = recording(48000)
    sd = FakeSoundDevice(rec.samples, rate=48000, accept_rates={48000}, speed=1.0)  # refuses 16 kHz: resampled
    clock = StreamClock()
    clock.start(at=time.monotonic() - 10.0)  # the run began 10 s before the microphone opened
    heard, errors, _ = listen(recognizer, sd)
    assert "stopped delivering audio" in errors[0]  # the fake device ends with its recording
    assert len(heard) == 1, heard
    q = clock.question(heard[0])  # the runtime places it: the second the speaker stopped
    start, end = q.span
    assert abs(start - (10.0 + rec.speech_start)) <= 0.3 and abs(end - (10.0 + rec.speech_end)) <= 0.3
    assert q.origin == "voice" and q.t == end and isinstance(q.text, str) and q.text

    log = SessionLog.create(SessionMeta(source="webcam:0"), tmp_path)
    runner = LiveRunner(make_engine(tiny_loaded, EngineOptions(task="question")), log)
    runner.ask(q)
    frame = np.zeros((56, 56, 3), np.uint8)
    records = [runner.step(frame, float(t)) for t in range(int(end) + 3)]
    runner.close()
    entered = [r for r in records if r.question is not None]
    assert [r.t for r in entered] == [float(int(end))]  # the turn that covers the second it ended
    assert entered[0].question.origin == "voice" and entered[0].question.span == q.span
    step = [s for s in load_session(log.path).entries if s.kind == "question"][0]
    assert step.origin == "voice"


def test_the_assistants_own_voice_is_not_a_question(recording, recognizer):
    rec = recording(16000)
    speaker = Speaking(on=True)
    heard, _, voice = listen(recognizer, FakeSoundDevice(rec.samples, rate=16000), speaker=speaker)
    assert heard == [] and voice.ignored_seconds > rec.speech_end
    # With headphones the microphone listens, and the user talking over an answer stops it (barge-in).
    speaker = Speaking(on=True)
    heard, _, _ = listen(recognizer, FakeSoundDevice(rec.samples, rate=16000), speaker=speaker, headphones=True)
    assert len(heard) == 1 and speaker.stops == 1


def test_push_to_talk_takes_what_was_said_while_held(recording, recognizer):
    rec = recording(16000)
    sd = FakeSoundDevice(rec.samples, rate=16000, speed=4.0)  # 4x real time: the key is held on the clock
    heard: list[Question] = []
    speaker = Speaking(on=True)
    voice = VoiceInput(recognizer, heard.append, Microphone(sd=sd), mode=PUSH_TO_TALK, speaker=speaker)
    voice.start()
    got = threading.Event()
    voice._on_heard = lambda h: got.set()
    import time

    while voice.ptt.now < rec.speech_start - 0.1:
        time.sleep(0.01)  # the fake device plays on its own clock: wait for the moment to press
    voice.press()
    assert speaker.stops == 1  # pressing to talk stops the assistant
    while voice.ptt.now < rec.speech_end + 0.2:
        time.sleep(0.01)
    voice.release()
    assert got.wait(30)
    voice.stop()
    assert len(heard) == 1
    # Times are where the audio was heard: the fake plays at 4x, so a second of it lasts 0.25 s.
    opened = voice.times.at(0.0)
    start, end = heard[0].started - opened, heard[0].ended - opened
    # (a read of the microphone holds up to ~0.1 s of such audio: the reckoning within it is that coarse)
    assert start <= rec.speech_start / 4 + 0.15 and end >= rec.speech_end / 4 - 0.15


def test_an_unplugged_microphone_is_reported_and_typed_questions_go_on(recording, recognizer):
    from fakes import FakeEngine

    from app.live.runner import LiveRunner

    rec = recording(16000)
    sd = FakeSoundDevice(rec.samples, rate=16000, unplug_after=20)
    heard, errors, voice = listen(recognizer, sd)
    assert heard == [] and len(errors) == 1
    assert "Fake USB Mic" in errors[0] and "typed questions still work" in errors[0]
    assert not voice.listening
    runner = LiveRunner(FakeEngine())
    runner.ask(Question("Still there?", 0.0))
    assert runner.step(np.zeros((8, 8, 3), np.uint8), 0.0).question.text == "Still there?"


def test_no_microphone_is_a_clear_error(recognizer):
    voice = VoiceInput(recognizer, print, Microphone(sd=FakeSoundDevice(devices=[], default=-1)))
    with pytest.raises(VoiceError, match="No microphone found"):
        voice.start()
    assert not voice.listening


def test_a_recorded_question_starts_at_its_second(recording, recognizer, tmp_path):
    rec = recording(22050)
    path = write_wav(tmp_path / "question.wav", rec.samples, rec.rate)
    [q] = questions_from_file(recognizer, path, at=5.0)
    start, end = q.span
    assert abs(start - 5.0) <= 0.05 and abs((end - start) - (rec.speech_end - rec.speech_start)) <= 0.3
    assert q.t == end and q.origin == "voice"
    silent = write_wav(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    with pytest.raises(VoiceError, match="no speech"):
        questions_from_file(recognizer, silent, at=0.0)
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    with pytest.raises(VoiceError, match="notes.wav"):
        questions_from_file(recognizer, text, at=0.0)
