"""NF4 matrix-vector and small-batch matrix product that dequantise bitsandbytes' 4-bit storage inside the kernel.

Layout read (bitsandbytes 0.50, `quantize_4bit(W, blocksize=BS, quant_type="nf4")`, no repacking):

    W        [N, K]   the nn.Linear weight (out_features N, in_features K), row-major, flattened: i = n*K + k
    packed   uint8 [(N*K + 1) // 2, 1]   two codes a byte: element 2p in the HIGH nibble, 2p+1 in the LOW nibble
    absmax   fp32 [ceil(N*K / BS)]       one scale per BS consecutive *flattened* elements (blocks span rows;
                                         the last block may be partial)
      or, with double quantisation (`compress_statistics=True`, `quant_state.nested`):
    absmax   uint8 [ceil(N*K / BS)]      index into state2.code (bnb's 256-entry dynamic map, fp32)
    state2.absmax fp32 [ceil(nblocks / 256)], offset fp32 scalar
             scale[b] = state2.code[absmax[b]] * state2.absmax[b // 256] + offset
    code     fp32 [16]                   the NF4 table (quant_state.code)

    W[n, k] = code[nibble(n*K + k)] * scale[(n*K + k) // BS]        (fp32, cast to the compute dtype like bnb)

Kernels need K even (every real layer; odd K is refused and falls back to bitsandbytes). Then element (n, 2j)
and (n, 2j+1) live in byte n*K/2 + j (hi, lo nibble) and share one scale block, so the kernels walk the weight
by byte ("pair" index j) and multiply the hi codes with x[..., 0::2] and the lo codes with x[..., 1::2]: no
nibble interleaving. When K % BS == 0 (Qwen2.5-VL 3B/7B: K in {2048, 3584, 11008, 18944}) a row's blocks are
aligned with it ("ALIGNED" path): the matvec reads one scale per block through a [rows, groups, BS/2] view, the
matmul takes K tiles of BS/2 bytes (one block per row) and multiplies the dot of the raw NF4 values by the [BN]
scales. Otherwise they gather one scale per byte (any even K). ALIGNED is derived per config by a heuristic.

Why no repacked layout: the only data read per weight is half a byte plus 1/BS of a scale byte (double quant),
which is already the minimum; repacking could only help instruction count (e.g. scale-major order), which is
unmeasured on this machine (no GPU) - see docs/kernels.md.

LoRA (optional): y += scale * (x @ A^T) @ B^T. The rank-r product xa = x @ A^T ([M, r], tiny) is computed with
torch in the launcher; the kernel adds xa @ B^T in its epilogue, so adapters run without merging.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from ._util import can_launch, is_interpreted, next_pow2

# M (tokens) at or below which the matvec kernel is used, and above which a dequantise + cuBLAS path
# (bitsandbytes' own forward) beats a dequantise-in-the-loop kernel that re-reads W per M tile.
MATVEC_MAX_M = 1
MATMUL_MAX_M = 512


# --------------------------------------------------------------------------------------------------
# Host-side view of bitsandbytes' storage
# --------------------------------------------------------------------------------------------------
@dataclass
class NF4Weight:
    """Tensors the kernels read, taken from bitsandbytes' Params4bit/QuantState as they are (views, no copies)."""

    packed: torch.Tensor  # uint8 [(N*K + 1) // 2] flat
    absmax: torch.Tensor  # fp32 [nblocks], or uint8 [nblocks] when nested
    code: torch.Tensor  # fp32 [16]
    n: int  # out_features
    k: int  # in_features
    blocksize: int
    nested: bool = False
    absmax2: torch.Tensor | None = None  # fp32 [ceil(nblocks / nested_blocksize)]
    code2: torch.Tensor | None = None  # fp32 [256]
    offset: torch.Tensor | None = None  # fp32 [1]
    nested_blocksize: int = 256

    @classmethod
    def from_bnb(cls, packed: torch.Tensor, quant_state) -> NF4Weight:
        n, k = (int(s) for s in quant_state.shape)
        nested = bool(getattr(quant_state, "nested", False))
        w = cls(
            packed=packed.reshape(-1) if packed.dtype == torch.uint8 else packed.view(torch.uint8).reshape(-1),
            absmax=quant_state.absmax,
            code=quant_state.code if quant_state.code.dtype == torch.float32 else quant_state.code.float(),
            n=n,
            k=k,
            blocksize=int(quant_state.blocksize),
            nested=nested,
        )
        if nested:
            s2 = quant_state.state2
            w.absmax2 = s2.absmax if s2.absmax.dtype == torch.float32 else s2.absmax.float()
            w.code2 = s2.code if s2.code.dtype == torch.float32 else s2.code.float()
            w.offset = torch.as_tensor(quant_state.offset, dtype=torch.float32, device=s2.absmax.device).reshape(1)
            w.nested_blocksize = int(s2.blocksize)
        return w

    @property
    def device(self) -> torch.device:
        return self.packed.device

    def unsupported_reason(self) -> str | None:
        """None when the kernels can read this weight, else a short reason."""
        if self.k % 2:
            return f"odd in_features {self.k}"
        if self.blocksize % 2 or self.blocksize < 2:
            return f"blocksize {self.blocksize}"
        if self.nested and (self.absmax.dtype != torch.uint8 or self.nested_blocksize < 1):
            return "unexpected double-quant absmax storage"
        if not self.nested and self.absmax.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            return f"absmax dtype {self.absmax.dtype}"
        if self.packed.numel() * 2 < self.n * self.k:
            return "packed storage smaller than the weight (repacked layout?)"
        if self.packed.numel() >= 2**31:
            return "weight too large for the kernels' int32 indexing"
        return None


