"""GPU benchmark of the Triton kernels (issue 5).

    python -m bench.bench_kernels                       # kernel tables at Qwen2.5-VL-7B and -3B shapes
    python -m bench.bench_kernels --model 7b --checkpoint /path/to/Qwen2.5-VL-7B   # + end-to-end engine timings
    python -m bench.bench_kernels --compile-only        # no GPU needed: compile every kernel variant for sm_90 and
                                                        # print registers / spills / shared memory from ptxas

Per kernel: median time (triton.testing.do_bench, L2 flushed between runs), achieved GB/s over the bytes the op
must move, and that as a share of this device's measured copy bandwidth (device-to-device copy of 1 GiB), next to
bitsandbytes' path and a bf16 torch/cuBLAS baseline. Without a CUDA GPU it prints that and exits 0.

Targets (H100): NF4 matvec >= 70% of measured bandwidth; decoding >= 2x bitsandbytes tokens/s; a silent second of
7B < 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

import torch

# Qwen2.5-VL language-model sizes (config.json of the released checkpoints).
MODELS = {
    "7b": dict(hidden=3584, inter=18944, heads=28, kv_heads=4, head_dim=128, layers=28, vocab=152064),
    "3b": dict(hidden=2048, inter=11008, heads=16, kv_heads=2, head_dim=128, layers=36, vocab=151936),
}
PREFILL_MS = (32, 128, 300)  # tokens of one turn's prefill
NORM_ROWS = (1, 300)  # rows of the elementwise kernels: a decode token, a prefill
# Harness self-check without a GPU (`--dry-run-cpu`): tiny shapes through the Triton interpreter, fp16 (the
# interpreter mishandles bf16), a wall-clock timer. Its numbers mean nothing; it only exercises this code.
TINY = dict(hidden=64, inter=128, heads=4, kv_heads=2, head_dim=16, layers=2, vocab=512)
DEVICE = "cuda"
DTYPE = torch.bfloat16
TARGET_MATVEC_SHARE = 0.70
TARGET_DECODE_SPEEDUP = 2.0
TARGET_SILENT_MS_7B = 100.0


def layer_shapes(cfg: dict) -> list[tuple[str, int, int]]:
    """(name, out N, in K) of one decoder layer's Linear layers."""
    h, i, kv = cfg["hidden"], cfg["inter"], cfg["kv_heads"] * cfg["head_dim"]
    return [("q_proj", h, h), ("k_proj", kv, h), ("v_proj", kv, h), ("o_proj", h, h),
            ("gate_proj", i, h), ("up_proj", i, h), ("down_proj", h, i)]  # fmt: skip


@dataclass
class Row:
    op: str
    shape: str
    impl: str
    ms: float
    gbps: float
    share: float  # of measured copy bandwidth
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------
def bench_ms(fn, warmup: int = 25, rep: int = 100) -> float:
    if DEVICE != "cuda":  # dry run: median wall time of a few calls
        fn()
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))


def copy_bandwidth_gbps(nbytes: int = 1 << 30) -> float:
    src = torch.empty(nbytes, dtype=torch.uint8, device=DEVICE)
    dst = torch.empty_like(src)
    ms = bench_ms(lambda: dst.copy_(src), warmup=5, rep=50)
    return 2 * nbytes / (ms * 1e-3) / 1e9  # read + write


def _row(op, shape, impl, ms, nbytes, bw, **extra) -> Row:
    gbps = nbytes / (ms * 1e-3) / 1e9
    return Row(op, shape, impl, ms, gbps, gbps / bw, extra)


# --------------------------------------------------------------------------------------------------
# Kernel benchmarks
# --------------------------------------------------------------------------------------------------
def _linear4bit(n: int, k: int, w_bf16: torch.Tensor):
    import bitsandbytes as bnb

    lin = bnb.nn.Linear4bit(k, n, bias=False, compute_dtype=DTYPE, quant_type="nf4", compress_statistics=True)
    lin.weight = bnb.nn.Params4bit(w_bf16.cpu(), requires_grad=False, quant_type="nf4", compress_statistics=True)
    lin = lin.to(DEVICE).eval()
    lin.support_avx512bf16_for_cpu = False  # dry run: keep bnb's storage (its CPU path would repack it)
    return lin


