"""The one video probe: what a video file says about itself, or why it cannot be used.

Every place that accepts a video file asks :func:`inspect_video`: the clip library's imports, the
converter and the trainer (``protocol.probe_video``, ``train.video.decode_sampled``), the training
estimate and Live's file source. So a file Live plays is a file the library takes and the trainer
reads, by one rule:

- it is a readable, non-empty regular file;
- its first bytes do not show it to be something else (an audio file, an image, text) or cut off
  (an MP4 whose index, the ``moov`` box, is missing or whose boxes run past the end of the file);
- OpenCV opens it and decodes its first frame;
- it reports a frame rate in (0, 1000] fps;
- its frames are at most 200 times longer one way than the other (the Qwen2.5-VL vision tower's
  processor refuses more: transformers' ``smart_resize``, "absolute aspect ratio must be smaller than
  200"), so such a file is refused here, before a model loads, not at its first frame;
- it has a frame count: the one the container reports, else the frames counted by decoding on.

A file that fails says why in ``reason``: one sentence that names the trouble and what to do.
The container sniffing reads at most a few megabytes (ISO-BMFF boxes, RIFF, Matroska codec ids),
so it costs no decoding and needs nothing beyond OpenCV.
"""

from __future__ import annotations

import math
import os
import stat
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MAX_ASPECT_RATIO", "NO_SUCH_FILE", "VideoFacts", "aspect_ratio_problem", "inspect_video", "sniff_container"]

MAX_FPS = 1000.0
# The widest frame the vision tower takes: Qwen2.5-VL's processor (transformers' smart_resize) raises
# on max(height, width) / min(height, width) > 200.
MAX_ASPECT_RATIO = 200.0
NO_SUCH_FILE = "no such file"  # the reason of a missing file (front ends add their own advice)
REENCODE = "re-encode it as H.264 MP4 (e.g. ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p OUT.mp4)"

# Why a file is unusable, as a short code front ends may branch on (the reason is the words).
MISSING, FOLDER, PERMISSION, EMPTY, SPECIAL = "missing", "folder", "permission", "empty", "special"
AUDIO, NOT_VIDEO, TRUNCATED, CODEC, CORRUPT, NO_FPS, NO_FRAMES, ASPECT = (
    "audio-only", "not-video", "truncated", "codec", "corrupt", "no-fps", "no-frames", "aspect-ratio",
)  # fmt: skip


@dataclass(frozen=True)
class VideoFacts:
    """A probed file: its frames, rate and size, or (``ok`` False) the ``reason`` it is unusable."""

    path: Path
    frames: int = 0  # frames the container reports (counted by decoding when it reports none)
    fps: float = 0.0
    width: int = 0
    height: int = 0
    reason: str = ""  # "" when usable; else what is wrong and what to do
    problem: str = ""  # "" when usable; else one of the codes above

    @property
    def ok(self) -> bool:
        return not self.problem

    @property
    def duration(self) -> float | None:
        return self.frames / self.fps if self.ok else None


def _bad(path: Path, problem: str, reason: str) -> VideoFacts:
    return VideoFacts(path, reason=reason, problem=problem)


# ---------------------------------------------------------------------------------------------
# Container sniffing (no decoding)

# Top-level ISO-BMFF (MP4, MOV, M4A, 3GP) boxes; a size running past the end of the file on one of
# these means the file was cut off. Unknown types mean the structure is not ISO-BMFF after all.
_ISO_TOP = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"uuid", b"moof", b"mfra", b"meta",
            b"pdin", b"styp", b"sidx", b"pnot", b"junk", b"prfl", b"emsg", b"prft", b"ssix"}  # fmt: skip
_ISO_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"udta"}
_CODEC_NAMES = {
    b"avc1": "H.264", b"avc3": "H.264", b"hvc1": "HEVC (H.265)", b"hev1": "HEVC (H.265)",
    b"dvh1": "Dolby Vision HEVC", b"dvhe": "Dolby Vision HEVC", b"av01": "AV1", b"vp09": "VP9",
    b"vp08": "VP8", b"mp4v": "MPEG-4 Part 2", b"apch": "ProRes", b"apcn": "ProRes", b"apcs": "ProRes",
    b"apco": "ProRes", b"ap4h": "ProRes 4444", b"ap4x": "ProRes 4444 XQ", b"aprn": "ProRes RAW",
    b"aprh": "ProRes RAW", b"jpeg": "Motion JPEG", b"mjpa": "Motion JPEG", b"vvc1": "VVC (H.266)",
    b"vvi1": "VVC (H.266)", b"hap1": "HAP", b"cfhd": "CineForm", b"dvc ": "DV", b"dvcp": "DV",
}  # fmt: skip
_SNIFF_BYTES = 1 << 20  # read at most this much of the file for its boxes (more only for a big front index)


