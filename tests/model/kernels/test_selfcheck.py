"""The kernels' self-check (model/kernels/selfcheck.py) through the Triton interpreter: every kernel
passes against its reference, the result is cached per GPU and stack, and a wrong kernel injected
in place of a real one fails its check and is left out of the swap with a message."""

import torch
from kernel_testutil import DEVICE

from model.kernels import selfcheck
from model.kernels.patch import _KIND_ATTR, _is_swapped


def test_every_kernel_passes_and_the_result_is_cached(tmp_path, monkeypatch):
    cache = tmp_path / "check.json"
    first = selfcheck.ensure_selfcheck(DEVICE, cache=cache)
    assert not first.cached and first.disabled == [], first.failed
    assert set(first.errors) == set(selfcheck.CHECKS)
    tol = selfcheck.TOLERANCE[torch.bfloat16 if DEVICE.type == "cuda" else torch.float32]
    assert all(0 <= e <= tol for e in first.errors.values()), first.errors
    assert first.key in cache.read_text()

    def must_not_run(device, dtype):
        raise AssertionError("a cached result must not be checked again")

    monkeypatch.setattr(selfcheck, "CHECKS", {k: must_not_run for k in selfcheck.CHECKS})
    second = selfcheck.ensure_selfcheck(DEVICE, cache=cache)
    assert second.cached and second.disabled == [] and second.errors == first.errors
    # Another GPU or software stack is a different key: checked afresh (here: every check raises).
    monkeypatch.setattr(selfcheck, "fingerprint", lambda device: "Other GPU | driver 1 | torch x")
    third = selfcheck.ensure_selfcheck(DEVICE, cache=cache)
    assert not third.cached and third.disabled == sorted(selfcheck.CHECKS)
    assert all("raised AssertionError" in why for why in third.failed.values())


def test_a_wrong_kernel_is_turned_off_with_a_message(tmp_path, monkeypatch):
    from model import real_shapes
    from model.kernels import silu_mul
    from model.loading import load_model

    monkeypatch.setattr(silu_mul, "silu_mul", lambda gate, up, out=None: gate * up)  # forgot the SiLU
    check = selfcheck.ensure_selfcheck(DEVICE, cache=tmp_path / "check.json")
    assert check.disabled == [selfcheck.SILU_MUL]
    assert "relative error" in check.failed[selfcheck.SILU_MUL]
    (msg,) = check.messages()
    assert "'SiLU*mul' turned off" in msg and check.key.split(" | ")[0] in msg

    folder = real_shapes.write_qwen_folder("tiny", tmp_path / "model")
    loaded = load_model(folder, precision="4bit", device="cpu", trainable=True)  # NF4 on the CPU, kernels off
    report, again = selfcheck.apply_checked(
        loaded.model, DEVICE, allow_cpu_interpreter=True, cache=tmp_path / "check.json"
    )
    assert again.cached and again.disabled == [selfcheck.SILU_MUL]
    kinds = {type(m).__dict__[_KIND_ATTR] for m in loaded.model.modules() if _is_swapped(m)}
    assert selfcheck.SILU_MUL not in kinds and selfcheck.NF4 in kinds and selfcheck.RMSNORM in kinds
    assert report.path.startswith("triton (") and "SiLU*mul" not in report.path and "NF4" in report.path
    assert any("SiLU*mul: failed the self-check" in s for s in report.skipped)
