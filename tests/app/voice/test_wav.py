"""WAV reading and writing: every PCM width and float, stereo mix-down, and clear errors for bad files."""

from __future__ import annotations

import struct
import wave

import numpy as np
import pytest

from app.voice import VoiceError
from app.voice.wav import read_wav, write_wav


def _riff(fmt_tag: int, channels: int, rate: int, bits: int, payload: bytes, extra_chunks: bytes = b"") -> bytes:
    """A WAV file by hand (what the stdlib cannot write: float, 24/32-bit with odd chunks in front)."""
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * align, align, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra_chunks
    body += b"data" + struct.pack("<I", len(payload)) + payload + (b"\0" if len(payload) % 2 else b"")
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _ramp(n: int = 1000) -> np.ndarray:
    return np.linspace(-0.9, 0.9, n).astype(np.float32)


def test_round_trip_16_bit(tmp_path):
    x = (0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)).astype(np.float32)
    path = write_wav(tmp_path / "tone.wav", x, 8000)
    y, rate = read_wav(path)
    assert rate == 8000 and y.dtype == np.float32 and y.shape == x.shape
    assert np.max(np.abs(y - x)) <= 1.0 / 32768 + 1e-7
    with wave.open(str(path)) as w:  # a plain 16-bit PCM file any tool reads
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
    assert not list(tmp_path.glob(".*tmp")), "the temporary file was left behind"


def test_write_clips_and_overwrites(tmp_path):
    path = tmp_path / "a.wav"
    write_wav(path, np.full(10, 0.1, np.float32), 16000)
    write_wav(path, np.array([2.0, -2.0, 0.0], np.float32), 16000)
    y, _ = read_wav(path)
    assert y.tolist() == pytest.approx([32767 / 32768, -1.0, 0.0])


def test_stereo_is_mixed_down(tmp_path):
    frames = np.stack([np.full(100, 0.5), np.full(100, -0.1)], axis=1).astype(np.float32)
    y, rate = read_wav(write_wav(tmp_path / "st.wav", frames, 22050))
    assert rate == 22050 and y.shape == (100,)
    assert np.allclose(y, 0.2, atol=1e-4)


@pytest.mark.parametrize("bits", [8, 24, 32])
def test_pcm_widths(tmp_path, bits):
    x = _ramp()
    if bits == 8:
        payload = np.clip(np.round(x * 128 + 128), 0, 255).astype(np.uint8).tobytes()
    elif bits == 24:
        v = np.round(x * 2**23).astype("<i4")
        payload = v.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    else:
        payload = np.round(x.astype(np.float64) * 2**31).astype("<i4").tobytes()
    # A LIST chunk before the data, as many editors write: the reader must skip it.
    junk = b"LIST" + struct.pack("<I", 5) + b"INFOx\0"
    path = tmp_path / f"pcm{bits}.wav"
    path.write_bytes(_riff(1, 1, 44100, bits, payload, extra_chunks=junk))
    y, rate = read_wav(path)
    assert rate == 44100 and len(y) == len(x)
    assert np.max(np.abs(y - x)) <= 2.0 / 2 ** (bits - 1)


def test_float_wav_stereo(tmp_path):
    x = _ramp(500)
    frames = np.stack([x, -x / 2], axis=1).astype("<f4")
    path = tmp_path / "float.wav"
    path.write_bytes(_riff(3, 2, 48000, 32, frames.tobytes()))
    y, rate = read_wav(path)
    assert rate == 48000 and np.allclose(y, x / 4, atol=1e-7)


def test_extensible_float(tmp_path):
    """WAVE_FORMAT_EXTENSIBLE (what many recorders write): the sub-format GUID says float."""
    x = _ramp(200).astype("<f4")
    fmt = struct.pack("<HHIIHH", 0xFFFE, 1, 16000, 64000, 4, 32)
    fmt += (
        struct.pack("<HHI", 22, 32, 4)
        + struct.pack("<H", 3)
        + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    )
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", x.nbytes) + x.tobytes()
    path = tmp_path / "ext.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    y, rate = read_wav(path)
    assert rate == 16000 and np.array_equal(y, x)


def test_unfinished_streaming_header_reads_to_the_end(tmp_path):
    """A recorder that died before fixing up the header leaves a data size of 0: read what is there."""
    pcm = (np.arange(100, dtype="<i2") * 100).tobytes()
    raw = bytearray(_riff(1, 1, 16000, 16, pcm))
    raw[raw.index(b"data") + 4 : raw.index(b"data") + 8] = struct.pack("<I", 0)
    path = tmp_path / "live.wav"
    path.write_bytes(bytes(raw))
    y, _ = read_wav(path)
    assert len(y) == 100 and y[1] == pytest.approx(100 / 32768)


def test_text_file_named_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are my meeting notes, not audio\n")
    with pytest.raises(VoiceError) as e:
        read_wav(path)
    assert "notes.wav" in str(e.value) and "is not a WAV audio file" in str(e.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(VoiceError, match=r"empty\.wav' is empty"):
        read_wav(path)


def test_missing_file(tmp_path):
    with pytest.raises(VoiceError, match=r"nothere\.wav' does not exist"):
        read_wav(tmp_path / "nothere.wav")


@pytest.mark.parametrize("keep", [8, 30, 60])
def test_truncated_file(tmp_path, keep):
    """Cut inside the header (8, 30 bytes) or inside the audio data (60 of 244 bytes)."""
    full = _riff(1, 1, 16000, 16, np.zeros(100, "<i2").tobytes())
    path = tmp_path / "cut.wav"
    path.write_bytes(full[:keep])
    with pytest.raises(VoiceError) as e:
        read_wav(path)
    assert "cut.wav" in str(e.value) and "truncated" in str(e.value)


def test_unsupported_encoding(tmp_path):
    path = tmp_path / "alaw.wav"
    path.write_bytes(_riff(6, 1, 8000, 8, bytes(100)))  # A-law
    with pytest.raises(VoiceError, match=r"alaw\.wav' uses a WAV encoding that is not supported"):
        read_wav(path)
