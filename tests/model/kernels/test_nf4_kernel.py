"""NF4 matvec / matmul kernels against bitsandbytes' own dequantisation, over odd shapes, with and without double
quantisation, fp32 and fp16, NaN-poisoned outputs."""

import bitsandbytes as bnb
import bitsandbytes.functional as F
import pytest
import torch
from kernel_testutil import DEVICE, DTYPES, HAS_CUDA, assert_close, poisoned

from model.kernels import nf4
from model.kernels.nf4 import (
    MATMUL_MAX_M,
    NF4Weight,
    dequantize_nf4_reference,
    linear4bit_triton_forward,
    linear4bit_unsupported_reason,
    nf4_linear,
    nf4_matmul,
    nf4_matvec,
)

# (out N, in K): K % 64 == 0 (aligned path), K = 200 and 96 (blocks straddle rows, last block partial: 41*200 and
# 123*96 are not multiples of 64), N not a multiple of any tile.
SHAPES = [(123, 320), (41, 200), (123, 96)]
# Fixed tile configs: the smallest legal tiles, and wider K tiles so one tile holds several scale blocks.
MATVEC_CFGS = [{"BLOCK_N": 16, "BLOCK_K2": 32}, {"BLOCK_N": 8, "BLOCK_K2": 128}]
MATMUL_CFGS = [{"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K2": 32}, {"BLOCK_M": 32, "BLOCK_N": 16, "BLOCK_K2": 64}]


def _bnb_dequantize(packed: torch.Tensor, qs) -> torch.Tensor:
    """bitsandbytes' dequantisation [N, K] fp32. On the CPU its native (C++) kernel is only right when K is a
    multiple of the block size (bnb 0.50 computes a wrong block index otherwise), so there the reference is bnb's
    own pure-torch backend (`backends/default`), which is what the CUDA kernel computes."""
    n, k = qs.shape
    if packed.device.type == "cuda" or k % qs.blocksize == 0:
        return F.dequantize_4bit(packed, qs).float()
    from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
    from bitsandbytes.backends.utils import _get_4bit_code

    absmax = qs.absmax
    if qs.nested:
        absmax = F.dequantize_blockwise(qs.absmax, qs.state2) + qs.offset
    raw = getattr(_dequantize_4bit_compute, "__wrapped__", _dequantize_4bit_compute)  # skip torch.compile
    return raw(
        packed.reshape(-1), absmax.float(), _get_4bit_code("nf4", packed.device), qs.blocksize, qs.shape, torch.float32
    )


def _quantised(n: int, k: int, nested: bool, blocksize: int = 64):
    w = torch.randn(n, k) / k**0.5  # outputs O(1)
    packed, qs = F.quantize_4bit(w.to(DEVICE), blocksize=blocksize, quant_type="nf4", compress_statistics=nested)
    return w, packed, qs


def _expected(x, packed, qs, bias=None, lora=None):
    y = x.float() @ _bnb_dequantize(packed, qs).t()
    if bias is not None:
        y = y + bias.float()
    if lora is not None:
        a, b, s = lora
        y = y + s * (x.float() @ a.float().t()) @ b.float().t()
    return y


@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_reference_dequantise_matches_bitsandbytes(shape, nested):
    w, packed, qs = _quantised(*shape, nested)
    ref = dequantize_nf4_reference(NF4Weight.from_bnb(packed, qs))
    torch.testing.assert_close(ref, _bnb_dequantize(packed, qs), atol=1e-6, rtol=1e-6)
    # and the quantisation is what it claims: every weight within half the widest NF4 gap of its block's absmax
    assert (ref.cpu() - w).abs().max() <= 0.17 * w.abs().max() + 1e-3


