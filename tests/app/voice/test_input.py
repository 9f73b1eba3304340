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
from fakes import FakeSoundDevice, wait_until

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
    """A speaker stand-in: speaking while ``on``; records holds, releases and stops (barge-in)."""

    def __init__(self, on: bool = True) -> None:
        self.speaking, self.stops, self.holds, self.releases, self.held = on, 0, 0, 0, False

    def hold(self) -> None:
        self.holds, self.held = self.holds + 1, True

    def release(self) -> None:
        self.releases, self.held = self.releases + 1, False

    def stop(self) -> None:
        self.stops += 1
        self.speaking = self.held = False


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
    began = time.monotonic() - 10.0
    clock.start(at=began)  # the run began 10 s before listening was armed
    heard, errors, voice = listen(recognizer, sd)
    assert "stopped delivering audio" in errors[0]  # the fake device ends with its recording
    assert len(heard) == 1, heard
    q = clock.question(heard[0])  # the runtime places it: the second the speaker stopped
    start, end = q.span
    opened = voice.times.at(0.0) - began  # the stream second the microphone opened (after the warm-up)
    assert abs(start - (opened + rec.speech_start)) <= 0.3 and abs(end - (opened + rec.speech_end)) <= 0.3
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


class ScriptedVad:
    """A VAD that says what it is told, one probability per 32 ms window."""

    def __init__(self, probabilities: list[float]) -> None:
        self.left = list(probabilities)

    def probability(self, window: np.ndarray) -> float:
        return self.left.pop(0)

    def reset(self) -> None:
        pass


def test_a_hint_of_speech_holds_the_answer_and_a_false_one_lets_it_go_on():
    """The answer holds at a window of HINT x threshold; nothing following for HOLD_S lets it go on; for
    HOLD_BACKOFF_S after that only a window at the threshold holds it; a burst too short to be speech is let go
    too; after the back-off a hint holds it again."""
    from types import SimpleNamespace

    from app.voice.input import HINT, HOLD_BACKOFF_S, HOLD_S
    from app.voice.vad import WINDOW, Segmenter, VadSettings

    window_s = WINDOW / 16000
    hint = HINT * VadSettings().threshold + 0.01
    quiet = [0.0] * 20
    after_hold = int(HOLD_S / window_s) + 2
    script = [*quiet, hint, *[0.0] * after_hold, hint, *quiet[:5], 0.9, *[0.0] * after_hold]
    script += [0.0] * int(HOLD_BACKOFF_S / window_s + 2) + [hint, 0.0]  # the back-off since the last release, then
    speaker = Speaking(on=True)
    voice = VoiceInput(
        None, lambda q: None, SimpleNamespace(rate=16000), speaker=speaker, headphones=True,
        segmenter=Segmenter(vad=ScriptedVad(script)),
    )  # fmt: skip
    seen = []
    for k in range(len(script)):
        voice.times.add(WINDOW, float(k))
        voice._take(np.zeros(WINDOW, np.float32))
        seen.append((speaker.holds, speaker.releases))
    first = script.index(hint)
    assert seen[first - 1] == (0, 0) and seen[first] == (1, 0)  # held at the first hint, not before
    assert seen[first + after_hold] == (1, 1)  # ... and let go: nothing followed it
    second_hint = first + 1 + after_hold
    assert seen[second_hint] == (1, 1)  # in the back-off a hint does not hold it ...
    burst = script.index(0.9)
    assert seen[burst] == (2, 1)  # ... a window the VAD takes for speech does
    assert seen[burst + after_hold] == (2, 2)  # 32 ms of it, then nothing: let go
    assert seen[-1] == (3, 2) and speaker.stops == 0  # after the back-off, a hint holds it again


def test_a_hold_the_speaker_ended_by_itself_is_not_kept_and_the_next_speech_holds_again():
    """Speaker.hold ends by itself after HOLD_MAX_S (the answer goes on). VoiceInput must see that: it does not
    keep counting the answer as held (so it would never hold it again), it backs off as after a release, and the
    next window the VAD takes for speech holds the answer again."""
    from types import SimpleNamespace

    from app.voice.input import HINT, HOLD_BACKOFF_S
    from app.voice.vad import WINDOW, Segmenter, VadSettings

    window_s = WINDOW / 16000
    hint = HINT * VadSettings().threshold + 0.01
    hints = [hint] * 10  # hint after hint, never sure: the answer stays held, until the speaker ends the hold
    script = [*[0.0] * 20, *hints, *[0.0] * int(HOLD_BACKOFF_S / window_s + 2), 0.9, 0.0]
    speaker = Speaking(on=True)
    voice = VoiceInput(
        None, lambda q: None, SimpleNamespace(rate=16000), speaker=speaker, headphones=True,
        segmenter=Segmenter(vad=ScriptedVad(script)),
    )  # fmt: skip
    first = script.index(hint)
    for k in range(len(script)):
        if k == first + 5:
            speaker.held = False  # HOLD_MAX_S passed: the speaker let the answer go on by itself
        voice.times.add(WINDOW, float(k))
        voice._take(np.zeros(WINDOW, np.float32))
        if k == first + 6:
            assert voice._held_at is None  # seen at the next read
    assert speaker.holds == 2 and speaker.releases == 0 and speaker.stops == 0  # the speech window held it again


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


