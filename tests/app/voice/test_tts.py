"""Spoken answers' playback: the Speaker through a fake output device that consumes audio in real time (this
machine has no sound card), interruption timing, holds, voice settings, and synthesis errors as the Speaker reports
them. Synthesis itself is test_synth.py's."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from app.voice import VoiceError, synth, tts
from app.voice.synth import ENGINE_MISSING, engine_installed, synthesize, voices
from app.voice.tts import Speaker

# ---------------------------------------------------------------------------------------------
# A fake sounddevice: an output device that plays in real time


class FakeOutputStream:
    """``sounddevice.OutputStream`` in blocking-write mode: ``write`` blocks while the device buffer
    (two blocks, like a low-latency PortAudio stream) is full; a thread "plays" one block per block
    period and records when and what it played; ``stop`` plays out the buffer, ``abort`` drops it."""

    def __init__(self, sd: FakeSoundDevice, samplerate, channels=1, dtype="float32", blocksize=0, device=None, **_):
        assert channels == 1 and dtype == "float32"
        self.sd, self.samplerate, self.device = sd, float(samplerate), device
        self.blocksize = int(blocksize) or int(samplerate) // 100
        self.capacity = 2 * self.blocksize
        self.latency = self.capacity / self.samplerate  # what PortAudio reports: the buffer's length, in seconds
        self.pending = np.zeros(0, dtype=np.float32)
        self.cond = threading.Condition()
        self.active = self.closed = self.draining = False
        self.aborted = False
        self.played: list[tuple[float, np.ndarray]] = []  # (monotonic time, samples) per played block
        self.writes: list[float] = []  # monotonic time of each write() call
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.active = True
        self._thread = threading.Thread(target=self._consume, name="fake-output", daemon=True)
        self._thread.start()

    def write(self, data) -> bool:
        assert self.active, "write() on a stream that is not started"
        data = np.asarray(data, dtype=np.float32)
        assert data.ndim == 2 and data.shape[1] == 1
        self.writes.append(time.monotonic())
        with self.cond:
            while self.active and self.pending.size + data.shape[0] > self.capacity:
                self.cond.wait()
            self.pending = np.concatenate([self.pending, data[:, 0]])
        return False  # no underflow

    def _consume(self) -> None:
        period = self.blocksize / self.samplerate
        deadline = time.monotonic()
        while True:
            deadline += period
            time.sleep(max(0.0, deadline - time.monotonic()))
            with self.cond:
                if not self.active or (self.draining and self.pending.size == 0):
                    self.cond.notify_all()
                    return
                block, self.pending = self.pending[: self.blocksize], self.pending[self.blocksize :]
                self.cond.notify_all()
            if block.size:
                self.played.append((time.monotonic(), block))

    def stop(self) -> None:
        self.draining = True
        if self._thread is not None:
            self._thread.join()
        self.active = False

    def abort(self) -> None:
        with self.cond:
            self.aborted, self.active, self.pending = True, False, np.zeros(0, dtype=np.float32)
            self.cond.notify_all()
        if self._thread is not None:
            self._thread.join()

    def close(self) -> None:
        self.closed = True


class FakeSoundDevice:
    """The part of the ``sounddevice`` module the Speaker uses. ``outputs=0``: no output device;
    ``fail_open``: opening a stream raises, as PortAudio does for a busy device."""

    class PortAudioError(Exception):
        pass

    def __init__(self, outputs: int = 1, fail_open: bool = False) -> None:
        self.devices = [{"name": "Fake microphone", "max_input_channels": 1, "max_output_channels": 0}]
        self.devices += [
            {
                "name": f"Fake speakers {i}",
                "max_input_channels": 0,
                "max_output_channels": 2,
                "default_samplerate": 48000.0,
            }
            for i in range(outputs)
        ]
        self.fail_open = fail_open
        self.streams: list[FakeOutputStream] = []

    def query_devices(self, device=None, kind=None):
        if device is None and kind is None:
            return list(self.devices)
        outputs = [d for d in self.devices if d["max_output_channels"] > 0]
        if device is None:
            if not outputs:
                raise self.PortAudioError("Error querying device -1")
            return outputs[0]
        if not (isinstance(device, int) and 0 <= device < len(self.devices)):
            raise ValueError(f"No output device matching {device!r}")
        return self.devices[device]

    def OutputStream(self, **kwargs) -> FakeOutputStream:  # noqa: N802 - sounddevice's name
        if self.fail_open:
            raise self.PortAudioError("Device unavailable [PaErrorCode -9985]")
        stream = FakeOutputStream(self, **kwargs)
        self.streams.append(stream)
        return stream

    def played(self) -> np.ndarray:
        blocks = [b for s in self.streams for _, b in s.played]
        return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.002)
    return predicate()


@pytest.fixture
def sd() -> FakeSoundDevice:
    return FakeSoundDevice()


@pytest.fixture
def speaker(sd):
    states: list[str] = []
    errors: list[VoiceError] = []
    sp = Speaker(sd=sd, on_state=states.append, on_error=errors.append)
    sp.states, sp.errors = states, errors  # type: ignore[attr-defined]
    yield sp
    sp.close()


# ---------------------------------------------------------------------------------------------
# Synthesis errors and voices, as the Speaker meets them


def test_voices_and_choosing_one(sd):
    available = voices()
    assert available and all(isinstance(i, str) and isinstance(n, str) for i, n in available)
    ids = [i for i, _ in available]
    other = next(i for i in ids if "de" in i.split("/")[-1])  # a German voice: espeak-ng ships one
    assert synthesize("Guten Tag", voice=other)[0].size > 0
    # After a call with a voice, a call without one is back on the default. The German voice reads English
    # ~15% slower; espeak-ng's own length varies by up to ~3% from call to call.
    default = synthesize("Hello there, how are you today?")[0].size
    german = synthesize("Hello there, how are you today?", voice=other)[0].size
    assert abs(german - default) > 0.08 * default
    assert abs(synthesize("Hello there, how are you today?")[0].size - default) < 0.04 * default
    with pytest.raises(VoiceError, match="Unknown voice 'no-such-voice'"):
        synthesize("Hello", voice="no-such-voice")
    sp = Speaker(sd=sd)
    try:
        assert sp.voices() == available
        sp.set_voice(other)
        sp.set_voice(other.upper())  # matched in any case, as synthesis matches it
        with pytest.raises(VoiceError, match="Unknown voice"):
            sp.set_voice("no-such-voice")
        with pytest.raises(VoiceError):
            sp.set_rate(5)
        with pytest.raises(VoiceError):
            sp.set_volume(1.5)
    finally:
        sp.close()


@pytest.mark.espeak_only
def test_a_missing_espeak_ng_says_to_install_it(monkeypatch, tmp_path, sd):
    monkeypatch.setattr(synth, "ESPEAK", str(tmp_path / "espeak-ng"))  # no such program
    assert not engine_installed()
    with pytest.raises(VoiceError) as err:
        synthesize("Hello")
    assert str(err.value) == ENGINE_MISSING
    assert "sudo apt-get install espeak-ng" in str(err.value) and "subtitles" in str(err.value)
    with pytest.raises(VoiceError, match="sudo apt-get install espeak-ng"):
        voices()
    # The Speaker reports it from its thread; the caller is never blocked.
    errors: list[VoiceError] = []
    sp = Speaker(sd=sd, on_error=errors.append)
    try:
        start = time.monotonic()
        sp.say("Hello")
        assert time.monotonic() - start < 0.1
        assert sp.wait(10)
        assert [str(e) for e in errors] == [ENGINE_MISSING] and not sp.speaking and not sd.streams
    finally:
        sp.close()
    monkeypatch.undo()
    assert engine_installed() and synthesize("Hello")[0].size > 0  # the real program works


WAV_WITHOUT_SAMPLES = "w = wave.open(out, 'wb'); w.setnchannels(1); w.setsampwidth(2); w.setframerate(22050); w.close()"


@pytest.mark.espeak_only
@pytest.mark.parametrize(
    ("code", "message"),
    [
        (
            "sys.stderr.write('Error: voice data is damaged\\n'); sys.exit(1)",
            "espeak-ng could not speak the answer (exit status 1): Error: voice data is damaged. Check that "
            "`espeak-ng hello` speaks in a terminal",
        ),
        ("sys.exit(0)", "espeak-ng wrote no audio file (exit status 0): it printed nothing."),
        (WAV_WITHOUT_SAMPLES, "espeak-ng wrote no audio for 'Hello there' (a WAV file without samples)"),
    ],
    ids=["fails", "writes-nothing", "writes-no-samples"],
)
def test_a_failing_espeak_ng_is_named_with_its_own_words(monkeypatch, tmp_path, sd, code, message, fake_espeak):
    """Installed but failing is not "install espeak-ng": the message carries the program's own error."""
    monkeypatch.setattr(synth, "ESPEAK", fake_espeak(tmp_path, code))
    assert engine_installed()
    with pytest.raises(VoiceError) as err:
        synthesize("Hello there")
    assert str(err.value).startswith(message) and "install" not in str(err.value)
    errors: list[VoiceError] = []
    sp = Speaker(sd=sd, on_error=errors.append)
    try:
        sp.say("Hello there")
        assert sp.wait(10)
        assert [str(e) for e in errors] == [str(err.value)] and not sd.streams
    finally:
        sp.close()


