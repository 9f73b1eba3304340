"""The tiny offline Whisper: deterministic, and loadable by the real transformers ASR pipeline and generate()."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory) -> Path:
    from model.tiny_whisper import build_tiny_whisper

    return build_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper") / "ckpt", seed=0)


def _one_second(seed: int = 0) -> np.ndarray:
    t = np.arange(16000) / 16000
    noise = np.random.default_rng(seed).normal(0, 0.01, t.size)
    return (0.3 * np.sin(2 * np.pi * 220 * t) + noise).astype(np.float32)


def test_same_seed_same_weights(tiny_whisper, tmp_path):
    from safetensors.numpy import load_file

    from model.tiny_whisper import build_tiny_whisper

    again = build_tiny_whisper(tmp_path / "again", seed=0)
    a, b = load_file(tiny_whisper / "model.safetensors"), load_file(again / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert (tiny_whisper / "tokenizer.json").read_text() == (again / "tokenizer.json").read_text()
    other = load_file(build_tiny_whisper(tmp_path / "other", seed=1) / "model.safetensors")
    assert any(not np.array_equal(a[k], other[k]) for k in a)


def test_pipeline_loads_the_folder_and_transcribes(tiny_whisper):
    from transformers import pipeline

    asr = pipeline("automatic-speech-recognition", model=str(tiny_whisper), device="cpu")
    assert asr.feature_extractor.feature_size == 80 and asr.feature_extractor.sampling_rate == 16000
    out = asr({"raw": _one_second(), "sampling_rate": 16000})
    assert isinstance(out["text"], str)
    # Deterministic: the same audio gives the same (meaningless) text.
    assert asr({"raw": _one_second(), "sampling_rate": 16000})["text"] == out["text"]


def test_generate_with_a_language_and_with_detection(tiny_whisper):
    from transformers import LogitsProcessorList, WhisperForConditionalGeneration, WhisperProcessor

    processor = WhisperProcessor.from_pretrained(tiny_whisper)
    model = WhisperForConditionalGeneration.from_pretrained(tiny_whisper).eval()
    features = processor(_one_second(), sampling_rate=16000, return_tensors="pt").input_features
    assert features.shape == (1, 80, 3000)
    tok = processor.tokenizer

    def prompt(**kwargs) -> list[str]:
        """The decoder prompt generate() built (its output leaves the prompt out), and the text."""
        seen: list[list[int]] = []

        def record(input_ids, scores):
            seen.append(input_ids[0].tolist())
            return scores

        out = model.generate(features, logits_processor=LogitsProcessorList([record]), **kwargs)
        assert isinstance(processor.batch_decode(out, skip_special_tokens=True)[0], str)
        return tok.convert_ids_to_tokens(seen[0])

    assert prompt(language="en", task="transcribe") == [
        "<|startoftranscript|>",
        "<|en|>",
        "<|transcribe|>",
        "<|notimestamps|>",
    ]
    assert prompt(language="de", task="transcribe")[1] == "<|de|>"
    assert prompt(language="french", task="transcribe")[1] == "<|fr|>"
    assert prompt(language="en", task="translate")[2] == "<|translate|>"
    # No language: detection picks one of the model's language tokens.
    assert prompt(task="transcribe")[1] in model.generation_config.lang_to_id
    with pytest.raises(ValueError):
        model.generate(features, language="sw")  # a Whisper language this tiny model lacks


def test_demo_whisper_is_built_once(monkeypatch, tmp_path):
    from model import tiny_whisper as tw

    monkeypatch.setenv("STREAMO_LIVE_DATA", str(tmp_path))
    path = tw.ensure_demo_whisper()
    assert path == tmp_path / "demo-whisper" and tw.tiny_whisper_current(path)
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    monkeypatch.setattr(tw, "build_tiny_whisper", lambda *a, **k: pytest.fail("rebuilt a current demo Whisper"))
    assert tw.ensure_demo_whisper() == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == ["demo-whisper"]  # no temporary folder left behind
