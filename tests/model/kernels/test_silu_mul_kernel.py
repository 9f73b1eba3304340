"""Fused SiLU(gate) * up against torch."""

import pytest
import torch
from kernel_testutil import DEVICE, DTYPES, assert_close, poisoned

from model.kernels.silu_mul import silu_mul, silu_mul_reference


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(1, 1, 37), (3, 5, 211), (2, 1029)], ids=lambda s: "x".join(map(str, s)))
def test_silu_mul(shape, dtype):
    g = (torch.randn(shape, device=DEVICE) * 4).to(dtype)  # both tails of SiLU
    u = torch.randn(shape, device=DEVICE).to(dtype)
    out = poisoned(shape, dtype)
    y = silu_mul(g, u, out=out)
    assert y.data_ptr() == out.data_ptr() and y.shape == shape
    assert_close(y, silu_mul_reference(g, u), dtype)


def test_non_contiguous_inputs():
    gu = torch.randn(6, 2 * 50, device=DEVICE)
    g, u = gu[:, :50], gu[:, 50:]  # halves of a fused gate_up output
    assert_close(silu_mul(g, u), silu_mul_reference(g, u), torch.float32)


def test_qwen2_mlp_forward_matches_transformers():
    from transformers import Qwen2_5_VLConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2MLP

    from model.kernels.silu_mul import qwen2_mlp_forward

    cfg = Qwen2_5_VLConfig(text_config={"hidden_size": 48, "intermediate_size": 72, "hidden_act": "silu"}).text_config
    mlp = Qwen2MLP(cfg).to(DEVICE).eval()
    x = torch.randn(2, 5, 48, device=DEVICE)
    with torch.no_grad():
        assert_close(qwen2_mlp_forward(mlp, x), mlp(x), torch.float32)
