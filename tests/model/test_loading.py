import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from model import protocol as P
from model.errors import ModelLoadError
from model.frames import preprocess_frame
from model.hub import download_model
from model.loading import KERNEL_MODES, check_safetensors, default_model_id, load_model
from model.tiny import build_tiny_checkpoint


def test_tiny_checkpoint_loads_with_state_tokens_and_pixel_budget(tiny_loaded):
    lm = tiny_loaded
    assert lm.precision == "fp32" and lm.device.type == "cpu" and lm.added_state_tokens == []
    for token in P.STATE_TOKENS:
        ids = lm.tokenizer(token, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and ids[0] == lm.state_token_ids[token]
    assert len(set(lm.state_ids)) == 3
    frame = preprocess_frame(lm.processor, np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8))
    assert 4 <= frame.n_tokens <= 128
    assert frame.n_tokens * 4 == int(frame.image_grid_thw.prod())
    assert any("CPU" in w for w in lm.warnings)


def test_processor_budget_bounds(tiny_loaded):
    tiny = preprocess_frame(tiny_loaded.processor, np.zeros((8, 8, 3), np.uint8))
    huge = preprocess_frame(tiny_loaded.processor, np.zeros((2160, 3840, 3), np.uint8))
    assert tiny.n_tokens >= 4 and huge.n_tokens <= 128
    bigger = preprocess_frame(tiny_loaded.processor, np.zeros((480, 640, 3), np.uint8), max_pixels=200704)
    assert bigger.n_tokens > 128  # the budget is configurable


def test_chat_template_matches_protocol_rendering(tiny_loaded):
    msgs = [
        {"role": "system", "content": P.SYSTEM_PROMPT},
        {"role": "user", "content": "what?\n<0s-1s>\n"},
        {"role": "assistant", "content": "</Response> a cat."},
    ]
    rendered = tiny_loaded.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert rendered == P.render_conversation(msgs, add_generation_prompt=True)


def test_forward_with_one_image(tiny_loaded):
    lm = tiny_loaded
    frame = preprocess_frame(lm.processor, np.full((240, 320, 3), 128, np.uint8))
    text = P.render_conversation([{"role": "user", "content": P.user_turn_content(0, 1)}], True)
    text = text.replace(P.IMAGE_PAD, P.IMAGE_PAD * frame.n_tokens)
    ids = lm.tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = lm.model(input_ids=ids, pixel_values=frame.pixel_values, image_grid_thw=frame.image_grid_thw)
    assert out.logits.shape[:2] == ids.shape and torch.isfinite(out.logits).all()


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_builder_is_deterministic(tiny_ckpt, tmp_path):
    again = build_tiny_checkpoint(tmp_path / "again", seed=0)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert _digest(again / name) == _digest(tiny_ckpt / name), name
    other = build_tiny_checkpoint(tmp_path / "other", seed=1)
    assert _digest(other / "model.safetensors") != _digest(tiny_ckpt / "model.safetensors")


def test_missing_state_tokens_are_added_and_initialised(tmp_path):
    path = build_tiny_checkpoint(tmp_path / "base", seed=3, with_state_tokens=False)
    weights = load_file(path / "model.safetensors")
    emb_key = next(k for k in weights if k.endswith("embed_tokens.weight"))
    emb, head = weights[emb_key], weights["lm_head.weight"]
    lm = load_model(path, precision="fp32", device="cpu")
    assert lm.added_state_tokens == list(P.STATE_TOKENS)
    rows = lm.model.get_input_embeddings().weight
    assert rows.shape[0] == emb.shape[0]  # landed on spare rows: no resize
    for token, word in P.STATE_TOKEN_WORDS.items():
        i = lm.state_token_ids[token]
        pieces = lm.tokenizer(word, add_special_tokens=False)["input_ids"]
        assert len(pieces) >= 1 and i >= len(lm.tokenizer) - 3
        torch.testing.assert_close(rows[i], emb[pieces].mean(0))
        torch.testing.assert_close(lm.model.get_output_embeddings().weight[i], head[pieces].mean(0))
    # The three rows differ, so the state decision is not a tie before training.
    assert not torch.allclose(rows[lm.state_ids[0]], rows[lm.state_ids[2]])


