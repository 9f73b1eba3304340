"""The audio front: band-limited resampling (soxr, against known sines), the callback's ring buffer, levels,
device listing, and the microphone driven through its real PortAudio callback by a fake sounddevice module
(FakeSoundDevice) that plays synthesised speech, refuses sample rates, overflows and gets unplugged."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest
from fakes import FakeCallbackFlags, FakeSoundDevice, wait_until

from app.voice import VoiceError
from app.voice.audio import (
    InputDevice,
    Microphone,
    Resampler,
    RingBuffer,
    default_input,
    level_dbfs,
    list_input_devices,
    meter_value,
    resample,
)
from app.voice.vad import Segmenter, VadSettings


def tone(freq: float, rate: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * rate / len(x))


# --- resampling ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("from_rate", [48000, 44100, 22050, 8000])
def test_resample_keeps_a_tone(from_rate):
    y = resample(tone(1000, from_rate, 2.0), from_rate, 16000)
    assert len(y) == 32000 and y.dtype == np.float32
    mid = y[1600:-1600]  # away from the edges, where the filter sees the silence around the clip
    assert peak_hz(mid, 16000) == pytest.approx(1000, abs=1.0)
    assert rms(mid) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_resample_removes_what_would_alias():
    """12 kHz cannot exist at 16 kHz; decimating without a low-pass would fold it to 4 kHz at full level."""
    x = tone(12000, 48000, 2.0)
    y = resample(x, 48000, 16000)
    attenuation_db = 20 * np.log10(rms(y[1600:-1600]) / rms(x))
    assert attenuation_db < -30
    naive = x[::3]  # what the callback must never do
    assert 20 * np.log10(rms(naive) / rms(x)) > -1


def test_resample_identity_and_lengths():
    x = np.random.default_rng(0).standard_normal(1234).astype(np.float32)
    same = resample(x, 16000, 16000)
    assert np.array_equal(same, x) and same is not x
    assert len(resample(x, 44100, 16000)) == round(1234 * 16000 / 44100)
    assert len(resample(x, 16000, 48000)) == 3 * 1234
    assert len(resample(np.zeros(0, np.float32), 48000, 16000)) == 0


@pytest.mark.parametrize("from_rate", [48000, 44100])
def test_streaming_resampler_matches_whole_signal(from_rate):
    """The microphone resamples block by block: the result must not depend on how the audio was cut up."""
    x = np.random.default_rng(1).standard_normal(30000).astype(np.float32)
    r = Resampler(from_rate, 16000)
    rng = np.random.default_rng(2)
    parts, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 2500))
        parts.append(r.process(x[i : i + n]))
        i += n
    parts.append(r.flush())
    assert np.allclose(np.concatenate(parts), resample(x, from_rate, 16000), atol=1e-5)


@pytest.mark.parametrize("from_rate", [48000, 44100])
def test_resampled_sine_is_the_sine_at_16k(from_rate):
    """Against the known answer: a 440 Hz sine resampled is the same sine sampled at 16 kHz, in phase (the
    filter's delay is compensated), at full level; streamed in 20 ms blocks it is the same again."""
    y = resample(tone(440, from_rate, 3.0), from_rate, 16000)
    expected = tone(440, 16000, 3.0)
    assert len(y) == len(expected)
    mid = slice(800, -800)  # away from the edges, where the filter sees the silence around the clip
    assert np.max(np.abs(y[mid] - expected[mid])) < 1e-3
    r = Resampler(from_rate, 16000)
    x = tone(440, from_rate, 3.0)
    block = from_rate // 50
    streamed = np.concatenate([r.process(x[i : i + block]) for i in range(0, len(x), block)] + [r.flush()])
    assert len(streamed) == len(expected) and np.max(np.abs(streamed - y)) < 1e-5


def test_resampler_flush_and_reset_start_a_new_stream():
    x = tone(1000, 48000, 0.5)
    r = Resampler(48000, 16000)
    first = np.concatenate([r.process(x), r.flush()])
    again = np.concatenate([r.process(x), r.flush()])  # flush started over
    r.process(tone(300, 48000, 0.2))
    r.reset()  # forget a stream cut off without a flush
    third = np.concatenate([r.process(x), r.flush()])
    assert len(first) == 8000 and np.array_equal(first, again) and np.array_equal(first, third)
    with pytest.raises(ValueError):
        Resampler(0, 16000)


# --- the ring buffer ----------------------------------------------------------------------------------------


def test_ring_buffer_drops_newest_and_counts():
    ring = RingBuffer(1000)
    data = np.arange(1200, dtype=np.float32)
    assert ring.write(data[:600]) == 600
    assert ring.write(data[600:]) == 400  # only 400 fit
    assert ring.dropped == 200 and ring.available == 1000
    assert np.array_equal(ring.read(), data[:1000])  # the oldest audio, in order
    assert ring.available == 0 and ring.read().size == 0
    # After the consumer caught up, writing works again across the wrap-around point.
    more = np.arange(5000, 5700, dtype=np.float32)
    assert ring.write(more) == 700 and ring.dropped == 200
    assert np.array_equal(ring.read(300), more[:300])
    assert np.array_equal(ring.read(), more[300:])


def test_ring_buffer_against_a_reference_queue():
    ring = RingBuffer(777)
    rng = np.random.default_rng(3)
    expected: list[float] = []
    dropped = 0
    counter = 0.0
    for _ in range(500):
        if rng.random() < 0.55:
            n = int(rng.integers(0, 300))
            block = np.arange(counter, counter + n, dtype=np.float32)
            counter += n
            fits = min(n, 777 - len(expected))
            expected += block[:fits].tolist()
            dropped += n - fits
            ring.write(block)
        else:
            want = int(rng.integers(0, 400))
            got = ring.read(want)
            assert got.tolist() == expected[: len(got)] and len(got) == min(want, len(expected))
            del expected[: len(got)]
    assert ring.dropped == dropped and ring.available == len(expected)


def test_callback_path_allocates_nothing():
    """The ring's write and the microphone's callback copy into preallocated memory: a thousand 4800-sample
    blocks (19 kB each) must not grow the traced memory, nor make its peak grow by one block."""
    fake = FakeSoundDevice(np.zeros(0, np.float32), rate=48000)
    mic = Microphone(sd=fake, buffer_seconds=1.0)
    mic.start()  # the fake has nothing to play: its stream ends at once, the callback is ours to call
    wait_until(lambda: fake.streams[0].done.is_set())
    ring = RingBuffer(48000)
    block = np.ones(4800, dtype=np.float32)
    indata = np.ones((4800, 1), dtype=np.float32)
    flags = FakeCallbackFlags(input_overflow=False)
    for _ in range(20):  # warm up: first-call caches
        ring.write(block)
        ring.clear()
        mic._callback(indata, 4800, None, flags)
        mic._ring.clear()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(1000):
            ring.write(block)
            mic._callback(indata, 4800, None, flags)
            if ring.available > 40000:
                ring.clear()  # consumer side, outside what is measured below
            if mic._ring.available > 40000:
                mic._ring.clear()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        mic.stop()
    assert current - base < 1024
    assert peak - base < 2048  # a copy of one block alone would be 19200 bytes


# --- levels -------------------------------------------------------------------------------------------------


def test_levels():
    assert level_dbfs(tone(1000, 16000, amp=1.0)) == pytest.approx(-3.01, abs=0.02)
    assert level_dbfs(tone(1000, 16000, amp=0.1)) == pytest.approx(-23.01, abs=0.02)
    assert level_dbfs(np.zeros(100, np.float32)) == -100.0
    assert level_dbfs(np.zeros(0, np.float32)) == -100.0
    assert meter_value(-100.0) == 0.0 and meter_value(-60.0) == 0.0
    assert meter_value(-30.0) == pytest.approx(0.5) and meter_value(0.0) == 1.0 and meter_value(6.0) == 1.0
    assert meter_value(float("-inf")) == 0.0


# --- devices ------------------------------------------------------------------------------------------------

DEVICES = [
    {"name": "HDMI Output", "index": 0, "hostapi": 0, "max_input_channels": 0, "max_output_channels": 2,
     "default_samplerate": 48000.0},
    {"name": "Built-in Microphone", "index": 1, "hostapi": 0, "max_input_channels": 2, "max_output_channels": 0,
     "default_samplerate": 44100.0},
    {"name": "USB Headset", "index": 2, "hostapi": 0, "max_input_channels": 1, "max_output_channels": 2,
     "default_samplerate": 48000.0},
]  # fmt: skip


def test_list_input_devices():
    fake = FakeSoundDevice(devices=DEVICES, default=2)
    devices = list_input_devices(fake)
    assert devices == [
        InputDevice(1, "Built-in Microphone", 44100.0, 2, False, "Fake Audio"),
        InputDevice(2, "USB Headset", 48000.0, 1, True, "Fake Audio"),
    ]
    assert default_input(fake).name == "USB Headset"
    assert devices[1].label == "USB Headset, Fake Audio (default)"
    # No default input (PortAudio says -1): the first input stands in.
    assert default_input(FakeSoundDevice(devices=DEVICES, default=-1)).name == "Built-in Microphone"
    assert list_input_devices(FakeSoundDevice(devices=DEVICES[:1])) == []


def test_choosing_a_device_by_name(recording):
    rec = recording(48000)
    fake = FakeSoundDevice(rec.samples[:48000], rate=48000, devices=DEVICES, default=1)
    with Microphone(device="usb", sd=fake) as mic:
        assert mic.device.name == "USB Headset" and fake.streams[0].device == 2
    with pytest.raises(VoiceError, match="The microphone 'Blue Yeti' is not connected.*'USB Headset'"):
        Microphone(device="Blue Yeti", sd=fake).start()


@pytest.mark.parametrize("devices", [[], DEVICES[:1]], ids=["none", "outputs-only"])
def test_no_microphone(devices):
    with pytest.raises(VoiceError) as e:
        Microphone(sd=FakeSoundDevice(devices=devices)).start()
    assert str(e.value) == (
        "No microphone found. Connect one, or choose a device in Voice > Voice settings; typed questions still work."
    )


# --- the microphone -----------------------------------------------------------------------------------------


def drain(mic: Microphone, fake: FakeSoundDevice, timeout: float = 10.0, on_audio=None) -> np.ndarray:
    """Read (as a consumer loop would, every 10 ms) until the fake stream has played everything; then stop
    the microphone and read the rest."""
    out = []
    deadline = time.monotonic() + timeout
    while not fake.streams[-1].done.is_set():
        assert time.monotonic() < deadline, "the fake stream never finished"
        chunk = mic.read()
        out.append(chunk)
        if on_audio is not None:
            on_audio(chunk)
        time.sleep(0.01)
    mic.stop()
    rest = mic.read()
    out.append(rest)
    if on_audio is not None:
        on_audio(rest)
    return np.concatenate(out)


@pytest.mark.parametrize(
    "device_rate, accept", [(48000, {48000}), (16000, None)], ids=["48k-refuses-16k", "16k-native"]
)
def test_spoken_question_through_the_callback_gives_one_utterance(recording, device_rate, accept):
    """Speech played by a fake device through the real callback, ring buffer, resampling and Silero VAD:
    exactly one utterance, where the speech is in the recording."""
    rec = recording(device_rate)
    fake = FakeSoundDevice(rec.samples, rate=device_rate, accept_rates=accept, speed=20)
    seg = Segmenter(VadSettings())
    utterances = []
    mic = Microphone(sd=fake)
    with mic:
        assert mic.device_rate == device_rate and mic.resampling == (device_rate != 16000)
        if accept is not None:
            assert 16000 in fake.refused  # asked for 16 kHz first, then fell back to the device's rate

        audio = drain(mic, fake, on_audio=lambda chunk: utterances.extend(seg.push(chunk)))
    utterances += seg.flush()

    assert mic.dropped == 0 and mic.overflows == 0
    block = 16000 * 20 // 1000  # the fake delivers whole 20 ms blocks only
    assert abs(len(audio) - len(rec.samples) * 16000 / device_rate) <= block
    assert len(utterances) == 1, [(u.start, u.end) for u in utterances]
    u = utterances[0]
    assert abs(u.start - rec.speech_start) < 0.3
    assert abs(u.end - rec.speech_end) < 0.3
    assert u.rate == 16000 and u.audio_start < u.start and u.audio_end > u.end


def test_device_refusing_16k_is_resampled_to_the_right_duration():
    x = tone(440, 44100, 2.0)  # 88200 samples: exactly 100 blocks of 20 ms
    fake = FakeSoundDevice(x, rate=44100, accept_rates={44100})
    mic = Microphone(sd=fake)
    mic.start()
    assert fake.streams[0].samplerate == 44100 and fake.streams[0].blocksize == 882
    audio = drain(mic, fake)
    assert len(audio) == 32000  # 2.0 s at 16 kHz
    assert peak_hz(audio[800:-800], 16000) == pytest.approx(440, abs=1.0)
    assert rms(audio[800:-800]) == pytest.approx(rms(x), rel=0.02)
    assert mic.level_db == pytest.approx(-9.03, abs=0.5)  # the meter shows the tone's level (last 50 ms read)
    assert mic.level == pytest.approx(meter_value(-9.03), abs=0.01)


def test_device_opening_at_no_rate_is_an_error():
    fake = FakeSoundDevice(rate=44100, accept_rates={96000})
    with pytest.raises(VoiceError, match="The microphone 'Fake USB Mic' could not be opened"):
        Microphone(sd=fake).start()
    assert fake.refused == [16000, 44100]


def test_unplugged_mid_stream():
    x = np.random.default_rng(0).standard_normal(16000 * 5).astype(np.float32) * 0.1
    fake = FakeSoundDevice(x, rate=16000, speed=1.0, unplug_after=15, name="Jabra Speak 510")
    mic = Microphone(sd=fake)
    mic.start()
    mic.poll()  # fine while it delivers
    assert wait_until(lambda: fake.streams[0].unplugged.is_set(), timeout=5.0)
    with pytest.raises(VoiceError) as e:
        mic.poll()
    msg = str(e.value)
    assert msg == (
        "The microphone 'Jabra Speak 510' stopped delivering audio (unplugged?). Voice input is off; typed "
        "questions still work. Plug it in and turn voice input on again."
    )
    assert not mic.active
    with pytest.raises(VoiceError):
        mic.poll()  # it stays reported until voice input is turned on again
    assert len(mic.read()) == 15 * 320  # what arrived before the unplug is still there
    mic.stop()


def test_stalled_device_is_reported():
    """Some drivers keep a dead stream "active" and simply stop calling back."""
    x = np.zeros(16000 * 5, np.float32)
    fake = FakeSoundDevice(x, rate=16000, speed=0.001)  # one block, then nothing for 20 s
    mic = Microphone(sd=fake, stall_seconds=0.2)
    mic.start()
    assert wait_until(lambda: fake.streams[0].blocks == 1)
    mic.poll()
    time.sleep(0.3)
    with pytest.raises(VoiceError, match="stopped delivering audio"):
        mic.poll()
    assert fake.streams[0].closed


def test_overflow_flags_are_counted():
    fake = FakeSoundDevice(np.zeros(16000, np.float32), rate=16000, overflow_blocks={2, 7})
    mic = Microphone(sd=fake)
    mic.start()
    audio = drain(mic, fake)
    assert mic.overflows == 2 and len(audio) == 16000


def test_slow_consumer_drops_and_counts():
    fake = FakeSoundDevice(np.ones(16000 * 2, np.float32), rate=16000)  # as fast as possible
    mic = Microphone(sd=fake, buffer_seconds=0.5)
    mic.start()
    assert wait_until(lambda: fake.streams[0].done.is_set())
    mic.stop()
    assert len(mic.read()) == 8000 and mic.dropped == 24000


def test_stop_is_idempotent_and_restart_works():
    x = np.zeros(16000, np.float32)
    fake = FakeSoundDevice(x, rate=16000)
    mic = Microphone(sd=fake)
    mic.start()
    mic.stop()
    mic.stop()
    mic.poll()  # a stop on purpose is not an error
    mic.start()
    assert len(fake.streams) == 2 and fake.streams[0].closed
    drain(mic, fake)
