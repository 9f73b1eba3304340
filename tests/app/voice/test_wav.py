"""Audio files: every WAV subtype, FLAC, OGG and MP3 read back (written by soundfile here), stereo mix-down, a
truncated file read up to its end with a warning, an hour-long file read in bounded memory, 16-bit WAV written
atomically, and errors that name the file for what is not audio."""

from __future__ import annotations

import logging
import struct
import tracemalloc
import wave

import numpy as np
import pytest
import soundfile as sf

from app.voice import VoiceError
from app.voice.wav import BLOCK_FRAMES, open_audio, read_wav, write_wav

RATE = 16000


def _tone(seconds: float = 1.0, rate: int = RATE, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


# subtype -> the largest sample error allowed (quantisation of that encoding)
_WAV_SUBTYPES = {
    "PCM_U8": 1 / 64,
    "PCM_16": 2 / 32768,
    "PCM_24": 2 / 2**23,
    "PCM_32": 1e-6,
    "FLOAT": 1e-7,
    "DOUBLE": 1e-7,
    "ULAW": 0.02,  # 8-bit companded: coarse near full scale
    "ALAW": 0.02,
}


@pytest.mark.parametrize("container", ["WAV", "WAVEX"])  # WAVEX: WAVE_FORMAT_EXTENSIBLE, what recorders write
@pytest.mark.parametrize("subtype", list(_WAV_SUBTYPES))
def test_every_wav_subtype_reads_back(tmp_path, container, subtype):
    x = _tone(0.5, 44100)
    path = tmp_path / f"{container}_{subtype}.wav"
    sf.write(path, x, 44100, format=container, subtype=subtype)
    y, rate = read_wav(path)
    assert rate == 44100 and y.dtype == np.float32 and y.shape == x.shape
    assert np.max(np.abs(y - x)) <= _WAV_SUBTYPES[subtype]


@pytest.mark.parametrize(
    ("fmt", "subtype", "suffix"),
    [
        ("FLAC", "PCM_16", "flac"),
        ("FLAC", "PCM_24", "flac"),
        ("OGG", "VORBIS", "ogg"),
        ("MP3", "MPEG_LAYER_III", "mp3"),
    ],
)
def test_compressed_formats_read_back(tmp_path, fmt, subtype, suffix):
    if fmt not in sf.available_formats() or subtype not in sf.available_subtypes(fmt):
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) cannot write {fmt}/{subtype}")
    x = _tone(2.0, 44100)
    path = tmp_path / f"tone.{suffix}"
    sf.write(path, x, 44100, format=fmt, subtype=subtype)
    y, rate = read_wav(path)
    assert rate == 44100 and y.dtype == np.float32
    if fmt == "FLAC":  # lossless
        assert y.shape == x.shape and np.max(np.abs(y - x)) <= 2 / 32768
    else:  # lossy: the same tone at the same level, aligned to within the codec's few samples of delay
        assert abs(len(y) - len(x)) <= 1152
        n = min(len(x), len(y))
        assert _corr(x[2000 : n - 2000], y[2000 : n - 2000]) > 0.98
        assert np.std(y[2000 : n - 2000]) == pytest.approx(np.std(x), rel=0.05)


def test_stereo_is_mixed_down(tmp_path):
    frames = np.stack([np.full(100, 0.5), np.full(100, -0.1)], axis=1).astype(np.float32)
    y, rate = read_wav(write_wav(tmp_path / "st.wav", frames, 22050))
    assert rate == 22050 and y.shape == (100,)
    assert np.allclose(y, 0.2, atol=1e-4)


def test_float_file_past_full_scale_or_nan_is_clipped(tmp_path):
    path = tmp_path / "hot.wav"
    sf.write(path, np.array([1.5, -3.0, np.nan, 0.25], np.float32), RATE, subtype="FLOAT")
    y, _ = read_wav(path)
    assert y.tolist() == [1.0, -1.0, 0.0, 0.25]


def test_unknown_chunks_before_the_data_are_skipped(tmp_path):
    """A LIST chunk in front of the audio, as many editors write."""
    pcm = (np.arange(100, dtype="<i2") * 100).tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, RATE, 2 * RATE, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"LIST" + struct.pack("<I", 6) + b"INFOx\0"
    body += b"data" + struct.pack("<I", len(pcm)) + pcm
    path = tmp_path / "list.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    y, _ = read_wav(path)
    assert len(y) == 100 and y[1] == pytest.approx(100 / 32768)


# --- writing ------------------------------------------------------------------------------------------------


def test_write_is_16_bit_pcm_and_atomic(tmp_path):
    x = _tone(0.5, 8000)
    path = write_wav(tmp_path / "tone.wav", x, 8000)
    y, rate = read_wav(path)
    assert rate == 8000 and y.shape == x.shape
    assert np.max(np.abs(y - x)) <= 1.0 / 32768 + 1e-7
    with wave.open(str(path)) as w:  # a plain 16-bit PCM file any tool reads
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
    assert [p.name for p in tmp_path.iterdir()] == ["tone.wav"], "the temporary file was left behind"


