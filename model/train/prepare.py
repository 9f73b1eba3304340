"""Frame preparation as its own parallel step: the frame cache filled by a pool of processes.

``streamo-live data prepare`` and the trainer both call :func:`prepare_cache`. The videos are cut
into shares by rank (video ``i`` goes to rank ``i % world``), so under ``accelerate launch`` every
video is decoded once, by one process of one rank, and no rank waits at a barrier while it decodes:
the only wait is after the decoding (the caller's ``wait_for_everyone``).

Resuming is free: entries are written atomically by ``FrameCache`` (frames, then the metadata that
marks them complete), so a killed run leaves whole entries or none, and the next run skips every
video already in the cache. A video that cannot be decoded is recorded in the cache with its reason
(``FrameCache``), so it is tried once, not once per run, and the summary on rank 0 names every one
of them, whichever rank met it.

Workers are spawned (not forked: the parent may hold torch threads or a process group) and each
decodes with one OpenCV and one torch thread: the pool is the parallelism.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from model.atomic import private_folder
from model.train.video import FrameCache, VideoError, block_size

SayFn = Callable[[str], None]
ESTIMATE_SAMPLE = 200  # videos probed for the disk estimate (the share of a big set, scaled up)
STALE_PART_SECONDS = 600  # a temporary entry older than this was left by a killed run
PROGRESS_SECONDS = 5.0


class PrepareError(Exception):
    """Preparation cannot start (no space for the cache); the message says what to do."""


@dataclass(frozen=True)
class CacheSpec:
    """What a worker process needs to open the same frame cache as its parent."""

    root: str
    image_processor: Any  # the model's image processor: its resize rule is the cache's
    fps: float = 1.0
    min_pixels: int = 3136
    max_pixels: int = 100352

    def open(self) -> FrameCache:
        return FrameCache(self.root, self.image_processor, self.fps, self.min_pixels, self.max_pixels)

    @classmethod
    def of(cls, cache: FrameCache) -> CacheSpec:
        processor = getattr(cache.processor, "image_processor", cache.processor)  # the tokenizer stays home
        return cls(str(cache.root), processor, cache.fps, cache.min_pixels, cache.max_pixels)


@dataclass
class PrepareReport:
    """One rank's share: how many videos it had, found cached, decoded, and could not read."""

    videos: int = 0
    already: int = 0
    decoded: int = 0
    frames: int = 0  # frames written by this run
    failed: list[tuple[str, str]] = field(default_factory=list)  # (video, reason)
    seconds: float = 0.0

    @property
    def seconds_per_video(self) -> float | None:
        return self.seconds / self.decoded if self.decoded else None


@dataclass(frozen=True)
class DiskEstimate:
    bytes: float  # frames of the videos still to decode, all ranks
    free: int  # free bytes where the cache goes
    videos: int  # videos still to decode, all ranks
    sampled: int  # videos probed for it
    folder: Path

    @property
    def fits(self) -> bool:
        return 0.9 * self.bytes <= self.free  # refused only when it clearly does not fit

    def line(self) -> str:
        gb = 1024**3
        basis = f" (from {self.sampled} of them)" if self.sampled < self.videos else ""
        return (f"frames of {self.videos} videos to decode{basis}: about {self.bytes / gb:.1f} GB in {self.folder}, "
                f"{self.free / gb:.1f} GB free")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Which videos