def test_loader_errors_name_path_and_problem(tiny_ckpt, tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "nope", device="cpu")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match=r"empty has no config\.json"):
        load_model(empty, device="cpu")

    no_weights = tmp_path / "no_weights"
    shutil.copytree(tiny_ckpt, no_weights)
    (no_weights / "model.safetensors").rename(no_weights / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"no_weights has no \*\.safetensors.*pytorch_model\.bin"):
        load_model(no_weights, device="cpu")

    truncated = tmp_path / "truncated"
    shutil.copytree(tiny_ckpt, truncated)
    f = truncated / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match=r"truncated.*model\.safetensors.*truncated safetensors"):
        load_model(truncated, device="cpu")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\xff" * 64)
    with pytest.raises(ModelLoadError, match="not a valid safetensors"):
        check_safetensors(garbage)

    other = tmp_path / "llama"
    shutil.copytree(tiny_ckpt, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["model_type"] = "llama"
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match=r"llama: unsupported architecture 'llama'.*Qwen2\.5-VL"):
        load_model(other, device="cpu")

    broken = tmp_path / "broken"
    shutil.copytree(tiny_ckpt, broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"config\.json: unreadable JSON"):
        load_model(broken, device="cpu")


def test_4bit_on_cpu_falls_back_with_warning(tiny_ckpt):
    lm = load_model(tiny_ckpt, precision="4bit", device="cpu")
    assert lm.precision == "fp32" and any("4bit needs a CUDA GPU" in w for w in lm.warnings)
    assert lm.kernel_path == "torch"
    with pytest.raises(ModelLoadError, match="unknown precision"):
        load_model(tiny_ckpt, precision="3bit", device="cpu")


def test_kernel_modes_are_checked_and_explained(tiny_ckpt):
    assert KERNEL_MODES == ("auto", "triton", "off")
    with pytest.raises(ModelLoadError, match=r"unknown kernels mode 'fast'; choose one of auto, triton, off"):
        load_model(tiny_ckpt, device="cpu", kernels="fast")
    asked = load_model(tiny_ckpt, device="cpu", kernels="triton")  # asked for, cannot apply: says why
    assert asked.kernel_path == "torch"
    assert [w for w in asked.warnings if "Triton" in w] == [
        "Triton kernels not used: they need a CUDA GPU and the model runs on the CPU; running torch"
    ]
    training = load_model(tiny_ckpt, device="cpu", kernels="triton", trainable=True)
    assert [w for w in training.warnings if "Triton" in w] == [
        "Triton kernels not used: they have no backward pass, so training runs without them; running torch"
    ]
    for quiet in ("auto", "off"):  # auto falls back silently; off never tries
        lm = load_model(tiny_ckpt, device="cpu", kernels=quiet)
        assert lm.kernel_path == "torch" and not any("Triton" in w for w in lm.warnings), lm.warnings


def test_kernel_switch_on_a_gpu_model_that_is_not_4bit(tiny_loaded):
    """The switch itself, on a stand-in for a bf16 model on a GPU: no kernels, and only "triton" says so."""
    from dataclasses import replace

    from model.loading import apply_kernel_switch

    bf16_gpu = replace(tiny_loaded, device=torch.device("cuda", 0), precision="bf16", warnings=[])
    assert apply_kernel_switch(bf16_gpu, "auto") == "torch" and bf16_gpu.warnings == []
    assert apply_kernel_switch(bf16_gpu, "triton") == "torch"
    assert bf16_gpu.warnings == [
        "Triton kernels not used: they apply to 4-bit models and this one runs in bf16; running torch"
    ]
    eight_bit = replace(bf16_gpu, precision="8bit", warnings=[])
    assert apply_kernel_switch(eight_bit, "off") == "bitsandbytes" and eight_bit.warnings == []
    with pytest.raises(ModelLoadError, match="unknown kernels mode"):
        apply_kernel_switch(bf16_gpu, "on")


def test_running_out_of_memory_while_loading_says_so(tiny_ckpt, monkeypatch):
    from transformers import AutoModelForImageTextToText

    def no_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", no_memory)
    with pytest.raises(ModelLoadError, match=r"out of memory loading .* in fp32: .*Choose a smaller model"):
        load_model(tiny_ckpt, device="cpu")


