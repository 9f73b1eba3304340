"""Video files that are not usable, each the way users meet it, built without an encoder beyond
OpenCV's mp4v writer (no ffmpeg): empty, a WAV renamed .mp4, an audio-only MP4 (ISO-BMFF built by
hand, handler 'soun'), cut off before its index, cut off after a front index (frames reported, not
all there), an unsupported codec, and random bytes; and a usable Matroska file that reports no
frame count."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
from fakes import write_video


def box(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def full_box(kind: bytes, payload: bytes) -> bytes:
    return box(kind, b"\x00\x00\x00\x00" + payload)  # version 0, flags 0


def top_boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    out, off = [], 0
    while off < len(data):
        size, kind = struct.unpack(">I4s", data[off : off + 8])
        out.append((kind, data[off : off + size]))
        off += size
    return out


def good(path: Path, seconds: int = 3, fps: int = 10) -> Path:
    return write_video(path, seconds * fps, fps, (96, 64))


def empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def wav_renamed(path: Path) -> Path:
    with wave.open(str(path), "wb") as w:  # a .wav under a video's name
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.zeros(16000, "<i2").tobytes())
    return path


def audio_only_mp4(path: Path) -> Path:
    """An M4A-style file: one track whose handler is 'soun' (AAC sample entry), no video track."""
    hdlr = full_box(b"hdlr", b"\x00" * 4 + b"soun" + b"\x00" * 12 + b"SoundHandler\x00")
    mp4a = box(
        b"mp4a", b"\x00" * 6 + b"\x00\x01" + b"\x00" * 8 + b"\x00\x02\x00\x10" + b"\x00" * 4 + b"\xac\x44\x00\x00"
    )
    stbl = box(b"stbl", full_box(b"stsd", struct.pack(">I", 1) + mp4a))
    mdia = box(b"mdia", full_box(b"mdhd", b"\x00" * 20) + hdlr + box(b"minf", stbl))
    moov = box(b"moov", full_box(b"mvhd", b"\x00" * 96) + box(b"trak", full_box(b"tkhd", b"\x00" * 80) + mdia))
    path.write_bytes(box(b"ftyp", b"M4A \x00\x00\x02\x00M4A mp42isom") + moov + box(b"mdat", b"\x21" * 4000))
    return path


def cut_before_index(path: Path, source: Path) -> Path:
    """The first half of an MP4 whose index ('moov') comes last, as OpenCV writes it."""
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def faststart(data: bytes) -> bytes:
    """The same MP4 with its index moved to the front (chunk offsets shifted), as web videos are."""
    boxes = top_boxes(data)
    moov = bytearray(dict(boxes)[b"moov"])
    at = moov.find(b"stco")
    for k in range(struct.unpack(">I", moov[at + 8 : at + 12])[0]):
        i = at + 12 + 4 * k
        moov[i : i + 4] = struct.pack(">I", struct.unpack(">I", moov[i : i + 4])[0] + len(moov))
    rest = [b for kind, b in boxes[1:] if kind != b"moov"]
    return boxes[0][1] + bytes(moov) + b"".join(rest)


def cut_after_index(path: Path, source: Path) -> Path:
    """Two thirds of a front-indexed MP4: it reports all its frames, a third of them are not there."""
    data = faststart(source.read_bytes())
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


def unsupported_codec(path: Path, source: Path) -> Path:
    """The MP4 relabelled as HEVC ('hvc1' with an 'hvcC' box holding MPEG-4 data): it opens and
    reports its frames, and none decodes, as with a codec the decoder lacks."""
    data = source.read_bytes().replace(b"mp4v", b"hvc1", 1).replace(b"esds", b"hvcC", 1)
    path.write_bytes(data)
    return path


def without_frame_count(path: Path) -> Path:
    """A Matroska file whose header carries no duration (as some recorders and streamed downloads
    write): OpenCV reports no frame count, yet every frame decodes. Usable: its frames are counted."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for i in range(30):
        writer.write(np.full((64, 96, 3), (7 * i) % 256, np.uint8))
    writer.release()
    data = path.read_bytes()
    at = data.find(b"\x44\x89")  # the Segment Info's Duration element ...
    n = 3 + (data[at + 2] & 0x7F)
    void = bytes([0xEC, 0x80 | (n - 2)]) + b"\x00" * (n - 2)  # ... overwritten by a Void element of its size
    path.write_bytes(data[:at] + void + data[at + n :])
    return path


def random_bytes(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    return path


def all_kinds(folder: Path) -> dict[str, Path]:
    """One file of each kind (name -> path); 'good' and 'no-frame-count' are usable."""
    folder.mkdir(parents=True, exist_ok=True)
    src = good(folder / "good.mp4")
    return {
        "good": src,
        "no-frame-count": without_frame_count(folder / "recording.mkv"),
        "empty": empty(folder / "empty.mp4"),
        "wav": wav_renamed(folder / "voice.mp4"),
        "audio-only": audio_only_mp4(folder / "song.mp4"),
        "cut-before-index": cut_before_index(folder / "half.mp4", src),
        "cut-after-index": cut_after_index(folder / "partial.mp4", src),
        "codec": unsupported_codec(folder / "hevc.mp4", src),
        "corrupt": random_bytes(folder / "noise.mp4"),
    }
