"""The GPU path measured in one prepared run, without downloads (issue 17).

    python -m bench.gpu_check --out gpu_check_out            # everything, 3B and 7B (GPU; <= 8 min on an H100/H200)
    python -m bench.gpu_check --only engine,memory           # rerun some parts
    python -m bench.gpu_check --describe                     # no GPU: the real-shape models and their sizes
    python -m bench.gpu_check --dry-run --out /tmp/x         # no GPU: the same code at tiny shapes on the CPU

The models are the real shapes of Qwen2.5-VL-3B/7B-Instruct and Whisper small with random weights
(model/real_shapes.py; speed and memory do not depend on the weights' values), loaded through the
product's own ``load_model`` (NF4 with double quantisation, bf16 compute, the state tokens, the
kernel switch with its self-check). Parts (``--only``):

  selfcheck  the kernels' self-check on this device, then the CUDA kernel tests (pytest, GPU only)
  kernels    each kernel against bitsandbytes and bf16 cuBLAS at the real layer shapes (bench/bench_kernels.py)
  engine     silent second (vision, prefill, decision), response second with a 32-token answer (tokens/s),
             kernels on / off / bf16; peak memory with a full 120-turn window; per-second cost at 60, 600 and
             3,600 stream seconds (sampled: the window is filled just before each point)
  memory     the same engine with memory capped to a 24 GB and an 8 GB card: which model and precision fits
  train      QLoRA through the product's trainer at 8, 32 and 120 turns (bench/bench_train.py)
  voice      Whisper small fp16: end of speech to question entered, through the product's voice path
  vision     vision-tower frames per second at the Streamo pixel budget

Output: a table on stdout, ``gpu_check.json`` and ``gpu_check.md`` in ``--out`` (rewritten after every part,
so a run stopped at its time limit keeps what it measured). ``--dry-run`` sets TRITON_INTERPRET=1, uses
fp32/fp16 (the interpreter mishandles bf16), the tiny stand-in model and a few steps; its numbers mean
nothing, it proves the command works.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

PARTS = ("selfcheck", "kernels", "engine", "memory", "train", "voice", "vision")
TARGETS = {
    "silent_ms": {"7b": 100.0, "3b": 60.0},
    "decode_speedup": 2.0,
    "drift_3600": 1.2,
    "voice_ms": 600.0,
}
CARDS_GB = (24, 8)
GiB = 1024**3


class Run:
    """What one invocation measures: sizes, device, results per part; written after every part."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dry = args.dry_run
        self.out = Path(args.out)
        self.results: dict[str, Any] = {}
        self.rows: list[tuple[str, str, str]] = []  # (part, what, value) for the table
        import torch

        self.torch = torch
        self.cuda = torch.cuda.is_available() and not self.dry
        self.device = "cuda" if self.cuda else "cpu"
        self.models = ["tiny"] if self.dry else [m for m in args.models.split(",") if m]
        self.work = Path(tempfile.mkdtemp(prefix="streamo-gpu-check-"))
        # The dry run: as few steps as exercise every branch (kernels run in the interpreter: ~1 s a step).
        self.steps = 2 if self.dry else 12
        self.warm = 1 if self.dry else 2
        self.answer_tokens = 3 if self.dry else 32
        self.window = 3 if self.dry else 120  # turns in a full window
        self.points = (4, 8) if self.dry else (60, 600, 3600)
        self.cards = (8,) if self.dry else CARDS_GB
        self.trials = 1 if self.dry else 5
        self.folders: dict[str, Path] = {}

    def row(self, part: str, what: str, value: Any) -> None:
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        self.rows.append((part, what, text))
        print(f"  {part:9} {what:58} {text}", flush=True)

    def folder(self, name: str) -> Path:
        from model.real_shapes import write_qwen_folder

        if name not in self.folders:
            self.folders[name] = write_qwen_folder(name, self.work / f"qwen-{name}")
        return self.folders[name]

    def load(self, name: str, precision: str = "4bit", kernels: str = "auto"):
        from model.loading import load_model

        if self.dry:  # 4-bit on the CPU goes through bnb's CPU backend (trainable=True keeps it 4-bit)
            if precision == "bf16":
                precision = "fp32"
            loaded = load_model(self.folder(name), precision=precision, device="cpu", kernels="off",
                                trainable=precision == "4bit")  # fmt: skip
            loaded.model.eval()
            if kernels != "off" and precision == "4bit":
                from model.kernels.selfcheck import apply_checked

                report, _ = apply_checked(loaded.model, loaded.device, allow_cpu_interpreter=True,
                                          cache=self.work / "selfcheck.json")  # fmt: skip
                loaded.kernel_path = report.path
            return loaded
        return load_model(self.folder(name), precision=precision, device="cuda", kernels=kernels)

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def free(self) -> None:
        import gc

        gc.collect()
        if self.cuda:
            self.torch.cuda.empty_cache()

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        info = {"device": device_name(self.torch, self.cuda), "dry_run": self.dry, "when": time.strftime("%Y-%m-%d %H:%M"),
                "versions": versions(), "results": self.results}  # fmt: skip
        (self.out / "gpu_check.json").write_text(json.dumps(info, indent=1, default=str))
        lines = [f"# GPU check: {info['device']}, {info['when']}" + (" (DRY RUN: meaningless numbers)" if self.dry else ""),
                 "", f"versions: {info['versions']}", "", "| part | what | value |", "|---|---|---|"]  # fmt: skip
        lines += [f"| {p} | {w} | {v} |" for p, w, v in self.rows]
        (self.out / "gpu_check.md").write_text("\n".join(lines) + "\n")


