"""Audio files through soundfile (libsndfile): :func:`open_audio` reads any format libsndfile reads (WAV in every
PCM width, float, A/u-law and WAVE_FORMAT_EXTENSIBLE; FLAC; OGG Vorbis/Opus; MP3; AIFF, ...) as mono float32
blocks, so an hour-long file is read in bounded memory; :func:`read_wav` reads a short file whole;
:func:`write_wav` writes 16-bit PCM WAV atomically. (The module keeps its old name: its callers import it.)

A file cut short (an interrupted copy or recording) is read up to where it ends, with a warning logged and kept
in :attr:`AudioFile.warnings`, rather than refused: a question recorded on a phone whose upload stopped still has
its first seconds. A file that is not audio, or in a format libsndfile cannot decode (AAC/M4A phone memos, for
one), is a :class:`VoiceError` that names the file and says how to convert it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from app.voice import VoiceError
from model.atomic import atomic_path

__all__ = ["BLOCK_FRAMES", "AudioFile", "open_audio", "read_wav", "write_wav"]

log = logging.getLogger(__name__)

#: Frames per block read: about 1.4 s at 48 kHz, 3 MB as float64 stereo at most (what libsndfile decodes into).
BLOCK_FRAMES = 65536
_CONVERT_HINT = "Convert it to WAV, FLAC, OGG or MP3 (for example: ffmpeg -i INPUT -ar 16000 -ac 1 OUTPUT.wav)."
# libsndfile's log line for a WAV/AIFF whose data chunk announces more bytes than the file holds:
# "data : 3200 (should be 956)". Sizes from 0x7FFFFFFF up are the placeholder of a recorder that streams and
# never fixes up its header ("read to the end"), not a promise of that much audio.
_DATA_SHORT = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_UNKNOWN_SIZE = 0x7FFFFFFF
# Read size after a broken frame: what is lost of the audio before the break is less than this.
_SALVAGE_FRAMES = 1024


class AudioFile:
    """An open audio file (use :func:`open_audio`, as a context manager). :attr:`rate`, :attr:`channels`,
    :attr:`seconds` (as the header announces it); :meth:`blocks` reads it as mono float32 blocks in [-1, 1]
    (channels averaged); :attr:`warnings` holds what was wrong with the file but did not stop the reading."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.warnings: list[str] = []
        self._sf = _open(self.path)
        self.rate = int(self._sf.samplerate)
        self.channels = int(self._sf.channels)
        self.frames = max(0, int(self._sf.frames))  # announced; a truncated file delivers fewer
        self.format = f"{self._sf.format}/{self._sf.subtype}"
        self._check_header()

    @property
    def seconds(self) -> float:
        return self.frames / self.rate

    def blocks(self, frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        """The audio from the start, as consecutive mono float32 blocks of ``frames`` samples (the last one
        shorter). Memory stays at one block whatever the file's length. A file that ends early or breaks off
        ends the blocks there with a warning."""
        if frames <= 0:
            raise ValueError(f"frames must be positive, not {frames}")
        self._sf.seek(0)
        done, step = 0, frames
        while True:
            try:
                x = self._sf.read(step, dtype="float32", always_2d=True)
            except sf.LibsndfileError as e:  # a damaged or cut FLAC/OGG frame
                if step > _SALVAGE_FRAMES:
                    # libsndfile fails a whole read at a broken frame, and the handle with it: reopen, and read
                    # what comes before the break in small pieces.
                    self._sf.close()
                    self._sf = sf.SoundFile(self.path)
                    self._sf.seek(done)
                    step = min(frames, _SALVAGE_FRAMES)
                    continue
                self._warn(
                    f"'{self.path}' is damaged or cut short after {done / self.rate:.2f} s ({e.error_string}); "
                    "the audio up to there was read."
                )
                return
            if len(x):
                done += len(x)
                mono = x[:, 0] if self.channels == 1 else x.mean(axis=1, dtype=np.float32)
                # Float files can hold NaN/inf and values past full scale; the VAD and recogniser need neither.
                mono = np.nan_to_num(mono, nan=0.0, posinf=1.0, neginf=-1.0)
                yield np.clip(mono, -1.0, 1.0, out=mono)
            if len(x) < step:
                break
        if done == 0 and self.path.stat().st_size > 4096:
            # libsndfile found no audio in a file of some size: an OGG cut before its last page, a header that
            # announces no data although data follows (a recorder that never finished it).
            self._warn(
                f"No audio could be read from '{self.path}' although it is {self.path.stat().st_size} bytes: it is "
                f"cut short or damaged. {_CONVERT_HINT}"
            )
        elif done < self.frames:  # the header (or an MP3's Xing frame count) promised more than there is
            self._warn(
                f"'{self.path}' is truncated: it ends after {done / self.rate:.2f} s of the {self.seconds:.2f} s "
                "its header announces (an interrupted copy or recording?); the audio up to there was read."
            )

    def read(self) -> np.ndarray:
        """The whole file as one mono float32 array: for short files (a question, a test clip); stream long ones
        with :meth:`blocks`."""
        parts = list(self.blocks())
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def close(self) -> None:
        self._sf.close()

    def __enter__(self) -> AudioFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_header(self) -> None:
        """Warn about a WAV/AIFF data chunk longer than the file: libsndfile reads what is there (and says so
        only in its log), so the frame count alone cannot tell a cut file from a whole one."""
        for announced, present in _DATA_SHORT.findall(self._sf.extra_info):
            announced, present = int(announced), int(present)
            if present < announced < _UNKNOWN_SIZE:
                self._warn(
                    f"'{self.path}' is truncated: its audio data ends after {present} of the {announced} bytes the "
                    f"header announces (an interrupted copy or recording?); the {self.seconds:.2f} s there were read."
                )

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        log.warning("%s", message)


def _open(p: Path) -> sf.SoundFile:
    """``p`` opened for reading, or a VoiceError that says what is wrong with it and what to do."""
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise VoiceError(f"The audio file '{p}' does not exist; check the path.") from None
    except OSError as e:
        raise VoiceError(f"Cannot read the audio file '{p}': {e.strerror or e}.") from None
    if p.is_dir():
        raise VoiceError(f"'{p}' is a folder, not an audio file.") from None
    if size == 0:
        raise VoiceError(f"'{p}' is empty (0 bytes); it is not an audio file. {_CONVERT_HINT}")
    try:
        return sf.SoundFile(p)
    except sf.LibsndfileError as e:
        reason = str(e.error_string)
    try:
        with open(p, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise VoiceError(f"Cannot read the audio file '{p}': {e.strerror or e}.") from None
    if head in (b"RIFF", b"RIFX", b"RF64", b"FORM", b"fLaC", b"OggS"):
        # An audio container libsndfile knows but could not open: cut inside its header, or damaged there.
        raise VoiceError(
            f"'{p}' is truncated or damaged ({size} bytes; {reason}): it cannot be read. Record or copy it again."
        )
    raise VoiceError(f"'{p}' is not an audio file that can be read ({reason}). {_CONVERT_HINT}")


def open_audio(path: str | os.PathLike[str]) -> AudioFile:
    """``path`` opened for reading in blocks (see :class:`AudioFile`); VoiceError naming the file when it is
    missing, empty, not audio, or damaged in its header."""
    return AudioFile(path)


def read_wav(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """The whole audio of a file (any format :func:`open_audio` reads, not only WAV) as float32 mono samples in
    [-1, 1] and its sample rate. A truncated file gives what is there, with a logged warning. For long files use
    :func:`open_audio` and its blocks."""
    with open_audio(path) as f:
        return f.read(), f.rate


def write_wav(path: str | os.PathLike[str], samples: np.ndarray, rate: int) -> Path:
    """Write float samples in [-1, 1] (mono, or ``(frames, channels)``) as 16-bit PCM WAV. Written under a
    temporary name and renamed (:func:`model.atomic.atomic_path`), so a reader never sees half a file. Returns
    the path."""
    p = Path(path)
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"samples must be (frames,) or (frames, channels), not {x.shape}")
    if rate <= 0:
        raise ValueError(f"rate must be positive, not {rate}")
    # Quantised here (full scale 32768, clipped) rather than by libsndfile, which scales floats by 32767.
    pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)
    try:
        with atomic_path(p) as tmp:
            sf.write(tmp, pcm, int(rate), format="WAV", subtype="PCM_16")
    except (OSError, sf.LibsndfileError) as e:
        raise VoiceError(f"Cannot write the audio file '{p}': {getattr(e, 'strerror', None) or e}.") from None
    return p
