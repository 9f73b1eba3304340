"""Frames for training and evaluation, taken as the official release takes them, cached on disk.

PROTOCOL.md section 4: one frame per ``max(1, int(video_fps / fps))`` source frames, the FIRST
of each block (indices 0, k, 2k, ...), no averaging; each frame resized to the pixel budget by the
model's own image processor (``model.frames.resize_to_budget``: feeding a cached frame back to
the processor gives exactly the pixel values of the original frame).

The cache keeps one ``.npy`` of uint8 frames ``[n, h, w, 3]`` per (file, fps, pixel budget),
keyed by the file's resolved path, size and modification time, so a second epoch and a second
run decode nothing. Entries are written to a temporary name and renamed: several processes (one
per GPU) may fill the same cache, and an interrupted run never leaves a half-written entry. A file
that cannot be decoded is recorded too (``<key>.failed.json``, its reason), so it is tried once per
version of the file, not once per run and rank. ``model.train.prepare`` fills a cache in parallel.
The frames are of the user's videos (screen and camera recordings among them): a cache folder this
code makes is owner-only (0700), and so is every entry (0600), as ``model.atomic`` makes them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.atomic import atomic_path, private_folder, write_text_atomic
from model.frames import MAX_PIXELS, MIN_PIXELS, resize_to_budget

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the sampling or resizing rule changes


class VideoError(Exception):
    """A video that cannot be used for training; the message names the file."""


@dataclass(frozen=True)
class SampledVideo:
    frames: np.ndarray  # [n, h, w, 3] uint8 RGB at the pixel budget (memory-mapped when cached)
    video_fps: float
    source_frames: int  # frames the container reports (what the converter counts turns from)


def block_size(video_fps: float, fps: float) -> int:
    """Source frames per sampled frame (PROTOCOL.md section 3, rule 1)."""
    return max(1, int(video_fps / fps))


def decode_sampled(
    path: Path, fps: float, resize: Callable[[np.ndarray], np.ndarray] | None = None
) -> tuple[np.ndarray, float, int]:
    """Decode ``path``: (frames [n, h, w, 3] RGB uint8, video fps, reported frame count). Only the
    kept frames are decoded and converted; the others are grabbed and skipped."""
    import cv2

    from model.video_probe import inspect_video

    facts = inspect_video(path)  # the one rule: what the library imports and Live plays
    if not facts.ok:
        raise VideoError(f"{path}: {facts.reason}")
    video_fps, reported = facts.fps, facts.frames
    cap = cv2.VideoCapture(str(path))
    try:
        step = block_size(video_fps, fps)
        frames: list[np.ndarray] = []
        index = 0
        while True:
            if index % step == 0:
                ok, bgr = cap.read()
                if not ok or bgr is None:
                    break
                rgb = np.ascontiguousarray(bgr[:, :, ::-1])
                frames.append(resize(rgb) if resize else rgb)
            elif not cap.grab():
                break
            index += 1
    finally:
        cap.release()
    if not frames:
        raise VideoError(f"{path}: no decodable frames (corrupt or truncated?)")
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise VideoError(f"{path}: the frame size changes inside the video ({sorted(shapes)[:3]})")
    return np.stack(frames), video_fps, reported


class FrameCache:
    """Sampled, resized frames per video file, on disk. Thread-safe; ``decoded`` counts the files
    this instance had to decode (0 on a warm cache)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        processor: Any,
        fps: float = 1.0,
        min_pixels: int = MIN_PIXELS,
        max_pixels: int = MAX_PIXELS,
    ) -> None:
        self.root = Path(root)
        self.processor = processor
        self.fps = float(fps)
        self.min_pixels, self.max_pixels = int(min_pixels), int(max_pixels)
        self.decoded = 0
        self._lock = threading.Lock()
        self._memo: dict[str, SampledVideo] = {}

    def key(self, path: Path) -> str:
        """(resolved path, size, mtime) of the file and the sampling settings, hashed."""
        path = Path(path).resolve()
        st = path.stat()
        raw = json.dumps(
            [CACHE_VERSION, str(path), st.st_size, st.st_mtime_ns, self.fps, self.min_pixels, self.max_pixels]
        )
        return hashlib.sha256(raw.encode()).hexdigest()[:32]

    def get(self, path: str | os.PathLike[str]) -> SampledVideo:
        path = Path(path)
        if not path.is_file():
            raise VideoError(f"{path}: no such video file")
        key = self.key(path)
        with self._lock:
            hit = self._memo.get(key)
        if hit is not None:
            return hit
        entry = self._load(key)
        if entry is None:
            failed = self._failure(key)
            if failed:  # this very file failed before (``data prepare``, another rank): no second try
                raise VideoError(failed)
            try:
                frames, video_fps, reported = self._decode(path)
            except VideoError as e:
                self._store_failure(key, str(e))
                raise
            self._store(key, path, frames, video_fps, reported)
            with self._lock:
                self.decoded += 1
            entry = self._load(key) or SampledVideo(frames, video_fps, reported)
        with self._lock:
            self._memo[key] = entry
        return entry

    def cached(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` has a complete entry (frames, or a recorded failure): ``get`` decodes nothing.
        False for a missing file (``get`` says why)."""
        try:
            key = self.key(Path(path))
        except OSError:
            return False
        return self._load(key) is not None or bool(self._failure(key))

    def recorded_failure(self, path: str | os.PathLike[str]) -> str:
        """Why this version of ``path`` could not be decoded, as recorded ("" when nothing is)."""
        try:
            return self._failure(self.key(Path(path)))
        except OSError:
            return ""

    def _decode(self, path: Path) -> tuple[np.ndarray, float, int]:
        """The file's sampled frames, resized to the budget: the release's training rule."""
        return decode_sampled(
            path, self.fps, lambda f: resize_to_budget(self.processor, f, self.min_pixels, self.max_pixels)
        )

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.root / f"{key}.npy", self.root / f"{key}.json"

    def _failure(self, key: str) -> str:
        """The recorded reason this file cannot be decoded ("" when none). The key holds the file's
        size and mtime: a repaired or replaced file is tried again."""
        try:
            return str(json.loads((self.root / f"{key}.failed.json").read_text(encoding="utf-8"))["reason"])
        except (OSError, ValueError, KeyError, TypeError):
            return ""

    def _store_failure(self, key: str, reason: str) -> None:
        try:
            private_folder(self.root)
            write_text_atomic(
                self.root / f"{key}.failed.json", json.dumps({"reason": reason}), fsync=False, private=True
            )
        except OSError:  # not recorded: the next run tries again
            pass

    def _load(self, key: str) -> SampledVideo | None:
        npy, meta = self._paths(key)
        if not (npy.is_file() and meta.is_file()):
            return None
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
            frames = np.load(npy, mmap_mode="r")
        except (OSError, ValueError) as e:  # a damaged entry is decoded again
            log.warning("frame cache entry %s is unreadable (%s); decoding again", npy, e)
            return None
        if frames.ndim != 4 or frames.shape[0] != info.get("frames"):
            return None
        return SampledVideo(frames, float(info["video_fps"]), int(info["source_frames"]))

    def _store(self, key: str, path: Path, frames: np.ndarray, video_fps: float, reported: int) -> None:
        npy, meta = self._paths(key)
        info = {"video": str(path), "video_fps": video_fps, "source_frames": reported, "frames": len(frames)}
        try:  # frames first: the metadata marks the entry complete (a cache: no fsync); owner-only
            private_folder(self.root)
            with atomic_path(npy, fsync=False, private=True) as tmp, open(tmp, "wb") as f:
                np.save(f, frames)
            write_text_atomic(meta, json.dumps(info), fsync=False, private=True)
        except OSError as e:  # a full disk or a read-only cache costs speed, not the run
            log.warning("could not write the frame cache in %s (%s); frames stay in memory only", self.root, e)
