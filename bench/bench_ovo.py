"""OVO-Bench runner speed: seconds per query, and what the shared pass (one pass per video with engine
snapshots) saves against re-running the video from its start for every query.

    .venv/bin/python -m bench.bench_ovo               # demo model, 6 videos of 90 s, 72 queries
    .venv/bin/python -m bench.bench_ovo --quick       # 3 videos of 45 s

The data are synthetic shape clips (model/train/synthetic.py: what the demo model was trained on,
320x240 at 4 fps) with an annotation file in OVO-Bench's official format: per video one EPM and one
OCR question and one forward entry (REC, SSR and CRR in turn) with ``--probes`` probes spread over
the clip (OVO-Bench has about 9.1 probes per forward entry), so the real ratio of probes to
questions. Both protocols run through ``app.benchmark.ovo_run.run_benchmark`` exactly as the command
line does (results written after every query), once with the shared pass and once re-running each
query from the start; the responses of the two must be identical. The demo model (the tiny network
with its shapes adapter, built on first use) runs on the CPU in fp32 with one thread. The time
includes decoding (each video once per mode), the engine and the result writes; snapshot and
restore are timed separately.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path


def make_set(root: Path, videos: int, seconds: int, probes: int, seed: int = 0) -> Path:
    """Shape clips and an OVO-Bench annotation file over them; returns the file."""
    from model.train.synthetic import random_events, write_clip

    rng = random.Random(seed)
    opts = ["a red ball", "a blue square", "a green triangle", "nothing"]
    entries: list[dict] = []
    for v in range(videos):
        events = random_events(rng, max_events=2, min_seconds=seconds - 3)
        rel = f"Synthetic/clips/shapes_{v:02d}.mp4"
        write_clip(root / "videos" / rel, events, seconds)
        times = sorted(rng.uniform(3, seconds - 1) for _ in range(2))
        for task, t in zip(("EPM", "OCR"), times, strict=True):
            entries.append({"id": len(entries), "task": task, "video": rel, "realtime": round(t, 1),
                            "question": "Which shape was on screen last?", "options": opts, "gt": 0,
                            "answer": opts[0]})  # fmt: skip
        probe_times = [round(seconds * (j + 1) / (probes + 1), 1) for j in range(probes)]
        task = ("REC", "SSR", "CRR")[v % 3]
        entry: dict = {"id": len(entries), "task": task, "video": rel}
        if task == "REC":
            balls = [e for e in events if e.shape == "ball"]
            entry.update(activity="roll a red ball across the frame", start_times=[e.appear for e in balls],
                         end_times=[e.leave for e in balls])  # fmt: skip
            entry["test_info"] = [{"realtime": t, "count": sum(e.leave <= t for e in balls)} for t in probe_times]
        elif task == "SSR":
            entry.update(tutorial="shapes", all_steps=[e.caption for e in events],
                         start_time=[e.appear for e in events], end_time=[e.leave for e in events])  # fmt: skip
            first = events[0]
            entry["test_info"] = [
                {"realtime": t, "step": first.caption, "type": int(first.appear <= t < first.leave)}
                for t in probe_times
            ]
        else:
            clue = events[-1].leave
            entry.update(question="What shape came last?", answer=events[-1].caption, ask_time=1, clue_time=clue)
            entry["test_info"] = [{"realtime": t, "type": int(t >= clue)} for t in probe_times]
        entries.append(entry)
    anno = root / "ovo_bench_synthetic.json"
    anno.write_text(json.dumps(entries, indent=1), encoding="utf-8")
    return anno


class Timer:
    """Wall time spent in StreamEngine.snapshot / restore (class-level wrappers, removed on exit)."""

    def __enter__(self) -> Timer:
        from model.engine import StreamEngine

        self.seconds = {"snapshot": 0.0, "restore": 0.0}
        self.calls = {"snapshot": 0, "restore": 0}
        self._saved = {name: getattr(StreamEngine, name) for name in self.seconds}

        def timed(name, fn):  # noqa: ANN001, ANN202
            def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
                t0 = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    self.seconds[name] += time.perf_counter() - t0
                    self.calls[name] += 1

            return wrapper

        for name, fn in self._saved.items():
            setattr(StreamEngine, name, timed(name, fn))
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        from model.engine import StreamEngine

        for name, fn in self._saved.items():
            setattr(StreamEngine, name, fn)


def run_mode(loaded, anno: Path, videos: Path, protocol: str, shared: bool, out: Path) -> dict:  # noqa: ANN001
    from app.benchmark.ovo_data import load_annotations, queries_for, select
    from app.benchmark.ovo_run import run_benchmark
    from app.benchmark.ovo_store import RunStore
    from model.engine import EngineOptions

    entries = load_annotations(anno)
    queries = [q for i in select(entries) for q in queries_for(entries[i], i)]
    store = RunStore(out, entries, {"protocol": protocol}, resume=False)
    options = EngineOptions(task="question", max_answer_tokens=64)
    with Timer() as timer:
        t0 = time.perf_counter()
        status = run_benchmark(loaded, queries, store, videos, protocol, options, shared)
        seconds = time.perf_counter() - t0
    assert status == "done", status
    forward = [q for q in queries if q.category == "forward"]
    return {
        "protocol": protocol,
        "shared_pass": shared,
        "queries": len(queries),
        "forward_probes": len(forward),
        "engine_steps": store.info["runs"][-1]["engine_steps"],
        "seconds": seconds,
        "seconds_per_query": seconds / len(queries),
        "forward_seconds_per_probe": sum(store.seconds[q.key] for q in forward) / max(1, len(forward)),
        "snapshot_restore_seconds": timer.seconds["snapshot"] + timer.seconds["restore"],
        "snapshots": timer.calls["snapshot"],
        "responses": dict(store.responses),
        "errors": len(store.errors),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_ovo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="demo", help="model id, folder or 'demo' (default: demo, on the CPU)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--videos", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=90, help="length of each clip")
    ap.add_argument("--probes", type=int, default=10, help="probes per forward entry")
    ap.add_argument("--protocols", default="offline,streaming")
    ap.add_argument("--quick", action="store_true", help="3 videos of 45 s")
    ap.add_argument("--json", type=Path, default=Path("bench/results/bench_ovo.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.videos, args.seconds = 3, 45

    import torch

    from model.loading import load_model
    from model.train.demo import demo_adapter_for

    torch.set_num_threads(1)
    adapter = demo_adapter_for(args.model, None)  # the demo's shapes adapter (built on first use, ~1-2 min)
    loaded = load_model(args.model, precision="auto", device=args.device, adapter=adapter)
    print(f"model {loaded.source}{' + ' + str(adapter) if adapter else ''} on {loaded.device} ({loaded.precision}); "
          f"{args.videos} videos of {args.seconds} s, {args.probes} probes per forward entry")  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory(prefix="streamo-bench-ovo-") as tmp:
        root = Path(tmp)
        anno = make_set(root, args.videos, args.seconds, args.probes)
        for protocol in args.protocols.split(","):
            for shared in (True, False):
                # a results folder of its own: the run file goes beside it, inside the temporary root
                out = root / "results" / f"{protocol}-{'shared' if shared else 'rerun'}" / "RESULTS.json"
                rows.append(run_mode(loaded, anno, root / "videos", protocol, shared, out))
                r = rows[-1]
                print(f"  {protocol:9} {'shared pass' if shared else 'rerun':11} {r['seconds']:7.1f} s", flush=True)
    print()
    head = f"{'protocol':<10}{'mode':<13}{'queries':>8}{'steps':>8}{'s/query':>9}{'s/probe':>9}{'snap+rest s':>12}"
    print(head)
    summary = []
    for protocol in args.protocols.split(","):
        shared, rerun = (
            next(r for r in rows if (r["protocol"], r["shared_pass"]) == (protocol, s)) for s in (True, False)
        )
        for r in (shared, rerun):
            print(f"{protocol:<10}{'shared pass' if r['shared_pass'] else 'rerun':<13}{r['queries']:>8}"
                  f"{r['engine_steps']:>8}{r['seconds_per_query']:>9.3f}{r['forward_seconds_per_probe']:>9.3f}"
                  f"{r['snapshot_restore_seconds']:>12.2f}")  # fmt: skip
        same = shared["responses"] == rerun["responses"]
        speedup = rerun["seconds"] / shared["seconds"]
        probe_speedup = rerun["forward_seconds_per_probe"] / shared["forward_seconds_per_probe"]
        steps = rerun["engine_steps"] / shared["engine_steps"]
        print(f"{protocol}: shared pass {speedup:.2f}x faster overall, {probe_speedup:.2f}x per forward probe, "
              f"{steps:.2f}x fewer engine steps; responses identical: {'yes' if same else 'NO'}")  # fmt: skip
        summary.append({"protocol": protocol, "speedup": speedup, "probe_speedup": probe_speedup,
                        "step_ratio": steps, "identical": same})  # fmt: skip
        if not same:
            print("ERROR: the shared pass changed a response")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    for r in rows:
        r.pop("responses")
    args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "rows": rows,
                                     "summary": summary}, indent=1))  # fmt: skip
    print(f"wrote {args.json}")
    return 0 if all(s["identical"] for s in summary) else 1


if __name__ == "__main__":
    raise SystemExit(main())
