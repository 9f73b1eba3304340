"""Echo cancellation (``app/voice/echo.py``): the canceller alone on a synthesised answer and its echo, then the
whole loop in real time. The loop: a spoken answer (espeak-ng) played by the real ``Speaker`` into a fake output
device; a fake room carries what that device plays back into a fake microphone, delayed, attenuated and
low-passed, on top of a spoken question 10 dB quieter than the echo; the real ``Microphone`` callback, the real
canceller, the real Silero VAD and ``VoiceInput`` with a recogniser that only counts. The question must be
segmented and must stop the answer; the echo alone must be neither a question nor an interruption."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
import soxr
from fakes import FakeSoundDevice as FakeMicrophoneDevice

from app.voice import VoiceError
from app.voice.audio import RECOGNITION_RATE, level_dbfs, resample
from app.voice.echo import FRAME, EchoCanceller, EchoReference, load_apm

ANSWER = (
    "A red circle appears on the left side of the screen. It moves slowly to the right. "
    "Then a blue square enters from the top and stays in the middle for a while."
)
ECHO_DELAY_S = 0.05  # from the output device to the microphone (device latencies and air), on top of the fakes'
ECHO_GAIN = 0.5
ROOM = np.array([0.6, 0.3, 0.1], dtype=np.float32)  # a gentle low-pass: the loudspeaker and the room
QUESTION_DB = -10.0  # the question's level relative to the echo's
QUESTION_AT = 4.5  # seconds after the microphone opens: the canceller has learnt the room, and settles (SETTLE_S)
SETTLED_AT = 5.8  # ... and has settled: a faint first syllable holds the answer


def active_rms(x: np.ndarray) -> float:
    """RMS over the samples that are not silence (speech has pauses; the level is the speech's)."""
    loud = x[np.abs(x) > 1e-3]
    return float(np.sqrt(np.mean(np.square(loud, dtype=np.float64))))


@pytest.fixture(scope="module")
def answer() -> tuple[np.ndarray, int]:
    from app.voice.synth import synthesize

    x, rate = synthesize(ANSWER)
    assert len(x) > 3 * rate, "the synthesised answer is too short for these tests"
    return x, rate


# ---------------------------------------------------------------------------------------------
# The canceller alone, on a simulated clock


def simulate(far: np.ndarray, far_rate: int, mic: np.ndarray, canceller: EchoCanceller, read: int = 480):
    """The speaker writes 20 ms blocks of ``far`` in real time from t=1000 s while the microphone (``mic``, its
    sample 0 heard at 1000 s) is read every ``read`` samples, 5 ms late: the cancelled microphone."""
    t0, block, k, out = 1000.0, far_rate // 50, 0, []
    for i in range(0, len(mic), read):
        now = t0 + (i + read) / RECOGNITION_RATE + 0.005
        while t0 + k * 0.02 <= now and k * block < len(far):
            canceller.reference.write(far[k * block : (k + 1) * block], far_rate, at=t0 + k * 0.02)
            k += 1
        out.append(canceller.process(mic[i : i + read], heard_at=now))
    return np.concatenate(out)


def echo_of(far16: np.ndarray, seconds: float, delay_s: float = 0.04) -> np.ndarray:
    n = int(seconds * RECOGNITION_RATE)
    d = int(delay_s * RECOGNITION_RATE)
    echo = np.zeros(n + d, np.float32)
    echo[d : d + len(far16)] = far16[:n] * ECHO_GAIN
    return np.convolve(echo, ROOM)[:n].astype(np.float32)


def test_the_echo_of_an_answer_is_suppressed(answer):
    far, rate = answer
    far16 = resample(far, rate, RECOGNITION_RATE)
    echo = echo_of(far16, len(far16) / RECOGNITION_RATE + 0.5)
    mic = echo + np.random.default_rng(1).standard_normal(len(echo)).astype(np.float32) * 1e-3  # -60 dBFS noise
    out = simulate(far, rate, mic, EchoCanceller(EchoReference()))
    assert abs(len(out) - len(mic)) < FRAME
    speech = slice(RECOGNITION_RATE, len(far16))  # after the first second (AEC3 adapting), while it speaks
    suppression = level_dbfs(mic[speech]) - level_dbfs(out[speech])
    print(f"echo suppression: {suppression:.1f} dB (echo {level_dbfs(mic[speech]):.1f} dBFS)")
    assert suppression > 20.0
    # Without its reference the same microphone passes through (the suppression is the canceller's doing).
    alone = EchoCanceller(EchoReference())
    passed = np.concatenate(
        [alone.process(mic[i : i + 480], heard_at=1000.0 + i / 16000) for i in range(0, len(mic), 480)]
    )
    assert level_dbfs(mic[speech]) - level_dbfs(passed[speech]) < 3.0


def test_leftovers_wait_for_whole_frames_whatever_the_block_sizes(answer):
    far, rate = answer
    far16 = resample(far, rate, RECOGNITION_RATE)[: 2 * RECOGNITION_RATE]
    mic = echo_of(far16, 2.0)

    def run(sizes):
        ref = EchoReference(keep_s=30.0)
        ref.write(far16, RECOGNITION_RATE, at=1000.0)  # all of it placed at once: the pairing is the same
        c = EchoCanceller(ref)
        out, i, k = [], 0, 0
        while i < len(mic):
            n = sizes[k % len(sizes)]
            got = c.process(mic[i : i + n], heard_at=1000.0 + (i + n) / RECOGNITION_RATE)
            assert len(got) % FRAME == 0
            out.append(got)
            i, k = i + n, k + 1
            assert c.pending < FRAME and sum(map(len, out)) + c.pending == min(i, len(mic))
        return np.concatenate(out)

    whole = run([FRAME])
    odd = run([1, 37, 161, 999, 7])
    assert len(whole) == len(mic) // FRAME * FRAME and len(odd) == len(whole)
    assert np.array_equal(whole, odd)  # the same frames, paired with the same reference: the same output


def test_reset_starts_over(answer):
    far, rate = answer
    built = []

    def make():
        built.append(load_apm())
        return built[-1]

    ref = EchoReference()
    c = EchoCanceller(ref, make_apm=make)
    c.process(np.zeros(250, np.float32), heard_at=5.0)
    assert c.pending == 90 and len(built) == 1
    ref.write(far[:441], rate, at=5.0)
    c.reset()
    assert c.pending == 0 and len(built) == 2 and c.apm is built[-1]
    assert ref.written > 0 and ref.take(ref.position(5.0), FRAME).any()  # the reference is on the clock: kept
    assert len(c.process(np.zeros(FRAME, np.float32), heard_at=6.0)) == FRAME


def test_the_reference_is_placed_on_the_clock():
    ref = EchoReference(keep_s=1.0)
    block = np.full(441, 0.5, np.float32)  # 20 ms at 22.05 kHz
    for k in range(5):
        ref.write(block, 22050, at=10.0 + 0.02 * k + 0.01 * (k % 2))  # a jittery writer: still back to back
    start = ref.position(10.0)
    got = ref.take(start, 5 * 320)
    assert np.abs(got[5:-5] - 0.5).max() < 0.02  # contiguous, no hole from the jitter, resampled at unit gain
    assert not ref.take(start, FRAME).any()  # taken: forgotten
    ref.write(block, 22050, at=11.0)  # after a pause: placed where the clock is
    assert not ref.take(ref.position(10.5), FRAME).any() and ref.take(ref.position(11.0) + 40, FRAME).any()
    # Nobody taking: only keep_s stays.
    for k in range(100):
        ref.write(block, 22050, at=20.0 + 0.02 * k)
    assert not ref.take(ref.position(20.0), FRAME).any() and ref.take(ref.position(21.5), FRAME).any()


def test_what_the_device_dropped_is_cut_from_the_reference():
    ref = EchoReference()
    block = np.full(320, 0.5, np.float32)  # 20 ms at 16 kHz
    for k in range(5):
        ref.write(block, 16000, at=10.0 + 0.02 * k)  # 100 ms written ...
    ref.cut(at=10.05)  # ... and the stream aborted 50 ms in: the rest never plays
    got = ref.take(ref.position(10.0), 1600)
    assert got[:800].min() == 0.5 and not got[800:].any()
    ref.write(block, 16000, at=10.5)  # the next answer starts where the clock is
    assert ref.take(ref.position(10.5), 320).min() == 0.5


def test_samples_beyond_full_scale_are_clipped_not_wrapped():
    c = EchoCanceller(EchoReference())
    loud = np.full(16 * FRAME, 1.5, np.float32)  # a DC step would be removed by the high-pass: use a square wave
    loud[::2] *= -1
    out = c.process(loud, heard_at=1.0)
    assert np.abs(out).max() <= 1.0 and level_dbfs(out[-FRAME:]) > -12.0  # loud stays loud (a wrap would be noise)


def test_a_missing_livekit_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "livekit", None)  # import livekit -> ImportError
    with pytest.raises(VoiceError, match="headphones"):
        load_apm()


