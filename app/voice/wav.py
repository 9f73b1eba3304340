"""WAV files without third-party audio libraries: :func:`read_wav` (8/16/24/32-bit PCM and 32/64-bit float,
any channel count mixed down to mono float32) and :func:`write_wav` (16-bit PCM, written atomically).

Reading parses the RIFF chunks itself rather than going through the stdlib ``wave`` module: on the Python
versions we support, ``wave`` refuses IEEE-float and WAVE_FORMAT_EXTENSIBLE files (what many recorders write)
and reports truncation as a bare ``EOFError`` or not at all; one parser gives one set of errors that name the
file and say what is wrong. Writing uses ``wave``.
"""

from __future__ import annotations

import os
import struct
import wave
from pathlib import Path

import numpy as np

from app.voice import VoiceError
from model.atomic import atomic_path

__all__ = ["read_wav", "write_wav"]

_PCM = 0x0001
_IEEE_FLOAT = 0x0003
_EXTENSIBLE = 0xFFFE
# Streaming recorders that never finalised their header leave these as the data size: read to the end.
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)
_CONVERT_HINT = "Save or convert it as a WAV file (for example: ffmpeg -i INPUT -ar 16000 -ac 1 OUTPUT.wav)."


def read_wav(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """The audio of a WAV file as float32 mono samples in [-1, 1] (channels averaged) and its sample rate.

    Raises :class:`VoiceError` naming the file when it is missing, unreadable, empty, not RIFF/WAVE,
    truncated, or in an encoding other than PCM (8/16/24/32-bit) or IEEE float (32/64-bit)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise VoiceError(f"The audio file '{p}' does not exist; check the path.") from None
    except IsADirectoryError:
        raise VoiceError(f"'{p}' is a folder, not a WAV audio file.") from None
    except OSError as e:
        raise VoiceError(f"Cannot read the audio file '{p}': {e.strerror or e}.") from None
    if not data:
        raise VoiceError(f"'{p}' is empty (0 bytes); it is not a WAV audio file. {_CONVERT_HINT}")
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        if len(data) < 12 and b"RIFF".startswith(data[:4]):
            raise VoiceError(f"'{p}' is truncated ({len(data)} bytes): it ends inside the WAV header.")
        raise VoiceError(f"'{p}' is not a WAV audio file (it does not start with RIFF/WAVE). {_CONVERT_HINT}")
    if data[:4] == b"RIFX":  # big-endian RIFF: practically extinct, and numpy views below assume little-endian
        raise VoiceError(f"'{p}' is a big-endian (RIFX) WAV file, which is not supported. {_CONVERT_HINT}")

    fmt: bytes | None = None
    payload: bytes | None = None
    pos = 12
    while pos + 8 <= len(data):
        cid = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if cid == b"data":
            if size in _UNKNOWN_SIZES:
                size = len(data) - body
            elif body + size > len(data):
                raise VoiceError(
                    f"'{p}' is truncated: its audio data ends after {len(data) - body} of the {size} bytes the "
                    "header announces (an interrupted copy or recording?)."
                )
            payload = data[body : body + size]
            if fmt is not None:
                break
        elif cid == b"fmt ":
            if body + size > len(data) or size < 16:
                raise VoiceError(f"'{p}' is truncated: its format chunk is incomplete.")
            fmt = data[body : body + size]
        pos = body + size + (size & 1)  # chunks are word aligned: an odd-sized chunk is followed by a pad byte
    if fmt is None:
        raise VoiceError(f"'{p}' is truncated or damaged: it has no format ('fmt ') chunk.")
    if payload is None:
        raise VoiceError(f"'{p}' is truncated or damaged: it has no audio ('data') chunk.")

    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _EXTENSIBLE and len(fmt) >= 40:
        # The real format is the first two bytes of the sub-format GUID; the container's bit depth stays.
        (tag,) = struct.unpack_from("<H", fmt, 24)
    if channels < 1 or rate < 1:
        raise VoiceError(f"'{p}' is damaged: its header says {channels} channels at {rate} Hz.")
    width = (bits + 7) // 8
    if block_align != width * channels:
        width = block_align // channels if block_align % channels == 0 else width
    kinds = {(_PCM, 1), (_PCM, 2), (_PCM, 3), (_PCM, 4), (_IEEE_FLOAT, 4), (_IEEE_FLOAT, 8)}
    if (tag, width) not in kinds:
        raise VoiceError(
            f"'{p}' uses a WAV encoding that is not supported (format 0x{tag:04x}, {bits}-bit); "
            f"8/16/24/32-bit PCM and 32-bit float are. {_CONVERT_HINT}"
        )

    frame = width * channels
    n = len(payload) // frame
    raw = np.frombuffer(payload, dtype=np.uint8, count=n * frame)
    if tag == _IEEE_FLOAT:
        x = raw.view("<f4" if width == 4 else "<f8").astype(np.float32)
        x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
    elif width == 1:
        x = (raw.astype(np.float32) - 128.0) / 128.0  # 8-bit WAV is unsigned with 128 as silence
    elif width == 2:
        x = raw.view("<i2").astype(np.float32) / 32768.0
    elif width == 3:
        # Sign-extend each 3-byte sample by placing it in the top bytes of a little-endian int32.
        wide = np.zeros((n * channels, 4), dtype=np.uint8)
        wide[:, 1:] = raw.reshape(-1, 3)
        x = wide.view("<i4").reshape(-1).astype(np.float32) / 2147483648.0
    else:
        x = raw.view("<i4").astype(np.float64).astype(np.float32) / 2147483648.0
    x = x.reshape(n, channels)
    mono = x[:, 0] if channels == 1 else x.mean(axis=1, dtype=np.float32)
    return np.clip(mono, -1.0, 1.0).astype(np.float32, copy=False), int(rate)


def write_wav(path: str | os.PathLike[str], samples: np.ndarray, rate: int) -> Path:
    """Write float samples in [-1, 1] (mono, or ``(frames, channels)``) as 16-bit PCM. Written under a
    temporary name and renamed, so a reader never sees half a file. Returns the path."""
    p = Path(path)
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"samples must be (frames,) or (frames, channels), not {x.shape}")
    if rate <= 0:
        raise ValueError(f"rate must be positive, not {rate}")
    pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2")
    try:
        with atomic_path(p) as tmp, wave.open(str(tmp), "wb") as w:
            w.setnchannels(x.shape[1])
            w.setsampwidth(2)
            w.setframerate(int(rate))
            w.writeframes(pcm.tobytes())
    except OSError as e:
        raise VoiceError(f"Cannot write the audio file '{p}': {e.strerror or e}.") from None
    return p