def unique_videos(videos: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Each video once, in first-seen order (a video shared by samples or variants is decoded once)."""
    return [Path(v) for v in dict.fromkeys(str(v) for v in videos)]


def annotation_videos(
    paths: Sequence[str | Path], video_prefix: str | Path | None = None
) -> tuple[list[Path], list[str]]:
    """The videos that annotation files name, raw (``video_path``) or stream (``videos``), joined to
    ``video_prefix`` as training joins them; and the problems met. Nothing is probed: the pool does it."""
    from model.train.data import DataIssue, _video_path, annotation_files, read_annotation_file

    issues: list[DataIssue] = []
    found: list[Path] = []
    for path in annotation_files(paths):
        for index, sample in read_annotation_file(path, issues):
            names = sample.get("videos") if isinstance(sample, dict) else None
            name = names[0] if isinstance(names, list) and names else None
            name = sample.get("video_path") if isinstance(sample, dict) and name is None else name
            if isinstance(name, str) and name:
                found.append(_video_path(name, video_prefix))
            else:
                issues.append(DataIssue(str(path), index, "names no video ('videos' or 'video_path'); skipped"))
    return unique_videos(found), [str(i) for i in issues]


def shard(videos: Sequence[Path], rank: int, world: int) -> list[Path]:
    """Rank ``rank``'s share: videos ``i`` with ``i % world == rank`` (every video in exactly one share)."""
    return [v for i, v in enumerate(videos) if i % world == rank]


def default_workers(local_processes: int | None = None) -> int:
    """Decoding processes per rank: the machine's cores shared by the ranks on it (``LOCAL_WORLD_SIZE``,
    which ``accelerate launch`` sets, when not given)."""
    if local_processes is None:
        try:
            local_processes = int(os.environ.get("LOCAL_WORLD_SIZE") or 1)
        except ValueError:
            local_processes = 1
    return max(1, (os.cpu_count() or 1) // max(1, local_processes))


# ---------------------------------------------------------------------------------------------
# Disk


def _free_bytes(folder: Path) -> int:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def estimate_disk(videos: Sequence[Path], spec: CacheSpec, world: int = 1, sample: int = ESTIMATE_SAMPLE,
                  seed: int = 0) -> DiskEstimate:  # fmt: skip
    """Bytes the frames of ``videos`` (this rank's missing share) take in the cache, times ``world``:
    frames from the probed length (``ceil(frames / block)``) times the frame size the processor
    resizes to. Estimated from a seeded sample of at most ``sample`` videos; unreadable ones count 0."""
    from model.frames import resize_to_budget
    from model.video_probe import inspect_video

    picked = list(videos) if len(videos) <= sample else random.Random(seed).sample(list(videos), sample)
    sizes: dict[tuple[int, int], int] = {}  # (width, height) -> bytes per frame, resized by the processor
    total = 0
    for video in picked:
        facts = inspect_video(video)
        if not facts.ok:
            continue
        wh = (facts.width, facts.height)
        if wh not in sizes:
            frame = np.zeros((facts.height, facts.width, 3), np.uint8)
            sizes[wh] = resize_to_budget(spec.image_processor, frame, spec.min_pixels, spec.max_pixels).nbytes
        total += math.ceil(facts.frames / block_size(facts.fps, spec.fps)) * sizes[wh] + 256  # + header, metadata
    scale = len(videos) / len(picked) if picked else 0.0
    folder = Path(spec.root)
    return DiskEstimate(total * scale * world, _free_bytes(folder), len(videos) * world, len(picked) * world, folder)


def remove_stale_parts(root: Path, older_than: float = STALE_PART_SECONDS) -> int:
    """Remove temporary entries a killed run left (``.*.part*``, older than ``older_than`` seconds:
    a live writer renames its own within seconds). Returns how many went."""
    removed, now = 0, time.time()
    for part in root.glob(".*.part*") if root.is_dir() else ():
        try:
            if now - part.stat().st_mtime > older_than:
                part.unlink()
                removed += 1
        except OSError:  # another rank removed it first
            pass
    return removed


# ---------------------------------------------------------------------------------------------
# The pool

_worker_cache: FrameCache | None = None


def _init_worker(spec: CacheSpec) -> None:
    global _worker_cache
    import cv2
    import torch

    cv2.setNumThreads(1)  # one decode per process: the pool is the parallelism
    torch.set_num_threads(1)
    _worker_cache = spec.open()


def _prepare_one(video: str, cache: FrameCache | None = None) -> dict[str, Any]:
    """Decode one video into the cache: {video, frames, reason, start, end, pid}."""
    cache = cache or _worker_cache
    assert cache is not None
    start = time.time()
    try:
        frames, reason = len(cache.get(video).frames), ""
    except (VideoError, OSError) as e:
        frames, reason = 0, str(e)
    return {"video": video, "frames": frames, "reason": reason, "start": start, "end": time.time(), "pid": os.getpid()}


class Progress:
    """A line every ``every`` seconds: done of total, the rate and the time left."""

    def __init__(self, total: int, say: SayFn, prefix: str = "", every: float = PROGRESS_SECONDS) -> None:
        self.total, self.say, self.prefix, self.every = total, say, prefix, every
        self.start = self.last = time.monotonic()

    def update(self, done: int, failed: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        rate = done / max(1e-9, now - self.start)
        left = (self.total - done) / rate if rate > 0 else float("nan")
        eta = "" if done >= self.total or not math.isfinite(left) else f", about {_duration(left)} left"
        bad = f" ({failed} unreadable)" if failed else ""
        self.say(f"{self.prefix}decoded {done}/{self.total} videos{bad}, {rate:.2f} videos/s{eta}")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def prepare_cache(
    videos: Sequence[str | os.PathLike[str]],
    spec: CacheSpec,
    *,
    rank: int = 0,
    world: int = 1,
    workers: int | None = None,
    say: SayFn | None = None,
    check_space: bool = True,
    trace: str | os.PathLike[str] | None = None,
    every: float = PROGRESS_SECONDS,
) -> PrepareReport:
    """Decode this rank's share of ``videos`` into the cache with ``workers`` processes (1: here, no
    pool), skipping what is cached. ``say`` gets the disk estimate (rank 0) and the progress lines;
    ``check_space`` raises ``PrepareError`` when the frames clearly do not fit; ``trace`` appends one
    JSON line per decoded video (video, rank, pid, start, end) to that file."""
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    prefix = f"[rank {rank}/{world}] " if world > 1 else ""
    t0 = time.monotonic()
    cache = spec.open()
    mine = shard(unique_videos(videos), rank, world)
    missing = [v for v in mine if not cache.cached(v)]
    report = PrepareReport(videos=len(mine), already=len(mine) - len(missing))
    if check_space and missing:
        estimate = estimate_disk(missing, spec, world)
        if rank == 0:
            say(estimate.line())
        if not estimate.fits:
            raise PrepareError(
                f"the frame cache does not fit: {estimate.line()}. Free some space, choose a cache folder on a "
                "bigger disk (--cache-dir), or lower the pixel budget (--max-pixels)"
            )
    private_folder(spec.root)  # owner-only (0700) when made here: frames of the user's videos
    remove_stale_parts(Path(spec.root))
    if not missing:
        report.seconds = time.monotonic() - t0
        return report
    workers = max(1, min(workers or default_workers(), len(missing)))
    import multiprocessing

    if multiprocessing.current_process().daemon:  # a daemon process may not start a pool: decode here
        workers = 1
    progress = Progress(len(missing), say, prefix, every)
    say(f"{prefix}{len(missing)} of {len(mine)} videos to decode, {workers} process(es)")
    records: list[dict[str, Any]] = []

    def take(record: dict[str, Any]) -> None:
        records.append(record)
        if record["reason"]:
            report.failed.append((record["video"], record["reason"]))
        else:
            report.decoded += 1
            report.frames += record["frames"]
        progress.update(len(records), len(report.failed))

    if workers == 1:
        for video in missing:
            take(_prepare_one(str(video), cache))
    else:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                                 initargs=(spec,)) as pool:  # fmt: skip
            for future in as_completed([pool.submit(_prepare_one, str(v)) for v in missing]):
                take(future.result())
    progress.update(len(records), len(report.failed), force=True)
    report.seconds = time.monotonic() - t0
    if trace:
        with open(trace, "a", encoding="utf-8") as f:
            f.writelines(json.dumps({**r, "rank": rank}) + "\n" for r in records)
    return report


def unreadable(videos: Sequence[str | os.PathLike[str]], cache: FrameCache) -> list[tuple[str, str]]:
    """(video, reason) for every video of ``videos`` the cache has no frames of, whichever rank met it:
    its recorded failure, or why it cannot be read now (a missing file)."""
    out = []
    for video in unique_videos(videos):
        if cache.cached(video):
            reason = cache.recorded_failure(video)
            if reason:
                out.append((str(video), reason))
            continue
        try:  # not recorded: a missing file, or the cache could not be written
            cache.get(video)
        except (VideoError, OSError) as e:
            out.append((str(video), str(e)))
    return out


def process_group_timeout() -> timedelta:
    """How long a rank waits at a barrier before the run fails: ``STREAMO_PG_TIMEOUT_MIN`` minutes,
    default two hours. The longest waits are ranks finishing their share of frame preparation at
    different times and the main process evaluating and checkpointing; NCCL's own default (10
    minutes) ends a first run on a large set at its first barrier."""
    try:
        minutes = float(os.environ.get("STREAMO_PG_TIMEOUT_MIN") or 120)
    except ValueError:
        minutes = 120.0
    return timedelta(minutes=max(1.0, minutes))
