"""Fused RMSNorm (+ residual add) against transformers' Qwen2.5-VL RMSNorm."""

import pytest
import torch
from kernel_testutil import DEVICE, DTYPES, assert_close, poisoned

from model.kernels.rmsnorm import rms_norm, rms_norm_reference, rmsnorm_module_forward

SHAPES = [(1, 1, 64), (3, 7, 100), (2, 5, 1000)]  # one token; odd rows x odd width; width > 512


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_rms_norm(shape, dtype):
    x = (torch.randn(shape, device=DEVICE) * 3).to(dtype)
    w = torch.randn(shape[-1], device=DEVICE).to(dtype)
    out = poisoned(shape, dtype)
    y = rms_norm(x, w, 1e-6, out=out)
    assert y.data_ptr() == out.data_ptr()
    assert_close(y, rms_norm_reference(x, w, 1e-6), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_rms_norm_with_residual(shape, dtype):
    x = torch.randn(shape, device=DEVICE).to(dtype)
    res = (torch.randn(shape, device=DEVICE) * 4).to(dtype)
    w = torch.randn(shape[-1], device=DEVICE).to(dtype)
    y, s = rms_norm(x, w, 1e-5, residual=res, out=poisoned(shape, dtype), sum_out=poisoned(shape, dtype))
    y_ref, s_ref = rms_norm_reference(x, w, 1e-5, residual=res)
    assert_close(s, s_ref, dtype)
    assert_close(y, y_ref, dtype)


def test_weight_dtype_promotion_and_strided_input():
    """fp32 weight with fp16 input gives fp32 out (as HF); a non-contiguous input is handled."""
    x = torch.randn(4, 130, device=DEVICE).to(torch.float16)[:, :65]  # row stride 130
    w = torch.randn(65, device=DEVICE)
    y = rms_norm(x, w, 1e-6)
    assert y.dtype == torch.float32
    assert_close(y, rms_norm_reference(x, w, 1e-6), torch.float16)


def test_module_forward_matches_transformers():
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLRMSNorm

    norm = Qwen2_5_VLRMSNorm(96, eps=1e-6).to(DEVICE)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(96))
        x = torch.randn(2, 9, 96, device=DEVICE)
        y = rmsnorm_module_forward(norm, x)
        assert y is not None
        assert_close(y, norm(x), torch.float32)
    x.requires_grad_(True)
    assert rmsnorm_module_forward(norm, x) is None  # autograd -> torch
