"""Speech synthesis: real espeak-ng synthesis (the program, run synchronously; pyttsx3 with its completion check
for Windows and macOS), errors that name their cause, the narration track. What the Speaker makes of them (and its
fake output device) is test_tts.py's."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from app.voice import VoiceError, synth
from app.voice.audio import resample
from app.voice.synth import PYTTSX3_MISSING, engine_installed, synthesize, synthesize_track, voices

ROOT = Path(__file__).resolve().parents[3]


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


# ---------------------------------------------------------------------------------------------
# Synthesis


def test_synthesize_speaks_the_answer():
    text = "The red circle moves to the left."
    audio, rate = synthesize(text)
    assert audio.dtype == np.float32 and audio.ndim == 1 and rate == 22050
    assert np.abs(audio).max() <= 1.0
    seconds = audio.size / rate
    assert 0.04 <= seconds / len(text) <= 0.25, f"{seconds:.2f} s for {len(text)} characters"
    frames = audio[: audio.size // 441 * 441].reshape(-1, 441)  # 20 ms frames
    frame_rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    noise_floor = float(np.percentile(frame_rms, 5))
    assert rms(audio) > 0.02 and rms(audio) > 10 * noise_floor + 1e-4, (rms(audio), noise_floor)
    # Stable (espeak-ng's length varies a little between calls), and the rate is words per minute.
    assert abs(synthesize(text)[0].size - audio.size) < 0.04 * audio.size
    slow, fast = synthesize(text, rate=100)[0], synthesize(text, rate=350)[0]
    assert slow.size > audio.size > fast.size
    quiet = synthesize(text, volume=0.3)[0]
    assert rms(quiet) < 0.6 * rms(audio)
    assert synthesize("   ")[0].size == 0


@pytest.mark.espeak_only
def test_a_hung_espeak_ng_times_out(monkeypatch, tmp_path, fake_espeak):
    monkeypatch.setattr(synth, "ESPEAK", fake_espeak(tmp_path, "import time; time.sleep(30)"))
    monkeypatch.setattr(synth, "timeout_for", lambda text: 1.0)
    start = time.monotonic()
    with pytest.raises(VoiceError, match="espeak-ng did not finish within 1 s"):
        synthesize("Hello")
    assert time.monotonic() - start < 5


@pytest.mark.espeak_only
def test_voice_ids_from_pyttsx3_and_names_still_choose_the_voice():
    """Settings saved when pyttsx3 listed espeak-ng's voices (ids in lower case) keep working."""
    american = synthesize("Hello there, how are you today?", voice="gmw/en-US")[0].size
    assert abs(synthesize("Hello there, how are you today?", voice="gmw/en-us")[0].size - american) < 0.04 * american
    assert abs(synthesize("Hello there, how are you today?", voice="English (America)")[0].size - american) < (
        0.04 * american
    )
    assert ("gmw/en-US", "English (America)") in voices()


def test_text_that_looks_like_options_is_spoken():
    audio, rate = synthesize("-v xx --help")
    assert audio.size / rate > 0.5


# pyttsx3: the engine on Windows (SAPI5) and macOS (NSSpeechSynthesizer)


def test_pyttsx3_missing(monkeypatch):
    monkeypatch.setattr(synth, "_uses_espeak", lambda: False)
    monkeypatch.setitem(sys.modules, "pyttsx3", None)  # "import pyttsx3" raises ImportError
    assert not engine_installed()
    with pytest.raises(VoiceError) as err:
        synthesize("Hello")
    assert str(err.value) == PYTTSX3_MISSING


def test_a_system_engine_that_cannot_start_is_named(monkeypatch):
    pyttsx3 = pytest.importorskip("pyttsx3")

    def broken(*a, **k):
        raise RuntimeError("SAPI5 is not registered")

    monkeypatch.setattr(synth, "_uses_espeak", lambda: False)
    monkeypatch.setattr(pyttsx3, "init", broken)
    with pytest.raises(VoiceError) as err:
        synthesize("Hello")
    assert "could not start (RuntimeError: SAPI5 is not registered)" in str(err.value)