@dataclass(frozen=True)
class Sniffed:
    """What the first bytes of a file say (all fields empty: nothing known; ask OpenCV)."""

    kind: str = ""  # "iso" | "riff-avi" | "matroska" | "wav" | "audio" | "image" | "text" | ""
    name: str = ""  # e.g. "WAV audio", "PNG image", "MP4"
    truncated: str = ""  # why the file looks cut off ("" when it does not)
    tracks: tuple[tuple[str, str], ...] = ()  # (handler "vide" | "soun" | ..., codec fourcc)
    complete: bool = False  # the track list is the whole of it (the index was read to its end)

    @property
    def video_codecs(self) -> list[str]:
        return [codec for handler, codec in self.tracks if handler == "vide"]

    @property
    def audio_only(self) -> bool:
        return (
            self.complete and bool(self.tracks) and not self.video_codecs and any(h == "soun" for h, _ in self.tracks)
        )


def _boxes(data: bytes, start: int, end: int):
    """(type, payload start, box end, declared end) of each box in ``data[start:end]``."""
    off = start
    while off + 8 <= end:
        size, typ = struct.unpack(">I4s", data[off : off + 8])
        head = 8
        if size == 1:
            if off + 16 > end:
                raise ValueError("not a box")
            size, head = struct.unpack(">Q", data[off + 8 : off + 16])[0], 16
        elif size == 0:  # to the end of the enclosing box (or file)
            size = end - off
        if size < head:
            raise ValueError("not a box")
        yield typ, off + head, min(off + size, end), off + size
        off += size


def _tracks(data: bytes, start: int, end: int, out: list[list[str]]) -> None:
    """Handler type and first sample-entry fourcc of each track in a ``moov`` payload."""
    for typ, body, stop, _ in _boxes(data, start, end):
        if typ == b"trak":
            out.append(["", ""])
        if typ in _ISO_CONTAINERS:
            _tracks(data, body, stop, out)
        elif typ == b"hdlr" and out and stop - body >= 12:
            out[-1][0] = data[body + 8 : body + 12].decode("latin-1")
        elif typ == b"stsd" and out and stop - body >= 16:
            out[-1][1] = data[body + 12 : body + 16].decode("latin-1")