def device_name(torch: Any, cuda: bool) -> str:
    return torch.cuda.get_device_name() if cuda else "cpu (dry run)"


def versions() -> str:
    out = []
    for m in ("torch", "transformers", "triton", "bitsandbytes", "peft", "accelerate"):
        try:
            out.append(f"{m} {__import__(m).__version__}")
        except Exception:  # noqa: BLE001
            out.append(f"{m} missing")
    return ", ".join(out)


# ---------------------------------------------------------------------------------------------
# Parts


def part_selfcheck(run: Run) -> dict:
    from model.kernels.selfcheck import run_selfcheck

    check = run_selfcheck(run.torch.device(run.device), None if run.cuda else run.torch.float32)
    for kind, err in check.errors.items():
        run.row("selfcheck", f"{kind}: rel. error vs reference", err)
    for kind, why in check.failed.items():
        run.row("selfcheck", f"{kind}: FAILED", why)
    res: dict[str, Any] = {"errors": check.errors, "failed": check.failed, "seconds": check.seconds}
    if run.cuda:  # the CUDA kernel tests, compiled, on this device
        files = ["tests/model/kernels/test_kernels_cuda.py", "tests/model/kernels/test_kernel_swap.py"]
        p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *files],
                           capture_output=True, text=True, timeout=240)  # fmt: skip
        tail = (p.stdout + p.stderr).strip().splitlines()[-1:] or ["(no output)"]
        res["pytest"] = {"rc": p.returncode, "summary": tail[0]}
        (run.out / "kernel_tests.log").write_text(p.stdout + p.stderr)
        run.row("selfcheck", "CUDA kernel tests (pytest)", tail[0])
    return res


def part_kernels(run: Run) -> dict:
    from bench import bench_kernels

    out = run.out / "kernels.json"
    model = run.models[0] if len(run.models) == 1 else "all"
    argv = ["--json", str(out)] + (["--dry-run-cpu"] if run.dry else ["--model", model])
    bench_kernels.main(argv)
    data = json.loads(out.read_text())
    res = {"copy_gbps": data["copy_gbps"], "models": {}}
    run.row("kernels", "copy bandwidth GB/s (read + write)", data["copy_gbps"])
    for tag, m in data["models"].items():
        mv = [r for r in m["rows"] if r["op"] == "nf4 matvec" and r["impl"] == "triton"]
        share = min(r["share"] for r in mv)
        est = m["decode_linear_ms_estimate"]
        res["models"][tag] = {"matvec_min_share": share, "decode_linear_ms": est}
        run.row("kernels", f"{tag} NF4 matvec min share of bandwidth (target >= 0.70)", share)
        run.row("kernels", f"{tag} decode Linear ms: triton / bnb / bf16",
                f"{est['triton']:.3f} / {est['bitsandbytes']:.3f} / {est['bf16']:.3f}")  # fmt: skip
    return res