# ---------------------------------------------------------------------------------------------
# Playback


def test_speaker_plays_the_answer_in_real_time(speaker, sd, synthesized):
    text = "Hello there. The door is open."
    seen_speaking = []
    speaker.say(text)
    assert wait_for(lambda: speaker.speaking, 5)
    seen_speaking.append(speaker.speaking)
    assert speaker.wait(10)
    assert not speaker.speaking and seen_speaking == [True]
    assert speaker.states == ["started", "stopped"] and not speaker.errors
    assert len(sd.streams) == 1 and sd.streams[0].closed and not sd.streams[0].aborted
    assert len(synthesized) == 2  # one clip per sentence, played back to back in one stream
    expected = np.concatenate(synthesized)
    played = sd.played()
    assert played.size == expected.size and np.allclose(played, expected, atol=1e-6)
    # Real time: the blocks were played over about the audio's own duration.
    times = [t for t, _ in sd.streams[0].played]
    duration = expected.size / 22050
    assert 0.85 * duration <= times[-1] - times[0] + 0.01 <= 1.3 * duration + 0.1
    # Chunks of at most 20 ms.
    assert max(b.size for _, b in sd.streams[0].played) <= 441


def test_stop_silences_within_200_ms(speaker, sd, synthesized, long_answer):
    speaker.say(long_answer)
    assert wait_for(lambda: sd.streams and sum(b.size for _, b in sd.streams[0].played) > 0.3 * 22050, 10)
    assert speaker.speaking
    t0 = time.monotonic()
    speaker.stop()
    assert wait_for(lambda: not speaker.speaking, 1.0)
    stream = sd.streams[0]
    assert stream.aborted and stream.closed
    assert stream.writes[-1] - t0 < 0.2, f"a chunk was written {stream.writes[-1] - t0:.3f} s after stop()"
    assert stream.played[-1][0] - t0 < 0.2, f"audio played {stream.played[-1][0] - t0:.3f} s after stop()"
    assert sd.played().size < 0.5 * sum(c.size for c in synthesized)
    print(f"stop: last write {stream.writes[-1] - t0:+.3f} s, last block played {stream.played[-1][0] - t0:+.3f} s")
    assert speaker.states == ["started", "stopped"]
    assert speaker.wait(1)
    time.sleep(0.1)
    assert len(sd.streams) == 1  # nothing else was played after the stop


