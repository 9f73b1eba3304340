"""Kernel tests: compiled on a CUDA GPU, through Triton's CPU interpreter otherwise.

TRITON_INTERPRET must be set before `@triton.jit` runs, i.e. before the kernel modules are imported; this file is
imported by pytest before the test modules of this folder, so it sets the variable at import time when there is no
GPU (and re-imports kernel modules that something else imported earlier with compiled kernels).
"""

import importlib
import os
import sys

import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")
    for _name in ("model.kernels.rmsnorm", "model.kernels.silu_mul", "model.kernels.state_head", "model.kernels.nf4"):
        if _name in sys.modules:
            importlib.reload(sys.modules[_name])

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