def test_write_clips_and_overwrites(tmp_path):
    path = tmp_path / "a.wav"
    write_wav(path, np.full(10, 0.1, np.float32), RATE)
    write_wav(path, np.array([2.0, -2.0, 0.0], np.float32), RATE)
    y, _ = read_wav(path)
    assert y.tolist() == pytest.approx([32767 / 32768, -1.0, 0.0])


def test_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = write_wav(tmp_path / "keep.wav", np.full(10, 0.1, np.float32), RATE)

    def broken(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sf, "write", broken)
    with pytest.raises(VoiceError, match=r"keep\.wav': No space left"):
        write_wav(path, np.zeros(5, np.float32), RATE)
    assert len(read_wav(path)[0]) == 10 and [p.name for p in tmp_path.iterdir()] == ["keep.wav"]


# --- cut short, long, or not audio --------------------------------------------------------------------------


def test_truncated_wav_reads_what_is_there_with_a_warning(tmp_path, caplog):
    """An interrupted copy: the header promises 2 s, the file holds 0.5 s of it."""
    x = _tone(2.0)
    full = tmp_path / "full.wav"
    write_wav(full, x, RATE)
    data = full.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: 44 + 2 * 8000 + 1])  # 8000 samples and half of the next
    with caplog.at_level(logging.WARNING, logger="app.voice.wav"), open_audio(cut) as f:
        y = f.read()
    assert len(y) == 8000 and np.max(np.abs(y - x[:8000])) <= 1 / 32768 + 1e-7
    assert (
        len(f.warnings) == 1
        and "cut.wav' is truncated" in f.warnings[0]
        and "16001 of the 64000 bytes" in f.warnings[0]
    )
    assert f.warnings[0] in caplog.text  # the CLI's log handler prints it
    samples, rate = read_wav(cut)  # the convenience reader: the same audio, no error
    assert len(samples) == 8000 and rate == RATE


def test_truncated_flac_and_mp3_read_up_to_the_cut(tmp_path):
    x = _tone(3.0, 44100)
    for fmt, suffix in [("FLAC", "flac"), ("MP3", "mp3")]:
        whole = tmp_path / f"whole.{suffix}"
        sf.write(whole, x, 44100, format=fmt)
        cut = tmp_path / f"cut.{suffix}"
        cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
        with open_audio(cut) as f:
            y = f.read()
        assert 0.8 < len(y) / 44100 < 2.2, fmt  # about half the tone, not nothing and not padded to 3 s
        assert f.warnings and f"cut.{suffix}'" in f.warnings[0], fmt
        n = min(len(y), 44100)
        assert _corr(y[2000:n], x[2000:n]) > 0.99, fmt


def test_recorder_placeholder_size_reads_to_the_end_without_warning(tmp_path):
    """A recorder streaming to a file writes 0xFFFFFFFF as the data size: not a truncation."""
    path = write_wav(tmp_path / "live.wav", _tone(0.25), RATE)
    raw = bytearray(path.read_bytes())
    i = raw.index(b"data")
    raw[i + 4 : i + 8] = struct.pack("<I", 0xFFFFFFFF)
    path.write_bytes(bytes(raw))
    with open_audio(path) as f:
        assert len(f.read()) == 4000 and f.warnings == []


def test_long_file_is_read_in_bounded_memory(tmp_path):
    """Two minutes of 48 kHz stereo (23 MB as 16-bit, 23 MB as float32 mono): reading it block by block keeps
    a few blocks in memory, never the file."""
    rate, seconds = 48000, 120
    path = tmp_path / "long.wav"
    with sf.SoundFile(path, "w", rate, 2, "PCM_16") as out:
        t = np.arange(rate * 10) / rate
        ten_s = np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)], axis=1) * 0.3
        for _ in range(seconds // 10):
            out.write(ten_s)
    size = path.stat().st_size
    tracemalloc.start()
    try:
        with open_audio(path) as f:
            sizes = [len(b) for b in f.blocks()]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(sizes) == rate * seconds and f.seconds == seconds
    assert set(sizes[:-1]) == {BLOCK_FRAMES}
    assert peak < size / 10, f"peak {peak / 1e6:.1f} MB reading a {size / 1e6:.0f} MB file"
    with open_audio(path) as f:
        assert [len(b) for b in f.blocks(16000)][:3] == [16000] * 3


def test_text_file_named_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are my meeting notes, not audio\n" * 20)
    with pytest.raises(VoiceError) as e:
        read_wav(path)
    assert "notes.wav' is not an audio file" in str(e.value) and "ffmpeg" in str(e.value)


def test_header_cut_short_is_an_error_that_says_so(tmp_path):
    full = write_wav(tmp_path / "full.wav", np.zeros(100, np.float32), RATE).read_bytes()
    for keep in (8, 30):
        path = tmp_path / f"cut{keep}.wav"
        path.write_bytes(full[:keep])
        with pytest.raises(VoiceError) as e:
            read_wav(path)
        assert f"cut{keep}.wav' is truncated or damaged" in str(e.value)


def test_empty_missing_and_folder(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(VoiceError, match=r"empty\.wav' is empty"):
        read_wav(tmp_path / "empty.wav")
    with pytest.raises(VoiceError, match=r"nothere\.wav' does not exist"):
        read_wav(tmp_path / "nothere.wav")
    with pytest.raises(VoiceError, match="is a folder"):
        read_wav(tmp_path)
