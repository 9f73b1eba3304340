"""Voice activity: when someone is talking, cut into utterances.

:class:`SileroVad` gives a speech probability per 32 ms window (the model ships with the ``silero-vad``
package, so this works offline). :class:`Segmenter` turns a stream of 16 kHz audio into :class:`Utterance` s,
hands-free: speech of at least ``min_speech_ms`` followed by ``min_silence_ms`` of silence (the hangover)
ends an utterance, ``max_utterance_s`` cuts a long one, and ``pre_roll_ms`` of audio before the detected start
is kept so the first syllable is not clipped. :class:`PushToTalk` is the other way to talk: the audio between
a key press and its release. :func:`segment` cuts a whole recording (the ``voice segment FILE`` command).
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from app.voice import VoiceError
from app.voice.audio import RECOGNITION_RATE, Resampler, level_dbfs

__all__ = [
    "WINDOW",
    "PushToTalk",
    "Segmenter",
    "SileroVad",
    "SpeechProbability",
    "Utterance",
    "VadSettings",
    "segment",
]

#: Samples per VAD decision at 16 kHz (the only window the Silero model takes at that rate): 32 ms.
WINDOW = 512
#: Below ``threshold - HYSTERESIS`` counts as silence once speech has started; between the two nothing changes,
#: so a probability hovering around the threshold does not chop an utterance (Silero's own rule).
HYSTERESIS = 0.15

#: Silero hears the end of speech late: its probability takes 60-100 ms to fall through the hysteresis band after
#: the sound stops, and the next word's start up to 120 ms late. The level times both instead, per ``SUB``
#: samples (8 ms). A silence starts where the sound fell to within ``QUIET_DB`` of the quietest part of the window
#: Silero calls silent (at most ``BACKDATE_MS`` back), when the speech was ``CLEAR_DB`` louder than that; in a
#: noisier room the soft ends of words drown, and Silero's start stands. During a silence its level follows the
#: quietest part of each window, and a part ``RISE_DB`` over it (and over ``RISE_FLOOR_DBFS``) keeps the
#: utterance open while the level stays up, ``ONSET_WINDOWS`` windows at most, while Silero decides whether it is
#: the next word; a rise that lasts that long without Silero taking it for speech (the music getting louder) is
#: the silence's level from then on, so it holds the end once.
SUB = 128
QUIET_DB, CLEAR_DB, RISE_DB, RISE_FLOOR_DBFS = 6.0, 20.0, 6.0, -60.0
BACKDATE_MS, ONSET_WINDOWS = 250, 6


# --- the model ----------------------------------------------------------------------------------------------

_SESSION: Any = None
_SESSION_LOCK = threading.Lock()
#: Samples of the previous window the model sees in front of each new one (at 16 kHz).
CONTEXT = 64
_STATE_SHAPE = (2, 1, 128)  # the model's recurrent state: (layers, batch, units)


def _model_path() -> Path:
    """The ONNX model the ``silero-vad`` package ships, found without importing the package: its ``__init__``
    imports torch and its loader calls ``torch.set_num_threads(1)`` for the whole process."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the silero-vad package is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    return path


def _load_model() -> Any:
    """The Silero VAD network as an onnxruntime session, created once per process (2 MB, tens of ms).

    onnxruntime, not the TorchScript model: torch runs every op on its process-wide thread pool, which the
    video engine sizes and keeps busy, so under load the VAD fell behind real time (120 s of audio took 201 s
    to segment with 2 threads). This session computes on the calling thread alone (one intra-op thread, no
    inter-op pool), whatever torch does; one 32 ms window costs well under a millisecond."""
    global _SESSION
    with _SESSION_LOCK:
        if _SESSION is None:
            try:
                import onnxruntime as ort
            except ImportError as e:
                raise VoiceError(
                    f"Voice activity detection needs onnxruntime, which is not installed ({e}). Install it "
                    "(pip install onnxruntime); push-to-talk and typed questions still work."
                ) from None
            try:
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = 1
                opts.inter_op_num_threads = 1
                opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                opts.log_severity_level = 3  # errors only: its warnings say nothing a user can act on
                _SESSION = ort.InferenceSession(
                    str(_model_path()), sess_options=opts, providers=["CPUExecutionProvider"]
                )
            except Exception as e:  # noqa: BLE001 - a missing or broken package: one actionable message
                raise VoiceError(
                    f"The Silero voice activity model could not be loaded ({e}). Reinstall the silero-vad package "
                    "(pip install 'silero-vad>=5.1'); push-to-talk and typed questions still work."
                ) from None
        return _SESSION