# ---------------------------------------------------------------------------------------------
# The whole loop, in real time


class Room:
    """Carries what the fake speakers play into the fake microphone: each block played at (nominal) monotonic
    time ``t`` is heard ``ECHO_DELAY_S`` later, times ``ECHO_GAIN``, through ``ROOM``, on top of ``near`` (what
    the user says: a 16 kHz track that starts when the microphone opens)."""

    def __init__(self, near: np.ndarray) -> None:
        self.near = near
        self.echo = np.zeros(len(near) + RECOGNITION_RATE, np.float32)
        self.t0: float | None = None  # when the microphone's first block was delivered
        self.lock = threading.Lock()
        self.stream: Any = None  # the output stream playing now, its resampler and where its sound lands
        self.resampler: Any = None
        self.cursor = 0

    def played(self, stream: Any, block: np.ndarray, rate: int, t: float) -> None:
        """``stream`` played ``block`` from (nominal) time ``t``."""
        with self.lock:
            if self.t0 is None:
                return
            if stream is not self.stream:  # a new answer: its sound lands where the clock is
                # soxr's quick filter: it holds back one sample, so the echo is in place before the microphone
                # reads it (the echo path is not the reference's resampler anyway: speakers are not either)
                self.stream, self.resampler = stream, soxr.ResampleStream(rate, RECOGNITION_RATE, 1, "float32", "QQ")
                self.cursor = int(round((t - self.t0 + ECHO_DELAY_S) * RECOGNITION_RATE))
            x = self.resampler.resample_chunk(np.ascontiguousarray(block, np.float32))
            lo, hi = max(0, self.cursor), min(len(self.echo), self.cursor + len(x))
            if hi > lo:
                self.echo[lo:hi] += ECHO_GAIN * x[lo - self.cursor : hi - self.cursor]
            self.cursor += len(x)

    def heard(self, pos: int, n: int) -> np.ndarray:
        with self.lock:
            if self.t0 is None:
                self.t0 = time.monotonic()
            lo = max(0, pos - len(ROOM) + 1)
            echo = np.convolve(self.echo[lo : pos + n], ROOM)[pos - lo : pos - lo + n]
        out = self.near[pos : pos + n].copy()
        out[: len(echo)] += echo
        return out


