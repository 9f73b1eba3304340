"""Triton kernels for the 4-bit GPU path (see docs/kernels.md).

One file per op, each with the `@triton.jit` kernel, its host launcher, a module-forward wrapper and a plain-torch
reference:
    nf4.py         NF4 matvec / small-batch matmul reading bitsandbytes' storage (+ optional LoRA epilogue)
    rmsnorm.py     fused RMSNorm, optionally with the preceding residual add
    silu_mul.py    fused SiLU(gate) * up
    state_head.py  state-token rows of the LM head + softmax in one launch
    patch.py       table-driven, reversible module swapping (`apply_kernels` / `revert_kernels`)

Importing this package defines no kernel (it only checks that triton imports); the op modules are imported lazily.
"""

from .patch import KernelReport, apply_kernels, kernel_call_counts, kernels_available, revert_kernels

__all__ = ["KernelReport", "apply_kernels", "kernel_call_counts", "kernels_available", "revert_kernels"]