def test_a_held_answer_is_silent_at_once_and_goes_on_from_where_it_was_cut(speaker, sd, synthesized, long_answer):
    speaker.say(long_answer)
    assert wait_for(lambda: sd.streams and sum(b.size for _, b in sd.streams[0].played) > 0.3 * 22050, 10)
    stream = sd.streams[0]
    t0 = time.monotonic()
    speaker.hold()
    assert wait_for(lambda: stream.aborted, 0.2)  # what the device held is dropped: silent at once
    heard_before = sum(b.size for t, b in stream.played if t <= t0 + 0.1)
    time.sleep(0.3)
    assert speaker.speaking and speaker.held
    assert not [t for t, _ in stream.played if t0 + 0.1 < t], "audio played while the answer was held"
    speaker.release()
    assert speaker.wait(20)
    expected = np.concatenate(synthesized)
    played = sd.played()
    assert played.size >= expected.size  # nothing was skipped: the cut part is played again
    # It went on from no later than where it was cut.
    resumed = played[heard_before : heard_before + 2205]
    matches = [i for i in range(0, heard_before + 1) if np.allclose(expected[i : i + 2205], resumed, atol=1e-6)]
    assert matches and matches[0] <= heard_before, "the answer did not go on from where it was cut"
    assert np.allclose(played[-4410:], expected[-4410:], atol=1e-6)  # ... to its end
    assert speaker.holds == 1 and speaker.states == ["started", "stopped"] and len(sd.streams) == 1


