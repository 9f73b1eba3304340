"""`streamo-live data prepare` and `data rehearsal`: the frame cache filled before training, and a
data set in the release's layout to rehearse on.

prepare: each video of the annotations decoded once into the frame cache by a pool of processes;
under `accelerate launch` every rank takes its share (video i goes to rank i % world) and rank 0
prints the summary after the others are done. A disk estimate comes first; progress and the time
left every few seconds; a second run (or one after a kill) decodes only what is missing. Exit 0
(with a warning naming them) when some videos are unreadable, 1 when all are.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from app.errors import CliError


def register(data_sub: argparse._SubParsersAction) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = data_sub.add_parser(
        "prepare",
        help="decode every video of the annotations into the training frame cache, in parallel",
        description="Fill the frame cache training reads, with a pool of processes: each video decoded once. "
        "Run it under `accelerate launch` (the same launch as training) to share the videos across ranks and "
        "machines. Interrupted runs resume: what is in the cache is skipped.",
        formatter_class=fmt,
    )
    p.add_argument("--data", action="append", required=True, metavar="FILE",
                   help="raw or stream-format annotations (.json/.jsonl), or a folder of them; repeatable")  # fmt: skip
    p.add_argument("--video-prefix", default=None, metavar="DIR", help="folder that relative video paths start from")
    p.add_argument("--model", default="demo",
                   help="the model to train (its image processor sets the frame size): the same as `train --model`")  # fmt: skip
    p.add_argument("--fps", type=float, default=1.0, choices=(1.0, 2.0), help="turns per second of video")
    p.add_argument("--min-pixels", type=int, default=None, help="pixel budget per frame, lower end (as `train`)")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="pixel budget per frame (default: the model's, 100352; demo 15680), as `train`")  # fmt: skip
    p.add_argument("--cache-dir", default=None, help="frame cache folder (default: the app's data folder)")
    p.add_argument("--workers", type=int, default=None,
                   help="decoding processes per rank (default: the cores shared by the ranks on this machine)")  # fmt: skip
    p.add_argument("--no-space-check", action="store_true", help="start even when the estimate says it will not fit")
    p.set_defaults(func=_cmd_prepare)

    r = data_sub.add_parser(
        "rehearsal",
        help="write a rehearsal set in the release's layout (nested folders, raw and stream, some broken)",
        formatter_class=fmt,
    )
    r.add_argument("--out", required=True, help="folder for videos/ and annotations/")
    r.add_argument("--clips", type=int, default=300)
    r.add_argument("--broken", type=int, default=12, help="clips written broken (empty, cut off, random bytes)")
    r.add_argument("--seed", type=int, default=0)
    r.set_defaults(func=_cmd_rehearsal)


def load_image_processor(model: str, min_pixels: int | None, max_pixels: int | None) -> tuple[Any, int, int]:
    """(the model's processor, min_pixels, max_pixels) as ``load_model`` sets them for training,
    without loading the weights: the cache entries then match what training looks up."""
    from transformers import AutoProcessor

    from model.catalog import DEMO_MAX_PIXELS
    from model.errors import ModelLoadError
    from model.frames import MAX_PIXELS, MIN_PIXELS
    from model.loading import resolve_source

    path, is_demo = resolve_source(model)
    try:
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as e:
        raise ModelLoadError(f"could not load the processor of {model} from {path}: {e}") from e
    lo = min_pixels or MIN_PIXELS
    hi = max_pixels or (DEMO_MAX_PIXELS if is_demo else MAX_PIXELS)
    return processor, lo, hi


def _cmd_rehearsal(args: argparse.Namespace) -> int:
    from model.train.rehearsal import write_rehearsal_set

    if args.clips < 1 or not 0 <= args.broken < args.clips:
        raise CliError("--clips must be >= 1 and --broken between 0 and --clips - 1")
    made = write_rehearsal_set(args.out, args.clips, args.broken, seed=args.seed)
    folders = sorted({str(a.parent) for a in made.annotations})
    print(f"wrote {len(made.videos)} clips ({len(made.broken)} broken) under {made.root / 'videos'}")
    print("train or prepare with: " + " ".join(f"--data {f}" for f in folders) + f" --video-prefix {made.root}")
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    from model.train.prepare import CacheSpec, PrepareError, annotation_videos, default_workers, prepare_cache
    from model.train.trainer import default_cache_dir
    from model.train.video import FrameCache

    if args.workers is not None and args.workers < 1:
        raise CliError("--workers must be >= 1")
    state = PartialState(cpu=True)  # the ranks only share a barrier: gloo, no GPU
    rank, world = state.process_index, state.num_processes
    main = state.is_main_process
    videos, issues = annotation_videos(args.data, args.video_prefix)
    if main:
        for issue in issues:
            print(f"warning: {issue}", file=sys.stderr)
    if not videos:
        raise CliError("no video named in " + ", ".join(args.data) + ": check --data (raw or stream annotations)")
    processor, lo, hi = load_image_processor(args.model, args.min_pixels, args.max_pixels)
    root = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    cache = FrameCache(root, processor, args.fps, lo, hi)
    spec = CacheSpec.of(cache)
    workers = args.workers or default_workers()
    trace = os.environ.get("STREAMO_PREPARE_TRACE")  # one JSON line per decode, for the tests and diagnostics
    try:
        report = prepare_cache(videos, spec, rank=rank, world=world, workers=workers,
                               check_space=not args.no_space_check,
                               trace=f"{trace}.rank{rank}.jsonl" if trace else None)  # fmt: skip
    except PrepareError as e:
        raise CliError(str(e)) from None
    if report.decoded:
        per = report.seconds_per_video or 0.0
        where = f"[rank {rank}/{world}] " if world > 1 else ""
        print(f"{where}decoded {report.decoded} videos "
              f"({report.frames} frames) in {report.seconds:.1f} s: {per:.3f} s per video with {workers} "
              "process(es)", file=sys.stderr, flush=True)  # fmt: skip
    state.wait_for_everyone()  # after the decoding: no rank waits on another's decode under a short timeout
    if not main:
        return 0
    from model.train.prepare import unreadable

    bad = unreadable(videos, cache)
    ok = len(videos) - len(bad)
    print(f"{ok} of {len(videos)} videos are in the frame cache {root}")
    if bad:
        print(f"warning: {len(bad)} video(s) cannot be read; training skips their samples:", file=sys.stderr)
        for video, reason in bad:
            print(f"  {video}: {reason}", file=sys.stderr)
    if not ok:
        print("error: no video could be read: check --video-prefix and the files", file=sys.stderr)
        return 1
    return 0