def _nf4_bytes(lin) -> int:
    qs = lin.weight.quant_state
    b = lin.weight.numel() * lin.weight.element_size() + qs.absmax.numel() * qs.absmax.element_size()
    if qs.nested:
        b += qs.state2.absmax.numel() * 4 + qs.state2.code.numel() * 4
    return b + qs.code.numel() * 4


def bench_nf4(cfg: dict, bw: float, tag: str) -> tuple[list[Row], dict]:
    from model.kernels.nf4 import linear4bit_triton_forward

    rows: list[Row] = []
    per_layer = {"triton": 0.0, "bitsandbytes": 0.0, "bf16": 0.0}
    for name, n, k in layer_shapes(cfg):
        w = torch.randn(n, k, device=DEVICE, dtype=DTYPE) * 0.02
        lin = _linear4bit(n, k, w)
        wbytes = _nf4_bytes(lin)
        shape = f"{tag} {name} {n}x{k}"
        for m in (1, *PREFILL_MS):
            x = torch.randn(m, k, device=DEVICE, dtype=DTYPE)
            with torch.inference_mode():
                ours = linear4bit_triton_forward(lin, x)
                ref = lin(x)
                err = float((ours.float() - ref.float()).abs().max() / ref.float().abs().max().clamp_min(1e-6))
                io = 2 * m * (k + n)
                t_ours = bench_ms(lambda x=x, lin=lin: linear4bit_triton_forward(lin, x))
                t_bnb = bench_ms(lambda x=x, lin=lin: lin(x))
                t_bf16 = bench_ms(lambda x=x, w=w: torch.nn.functional.linear(x, w))
            op = "nf4 matvec" if m == 1 else f"nf4 matmul M={m}"
            flops = 2 * m * n * k
            rows.append(
                _row(op, shape, "triton", t_ours, wbytes + io, bw, rel_err_vs_bnb=err, tflops=flops / t_ours / 1e9)
            )
            rows.append(_row(op, shape, "bitsandbytes", t_bnb, wbytes + io, bw, tflops=flops / t_bnb / 1e9))
            rows.append(_row(op, shape, "bf16 cuBLAS", t_bf16, 2 * n * k + io, bw, tflops=flops / t_bf16 / 1e9))
            if m == 1:
                per_layer["triton"] += t_ours
                per_layer["bitsandbytes"] += t_bnb
                per_layer["bf16"] += t_bf16
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
    return rows, per_layer


def bench_elementwise(cfg: dict, bw: float, tag: str) -> list[Row]:
    from model.kernels.rmsnorm import rms_norm, rms_norm_reference
    from model.kernels.silu_mul import silu_mul, silu_mul_reference
    from model.kernels.state_head import state_probs, state_probs_reference

    rows: list[Row] = []
    h, i, bf = cfg["hidden"], cfg["inter"], DTYPE
    w = torch.randn(h, device=DEVICE, dtype=bf)
    for m in NORM_ROWS:
        x = torch.randn(m, h, device=DEVICE, dtype=bf)
        r = torch.randn(m, h, device=DEVICE, dtype=bf)
        nb = 2 * m * h * 2 + 2 * h
        rows.append(_row("rmsnorm", f"{tag} {m}x{h}", "triton", bench_ms(lambda x=x: rms_norm(x, w, 1e-6)), nb, bw))
        rows.append(
            _row(
                "rmsnorm", f"{tag} {m}x{h}", "torch (HF)", bench_ms(lambda x=x: rms_norm_reference(x, w, 1e-6)), nb, bw
            )
        )
        nb = 4 * m * h * 2 + 2 * h
        rows.append(
            _row(
                "add+rmsnorm",
                f"{tag} {m}x{h}",
                "triton",
                bench_ms(lambda x=x, r=r: rms_norm(x, w, 1e-6, residual=r)),
                nb,
                bw,
            )
        )
        rows.append(
            _row(
                "add+rmsnorm",
                f"{tag} {m}x{h}",
                "torch (HF)",
                bench_ms(lambda x=x, r=r: rms_norm_reference(x, w, 1e-6, residual=r)),
                nb,
                bw,
            )
        )
        g = torch.randn(m, i, device=DEVICE, dtype=bf)
        u = torch.randn(m, i, device=DEVICE, dtype=bf)
        nb = 3 * m * i * 2
        rows.append(_row("silu*mul", f"{tag} {m}x{i}", "triton", bench_ms(lambda g=g, u=u: silu_mul(g, u)), nb, bw))
        rows.append(
            _row("silu*mul", f"{tag} {m}x{i}", "torch", bench_ms(lambda g=g, u=u: silu_mul_reference(g, u)), nb, bw)
        )
    head = torch.randn(cfg["vocab"], h, device=DEVICE, dtype=bf) * 0.02
    hid = torch.randn(h, device=DEVICE, dtype=bf)
    ids = [cfg["vocab"] - 3, cfg["vocab"] - 2, cfg["vocab"] - 1]
    nb = 3 * h * 2 + h * 2
    rows.append(
        _row("state head", f"{tag} 3x{h}", "triton (1 launch)", bench_ms(lambda: state_probs(hid, head, ids)), nb, bw)
    )
    rows.append(
        _row(
            "state head",
            f"{tag} 3x{h}",
            "torch rows+softmax",
            bench_ms(lambda: state_probs_reference(hid, head, ids)),
            nb,
            bw,
        )
    )
    full = lambda: torch.softmax(torch.nn.functional.linear(hid, head).float(), -1)  # noqa: E731
    rows.append(
        _row("state head", f"{tag} {cfg['vocab']}x{h}", "torch full LM head", bench_ms(full), cfg["vocab"] * h * 2, bw)
    )
    return rows


