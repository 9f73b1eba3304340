"""The microphone: a PortAudio input stream (through an injected ``sounddevice`` module) whose callback only
copies into a preallocated :class:`RingBuffer`; the consumer reads 16 kHz mono float32 from it, resampled by
:class:`Resampler` when the device cannot record at 16 kHz, and a level for a meter.

Why the callback does so little: it runs on PortAudio's real-time thread, and anything that can take long there
(allocating, taking a contended lock, logging, resampling) makes the device drop audio. All the work happens
in :meth:`Microphone.read`, on the consumer's thread.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import soxr

from app.voice import VoiceError

__all__ = [
    "RECOGNITION_RATE",
    "InputDevice",
    "Microphone",
    "Resampler",
    "RingBuffer",
    "default_input",
    "level_dbfs",
    "list_input_devices",
    "meter_value",
    "resample",
]

#: What the VAD and speech recognizers take: 16 kHz mono.
RECOGNITION_RATE = 16000
#: level_dbfs of silence (instead of -inf, which meters and JSON handle badly).
SILENCE_DBFS = -100.0

_NO_MICROPHONE = (
    "No microphone found. Connect one, or choose a device in Voice > Voice settings; typed questions still work."
)


# --- resampling ---------------------------------------------------------------------------------------------


class Resampler:
    """Streaming band-limited resampling (libsoxr's "HQ" filter, through ``soxr.ResampleStream``): the one
    resampler of the app, used block by block by the microphone and the segmenter, and whole by :func:`resample`.

    soxr rather than a filter of our own: it is 14-72x cheaper than the numpy windowed-sinc it replaced (measured
    on 60 s at 48/44.1 kHz -> 16 kHz) with a steeper, better-stopped low-pass, so 44.1/48 kHz audio resampled to
    16 kHz has no audible aliasing. The output is aligned (output sample ``n`` is the input at ``n / to_rate``)
    and, fed in blocks of any size, the same as :func:`resample` on the whole signal. :meth:`flush` returns the
    tail once the input has ended; the total is ``round(n_in * to_rate / from_rate)`` samples."""

    def __init__(self, from_rate: int, to_rate: int, quality: str = "HQ") -> None:
        """``quality``: soxr's "HQ" (the default) or "QQ", the quick cubic filter that holds back one sample
        rather than 5-40 ms, for a stream that must keep up sample for sample (the echo reference)."""
        if from_rate <= 0 or to_rate <= 0:
            raise ValueError(f"sample rates must be positive, not {from_rate} -> {to_rate}")
        self.from_rate, self.to_rate = int(from_rate), int(to_rate)
        self._stream = (
            None
            if self.from_rate == self.to_rate
            else soxr.ResampleStream(self.from_rate, self.to_rate, 1, "float32", quality=quality)
        )

    def reset(self) -> None:
        """Forget the input so far (a new stream starts)."""
        if self._stream is not None:
            self._stream.clear()

    def process(self, block: np.ndarray) -> np.ndarray:
        """Resample the next block of input; returns the output samples that are complete so far (the filter
        holds back a few milliseconds until the input after them has arrived)."""
        x = np.ascontiguousarray(block, dtype=np.float32).reshape(-1)
        if self._stream is None:
            return x.copy()
        return self._stream.resample_chunk(x)

    def flush(self) -> np.ndarray:
        """The outputs still owed once the input has ended (the input counts as silence past its end). The
        resampler then starts over."""
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        out = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        self._stream.clear()
        return out


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """``samples`` (mono) resampled from ``from_rate`` to ``to_rate`` with the same filter as :class:`Resampler`;
    float32, ``round(len * to_rate / from_rate)`` samples; a copy when the rates match."""
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, not {from_rate} -> {to_rate}")
    x = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
    if int(from_rate) == int(to_rate):
        return x.copy()
    return soxr.resample(x, int(from_rate), int(to_rate))


# --- the ring buffer between the audio callback and the consumer --------------------------------------------


class RingBuffer:
    """A bounded single-producer single-consumer float32 FIFO whose :meth:`write` is safe in an audio callback.

    Lock-free: only the producer advances ``_written`` and only the consumer advances ``_read``, each after
    copying the samples, so neither thread ever waits for the other (under CPython's GIL an int attribute store
    is atomic). :meth:`write` allocates no buffers (``np.copyto`` into slices of the preallocated array); when
    the consumer falls behind and the buffer is full, the newest samples that do not fit are dropped and
    counted in :attr:`dropped`: the oldest unread audio is kept intact for the consumer."""

    def __init__(self, capacity_samples: int) -> None:
        if capacity_samples <= 0:
            raise ValueError(f"capacity must be positive, not {capacity_samples}")
        self.capacity = int(capacity_samples)
        self._buf = np.zeros(self.capacity, dtype=np.float32)
        self._written = 0  # samples ever stored (producer's counter)
        self._read = 0  # samples ever read (consumer's counter)
        self.dropped = 0  # samples that arrived while full (producer's counter)

    # producer side (the audio callback) ------------------------------------------------------------------
    def write(self, block: np.ndarray) -> int:
        """Store as much of the 1-D ``block`` as fits; returns how many samples were stored."""
        n = len(block)
        written = self._written
        free = self.capacity - (written - self._read)
        if n > free:
            self.dropped += n - free
            n = free
        if n <= 0:
            return 0
        start = written % self.capacity
        first = min(n, self.capacity - start)
        np.copyto(self._buf[start : start + first], block[:first])
        if first < n:
            np.copyto(self._buf[: n - first], block[first:n])
        self._written = written + n  # publish only after the copy: the consumer never sees unwritten samples
        return n

    # consumer side ---------------------------------------------------------------------------------------
    @property
    def available(self) -> int:
        """Samples written and not yet read."""
        return self._written - self._read

    @property
    def total_written(self) -> int:
        """Samples ever stored (grows while audio arrives; the microphone's stall check watches it)."""
        return self._written

    def read(self, max_samples: int | None = None) -> np.ndarray:
        """Copy out (and consume) up to ``max_samples`` of the oldest unread samples (all of them by default)."""
        read = self._read
        n = self._written - read
        if max_samples is not None:
            n = max(0, min(n, int(max_samples)))
        out = np.empty(n, dtype=np.float32)
        start = read % self.capacity
        first = min(n, self.capacity - start)
        out[:first] = self._buf[start : start + first]
        out[first:] = self._buf[: n - first]
        self._read = read + n  # free the space only after copying it out
        return out

    def clear(self) -> None:
        """Forget the unread samples (consumer side)."""
        self._read = self._written


# --- levels -------------------------------------------------------------------------------------------------


def level_dbfs(samples: np.ndarray) -> float:
    """RMS level in dB relative to full scale (a full-scale sine is about -3 dBFS); silence or no samples give
    ``SILENCE_DBFS`` (-100) rather than -inf."""
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    if len(x) == 0:
        return SILENCE_DBFS
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    if rms <= 10.0 ** (SILENCE_DBFS / 20.0):
        return SILENCE_DBFS
    return max(SILENCE_DBFS, 20.0 * math.log10(rms))


def meter_value(dbfs: float, floor_db: float = -60.0) -> float:
    """A 0..1 meter position for a level: ``floor_db`` (quiet room) and below is 0, 0 dBFS is 1, linear in dB
    between, which is how loudness is perceived."""
    if not math.isfinite(dbfs) or dbfs <= floor_db:
        return 0.0
    return min(1.0, (dbfs - floor_db) / -floor_db)


# --- devices ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputDevice:
    """An audio input as PortAudio lists it. ``index`` changes when devices are plugged in or out; settings
    should remember ``name``."""

    index: int
    name: str
    default_samplerate: float
    channels: int  # the most input channels it has
    is_default: bool = False
    hostapi: str = ""  # ALSA, PulseAudio, WASAPI, ...: the same device is often listed once per host API

    @property
    def label(self) -> str:
        """What a picker shows."""
        api = f", {self.hostapi}" if self.hostapi else ""
        default = " (default)" if self.is_default else ""
        return f"{self.name}{api}{default}"


def _default_input_index(sd: Any) -> int | str | None:
    """The input half of ``sd.default.device``: an index, a name query, or None when there is no default."""
    try:
        dev = sd.default.device
        if not isinstance(dev, (str, int)) and dev is not None:
            dev = dev[0]  # an (input, output) pair
    except Exception:  # noqa: BLE001 - a broken default must not break the device list
        return None
    if isinstance(dev, str):
        return dev
    if dev is None or int(dev) < 0:
        return None
    return int(dev)


def list_input_devices(sd: Any) -> list[InputDevice]:
    """The devices of the (injected) ``sounddevice`` module that have input channels, in PortAudio's order.
    A PortAudio error while listing (no audio system at all) gives an empty list."""
    try:
        devices = list(sd.query_devices())
    except Exception:  # noqa: BLE001 - PortAudioError, or a broken audio system: no devices to offer
        return []
    apis: list[str] = []
    try:
        apis = [str(a.get("name", "")) for a in sd.query_hostapis()]
    except Exception:  # noqa: BLE001 - host API names are a nicety for the label
        apis = []
    default = _default_input_index(sd)
    out: list[InputDevice] = []
    for i, d in enumerate(devices):
        channels = int(d.get("max_input_channels", 0))
        if channels <= 0:
            continue
        index = int(d.get("index", i))
        name = str(d.get("name", f"device {index}"))
        api = d.get("hostapi")
        is_default = index == default if isinstance(default, int) else (isinstance(default, str) and default == name)
        out.append(
            InputDevice(
                index=index,
                name=name,
                default_samplerate=float(d.get("default_samplerate") or RECOGNITION_RATE),
                channels=channels,
                is_default=is_default,
                hostapi=apis[api] if isinstance(api, int) and 0 <= api < len(apis) else "",
            )
        )
    return out


def default_input(sd: Any) -> InputDevice | None:
    """The system's default input device, else the first input, else None (no microphone)."""
    devices = list_input_devices(sd)
    return next((d for d in devices if d.is_default), devices[0] if devices else None)


def find_input(sd: Any, device: int | str | None) -> InputDevice:
    """The input device a setting names: None (the default), an index, or a name (exact, else the first
    that contains it, case-insensitive). Raises :class:`VoiceError` when there is none."""
    devices = list_input_devices(sd)
    if not devices:
        raise VoiceError(_NO_MICROPHONE)
    if device is None or device == "":
        found = default_input(sd)
        assert found is not None
        return found
    if isinstance(device, int):
        match = next((d for d in devices if d.index == device), None)
    else:
        want = str(device).strip().lower()
        match = next((d for d in devices if d.name.lower() == want), None) or next(
            (d for d in devices if want in d.label.lower()), None
        )
    if match is None:
        names = ", ".join(f"'{d.name}'" for d in devices)
        raise VoiceError(
            f"The microphone '{device}' is not connected (inputs now: {names}). Plug it in or choose another "
            "device in Voice > Voice settings; typed questions still work."
        )
    return match


# --- the microphone -----------------------------------------------------------------------------------------


class Microphone:
    """A PortAudio input stream delivering 16 kHz mono float32 to a consumer.

    ``device``: None (the default input), an index or a name. ``sd``: the ``sounddevice`` module (injected by
    tests; imported on first use otherwise). The stream is opened at ``rate`` when the device accepts it, else
    at the device's default rate and resampled in :meth:`read`. ``buffer_seconds`` of audio wait for the
    consumer; beyond that, new audio is dropped and counted (:attr:`dropped`).

    One consumer thread calls :meth:`read` and :meth:`poll` (and reads :attr:`level`)."""

    def __init__(
        self,
        device: int | str | None = None,
        sd: ModuleType | Any | None = None,
        rate: int = RECOGNITION_RATE,
        block_ms: int = 20,
        buffer_seconds: float = 30.0,
        stall_seconds: float = 3.0,
    ) -> None:
        self.requested_device = device
        self._sd = sd
        self.rate = int(rate)
        self.block_ms = block_ms
        self.buffer_seconds = buffer_seconds
        self.stall_seconds = stall_seconds  # no audio at all for this long while "active" counts as unplugged
        self.device: InputDevice | None = None
        self.device_rate: int | None = None
        self._stream: Any = None
        self._ring: RingBuffer | None = None
        self._resampler: Resampler | None = None
        self._stopping = False
        self._finished = threading.Event()
        self._error: VoiceError | None = None
        self._overflows = 0
        self._last_total = 0
        self._last_progress = 0.0
        self.level_db = SILENCE_DBFS
        self.level = 0.0  # 0..1 meter value of the last audio read

    # setup ---------------------------------------------------------------------------------------------------
    @property
    def sd(self) -> Any:
        if self._sd is None:
            try:
                import sounddevice
            except OSError as e:  # the PortAudio library itself is missing
                raise VoiceError(
                    f"Audio input is unavailable: the PortAudio library could not be loaded ({e}). Install "
                    "PortAudio (e.g. apt install libportaudio2); typed questions still work."
                ) from None
            self._sd = sounddevice
        return self._sd

    def _refusals(self) -> tuple[type[BaseException], ...]:
        err = getattr(self.sd, "PortAudioError", None)
        return (err, ValueError) if isinstance(err, type) else (ValueError,)

    def _open(self, dev: InputDevice) -> tuple[Any, int]:
        sd = self.sd
        refused = self._refusals()
        rates = [self.rate]
        native = int(round(dev.default_samplerate))
        if native > 0 and native != self.rate:
            rates.append(native)
        last: BaseException | None = None
        for rate in rates:
            try:
                check = getattr(sd, "check_input_settings", None)
                if check is not None:
                    check(device=dev.index, channels=1, dtype="float32", samplerate=rate)
                stream = sd.InputStream(
                    device=dev.index,
                    channels=1,
                    samplerate=rate,
                    blocksize=max(1, int(rate * self.block_ms / 1000)),
                    dtype="float32",
                    callback=self._callback,
                    finished_callback=self._finished.set,
                )
                return stream, rate
            except refused as e:  # this rate (or device) refused: try the device's own rate
                last = e
        raise VoiceError(
            f"The microphone '{dev.name}' could not be opened ({last}). Choose another device in Settings > "
            "Voice; typed questions still work."
        )

    def start(self) -> Microphone:
        """Open and start the stream. Raises :class:`VoiceError` when there is no input device, the chosen one
        is not connected, or it cannot be opened."""
        if self._stream is not None:
            return self
        dev = find_input(self.sd, self.requested_device)
        stream, rate = self._open(dev)
        self.device, self.device_rate = dev, rate
        self._ring = RingBuffer(max(1, int(rate * self.buffer_seconds)))
        self._resampler = Resampler(rate, self.rate) if rate != self.rate else None
        self._stopping = False
        self._finished.clear()
        self._error = None
        self._overflows = 0
        self._last_total = 0
        self._last_progress = time.monotonic()
        self._stream = stream
        try:
            stream.start()
        except self._refusals() as e:
            self._stream = None
            self._close_stream(stream)
            raise VoiceError(
                f"The microphone '{dev.name}' could not be started ({e}). Is another program using it? Choose "
                "another device in Voice > Voice settings; typed questions still work."
            ) from None
        return self

    # the real-time callback ----------------------------------------------------------------------------------
    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        # PortAudio's thread: copy and count, nothing else (no allocation, locks, logging or exceptions).
        if status and status.input_overflow:
            self._overflows += 1
        self._ring.write(indata[:, 0])  # type: ignore[union-attr] - set before the stream starts

    # consumer side -------------------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self._stream is not None and bool(getattr(self._stream, "active", False))

    @property
    def resampling(self) -> bool:
        return self._resampler is not None

    @property
    def dropped(self) -> int:
        """Device-rate samples dropped because the consumer fell behind."""
        return self._ring.dropped if self._ring is not None else 0

    @property
    def overflows(self) -> int:
        """Callbacks that PortAudio flagged with an input overflow (the system could not keep up)."""
        return self._overflows

    def read(self) -> np.ndarray:
        """The 16 kHz (``rate``) mono float32 audio that arrived since the last read; updates :attr:`level`.
        After :meth:`stop`, returns what was left, then empty arrays."""
        if self._ring is None:
            return np.zeros(0, dtype=np.float32)
        raw = self._ring.read()
        out = self._resampler.process(raw) if self._resampler is not None else raw
        if self._stream is None and self._resampler is not None:
            out = np.concatenate([out, self._resampler.flush()])  # stopped: the input has ended
        if len(out):
            # The meter shows the latest ~50 ms, not the average since the last read.
            self.level_db = level_dbfs(out[-(self.rate // 20) :])
            self.level = meter_value(self.level_db)
        return out

    def poll(self) -> None:
        """Raise :class:`VoiceError` (once stopped, every time) when the stream ended without :meth:`stop`:
        the device was unplugged, failed, or delivered nothing for ``stall_seconds``."""
        if self._error is not None:
            raise self._error
        stream = self._stream
        if stream is None or self._stopping:
            return
        now = time.monotonic()
        total = self._ring.total_written + self._ring.dropped if self._ring is not None else 0
        if total != self._last_total:
            self._last_total, self._last_progress = total, now
        ended = self._finished.is_set() or not bool(getattr(stream, "active", False))
        stalled = now - self._last_progress > self.stall_seconds
        if ended or stalled:
            name = self.device.name if self.device is not None else str(self.requested_device)
            self._error = VoiceError(
                f"The microphone '{name}' stopped delivering audio (unplugged?). Voice input is off; typed "
                "questions still work. Plug it in and turn voice input on again."
            )
            self.stop()
            raise self._error

    def stop(self) -> None:
        """Stop and close the stream (safe to call twice). Audio already buffered can still be read."""
        stream, self._stream = self._stream, None
        self._stopping = True
        if stream is not None:
            self._close_stream(stream)

    def _close_stream(self, stream: Any) -> None:
        for call in ("stop", "close"):
            try:
                getattr(stream, call)()
            except Exception:  # noqa: BLE001 - an unplugged device fails to stop; it is stopped either way
                pass

    close = stop

    def __enter__(self) -> Microphone:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