class RoomMicrophone(FakeMicrophoneDevice):
    """The fake microphone of ``tests/fakes.py`` whose callback hears the room: the user's track and the echo."""

    def __init__(self, room: Room) -> None:
        super().__init__(room.near, rate=RECOGNITION_RATE, speed=1.0)
        self.room = room

    def InputStream(self, callback=None, **kwargs):  # noqa: N802 - sounddevice's name
        pos = [0]

        def hear(indata, frames, time_info, status):
            indata[:, 0] = self.room.heard(pos[0], frames)
            pos[0] += frames
            callback(indata, frames, time_info, status)

        return super().InputStream(callback=hear, **kwargs)


class RoomSpeakers:
    """The part of ``sounddevice`` the Speaker uses: one output device whose stream plays in real time (a
    blocking write waits while its two-block buffer is full) and hands each block to the room as it plays."""

    PortAudioError = RuntimeError

    def __init__(self, room: Room) -> None:
        self.room = room
        self.streams: list[RoomOutputStream] = []

    def query_devices(self, device=None, kind=None):
        speakers = {"name": "Fake speakers", "max_input_channels": 0, "max_output_channels": 2,
                    "default_samplerate": 48000.0}  # fmt: skip
        return speakers if kind == "output" else [speakers]

    def OutputStream(self, **kwargs):  # noqa: N802 - sounddevice's name
        stream = RoomOutputStream(self.room, **kwargs)
        self.streams.append(stream)
        return stream


