"""Memory of the live runtime on an endless stream: process RSS over 3,600 steps of ``LiveRunner``
(the real engine on the tiny model, a session log on disk, the subtitle timeline), printed at the
start, when the context window is first full, every few hundred steps and at the end.

    .venv/bin/python -m bench.bench_runtime                 # 3,600 steps (about 2-3 minutes on 2 cores)
    .venv/bin/python -m bench.bench_runtime --steps 1200    # shorter

The frames are random 56x56 images (4 visual tokens each), the window is the default 120 turns
(dropped to 60 and rebuilt each time it fills), answers are greedy and at most 8 tokens, and the
talkativeness is such that the model answers now and then. What must hold: once the window is full
(the first fill, a drop and a refill: the KV cache and the allocator reach their working size over
that first cycle), RSS stays flat, within 2% of its window-full level, to the end.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1024**2


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_runtime", description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=3600)
    ap.add_argument("--max-turns", type=int, default=120)
    ap.add_argument("--every", type=int, default=300, help="print RSS every this many steps")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from app.live.records import Question
    from app.live.runner import LiveRunner, make_engine
    from app.session import SessionLog, SessionMeta
    from model.engine import EngineOptions
    from model.loading import load_model
    from model.tiny import build_tiny_checkpoint

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (56, 56, 3), dtype=np.uint8) for _ in range(16)]
    with tempfile.TemporaryDirectory(prefix="streamo-bench-runtime-") as tmp:
        loaded = load_model(build_tiny_checkpoint(Path(tmp) / "tiny", seed=0), precision="fp32", device="cpu")
        engine = make_engine(loaded, EngineOptions(threshold=0.2, max_answer_tokens=8, max_turns=args.max_turns))
        log = SessionLog.create(SessionMeta(source="bench", model="tiny"), Path(tmp))
        runner = LiveRunner(engine, log)
        runner.ask(Question("What happens?", 0.0))
        rows: list[tuple[int, float, float]] = []  # (steps, seconds, RSS MB)
        gc.collect()
        rows.append((0, 0.0, rss_mb()))
        first_fill = full_at = None
        dropped = False
        started = time.perf_counter()
        for k in range(args.steps):
            record = runner.step(frames[k % len(frames)], float(k))
            turns = record.context_turns if record else 0
            dropped = dropped or (first_fill is not None and turns < args.max_turns)
            mark = None
            if first_fill is None and turns == args.max_turns:
                first_fill = mark = k + 1
            elif full_at is None and dropped and turns == args.max_turns:
                full_at = mark = k + 1
            if mark or (k + 1) % args.every == 0 or k + 1 == args.steps:
                gc.collect()
                rows.append((k + 1, time.perf_counter() - started, rss_mb()))
        runner.close()
        log_mb = log.path.stat().st_size / 1024**2
    print(f"{'steps':>6} {'seconds':>8} {'RSS MB':>8}")
    for steps, seconds, mb in rows:
        mark = {first_fill: "  <- first fill", full_at: "  <- window full (after a drop and a refill)"}
        print(f"{steps:6d} {seconds:8.1f} {mb:8.1f}{mark.get(steps, '')}")
    base = next(mb for steps, _, mb in rows if steps == full_at)
    after = [mb for steps, _, mb in rows if full_at is not None and steps >= full_at]
    spread = max(abs(mb - base) for mb in after) / base * 100
    print(f"after the window was full ({full_at} steps): RSS within {spread:.2f}% of {base:.1f} MB "
          f"(max {max(after):.1f} MB); session log {log_mb:.2f} MB on disk; "
          f"{len(runner.subtitles.cues)} responses")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