class SpeechProbability(Protocol):
    """What :class:`Segmenter` needs from a voice activity detector (tests pass scripted ones)."""

    def probability(self, window: np.ndarray) -> float: ...
    def reset(self) -> None: ...


class SileroVad:
    """Speech probability per :data:`WINDOW` (512-sample, 16 kHz) window with the Silero VAD model.

    The model is recurrent: each window's probability depends on the windows before it (an RNN state and the
    last :data:`CONTEXT` samples). The network (an onnxruntime session, see :func:`_load_model`) is shared by
    the process and holds no state; each ``SileroVad`` owns its stream's state as two arrays it passes in and
    gets back, so streams never mix their histories and need no lock. :meth:`reset` starts a new stream."""

    rate = RECOGNITION_RATE
    window = WINDOW

    def __init__(self) -> None:
        self._session = _load_model()
        self._sr = np.array(self.rate, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        """Start a new stream: zero state, silence as the context."""
        self._state = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros((1, CONTEXT), dtype=np.float32)

    def warm_up(self) -> SileroVad:
        """Run one window through the network (onnxruntime allocates and plans on its first run: tens of ms)
        and start afresh. Call it when listening is armed, so the first word does not pay for it."""
        self.probability(np.zeros(WINDOW, dtype=np.float32))
        self.reset()
        return self

    def probability(self, window: np.ndarray) -> float:
        """The probability (0..1) that this window, following the ones before it, is speech."""
        x = np.asarray(window, dtype=np.float32).reshape(1, -1)
        if x.shape[1] != WINDOW:
            raise ValueError(f"the Silero VAD takes windows of {WINDOW} samples at 16 kHz, not {x.shape[1]}")
        # input: [1, CONTEXT + WINDOW]; state: [2, 1, 128]; output: [1, 1]
        frame = np.concatenate([self._context, x], axis=1)
        out, self._state = self._session.run(None, {"input": frame, "state": self._state, "sr": self._sr})
        self._context = frame[:, -CONTEXT:]
        return float(out[0, 0])

    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        """Probabilities of consecutive windows of 16 kHz ``samples`` (a partial last window is zero padded)."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        n = -(-len(x) // WINDOW)
        padded = np.zeros(n * WINDOW, dtype=np.float32)
        padded[: len(x)] = x
        return np.array([self.probability(padded[i * WINDOW : (i + 1) * WINDOW]) for i in range(n)], np.float32)


# --- utterances ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VadSettings:
    """How hands-free voice input decides what is an utterance."""

    threshold: float = 0.5  # speech probability at which speech starts
    min_speech_ms: int = 250  # shorter bursts (a cough, a click) are ignored
    min_silence_ms: int = 540  # the hangover: silence this long (timed by the level: see SUB) ends an utterance
    # ... unless less than fragment_s of speech came before the silence: then fragment_silence_ms. A pause after
    # a few words ("what is the person ... holding?") is rarely the end of a question; a whole question keeps the
    # short hangover, so it is answered sooner. 540 ms bridges a 0.5 s pause between words with 30 ms to spare
    # and takes a question about 550 ms after its sound ends (bench_voice --pauses).
    fragment_s: float = 1.5
    fragment_silence_ms: int = 800
    max_utterance_s: float = 15.0  # longer speech is cut (at a pause when there is one)
    pre_roll_ms: int = 300  # audio kept from before the detected start, so the first syllable is whole
    post_roll_ms: int = 200  # audio kept after the detected end (at most min_silence_ms), for the last syllable

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, not {self.threshold}")
        durations = (self.min_speech_ms, self.min_silence_ms, self.fragment_silence_ms, self.pre_roll_ms)
        if min(*durations, self.post_roll_ms) < 0:
            raise ValueError("VAD durations must not be negative")
        if self.max_utterance_s <= (self.min_speech_ms / 1000.0):
            raise ValueError(f"max_utterance_s ({self.max_utterance_s}) must exceed min_speech_ms")


@dataclass(frozen=True)
class Utterance:
    """One stretch of speech. ``start``/``end``: where the speech was detected, in seconds of the stream;
    ``samples``: the audio for recognition (mono float32 at ``rate``), which begins at ``audio_start`` (the
    pre-roll before ``start``) and runs a little past ``end``."""

    start: float
    end: float
    samples: np.ndarray = field(repr=False)
    rate: int = RECOGNITION_RATE
    audio_start: float = 0.0

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def audio_end(self) -> float:
        return self.audio_start + len(self.samples) / self.rate


class Segmenter:
    """Streaming hands-free segmentation: :meth:`push` audio in blocks of any size, get the utterances that
    ended. ``rate``: the rate of the pushed audio (resampled to 16 kHz for the VAD when it differs; the
    utterances are 16 kHz). ``vad``: a :class:`SpeechProbability` (default: :class:`SileroVad`, created on
    first use). Not thread-safe: one consumer thread pushes."""

    def __init__(self, settings: VadSettings | None = None, vad: SpeechProbability | None = None, rate: int = 16000):
        self.settings = settings or VadSettings()
        self._vad = vad
        self.rate = int(rate)
        self._resampler = Resampler(self.rate, RECOGNITION_RATE) if self.rate != RECOGNITION_RATE else None
        self.reset()

    @property
    def vad(self) -> SpeechProbability:
        if self._vad is None:
            self._vad = SileroVad()
        return self._vad

    def reset(self) -> None:
        """Forget the stream (audio, timing and the model's state)."""
        if self._vad is not None:
            self._vad.reset()
        if self._resampler is not None:
            self._resampler.reset()
        self._pending = np.zeros(0, dtype=np.float32)  # < WINDOW samples waiting for a full window
        self._pos = 0  # samples (16 kHz) already decided on
        self._n_in = 0  # samples pushed (at ``rate``)
        self._offset = 0.0  # stream seconds of sample 0
        self._chunks: list[np.ndarray] = []  # recent audio, starting at sample _chunks_start
        self._chunks_start = 0
        self._speaking = False
        self._confirmed = False
        self._seg_start = 0  # first speech sample of the utterance in progress
        self._audio_from = 0  # where its audio begins (the pre-roll, or a cut)
        self._silence_since: int | None = None  # where the current run of silence began
        self._pause: tuple[int, int] | None = None  # the latest pause inside the utterance (for a clean cut)
        self._speech_db: list[float] = []  # the level of each window of the utterance Silero took for speech
        self._quiet_db = 0.0  # the level of the current silence
        self._rising_at: int | None = None  # where the level rose in the current silence (maybe the next word)
        self.peak = 0.0  # the highest speech probability of the windows the latest push() decided

    # what an indicator shows -------------------------------------------------------------------------------
    @property
    def in_speech(self) -> bool:
        """Someone is talking: an utterance has lasted at least ``min_speech_ms`` and has not ended."""
        return self._speaking and self._confirmed

    @property
    def speech_started_at(self) -> float | None:
        """Stream seconds where the utterance in progress began (when :attr:`in_speech`)."""
        return self._time(self._seg_start) if self.in_speech else None

    @property
    def silence_seconds(self) -> float:
        """How long the utterance in progress has been silent (0 while talking or outside speech)."""
        if not self.in_speech or self._silence_since is None:
            return 0.0
        return (self._pos - self._silence_since) / RECOGNITION_RATE

    def snapshot(self) -> Utterance | None:
        """The utterance in progress so far (None outside confirmed speech), for a partial transcript or for
        recognising it during the hangover. In a silence its audio stops where ending there would stop it (the
        post-roll), so when the speech does end there the final utterance holds exactly the same samples."""
        if not self.in_speech:
            return None
        if self._silence_since is None:
            return self._utterance(self._pos, self._pos)
        post = min(self._ms(self.settings.post_roll_ms), self._ms(self.settings.min_silence_ms))
        return self._utterance(self._silence_since, self._silence_since + post)

    # feeding -----------------------------------------------------------------------------------------------
    def push(self, samples: np.ndarray, t0: float | None = None) -> list[Utterance]:
        """Feed the next audio (mono float at ``rate``); returns the utterances that ended in it. ``t0``: the
        stream time of ``samples[0]`` when the caller knows it (after a gap, or to start the clock at a
        stream second); otherwise blocks are taken as contiguous, from time 0."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if t0 is not None:
            # Sample j of the pushed stream lies at offset + j / rate (the resampler keeps that alignment).
            self._offset = float(t0) - self._n_in / self.rate
        self._n_in += len(x)
        if self._resampler is not None:
            x = self._resampler.process(x)
        self.peak = 0.0
        return self._windows(x)

    def flush(self) -> list[Utterance]:
        """The stream ended: end the utterance in progress (if it is long enough) and start over."""
        x = self._resampler.flush() if self._resampler is not None else np.zeros(0, dtype=np.float32)
        out = self._windows(x)
        real_end = self._pos + self._pending.size
        if self._pending.size:
            window = np.zeros(WINDOW, dtype=np.float32)
            window[: self._pending.size] = self._pending
            self._pending = np.zeros(0, dtype=np.float32)
            out += self._decide(window)
        if self._speaking:
            end = self._silence_since if self._silence_since is not None else min(self._pos, real_end)
            u = self._finish(end, audio_to=min(end + self._ms(self.settings.post_roll_ms), real_end))
            if u is not None:
                out.append(u)
        clock = self._offset + self._n_in / self.rate
        self.reset()
        self._offset = clock  # audio pushed after a flush continues the clock
        return out

    # internals ---------------------------------------------------------------------------------------------
    def _ms(self, ms: float) -> int:
        return int(round(ms * RECOGNITION_RATE / 1000.0))

    def _time(self, sample: int) -> float:
        return self._offset + sample / RECOGNITION_RATE

    def _windows(self, x: np.ndarray) -> list[Utterance]:
        if self._pending.size:
            x = np.concatenate([self._pending, x])
        n = len(x) // WINDOW
        self._pending = x[n * WINDOW :].copy()
        out: list[Utterance] = []
        for i in range(n):
            out += self._decide(x[i * WINDOW : (i + 1) * WINDOW])
        if self._speaking and self._silence_since is not None and self._rising_at is None and self._pending.size:
            # The hangover ends inside the audio waiting for its window: end there when that audio stays at the
            # silence's level, rather than up to a window later.
            due = self._silence_since + self._hangover() - self._pos
            if 0 < due <= self._pending.size and max(_sub_db(self._pending[:due])) < self._rise_db():
                out += self._end_silence()
        return out

    def _decide(self, window: np.ndarray) -> list[Utterance]:
        """One VAD window: update the state machine; returns an utterance that ended here, if any."""
        s = self.settings
        start = self._pos
        end = start + WINDOW
        self._chunks.append(window.copy())
        self._pos = end
        p = self.vad.probability(window)
        self.peak = max(self.peak, float(p))
        speech = p >= s.threshold
        silence = p < max(s.threshold - HYSTERESIS, 0.01)
        out: list[Utterance] = []
        if not self._speaking:
            if speech:
                self._speaking, self._seg_start, self._silence_since, self._pause = True, start, None, None
                self._audio_from = max(self._chunks_start, start - self._ms(s.pre_roll_ms))
                self._confirmed = WINDOW >= self._ms(s.min_speech_ms)
                self._speech_db = [level_dbfs(window)]
            else:
                self._trim(end - self._ms(s.pre_roll_ms))
            return out
        if speech:
            if self._silence_since is not None and start - self._silence_since >= self._ms(100):
                self._pause = (self._silence_since, start)  # a breath between phrases: a good place to cut
            self._silence_since, self._rising_at = None, None
            self._speech_db.append(level_dbfs(window))
            if end - self._seg_start >= self._ms(s.min_speech_ms):
                self._confirmed = True
        elif silence and self._silence_since is None:
            self._silence_since = self._silence_start(start, window)
        elif self._silence_since is not None:
            self._watch_level(start, window)
        if (
            self._silence_since is not None
            and end - self._silence_since >= self._hangover()
            and self._rising_at is None
        ):
            out += self._end_silence()
        elif end - self._seg_start >= self._ms(s.max_utterance_s * 1000.0):
            out += self._cut(end)
        return out

    def _end_silence(self) -> list[Utterance]:
        """The hangover is over: the utterance ends where its silence began."""
        s = self.settings
        post = min(self._ms(s.post_roll_ms), self._ms(s.min_silence_ms))
        u = self._finish(self._silence_since, audio_to=self._silence_since + post)
        self._trim(self._pos - self._ms(s.pre_roll_ms))
        return [u] if u is not None else []

    def _rise_db(self) -> float:
        """A level this high in a silence may be the next word."""
        return max(self._quiet_db + RISE_DB, RISE_FLOOR_DBFS)

    def _silence_start(self, start: int, window: np.ndarray) -> int:
        """Silero calls the window at ``start`` silent: where the silence began, by the level (see ``SUB``)."""
        levels = _sub_db(window)
        self._quiet_db, self._rising_at = min(levels), None
        if not self._speech_db or float(np.median(self._speech_db)) < self._quiet_db + CLEAR_DB:
            return start  # no clear drop to time it by (noise as loud as the speech): Silero's start
        loud = [i for i, v in enumerate(levels) if v > self._quiet_db + QUIET_DB]
        if loud:  # the sound stops inside this window
            return start + (loud[-1] + 1) * SUB
        a = max(self._seg_start, self._chunks_start, start - self._ms(BACKDATE_MS))
        recent, first = [], self._pos  # the latest chunks, back to a (not the whole utterance's audio)
        for chunk in reversed(self._chunks):
            if first <= a:
                break
            first -= len(chunk)
            recent.append(chunk)
        audio = np.concatenate(recent[::-1])[a - first : start - first]
        b = start
        while b - SUB >= a and level_dbfs(audio[b - SUB - a : b - a]) <= self._quiet_db + QUIET_DB:
            b -= SUB
        return b

    def _watch_level(self, start: int, window: np.ndarray) -> None:
        """A window of the current silence: its quietest part lowers the silence's level; a rise may be the next
        word (it lasts while the level stays up, ``ONSET_WINDOWS`` at most); a rise that lasted that long without
        Silero taking it for speech sets the silence's level."""
        levels = _sub_db(window)
        if max(levels) < self._rise_db():
            self._rising_at, self._quiet_db = None, min(self._quiet_db, min(levels))
        elif self._rising_at is None:
            self._rising_at = start
        elif start + WINDOW - self._rising_at >= ONSET_WINDOWS * WINDOW:
            self._rising_at, self._quiet_db = None, min(levels)

    def _cut(self, end: int) -> list[Utterance]:
        """The utterance reached max_utterance_s: end it (at its latest pause when that is past halfway) and
        go on with the speech that follows as a new utterance (its audio starts where this one's stops)."""
        half = self._ms(self.settings.max_utterance_s * 500.0)
        if self._silence_since is not None:  # already in a (short) silence: end there, like a hangover
            u = self._finish(self._silence_since, audio_to=min(end, self._silence_since + self._ms(200)))
            self._trim(end - self._ms(self.settings.pre_roll_ms))
            return [u] if u is not None else []
        if self._pause is not None and self._pause[0] - self._seg_start >= half:
            stop, resume = self._pause
            split = (stop + resume) // 2
        else:
            stop = resume = split = end
        self._confirmed = True  # the speech so far counts, however short its last piece
        u = self._finish(stop, audio_to=split)
        self._speaking, self._confirmed = True, True
        self._seg_start, self._audio_from, self._silence_since, self._pause = resume, split, None, None
        self._trim(split)
        return [u] if u is not None else []

    def _finish(self, end: int, audio_to: int) -> Utterance | None:
        """End the utterance in progress at sample ``end``; None when it was too short to be speech."""
        self._speaking = False
        confirmed, self._confirmed = self._confirmed, False
        if not confirmed and end - self._seg_start < self._ms(self.settings.min_speech_ms):
            return None
        return self._utterance(end, audio_to)

    def _hangover(self) -> int:
        """Samples of silence that end the utterance in progress: longer after a fragment (see VadSettings)."""
        s = self.settings
        spoken = (self._silence_since if self._silence_since is not None else self._pos) - self._seg_start
        if spoken < self._ms(s.fragment_s * 1000.0):
            return self._ms(max(s.min_silence_ms, s.fragment_silence_ms))
        return self._ms(s.min_silence_ms)

    def _utterance(self, end: int, audio_to: int) -> Utterance:
        """The utterance in progress, speech ending at ``end`` and its audio at ``audio_to`` (state unchanged)."""
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.float32)
        a = max(self._audio_from, self._chunks_start)
        b = max(a, min(audio_to, self._chunks_start + len(audio)))
        samples = audio[a - self._chunks_start : b - self._chunks_start].copy()
        return Utterance(self._time(self._seg_start), self._time(end), samples, RECOGNITION_RATE, self._time(a))

    def _trim(self, keep_from: int) -> None:
        """Drop whole chunks of audio before ``keep_from`` (which callers keep at or before what the utterance
        in progress, or the next one's pre-roll, needs)."""
        while self._chunks and self._chunks_start + len(self._chunks[0]) <= keep_from:
            self._chunks_start += len(self._chunks.pop(0))


def _sub_db(window: np.ndarray) -> list[float]:
    """The level of each ``SUB`` samples of a window (the last part may be shorter)."""
    return [level_dbfs(window[i : i + SUB]) for i in range(0, len(window), SUB)]


def segment(
    samples: np.ndarray | Iterable[np.ndarray],
    rate: int,
    settings: VadSettings | None = None,
    vad: SpeechProbability | None = None,
) -> list[Utterance]:
    """The utterances of a whole recording at ``rate``; times are seconds into it. ``samples``: the recording as
    one array, or as consecutive blocks (``open_audio(path).blocks()``), which keeps an hour-long file out of
    memory: the blocks go through the same streaming resampler and segmenter as the microphone's audio."""
    blocks = [samples] if isinstance(samples, np.ndarray) else samples
    seg = Segmenter(settings, vad=vad, rate=rate)
    out: list[Utterance] = []
    for block in blocks:
        out += seg.push(block)
    return out + seg.flush()


# --- push-to-talk -------------------------------------------------------------------------------------------


class PushToTalk:
    """The audio between a key press and its release, with ``pre_roll_ms`` from before the press (people start
    talking as they press). :meth:`push` the microphone's audio all the time; times are stream seconds of that
    audio (:attr:`now`: the end of what was pushed). A press shorter than ``min_ms`` is taken as a slip and
    gives None; audio past ``max_s`` after the press is not kept (a stuck key must not fill memory)."""

    def __init__(self, rate: int = 16000, pre_roll_ms: int = 300, min_ms: int = 300, max_s: float = 60.0) -> None:
        self.rate = int(rate)
        self.pre_roll_ms, self.min_ms, self.max_s = pre_roll_ms, min_ms, max_s
        self._chunks: list[np.ndarray] = []  # kept audio, contiguous from sample _chunks_start
        self._chunks_start = 0
        self._kept = 0  # samples in _chunks
        self._n = 0  # samples pushed
        self._press: float | None = None

    @property
    def now(self) -> float:
        return self._n / self.rate

    @property
    def pressed(self) -> bool:
        return self._press is not None

    def push(self, samples: np.ndarray) -> None:
        """The next block of microphone audio (mono float at ``rate``)."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        start = self._n
        self._n += len(x)
        if self._press is not None:
            x = x[: max(0, int(round((self._press + self.max_s) * self.rate)) - start)]
        elif self._chunks_start + self._kept != start:
            # Audio past max_s of the last press was left out: the store starts over here, contiguous again.
            self._chunks, self._chunks_start, self._kept = [], start, 0
        if len(x):
            self._chunks.append(x.copy())
            self._kept += len(x)
        if self._press is None:
            # Idle: keep the pre-roll plus a second of slack for a press stamped slightly in the past.
            keep_from = self._n - int((self.pre_roll_ms / 1000.0 + 1.0) * self.rate)
            while self._chunks and self._chunks_start + len(self._chunks[0]) <= keep_from:
                first = self._chunks.pop(0)
                self._chunks_start += len(first)
                self._kept -= len(first)

    def press(self, t: float | None = None) -> None:
        """The key went down at stream time ``t`` (default: :attr:`now`). A second press is ignored."""
        if self._press is None:
            self._press = self.now if t is None else float(t)

    def release(self, t: float | None = None) -> Utterance | None:
        """The key came up at ``t`` (default: :attr:`now`): the utterance, or None for no press or one shorter
        than ``min_ms``."""
        press, self._press = self._press, None
        if press is None:
            return None
        end = self.now if t is None else float(t)
        if (end - press) * 1000.0 < self.min_ms:
            return None
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.float32)
        a = max(self._chunks_start, int(round((press - self.pre_roll_ms / 1000.0) * self.rate)))
        b = max(a, min(int(round(end * self.rate)), self._chunks_start + len(audio)))
        samples = audio[a - self._chunks_start : b - self._chunks_start].copy()
        return Utterance(press, end, samples, self.rate, a / self.rate)