class RoomOutputStream:
    """A stream primes its buffer with a block of silence when it starts, and plays from ``start()`` on: the
    first block written plays one block later, whichever thread runs first (a fixed offset against the echo
    reference, which the canceller learns once), and the rest follow back to back, however late the thread that
    hands blocks to the room is scheduled (``late_s`` makes it that late, as a loaded machine does; behind its
    clock, it waits for the block its lateness kept the writer from writing).

    A clock read on that thread raced the first write instead: when the thread came first it played a block of
    silence, when the write did it played the answer at once, so after a hold the echo could come 20 ms earlier
    or later than before, the canceller leaked the resumed answer while it found the new delay, and a cough
    became a question (seen on CI)."""

    late_s = 0.0

    def __init__(self, room: Room, samplerate, blocksize=0, **_):
        self.room, self.samplerate = room, int(samplerate)
        self.blocksize = int(blocksize) or self.samplerate // 50
        self.latency = 2 * self.blocksize / self.samplerate  # its buffer, as PortAudio reports it
        self.pending = np.zeros(0, np.float32)
        self.cond = threading.Condition()
        self.active = self.draining = self.aborted = False
        self.played = 0  # samples
        self.last_played = 0.0  # monotonic time of the last block with sound
        self.started_at = 0.0  # monotonic
        self.thread: threading.Thread | None = None

    def start(self):  # also after abort(), as PortAudio allows: the sound lands where the clock is then
        with self.room.lock:
            if self.room.stream is self:
                self.room.stream = None
        self.active, self.aborted, self.draining = True, False, False
        self.pending = np.zeros(self.blocksize, np.float32)  # the silence it primes its buffer with
        self.started_at = time.monotonic()
        self.thread = threading.Thread(target=self._play, name="fake-output", daemon=True)
        self.thread.start()

    def write(self, data):
        with self.cond:
            while self.active and self.pending.size + len(data) > 2 * self.blocksize:
                self.cond.wait()
            self.pending = np.concatenate([self.pending, np.asarray(data, np.float32)[:, 0]])
        return False

    def _play(self):
        period = self.blocksize / self.samplerate
        time.sleep(self.late_s)
        deadline = self.started_at
        while True:
            with self.cond:
                give_up = time.monotonic() + 0.05
                while (  # behind its clock: the writer waited for this thread, a real device had its block
                    self.active
                    and not self.draining
                    and self.pending.size < self.blocksize
                    and deadline + period < time.monotonic() < give_up
                ):
                    self.cond.wait(0.002)
                if not self.active or (self.draining and not self.pending.size):
                    self.cond.notify_all()
                    return
                block, self.pending = self.pending[: self.blocksize], self.pending[self.blocksize :]
                self.cond.notify_all()
            if len(block) < self.blocksize:
                block = np.concatenate([block, np.zeros(self.blocksize - len(block), np.float32)])
            self.room.played(self, block, self.samplerate, deadline)  # heard from its nominal play time on
            self.played += len(block)
            if np.abs(block).max() > 1e-3:
                self.last_played = deadline
            deadline += period
            time.sleep(max(0.0, deadline - time.monotonic()))

    def stop(self):
        self.draining = True
        if self.thread is not None:
            self.thread.join()
        self.active = False

    def abort(self):
        with self.cond:
            self.aborted, self.active = True, False
            self.cond.notify_all()
        if self.thread is not None:
            self.thread.join()

    def close(self):
        pass