def test_a_held_answer_ends_on_stop_and_goes_on_by_itself_if_nobody_decides(
    speaker, sd, synthesized, monkeypatch, long_answer
):
    speaker.say(long_answer)
    assert wait_for(lambda: sd.streams and sd.streams[0].played, 10)
    speaker.hold()
    assert wait_for(lambda: sd.streams[0].aborted, 0.2)
    speaker.stop()  # the user was talking: the answer ends
    assert wait_for(lambda: not speaker.speaking, 0.5) and speaker.wait(1) and not speaker.held
    speaker.hold()  # nothing is playing: nothing to hold
    assert not speaker.held
    monkeypatch.setattr(tts, "HOLD_MAX_S", 0.2)
    speaker.say("One. Two. Three.")
    assert wait_for(lambda: len(sd.streams) == 2 and sd.streams[1].played, 10)
    speaker.hold()  # ... and nobody releases or stops it: it goes on by itself
    assert speaker.wait(10)
    assert speaker.holds == 2 and not speaker.held
    assert sum(b.size for _, b in sd.streams[1].played) >= sum(c.size for c in synthesized[-3:])  # all three


def test_a_newer_answer_interrupts(speaker, sd, synthesized, long_answer):
    speaker.say(long_answer)
    assert wait_for(lambda: sd.streams and sum(b.size for _, b in sd.streams[0].played) > 0.3 * 22050, 10)
    t0 = time.monotonic()
    speaker.say("Second answer.")
    assert wait_for(lambda: len(sd.streams) == 2, 2)
    first = sd.streams[0]
    assert first.aborted and first.played[-1][0] - t0 < 0.2 and first.writes[-1] - t0 < 0.2
    assert speaker.wait(10)
    second = np.concatenate([b for _, b in sd.streams[1].played])
    assert np.allclose(second, synthesized[-1], atol=1e-6)
    assert speaker.states == ["started", "stopped", "started", "stopped"]


def test_queued_answers_without_interrupting(speaker, sd, synthesized):
    speaker.say("First.")
    speaker.say("Second.", interrupt=False)
    assert speaker.wait(10)
    assert [s.aborted for s in sd.streams] == [False, False] and len(synthesized) == 2
    assert np.allclose(sd.played(), np.concatenate(synthesized), atol=1e-6)


def test_volume_applies_to_playback(speaker, sd, synthesized):
    speaker.set_volume(0.5)
    speaker.say("Half as loud.")
    assert speaker.wait(10)
    assert np.allclose(sd.played(), 0.5 * synthesized[0], atol=1e-6)


def test_test_voice_and_close(speaker, sd):
    speaker.test_voice()
    assert wait_for(lambda: sd.streams and len(sd.streams[0].played) > 10, 10)  # 0.2 s of the test sentence
    t0 = time.monotonic()
    speaker.close()  # silences it too
    assert time.monotonic() - t0 < 0.5 and not speaker._thread.is_alive() and not speaker.speaking
    assert sd.streams[0].aborted and sd.streams[0].played[-1][0] - t0 < 0.2
    assert speaker.states == ["started", "stopped"]
    speaker.say("After closing.")  # ignored, not an error
    assert len(sd.streams) == 1


def test_no_output_device_fails_fast():
    sp = Speaker(sd=FakeSoundDevice(outputs=0))
    try:
        start = time.monotonic()
        with pytest.raises(VoiceError) as err:
            sp.say("Nobody will hear this.")
        assert time.monotonic() - start < 0.1
        assert str(err.value).startswith("No audio output device: ")
        assert not sp.speaking
    finally:
        sp.close()
    with pytest.raises(VoiceError, match="No audio output device: '7'"):
        Speaker(sd=FakeSoundDevice(), output_device=7).say("Hello")


def test_a_device_that_cannot_open_is_reported():
    errors: list[VoiceError] = []
    sd = FakeSoundDevice(fail_open=True)
    sp = Speaker(sd=sd, on_error=errors.append)
    try:
        sp.say("Hello")
        assert sp.wait(10)
        assert len(errors) == 1 and str(errors[0]).startswith("No audio output device: could not open it")
        assert not sp.speaking
    finally:
        sp.close()
