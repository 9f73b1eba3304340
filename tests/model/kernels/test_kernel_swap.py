"""The table-driven swap on a tiny Qwen2.5-VL whose language-model Linears are bitsandbytes NF4 (Linear4bit works
on the CPU in bnb 0.50): logits with the kernels swapped in match the unswapped bitsandbytes/torch forward, for a
prefill (matmul path) and a cached one-token step (matvec path); revert restores the model exactly."""

import bitsandbytes as bnb
import pytest
import torch
from kernel_testutil import DEVICE, HAS_CUDA

from model import hf_compat as hf
from model.kernels import patch
from model.kernels.patch import KernelReport, apply_kernels, kernels_available, revert_kernels

# transformers' deprecations are failures here: the engine must stay on its current public API.
pytestmark = [
    pytest.mark.filterwarnings("error::FutureWarning", "error::DeprecationWarning"),
    pytest.mark.usefixtures("no_transformers_deprecations"),
]


def _tiny_vl(nested: bool, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    cfg = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": 512,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
            "initializer_range": 0.1,  # layers contribute as much as the embeddings: errors show in the logits
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64},
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(cfg).eval().to(dtype)
    lm = model.model.language_model
    for parent in list(lm.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                q = bnb.nn.Linear4bit(
                    child.in_features,
                    child.out_features,
                    bias=child.bias is not None,
                    compute_dtype=dtype,
                    quant_type="nf4",
                    compress_statistics=nested,
                )
                q.weight = bnb.nn.Params4bit(
                    child.weight.data, requires_grad=False, quant_type="nf4", compress_statistics=nested
                )
                if child.bias is not None:
                    q.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
                q.support_avx512bf16_for_cpu = False  # keep bnb's storage (its CPU fast path repacks it)
                setattr(parent, name, q)
    return model.to(DEVICE)


def _run(model, ids):
    """Prefill (9 tokens) then one cached step: the two kernel paths."""
    with torch.no_grad():
        out = model(input_ids=ids[:, :-1], use_cache=True)
        cache = {hf.cache_argument(type(model).forward): hf.output_cache(out)}
        step = model(input_ids=ids[:, -1:], use_cache=True, **cache)
    return out.logits, step.logits


def _classes(model):
    return {n: type(m) for n, m in model.named_modules()}


@pytest.mark.parametrize("nested", [False, True], ids=["absmax", "double-quant"])
def test_swapped_forward_matches_unswapped(nested):
    model = _tiny_vl(nested)
    ids = torch.randint(0, 512, (1, 10), device=DEVICE)
    classes = _classes(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ref_prefill, ref_step = _run(model, ids)

    patch.reset_kernel_call_counts()
    report = apply_kernels(model, "triton", allow_cpu_interpreter=True)
    assert report.path.startswith("triton ("), report
    assert report.swapped == {
        "Linear4bit": 14,  # q k v o gate up down x 2 layers
        "Qwen2_5_VLRMSNorm": 5,  # 2 per layer + final norm; not the vision tower's
        "Qwen2_5_VLDecoderLayer": 2,
        "Qwen2MLP": 2,
    }, report.swapped
    assert report.skipped == []
    for name, m in model.named_modules():  # nothing outside the language model changed
        if not name.startswith("model.language_model"):
            assert type(m) is classes[name], name
    assert model.state_dict().keys() == state.keys()

    prefill, step = _run(model, ids)
    calls = patch.kernel_call_counts()
    # every NF4 Linear call, norm and MLP really went through a kernel
    assert calls.get("NF4 matvec/matmul/triton") == 28 and "NF4 matvec/matmul/fallback" not in calls, calls
    assert calls.get("add+rmsnorm/triton") == 4 and calls.get("SiLU*mul/triton") == 4, calls
    scale = ref_prefill.abs().max().item()  # logits are O(1)
    torch.testing.assert_close(prefill, ref_prefill, atol=1e-5 * scale, rtol=1e-4)
    torch.testing.assert_close(step, ref_step, atol=1e-5 * scale, rtol=1e-4)

    revert_kernels(model)
    assert _classes(model) == classes
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    again_prefill, again_step = _run(model, ids)
    assert torch.equal(again_prefill, ref_prefill) and torch.equal(again_step, ref_step)


def test_modes_and_refusals():
    model = _tiny_vl(nested=True)
    classes = _classes(model)
    report = apply_kernels(model, "off", allow_cpu_interpreter=True)
    assert isinstance(report, KernelReport) and report.path == "off" and report.swapped == {}
    assert _classes(model) == classes
    with pytest.raises(ValueError):
        apply_kernels(model, "fast")
    if not HAS_CUDA:
        ok, why = kernels_available()
        assert not ok and "no CUDA device" in why
        refused = apply_kernels(model, "triton")  # no allow_cpu_interpreter: the CPU is refused
        assert refused.path == "torch" and refused.swapped == {} and "no CUDA device" in refused.reason
        assert _classes(model) == classes
    # applying twice is the same as applying once; "off" afterwards reverts
    first = apply_kernels(model, "triton", allow_cpu_interpreter=True)
    second = apply_kernels(model, "triton", allow_cpu_interpreter=True)
    assert first.swapped == second.swapped and sum(second.swapped.values()) == 23
    assert apply_kernels(model, "off").path == "off"
    assert _classes(model) == classes


def test_unsupported_modules_are_skipped_with_reason():
    model = _tiny_vl(nested=False)
    lm = model.model.language_model
    lm.layers[0].mlp.config.hidden_act = "gelu"  # shared text config: both MLPs
    q = lm.layers[1].self_attn.q_proj
    q.weight.quant_state.quant_type = "fp4"  # pretend: the kernels only read nf4
    report = apply_kernels(model, "triton", allow_cpu_interpreter=True)
    try:
        assert "Qwen2MLP" not in report.swapped
        assert any("layers.1.self_attn.q_proj" in s and "fp4" in s for s in report.skipped), report.skipped
        assert any("layers.0.mlp" in s and "gelu" in s for s in report.skipped), report.skipped
        assert type(q) is bnb.nn.Linear4bit and report.swapped["Linear4bit"] == 13
    finally:
        revert_kernels(model)
