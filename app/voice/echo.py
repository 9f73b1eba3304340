"""Acoustic echo cancellation: the microphone minus the assistant's own voice, so the user can talk over a
spoken answer without headphones (full duplex).

Two halves meet here. The speaker thread writes every block it hands to the output device into an
:class:`EchoReference` (what the speaker plays, resampled to 16 kHz mono). The listening thread runs each
microphone read through an :class:`EchoCanceller`, which takes the reference 10 ms at a time and gives both to
WebRTC's audio processing module (AEC3, through the ``livekit`` SDK): ``process_reverse_stream`` for the far end
(the reference), then ``process_stream`` for the microphone, which comes back with the echo removed.

Alignment, on the monotonic clock: a block enters the reference at the instant the output stream accepts
it (it plays from then on, after the device's latency), and each microphone frame is paired with the reference
of the instant it was heard (from the reads: see :class:`EchoCanceller`). The echo of a block reaches the
microphone after the output latency and the air, so the reference always comes first, by roughly the output
latency (20-150 ms on ordinary devices); AEC3 estimates that delay itself and follows it when it drifts, which is
why none is measured here. Pairing by time rather than by "the next 10 ms written" keeps the two aligned when the
listening thread falls behind (a model loading, a busy CPU): the backlog it reads later still meets the
reference of its own instants (``keep_s`` of it are kept). The reference is resampled with the app's one resampler in soxr's quick mode,
which holds back one sample: the high-quality one holds back 5-40 ms, and a reference that arrives after its
microphone frame was processed is of no use.

``livekit`` is a large native library: it is imported when a canceller is built, never at import time, and a
failure to load it is a :class:`~app.voice.VoiceError` that says what to do (the caller falls back to muting the
microphone while an answer plays).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from app.voice import VoiceError
from app.voice.audio import RECOGNITION_RATE, Resampler

__all__ = ["FRAME", "LEARN_S", "SETTLE_S", "EchoCanceller", "EchoReference", "load_apm"]

#: Samples per frame the audio processing module takes at 16 kHz: exactly 10 ms.
FRAME = RECOGNITION_RATE // 100
#: Seconds of the speaker's sound AEC3 needs after a reset before its output is trusted (its first 0.5-1 s of
#: an answer can leak enough echo for the VAD, and bursts were seen up to 2 s; tests/app/voice/test_echo.py).
LEARN_S = 3.0
#: ... and before what it leaves of the echo is faint enough that a window scoring app.voice.input.HINT alone means
#: the user (leftover echo scored up to 0.16 half a second after LEARN_S).
SETTLE_S = LEARN_S + 1.5

UNAVAILABLE = (
    "Echo cancellation is unavailable: the WebRTC audio processing of the 'livekit' package could not be loaded "
    "({error}). Reinstall Streamo Live (or run: pip install livekit), or tick 'headphones' in Voice > Voice settings; "
    "until then the microphone is muted while an answer is spoken."
)


def load_apm(noise_suppression: bool = False, auto_gain_control: bool = False) -> Any:
    """A WebRTC audio processing module with echo cancellation and a high-pass filter (livekit's). Noise
    suppression and gain control are off by default: the VAD and Whisper are trained on unprocessed speech,
    and gain control would change the level the VAD's sensitivity was set against. VoiceError when livekit's
    native library cannot load."""
    try:
        from livekit import rtc

        return rtc.AudioProcessingModule(
            echo_cancellation=True,
            noise_suppression=noise_suppression,
            high_pass_filter=True,
            auto_gain_control=auto_gain_control,
        )
    except Exception as e:  # noqa: BLE001 - ImportError, OSError (the native library), the FFI failing to start
        raise VoiceError(UNAVAILABLE.format(error=f"{type(e).__name__}: {e}")) from e


class EchoReference:
    """What the speaker played, 16 kHz mono, placed on the monotonic clock: sample ``p`` is what the speaker
    handed to its device at ``p / rate`` seconds. Thread-safe: the speaker thread :meth:`write` s, the listening
    thread :meth:`take` s.

    A block written while the one before is still to play, or less than ``gap_s`` after, continues it (the
    device plays them back to back, whatever the jitter of the thread writing them); one written later (a new
    answer, or a writer that fell behind so the device played silence) starts where the clock is.
    ``keep_s`` of audio stays for a listening thread that fell behind (a model loading, a busy CPU)."""

    def __init__(self, rate: int = RECOGNITION_RATE, keep_s: float = 5.0, gap_s: float = 0.05) -> None:
        self.rate = int(rate)
        self.keep = max(FRAME, int(round(keep_s * self.rate)))
        self.gap = int(round(gap_s * self.rate))
        self._lock = threading.Lock()
        self._buf = np.zeros(0, dtype=np.float32)  # samples at positions _start .. _start + len
        self._start = 0
        self._cursor: int | None = None  # where the next block goes (None: the speaker was never heard)
        self._resampler: Any = None  # a soxr.ResampleStream from _rate_in
        self._rate_in = 0
        self.written = 0  # samples (at ``rate``) written since the start

    def position(self, t: float) -> int:
        """The sample position of monotonic instant ``t``."""
        return int(round(t * self.rate))

    def write(self, block: np.ndarray, rate: int, at: float | None = None) -> None:
        """The speaker handed ``block`` (mono float at ``rate``) to the output device at monotonic ``at`` (now);
        it plays from then on, so it is placed from ``at`` on."""
        x = np.ascontiguousarray(block, dtype=np.float32).reshape(-1)
        begin = self.position(time.monotonic() if at is None else at)
        with self._lock:
            fresh = self._cursor is None or self._cursor < begin - self.gap  # a new answer
            if int(rate) != self.rate:
                if self._resampler is None or self._rate_in != int(rate) or fresh:
                    # soxr's quick (cubic) filter: it holds back one sample where the high-quality one holds back
                    # 5-40 ms, and a reference must be there the moment its block is written (see the module's
                    # docstring). The canceller models the echo path, so the cubic's small error costs nothing.
                    self._resampler = Resampler(int(rate), self.rate, quality="QQ")
                    self._rate_in = int(rate)
                x = self._resampler.process(x)
            # Back to back with the block before (a writer a little late still found the device playing), unless
            # that one has played out ``gap`` ago: then the device played silence, and this plays from now.
            pos = begin if fresh else self._cursor
            assert pos is not None
            end_buf = self._start + len(self._buf)
            if pos - end_buf >= self.keep:  # long after the last answer: nothing of it is still needed
                self._buf, self._start = x.copy(), pos
            elif pos >= end_buf:  # silence between the answer before and this one
                self._buf = np.concatenate([self._buf, np.zeros(pos - end_buf, np.float32), x])
            else:  # the microphone has been processed past ``pos`` already: that part is of no use
                self._buf = np.concatenate([self._buf, x[end_buf - pos :]])
            self._cursor = pos + len(x)
            self.written += len(x)
            if len(self._buf) > self.keep:
                cut = len(self._buf) - self.keep
                self._buf, self._start = self._buf[cut:], self._start + cut

    def cut(self, at: float | None = None) -> None:
        """The device dropped what it had not yet played at monotonic ``at`` (now): an aborted stream (a barge-in,
        a hold, Stop). Nothing after ``at`` will be heard, so nothing after it is kept: the canceller would take an
        echo that never comes out of the microphone, which leaves the answer's own sound, inverted, in its output."""
        pos = self.position(time.monotonic() if at is None else at)
        with self._lock:
            if pos < self._start + len(self._buf):
                self._buf = self._buf[: max(0, pos - self._start)]
            if self._cursor is not None:
                self._cursor = min(self._cursor, pos)

    def take(self, start: int, n: int) -> np.ndarray:
        """The samples at positions ``start .. start + n`` (silence where the speaker wrote nothing); what lies
        before ``start + n`` is forgotten."""
        out = np.zeros(int(n), dtype=np.float32)
        with self._lock:
            a, b = max(start, self._start), min(start + n, self._start + len(self._buf))
            if b > a:
                out[a - start : b - start] = self._buf[a - self._start : b - self._start]
            forget = start + n
            if forget > self._start:
                cut = min(len(self._buf), forget - self._start)
                self._buf, self._start = self._buf[cut:], self._start + cut
                if not len(self._buf):
                    self._start = forget  # a block written later for these positions comes too late to use
        return out

    def clear(self) -> None:
        """Forget everything written."""
        with self._lock:
            self._buf, self._start, self._cursor = np.zeros(0, dtype=np.float32), 0, None


def _to_int16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1.0, 32767.0 / 32768.0) * 32768.0).round().astype("<i2").tobytes()


