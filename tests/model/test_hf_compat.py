"""model/hf_compat.py: the one home of transformers-version-sensitive calls. The installed version's
forwards are followed (the cache argument, the output field, the decoder layer's signature), and a
narration with the demo model prints no deprecation from transformers."""

from __future__ import annotations

import json
import logging
import warnings

import pytest

from model import hf_compat as hf

pytestmark = [
    pytest.mark.filterwarnings("error::FutureWarning", "error::DeprecationWarning"),
    pytest.mark.usefixtures("no_transformers_deprecations"),
]


def test_the_cache_argument_is_the_one_each_forward_takes():
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as q

    name = hf.cache_argument(q.Qwen2_5_VLTextModel.forward)
    assert name in ("cache", "past_key_values")
    for cls in (q.Qwen2_5_VLForConditionalGeneration, q.Qwen2_5_VLDecoderLayer, q.Qwen2_5_VLAttention):
        assert hf.cache_argument(cls.forward) == name  # one spelling per version

    def new(self, x, cache=None): ...
    def old(self, x, past_key_values=None): ...

    assert hf.cache_argument(new) == "cache" and hf.cache_argument(old) == "past_key_values"


def test_output_cache_reads_either_field():
    from transformers.modeling_outputs import BaseModelOutputWithPast

    from model.kv import StreamKVCache

    cache = StreamKVCache(num_layers=1)
    field = "cache" if "cache" in BaseModelOutputWithPast.__dataclass_fields__ else "past_key_values"
    assert hf.output_cache(BaseModelOutputWithPast(**{field: cache})) is cache
    assert hf.output_cache(BaseModelOutputWithPast()) is None


def test_the_installed_decoder_layer_is_one_the_fused_forward_follows():
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLDecoderLayer

    assert hf.decoder_layer_unsupported(Qwen2_5_VLDecoderLayer) is None

    class Future(Qwen2_5_VLDecoderLayer):
        def forward(self, hidden_states, attention_mask=None, cache=None, new_thing=None, **kwargs): ...

    why = hf.decoder_layer_unsupported(Future)
    assert why is not None and "new_thing" in why and hf.TRANSFORMERS_VERSION in why


def test_narrate_prints_no_transformers_deprecation(sample_clip, tmp_path, capsys, caplog):
    """What a user sees: `narrate --model demo` with a spoken question (the engine, the demo Whisper
    through transformers' ASR pipeline) says nothing about deprecated arguments."""
    from app.cli import main as cli_main
    from app.voice.synth import synthesize
    from app.voice.wav import write_wav

    speech, rate = synthesize("What is rolling across the floor?")
    wav = tmp_path / "question.wav"
    write_wav(wav, speech, rate)
    jsonl = tmp_path / "steps.jsonl"
    args = ["narrate", "--source", str(sample_clip), "--model", "demo", "--jsonl", str(jsonl),
            "--ask-audio", str(wav), "--at", "2", "--asr-model", "demo"]  # fmt: skip
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        assert cli_main(args) == 0
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len([r for r in records if r["type"] == "step"]) == 10  # the run really went through the engine
    assert any((r.get("question") or {}).get("origin") == "voice" for r in records)  # the spoken question entered
    said = capsys.readouterr().err + caplog.text + "\n".join(str(w.message) for w in caught)
    assert "deprecat" not in said.lower(), said
    assert not [w for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))]