def test_adapter_is_applied_and_checked(tiny_ckpt, tmp_path):
    from peft import LoraConfig, get_peft_model

    from model.loading import load_model as load

    base = load(tiny_ckpt, precision="fp32", device="cpu")
    ids = base.tokenizer("<|im_start|>user\nhello<|im_end|>\n", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        ref = base.model(input_ids=ids).logits
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(base.model, cfg)
    with torch.no_grad():
        want = peft_model(input_ids=ids).logits
    peft_model.save_pretrained(tmp_path / "adapter")
    lm = load(tiny_ckpt, precision="fp32", device="cpu", adapter=tmp_path / "adapter")
    with torch.no_grad():
        got = lm.model(input_ids=ids).logits
    assert lm.adapter == tmp_path / "adapter"
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, ref)

    (tmp_path / "bad_adapter").mkdir()
    with pytest.raises(ModelLoadError, match="bad_adapter has no adapter_config.json"):
        load(tiny_ckpt, device="cpu", adapter=tmp_path / "bad_adapter")


def test_default_model_follows_free_gpu_memory():
    assert default_model_id(12 * 1024**3) == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert default_model_id(6 * 1024**3) == "Qwen/Qwen2.5-VL-3B-Instruct"


def test_offline_download_uses_cache_only(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelLoadError, match="not in the local cache and HF_HUB_OFFLINE is set"):
        download_model("Qwen/Qwen2.5-VL-3B-Instruct")


def test_demo_model_builds_into_data_folder():

    lm = load_model("demo", device="cpu")
    assert lm.is_demo and str(lm.path).startswith(os.environ["STREAMO_LIVE_DATA"])
    assert load_model("demo", device="cpu").path == lm.path  # built once, reused


def test_cpu_threads_leave_room_for_capture_and_ui(tiny_loaded, monkeypatch):
    from model.loading import configure_cpu_threads

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("STREAMO_LIVE_THREADS", "2")
        assert configure_cpu_threads(tiny_loaded.model) == 2 and torch.get_num_threads() == 2
        monkeypatch.delenv("STREAMO_LIVE_THREADS")
        assert configure_cpu_threads(tiny_loaded.model) == 1  # a tiny model: one thread
        big = torch.nn.Linear(8000, 8000, bias=False)  # 64M parameters
        assert configure_cpu_threads(big) == max(1, (os.cpu_count() or 2) - 1)
    finally:
        torch.set_num_threads(before)


class _FakeHub:
    """Stands in for the hub's two calls so download_model's progress and cancel logic runs
    without a network: model_info lists files, hf_hub_download feeds the tqdm class it is given."""

    def __init__(self, tmp_path, sizes):
        from types import SimpleNamespace

        self.root, self.sizes, self.fetched = tmp_path, sizes, []
        self.info = SimpleNamespace(
            sha="abc", siblings=[SimpleNamespace(rfilename=n, size=s) for n, s in sizes.items()]
        )

    def model_info(self, repo_id, revision=None, files_metadata=False):
        return self.info

    def hf_hub_download(self, repo_id, filename, revision=None, tqdm_class=None):
        bar = tqdm_class(total=self.sizes[filename])
        for _ in range(0, self.sizes[filename], 100):
            bar.update(min(100, self.sizes[filename]))
        self.fetched.append(filename)
        (self.root / filename).write_bytes(b"x")
        return str(self.root / filename)


def test_download_reports_bytes_and_can_cancel(monkeypatch, tmp_path):
    import threading

    import huggingface_hub

    import model.hub as L

    hub = _FakeHub(tmp_path, {"config.json": 100, "model.safetensors": 1000, "README.md": 50})
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda: hub)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub.hf_hub_download)
    monkeypatch.setattr(L, "is_offline", lambda: False)
    monkeypatch.setattr(L, "cached_model_path", lambda repo_id: None)
    seen = []
    path = L.download_model("org/model", progress=lambda done, total, name: seen.append((done, total, name)))
    assert path == tmp_path and hub.fetched == ["config.json", "model.safetensors"]  # weights and configs only
    assert seen[-1] == (1100, 1100, "model.safetensors")
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)

    cancel = threading.Event()
    hub.fetched.clear()

    def stop_midway(done, total, name):
        if done >= 500:
            cancel.set()

    with pytest.raises(L.DownloadCancelled):
        L.download_model("org/model", progress=stop_midway, cancel=cancel)
    assert hub.fetched == ["config.json"]