def _frames(run: Run, n: int):
    from bench.bench_kernels import _frames

    w, h = (112, 112) if run.dry else (640, 360)
    return _frames(n, w, h)


def engine_seconds(run: Run, loaded: Any, threshold: float, steps: int, t0: int = 0, max_turns: int = 120,
                   warm: int | None = None) -> list[Any]:  # fmt: skip
    """Step a fresh engine ``warm + steps`` seconds from stream second ``t0``; the timed StepResults.
    Threshold 1: every second silent; 0: every second answers (``run.answer_tokens`` tokens)."""
    from model.engine import EngineOptions, StreamEngine

    warm = run.warm if warm is None else warm
    options = EngineOptions(threshold=threshold, max_answer_tokens=run.answer_tokens, max_turns=max_turns)
    eng = StreamEngine(loaded, options)
    out = []
    for i, f in enumerate(_frames(run, warm + steps)):
        r = eng.step(f, float(t0 + i)) if t0 else eng.step(f)
        if i >= warm:
            out.append(r)
    return out


def _med(results: list[Any], key: str) -> float:
    return statistics.median(r.timings.get(key, 0.0) for r in results)


def measure_engine(run: Run, loaded: Any) -> dict:
    silent = engine_seconds(run, loaded, 1.0, run.steps)
    resp = engine_seconds(run, loaded, 0.0, max(1, run.steps // 4))
    toks = sum(r.n_answer_tokens for r in resp)
    dec = sum(r.timings.get("decode", 0.0) for r in resp)
    return {"path": loaded.kernel_path, "silent_ms": _med(silent, "total"), "vision_ms": _med(silent, "vision"),
            "prefill_ms": _med(silent, "prefill"), "decision_ms": _med(silent, "decision"),
            "response_ms": _med(resp, "total"), "answer_tokens": toks,
            "tokens_per_s": toks / (dec * 1e-3) if dec else float("nan")}  # fmt: skip


def part_engine(run: Run) -> dict:
    from model.kernels.patch import apply_kernels

    torch = run.torch
    res: dict[str, Any] = {}
    for name in run.models:
        r: dict[str, Any] = {}
        loaded = run.load(name, "4bit", "auto")
        on_path = loaded.kernel_path
        r["nf4_kernels"] = measure_engine(run, loaded)
        apply_kernels(loaded.model, "off")
        loaded.kernel_path = "bitsandbytes"
        r["nf4_bnb"] = measure_engine(run, loaded)
        if on_path.startswith("triton"):  # back on for the long-stream samples
            apply_kernels(loaded.model, "triton", allow_cpu_interpreter=run.dry)
            loaded.kernel_path = on_path
        # Peak memory with a full window, and the per-second cost at sampled stream lengths.
        curve = {}
        for point in run.points:
            if run.cuda:
                torch.cuda.reset_peak_memory_stats()
            steps = engine_seconds(run, loaded, 1.0, run.steps, t0=max(1, point - run.window - run.steps),
                                   max_turns=run.window, warm=run.window)  # fmt: skip
            curve[point] = statistics.median(s.timings["total"] for s in steps)
            if run.cuda and "peak_gb_window" not in r:
                r["peak_gb_window"] = torch.cuda.max_memory_allocated() / GiB
        r["per_second_ms"] = curve
        r["drift_last_vs_first"] = curve[run.points[-1]] / curve[run.points[0]]
        del loaded
        run.free()
        bf16 = run.load(name, "bf16", "off")
        r["bf16"] = measure_engine(run, bf16)
        del bf16
        run.free()
        res[name] = r
        k, b, f = r["nf4_kernels"], r["nf4_bnb"], r["bf16"]
        target = TARGETS["silent_ms"].get(name)
        run.row("engine", f"{name} silent second ms: NF4+kernels / NF4 bnb / bf16" + (f" (target < {target:g})" if target else ""),
                f"{k['silent_ms']:.1f} / {b['silent_ms']:.1f} / {f['silent_ms']:.1f}")  # fmt: skip
        run.row("engine", f"{name} split vision / prefill / decision ms (kernels)",
                f"{k['vision_ms']:.1f} / {k['prefill_ms']:.1f} / {k['decision_ms']:.1f}")  # fmt: skip
        run.row("engine", f"{name} answer tokens/s: kernels / bnb / bf16",
                f"{k['tokens_per_s']:.1f} / {b['tokens_per_s']:.1f} / {f['tokens_per_s']:.1f}")  # fmt: skip
        run.row("engine", f"{name} decoding speed-up over bnb (target >= {TARGETS['decode_speedup']:g}x)",
                k["tokens_per_s"] / b["tokens_per_s"] if b["tokens_per_s"] else float("nan"))  # fmt: skip
        run.row("engine", f"{name} per-second ms at {', '.join(map(str, run.points))} s",
                " / ".join(f"{v:.1f}" for v in curve.values()))  # fmt: skip
        run.row(
            "engine",
            f"{name} cost at {run.points[-1]} s over {run.points[0]} s (target <= 1.2)",
            r["drift_last_vs_first"],
        )
        if "peak_gb_window" in r:
            run.row("engine", f"{name} peak GB, NF4, {run.window}-turn window", r["peak_gb_window"])
    return res


def part_memory(run: Run) -> dict:
    """Load uncapped (the random-weights build materialises bf16 before quantising, which a real
    checkpoint load does not), then cap the process to the card and run a full window."""
    torch = run.torch
    res: dict[str, Any] = {}
    total = torch.cuda.get_device_properties(0).total_memory if run.cuda else 0
    for name in run.models:
        for precision in ("4bit", "bf16"):
            for card in run.cards:
                key = f"{name} {precision} {card} GB"
                loaded = None
                try:
                    loaded = run.load(name, precision, "auto" if precision == "4bit" else "off")
                    resident = torch.cuda.memory_allocated() / GiB if run.cuda else 0.0
                    if run.cuda:
                        torch.cuda.empty_cache()
                        torch.cuda.set_per_process_memory_fraction(min(1.0, card * GiB / total))
                        torch.cuda.reset_peak_memory_stats()
                    if resident > card:
                        raise MemoryError(f"weights alone take {resident:.1f} GB")
                    steps = engine_seconds(run, loaded, 1.0, run.steps, max_turns=run.window, warm=run.window)
                    peak = torch.cuda.max_memory_allocated() / GiB if run.cuda else 0.0
                    res[key] = {"fits": True, "resident_gb": resident, "peak_gb": peak,
                                "silent_ms": statistics.median(s.timings["total"] for s in steps)}  # fmt: skip
                    run.row("memory", f"{key}: fits, peak GB / silent ms", f"{peak:.2f} / {res[key]['silent_ms']:.1f}")
                except Exception as e:  # noqa: BLE001 - out of memory is the finding
                    res[key] = {
                        "fits": False,
                        "why": f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}",
                    }
                    run.row("memory", f"{key}: does NOT fit", res[key]["why"][:80])
                finally:
                    del loaded
                    if run.cuda:
                        torch.cuda.set_per_process_memory_fraction(1.0)
                    run.free()
    return res


def part_train(run: Run) -> dict:
    import math

    from bench.bench_train import make_clips, run_window

    turns = (2, 4) if run.dry else (8, 32, 120)
    size = (112, 112) if run.dry else (448, 448)
    data = make_clips(run.work / "clips", math.lcm(*turns), size)
    res: dict[str, Any] = {}
    for name in run.models:
        for n in turns:
            key = f"{name} {n} turns"
            try:
                row = run_window(str(run.folder(name)), data, n, 1 if run.dry else 2, run.work / f"train-{name}",
                                 run.device, precision="4bit", gradient_checkpointing=True,
                                 **({"max_pixels": 112 * 112} if run.dry else {}))  # fmt: skip
                res[key] = row
                run.row("train", f"{key}: s/step / peak GB", f"{row['s_per_step']:.2f} / {row['peak_gb']:.2f}")
            except Exception as e:  # noqa: BLE001 - out of memory at 120 turns is a finding
                res[key] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"}
                run.row("train", f"{key}: FAILED", res[key]["error"][:80])
            run.free()
    return res


def _question_audio(run: Run):
    """A spoken question: the WAV scripts/gpu_check.sh prepared (the GPU machine has no speech
    synthesiser), else synthesised here."""
    import numpy as np

    from app.voice.audio import resample

    wav = Path(run.args.voice_wav) if run.args.voice_wav else None
    if wav is not None and wav.is_file():
        from app.voice.wav import read_wav

        speech, rate = read_wav(wav)
    else:
        from app.voice.synth import synthesize

        speech, rate = synthesize("What is the person holding in their left hand?")
    speech = resample(speech, rate, 16000)
    lead, tail = 1.0, 2.0
    audio = np.concatenate([np.zeros(int(lead * 16000), np.float32), speech, np.zeros(int(tail * 16000), np.float32)])
    audio += np.random.default_rng(0).standard_normal(len(audio)).astype(np.float32) * 0.003
    return audio, lead + len(speech) / 16000


def part_voice(run: Run) -> dict:
    import numpy as np

    from app.voice.asr import Recognizer
    from bench.bench_voice import measure_end_to_question
    from model.real_shapes import write_whisper_folder

    name = "tiny" if run.dry else "small"
    folder = write_whisper_folder(name, run.work / f"whisper-{name}")
    audio, speech_end = _question_audio(run)
    question = audio[int(1.0 * 16000) : int(speech_end * 16000)]  # the speech alone: its end is the end of speech
    recognizer = Recognizer(str(folder), device=run.device, language="en")
    recognizer.load()

    class AnyWords:
        """The real recogniser, whose random weights may decode to no words at all (VoiceInput then,
        rightly, enters no question): the timing is the recognition's, whatever it says."""

        def transcribe(self, samples):
            return recognizer.transcribe(samples).strip() or "(random weights: no words)"

        def warm_up(self):
            recognizer.transcribe(np.zeros(16000, np.float32))

    # Through the real callback path (bench_voice's stand-in PortAudio at real speed), first and warm.
    first, warm = measure_end_to_question(AnyWords, question, run.trials)
    lat = sorted(warm)
    res_first = None if first is None else 1000 * first
    res = {"model": f"whisper-{name} (real shape, random weights)", "latency_ms": [1000 * x for x in lat]}
    res["first_ms"] = res_first
    med = 1000 * statistics.median(lat) if lat else float("nan")
    res["median_ms"] = med
    run.row("voice", f"whisper-{name} end of speech -> question ms (target < 600)", med if lat else "heard nothing")
    return res


def part_vision(run: Run) -> dict:
    import numpy as np

    from model import hf_compat as hf

    torch = run.torch
    res: dict[str, Any] = {}
    for name in run.models:
        loaded = run.load(name, "4bit", "auto")
        frames = [f for f in _frames(run, 8)]
        inputs = loaded.processor.image_processor(images=frames, return_tensors="pt")
        pv = inputs["pixel_values"].to(loaded.device, loaded.dtype)
        grid = inputs["image_grid_thw"].to(loaded.device)
        vlm = loaded.model.model if hasattr(loaded.model, "model") else loaded.model
        with torch.inference_mode():
            hf.image_features(vlm, pv, grid)  # warm-up
            run.sync()
            t = time.perf_counter()
            reps = 1 if run.dry else 5
            for _ in range(reps):
                hf.image_features(vlm, pv, grid)
            run.sync()
        fps = reps * len(frames) / (time.perf_counter() - t)
        tokens = int(np.prod(grid[0].tolist()) // 4)
        res[name] = {"frames_per_s_batch8": fps, "visual_tokens_per_frame": tokens}
        run.row("vision", f"{name} frames/s (batches of 8, {tokens} visual tokens per frame)", fps)
        del loaded
        run.free()
    return res


PART_FNS = {"selfcheck": part_selfcheck, "kernels": part_kernels, "engine": part_engine, "memory": part_memory,
            "train": part_train, "voice": part_voice, "vision": part_vision}  # fmt: skip


# ---------------------------------------------------------------------------------------------


def describe_models() -> list[dict]:
    from model.real_shapes import QWEN_SHAPES, WHISPER_SHAPES, describe

    rows = [describe("qwen", n) for n in QWEN_SHAPES if n != "tiny"]
    rows += [describe("whisper", n) for n in WHISPER_SHAPES if n != "tiny"]
    print(f"{'model':34} {'parameters':>15} {'published':>15}  configuration")
    for d in rows:
        s = d["shape"]
        if d["kind"] == "qwen":
            cfg = (f"hidden {s['hidden']}, {s['layers']} layers, {s['heads']}/{s['kv_heads']} heads, MLP {s['intermediate']}, "
                   f"vocab {s['vocab_rows']}{' tied' if s['tie'] else ''}; vision {s['vision_depth']}x{s['vision_hidden']} "
                   f"(full attention at {list(s['fullatt'])}, window 112), {d['vision_params']:,} params")  # fmt: skip
        else:
            cfg = f"d_model {s['d_model']}, {s['layers']}+{s['layers']} layers, {s['heads']} heads, ffn {s['ffn']}, vocab 51865"
        ok = "=" if d["params"] == d["published_params"] else "!="
        print(f"{d['hub_id']:34} {d['params']:>15,} {ok} {d['published_params']:>13,}  {cfg}")
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="gpu_check_out", help="folder for gpu_check.json / gpu_check.md")
    ap.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts: {', '.join(PARTS)}")
    ap.add_argument("--models", default="3b,7b", help="real shapes to measure (3b, 7b)")
    ap.add_argument("--describe", action="store_true", help="no GPU: the real-shape models and parameter counts")
    ap.add_argument("--dry-run", action="store_true", help="no GPU: the same code at tiny shapes on the CPU")
    ap.add_argument("--voice-wav", default=os.environ.get("STREAMO_QUESTION_WAV"), help="spoken question (WAV)")
    args = ap.parse_args(argv)
    unknown = set(args.only.split(",")) - set(PARTS)
    if unknown:
        ap.error(f"unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.describe:
        describe_models()
        return 0
    if args.dry_run:
        if "model.kernels.nf4" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
            print("--dry-run must start in a fresh process (the kernels are already compiled)")
            return 2
        os.environ["TRITON_INTERPRET"] = "1"  # before any kernel module is imported
        os.environ.setdefault("STREAMO_LIVE_THREADS", "1")
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here - nothing measured (--describe and --dry-run need none)")
        return 0
    run = Run(args)
    print(
        f"gpu_check on {device_name(torch, run.cuda)}; {versions()}"
        + ("  [DRY RUN: tiny shapes, CPU]" if run.dry else "")
    )
    failed = []
    try:
        for part in [p for p in PARTS if p in args.only.split(",")]:
            t0 = time.perf_counter()
            print(f"[{part}]", flush=True)
            try:
                run.results[part] = PART_FNS[part](run)
            except Exception as e:  # noqa: BLE001 - one part failing must not cost the others their minutes
                run.results[part] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-3000:]}
                run.row(part, "FAILED", f"{type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}")
                failed.append(part)
            run.results.setdefault(part, {})["seconds"] = time.perf_counter() - t0
            run.save()
    finally:
        shutil.rmtree(run.work, ignore_errors=True)  # the random-weights folders (Whisper small: 0.5 GB)
    print(f"\n{'part':9} {'what':58} value")
    for p, w, v in run.rows:
        print(f"{p:9} {w:58} {v}")
    print(
        f"\nwritten: {run.out / 'gpu_check.json'}, {run.out / 'gpu_check.md'}"
        + (f"; FAILED parts: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