# --------------------------------------------------------------------------------------------------
# End to end (a real checkpoint through the streaming engine)
# --------------------------------------------------------------------------------------------------
def _frames(n: int, w: int = 640, h: int = 360):
    import numpy as np

    for t in range(n):  # a grey frame with a moving coloured square: deterministic, a little motion
        f = np.full((h, w, 3), 96, dtype=np.uint8)
        x = (40 * t) % (w - 80)
        f[140:220, x : x + 80] = (200, 60, 40)
        yield f


def bench_end_to_end(checkpoint: str, steps: int = 12, answer_steps: int = 4) -> dict:
    from model.engine import EngineOptions, StreamEngine
    from model.kernels.patch import apply_kernels
    from model.loading import load_model

    loaded = load_model(checkpoint, precision="4bit", device="cuda", kernels="off")
    out: dict = {}
    for mode in ("off", "triton"):
        report = apply_kernels(loaded.model, mode)
        loaded.kernel_path = "bitsandbytes" if mode == "off" else report.path
        res: dict = {"path": loaded.kernel_path, "skipped": len(report.skipped)}
        eng = StreamEngine(loaded, EngineOptions(threshold=1.0, max_turns=1000))  # P(Response) >= 1: silent
        totals, parts = [], {"vision": [], "prefill": [], "decision": []}
        for i, f in enumerate(_frames(steps + 3)):
            r = eng.step(f)
            if i >= 3:  # warm-up: compilation, autotuning, allocator
                totals.append(r.timings["total"])
                for k in parts:
                    parts[k].append(r.timings.get(k, 0.0))
        res["silent_second_ms"] = statistics.median(totals)
        res.update({f"{k}_ms": statistics.median(v) for k, v in parts.items()})
        eng = StreamEngine(loaded, EngineOptions(threshold=0.0, max_answer_tokens=64, max_turns=1000))  # respond
        toks, dec_ms = 0, 0.0
        for i, f in enumerate(_frames(answer_steps + 1)):
            r = eng.step(f)
            if i >= 1:
                toks += r.n_answer_tokens
                dec_ms += r.timings["decode"]
        res["answer_tokens"] = toks
        res["answer_tok_per_s"] = toks / (dec_ms * 1e-3) if dec_ms else float("nan")
        out[mode] = res
        torch.cuda.synchronize()
    apply_kernels(loaded.model, "off")
    return out


# --------------------------------------------------------------------------------------------------
# Static compile report (no GPU needed)
# --------------------------------------------------------------------------------------------------
_TT = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32", torch.uint8: "u8", torch.int64: "i64"}


