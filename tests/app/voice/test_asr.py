"""Speech recognition: the demo Whisper through the real transformers pipeline, load errors, the default model.

The demo model's words mean nothing, so these tests check the plumbing (audio in, the real feature
extractor, a string out), never the words.
"""

from __future__ import annotations

import numpy as np
import pytest

from app.voice import VoiceError
from app.voice.asr import DEFAULT_CPU_MODEL, DEFAULT_GPU_MODEL, Recognizer, default_asr_model

RATE = 16000


@pytest.fixture(scope="module")
def utterance() -> np.ndarray:
    """1.5 s of espeak-ng speech at 16 kHz. Synthesised through app.voice.synth (pyttsx3's save_to_file on
    the one thread that owns the engine) rather than a second pyttsx3 engine here: espeak-ng is one per
    process, and two threads driving it would race with the speech tests."""
    from app.voice.synth import synthesize

    audio, rate = synthesize("What is happening on the screen right now? Tell me when the door opens.")
    assert rate > 0 and audio.size > 0
    # Linear resampling is plenty for a plumbing test.
    n = round(audio.size * RATE / rate)
    audio16 = np.interp(np.arange(n) * rate / RATE, np.arange(audio.size), audio).astype(np.float32)
    out = np.zeros(int(1.5 * RATE), dtype=np.float32)
    out[: min(out.size, audio16.size)] = audio16[: out.size]
    assert np.sqrt(np.mean(out**2)) > 0.01  # speech, not silence
    return out


@pytest.fixture(scope="module")
def demo() -> Recognizer:
    """The demo recognizer, loaded once (the tiny Whisper is built once into the test data folder)."""
    rec = Recognizer("demo", device="cpu")
    rec.load()
    return rec


def test_demo_transcribes_speech_through_the_real_feature_extractor(demo, utterance):
    from transformers import WhisperFeatureExtractor

    assert demo.loaded and demo.load_seconds is not None and demo.load_seconds > 0
    seen = []
    encoder = demo.pipeline.model.get_encoder()
    hook = encoder.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append((args[0] if args else kwargs["input_features"]).clone()),
        with_kwargs=True,
    )
    try:
        first = demo.transcribe(utterance)
        second = demo.transcribe(utterance)
    finally:
        hook.remove()
    assert isinstance(first, str) and first == first.strip()
    assert second == first  # calling twice works, and greedy decoding is deterministic
    # The encoder saw exactly the log-mel features WhisperFeatureExtractor computes from the audio.
    expected = WhisperFeatureExtractor.from_pretrained(demo.path)(
        utterance, sampling_rate=RATE, return_tensors="pt"
    ).input_features
    assert seen and seen[0].shape == (1, 80, 3000)
    assert np.allclose(seen[0].numpy(), expected.numpy(), atol=1e-5)
    assert float(seen[0].std()) > 0.05  # speech, not a constant pad


def test_language_en_and_other_inputs(utterance):
    rec = Recognizer("demo", device="cpu", language="en")
    assert isinstance(rec.transcribe(utterance), str)  # transcribe() loads on first use
    assert rec.loaded
    assert isinstance(Recognizer("demo", device="cpu", language="German").transcribe(utterance), str)
    stereo = np.stack([utterance, utterance], axis=1)  # (frames, channels), as sounddevice delivers it
    assert rec.transcribe(stereo) == rec.transcribe(utterance)
    assert rec.transcribe(np.zeros(0, dtype=np.float32)) == ""
    # Longer than Whisper's 30 s window: long-form (timestamped) decoding instead of an error.
    assert isinstance(rec.transcribe(np.tile(utterance, 21)), str)


def test_empty_audio_does_not_load_the_model():
    rec = Recognizer("demo", device="cpu")
    assert rec.transcribe(np.zeros(0, dtype=np.float32)) == ""
    assert not rec.loaded and rec.load_seconds is None


def test_unknown_language_names_the_model_and_the_language():
    with pytest.raises(VoiceError) as err:
        Recognizer("demo", device="cpu", language="sw").load()
    assert "'demo'" in str(err.value) and "'sw'" in str(err.value) and "Voice > Voice settings" in str(err.value)