class EchoCanceller:
    """Removes the echo of ``reference`` from 16 kHz mono microphone audio.

    :meth:`process` takes each read of the microphone (blocks of any size) with the instant its newest sample
    was heard, and returns the cancelled audio of the whole 10 ms frames it has so far; the rest (under 10 ms)
    waits for the next call, so the output is the input's sample stream, late by less than a frame.

    Each microphone frame is paired with the reference the speaker wrote at the instant the frame was heard.
    That instant comes from the reads: microphone position ``m`` was heard at ``origin + m / rate``, where
    ``origin`` is the smallest ``heard_at - samples read so far / rate`` of the last ``window_s`` (a read comes
    after its audio, never before, so the smallest is the truest; a stalled thread's late reads do not move it,
    and the window lets it follow the device's clock drifting from the computer's). ``origin`` moves only when
    that changes by more than ``tolerance_s``: each move shifts the reference against the microphone, which the
    canceller must learn again.

    ``make_apm`` builds the audio processing module (:func:`load_apm` by default), at once (a missing livekit
    is a VoiceError here, not on the listening thread) and again on :meth:`reset`. Not thread-safe: one
    listening thread calls it."""

    def __init__(
        self,
        reference: EchoReference,
        make_apm: Callable[[], Any] = load_apm,
        rate: int = RECOGNITION_RATE,
        window_s: float = 10.0,
        tolerance_s: float = 0.015,
    ) -> None:
        if int(rate) != RECOGNITION_RATE or reference.rate != RECOGNITION_RATE:
            raise ValueError(f"echo cancellation runs at {RECOGNITION_RATE} Hz, not {rate} / {reference.rate}")
        self.reference = reference
        self._make_apm = make_apm
        self.rate = int(rate)
        self.window_s, self.tolerance_s = window_s, tolerance_s
        from livekit import rtc  # importable: the default make_apm just loaded it (or a test's did)

        self._frame = rtc.AudioFrame
        self.apm: Any = None
        self.reset()

    @property
    def pending(self) -> int:
        """Microphone samples waiting for a whole frame."""
        return len(self._left)

    def process(self, samples: np.ndarray, heard_at: float | None = None) -> np.ndarray:
        """The cancelled audio of the whole frames in (leftover + ``samples``): float32, a multiple of 10 ms.
        ``heard_at``: the monotonic instant the newest of ``samples`` was heard (now, by default)."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        self._read += len(x)
        now = time.monotonic() if heard_at is None else float(heard_at)
        self._origins.append((now, now - self._read / self.rate))
        while self._origins[0][0] < now - self.window_s:
            self._origins.popleft()
        least = min(o for _, o in self._origins)
        if self._origin is None or abs(least - self._origin) > self.tolerance_s:
            self._origin = least  # moved only for a real change: every move is a jump the canceller re-learns
        origin = self.reference.position(self._origin)
        if self._left.size:
            x = np.concatenate([self._left, x])
        n = len(x) // FRAME
        self._left = x[n * FRAME :].copy()
        out = np.empty(n * FRAME, dtype=np.float32)
        for i in range(n):
            far = self.reference.take(origin + self._done, FRAME)
            if far.any():
                self.far_frames += 1
            self.apm.process_reverse_stream(self._frame(_to_int16(far), self.rate, 1, FRAME))
            mic = self._frame(_to_int16(x[i * FRAME : (i + 1) * FRAME]), self.rate, 1, FRAME)
            self.apm.set_stream_delay_ms(0)  # AEC3 finds the delay itself; the module wants it set per frame
            self.apm.process_stream(mic)
            out[i * FRAME : (i + 1) * FRAME] = np.frombuffer(mic.data, dtype=np.int16) / np.float32(32768.0)
            self._done += FRAME
        return out

    def reset(self) -> None:
        """Start over (listening starts): a fresh module (its filter learnt another stream), no leftover, the
        microphone's positions from zero. The reference stays: it is on the clock, not on positions."""
        self.apm = self._make_apm()
        self._left = np.zeros(0, dtype=np.float32)
        self._read = 0  # microphone samples given to process()
        self._done = 0  # of which processed (whole frames)
        self._origins: deque[tuple[float, float]] = deque()  # (heard_at, the instant of position 0 it implies)
        self._origin: float | None = None
        self.far_frames = 0  # frames processed while the speaker played (a reference that was not silence)

    @property
    def learning(self) -> bool:
        """True until the canceller has heard ``LEARN_S`` of the speaker since :meth:`reset`: AEC3 is still
        finding the delay and the room, and echo leaks through (the caller mutes the microphone meanwhile)."""
        return self.far_frames * FRAME < LEARN_S * self.rate

    @property
    def settled(self) -> bool:
        """The canceller has heard ``SETTLE_S`` of the speaker since :meth:`reset`: what echo it leaves is faint."""
        return self.far_frames * FRAME >= SETTLE_S * self.rate