def test_bnb_storage_facts():
    """The layout the kernels assume: high nibble first, absmax per 64 flattened elements, 256-block nested."""
    w = torch.zeros(1, 128)
    w[0, 0], w[0, 1], w[0, 64] = 1.0, -1.0, 0.5
    packed, qs = F.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=False)
    assert packed.dtype == torch.uint8 and packed.shape == (64, 1)
    assert int(packed[0, 0]) == 0xF0  # element 0 -> code 15 (+1.0) in the high nibble, element 1 -> code 0 (-1.0)
    torch.testing.assert_close(qs.absmax, torch.tensor([1.0, 0.5]))
    _, qs2 = F.quantize_4bit(torch.randn(600, 64), blocksize=64, quant_type="nf4", compress_statistics=True)
    assert qs2.nested and qs2.absmax.dtype == torch.uint8 and qs2.state2.blocksize == 256
    assert qs2.state2.absmax.numel() == -(-600 // 256) and qs2.state2.code.numel() == 256


@pytest.mark.parametrize("cfg", MATVEC_CFGS, ids=["tile16x32", "tile8x128"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("nested", [False, True], ids=["absmax", "double-quant"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_matvec(shape, nested, dtype, cfg):
    n, k = shape
    _, packed, qs = _quantised(n, k, nested)
    x = torch.randn(1, k, device=DEVICE).to(dtype)
    bias = torch.randn(n, device=DEVICE).to(dtype)
    out = poisoned((1, n), dtype)
    y = nf4_matvec(x, NF4Weight.from_bnb(packed, qs), bias, out=out, config=cfg)
    assert y.data_ptr() == out.data_ptr() and y.dtype == dtype
    assert_close(y, _expected(x, packed, qs, bias), dtype)


@pytest.mark.parametrize("m,cfg", [(3, MATMUL_CFGS[0]), (37, MATMUL_CFGS[1])], ids=["m3", "m37"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("nested", [False, True], ids=["absmax", "double-quant"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_matmul(shape, nested, dtype, m, cfg):
    n, k = shape
    _, packed, qs = _quantised(n, k, nested)
    x = torch.randn(m, k, device=DEVICE).to(dtype)
    out = poisoned((m, n), dtype)
    y = nf4_matmul(x, NF4Weight.from_bnb(packed, qs), None, out=out, config=cfg)
    assert_close(y, _expected(x, packed, qs), dtype)


@pytest.mark.parametrize("blocksize,shape", [(32, (19, 160)), (128, (33, 200)), (256, (9, 512))])
def test_other_blocksizes(blocksize, shape):
    """bnb's other block sizes: 32 takes the aligned path with 2 blocks per tile, 128/256 the gather path."""
    n, k = shape
    _, packed, qs = _quantised(n, k, nested=True, blocksize=blocksize)
    w = NF4Weight.from_bnb(packed, qs)
    x = torch.randn(5, k, device=DEVICE)
    assert_close(nf4_matvec(x[:1], w, out=poisoned((1, n), x.dtype)), _expected(x[:1], packed, qs), torch.float32)
    assert_close(nf4_matmul(x, w, out=poisoned((5, n), x.dtype)), _expected(x, packed, qs), torch.float32)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("rank", [3, 8])
def test_lora_epilogue(rank, dtype):
    n, k = 41, 200
    _, packed, qs = _quantised(n, k, nested=True)
    w = NF4Weight.from_bnb(packed, qs)
    a = (torch.randn(rank, k, device=DEVICE) / k**0.5).to(dtype)
    b = torch.randn(n, rank, device=DEVICE).to(dtype)
    bias = torch.randn(n, device=DEVICE).to(dtype)
    for m in (1, 21):
        x = torch.randn(m, k, device=DEVICE).to(dtype)
        fn = nf4_matvec if m == 1 else nf4_matmul
        y = fn(x, w, bias, lora_a=a, lora_b=b, lora_scale=0.5, out=poisoned((m, n), dtype))
        expected = _expected(x, packed, qs, bias, lora=(a, b, 0.5))
        assert_close(y, expected, dtype)
        # the epilogue really adds something
        assert (expected - _expected(x, packed, qs, bias)).abs().max() > 0.1


def test_nf4_linear_keeps_leading_dims_and_dispatches():
    n, k = 41, 200
    _, packed, qs = _quantised(n, k, nested=False)
    w = NF4Weight.from_bnb(packed, qs)
    x = torch.randn(2, 3, k, device=DEVICE)
    y = nf4_linear(x, w)
    assert y.shape == (2, 3, n)
    assert_close(y, _expected(x.reshape(6, k), packed, qs).reshape(2, 3, n), torch.float32)
    y1 = nf4_linear(x[:1, :1], w)
    assert y1.shape == (1, 1, n)
    assert_close(y1, _expected(x[0, :1], packed, qs).reshape(1, 1, n), torch.float32)


def _linear4bit(n: int, k: int, compute_dtype: torch.dtype, nested: bool, bias: bool = True) -> bnb.nn.Linear4bit:
    lin = torch.nn.Linear(k, n, bias=bias)
    q = bnb.nn.Linear4bit(k, n, bias=bias, compute_dtype=compute_dtype, quant_type="nf4", compress_statistics=nested)
    q.weight = bnb.nn.Params4bit(lin.weight.data, requires_grad=False, quant_type="nf4", compress_statistics=nested)
    if bias:
        q.bias = torch.nn.Parameter(lin.bias.data.to(compute_dtype), requires_grad=False)
    q = q.to(DEVICE)
    q.support_avx512bf16_for_cpu = False  # keep bnb's storage: its CPU fast path would repack it on first call
    return q.eval()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("nested", [False, True], ids=["absmax", "double-quant"])
def test_linear4bit_forward_matches_bitsandbytes(nested, dtype):
    q = _linear4bit(40, 128, dtype, nested)
    assert linear4bit_unsupported_reason(q) is None
    for m in (1, 7):
        x = torch.randn(m, 128, device=DEVICE).to(dtype)
        with torch.no_grad():
            y = linear4bit_triton_forward(q, x)
            ref = q(x)  # bitsandbytes' own forward
        assert y is not None and y.dtype == ref.dtype
        assert_close(y, ref, dtype)


def test_linear4bit_fallback_cases():
    q = _linear4bit(40, 128, torch.float32, nested=True)
    x = torch.randn(MATMUL_MAX_M + 1, 128, device=DEVICE)
    with torch.no_grad():
        assert linear4bit_triton_forward(q, x) is None  # long prefill -> bitsandbytes' dequantise + GEMM
    xg = torch.randn(2, 128, device=DEVICE, requires_grad=True)
    assert linear4bit_triton_forward(q, xg) is None  # no backward kernel
    odd = _linear4bit(8, 33, torch.float32, nested=False, bias=False)
    assert "odd in_features" in (linear4bit_unsupported_reason(odd) or "")
    with torch.no_grad():
        assert linear4bit_triton_forward(odd, torch.randn(1, 33, device=DEVICE)) is None
    fp4 = bnb.nn.Linear4bit(64, 8, bias=False, quant_type="fp4")
    fp4.weight = bnb.nn.Params4bit(torch.randn(8, 64), requires_grad=False, quant_type="fp4")
    fp4 = fp4.to(DEVICE)
    assert "fp4" in (linear4bit_unsupported_reason(fp4) or "")


@pytest.mark.skipif(HAS_CUDA, reason="CPU-only: checks the interpreter guard")
def test_kernels_are_interpreted_on_cpu():
    from model.kernels._util import is_interpreted

    assert is_interpreted(nf4._nf4_matvec_kernel) and is_interpreted(nf4._nf4_matmul_kernel)