def sniff_container(path: str | os.PathLike[str]) -> Sniffed:
    """What the file's first bytes (and, for MP4, its box index) say it is; empty when unsure."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
    if len(head) >= 12 and head[:4] == b"RIFF":
        form = head[8:12]
        if form == b"WAVE":
            return Sniffed("wav", "WAV audio")
        if form == b"WEBP":
            return Sniffed("image", "WebP image")
        if form.startswith(b"AVI"):
            return Sniffed("riff-avi", "AVI")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Sniffed("image", "PNG image")
    if head.startswith(b"\xff\xd8\xff"):
        return Sniffed("image", "JPEG image")
    if head.startswith(b"fLaC"):
        return Sniffed("audio", "FLAC audio")
    if head.startswith(b"ID3") or (len(head) > 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return Sniffed("audio", "MP3 or AAC audio")  # ID3 tag, or an MPEG audio / ADTS frame sync
    if head.startswith(b"OggS") and b"theora" not in head[:4096] and b"OVP80" not in head[:4096]:
        return Sniffed("audio", "Ogg audio")
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return _sniff_matroska(head)
    if len(head) >= 8 and head[4:8] in _ISO_TOP:
        return _sniff_iso(path, head, size)
    sample = head[:2048]
    if sample and b"\x00" not in sample:
        try:
            sample.decode("utf-8")
        except UnicodeDecodeError as e:
            if e.start < len(sample) - 4:  # not just a character cut at the sample's end
                return Sniffed()
        return Sniffed("text", "text")
    return Sniffed()


def _sniff_iso(path: Path, head: bytes, size: int) -> Sniffed:
    try:
        return _sniff_iso_boxes(path, head, size)
    except (ValueError, struct.error):  # a size field that is no box size: not ISO-BMFF after all
        return Sniffed()


def _sniff_iso_boxes(path: Path, head: bytes, size: int) -> Sniffed:
    name = "MOV" if head[8:10] == b"qt" else "MP4"
    moov: tuple[int, int] | None = None
    for typ, body, _stop, declared in _boxes(head, 0, len(head)):
        if typ not in _ISO_TOP:
            return Sniffed()  # not a box structure we know: leave it to OpenCV
        if declared > size:
            where = f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size} bytes"
            return Sniffed("iso", name, f"it ends at {where}, inside its '{typ.decode()}' box")
        if typ == b"moov":
            moov = (body, declared)
    if moov is None:
        # The box walk reached the end of what was read: past that, look for moov at the file's end.
        if size > len(head):
            return _sniff_iso_tail(path, name, size)
        return Sniffed("iso", name, "its index (the 'moov' box, which says where the frames are) is missing")
    body, declared = moov
    if declared > len(head):  # a huge index at the front: read all of it
        with open(path, "rb") as f:
            head = f.read(declared)
    tracks: list[list[str]] = []
    _tracks(head, body, declared, tracks)
    return Sniffed("iso", name, tracks=tuple((h, c) for h, c in tracks), complete=True)


def _sniff_iso_tail(path: Path, name: str, size: int) -> Sniffed:
    """Walk the top-level boxes by seeking (a big ``mdat`` lies between the head and ``moov``)."""
    with open(path, "rb") as f:
        off = 0
        while off + 8 <= size:
            f.seek(off)
            h = f.read(16)
            box, typ = struct.unpack(">I4s", h[:8])
            if box == 1 and len(h) == 16:
                box = struct.unpack(">Q", h[8:16])[0]
            elif box == 0:
                box = size - off
            if typ not in _ISO_TOP or box < 8:
                return Sniffed()
            if off + box > size:
                return Sniffed("iso", name, f"it ends at {size / 1e6:.1f} MB, inside its '{typ.decode()}' box")
            if typ == b"moov":
                f.seek(off)
                data = f.read(box)
                tracks: list[list[str]] = []
                _tracks(data, 8, len(data), tracks)
                return Sniffed("iso", name, tracks=tuple((a, b) for a, b in tracks), complete=True)
            off += box
    return Sniffed("iso", name, "its index (the 'moov' box, which says where the frames are) is missing")


def _sniff_matroska(head: bytes) -> Sniffed:
    """Matroska / WebM: the CodecID strings (element 0x86) of its tracks, where the header shows them."""
    import re

    name = "WebM" if b"webm" in head[:64] else "Matroska"
    ids = re.findall(rb"\x86[\x81-\x9f]([VAS]_[A-Z0-9/_.\-]{1,30})", head[: 1 << 20])
    tracks = tuple(("vide" if c[:1] == b"V" else "soun" if c[:1] == b"A" else "subt", c.decode()) for c in ids)
    # Not ``complete``: a CodecID this search misses must not make a video "audio only"; the track
    # list only explains a file OpenCV then fails on.
    return Sniffed("matroska", name, tracks=tracks)


def _codec_words(fourcc: str) -> str:
    name = _CODEC_NAMES.get(fourcc.encode("latin-1"))
    return f"{name} ('{fourcc}')" if name else f"'{fourcc}'"


def aspect_ratio_problem(width: int, height: int) -> str:
    """Why frames of ``width`` x ``height`` cannot go to the vision tower ("" when they can): one
    side more than ``MAX_ASPECT_RATIO`` times the other (or no side at all)."""
    short, long = min(width, height), max(width, height)
    if short > 0 and long / short <= MAX_ASPECT_RATIO:
        return ""
    ratio = f"{long / short:.0f}:1" if short > 0 else "no area"
    return (
        f"its frames are {width}x{height} pixels ({ratio}), an aspect ratio the vision tower cannot take "
        f"(at most {MAX_ASPECT_RATIO:.0f}:1); crop or pad the video so no side is more than "
        f"{MAX_ASPECT_RATIO:.0f} times the other"
    )


# ---------------------------------------------------------------------------------------------
# The probe

_CACHE: OrderedDict[tuple, VideoFacts] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_MAX = 1024


def inspect_video(path: str | os.PathLike[str]) -> VideoFacts:
    """The facts of ``path`` by the one rule (module docstring); cached by path, size and mtime."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        return _bad(path, MISSING, NO_SUCH_FILE)
    except OSError as e:
        return _bad(path, PERMISSION, f"it cannot be read ({e.strerror or e})")
    if path.is_dir():
        return _bad(path, FOLDER, "it is a folder, not a video file")
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block the decoder forever; a device is no file to read
        kind = "a named pipe (FIFO)" if stat.S_ISFIFO(st.st_mode) else "a device or special file"
        return _bad(path, SPECIAL, f"it is {kind}, not a video file; save the video to a file and choose that")
    key = (str(path.absolute()), st.st_size, st.st_mtime_ns)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    facts = _inspect(path, st.st_size)
    with _CACHE_LOCK:
        _CACHE[key] = facts
        while len(_CACHE) > _CACHE_MAX:
            _CACHE.popitem(last=False)
    return facts