class Counting:
    """A recogniser that hears utterances and says what they were (the test checks where, not what)."""

    def __init__(self) -> None:
        self.utterances: list[np.ndarray] = []

    def transcribe(self, samples: np.ndarray) -> str:
        self.utterances.append(samples)
        return "a question"


COUGH_S = 0.08  # a syllable of the question, alone: too short to be a question (with Silero's lag, 120 ms of it
# lasts 256 ms, over the segmenter's 250 ms minimum, in some window phases), long enough to hold the answer


def run_loop(answer, speech, user: str, at: float = QUESTION_AT):
    """The answer plays while the microphone hears its echo and what the ``user`` does ``at`` seconds: "asks"
    (the question, ``QUESTION_DB`` under the echo), "coughs" (``COUGH_S`` of it, as loud as the echo) or
    "nothing": what was heard and when."""
    from app.voice.audio import Microphone
    from app.voice.input import VoiceInput
    from app.voice.tts import Speaker
    from app.voice.vad import SileroVad

    SileroVad()  # loaded before listening (as arming does), so the first words are not spent loading it
    far, far_rate = answer
    seconds = len(far) / far_rate + 3.0
    near = np.random.default_rng(2).standard_normal(int(seconds * RECOGNITION_RATE)).astype(np.float32) * 10 ** (
        -60 / 20
    )
    q = resample(speech.samples, speech.rate, RECOGNITION_RATE)
    far16 = resample(far, far_rate, RECOGNITION_RATE)
    echo_level = active_rms(np.convolve(far16 * ECHO_GAIN, ROOM))
    q = q * (echo_level * 10 ** (QUESTION_DB / 20) / active_rms(q))
    q_start = int(at * RECOGNITION_RATE)
    if user == "asks":
        near[q_start : q_start + len(q)] += q
    elif user == "knocks":  # three knocks on the table: loud, sudden, nothing like speech
        rng = np.random.default_rng(3)
        for k in range(3):
            n = int(0.03 * RECOGNITION_RATE)
            knock = rng.standard_normal(n).astype(np.float32) * np.exp(-np.arange(n) / (0.005 * RECOGNITION_RATE))
            at = q_start + int((1.5 + k * 0.25) * RECOGNITION_RATE)  # once the canceller has settled (SETTLE_S)
            near[at : at + n] += knock * np.float32(echo_level * 4)
    elif user == "coughs":
        n = int(COUGH_S * RECOGNITION_RATE)
        loudest = int(np.argmax(np.convolve(np.abs(q), np.ones(n), "valid")))
        near[q_start : q_start + n] += q[loudest : loudest + n] * 10 ** (-QUESTION_DB / 20)
    room = Room(near)
    reference = EchoReference()
    states: list[tuple[float, str]] = []
    speakers = RoomSpeakers(room)
    speaker = Speaker(sd=speakers, reference=reference, on_state=lambda s: states.append((time.monotonic(), s)))
    heard = []
    ended = threading.Event()
    voice = VoiceInput(
        Counting(),
        heard.append,
        Microphone(sd=RoomMicrophone(room)),
        speaker=speaker,
        echo=EchoCanceller(reference),
        on_error=lambda message: ended.set(),  # the fake microphone ends with its track
    )
    try:
        voice.start()
        while room.t0 is None:
            time.sleep(0.001)
        speaker.say(ANSWER)  # synthesis takes a moment: the answer starts a little after the microphone
        assert ended.wait(seconds + 30), "the fake microphone never ended"
    finally:
        voice.stop()
        speaker.close()
    opened = room.t0
    started = next(t for t, s in states if s == "started") - opened
    stopped = next((t for t, s in states if s == "stopped"), None)
    last_played = max(s.last_played for s in speakers.streams) - opened
    spans = [(h.started - voice.times.at(0.0), h.ended - voice.times.at(0.0)) for h in heard]
    q_span = (at, at + len(q) / RECOGNITION_RATE)
    played_s = sum(s.played for s in speakers.streams) / far_rate
    return spans, q_span, started, None if stopped is None else stopped - opened, last_played, played_s, voice


