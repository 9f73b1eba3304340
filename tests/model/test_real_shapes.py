"""Real-shape models (model/real_shapes.py): the published parameter totals on the meta device,
the real special-token ids, and a random-weights folder through the product's load_model."""

import pytest
import torch

from model import protocol as P
from model import real_shapes as R

# The hub's safetensors totals (see model/real_shapes.py's docstring for where they come from).
PUBLISHED = {
    ("qwen", "3b"): 3_754_622_976,
    ("qwen", "7b"): 8_292_166_656,
    ("whisper", "base"): 72_593_920,
    ("whisper", "small"): 241_734_912,
}


@pytest.mark.parametrize(("kind", "name"), list(PUBLISHED))
def test_parameter_counts_match_the_published_totals(kind, name):
    d = R.describe(kind, name)
    assert d["params"] == PUBLISHED[(kind, name)]
    model = R.meta_model(kind, name)
    assert all(p.device.type == "meta" for p in model.parameters())


def test_qwen_shapes_follow_their_configs():
    m3, m7 = R.meta_model("qwen", "3b"), R.meta_model("qwen", "7b")
    assert m3.lm_head.weight is m3.model.language_model.embed_tokens.weight  # 3B ties, 7B does not
    assert m7.lm_head.weight is not m7.model.language_model.embed_tokens.weight
    layer = m7.model.language_model.layers[0]
    assert tuple(layer.self_attn.k_proj.weight.shape) == (512, 3584)  # 4 KV heads of 128
    assert tuple(layer.mlp.gate_proj.weight.shape) == (18944, 3584)
    assert m7.config.vision_config.fullatt_block_indexes == [7, 15, 23, 31]
    assert tuple(m7.model.visual.merger.mlp[2].weight.shape) == (3584, 5120)
    assert len(m3.model.language_model.layers) == 36 and len(m3.model.visual.blocks) == 32


def test_qwen_tokenizer_has_the_real_special_ids():
    tok = R.qwen_tokenizer(R.QWEN_SHAPES["7b"])
    assert len(tok) == 151665
    real = {P.ENDOFTEXT: 151643, P.IM_START: 151644, P.IM_END: 151645, P.VISION_START: 151652,
            P.VISION_END: 151653, P.IMAGE_PAD: 151655, P.VIDEO_PAD: 151656}  # fmt: skip
    assert {t: tok.convert_tokens_to_ids(t) for t in real} == real
    ids = tok(f"{P.IM_START}user\nWhat now?{P.IM_END}", add_special_tokens=False)["input_ids"]
    assert ids[0] == 151644 and ids[-1] == 151645 and max(ids[1:-1]) < 700  # words come from the trained BPE


def test_whisper_tokenizer_has_the_real_special_ids():
    tok, languages = R.whisper_tokenizer(R.WHISPER_SHAPES["small"])
    assert len(languages) == 99 and len(tok) == 51865
    ids = tok.convert_tokens_to_ids
    assert (ids("<|endoftext|>"), ids("<|startoftranscript|>"), ids("<|en|>")) == (50257, 50258, 50259)
    assert (ids("<|transcribe|>"), ids("<|notimestamps|>"), ids("<|0.00|>")) == (50359, 50363, 50364)


def test_random_folder_loads_through_load_model(tmp_path):
    from model.engine import EngineOptions, StreamEngine
    from model.loading import load_model

    folder = R.write_qwen_folder("tiny", tmp_path / "m")
    assert not list(folder.glob("*.safetensors"))  # no weights written: built on the device at load
    loaded = load_model(folder, device="cpu", kernels="auto")
    assert loaded.precision == "fp32" and loaded.added_state_tokens == list(P.STATE_TOKENS)
    assert loaded.state_ids == [R.QWEN_SHAPES["tiny"].bpe_size + len(R.QWEN_SPECIALS) + i for i in range(3)]
    engine = StreamEngine(loaded, EngineOptions(threshold=1.0))
    frame = torch.randint(0, 255, (112, 112, 3), dtype=torch.uint8).numpy()
    r = engine.step(frame)
    assert r.state in P.STATE_TOKENS and r.timings["total"] > 0

    q = load_model(folder, precision="4bit", device="cpu", trainable=True)
    import bitsandbytes as bnb

    lm = q.model.model.language_model
    assert type(lm.layers[0].mlp.down_proj) is bnb.nn.Linear4bit
    assert lm.layers[0].mlp.down_proj.weight.quant_state.nested  # double quantisation, as load_model asks
    assert type(q.model.model.visual.blocks[0].mlp.up_proj) is torch.nn.Linear  # the vision tower stays exact
    assert getattr(q.model, "is_loaded_in_4bit", False)