def aot_compile(
    kernel, arg_types: dict[str, str], constexprs: dict, *, num_warps: int = 4, num_stages: int = 3, arch: int = 90
):
    """Compile a @triton.jit kernel for an NVIDIA target without a GPU (Triton's bundled ptxas)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    sig = {p.name: ("constexpr" if p.is_constexpr else arg_types[p.name]) for p in kernel.params}
    src = ASTSource(kernel, sig, constexprs)
    return triton.compile(
        src, target=GPUTarget("cuda", arch, 32), options={"num_warps": num_warps, "num_stages": num_stages}
    )


def ptxas_usage(ptx: str, arch: int = 90) -> dict:
    """Registers / spill bytes / stack of the compiled kernel, from `ptxas -v`."""
    from triton.backends.nvidia.compiler import get_ptxas, sm_arch_from_capability

    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "k.ptx")
        with open(p, "w") as f:
            f.write(ptx)
        cmd = [get_ptxas(arch).path, "-v", f"--gpu-name={sm_arch_from_capability(arch)}", p, "-o", p + ".o"]
        log = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    regs = re.search(r"Used (\d+) registers", log)
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    return {
        "registers": int(regs.group(1)) if regs else -1,
        "spill_stores": int(spill.group(1)) if spill else -1,
        "spill_loads": int(spill.group(2)) if spill else -1,
    }


def kernel_variants(full: bool = False) -> list[tuple[str, object, dict, dict, int, int]]:
    """(label, kernel, arg types, constexprs, num_warps, num_stages) of the variants the app can launch.
    `full` adds every autotune config of the NF4 kernels (bf16, double quant, aligned)."""
    from model.kernels import nf4, rmsnorm, silu_mul, state_head

    def nf4_types(dt: str, extra: dict | None = None) -> dict:
        t = dict(x_ptr=f"*{dt}", w_ptr="*u8", code_ptr="*fp32", absmax_ptr="*u8", code2_ptr="*fp32",
                 absmax2_ptr="*fp32", offset_ptr="*fp32", bias_ptr=f"*{dt}", xa_ptr=f"*{dt}", lb_ptr=f"*{dt}",
                 y_ptr=f"*{dt}", lora_scale="fp32", M="i32", N="i32", K="i32", LORA_R_REAL="i32", stride_xm="i32",
                 stride_ym="i32", stride_xam="i32", stride_lbn="i32", M_BUCKET="i32")  # fmt: skip
        t.update(extra or {})
        return t

    out = []
    base = dict(BLOCKSIZE=64, NESTED_BS=256, HAS_BIAS=False, LORA_R=16)
    mv = {True: dict(BLOCK_N=16, BLOCK_K2=128), False: dict(BLOCK_N=16, BLOCK_K2=128)}
    mm = {True: dict(BLOCK_M=32, BLOCK_N=64, BLOCK_K2=32), False: dict(BLOCK_M=32, BLOCK_N=64, BLOCK_K2=32)}
    for dt in ("bf16", "fp16", "fp32"):
        for nested in (True, False):
            for aligned in (True, False):  # aligned: K % 64 == 0 (every Qwen2.5-VL layer); gather: other even K
                for lora in (False, True):
                    if dt != "bf16" and (lora or not nested):  # keep the set small: dtypes x main path
                        continue
                    types = nf4_types(dt, None if nested else {"absmax_ptr": "*fp32"})
                    c = dict(base, NESTED=nested, HAS_LORA=lora)
                    tag = f"{dt} {'dq' if nested else 'absmax'} {'aligned' if aligned else 'gather'}{' lora' if lora else ''}"
                    kv = dict(c, ALIGNED=aligned, **mv[aligned])
                    out.append((f"nf4_matvec {tag}", nf4._nf4_matvec_kernel, types, kv, 4, 3))
                    km = dict(c, ALIGNED=aligned, FP32_DOT=dt == "fp32", **mm[aligned])
                    out.append((f"nf4_matmul {tag}", nf4._nf4_matmul_kernel, types, km, 4, 3))
    if full:  # every autotune config as the app runs it on Qwen2.5-VL shapes (bf16, double quant, K % 64 == 0)
        c = dict(base, NESTED=True, HAS_LORA=False)
        for cfg in nf4._MATVEC_CONFIGS:
            kv = dict(c, **cfg.kwargs)
            kv["ALIGNED"] = nf4._matvec_aligned(dict(kv, K=3584))
            label = f"nf4_matvec cfg {cfg.kwargs}{' aligned' if kv['ALIGNED'] else ''}"
            out.append((label, nf4._nf4_matvec_kernel, nf4_types("bf16"), kv, cfg.num_warps, cfg.num_stages))
        for cfg in nf4._MATMUL_CONFIGS:
            km = dict(c, FP32_DOT=False, **cfg.kwargs)
            km["ALIGNED"] = nf4._matmul_aligned(dict(km, K=3584))
            label = f"nf4_matmul cfg {cfg.kwargs}{' aligned' if km['ALIGNED'] else ''}"
            out.append((label, nf4._nf4_matmul_kernel, nf4_types("bf16"), km, cfg.num_warps, cfg.num_stages))
    for dt in ("bf16", "fp16", "fp32"):
        rt = dict(x_ptr=f"*{dt}", res_ptr=f"*{dt}", w_ptr=f"*{dt}", y_ptr=f"*{dt}", sum_ptr=f"*{dt}", stride_x="i32",
                  stride_res="i32", stride_y="i32", stride_sum="i32", n_cols="i32", eps="fp32")  # fmt: skip
        for res in (False, True):
            out.append(
                (
                    f"rmsnorm {dt}{' +residual' if res else ''} 4096",
                    rmsnorm._rms_norm_kernel,
                    rt,
                    dict(HAS_RESIDUAL=res, BLOCK_SIZE=4096),
                    8,
                    1,
                )
            )
        st = dict(g_ptr=f"*{dt}", u_ptr=f"*{dt}", y_ptr=f"*{dt}", numel="i32")
        out.append((f"silu_mul {dt}", silu_mul._silu_mul_kernel, st, dict(BLOCK=1024), 4, 1))
        ht = dict(
            h_ptr=f"*{dt}",
            w_ptr=f"*{dt}",
            ids_ptr="*i64",
            logits_ptr="*fp32",
            probs_ptr="*fp32",
            H="i32",
            S="i32",
            stride_wv="i32",
        )
        out.append((f"state_head {dt}", state_head._state_head_kernel, ht, dict(S_PAD=4, BLOCK_H=1024), 8, 1))
    return out


def compile_report(arch: int = 90, full: bool = False, only: str | None = None) -> list[dict]:
    rows = []
    for label, kern, types, consts, warps, stages in kernel_variants(full):
        if only and only not in label:
            continue
        t0 = time.perf_counter()
        k = aot_compile(kern, types, consts, num_warps=warps, num_stages=stages, arch=arch)
        usage = ptxas_usage(k.asm["ptx"], arch)
        rows.append(dict(kernel=label, warps=warps, stages=stages, shared=int(k.metadata.shared), **usage,
                         compile_s=round(time.perf_counter() - t0, 2)))  # fmt: skip
    return rows


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------
def print_rows(rows: list[Row]) -> None:
    print(f"{'op':<22} {'shape':<28} {'impl':<20} {'ms':>9} {'GB/s':>8} {'%BW':>6} {'TFLOP/s':>8} {'rel err':>8}")
    for r in rows:
        tf = r.extra.get("tflops")
        err = r.extra.get("rel_err_vs_bnb")
        print(
            f"{r.op:<22} {r.shape:<28} {r.impl:<20} {r.ms:>9.4f} {r.gbps:>8.1f} {100 * r.share:>5.1f}% "
            f"{'' if tf is None else f'{tf:8.2f}':>8} {'' if err is None else f'{err:8.1e}':>8}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_kernels", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=[*MODELS, "all"], default="all", help="which Qwen2.5-VL shapes")
    ap.add_argument("--checkpoint", default=os.environ.get("STREAMO_CHECKPOINT"), help="real checkpoint for end-to-end")
    ap.add_argument("--compile-only", action="store_true", help="no GPU: compile for --arch and print ptxas usage")
    ap.add_argument("--arch", type=int, default=90, help="compute capability for --compile-only (90 = H100)")
    ap.add_argument("--all-configs", action="store_true", help="--compile-only: every autotune config too")
    ap.add_argument("--only", default=None, help="--compile-only: kernels whose label contains this")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--dry-run-cpu", action="store_true", help="no GPU: run this harness on tiny shapes (interpreter)")
    args = ap.parse_args(argv)

    if args.compile_only:
        if os.environ.get("TRITON_INTERPRET") == "1":
            print("--compile-only needs compiled kernels: unset TRITON_INTERPRET")
            return 2
        rows = compile_report(args.arch, args.all_configs, args.only)
        print(f"Triton AOT compile for sm_{args.arch} (no GPU used): registers/spills from ptxas -v")
        print(f"{'kernel':<64} {'warps':>5} {'stages':>6} {'regs':>5} {'spill st/ld':>12} {'smem B':>7} {'s':>5}")
        for r in rows:
            print(f"{r['kernel']:<64} {r['warps']:>5} {r['stages']:>6} {r['registers']:>5} "
                  f"{r['spill_stores']:>5}/{r['spill_loads']:<6} {r['shared']:>7} {r['compile_s']:>5}")  # fmt: skip
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)
        return 0

    global DEVICE, DTYPE, PREFILL_MS, NORM_ROWS
    models = MODELS if args.model == "all" else {args.model: MODELS[args.model]}
    if args.dry_run_cpu:
        if "model.kernels.nf4" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
            print("--dry-run-cpu must start in a fresh process (kernels already compiled)")
            return 2
        os.environ["TRITON_INTERPRET"] = "1"  # before the kernel modules are imported (they decorate at import)
        DEVICE, DTYPE, PREFILL_MS, NORM_ROWS = "cpu", torch.float16, (19,), (1, 3)
        models = {"tiny": TINY}
        print("DRY RUN on the CPU through the Triton interpreter: tiny shapes, numbers are meaningless")
    elif not torch.cuda.is_available():
        print("bench_kernels: no CUDA GPU on this machine - nothing measured. "
              "(`--compile-only` checks that every kernel compiles for sm_90 without one.)")  # fmt: skip
        return 0
    else:
        from model.kernels.patch import kernels_available

        ok, why = kernels_available()
        print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  kernels: {why}")
        if not ok:
            print("Triton kernels unavailable here; nothing to compare.")
            return 0
    bw = copy_bandwidth_gbps(1 << 30 if DEVICE == "cuda" else 1 << 24)
    print(f"measured copy bandwidth: {bw:.0f} GB/s ({DEVICE} copy, read + write)\n")

    device_name = torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu (dry run)"
    results: dict = {"device": device_name, "copy_gbps": bw, "models": {}}
    verdicts = []
    for tag, cfg in models.items():
        rows, per_layer = bench_nf4(cfg, bw, tag)
        rows += bench_elementwise(cfg, bw, tag)
        print_rows(rows)
        shares = [r.share for r in rows if r.op == "nf4 matvec" and r.impl == "triton"]
        est = {k: v * cfg["layers"] for k, v in per_layer.items()}
        print(
            f"\n{tag}: NF4 matvec share of bandwidth min {100 * min(shares):.0f}% / median "
            f"{100 * statistics.median(shares):.0f}% (target >= {100 * TARGET_MATVEC_SHARE:.0f}%)"
        )
        print(
            f"{tag}: Linear-layer time of one decode token ({cfg['layers']} layers, matvec only): triton "
            f"{est['triton']:.2f} ms, bitsandbytes {est['bitsandbytes']:.2f} ms, bf16 {est['bf16']:.2f} ms "
            f"-> {est['bitsandbytes'] / est['triton']:.2f}x bitsandbytes (estimate; end-to-end needs --checkpoint)\n"
        )
        verdicts.append((f"{tag} NF4 matvec >= 70% BW (min over layers)", min(shares) >= TARGET_MATVEC_SHARE))
        results["models"][tag] = {"rows": [asdict(r) for r in rows], "decode_linear_ms_estimate": est}

    if args.checkpoint and DEVICE == "cuda":
        e2e = bench_end_to_end(args.checkpoint)
        results["end_to_end"] = e2e
        print(f"end to end ({args.checkpoint}):")
        for r in e2e.values():
            print(
                f"  {r['path']:<60} silent second {r['silent_second_ms']:7.1f} ms (vision {r['vision_ms']:.1f}, "
                f"prefill {r['prefill_ms']:.1f}, decision {r['decision_ms']:.1f})  answers {r['answer_tok_per_s']:6.1f} tok/s"
            )
        speed = e2e["triton"]["answer_tok_per_s"] / e2e["off"]["answer_tok_per_s"]
        print(f"  decoding: {speed:.2f}x bitsandbytes (target >= {TARGET_DECODE_SPEEDUP}x)")
        verdicts.append(("decoding >= 2x bitsandbytes tokens/s", speed >= TARGET_DECODE_SPEEDUP))
        if "7b" in args.checkpoint.lower():
            verdicts.append(("silent second of 7B < 100 ms", e2e["triton"]["silent_second_ms"] < TARGET_SILENT_MS_7B))
    else:
        print(
            "end to end: no --checkpoint (or STREAMO_CHECKPOINT) given - decode tokens/s and silent-second latency not measured"
        )

    print("\ntargets:" + (" not evaluated (dry run)" if DEVICE != "cuda" else ""))
    for what, ok in verdicts if DEVICE == "cuda" else []:
        print(f"  [{'PASS' if ok else 'MISS'}] {what}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
