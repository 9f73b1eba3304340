"""Training throughput: optimiser steps through the real trainer (model/train/trainer.py) at several
window lengths, printing seconds per step, turns/s, tokens/s and peak memory.

    .venv/bin/python -m bench.bench_train                    # tiny model on the CPU; a CUDA part when a GPU is present
    .venv/bin/python -m bench.bench_train --turns 8,32       # fewer, shorter windows
    .venv/bin/python -m bench.bench_train --cuda-model Qwen/Qwen2.5-VL-7B-Instruct   # the 7B instead of the 3B
    .venv/bin/python -m bench.bench_train --rehearsal 300    # frame preparation and 1 vs 2 processes on a rehearsal set

CPU part: the tiny random Qwen2.5-VL (model/tiny.py, fp32) on synthetic shape clips at the full
Streamo frame budget (320x240 frames: 99 visual tokens each), one window per step, batch 1 as the
release trains. Peak memory is the process's peak RSS (it only grows, so windows go shortest first).

CUDA part (only with a GPU): QLoRA on ``--cuda-model`` (default Qwen/Qwen2.5-VL-3B-Instruct: 4-bit
NF4 base, bf16 compute, gradient checkpointing), 128 visual tokens per frame (448x448 frames), peak
GPU memory from ``torch.cuda.max_memory_allocated`` per window length. The checkpoint must be in the
Hugging Face cache or a local folder; nothing is downloaded when HF_HUB_OFFLINE is set.

Rehearsal part (``--rehearsal N``, instead of the above): a set in the release's layout
(model/train/rehearsal.py: nested folders, raw and stream annotations, about 4% of the videos broken)
goes through frame preparation (``prepare_cache``, the code of ``data prepare``, with ``--workers``
processes: seconds per clip) and then through the trainer on the tiny model, as ``app.cli train``
with one process (accumulation 2) and with two (``accelerate launch``, gloo, accumulation 1): the same
effective batch, so the seconds per step compare the two. The first step (warm-up) and the last (it
also evaluates and saves) are not timed.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import resource
import shutil
import sys
import tempfile
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--turns", default="8,32,120", help="window lengths in turns (default 8,32,120)")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per window length (after one warm-up)")
    ap.add_argument("--cuda-model", default="Qwen/Qwen2.5-VL-3B-Instruct", help="checkpoint for the CUDA part")
    ap.add_argument("--no-cpu", action="store_true", help="skip the CPU part")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    ap.add_argument("--rehearsal", type=int, default=None, metavar="CLIPS",
                    help="bench preparation and 1 vs 2 processes on a rehearsal set of CLIPS clips instead")  # fmt: skip
    ap.add_argument("--clip-size", default="64x48", help="rehearsal clips' frame size (WIDTHxHEIGHT)")
    ap.add_argument("--clip-seconds", default="2-3", help="rehearsal clips' length in seconds (N or MIN-MAX)")
    ap.add_argument("--clip-fps", type=int, default=4, help="rehearsal clips' frame rate")
    ap.add_argument("--workers", type=int, default=1, help="decoding processes for the rehearsal's preparation")
    ap.add_argument("--processes", default="1,2", help="training process counts for the rehearsal (default 1,2)")
    return ap.parse_args(argv)


def peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / (1024 if sys.platform == "darwin" else 1)


def run_window(model: str, data: Path, turns: int, steps: int, work: Path, device: str, **config) -> dict:
    """Train ``steps + 1`` steps on windows of ``turns`` turns; time the last ``steps``."""
    import torch

    from model.train.config import TrainConfig
    from model.train.trainer import train

    out = work / f"run-{turns}"
    shutil.rmtree(out, ignore_errors=True)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result = train(
        TrainConfig(
            data=[str(data)], video_prefix=str(data.parent), model=model, out=str(out), steps=steps + 1,
            max_turns=turns, holdout=0.0, save_every=10_000, eval_every=10_000, device=device,
            cache_dir=str(work / "frames"), **config,
        )
    )  # fmt: skip
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    timed = records[1:]  # the first step warms up allocators and kernels
    seconds = (timed[-1]["elapsed_s"] - records[0]["elapsed_s"]) / len(timed)
    seen = sum(r["turns"] for r in timed) / len(timed)
    tokens = sum(r["tokens"] for r in timed) / len(timed)
    peak = torch.cuda.max_memory_allocated() / 1024**3 if device == "cuda" else peak_rss_mb() / 1024
    return {
        "device": device,
        "model": model,
        "turns": turns,
        "turns_per_window": seen,
        "tokens": round(tokens),
        "s_per_step": seconds,
        "turns_per_s": seen / seconds,
        "peak_gb": peak,
        "steps": result.step,
    }


def make_clips(folder: Path, seconds: int, size: tuple[int, int]) -> Path:
    """Two synthetic shape clips of exactly ``seconds`` seconds (so every window is full) and their
    raw annotations."""
    import random

    from model.train.synthetic import random_events, raw_sample, write_clip

    rng = random.Random(0)
    samples = []
    for k in range(2):
        events = [e for e in random_events(rng, 1, min_seconds=seconds) if e.leave < seconds]
        rel = f"videos/long_{k}.mp4"
        write_clip(folder / rel, events, seconds, size=size)
        samples.append(raw_sample(rel, events))
    out = folder / "annotations.json"
    out.write_text(json.dumps(samples), encoding="utf-8")
    return out


def print_table(rows: list[dict]) -> None:
    print(
        f"{'device':6} {'model':34} {'turns':>5} {'tokens':>7} {'s/step':>8} {'turns/s':>8} {'tokens/s':>9} {'peak GB':>8}"
    )
    for r in rows:
        tok = r["tokens"]
        print(
            f"{r['device']:6} {r['model'][-34:]:34} {r['turns_per_window']:5.0f} {tok:7d} {r['s_per_step']:8.3f} "
            f"{r['turns_per_s']:8.1f} {tok / r['s_per_step']:9.0f} {r['peak_gb']:8.2f}"
        )


def _train_cli(processes: int, args: list[str], out: Path, env: dict[str, str]) -> tuple[list[dict], str]:
    """``app.cli train`` in 1 process or ``processes`` (accelerate launch, CPU ranks over gloo):
    (metrics.jsonl records, stderr)."""
    import os
    import subprocess

    launch = [sys.executable, "-m", "app.cli"]
    if processes > 1:  # accelerate's --cpu starts one process; --multi_gpu with --device cpu starts them on gloo
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                  str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                  "-m", "app.cli"]  # fmt: skip
    proc = subprocess.run([*launch, "train", *args, "--out", str(out)], env={**os.environ, **env},
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"training with {processes} process(es) failed:\n{proc.stderr[-2000:]}")
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()], proc.stderr


def rehearsal(args: argparse.Namespace, work: Path) -> list[dict]:
    """Frame preparation, then training throughput with 1 and 2 processes, on a rehearsal set."""
    import os
    import re
    import time

    from app.prepare_cmd import load_image_processor
    from model.tiny import build_tiny_checkpoint
    from model.train.prepare import CacheSpec, annotation_videos, prepare_cache
    from model.train.rehearsal import write_rehearsal_set
    from model.train.video import FrameCache

    w, h = (int(v) for v in args.clip_size.lower().split("x"))
    lo, _, hi = args.clip_seconds.partition("-")
    t0 = time.perf_counter()
    made = write_rehearsal_set(work / "set", args.rehearsal, broken=max(1, args.rehearsal // 25), size=(w, h),
                               seconds=(int(lo), int(hi or lo)), video_fps=args.clip_fps)  # fmt: skip
    print(f"rehearsal set: {len(made.videos)} clips of {args.clip_seconds} s at {w}x{h} {args.clip_fps} fps "
          f"({len(made.broken)} broken), written in {time.perf_counter() - t0:.0f} s")  # fmt: skip
    model = build_tiny_checkpoint(work / "tiny", seed=0)
    data = [str(made.root / "annotations" / "raw"), str(made.root / "annotations" / "stream")]
    processor, lo_px, hi_px = load_image_processor(str(model), None, None)  # as `data prepare --model` does
    cache_dir = work / "frames"
    spec = CacheSpec.of(FrameCache(cache_dir, processor, 1.0, lo_px, hi_px))
    videos, _ = annotation_videos(data, made.root)
    trace = work / "prepare-trace.jsonl"
    report = prepare_cache(videos, spec, workers=args.workers, say=lambda line: None, check_space=False, trace=trace)
    size = sum(p.stat().st_size for p in cache_dir.glob("*.npy"))
    decodes = [json.loads(line) for line in trace.read_text().splitlines()]
    readable = [d for d in decodes if not d["reason"]] or decodes  # an unreadable one fails in milliseconds
    per = sum(d["end"] - d["start"] for d in readable) / len(readable)  # one process's time a readable clip
    print(f"prepare: {len(videos)} videos ({report.decoded} decoded, {len(report.failed)} unreadable, "
          f"{report.frames} frames, {size / 1e6:.1f} MB of cache) in {report.seconds:.2f} s with {args.workers} "
          f"process(es), pool start included; {per * 1000:.1f} ms a readable clip in one process")  # fmt: skip

    env = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    rows = []
    for processes in sorted(int(p) for p in args.processes.split(",")):
        accum = max(1, 2 // processes)  # the same effective batch (2 windows) whatever the process count
        cli = [*sum((["--data", d] for d in data), []), "--video-prefix", str(made.root), "--model", str(model),
               "--cache-dir", str(cache_dir), "--device", "cpu", "--holdout", "0", "--steps", str(args.steps + 2),
               "--accum", str(accum), "--save-every", "10000", "--eval-every", "10000"]  # fmt: skip
        records, err = _train_cli(processes, cli, work / f"run-{processes}", env)
        timed = records[1:-1]  # not the warm-up, not the last (it evaluates and saves)
        seconds = (timed[-1]["elapsed_s"] - records[0]["elapsed_s"]) / len(timed)
        found = re.search(r"training (\d+) windows \((\d+) turns\)", err)
        turns = int(found[2]) / int(found[1]) if found else float("nan")  # mean turns a window in this set
        windows = processes * accum
        rows.append({"device": "cpu", "model": "tiny (model/tiny.py)", "processes": processes, "accum": accum,
                     "windows_per_step": windows, "s_per_step": seconds, "windows_per_s": windows / seconds,
                     "turns_per_s": windows * turns / seconds, "prepare_s_per_clip": per,
                     "prepare_workers": args.workers})  # fmt: skip
    print(f"{'processes':>9} {'accum':>5} {'windows/step':>12} {'s/step':>8} {'windows/s':>9} {'turns/s':>8}")
    for r in rows:
        print(f"{r['processes']:9d} {r['accum']:5d} {r['windows_per_step']:12d} {r['s_per_step']:8.3f} "
              f"{r['windows_per_s']:9.2f} {r['turns_per_s']:8.1f}")  # fmt: skip
    if os.cpu_count():
        print(f"({os.cpu_count()} CPU cores; one torch thread a process)")
    return rows


def write_rows(path: Path | None, rows: list[dict]) -> None:
    """``--json``: the rows, when asked for."""
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rows, indent=2))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if args.rehearsal is not None:
        with tempfile.TemporaryDirectory(prefix="streamo-bench-rehearsal-") as tmp:
            write_rows(args.json, rehearsal(args, Path(tmp)))
        return 0
    import torch

    from model.tiny import build_tiny_checkpoint

    turns = sorted(int(t) for t in args.turns.split(","))
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="streamo-bench-train-") as tmp:
        work = Path(tmp)
        seconds = math.lcm(*turns)  # every window length divides the clip: only full windows
        data = make_clips(work / "clips", seconds, (320, 240))
        if not args.no_cpu:
            torch.set_num_threads(1)
            model = str(build_tiny_checkpoint(work / "tiny", seed=0))
            print(
                f"CPU: tiny Qwen2.5-VL (fp32, 1 thread), 320x240 frames at the Streamo budget; {args.steps} timed steps"
            )
            for n in turns:
                row = run_window(model, data, n, args.steps, work, "cpu")
                row["model"] = "tiny (model/tiny.py)"
                rows.append(row)
        if torch.cuda.is_available():
            name = torch.cuda.get_device_name(0)
            print(f"CUDA: {args.cuda_model} QLoRA on {name}, 448x448 frames (128 visual tokens)")
            cuda_data = make_clips(work / "clips448", seconds, (448, 448))
            for n in turns:
                try:
                    row = run_window(args.cuda_model, cuda_data, n, args.steps, work, "cuda", precision="4bit",
                                     gradient_checkpointing=True)  # fmt: skip
                except Exception as e:  # noqa: BLE001 - report and go on (a missing model, out of memory)
                    print(f"  {n} turns: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
                    torch.cuda.empty_cache()
                    continue
                rows.append(row)
        else:
            print("CUDA: no GPU (the QLoRA figures need one)")
        print_table(rows)
    write_rows(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
