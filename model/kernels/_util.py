"""Small helpers shared by the Triton kernels (device checks, block-size picking)."""

from __future__ import annotations

import os

import torch

try:  # Triton is a hard dependency on the GPU path; the app must still import without it.
    import triton  # noqa: F401

    HAS_TRITON = True
    _TRITON_IMPORT_ERROR = ""
except Exception as exc:  # pragma: no cover - depends on the install
    HAS_TRITON = False
    _TRITON_IMPORT_ERROR = f"{type(exc).__name__}: {exc}"


def interpreter_active() -> bool:
    """True when Triton runs kernels through its CPU interpreter (TRITON_INTERPRET=1).

    The variable is read by Triton when `triton` is first imported, so flipping it later has no effect;
    the tests set it in `tests/model/kernels/conftest.py` before anything imports triton.
    """
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_import_error() -> str:
    return _TRITON_IMPORT_ERROR


def is_interpreted(kernel) -> bool:
    """Whether `kernel` was decorated while TRITON_INTERPRET=1 (so it runs on CPU tensors). Triton decides this
    when `@triton.jit` runs, i.e. when the kernel module is imported, not at launch."""
    return type(kernel).__name__ == "InterpretedFunction" or type(getattr(kernel, "fn", None)).__name__ == (
        "InterpretedFunction"
    )


def can_launch(kernel, *tensors: torch.Tensor) -> bool:
    """Whether `kernel` can run on these tensors: all on one CUDA device with a compiled kernel, or all on CPU with
    an interpreted one."""
    if not HAS_TRITON or not tensors:
        return False
    dev = tensors[0].device
    if any(t.device != dev for t in tensors):
        return False
    if dev.type == "cuda":
        return not is_interpreted(kernel)
    return dev.type == "cpu" and is_interpreted(kernel)


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def row_block(n_cols: int, max_block: int = 65536) -> tuple[int, int]:
    """(BLOCK_SIZE, num_warps) for a one-program-per-row kernel over `n_cols` columns (Liger's rule of thumb):
    the whole row in one block so it is read once, more warps as the row grows."""
    block = next_pow2(n_cols)
    if block > max_block:
        raise ValueError(f"row of {n_cols} columns exceeds the {max_block} block limit")
    num_warps = 4
    if block >= 32768:
        num_warps = 32
    elif block >= 8192:
        num_warps = 16
    elif block >= 2048:
        num_warps = 8
    return block, num_warps
