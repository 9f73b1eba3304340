"""Devices, memory and out-of-memory errors, and the kernel modes: the torch questions ``ui/`` asks.

Importing this module never imports torch (the GUI thread imports it, and ``app.gui_cmd`` must stay
cheap to import). ``resolve_device``, ``describe_device`` and ``memory_text`` import torch when called;
``device_choices``, ``is_out_of_memory`` and ``free_cuda_memory`` only look at a torch that is
already imported (``sys.modules``): without it there is no GPU state to ask about, no torch
exception to recognise and no CUDA cache to free, and importing it would stall the caller for
seconds.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from model.errors import ModelLoadError

if TYPE_CHECKING:
    import torch

KERNEL_MODES: tuple[str, ...] = ("auto", "triton", "off")
"""The ``kernels`` choices of ``model.loading.load_model`` (model manager, settings, ``--kernels``):

- ``auto``: our Triton kernels where they apply (a CUDA GPU, a 4-bit model), otherwise
  bitsandbytes/torch, silently.
- ``triton``: the same, but when the kernels cannot apply ``LoadedModel.warnings`` says so and why
  (no CUDA GPU, not 4-bit, triton missing, a GPU too old, training).
- ``off``: never; bitsandbytes/torch always.

Defined here rather than in ``model.loading`` (which re-exports it) so the CLI and the settings can
name the choices without importing torch.
"""


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` (the first CUDA GPU, else the CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` as a
    torch.device. ModelLoadError for a device that is not one, or a GPU this computer lacks."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ModelLoadError(f"unknown device '{device}'; choose auto, cpu, cuda or cuda:N.") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(
                f"device {device} was asked for but no CUDA GPU is available; choose the device cpu (Model > Manage models)."
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ModelLoadError(
                f"device {device} does not exist: this computer has {count} CUDA GPU{'s' if count != 1 else ''} "
                f"(cuda:0 to cuda:{count - 1})."
            )
    return dev


def device_choices() -> list[str]:
    """The model manager's device list. Asks torch only when it is already imported, never
    stalling the GUI thread on importing it: then ``cuda:N`` for each GPU it sees; before that
    a plain ``cuda`` (``resolve_device`` checks it at load time)."""
    devices = ["auto", "cpu"]
    torch = sys.modules.get("torch")
    if torch is None:
        devices.append("cuda")
    elif torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return devices


GPU_ONLY_PRECISIONS = ("4bit", "8bit")  # bitsandbytes' quantised kernels: CUDA only (the CPU runs fp32)


def runs_on_cpu(device: str) -> bool:
    """Whether a model set to ``device`` would run on the CPU, as far as can be told without importing
    torch on the caller's thread: "cpu", or "auto" once torch is imported and sees no CUDA GPU."""
    if device == "cpu":
        return True
    torch = sys.modules.get("torch")
    return device == "auto" and torch is not None and not torch.cuda.is_available()


def _as_device(device: Any) -> Any:
    import torch

    return device if isinstance(device, torch.device) else torch.device(device)


def describe_device(device: Any) -> str:
    """``"cpu"``, or ``"cuda:0 (NVIDIA H100 80GB HBM3)"`` for a GPU (a torch.device or its name)."""
    import torch

    device = _as_device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def memory_text(device: Any) -> str:
    """Memory in use, for the status bar: ``"GPU 5.1 / 80 GB"`` (allocated by torch / the GPU's
    total) on CUDA, the process's resident memory (``"RSS 1.20 GB"``) otherwise."""
    import torch

    device = _as_device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        used = torch.cuda.memory_allocated(device) / 1024**3
        total = torch.cuda.get_device_properties(device).total_memory / 1024**3
        return f"GPU {used:.1f} / {total:.0f} GB"
    import psutil

    return f"RSS {psutil.Process().memory_info().rss / 1024**3:.2f} GB"


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is running out of memory: torch's CUDA ``OutOfMemoryError``, or a CPU
    allocation failure (a RuntimeError saying "out of memory" or "can't allocate memory", as
    torch's CPU allocator does)."""
    torch = sys.modules.get("torch")  # a torch exception only exists once torch is imported
    if torch is not None:
        oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
        if oom is not None and isinstance(exc, oom):
            return True
    if isinstance(exc, RuntimeError):
        text = str(exc).lower()
        return "out of memory" in text or "can't allocate memory" in text
    return False


def free_cuda_memory() -> None:
    """Hand torch's cached, unused GPU blocks back (``torch.cuda.empty_cache``) when CUDA is
    available, e.g. after an out-of-memory error. Without torch imported there is nothing to free."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
