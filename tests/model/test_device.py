"""model.device: devices, memory text, out-of-memory errors, and a module the GUI thread can import
without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model import device as D
from model.errors import ModelLoadError

REPO = Path(__file__).resolve().parents[2]


def test_out_of_memory_is_recognised():
    assert D.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert D.is_out_of_memory(torch.OutOfMemoryError("no text to go by"))  # by its type
    cpu = RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried")
    assert D.is_out_of_memory(cpu)
    assert D.is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not D.is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"))
    assert not D.is_out_of_memory(ValueError("out of memory"))  # only a RuntimeError says it by its text
    assert not D.is_out_of_memory(KeyboardInterrupt())


def test_importing_and_asking_without_torch_never_imports_it():
    code = (
        "import json, sys\n"
        "from model.device import KERNEL_MODES, device_choices, free_cuda_memory, is_out_of_memory\n"
        "import model.hub\n"
        "choices = device_choices()\n"
        "free_cuda_memory()\n"
        'oom = is_out_of_memory(RuntimeError("DefaultCPUAllocator: can\'t allocate memory"))\n'
        "print(json.dumps([choices, list(KERNEL_MODES), oom, 'torch' in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    choices, modes, oom, torch_imported = json.loads(out.stdout)
    assert choices == ["auto", "cpu", "cuda"]  # before torch: a plain cuda, checked at load time
    assert modes == ["auto", "triton", "off"] and oom is True
    assert torch_imported is False


def test_device_choices_list_the_gpus_torch_sees(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert D.device_choices() == ["auto", "cpu", "cuda:0", "cuda:1"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert D.device_choices() == ["auto", "cpu"]


def test_resolve_device_and_its_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert D.resolve_device("auto") == torch.device("cpu")
    assert D.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(
        ModelLoadError, match=r"device cuda was asked for but no CUDA GPU is available; choose the device cpu"
    ):
        D.resolve_device("cuda")
    with pytest.raises(ModelLoadError, match=r"unknown device 'gpu'; choose auto, cpu, cuda or cuda:N"):
        D.resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert D.resolve_device("auto") == torch.device("cuda")
    assert D.resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ModelLoadError, match=r"device cuda:3 does not exist: this computer has 1 CUDA GPU \(cuda:0"):
        D.resolve_device("cuda:3")


def test_describe_device_and_memory_text_on_the_cpu():
    assert D.describe_device(torch.device("cpu")) == "cpu" == D.describe_device("cpu")
    text = D.memory_text(torch.device("cpu"))
    assert text.startswith("RSS ") and text.endswith(" GB")


def test_describe_device_and_memory_text_on_a_gpu(monkeypatch):
    class Props:
        total_memory = 80 * 1024**3

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100")
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: int(5.1 * 1024**3))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: Props())
    assert D.describe_device(torch.device("cuda", 0)) == "cuda:0 (NVIDIA H100)"
    assert D.memory_text("cuda:0") == "GPU 5.1 / 80 GB"


def test_free_cuda_memory_only_with_cuda(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append(1))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    D.free_cuda_memory()
    assert calls == []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    D.free_cuda_memory()
    assert calls == [1]


def test_loading_uses_the_same_kernel_modes():
    import model.loading as L

    assert L.KERNEL_MODES is D.KERNEL_MODES == ("auto", "triton", "off")
    assert L.resolve_device is D.resolve_device
