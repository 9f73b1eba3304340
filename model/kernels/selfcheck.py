"""Each Triton kernel checks itself against its plain-torch reference on the GPU it will run on.

At the first CUDA load with ``--kernels auto`` (``model.loading.apply_kernel_switch``), every
kernel runs on small random inputs (fresh draws, NaN-poisoned outputs where the kernel takes an
``out``) and is compared with its reference by ``||out - ref|| / ||ref||``. A kernel that
disagrees, returns NaN or raises is turned off for that GPU: the modules it would run stay on
bitsandbytes / torch, and a message says so. The result is cached in the data folder per GPU
name, driver and torch / triton / bitsandbytes versions, so the check (about a second, most of it
compilation) runs once per machine and software stack.

The state head (``state_head.state_probs``) is checked too; the engine picks that kernel itself on
CUDA (model/engine.py) and leaves it off when the load's ``LoadedModel.kernels_off`` names it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

CACHE_FILE = "kernel_selfcheck.json"
VERSION = 1
# ||out - ref|| / ||ref|| allowed per compute dtype (a wrong kernel is off by O(1)).
TOLERANCE = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 2e-2}
# The kinds, labelled as model/kernels/patch.py's SWAP_TABLE labels them.
NF4, RMSNORM, ADD_RMSNORM, SILU_MUL, STATE_HEAD = (
    "NF4 matvec/matmul",
    "RMSNorm",
    "add+RMSNorm",
    "SiLU*mul",
    "state head",
)


@dataclass
class SelfCheck:
    key: str
    errors: dict[str, float] = field(default_factory=dict)  # kind -> worst relative error
    failed: dict[str, str] = field(default_factory=dict)  # kind -> why
    seconds: float = 0.0
    cached: bool = False

    @property
    def disabled(self) -> list[str]:
        return sorted(self.failed)

    def messages(self) -> list[str]:
        gpu = self.key.split(" | ")[0]
        return [
            f"Triton kernel '{k}' turned off on {gpu}: {why}; running the reference path"
            for k, why in sorted(self.failed.items())
        ]


def _rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.float(), ref.float()
    if torch.isnan(out).any() or torch.isinf(out).any():
        return float("inf")
    return float((out - ref).norm() / ref.norm().clamp_min(1e-12))


def _nan(shape, dtype, device) -> torch.Tensor:
    return torch.full(shape, float("nan"), dtype=dtype, device=device)


def _check_nf4(device: torch.device, dtype: torch.dtype) -> float:
    import bitsandbytes.functional as bnbf

    from model.kernels import nf4

    worst = 0.0
    for n, k, m, nested in ((96, 128, 1, True), (80, 192, 5, True), (64, 100, 1, False), (48, 64, 3, False)):
        w = torch.randn(n, k, device=device, dtype=dtype)
        packed, qs = bnbf.quantize_4bit(w, blocksize=64, compress_statistics=nested, quant_type="nf4")
        weight = nf4.NF4Weight.from_bnb(packed, qs)
        x = torch.randn(m, k, device=device, dtype=dtype)
        bias = torch.randn(n, device=device, dtype=dtype)
        worst = max(worst, _rel(nf4.nf4_linear(x, weight, bias), nf4.nf4_linear_reference(x, weight, bias)))
    return worst


def _check_rmsnorm(device: torch.device, dtype: torch.dtype) -> float:
    from model.kernels import rmsnorm

    worst = 0.0
    for rows, cols in ((1, 96), (7, 200)):
        x = torch.randn(rows, cols, device=device, dtype=dtype)
        wt = torch.rand(cols, device=device, dtype=dtype) + 0.5
        out = rmsnorm.rms_norm(x, wt, 1e-6, out=_nan((rows, cols), dtype, device))
        worst = max(worst, _rel(out, rmsnorm.rms_norm_reference(x, wt, 1e-6)))
    return worst


def _check_add_rmsnorm(device: torch.device, dtype: torch.dtype) -> float:
    from model.kernels import rmsnorm

    worst = 0.0
    for rows, cols in ((1, 96), (5, 160)):
        x = torch.randn(rows, cols, device=device, dtype=dtype)
        r = torch.randn(rows, cols, device=device, dtype=dtype)
        wt = torch.rand(cols, device=device, dtype=dtype) + 0.5
        y, s = rmsnorm.rms_norm(x, wt, 1e-6, r)
        ry, rs = rmsnorm.rms_norm_reference(x, wt, 1e-6, r)
        worst = max(worst, _rel(y, ry), _rel(s, rs))
    return worst


def _check_silu_mul(device: torch.device, dtype: torch.dtype) -> float:
    from model.kernels import silu_mul

    worst = 0.0
    for shape in ((1, 128), (6, 300)):
        g, u = torch.randn(shape, device=device, dtype=dtype), torch.randn(shape, device=device, dtype=dtype)
        out = silu_mul.silu_mul(g, u, out=_nan(shape, dtype, device))
        worst = max(worst, _rel(out, silu_mul.silu_mul_reference(g, u)))
    return worst


def _check_state_head(device: torch.device, dtype: torch.dtype) -> float:
    from model.kernels import state_head

    h, v = 160, 300
    hidden = torch.randn(h, device=device, dtype=dtype)
    weight = torch.randn(v, h, device=device, dtype=dtype) * h**-0.5
    ids = [v - 3, 7, v - 1]
    logits, probs = state_head.state_probs(hidden, weight, ids)
    ref_logits, ref_probs = state_head.state_probs_reference(hidden, weight, ids)
    return max(_rel(logits, ref_logits), _rel(probs, ref_probs))


CHECKS: dict[str, Callable[[torch.device, torch.dtype], float]] = {
    NF4: _check_nf4,
    RMSNORM: _check_rmsnorm,
    ADD_RMSNORM: _check_add_rmsnorm,
    SILU_MUL: _check_silu_mul,
    STATE_HEAD: _check_state_head,
}


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001 - missing or broken: part of the key all the same
        return "none"


def fingerprint(device: torch.device) -> str:
    """GPU name | driver | torch, triton, bitsandbytes versions: what the cached result is valid for."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        try:
            driver = str(torch._C._cuda_getDriverVersion())  # noqa: SLF001 - no public spelling in torch
        except Exception:  # noqa: BLE001
            driver = "unknown"
    else:
        name, driver = (
            f"{device.type} (Triton interpreter)" if os.environ.get("TRITON_INTERPRET") == "1" else device.type,
            "-",
        )
    versions = f"torch {torch.__version__}, triton {_version('triton')}, bitsandbytes {_version('bitsandbytes')}"
    return f"{name} | driver {driver} | {versions}"