# --- turn-taking -------------------------------------------------------------------------------------------------


class StubMicrophone:
    """A microphone that opens and delivers nothing (the tests queue utterances themselves)."""

    rate, level = 16000, 0.0

    def __init__(self, order: list[str] | None = None) -> None:
        self.order = order if order is not None else []

    def start(self):
        self.order.append("microphone")
        return self

    def read(self) -> np.ndarray:
        return np.zeros(0, np.float32)

    def poll(self) -> None:
        pass

    def stop(self) -> None:
        pass


class Scripted:
    """A recogniser answering each call with the next of ``answers`` (a Transcript or text); calls wait while
    ``hold`` is clear, so a test can let utterances pile up behind one."""

    def __init__(self, *answers, order: list[str] | None = None) -> None:
        from app.voice.asr import Transcript

        self.answers = [a if isinstance(a, Transcript) else Transcript(a) for a in answers]
        self.heard: list[int] = []  # samples of each call
        self.order = order if order is not None else []
        self.hold = threading.Event()
        self.hold.set()
        self.waiting = threading.Event()

    def warm_up(self) -> None:
        self.order.append("recogniser")

    def recognise(self, samples):
        self.waiting.set()
        assert self.hold.wait(10)
        from app.voice.asr import Transcript

        self.heard.append(len(samples))
        answer = self.answers.pop(0)
        return answer if isinstance(answer, Transcript) else Transcript(answer)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def utterance(start: float, end: float):
    from app.voice.vad import Utterance

    return Utterance(start, end, np.full(int((end - start) * 16000), 0.1, np.float32), 16000, start)


def armed(recognizer, clock=None, **kwargs):
    """A started VoiceInput over a stub microphone whose position p (seconds) was heard at the clock's now + p."""
    from app.voice.vad import Segmenter

    heard, notices = [], []
    clock = clock or Clock()
    voice = VoiceInput(
        recognizer, heard.append, StubMicrophone(), segmenter=Segmenter(vad=CountingVad()), monotonic=clock,
        on_notice=notices.append, **kwargs,
    )  # fmt: skip
    voice.start()
    voice.times.add(100 * 16000, clock.now + 100)
    return voice, heard, notices


class CountingVad:
    def __init__(self) -> None:
        self.warmed = self.windows = 0

    def warm_up(self):
        self.warmed += 1
        return self

    def probability(self, window) -> float:
        self.windows += 1
        return 0.0

    def reset(self) -> None:
        pass


def test_listening_warms_up_the_recogniser_and_the_vad_before_the_microphone_opens():
    from app.voice.vad import Segmenter

    order: list[str] = []
    vad = CountingVad()
    voice = VoiceInput(Scripted(order=order), print, StubMicrophone(order), segmenter=Segmenter(vad=vad))
    voice.start()
    voice.stop()
    assert order == ["recogniser", "microphone"] and vad.warmed == 1 and vad.windows == 0
    # The real recogniser: loaded and run once at start, not on the first word.
    from app.voice.asr import Recognizer

    r = Recognizer("demo", device="cpu")
    calls = []
    real = r.recognise
    r.recognise = lambda samples: calls.append(len(samples)) or real(samples)
    voice = VoiceInput(r, print, StubMicrophone(), segmenter=Segmenter(vad=CountingVad()))
    voice.start()
    voice.stop()
    assert r.loaded and calls == [16000]
    voice.start()  # listening again: warm already
    voice.stop()
    assert calls == [16000]


def test_the_recognition_queue_is_bounded_and_says_what_it_dropped():
    r = Scripted()
    r.hold.clear()
    voice, heard, notices = armed(r, max_queue=2)
    try:
        voice._queue(utterance(1.0, 2.0))
        assert r.waiting.wait(5)  # the first is being recognised (held): the next ones wait
        for k in range(4):
            voice._queue(utterance(3.0 + k, 3.5 + k))
        assert len(voice._jobs) == 2 and voice.dropped == 2
        assert len(notices) == 2 and "more than 2 questions were waiting" in notices[0] and "Ask it again" in notices[0]
    finally:
        r.answers = ["one", "two", "three"]
        r.hold.set()
        voice.stop()


