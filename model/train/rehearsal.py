"""A rehearsal data set in the release's layout: many short, tiny clips in nested folders, half the
samples raw annotations and half stream format (``messages`` + ``videos``, as Streamo-Instruct
ships), and some videos broken the ways downloads break (empty, cut off before the MP4 index,
random bytes). Frame preparation, multi-process training and the benchmarks rehearse on it.

Layout under ``root`` (every video path relative to ``root``: train with ``--video-prefix root``)::

    videos/<source>/<part>/<source>_<k>.mp4
    annotations/raw/<source>.json          raw samples (PROTOCOL.md section 3)
    annotations/stream/<source>.jsonl      the same conversion the release ships, one per line

The clips are ``synthetic.write_clip``'s shapes: one event per clip, so every clip has a Standby
and a Response turn.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model import protocol as P
from model.train.synthetic import SHAPES, Event, raw_sample, write_clip

SOURCES = ("coin", "activitynet", "ego4d", "youcook2")  # folder names only: nested like the release's
BROKEN_KINDS = ("empty", "truncated", "noise")


@dataclass
class RehearsalSet:
    root: Path
    annotations: list[Path]  # the raw and the stream files
    videos: list[Path]  # every video named, broken ones included
    broken: dict[Path, str] = field(default_factory=dict)  # video -> how it is broken


def _break(path: Path, kind: str, seed: int) -> None:
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":  # OpenCV's mp4v writes the index last: half the file has none
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(np.random.default_rng(seed).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def write_rehearsal_set(
    root: str | Path,
    n_clips: int = 300,
    broken: int = 12,
    seconds: tuple[int, int] = (2, 3),
    size: tuple[int, int] = (64, 48),
    video_fps: int = 4,
    seed: int = 0,
) -> RehearsalSet:
    """Write ``n_clips`` clips (``broken`` of them broken, spread over the set) and their annotations.
    Each source's samples alternate raw and stream format; deterministic for a seed."""
    if not 0 <= broken < n_clips:
        raise ValueError(f"broken must be in [0, n_clips), got {broken} of {n_clips}")
    root = Path(root)
    rng = random.Random(seed)
    broken_at = set(random.Random(seed + 1).sample(range(n_clips), broken))
    raw: dict[str, list[dict]] = {s: [] for s in SOURCES}
    stream: dict[str, list[dict]] = {s: [] for s in SOURCES}
    out = RehearsalSet(root, [], [])
    for k in range(n_clips):
        source = SOURCES[k % len(SOURCES)]
        rel = f"videos/{source}/part{k // 50:02d}/{source}_{k:04d}.mp4"
        length = rng.randint(*seconds)
        event = Event(list(SHAPES)[k % len(SHAPES)], 0, max(1, length - 1))
        path = write_clip(root / rel, [event], length, video_fps, size, counters=False)
        out.videos.append(path)
        if k in broken_at:
            kind = BROKEN_KINDS[len(out.broken) % len(BROKEN_KINDS)]
            _break(path, kind, seed + k)
            out.broken[path] = kind
        sample = raw_sample(rel, [event])
        sample["source"] = source
        if (k // len(SOURCES)) % 2 == 0:  # each source has both formats
            raw[source].append(sample)
        else:  # converted as the release is (turns from the clip as written, even when it broke since)
            n = P.turn_count(length * video_fps, video_fps, 1.0)
            stream[source].append(P.convert_sample(sample, n, 1.0, k))
    for source in SOURCES:
        if raw[source]:
            path = root / "annotations" / "raw" / f"{source}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(raw[source], indent=1), encoding="utf-8")
            out.annotations.append(path)
        if stream[source]:
            path = root / "annotations" / "stream" / f"{source}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(s) + "\n" for s in stream[source]), encoding="utf-8")
            out.annotations.append(path)
    return out