def cache_path() -> Path:
    from model.paths import data_dir

    return data_dir() / CACHE_FILE


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) and data.get("version") == VERSION else {}


def _write_cache(path: Path, data: dict[str, Any]) -> None:
    from model.atomic import write_text_atomic

    try:
        write_text_atomic(path, json.dumps(data, indent=1))
    except OSError as e:  # a read-only data folder: check again next time, never fail a load for it
        log.info("kernel self-check result not cached (%s)", e)


def run_selfcheck(device: torch.device, dtype: torch.dtype | None = None) -> SelfCheck:
    """Run every check in CHECKS now (no cache)."""
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    tol = TOLERANCE[dtype]
    result = SelfCheck(key=fingerprint(device))
    t0 = time.perf_counter()
    gen_state = torch.random.get_rng_state()
    try:
        for kind, check in CHECKS.items():
            try:
                err = check(device, dtype)
            except Exception as e:  # noqa: BLE001 - a kernel that cannot run on this GPU is a failed check
                result.failed[kind] = f"it raised {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
                continue
            result.errors[kind] = err
            if not err <= tol:  # NaN too
                result.failed[kind] = f"relative error {err:.3g} against its reference (tolerance {tol:g})"
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    finally:
        torch.random.set_rng_state(gen_state)  # the check leaves the caller's random stream alone
    result.seconds = time.perf_counter() - t0
    return result


def ensure_selfcheck(device: torch.device, dtype: torch.dtype | None = None, cache: Path | None = None) -> SelfCheck:
    """The cached result for this GPU and stack, or a fresh check (then cached)."""
    path = cache or cache_path()
    key = fingerprint(device) + (f" | {dtype}" if dtype is not None else "")
    data = _read_cache(path)
    hit = data.get("results", {}).get(key)
    if isinstance(hit, dict):
        return SelfCheck(key=key, errors=hit.get("errors", {}), failed=hit.get("failed", {}), cached=True)
    result = run_selfcheck(device, dtype)
    result.key = key
    data = data or {"version": VERSION, "results": {}}
    data.setdefault("results", {})[key] = {
        "errors": result.errors,
        "failed": result.failed,
        "seconds": round(result.seconds, 3),
        "checked": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    _write_cache(path, data)
    for m in result.messages():
        log.warning(m)
    return result


def disable_kinds(model: Any, kinds: list[str]) -> int:
    """Put the modules swapped onto any of ``kinds`` back on their own classes; returns how many."""
    from model.kernels.patch import _KIND_ATTR, _ORIG_ATTR, _is_swapped

    n = 0
    for m in model.modules():
        if _is_swapped(m) and type(m).__dict__.get(_KIND_ATTR) in kinds:
            m.__class__ = type(m).__dict__[_ORIG_ATTR]
            n += 1
    return n


def apply_checked(model: Any, device: torch.device, *, allow_cpu_interpreter: bool = False, cache: Path | None = None):
    """``apply_kernels(model, "triton")`` without the kernels that fail their self-check on this
    GPU. Returns (KernelReport, SelfCheck); the report's path names only the kernels that run."""
    from model.kernels.patch import apply_kernels

    check = ensure_selfcheck(device, cache=cache)
    report = apply_kernels(model, mode="triton", allow_cpu_interpreter=allow_cpu_interpreter)
    off = [k for k in check.disabled if k != STATE_HEAD]
    if off and report.path.startswith("triton"):
        disable_kinds(model, off)
        kinds = [k for k in report.path[len("triton (") : -1].split(", ") if k and k not in off]
        report.skipped += [f"{k}: failed the self-check on this GPU" for k in off]
        report.path = f"triton ({', '.join(kinds)})" if kinds else "torch"
        if not kinds:
            report.reason = "every kernel failed its self-check on this GPU"
    return report, check