def test_a_stale_question_is_merged_with_the_next_or_dropped_with_a_notice():
    clock = Clock()
    r = Scripted("first", "the stale one and the next", "late")
    r.hold.clear()
    voice, heard, notices = armed(r, clock=clock, stale_s=8.0)
    try:
        voice._queue(utterance(10.0, 11.0))  # being recognised while the next two wait
        assert r.waiting.wait(5)
        a, b = utterance(12.0, 13.0), utterance(14.0, 20.0)
        voice._queue(a)
        voice._queue(b)
        clock.now += 25.0  # a ended 12 s ago, b 5 s ago when recognition gets to them
        r.hold.set()
        assert wait_until(lambda: len(heard) == 2)
        merged = heard[1]
        assert merged.text == "the stale one and the next"
        assert r.heard[1] == len(a.samples) + int(0.3 * 16000) + len(b.samples)  # one recognition for both
        assert merged.started == pytest.approx(voice.times.at(12.0)) and merged.ended == pytest.approx(
            voice.times.at(20.0)
        )
        # Stale with nothing after it: dropped, and said.
        r.hold.clear()
        r.waiting.clear()
        r.answers.insert(0, "busy")
        voice._queue(utterance(90.0, 91.0))
        assert r.waiting.wait(5)
        voice._queue(utterance(92.0, 93.0))
        clock.now += 80.0  # the second ended 12 s ago; nothing follows it
        r.hold.set()
        assert wait_until(lambda: voice.dropped == 1)
        assert wait_until(lambda: len(heard) == 3)
        assert [q.text for q in heard] == ["first", "the stale one and the next", "busy"]
        assert len(notices) == 1 and "asked 12 s ago was dropped" in notices[0]
        assert "recognition fell behind" in notices[0] and "Voice > Voice settings" in notices[0]
    finally:
        r.hold.set()
        voice.stop()


def test_no_speech_and_whisper_phrases_for_silence_are_not_questions():
    from app.voice.asr import Transcript

    r = Scripted(
        Transcript("the door opens", 0.9, -1.4),  # Whisper's rule: no-speech likely AND unsure words
        "Thanks for watching!",
        " ... ",
        Transcript("what is that", 0.02, -2.5),  # speech, but guessed words
        Transcript("what colour is the ball", 0.7, -0.3),  # sure words: a question
    )
    voice, heard, notices = armed(r, max_queue=8)
    try:
        for k in range(5):
            voice._queue(utterance(2.0 * k, 2.0 * k + 1.0))
        assert wait_until(lambda: len(notices) == 4 and len(heard) == 1)
    finally:
        voice.stop()
    assert [q.text for q in heard] == ["what colour is the ball"]
    assert all(n.startswith("I didn't catch that (") and "say it again" in n for n in notices)
    assert "no speech" in notices[0] and "noise" in notices[1] and "no words" in notices[2]
    assert "unclear speech (8% sure)" in notices[3]


def _gapped(speech, compose, gap: float):
    """The spoken question cut at its quietest 10 ms near the middle (between words), ``gap`` s of quiet
    inserted there; with 1.5 s before and 2 s after."""
    from app.voice.audio import level_dbfs, resample

    s = resample(speech.samples, speech.rate, 16000)
    hop = 160
    mid = len(s) // hop // 2
    levels = [level_dbfs(s[i * hop : (i + 1) * hop]) for i in range(mid - 30, mid + 30)]
    cut = (mid - 30 + int(np.argmin(levels))) * hop
    return compose([1.5, s[:cut], gap, s[cut:], 2.0], 16000), 1.5 + (len(s) + gap * 16000) / 16000


def test_a_short_pause_inside_a_question_does_not_split_it_and_partials_show_the_words_so_far(
    speech, compose, recognizer
):
    audio, end = _gapped(speech, compose, 0.5)
    partials: list[str] = []
    heard, errors, _ = listen(
        recognizer, FakeSoundDevice(audio, rate=16000, speed=1.0), on_partial=partials.append, partial_s=0.3
    )
    assert len(heard) == 1, heard  # one question, not two
    assert any(p for p in partials) and partials[-1] == ""  # words while talking, cleared once it was entered
    opened_to_end = heard[0].ended - heard[0].started
    assert opened_to_end == pytest.approx(end - 1.5, abs=0.3)  # the span covers both halves