def _inspect(path: Path, size: int) -> VideoFacts:
    if not os.access(path, os.R_OK):
        return _bad(path, PERMISSION, "permission denied; give yourself read access to it, or copy it elsewhere")
    if size == 0:
        return _bad(
            path, EMPTY, "the file is empty (0 bytes): a copy, download or recording that never finished; copy "
            "or export it again from the original",
        )  # fmt: skip
    try:
        sniffed = sniff_container(path)
    except OSError as e:
        return _bad(path, PERMISSION, f"it cannot be read ({e.strerror or e})")
    renamed = f"a sound file renamed {path.suffix}?" if path.suffix else "a sound file?"
    if sniffed.kind in ("wav", "audio"):
        return _bad(path, AUDIO, f"it is {sniffed.name} ({renamed}), not a video; choose the video file itself")
    if sniffed.audio_only:
        codecs = ", ".join(sorted({f"'{c}'" for _, c in sniffed.tracks if c})) or "audio"
        return _bad(
            path, AUDIO, f"it holds only audio ({codecs}), no video track: a sound file, or a recording made with "
            "the camera off; choose the video file itself",
        )  # fmt: skip
    if sniffed.kind in ("image", "text"):
        return _bad(path, NOT_VIDEO, f"it is {'an' if sniffed.name[0] in 'AEIOU' else 'a'} {sniffed.name} file, not "
                                     "a video; choose a video file")  # fmt: skip
    if sniffed.truncated:
        return _bad(
            path, TRUNCATED, f"the file is cut off: {sniffed.truncated}, so the copy, download or recording did not "
            "finish; copy it again from the original (a recording cut off by a crash needs an MP4 repair tool)",
        )  # fmt: skip
    return _inspect_frames(path, sniffed)


def _inspect_frames(path: Path, sniffed: Sniffed) -> VideoFacts:
    import cv2  # local: the sniffing above needs no OpenCV

    codecs = sniffed.video_codecs
    codec = _codec_words(codecs[0]) if codecs and codecs[0] else ""
    sound = not codecs and any(h == "soun" for h, _ in sniffed.tracks)  # tracks seen, none of them video
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened() and sound:
            return _bad(path, AUDIO, f"it holds only audio, no video track ({sniffed.name}); choose the video file "
                                     "itself")  # fmt: skip
        if not cap.isOpened():
            if codec:
                return _bad(path, CODEC, f"its video is {codec}, which OpenCV cannot open; {REENCODE}")
            return _bad(path, CORRUPT, f"OpenCV cannot open it: the file is corrupt or not a video format it reads; "
                                       f"{REENCODE}")  # fmt: skip
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        reported = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        ok, first = cap.read()
        if not ok or first is None:
            frames = f"it reports {reported} frames but" if reported > 0 else "it opens but"
            if codec:
                return _bad(path, CODEC, f"{frames} none decodes: its video is {codec}, a codec this OpenCV build "
                                         f"cannot decode (or the stream is damaged); {REENCODE}")  # fmt: skip
            return _bad(path, CORRUPT, f"{frames} no frame decodes: the file is corrupt or truncated, or its codec is "
                                       f"one OpenCV cannot decode; {REENCODE}")  # fmt: skip
        height, width = first.shape[:2]
        if not (math.isfinite(fps) and 0 < fps <= MAX_FPS):
            return _bad(path, NO_FPS, f"it reports no usable frame rate ({fps:g} fps), so its seconds cannot be "
                                      f"counted; {REENCODE}")  # fmt: skip
        reason = aspect_ratio_problem(int(width), int(height))
        if reason:
            return _bad(path, ASPECT, reason)
        frames = reported
        if frames <= 0:  # some WebM and streamed recordings carry no count: count by decoding on
            frames = 1
            while cap.grab():
                frames += 1
    finally:
        cap.release()
    return VideoFacts(path, frames, fps, int(width), int(height))
