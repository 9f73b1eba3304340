"""Compiled-kernel checks on a CUDA GPU: bf16 (which the interpreter cannot check), the autotuned launch path,
Qwen2.5-VL-sized shapes against bitsandbytes' CUDA kernels, and the swap through `apply_kernels` without the
interpreter. (The other test files in this folder also run compiled when a GPU is present.)"""

import pytest
import torch
from kernel_testutil import assert_close, poisoned

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="needs a CUDA GPU: compiled Triton kernels (the CPU runs the same checks through TRITON_INTERPRET)",
    ),
]

DEV = torch.device("cuda")
BF16_TOL = dict(atol=3e-2, rtol=2e-2)


def _q(n, k, nested=True, dtype=torch.bfloat16):
    import bitsandbytes.functional as F

    w = (torch.randn(n, k, device=DEV) / k**0.5).to(dtype)
    return F.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=nested)


def test_kernels_are_compiled():
    from model.kernels import nf4, rmsnorm, silu_mul, state_head
    from model.kernels._util import is_interpreted
    from model.kernels.patch import kernels_available

    ok, why = kernels_available()
    assert ok, why
    for k in (nf4._nf4_matvec_kernel, nf4._nf4_matmul_kernel, rmsnorm._rms_norm_kernel, silu_mul._silu_mul_kernel,
              state_head._state_head_kernel):  # fmt: skip
        assert not is_interpreted(k)


@pytest.mark.parametrize("nested", [False, True], ids=["absmax", "double-quant"])
@pytest.mark.parametrize("m", [1, 30, 300])
@pytest.mark.parametrize("shape", [(512, 3584), (3584, 3584), (2048, 11008), (123, 200)], ids=str)
def test_nf4_autotuned_bf16_vs_bitsandbytes(shape, m, nested):
    import bitsandbytes.functional as F

    from model.kernels.nf4 import NF4Weight, nf4_linear

    n, k = shape
    packed, qs = _q(n, k, nested)
    x = torch.randn(m, k, device=DEV, dtype=torch.bfloat16)
    y = nf4_linear(x, NF4Weight.from_bnb(packed, qs))  # autotuned path (no config)
    ref = x.float() @ F.dequantize_4bit(packed, qs).float().t()
    torch.testing.assert_close(y.float(), ref, **BF16_TOL)


@pytest.mark.parametrize("m", [1, 17])
def test_nf4_poisoned_output_fully_written_compiled(m):
    import bitsandbytes.functional as F

    from model.kernels.nf4 import NF4Weight, nf4_matmul, nf4_matvec

    n = 137
    packed, qs = _q(n, 320, nested=True, dtype=torch.float16)
    x = torch.randn(m, 320, device=DEV, dtype=torch.float16)
    out = poisoned((m, n), torch.float16, DEV)
    fn = nf4_matvec if m == 1 else nf4_matmul
    y = fn(x, NF4Weight.from_bnb(packed, qs), out=out)
    assert_close(y, x.float() @ F.dequantize_4bit(packed, qs).float().t(), torch.float16)


@pytest.mark.parametrize("rows", [1, 300])
def test_bf16_elementwise(rows):
    from model.kernels.rmsnorm import rms_norm, rms_norm_reference
    from model.kernels.silu_mul import silu_mul, silu_mul_reference

    h, i = 3584, 18944
    x = torch.randn(rows, h, device=DEV, dtype=torch.bfloat16)
    r = torch.randn(rows, h, device=DEV, dtype=torch.bfloat16)
    w = torch.randn(h, device=DEV, dtype=torch.bfloat16)
    torch.testing.assert_close(rms_norm(x, w, 1e-6), rms_norm_reference(x, w, 1e-6), **BF16_TOL)
    y, s = rms_norm(x, w, 1e-6, residual=r)
    y_ref, s_ref = rms_norm_reference(x, w, 1e-6, residual=r)
    torch.testing.assert_close(s, s_ref, atol=0, rtol=0)  # the sum is rounded exactly like torch's add
    torch.testing.assert_close(y, y_ref, **BF16_TOL)
    g = torch.randn(rows, i, device=DEV, dtype=torch.bfloat16) * 4
    u = torch.randn(rows, i, device=DEV, dtype=torch.bfloat16)
    torch.testing.assert_close(silu_mul(g, u), silu_mul_reference(g, u), **BF16_TOL)


def test_state_head_bf16_qwen_sized():
    from model.kernels.state_head import state_probs, state_probs_reference

    w = torch.randn(152064, 3584, device=DEV, dtype=torch.bfloat16) * 0.02
    h = torch.randn(1, 3584, device=DEV, dtype=torch.bfloat16)
    ids = [152061, 152062, 152063]
    logits, probs = state_probs(h, w, ids)
    ref_l, ref_p = state_probs_reference(h, w, ids)
    torch.testing.assert_close(logits, ref_l, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(probs, ref_p, atol=1e-4, rtol=1e-3)


def test_linear4bit_module_bf16_matches_bitsandbytes():
    import bitsandbytes as bnb

    from model.kernels.nf4 import linear4bit_triton_forward

    lin = bnb.nn.Linear4bit(
        3584, 512, bias=True, compute_dtype=torch.bfloat16, quant_type="nf4", compress_statistics=True
    )
    lin.weight = bnb.nn.Params4bit(
        torch.randn(512, 3584) * 0.02, requires_grad=False, quant_type="nf4", compress_statistics=True
    )
    lin.bias = torch.nn.Parameter(torch.randn(512), requires_grad=False)
    lin = lin.cuda().eval()
    for m in (1, 64):
        x = torch.randn(m, 3584, device=DEV, dtype=torch.bfloat16)
        with torch.inference_mode():
            torch.testing.assert_close(linear4bit_triton_forward(lin, x), lin(x), **BF16_TOL)


def test_apply_kernels_on_gpu_without_interpreter_flag():
    """The swap on CUDA as the loader calls it (no allow_cpu_interpreter), tiny model in bf16."""
    from test_kernel_swap import _run, _tiny_vl

    from model.kernels.patch import apply_kernels, revert_kernels

    model = _tiny_vl(nested=True, dtype=torch.bfloat16)
    ids = torch.randint(0, 512, (1, 10), device=DEV)
    ref = _run(model, ids)
    report = apply_kernels(model, "triton")
    assert report.path.startswith("triton (") and sum(report.swapped.values()) == 23, report
    try:
        out = _run(model, ids)
    finally:
        revert_kernels(model)
    for a, b in zip(out, ref, strict=True):
        torch.testing.assert_close(a.float(), b.float(), atol=5e-2 * b.abs().max().item(), rtol=5e-2)
