"""Fixtures of the voice tests: a spoken question synthesised once with espeak-ng, recordings
built from it ("1.5 s silence + speech + 2 s silence" over faint noise) with the true speech span known, an
energy-based stand-in for the VAD model, and a check that no fake audio thread outlives its test. For the
synthesis and playback tests (test_synth.py, test_tts.py): a long answer, every clip synthesised, a stand-in
espeak-ng program, and the ``espeak_only`` mark."""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from app.voice.audio import level_dbfs, resample

QUESTION = "What is the person holding in their left hand?"
LEAD_S, TAIL_S = 1.5, 2.0
NOISE_DBFS = -50.0


@dataclass(frozen=True)
class Speech:
    """The synthesised question, trimmed to where its energy is (so its length is the speech's length)."""

    samples: np.ndarray
    rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


@dataclass(frozen=True)
class Recording:
    samples: np.ndarray
    rate: int
    speech_start: float  # where the speech was placed, seconds
    speech_end: float


def active_span(x: np.ndarray, rate: int, floor_db: float = -40.0) -> tuple[int, int]:
    """First and one-past-last sample of the 10 ms frames louder than ``floor_db``."""
    hop = rate // 100
    loud = [i for i in range(0, len(x) - hop + 1, hop) if level_dbfs(x[i : i + hop]) > floor_db]
    assert loud, "the synthesised speech is silent"
    return loud[0], loud[-1] + hop


@pytest.fixture(scope="session")
def speech() -> Speech:
    """The question spoken by espeak-ng (through the app's synthesis), trimmed to its voiced span. Skips
    only where no speech engine is installed at all (CI installs espeak-ng); an engine that is there
    but fails is a failure."""
    from app.voice.synth import ENGINE_MISSING, engine_installed, synthesize

    if not engine_installed():
        pytest.skip(ENGINE_MISSING)
    x, rate = synthesize(QUESTION)
    assert len(x) >= rate // 10, f"the speech engine wrote {len(x)} samples for '{QUESTION}'"
    a, b = active_span(x, rate)
    return Speech(x[a:b].copy(), rate)


def build_recording(parts: list[np.ndarray | float], rate: int, seed: int = 0) -> np.ndarray:
    """Concatenate audio arrays and silences (floats: seconds) at ``rate``, over -50 dBFS white noise."""
    pieces = [np.zeros(int(round(p * rate)), np.float32) if isinstance(p, float) else p for p in parts]
    x = np.concatenate(pieces).astype(np.float32)
    noise = np.random.default_rng(seed).standard_normal(len(x)) * 10.0 ** (NOISE_DBFS / 20.0)
    return (x + noise).astype(np.float32)


@pytest.fixture(scope="session")
def compose():
    """:func:`build_recording` for the tests (test modules must not import a conftest: with several conftest.py
    files on sys.path, ``import conftest`` may find another folder's)."""
    return build_recording


@pytest.fixture(scope="session")
def recording(speech):
    """``recording(rate)``: "1.5 s silence + speech + 2 s silence" over faint noise at ``rate`` (cached)."""
    cache: dict[int, Recording] = {}

    def make(rate: int) -> Recording:
        if rate not in cache:
            s = resample(speech.samples, speech.rate, rate)
            x = build_recording([LEAD_S, s, TAIL_S], rate)
            cache[rate] = Recording(x, rate, LEAD_S, LEAD_S + len(s) / rate)
        return cache[rate]

    return make


class EnergyVad:
    """A deterministic stand-in for the Silero model: a window is speech (1.0) when louder than ``floor_db``."""

    def __init__(self, floor_db: float = -30.0) -> None:
        self.floor_db = floor_db
        self.windows = 0
        self.resets = 0

    def probability(self, window: np.ndarray) -> float:
        self.windows += 1
        return 1.0 if level_dbfs(window) > self.floor_db else 0.0

    def reset(self) -> None:
        self.resets += 1


@pytest.fixture
def energy_vad() -> EnergyVad:
    return EnergyVad()


@pytest.fixture(autouse=True)
def no_leftover_audio_threads():
    """Every fake stream's feeding thread must have ended once its microphone stopped."""
    yield
    left = [t for t in threading.enumerate() if t.name == "fake-audio"]
    for t in left:
        t.join(2.0)
    assert not [t.name for t in left if t.is_alive()]


# ---------------------------------------------------------------------------------------------
# Synthesis and playback (test_synth.py, test_tts.py)


def pytest_configure(config):
    config.addinivalue_line("markers", "espeak_only: espeak-ng is the engine (Linux); skipped elsewhere")


def pytest_runtest_setup(item):
    from app.voice import synth

    if item.get_closest_marker("espeak_only") is not None and not synth._uses_espeak():
        pytest.skip("espeak-ng is the engine on Linux only")


@pytest.fixture(scope="session")
def long_answer() -> str:
    """Three sentences, several seconds spoken: long enough to stop, hold or cut while it plays."""
    return (
        "A red circle appears on the left side of the screen. It moves slowly to the right. "
        "Then a blue square enters from the top and stays in the middle for a while."
    )


@pytest.fixture
def synthesized(monkeypatch) -> list[np.ndarray]:
    """Every clip the engine thread synthesises, in order. espeak-ng's output varies by a few samples from
    one call to the next, so playback is compared with what was synthesised for it, not with a second run."""
    from app.voice import synth

    clips: list[np.ndarray] = []
    real = synth._synthesize_now

    def recording(*args):
        audio, rate = real(*args)
        clips.append(audio)
        return audio, rate

    monkeypatch.setattr(synth, "_synthesize_now", recording)
    return clips


def make_fake_espeak(folder: Path, code: str) -> str:
    """A stand-in ``espeak-ng`` program: Python ``code`` with ``out`` (its ``-w`` file) and ``sys``/``wave``."""
    program = folder / "espeak-ng"
    program.write_text(f"#!{sys.executable}\nimport sys, wave\nout = sys.argv[sys.argv.index('-w') + 1]\n{code}\n")
    program.chmod(0o755)
    return str(program)


@pytest.fixture(scope="session")
def fake_espeak():
    """:func:`make_fake_espeak` for the tests (not imported: see :func:`compose`)."""
    return make_fake_espeak