def test_a_folder_that_is_not_a_model(tmp_path):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(VoiceError) as err:
        Recognizer(str(folder), device="cpu").load()
    text = str(err.value)
    assert text.startswith(f"Speech recognition model '{folder}' could not be loaded: ")
    assert "config.json" in text and "Voice > Voice settings" in text and "--" not in text  # a menu, no flags
    # A config.json alone is not enough either: transformers' own error is wrapped, naming the model.
    (folder / "config.json").write_text('{"model_type": "whisper"}')
    with pytest.raises(VoiceError, match="not-a-model"):
        Recognizer(str(folder), device="cpu").load()
    with pytest.raises(VoiceError, match="no-such-folder"):
        Recognizer(str(tmp_path / "no-such-folder"), device="cpu").load()


def test_a_broken_model_folder(demo, tmp_path):
    import shutil

    no_tokenizer = shutil.copytree(demo.path, tmp_path / "no-tokenizer")
    (no_tokenizer / "tokenizer.json").unlink()
    with pytest.raises(VoiceError, match="no-tokenizer.*tokenizer"):
        Recognizer(str(no_tokenizer), device="cpu").load()
    bad_weights = shutil.copytree(demo.path, tmp_path / "bad-weights")
    (bad_weights / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(VoiceError, match="bad-weights"):
        Recognizer(str(bad_weights), device="cpu").load()


def test_a_bogus_hub_id_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(VoiceError) as err:
        Recognizer("nobody-here/no-such-whisper", device="cpu").load()
    text = str(err.value)
    assert "'nobody-here/no-such-whisper'" in text and "HF_HUB_OFFLINE" in text and "'demo'" in text


def test_default_model_by_free_gpu_memory():
    assert default_asr_model(free_gpu_bytes=3 * 1024**3) == DEFAULT_GPU_MODEL == "openai/whisper-small"
    assert default_asr_model(free_gpu_bytes=2 * 1024**3) == DEFAULT_GPU_MODEL
    assert default_asr_model(free_gpu_bytes=1024**3) == DEFAULT_CPU_MODEL == "openai/whisper-base"
    assert default_asr_model(free_gpu_bytes=0) == DEFAULT_CPU_MODEL


def test_default_model_reads_the_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (4 * 1024**3, 8 * 1024**3))
    assert default_asr_model() == DEFAULT_GPU_MODEL
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (512 * 1024**2, 8 * 1024**3))
    assert default_asr_model() == DEFAULT_CPU_MODEL
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_asr_model() == DEFAULT_CPU_MODEL


def test_whisper_says_how_sure_it_was(demo, utterance):
    """recognise() keeps what the pipeline drops: the no-speech probability (the <|nospeech|> token's share of
    the first decoding step, computed here again from the model) and the written tokens' mean log-probability;
    the text is the pipeline's."""
    import torch

    t = demo.recognise(utterance)
    assert t.text == demo.transcribe(utterance) and t.text
    assert demo.pipeline({"raw": utterance, "sampling_rate": RATE})["text"].strip() == t.text
    model, gen = demo.pipeline.model, demo.pipeline.model.generation_config
    features = demo.pipeline.feature_extractor(utterance, sampling_rate=RATE, return_tensors="pt").input_features
    with torch.inference_mode():
        logits = model(input_features=features, decoder_input_ids=torch.tensor([[gen.decoder_start_token_id]])).logits
    nospeech = demo.pipeline.tokenizer.convert_tokens_to_ids("<|nocaptions|>")
    assert t.no_speech_prob == pytest.approx(float(torch.softmax(logits[0, -1], -1)[nospeech]), rel=1e-4)
    assert t.avg_logprob is not None and t.avg_logprob < 0 and 0 < t.confidence < 1


def test_what_is_not_a_question():
    from app.voice.asr import Transcript, unheard

    assert unheard(Transcript("")) == "no words" and unheard(Transcript(" ?! ... ")) == "no words"
    assert "noise" in unheard(Transcript("Thanks for watching!")) and "noise" in unheard(Transcript("you"))
    assert unheard(Transcript("Thank you, what is he holding?")) is None  # only the whole text is a stock phrase
    assert unheard(Transcript("what is that", 0.9, -1.2)) == "no speech"  # Whisper's rule: both at once
    assert unheard(Transcript("what is that", 0.9, -0.2)) is None  # a clear question that began late
    assert unheard(Transcript("what is that", 0.1, -2.3)).startswith("unclear speech (10% sure)")
    assert unheard(Transcript("what is that", 0.1, -2.3), min_logprob=None) is None
    # The demo model's scores mean nothing: only its empty text is filtered.
    demo = Recognizer("demo", device="cpu")
    assert demo.unheard(Transcript("two two", 0.99, -9.0)) is None and demo.unheard(Transcript("")) == "no words"
    assert Recognizer("openai/whisper-base").unheard(Transcript("two two", 0.99, -9.0)) == "no speech"