def dequantize_nf4_reference(w: NF4Weight, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Plain-torch dequantisation of the same storage -> [N, K] (fp32 math, cast at the end like bnb)."""
    p = w.packed.reshape(-1)
    q = torch.stack(((p >> 4) & 0xF, p & 0xF), dim=1).reshape(-1)[: w.n * w.k].long()  # hi nibble first
    if w.nested:
        scale = (
            w.code2[w.absmax.long()] * w.absmax2[torch.arange(w.absmax.numel(), device=p.device) // w.nested_blocksize]
        )
        scale = scale + w.offset
    else:
        scale = w.absmax.float()
    blk = torch.arange(w.n * w.k, device=p.device) // w.blocksize
    return (w.code[q] * scale[blk]).reshape(w.n, w.k).to(dtype)


def nf4_linear_reference(
    x: torch.Tensor,
    w: NF4Weight,
    bias: torch.Tensor | None = None,
    lora_a: torch.Tensor | None = None,
    lora_b: torch.Tensor | None = None,
    lora_scale: float = 1.0,
) -> torch.Tensor:
    """Reference: dequantise, then fp32 matmul; [..., K] -> [..., N] in x.dtype."""
    wd = dequantize_nf4_reference(w, x.dtype).float()
    y = x.float() @ wd.t()
    if bias is not None:
        y = y + bias.float()
    if lora_a is not None:
        y = y + lora_scale * ((x.float() @ lora_a.float().t()) @ lora_b.float().t())
    return y.to(x.dtype)


# --------------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------------
@triton.jit
def _nf4_scale(absmax_ptr, blk, mask, code2_ptr, absmax2_ptr, offset, NESTED: tl.constexpr, NESTED_BS: tl.constexpr):
    """fp32 scale of 4-bit block(s) `blk` (any shape); double-quantised absmax is decoded on the fly."""
    if NESTED:
        qa = tl.load(absmax_ptr + blk, mask=mask, other=0).to(tl.int32)
        s = tl.load(code2_ptr + qa, mask=mask, other=0.0) * tl.load(
            absmax2_ptr + blk // NESTED_BS, mask=mask, other=0.0
        )
        return s + offset
    else:
        return tl.load(absmax_ptr + blk, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _nf4_matvec_kernel(
    x_ptr,  # [M, K] compute dtype, row stride stride_xm, unit column stride
    w_ptr,  # uint8 [N*K/2]: byte n*K/2 + j holds W[n, 2j] (hi nibble) and W[n, 2j+1] (lo nibble)
    code_ptr,  # fp32 [16] NF4 table
    absmax_ptr,  # fp32 [nblocks] or uint8 [nblocks] (NESTED)
    code2_ptr,  # fp32 [256] (NESTED only)
    absmax2_ptr,  # fp32 [ceil(nblocks / NESTED_BS)] (NESTED only)
    offset_ptr,  # fp32 [1] (NESTED only)
    bias_ptr,  # [N] (HAS_BIAS only)
    xa_ptr,  # [M, R] = x @ A^T (HAS_LORA only), row stride stride_xam
    lb_ptr,  # [N, R] LoRA B (HAS_LORA only), row stride stride_lbn
    y_ptr,  # [M, N] out, row stride stride_ym
    lora_scale,
    N,
    K,
    LORA_R_REAL,
    stride_xm,
    stride_ym,
    stride_xam,
    stride_lbn,
    BLOCKSIZE: tl.constexpr,
    NESTED: tl.constexpr,
    NESTED_BS: tl.constexpr,
    ALIGNED: tl.constexpr,  # K % BLOCKSIZE == 0 and BLOCK_K2 % (BLOCKSIZE // 2) == 0 (set by the heuristic below)
    HAS_BIAS: tl.constexpr,
    HAS_LORA: tl.constexpr,
    LORA_R: tl.constexpr,  # rank padded to a power of two
    BLOCK_N: tl.constexpr,
    BLOCK_K2: tl.constexpr,  # bytes (= pairs of K) per iteration
):
    # grid: (cdiv(N, BLOCK_N), M); each program: BLOCK_N outputs of one token, full K loop.
    pid_n = tl.program_id(0)
    m = tl.program_id(1).to(tl.int64)
    K2 = K // 2
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    row_byte = offs_n * K2  # [BLOCK_N] first byte of each row (int32: the launcher checks N*K/2 < 2**31)
    x_row = x_ptr + m * stride_xm
    offset = 0.0
    if NESTED:
        offset = tl.load(offset_ptr)

    HALF_BS: tl.constexpr = BLOCKSIZE // 2
    if ALIGNED:
        G: tl.constexpr = BLOCK_K2 // HALF_BS  # scale blocks per tile row
        acc = tl.zeros((BLOCK_N, G), dtype=tl.float32)
    else:
        acc = tl.zeros((BLOCK_N, BLOCK_K2), dtype=tl.float32)

    for k2 in range(0, K2, BLOCK_K2):
        offs_j = k2 + tl.arange(0, BLOCK_K2)
        mask_j = offs_j < K2
        mask = mask_n[:, None] & mask_j[None, :]
        byte = tl.load(w_ptr + row_byte[:, None] + offs_j[None, :], mask=mask, other=0)  # [BN, BK2] uint8
        hi = tl.load(code_ptr + ((byte >> 4) & 0xF).to(tl.int32))
        lo = tl.load(code_ptr + (byte & 0xF).to(tl.int32))
        xe = tl.load(x_row + 2 * offs_j, mask=mask_j, other=0.0).to(tl.float32)  # [BK2] x[2j]
        xo = tl.load(x_row + 2 * offs_j + 1, mask=mask_j, other=0.0).to(tl.float32)  # [BK2] x[2j+1]
        part = hi * xe[None, :] + lo * xo[None, :]  # [BN, BK2], unscaled
        if ALIGNED:
            # row n's blocks start at n*K/BS; tile group g covers bytes k2 + g*HALF_BS ... + HALF_BS - 1
            offs_g = tl.arange(0, G)
            blk = (offs_n * (K // BLOCKSIZE))[:, None] + (k2 // HALF_BS + offs_g)[None, :]
            gmask = mask_n[:, None] & ((k2 + offs_g * HALF_BS) < K2)[None, :]
            scale = _nf4_scale(absmax_ptr, blk, gmask, code2_ptr, absmax2_ptr, offset, NESTED, NESTED_BS)  # [BN, G]
            acc += tl.sum(tl.reshape(part, (BLOCK_N, G, HALF_BS)), axis=2) * scale
        else:
            blk = (row_byte[:, None] + offs_j[None, :]) // HALF_BS  # flattened element 2*byte -> block
            scale = _nf4_scale(absmax_ptr, blk, mask, code2_ptr, absmax2_ptr, offset, NESTED, NESTED_BS)
            acc += part * scale

    y = tl.sum(acc, axis=1)  # [BN]
    if HAS_BIAS:
        y += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)
    if HAS_LORA:
        offs_r = tl.arange(0, LORA_R)
        rmask = offs_r < LORA_R_REAL
        xa = tl.load(xa_ptr + m * stride_xam + offs_r, mask=rmask, other=0.0).to(tl.float32)
        lb = tl.load(
            lb_ptr + offs_n[:, None] * stride_lbn + offs_r[None, :], mask=mask_n[:, None] & rmask[None, :], other=0.0
        )
        y += lora_scale * tl.sum(lb.to(tl.float32) * xa[None, :], axis=1)
    tl.store(y_ptr + m * stride_ym + offs_n, y.to(y_ptr.dtype.element_ty), mask=mask_n)


@triton.jit
def _nf4_matmul_kernel(
    x_ptr,  # [M, K] compute dtype, row stride stride_xm, unit column stride
    w_ptr,  # uint8 [N*K/2] (see _nf4_matvec_kernel)
    code_ptr,
    absmax_ptr,
    code2_ptr,
    absmax2_ptr,
    offset_ptr,
    bias_ptr,
    xa_ptr,  # [M, R_real] padded loads to LORA_R
    lb_ptr,  # [N, R_real]
    y_ptr,  # [M, N]
    lora_scale,
    M,
    N,
    K,
    LORA_R_REAL,
    stride_xm,
    stride_ym,
    stride_xam,
    stride_lbn,
    M_BUCKET,  # autotune key only (next power of two of M)
    BLOCKSIZE: tl.constexpr,
    NESTED: tl.constexpr,
    NESTED_BS: tl.constexpr,
    ALIGNED: tl.constexpr,  # K % BLOCKSIZE == 0 and BLOCK_K2 == BLOCKSIZE // 2 (set by the heuristic below)
    HAS_BIAS: tl.constexpr,
    HAS_LORA: tl.constexpr,
    LORA_R: tl.constexpr,  # >= 16 (tl.dot minimum), power of two
    FP32_DOT: tl.constexpr,  # fp32 inputs: exact (ieee) dot instead of tf32
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K2: tl.constexpr,
):
    # grid: (cdiv(M, BLOCK_M) * cdiv(N, BLOCK_N),); M tiles vary fastest so that programs sharing one W tile
    # run together and all but the first read it from L2.
    pid = tl.program_id(0)
    num_m = tl.cdiv(M, BLOCK_M)
    pid_m = pid % num_m
    pid_n = pid // num_m
    K2 = K // 2
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m = offs_m < M
    mask_n = offs_n < N
    row_byte = offs_n * K2  # [BN] (int32: the launcher checks N*K/2 < 2**31; int64 tiles cost 2 registers each)
    x_rows = x_ptr + offs_m.to(tl.int64) * stride_xm  # [BM]
    offset = 0.0
    if NESTED:
        offset = tl.load(offset_ptr)
    HALF_BS: tl.constexpr = BLOCKSIZE // 2
    cdt = x_ptr.dtype.element_ty

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k2 in range(0, K2, BLOCK_K2):
        offs_j = k2 + tl.arange(0, BLOCK_K2)
        mask_j = offs_j < K2
        wmask = mask_j[:, None] & mask_n[None, :]
        byte = tl.load(w_ptr + offs_j[:, None] + row_byte[None, :], mask=wmask, other=0)  # [BK2, BN] = W^T pairs
        hi = tl.load(code_ptr + ((byte >> 4) & 0xF).to(tl.int32))  # [BK2, BN] fp32 NF4 values of W[n, 2j]
        lo = tl.load(code_ptr + (byte & 0xF).to(tl.int32))  # W[n, 2j+1]
        xmask = mask_m[:, None] & mask_j[None, :]
        xe = tl.load(x_rows[:, None] + 2 * offs_j[None, :], mask=xmask, other=0.0)  # [BM, BK2] x[:, 2j]
        xo = tl.load(x_rows[:, None] + 2 * offs_j[None, :] + 1, mask=xmask, other=0.0)  # [BM, BK2] x[:, 2j+1]
        if ALIGNED:
            # BLOCK_K2 == BLOCKSIZE / 2 and K % BLOCKSIZE == 0: the tile's K range of row n is one scale block, so
            # the dot runs on the raw NF4 values and the [BN] scales multiply its [BM, BN] result.
            blk = offs_n * (K // BLOCKSIZE) + k2 // HALF_BS  # [BN]
            scale = _nf4_scale(absmax_ptr, blk, mask_n, code2_ptr, absmax2_ptr, offset, NESTED, NESTED_BS)
            if FP32_DOT:
                part = tl.dot(xe, hi, input_precision="ieee")
                part = tl.dot(xo, lo, part, input_precision="ieee")
            else:
                part = tl.dot(xe, hi.to(cdt))
                part = tl.dot(xo, lo.to(cdt), part)
            acc += part * scale[None, :]
        else:
            # any even K: one scale per element (blocks may start mid-tile and span rows), like bnb: fp32
            # code * absmax rounded to the compute dtype, then the dot
            blk = (offs_j[:, None] + row_byte[None, :]) // HALF_BS  # [BK2, BN]
            scale = _nf4_scale(absmax_ptr, blk, wmask, code2_ptr, absmax2_ptr, offset, NESTED, NESTED_BS)
            if FP32_DOT:
                acc = tl.dot(xe, hi * scale, acc, input_precision="ieee")
                acc = tl.dot(xo, lo * scale, acc, input_precision="ieee")
            else:
                acc = tl.dot(xe, (hi * scale).to(cdt), acc)
                acc = tl.dot(xo, (lo * scale).to(cdt), acc)

    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    if HAS_LORA:
        offs_r = tl.arange(0, LORA_R)
        rmask = offs_r < LORA_R_REAL
        xa = tl.load(
            xa_ptr + offs_m[:, None] * stride_xam + offs_r[None, :], mask=mask_m[:, None] & rmask[None, :], other=0.0
        )
        lbt = tl.load(
            lb_ptr + offs_n[None, :] * stride_lbn + offs_r[:, None], mask=rmask[:, None] & mask_n[None, :], other=0.0
        )
        if FP32_DOT:
            acc += lora_scale * tl.dot(xa.to(tl.float32), lbt.to(tl.float32), input_precision="ieee")
        else:
            acc += lora_scale * tl.dot(xa.to(cdt), lbt.to(cdt))
    ymask = mask_m[:, None] & mask_n[None, :]
    tl.store(
        y_ptr + offs_m[:, None].to(tl.int64) * stride_ym + offs_n[None, :], acc.to(y_ptr.dtype.element_ty), mask=ymask
    )


# Autotuned twins for compiled (CUDA) runs; the interpreter (and tests asking for a fixed config) use the plain
# kernels, since autotuning there would just run every config on the CPU. The config sets are kept small because
# tuning happens at the first call per shape key in the app; results are cached on disk (cache_results).
# Every config below compiles for sm_90 without register spills (`python -m bench.bench_kernels --compile-only
# --all-configs`, Triton 3.8); the matmul's BLOCK_K2 is fixed at 32 = BLOCKSIZE/2 for bnb's default 64-blocks (the
# scale-after-dot path): BLOCK_K2=64 takes the per-element-scale path, which spills and needs 140-420 KB of
# shared memory at these tiles.
_MATVEC_CONFIGS = [
    triton.Config({"BLOCK_N": bn, "BLOCK_K2": bk}, num_warps=w, num_stages=s)
    for bn, w in ((4, 4), (8, 4), (16, 4), (32, 8))  # small BLOCK_N: >= 1 program per SM on the narrow k/v projs
    for bk in (64, 128, 256)  # 128..512 K-elements (64..256 bytes per row) per iteration
    for s in (2, 4)
]
_MATMUL_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K2": 32}, num_warps=w, num_stages=s)
    for bm, w in ((16, 4), (32, 4), (64, 8))
    for bn in (32, 64, 128)  # 32: enough programs for N = 256/512 (k/v projections) at small M
    for s in (3, 4)
]


def _matvec_aligned(args: dict) -> bool:
    return args["K"] % args["BLOCKSIZE"] == 0 and args["BLOCK_K2"] % (args["BLOCKSIZE"] // 2) == 0


def _matmul_aligned(args: dict) -> bool:
    return args["K"] % args["BLOCKSIZE"] == 0 and args["BLOCK_K2"] == args["BLOCKSIZE"] // 2


# ALIGNED is derived per config (it depends on BLOCK_K2), so the autotuner can also pick between the two paths.
_nf4_matvec = triton.heuristics({"ALIGNED": _matvec_aligned})(_nf4_matvec_kernel)
_nf4_matmul = triton.heuristics({"ALIGNED": _matmul_aligned})(_nf4_matmul_kernel)
_nf4_matvec_tuned = triton.autotune(configs=_MATVEC_CONFIGS, key=["N", "K", "NESTED", "HAS_LORA"], cache_results=True)(
    _nf4_matvec
)
_nf4_matmul_tuned = triton.autotune(
    configs=_MATMUL_CONFIGS, key=["M_BUCKET", "N", "K", "NESTED", "HAS_LORA"], cache_results=True
)(_nf4_matmul)

# Fixed tiles for the interpreter: the smallest legal ones (tl.dot needs 16), so odd shapes span several tiles.
INTERPRETER_MATVEC_CONFIG = {"BLOCK_N": 16, "BLOCK_K2": 32}
INTERPRETER_MATMUL_CONFIG = {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K2": 32}


def _m_bucket(m: int) -> int:
    return max(16, next_pow2(m))  # autotune key: 16, 32, ..., 512


# --------------------------------------------------------------------------------------------------
# Launchers
# --------------------------------------------------------------------------------------------------
def _common_args(w: NF4Weight, x: torch.Tensor) -> tuple:
    if w.nested:
        return (w.code, w.absmax, w.code2, w.absmax2, w.offset)
    return (w.code, w.absmax, w.code, w.code, w.code)  # unused pointers: any valid tensor


def _lora_args(
    x2: torch.Tensor, lora_a: torch.Tensor | None, lora_b: torch.Tensor | None
) -> tuple[torch.Tensor | None, torch.Tensor | None, int]:
    if lora_a is None:
        return None, None, 0
    xa = (x2 @ lora_a.t().to(x2.dtype)).contiguous()  # [M, R] - rank-r GEMV, tiny next to W
    lb = lora_b if lora_b.stride(-1) == 1 else lora_b.contiguous()  # [N, R]
    return xa, lb, int(lora_a.shape[0])


def _use_tuned(x: torch.Tensor, config: dict | None) -> bool:
    return config is None and x.device.type == "cuda" and not is_interpreted(_nf4_matvec_kernel)


def nf4_matvec(
    x: torch.Tensor,
    w: NF4Weight,
    bias: torch.Tensor | None = None,
    *,
    lora_a: torch.Tensor | None = None,
    lora_b: torch.Tensor | None = None,
    lora_scale: float = 1.0,
    out: torch.Tensor | None = None,
    config: dict | None = None,
) -> torch.Tensor:
    """y[M, N] = x[M, K] @ W^T (+ bias) (+ lora_scale * x A^T B^T); meant for M == 1 (decode / state steps).
    `config` ({"BLOCK_N", "BLOCK_K2"}, optional num_warps) bypasses autotuning."""
    assert x.dim() == 2 and x.shape[1] == w.k, (x.shape, w.k)
    assert w.unsupported_reason() is None, w.unsupported_reason()
    if x.stride(1) != 1:
        x = x.contiguous()
    m = x.shape[0]
    y = out if out is not None else torch.empty((m, w.n), dtype=x.dtype, device=x.device)  # [M, N]
    xa, lb, r = _lora_args(x, lora_a, lora_b)
    lora_r = next_pow2(max(r, 1))
    args = (
        x,
        w.packed,
        *_common_args(w, x),
        bias if bias is not None else x,
        xa if xa is not None else x,
        lb if lb is not None else x,
        y,
        float(lora_scale),
        w.n,
        w.k,
        r,
        x.stride(0),
        y.stride(0),
        xa.stride(0) if xa is not None else 0,
        lb.stride(0) if lb is not None else 0,
    )
    consts = dict(
        BLOCKSIZE=w.blocksize,
        NESTED=w.nested,
        NESTED_BS=w.nested_blocksize,
        HAS_BIAS=bias is not None,
        HAS_LORA=xa is not None,
        LORA_R=lora_r,
    )
    if _use_tuned(x, config):
        grid = lambda meta: (triton.cdiv(w.n, meta["BLOCK_N"]), m)  # noqa: E731
        _nf4_matvec_tuned[grid](*args, **consts)
    else:
        cfg = dict(INTERPRETER_MATVEC_CONFIG if config is None else config)
        _nf4_matvec[(triton.cdiv(w.n, cfg["BLOCK_N"]), m)](*args, **cfg, **consts)
    return y


def nf4_matmul(
    x: torch.Tensor,
    w: NF4Weight,
    bias: torch.Tensor | None = None,
    *,
    lora_a: torch.Tensor | None = None,
    lora_b: torch.Tensor | None = None,
    lora_scale: float = 1.0,
    out: torch.Tensor | None = None,
    config: dict | None = None,
) -> torch.Tensor:
    """y[M, N] = x[M, K] @ W^T (+ bias) (+ LoRA); for the 2..MATMUL_MAX_M tokens of a prefill.
    `config` ({"BLOCK_M", "BLOCK_N", "BLOCK_K2"}, optional num_warps/num_stages) bypasses autotuning."""
    assert x.dim() == 2 and x.shape[1] == w.k, (x.shape, w.k)
    assert w.unsupported_reason() is None, w.unsupported_reason()
    if x.stride(1) != 1:
        x = x.contiguous()
    m = x.shape[0]
    y = out if out is not None else torch.empty((m, w.n), dtype=x.dtype, device=x.device)  # [M, N]
    xa, lb, r = _lora_args(x, lora_a, lora_b)
    lora_r = max(16, next_pow2(max(r, 1)))  # tl.dot needs every dim >= 16
    args = (
        x,
        w.packed,
        *_common_args(w, x),
        bias if bias is not None else x,
        xa if xa is not None else x,
        lb if lb is not None else x,
        y,
        float(lora_scale),
        m,
        w.n,
        w.k,
        r,
        x.stride(0),
        y.stride(0),
        xa.stride(0) if xa is not None else 0,
        lb.stride(0) if lb is not None else 0,
        _m_bucket(m),
    )
    consts = dict(
        BLOCKSIZE=w.blocksize,
        NESTED=w.nested,
        NESTED_BS=w.nested_blocksize,
        HAS_BIAS=bias is not None,
        HAS_LORA=xa is not None,
        LORA_R=lora_r,
        FP32_DOT=x.dtype == torch.float32,
    )
    if _use_tuned(x, config):
        grid = lambda meta: (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(w.n, meta["BLOCK_N"]),)  # noqa: E731
        _nf4_matmul_tuned[grid](*args, **consts)
    else:
        cfg = dict(INTERPRETER_MATMUL_CONFIG if config is None else config)
        grid = (triton.cdiv(m, cfg["BLOCK_M"]) * triton.cdiv(w.n, cfg["BLOCK_N"]),)
        _nf4_matmul[grid](*args, **cfg, **consts)
    return y


def nf4_linear(
    x: torch.Tensor,
    w: NF4Weight,
    bias: torch.Tensor | None = None,
    *,
    lora_a: torch.Tensor | None = None,
    lora_b: torch.Tensor | None = None,
    lora_scale: float = 1.0,
    config: dict | None = None,
) -> torch.Tensor:
    """[..., K] -> [..., N] in x.dtype: matvec for one token, tiled matmul for a small batch."""
    lead = x.shape[:-1]
    x2 = x.reshape(-1, w.k)  # [M, K]
    fn = nf4_matvec if x2.shape[0] <= MATVEC_MAX_M else nf4_matmul
    y = fn(x2, w, bias, lora_a=lora_a, lora_b=lora_b, lora_scale=lora_scale, config=config)
    return y.reshape(*lead, w.n)


# --------------------------------------------------------------------------------------------------
# bitsandbytes Linear4bit wrapper (used by patch.py's module table)
# --------------------------------------------------------------------------------------------------
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def linear4bit_unsupported_reason(module: torch.nn.Module) -> str | None:
    """Static check of a bnb Linear4bit: None when its weight can go through the NF4 kernels."""
    weight = getattr(module, "weight", None)
    qs = getattr(weight, "quant_state", None)
    if qs is None:
        return "not quantised yet (no quant_state)"
    if getattr(qs, "quant_type", None) != "nf4":
        return f"quant_type {getattr(qs, 'quant_type', None)!r} (only nf4)"
    if getattr(qs, "packing_format_for_cpu", False):
        return "weight repacked by bitsandbytes' CPU path"
    if len(qs.shape) != 2:
        return f"weight shape {tuple(qs.shape)}"
    return NF4Weight.from_bnb(weight.data, qs).unsupported_reason()


def linear4bit_triton_forward(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """bnb Linear4bit.forward through the NF4 kernels; returns None when this call must use bitsandbytes instead
    (device, dtype, shape or too many tokens). Same casts as bitsandbytes: x to compute_dtype, output to x's dtype."""
    weight = module.weight
    qs = getattr(weight, "quant_state", None)
    if qs is None or getattr(qs, "packing_format_for_cpu", False):
        return None
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):  # no backward: training -> bnb
        return None
    inp_dtype = x.dtype
    cdt = module.compute_dtype if getattr(module, "compute_dtype", None) is not None else x.dtype
    if cdt not in _FLOAT_DTYPES or x.shape[-1] != qs.shape[1]:
        return None
    m = x.numel() // max(x.shape[-1], 1)
    if m == 0 or m > MATMUL_MAX_M:
        return None
    w = NF4Weight.from_bnb(weight.data, qs)
    bias = module.bias
    if not can_launch(_nf4_matvec_kernel, x, w.packed, w.absmax) or w.unsupported_reason() is not None:
        return None
    if x.is_cuda and cdt == torch.float32 and m > MATVEC_MAX_M and w.k % w.blocksize:
        return None  # fp32 matmul on the per-element-scale path spills heavily on sm_90 (compile report)
    y = nf4_linear(x.to(cdt), w, bias)
    return y.to(inp_dtype)
