"""Helpers shared by the kernel tests (imported by module name: pytest puts this folder on sys.path)."""

import torch

HAS_CUDA = torch.cuda.is_available()
# Device the parametrised kernel tests run on: the same checks, compiled on a GPU or interpreted on the CPU.
DEVICE = torch.device("cuda" if HAS_CUDA else "cpu")

# The interpreter computes bf16 products wrongly and truncates fp32 -> bf16 instead of rounding: bf16 is only
# checked compiled (test_cuda.py).
DTYPES = [torch.float32, torch.float16]

# Tolerances (atol, rtol) per compute dtype, for outputs of O(1)..O(10) magnitude.
TOL = {
    torch.float32: (1e-4, 1e-4),
    torch.float16: (2e-2, 1e-2),
    torch.bfloat16: (1e-1, 2e-2),
}


def poisoned(shape, dtype, device=DEVICE) -> torch.Tensor:
    """An output buffer full of NaN: any element the kernel does not write makes the comparison fail."""
    return torch.full(shape, float("nan"), dtype=dtype, device=device)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, scale: float = 1.0) -> None:
    atol, rtol = TOL[dtype]
    assert not torch.isnan(actual).any(), "unwritten (NaN-poisoned) or NaN output elements"
    torch.testing.assert_close(actual.float().cpu(), expected.float().cpu(), atol=atol * scale, rtol=rtol)