@pytest.mark.skipif(sys.platform != "linux", reason="pyttsx3's espeak driver stands in for SAPI5 / NSSpeech")
def test_pyttsx3_output_is_read_only_once_written_in_a_fresh_process(long_answer):
    """pyttsx3 2.99's espeak driver returns from runAndWait ~10 ms into asynchronous synthesis on the first
    synthesis of a process: the race the completion check is for (NSSpeechSynthesizer always writes
    asynchronously). A fresh process with a long first text must still get all of it."""
    code = (
        "import app.voice.synth as t; t._uses_espeak = lambda: False; "
        f"a, r = t.synthesize({long_answer!r}); print(a.size / r)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.split()[-1]) > 6.0  # the whole answer (~7.4 s), not a header or a first word


def wav_bytes(fmt: str, seconds: float = 0.5) -> bytes:
    buffer = io.BytesIO()
    tone = 0.3 * np.sin(np.arange(int(22050 * seconds)) * 0.1).astype(np.float32)
    soundfile.write(buffer, tone, 22050, format=fmt, subtype="PCM_16")
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["WAV", "AIFF"])
def test_a_file_being_written_is_read_only_once_whole(tmp_path, fmt):
    data = wav_bytes(fmt)
    path = tmp_path / "answer.wav"
    path.write_bytes(b"")  # as mkstemp leaves it

    def engine() -> None:  # writes the header and half the samples, pauses, then the rest
        time.sleep(0.1)
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            time.sleep(0.2)
            f.write(data[len(data) // 2 :])

    writer = threading.Thread(target=engine)
    start = time.monotonic()
    writer.start()
    synth._wait_for_complete_file(str(path), timeout=5)
    assert time.monotonic() - start >= 0.3 and path.stat().st_size == len(data)
    writer.join()
    audio, rate = synth._read_audio(str(path))
    assert rate == 22050 and audio.size == int(22050 * 0.5)


def test_an_unfinished_file_is_an_error_that_says_so(tmp_path):
    path = tmp_path / "answer.wav"
    path.write_bytes(wav_bytes("WAV")[:1000])  # the header counts more than is there
    with pytest.raises(VoiceError, match=r"left its audio file unfinished \(1000 bytes\) within 1 s"):
        synth._wait_for_complete_file(str(path), timeout=1)
    path.write_bytes(b"")
    with pytest.raises(VoiceError, match="wrote no audio within 1 s"):
        synth._wait_for_complete_file(str(path), timeout=1)


# ---------------------------------------------------------------------------------------------
# The narration track


def test_track_places_answers_at_their_times(synthesized):
    rate = 22050
    track = synthesize_track([(2.0, "Second."), (0.5, "First answer.")], duration_s=3.0)
    first, second = synthesized  # synthesised in stream order
    assert track.dtype == np.float32 and track.size == 3 * rate
    assert not track[: int(0.5 * rate)].any()  # silence before the first answer
    a = int(0.5 * rate)
    assert np.array_equal(track[a : a + first.size], first)
    b = 2 * rate
    assert np.array_equal(track[b : b + second.size], second)
    assert not track[a + first.size : b].any()
    assert rms(track[b : b + second.size]) > 0.02


def test_track_cuts_an_answer_at_the_next_and_at_the_end(synthesized, long_answer):
    rate, src = 16000, 22050
    track = synthesize_track([(0.2, long_answer), (1.0, "Cut."), (1.6, "Late answer that runs on.")], 2.0, rate=rate)
    long_audio = synthesized[0]
    assert track.size == 2 * rate
    assert not track[: int(0.2 * rate)].any()
    cut = int(1.0 * rate)
    # The long answer is heard up to the next one (resampled to 16 kHz), fading out over the last 5 ms.
    n = cut - int(0.2 * rate)
    expected = resample(long_audio, src, rate)[:n]  # the app's one resampler
    assert np.allclose(track[int(0.2 * rate) : cut - 80], expected[:-80], atol=1e-6)
    assert abs(track[cut - 1]) < 1e-3
    assert rms(track[cut : cut + int(0.2 * rate)]) > 0.01  # "Cut." starts on time
    assert rms(track[int(1.6 * rate) :]) > 0.01  # the last answer runs to the end of the stream
    assert synthesize_track([(5.0, "After the end.")], 1.0).size == 22050
    assert not synthesize_track([], 0.5).any()
