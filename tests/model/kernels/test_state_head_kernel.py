"""State decision: LM-head rows of the state tokens + softmax in one launch, against torch."""

import pytest
import torch
from kernel_testutil import DEVICE, DTYPES, assert_close

from model.kernels.state_head import state_probs, state_probs_reference


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("hidden_size", [64, 1000, 2100])  # one tile, a partial tile, > 2 tiles of 1024
def test_state_probs(hidden_size, dtype):
    vocab = 777
    w = (torch.randn(vocab, hidden_size, device=DEVICE) / hidden_size**0.5 * 3).to(dtype)
    h = torch.randn(1, hidden_size, device=DEVICE).to(dtype)
    ids = [5, vocab - 1, 300]
    out = (torch.full((3,), float("nan"), device=DEVICE), torch.full((3,), float("nan"), device=DEVICE))
    logits, probs = state_probs(h, w, ids, out=out)
    assert logits.dtype == probs.dtype == torch.float32 and logits.shape == probs.shape == (3,)
    ref_l, ref_p = state_probs_reference(h, w, ids)
    assert_close(logits, ref_l, dtype)
    assert_close(probs, ref_p, torch.float32, scale=10 if dtype != torch.float32 else 1)
    torch.testing.assert_close(probs.sum().cpu(), torch.tensor(1.0), atol=1e-5, rtol=0)
    # the three rows really are the requested ones: against a full LM head
    full = h.float().reshape(-1) @ w.float().t()
    assert_close(logits, full[ids], dtype)


def test_state_ids_as_tensor_and_hidden_1d():
    w = torch.randn(50, 96, device=DEVICE)
    h = torch.randn(96, device=DEVICE)
    ids = torch.tensor([7, 3, 41, 0, 12], device=DEVICE)  # any count works, padded to a power of two inside
    logits, probs = state_probs(h, w, ids)
    ref_l, ref_p = state_probs_reference(h, w, ids)
    assert_close(logits, ref_l, torch.float32)
    assert_close(probs, ref_p, torch.float32)
    assert int(probs.argmax()) == int(ref_l.argmax())