@pytest.mark.parametrize("at", [QUESTION_AT, SETTLED_AT], ids=["settling", "settled"])
def test_talking_over_an_answer_stops_it_and_is_heard(answer, speech, at):
    spans, (q0, q1), started, stopped, last_played, _, voice = run_loop(answer, speech, "asks", at)
    assert started < q0 - 0.5, f"the answer started at {started:.2f} s, too late for the question at {q0} s"
    assert len(spans) == 1, spans  # one question, overlapping where it was said
    (s0, s1) = spans[0]
    assert s0 < q1 and s1 > q0, (spans, (q0, q1))
    assert stopped is not None and q0 < stopped < q0 + 1.5, (stopped, q0)
    assert last_played < q0 + 1.5
    assert voice.speaker.holds == 1  # silent at its first syllables (held), then stopped
    print(
        f"question {q0:.2f}-{q1:.2f} s ({'settling' if at == QUESTION_AT else 'settled'}), segmented {s0:.2f}-{s1:.2f} s; barge-in: the answer's last block played "
        f"{(last_played - q0) * 1000:.0f} ms after the question's onset (speaker stopped after {(stopped - q0) * 1000:.0f} ms)"
    )
    assert voice.ignored_seconds < 4.0  # muted only while the canceller learnt the room (LEARN_S of its sound)


def test_the_echo_alone_is_neither_a_question_nor_an_interruption(answer, speech):
    far, far_rate = answer
    spans, _, started, stopped, last_played, played_s, voice = run_loop(answer, speech, "nothing")
    assert spans == []
    assert played_s >= len(far) / far_rate - 0.05  # the answer played to its end
    assert voice.speaker.holds == 0  # ... without a pause: the echo never looked like the user starting to talk
    assert voice.echo.far_frames > 600
    assert voice.ignored_seconds < 4.0  # muted only while the canceller learnt the room (LEARN_S of its sound)


# Late by less than ECHO_DELAY_S: a thread later than that hands the room echo the microphone has already heard.
@pytest.mark.parametrize("late_s", [0.0, 0.045], ids=["on time", "output thread late"])
def test_a_cough_over_an_answer_holds_it_and_the_answer_goes_on(answer, speech, late_s, monkeypatch):
    """A burst too short to be a question: the answer goes silent the moment it starts (it may be the user talking),
    then goes on from where it was cut once the burst came to nothing; it is not a question. The same when the
    fake device's thread is scheduled late (a loaded machine): the device's clock, not its thread, places the
    echo."""
    monkeypatch.setattr(RoomOutputStream, "late_s", late_s)
    far, far_rate = answer
    spans, _, started, stopped, last_played, played_s, voice = run_loop(answer, speech, "coughs", SETTLED_AT)
    assert spans == []
    assert voice.speaker.holds == 1
    assert played_s >= len(far) / far_rate - 0.05  # the whole answer was played (the cut part again)
    assert stopped is not None and stopped > SETTLED_AT + 1.0  # it ended by itself, after the cough


def test_knocks_over_an_answer_do_not_hold_it(answer, speech):
    """Sound that jumps far above the echo's leftovers but is nothing like speech: the answer plays on unbroken."""
    far, far_rate = answer
    spans, _, started, stopped, last_played, played_s, voice = run_loop(answer, speech, "knocks")
    assert spans == [] and voice.speaker.holds == 0
    assert played_s >= len(far) / far_rate - 0.05


def test_the_setting_is_on_by_default_and_kept(tmp_path):
    from dataclasses import replace

    from PySide6.QtCore import QSettings

    from app.settings import Settings, VoiceOptions

    path = str(tmp_path / "old.ini")
    old = QSettings(path, QSettings.Format.IniFormat)
    old.setValue("voice/headphones", "false")  # a settings file from before the option: it loads, and is on
    old.sync()
    settings = Settings(QSettings(path, QSettings.Format.IniFormat))
    assert settings.load(VoiceOptions).echo_cancellation is True
    settings.save(replace(settings.load(VoiceOptions), echo_cancellation=False))
    settings.qsettings.sync()
    assert Settings(QSettings(path, QSettings.Format.IniFormat)).load(VoiceOptions).echo_cancellation is False
