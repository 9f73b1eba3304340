"""Streaming engine benchmark on the CPU: per-second latency and process memory vs stream length.

    .venv/bin/python -m bench.bench_engine                # 3,600 s stream (about 15-20 min on 2 cores)
    .venv/bin/python -m bench.bench_engine --quick        # 600 s stream (a few minutes)

Variants:
  (a) the engine (model/engine.py): KV cache, one prefill per second, 3-row state head;
  (b) naive: what an offline model does each second, one full forward (vision + LM) over the
      whole windowed conversation (the official window: the last ``max_turns`` turns, active
      question on the first), logits for the last position only. Slow, so it is measured at
      sampled stream lengths, not every second;
  (c) the engine with the full-vocabulary LM head over every position of the turn (what a
      plain ``model(...)`` forward computes), toggled on the same engine for a few seconds at
      sampled stream lengths (the stream itself is unchanged: the probabilities are equal).

The model is a random Qwen2.5-VL built by model/tiny.py, sized so that compute, not Python
overhead, dominates on a 2-core CPU: an 11.3M-parameter decoder body (hidden 512, 4 layers,
8 heads / 2 KV heads, MLP 1408), a 4.5M vision tower and Qwen's 152,064-row vocabulary
(embedding + LM head 155.7M): 171.5M parameters in all, fp32. A step costs 40-150 ms of
compute here against about 5 ms for the same Python path on the 64-wide test model.
Frames are synthetic 112x112 (16 visual tokens), fed as fast as possible; every ``--respond-every`` seconds one answer is forced (threshold 0,
``--answer-tokens`` tokens) so decoding is part of the mix, and no other second answers
(threshold 1), so every window cycle carries the same load.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

FRAME = 112
VOCAB_ROWS = 152064  # Qwen2.5-VL's embedding rows


@dataclass
class Sample:
    variant: str  # a | b | c
    t: float  # stream length in seconds when measured
    total_ms: float  # wall clock
    cpu_ms: float  # process CPU time: robust to other programs sharing the cores
    vision_ms: float = 0.0
    prefill_ms: float = 0.0
    decision_ms: float = 0.0
    decode_ms: float = 0.0
    rebuild_ms: float = 0.0
    rebuilt: bool = False
    responded: bool = False
    context_turns: int = 0
    context_tokens: int = 0
    rss_mb: float = 0.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_engine", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=3600, help="stream length (default 3600)")
    ap.add_argument("--quick", action="store_true", help="a 600 s stream and fewer samples")
    ap.add_argument("--out", type=Path, default=Path("bench/results"), help="folder for the CSV, JSON and PNG")
    ap.add_argument("--max-turns", type=int, default=120, help="engine window in turns (default 120)")
    ap.add_argument("--keep-turns", type=int, default=None, help="turns kept after a rebuild (default half)")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--intermediate", type=int, default=1408)
    ap.add_argument("--respond-every", type=int, default=30, help="force one answer every N s (0: never)")
    ap.add_argument("--answer-tokens", type=int, default=16)
    ap.add_argument("--naive-at", type=str, default=None, help="comma-separated stream lengths for (b)")
    ap.add_argument("--naive-reps", type=int, default=2)
    ap.add_argument("--c-steps", type=int, default=5, help="seconds of variant (c) per sample point")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: steady figures on a shared machine)"
    )
    args = ap.parse_args(argv)
    if args.quick and args.seconds == 3600:
        args.seconds = 600
    if args.naive_at is None:
        pts = [30, 60, 120, 300, 600, 1800, 3600] if not args.quick else [30, 60, 120, 300, 600]
        args.naive_at = ",".join(str(p) for p in pts if p <= args.seconds)
    args.naive_points = [int(x) for x in args.naive_at.split(",") if x.strip()]
    if args.quick:
        args.naive_reps = min(args.naive_reps, 1)
    return args


def synthetic_frame(t: int) -> np.ndarray:
    """A noisy background with a square moving across it: cheap, and different every second."""
    rng = np.random.default_rng(t)
    frame = rng.integers(0, 64, (FRAME, FRAME, 3), dtype=np.uint8)
    x = (t * 7) % (FRAME - 24)
    frame[40:64, x : x + 24] = (220, 40, 40)
    return frame


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def build_model(folder: Path, args: argparse.Namespace):
    from model.loading import load_model
    from model.tiny import TinySpec, build_tiny_checkpoint

    base = TinySpec()
    spec = TinySpec(
        hidden_size=args.hidden,
        num_layers=args.layers,
        num_heads=args.hidden // 64,
        num_kv_heads=2,
        intermediate_size=args.intermediate,
        vision_depth=4,
        vision_hidden=256,
        vision_heads=4,
        vision_intermediate=512,
        spare_rows=VOCAB_ROWS - base.bpe_vocab,
    )
    path = build_tiny_checkpoint(folder, seed=0, spec=spec)
    loaded = load_model(path, precision="fp32", device="cpu")
    m = loaded.model
    count = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    info = {
        "hidden": args.hidden,
        "layers": args.layers,
        "heads": args.hidden // 64,
        "kv_heads": 2,
        "intermediate": args.intermediate,
        "vocab_rows": int(m.lm_head.weight.shape[0]),
        "params_total_M": round(count(m) / 1e6, 1),
        "params_decoder_body_M": round(count(m.model.language_model.layers) / 1e6, 1),
        "params_vision_M": round(count(m.model.visual) / 1e6, 1),
        "params_embed_plus_head_M": round(
            (m.model.language_model.embed_tokens.weight.numel() + m.lm_head.weight.numel()) / 1e6, 1
        ),
        "frame": f"{FRAME}x{FRAME}",
    }
    return loaded, info


def c_points(args: argparse.Namespace, cycle: int) -> list[int]:
    """Where variant (c) runs: away from the first and last two window cycles the (a) targets
    use, and off rebuild and answer seconds (so (c) and (a) compare like with like)."""
    first = (args.max_turns, args.max_turns + cycle)
    last = (args.seconds - 2 * cycle, args.seconds)

    def busy(t: int) -> bool:
        rebuild = t >= args.max_turns and (t - args.max_turns) % cycle == 0
        answer = args.respond_every > 0 and t % args.respond_every == args.respond_every // 2
        return rebuild or answer

    out = []
    for p in (60, 300, 600, 1200, 1800, 2400, 3000):
        while any(busy(t) for t in range(p, p + args.c_steps)):
            p += 1
        span = (p, p + args.c_steps)
        if span[1] > args.seconds or any(span[0] < hi and span[1] > lo for lo, hi in (first, last)):
            continue
        out.append(p)
    return out


def _respond(t: int, args: argparse.Namespace) -> bool:
    return args.respond_every > 0 and t % args.respond_every == args.respond_every // 2


def _timed_step(engine, t: int, args: argparse.Namespace, full_vocab: bool = False):
    # The bench sets the answer policy: 0.0 forces an answer, 1.0 none (the random model's own
    # argmax would answer at random seconds and make cycles incomparable).
    engine.set_options(threshold=0.0 if _respond(t, args) else 1.0, full_vocab_head=full_vocab)
    frame = synthetic_frame(t)
    cpu0 = time.process_time()
    r = engine.step(frame)
    return r, (time.process_time() - cpu0) * 1e3


def run_engine(loaded, args: argparse.Namespace):
    """Variants (a) and (c) over one stream. Returns (a samples, c samples, transcript, engine)."""
    from model import protocol as P
    from model.engine import EngineOptions, StreamEngine

    opts = EngineOptions(max_turns=args.max_turns, keep_turns=args.keep_turns, max_answer_tokens=args.answer_tokens)
    engine = StreamEngine(loaded, opts)
    cycle = opts.max_turns - opts.kept_turns + 1
    c_at = {p + i for p in c_points(args, cycle) for i in range(args.c_steps)}
    a, c, transcript = [], [], []
    started = time.perf_counter()
    for t in range(args.seconds):
        r, cpu = _timed_step(engine, t, args, full_vocab=t in c_at)
        tm = r.timings
        s = Sample(
            "c" if t in c_at else "a",
            float(t + 1),
            tm["total"],
            cpu,
            tm["vision"],
            tm["prefill"],
            tm["decision"],
            tm["decode"],
            tm["rebuild"],
            r.rebuilt,
            r.state == P.RESPONSE,
            r.context_turns,
            r.context_tokens,
            rss_mb(),
        )
        (c if t in c_at else a).append(s)
        transcript.append({"state": r.state, "text": r.text})
        if (t + 1) % 60 == 0 or t + 1 == args.seconds:
            el = time.perf_counter() - started
            print(
                f"  {t + 1:5d} s  step {tm['total']:7.1f} ms  context {r.context_turns:3d} turns "
                f"{r.context_tokens:5d} tokens  rss {s.rss_mb:7.1f} MiB  ({el:5.0f} s elapsed)",
                file=sys.stderr,
                flush=True,
            )
    return a, c, transcript, engine


def run_paired(loaded, engine, args: argparse.Namespace) -> dict:
    """Control for machine drift: a fresh engine's window-full cycle and the long-running engine's
    next cycle, stepped alternately second by second, so both see the same machine conditions."""
    from model.engine import StreamEngine

    fresh = StreamEngine(loaded, engine.opts)
    for t in range(args.max_turns):
        _timed_step(fresh, t, args)
    cycle = engine.opts.max_turns - engine.opts.kept_turns + 1
    out: dict[str, list] = {"fresh": [], "long": []}
    for k in range(cycle):
        pair = [("fresh", fresh, args.max_turns + k), ("long", engine, args.seconds + k)]
        for name, eng, t in pair if k % 2 == 0 else pair[::-1]:
            r, cpu = _timed_step(eng, t, args)
            if not r.rebuilt:
                out[name].append((r.timings["total"], cpu, r.state == "</Response>", r.context_tokens))
    res = {}
    for name, rows in out.items():
        silent = [x for x in rows if not x[2]]
        res[name] = {
            "mean_ms": statistics.fmean(x[0] for x in rows),
            "cpu_mean_ms": statistics.fmean(x[1] for x in rows),
            "silent_mean_ms": statistics.fmean(x[0] for x in silent),
            "mean_context_tokens": statistics.fmean(x[3] for x in rows),
        }
    res["ratio"] = res["long"]["mean_ms"] / res["fresh"]["mean_ms"]
    res["cpu_ratio"] = res["long"]["cpu_mean_ms"] / res["fresh"]["cpu_mean_ms"]
    res["silent_ratio"] = res["long"]["silent_mean_ms"] / res["fresh"]["silent_mean_ms"]
    return res


def naive_conversation(transcript: list[dict], length: int, window: int):
    """The official window at stream length ``length``: the last ``window`` turns, question on the first."""
    from model import protocol as P

    first = max(0, length - window)
    messages = [{"role": "system", "content": P.SYSTEM_PROMPT}]
    for i in range(first, length):
        q = P.DEFAULT_QUESTION if i == first else None
        messages.append({"role": "user", "content": P.user_turn_content(i, i + 1, q)})
        messages.append({"role": "assistant", "content": P.assistant_turn_content(**transcript[i])})
    return messages, list(range(first, length))


def run_naive(loaded, transcript: list[dict], args: argparse.Namespace) -> list[Sample]:
    """Variant (b): at each sampled length, one full forward over the rendered windowed conversation
    (frames preprocessed and the vision tower run on all of them, as a stateless server would)."""
    import torch

    from model import hf_compat as hf
    from model import protocol as P
    from model.frames import preprocess_frame

    pad = loaded.model.config.image_token_id
    state_ids = loaded.state_ids
    out = []
    for length in args.naive_points:
        messages, seconds = naive_conversation(transcript, length, args.max_turns)
        messages = messages[:-1]  # the current turn's answer is what the forward decides
        for rep in range(args.naive_reps):
            t0, cpu0 = time.perf_counter(), time.process_time()
            with torch.inference_mode():
                fis = [preprocess_frame(loaded.processor, synthetic_frame(s)) for s in seconds]
                text = P.render_conversation(messages, add_generation_prompt=True)
                ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
                it, full = iter(fis), []
                for i in ids:
                    full += [i] * next(it).n_tokens if i == pad else [i]
                ids_t = torch.tensor(full).unsqueeze(0)
                res = hf.vlm_forward(loaded.model, ids_t, torch.cat([f.pixel_values for f in fis]),
                                     torch.cat([f.image_grid_thw for f in fis]), pad, logits_to_keep=1)  # fmt: skip
                torch.softmax(res.logits[0, -1, state_ids].float(), -1).tolist()
            ms, cpu = (time.perf_counter() - t0) * 1e3, (time.process_time() - cpu0) * 1e3
            out.append(
                Sample(
                    "b", float(length), ms, cpu, context_turns=len(seconds), context_tokens=len(full), rss_mb=rss_mb()
                )
            )
            print(f"  (b) at {length:5d} s, rep {rep}: {ms:9.1f} ms over {len(full)} tokens", file=sys.stderr)
    return out


# ---------------------------------------------------------------------------------------------
# Summary


def cycles(a: list[Sample]) -> list[tuple[int, int]]:
    """Window cycles as index ranges into ``a``: from one rebuild to the next (the last one if complete)."""
    idx = [i for i, s in enumerate(a) if s.rebuilt]
    spans = list(zip(idx, idx[1:], strict=False))
    if len(spans) >= 1 and len(a) - idx[-1] >= spans[-1][1] - spans[-1][0]:
        spans.append((idx[-1], len(a)))
    return spans


def cycle_stats(a: list[Sample], span: tuple[int, int]) -> dict:
    steps = a[span[0] : span[1]]
    plain = [s.total_ms for s in steps if not s.rebuilt]
    quiet = [s.total_ms for s in steps if not s.rebuilt and not s.responded]
    rebuilds = [s.total_ms for s in steps if s.rebuilt]
    return {
        "from_s": steps[0].t,
        "to_s": steps[-1].t,
        "mean_ms": statistics.fmean(plain),  # every second but the rebuild one, answers included
        "median_ms": statistics.median(plain),
        "mean_silent_ms": statistics.fmean(quiet),
        "cpu_mean_ms": statistics.fmean([s.cpu_ms for s in steps if not s.rebuilt]),
        "cpu_amortised_ms": statistics.fmean([s.cpu_ms for s in steps]),
        "answers": len(plain) - len(quiet),
        "rebuild_ms": statistics.fmean(rebuilds) if rebuilds else 0.0,
        # a cycle holds one rebuild: its cost spread over the cycle's seconds
        "amortised_ms": statistics.fmean([s.total_ms for s in steps]),
        "rss_mb": steps[-1].rss_mb,
    }


def mean_near(samples: list[Sample], t: float, width: float = 10, key: str = "total_ms") -> float | None:
    vals = [getattr(s, key) for s in samples if abs(s.t - t) <= width and not s.rebuilt]
    return statistics.fmean(vals) if vals else None


def summarize(a: list[Sample], b: list[Sample], c: list[Sample], args, info: dict) -> dict:
    spans = cycles(a)
    summary: dict = {"model": info, "seconds": args.seconds, "max_turns": args.max_turns}
    if len(spans) < 2:
        summary["note"] = "the stream is too short for two window cycles; run longer"
        return summary
    first, last = cycle_stats(a, spans[0]), cycle_stats(a, spans[-1])
    summary["first_full_cycle"], summary["last_cycle"] = first, last
    summary["latency_ratio_last_vs_first"] = last["mean_ms"] / first["mean_ms"]
    summary["cpu_ratio_last_vs_first"] = last["cpu_mean_ms"] / first["cpu_mean_ms"]
    # Memory: the steady level (median over a window cycle) and the peak (a rebuild's transient
    # activations), in the window-full cycle against everything after it.
    first_rss = [s.rss_mb for s in a[spans[0][0] : spans[0][1]]]
    last_rss = [s.rss_mb for s in a[spans[-1][0] : spans[-1][1]]]
    after = [s.rss_mb for s in a[spans[0][0] :]]
    summary["rss_window_full_mb"] = a[spans[0][0]].rss_mb
    summary["rss_first_cycle_median_mb"] = statistics.median(first_rss)
    summary["rss_first_cycle_peak_mb"] = max(first_rss)
    summary["rss_last_cycle_median_mb"] = statistics.median(last_rss)
    summary["rss_end_mb"] = a[-1].rss_mb
    summary["rss_max_after_full_mb"] = max(after)
    summary["rss_min_after_full_mb"] = min(after)
    summary["rss_steady_drift"] = statistics.median(last_rss) / statistics.median(first_rss) - 1
    summary["rss_peak_drift"] = max(after) / max(first_rss) - 1
    summary["rss_drift"] = max(abs(summary["rss_steady_drift"]), abs(summary["rss_peak_drift"]))
    naive = {}
    for length in sorted({int(s.t) for s in b}):
        ms = statistics.fmean([s.total_ms for s in b if int(s.t) == length])
        cpu = statistics.fmean([s.cpu_ms for s in b if int(s.t) == length])
        span = next(((lo, hi) for lo, hi in spans if a[lo].t <= length <= a[hi - 1].t), None)
        if span is None and length > a[spans[-1][1] - 1].t:
            span = spans[-1]  # past the last complete cycle: use it
        if span:  # the window cycle around this length, its rebuild amortised
            st = cycle_stats(a, span)
            eng, eng_cpu = st["amortised_ms"], st["cpu_amortised_ms"]
        else:
            eng, eng_cpu = mean_near(a, length), mean_near(a, length, key="cpu_ms")
        naive[length] = {
            "naive_ms": ms,
            "engine_ms": eng,
            "speedup": ms / eng if eng else None,
            "naive_cpu_ms": cpu,
            "engine_cpu_ms": eng_cpu,
            "cpu_speedup": cpu / eng_cpu if eng_cpu else None,
        }
    summary["naive"] = naive
    full = {}
    quiet_a = [s for s in a if not s.responded]
    for run in _runs(c):
        vals = [s.total_ms for s in run if not s.rebuilt and not s.responded]
        ref = mean_near(quiet_a, (run[0].t + run[-1].t) / 2, width=15)
        if vals and ref:
            full[int(run[0].t)] = {
                "full_vocab_ms": statistics.fmean(vals),
                "engine_ms": ref,
                "ratio": statistics.fmean(vals) / ref,
            }
    summary["full_vocab"] = full
    at300 = naive.get(300)
    summary["targets"] = {
        "latency_within_1.2x": summary["latency_ratio_last_vs_first"] <= 1.2,
        "speedup_10x_at_300s": (at300["speedup"] >= 10) if at300 else None,
        "memory_flat_10pct": summary["rss_drift"] <= 0.10,
    }
    return summary


def _runs(samples: list[Sample]) -> list[list[Sample]]:
    """Consecutive-second runs."""
    runs: list[list[Sample]] = []
    for smp in samples:
        if runs and smp.t == runs[-1][-1].t + 1:
            runs[-1].append(smp)
        else:
            runs.append([smp])
    return runs


def print_table(summary: dict) -> None:
    info = summary["model"]
    print(
        f"\nModel: random Qwen2.5-VL, fp32 CPU, {info['params_total_M']}M parameters "
        f"(decoder body {info['params_decoder_body_M']}M: hidden {info['hidden']}, {info['layers']} layers, "
        f"{info['heads']} heads / {info['kv_heads']} kv, MLP {info['intermediate']}; vision {info['params_vision_M']}M; "
        f"embedding + LM head {info['params_embed_plus_head_M']}M over {info['vocab_rows']} rows); "
        f"frames {info['frame']} (16 visual tokens); window {summary['max_turns']} turns; "
        f"{summary['threads']} torch thread(s); load average {summary['loadavg_start']} at start, "
        f"{summary['loadavg_end']} at the end; run took {summary['wall_minutes']:.1f} min"
    )
    if "note" in summary:
        print(summary["note"])
        return
    f, last = summary["first_full_cycle"], summary["last_cycle"]
    rows = [
        ("(a) window-full cycle", f"{f['from_s']:.0f}-{f['to_s']:.0f} s", f),
        ("(a) last cycle", f"{last['from_s']:.0f}-{last['to_s']:.0f} s", last),
    ]
    print(
        f"\n{'variant':22s} {'seconds':>11s} {'mean ms':>8s} {'median':>7s} {'silent':>7s} {'answers':>7s} "
        f"{'rebuild':>8s} {'amortised':>9s} {'cpu mean':>8s} {'RSS MiB':>8s}"
    )
    for name, span, st in rows:
        print(
            f"{name:22s} {span:>11s} {st['mean_ms']:8.1f} {st['median_ms']:7.1f} {st['mean_silent_ms']:7.1f} "
            f"{st['answers']:7d} {st['rebuild_ms']:8.1f} {st['amortised_ms']:9.1f} {st['cpu_mean_ms']:8.1f} "
            f"{st['rss_mb']:8.1f}"
        )
    print(f"\n{'stream length':>14s} {'(b) naive ms':>13s} {'(a) engine ms':>14s} {'speedup':>8s} {'(cpu time)':>10s}")
    for length, row in summary["naive"].items():
        sp = f"{row['speedup']:.1f}x" if row["speedup"] else "-"
        cs = f"{row['cpu_speedup']:.1f}x" if row["cpu_speedup"] else "-"
        print(f"{length:>12d} s {row['naive_ms']:13.1f} {row['engine_ms'] or 0:14.1f} {sp:>8s} {cs:>10s}")
    if summary["full_vocab"]:
        print(f"\n{'stream length':>14s} {'(c) full-vocab ms':>18s} {'(a) engine ms':>14s} {'ratio':>7s}")
        for p, row in summary["full_vocab"].items():
            print(f"{p:>12d} s {row['full_vocab_ms']:18.1f} {row['engine_ms']:14.1f} {row['ratio']:6.2f}x")
    pr = summary.get("paired")
    if pr:
        print(
            f"\n(a) paired control, stepped alternately: window-full cycle of a fresh engine "
            f"{pr['fresh']['mean_ms']:.1f} ms ({pr['fresh']['mean_context_tokens']:.0f} tokens) vs the cycle after "
            f"{summary['seconds']} s {pr['long']['mean_ms']:.1f} ms ({pr['long']['mean_context_tokens']:.0f} tokens): "
            f"{pr['ratio']:.2f}x wall, {pr['cpu_ratio']:.2f}x CPU time, {pr['silent_ratio']:.2f}x silent seconds"
        )
    tg = summary["targets"]
    ok = lambda v: "n/a" if v is None else ("MET" if v else "NOT MET")  # noqa: E731
    print("\nTargets")
    print(
        f"  mean step latency, last cycle vs window-full cycle: {summary['latency_ratio_last_vs_first']:.2f}x "
        f"wall, {summary['cpu_ratio_last_vs_first']:.2f}x CPU time (<= 1.2x): {ok(tg['latency_within_1.2x'])}"
    )
    at300 = summary["naive"].get(300)
    print(
        f"  at 300 s, (b) / (a) amortised: {at300['speedup']:.1f}x wall, {at300['cpu_speedup']:.1f}x CPU time "
        f"(>= 10x): {ok(tg['speedup_10x_at_300s'])}"
        if at300
        else "  at 300 s: (b) not measured"
    )
    print(
        f"  RSS, window-full cycle: median {summary['rss_first_cycle_median_mb']:.0f} MiB, peak "
        f"{summary['rss_first_cycle_peak_mb']:.0f} MiB; last cycle: median "
        f"{summary['rss_last_cycle_median_mb']:.0f} MiB; after window full: {summary['rss_min_after_full_mb']:.0f}-"
        f"{summary['rss_max_after_full_mb']:.0f} MiB, end {summary['rss_end_mb']:.0f} MiB.\n"
        f"  steady drift {100 * summary['rss_steady_drift']:+.1f}%, peak drift {100 * summary['rss_peak_drift']:+.1f}% "
        f"(<= 10%): {ok(tg['memory_flat_10pct'])}"
    )


def plot(a: list[Sample], b: list[Sample], c: list[Sample], summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
    plain = [s for s in a if not s.rebuilt]
    quiet = [s for s in plain if not s.responded]
    said = [s for s in plain if s.responded]
    ax.scatter([s.t for s in quiet], [s.total_ms for s in quiet], s=2, alpha=0.35, label="(a) engine, silent seconds")
    ax.scatter([s.t for s in said], [s.total_ms for s in said], s=6, alpha=0.6, label="(a) answer seconds")
    if len(plain) > 30:
        k = 30
        vals = np.convolve([s.total_ms for s in plain], np.ones(k) / k, mode="valid")
        ax.plot([s.t for s in plain][k - 1 :], vals, lw=1.5, label="(a) engine, 30 s running mean")
    rb = [s for s in a if s.rebuilt]
    ax.scatter([s.t for s in rb], [s.total_ms for s in rb], s=14, marker="^", label="(a) rebuild seconds")
    if c:
        ax.scatter([s.t for s in c], [s.total_ms for s in c], s=14, marker="s", label="(c) full-vocabulary head")
    if b:
        ax.scatter([s.t for s in b], [s.total_ms for s in b], s=30, marker="D", label="(b) naive full forward")
    ax.set_yscale("log")
    ax.set_ylabel("step latency (ms, log)")
    info = summary["model"]
    ax.set_title(
        f"Streaming engine on CPU: {info['params_total_M']}M-parameter random Qwen2.5-VL, "
        f"window {summary['max_turns']} turns"
    )
    ax.legend(fontsize=7, loc="lower right", ncol=3)
    ax.grid(alpha=0.3, which="both")
    ax2.plot([s.t for s in a], [s.rss_mb for s in a], lw=1, label="process RSS")
    if "rss_window_full_mb" in summary:
        full_t = next(s.t for s in a if s.rebuilt)
        for axis in (ax, ax2):
            axis.axvline(full_t, color="grey", ls="--", lw=0.8)
        ax2.annotate("window full", (full_t, summary["rss_window_full_mb"]), fontsize=8)
    ax2.set_ylabel("process RSS (MiB)")
    ax2.set_xlabel("stream length (s)")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.manual_seed(0)
    started, load0 = time.perf_counter(), os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="streamo-bench-"))
    try:
        print(f"building the benchmark model in {tmp} ...", file=sys.stderr)
        loaded, info = build_model(tmp / "ckpt", args)
        torch.set_num_threads(args.threads or os.cpu_count() or 1)  # after load_model, which sets its own
        print(f"model: {json.dumps(info)}", file=sys.stderr)
        print(f"(a)+(c): streaming {args.seconds} s ...", file=sys.stderr)
        a, c, transcript, engine = run_engine(loaded, args)
        print("(b): naive full forward at " + ", ".join(f"{p} s" for p in args.naive_points), file=sys.stderr)
        b = run_naive(loaded, transcript, args)
        print("(a) paired control: a fresh window-full cycle vs the next cycle after the stream", file=sys.stderr)
        paired = run_paired(loaded, engine, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = summarize(a, b, c, args, info)
    summary["paired"] = paired
    summary["threads"] = torch.get_num_threads()
    summary["loadavg_start"] = " ".join(f"{x:.1f}" for x in load0)
    summary["loadavg_end"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    summary["wall_minutes"] = (time.perf_counter() - started) / 60
    print_table(summary)
    with (args.out / "bench_engine.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(asdict(a[0]).keys()))
        w.writeheader()
        for s in [*a, *c, *b]:
            w.writerow({k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(s).items()})
    (args.out / "bench_engine.json").write_text(json.dumps(summary, indent=2, default=str))
    plot(a, b, c, summary, args.out / "bench_engine.png")
    print(f"\nwrote {args.out / 'bench_engine.csv'}, {args.out / 'bench_engine.json'}, {args.out / 'bench_engine.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
