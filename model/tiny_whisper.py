"""A tiny, offline Whisper checkpoint: tokenizer trained in-process, random weights.

Voice tests and the demo speech recogniser (``--asr-model demo``) use it so that every code path
(saving, ``transformers.pipeline("automatic-speech-recognition")``, the real feature extractor,
``generate`` with a language and a task, language detection) runs without a model hub. It has
Whisper's layout: a byte-level BPE vocabulary, then ``<|endoftext|>``, ``<|startoftranscript|>``,
the language tokens, the task tokens, ``<|nocaptions|>``, ``<|notimestamps|>`` and the 1501
timestamp tokens, and a 30 s window of 80 mel bins at 16 kHz. Its words mean nothing: the weights
are random, so a "transcript" is a deterministic string of arbitrary tokens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from model.paths import build_once, data_dir

SAMPLING_RATE = 16000
MARKER = "streamo_tiny_whisper.json"

# Whisper's special tokens in Whisper's order (the generation code relies on that order:
# timestamps follow <|notimestamps|>, the no-speech token precedes it).
ENDOFTEXT = "<|endoftext|>"
STARTOFTRANSCRIPT = "<|startoftranscript|>"
# A few languages, in Whisper's own order, so language selection and detection can be tested.
LANGUAGES = ("en", "zh", "de", "es", "ru", "fr", "ja", "it")
TASKS = ("translate", "transcribe")
STARTOFLM = "<|startoflm|>"
STARTOFPREV = "<|startofprev|>"
NOCAPTIONS = "<|nocaptions|>"
NOTIMESTAMPS = "<|notimestamps|>"
TIMESTAMPS = tuple(f"<|{i * 0.02:.2f}|>" for i in range(1501))  # 0.00 .. 30.00 s

_CORPUS = [
    "What is happening in the video right now?",
    "Tell me when the person opens the door.",
    "Describe what you see on the screen.",
    "How many people are in the room?",
    "Stop talking. Start again. Say that once more, please.",
    "The red circle moves to the left and the blue square leaves at the top.",
    "The man pours water into a glass and sits on the chair.",
    "Is the green triangle still there? Where did the cat go?",
    "Hello, thank you, yes, no, okay, what, when, where, why, who, how.",
    "one two three four five six seven eight nine ten",
]


@dataclass(frozen=True)
class TinyWhisperSpec:
    """Sizes of the tiny Whisper. A 30 s window encodes and decodes in milliseconds on a CPU."""

    d_model: int = 64
    encoder_layers: int = 2
    decoder_layers: int = 2
    heads: int = 4
    ffn_dim: int = 128
    bpe_vocab: int = 400
    num_mel_bins: int = 80
    max_target_positions: int = 128
    # Random weights rarely predict <|endoftext|>, so every transcript runs to the length limit:
    # a short limit keeps a demo transcription quick.
    max_new_tokens: int = 24


def _train_bpe(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    # GPT-2's byte-level pre-tokenisation, which is what Whisper's tokenizer uses.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[],  # Whisper's specials are added after the BPE rows, as in the real vocabulary
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Repeated so that merge counts are well above ties and training is deterministic.
    tok.train_from_iterator(_CORPUS * 3, trainer=trainer)
    return tok


def _build_tokenizer(spec: TinyWhisperSpec):
    from transformers import WhisperTokenizer  # the fast (tokenizers-backed) one in transformers 5

    raw = json.loads(_train_bpe(spec.bpe_vocab).to_str())
    vocab: dict[str, int] = raw["model"]["vocab"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in raw["model"]["merges"]]
    tokenizer = WhisperTokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=ENDOFTEXT,
        bos_token=ENDOFTEXT,
        eos_token=ENDOFTEXT,
        model_max_length=1024,
    )
    add_whisper_specials(tokenizer, LANGUAGES)
    tokenizer.set_prefix_tokens(language="en", task="transcribe", predict_timestamps=False)
    return tokenizer


def add_whisper_specials(tokenizer: Any, languages: Sequence[str]) -> None:
    """Whisper's special tokens after the text vocabulary, in Whisper's order: start of transcript,
    one per language, the tasks, start of LM / previous, no captions, no timestamps, then the
    timestamps (plain added tokens: decode() keeps them unless asked not to)."""
    from tokenizers import AddedToken

    specials = [
        STARTOFTRANSCRIPT,
        *(f"<|{code}|>" for code in languages),
        *(f"<|{task}|>" for task in TASKS),
        STARTOFLM,
        STARTOFPREV,
        NOCAPTIONS,
        NOTIMESTAMPS,
    ]
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in TIMESTAMPS])


def whisper_model_config(vocab: int, mel_bins: int, d_model: int, encoder_layers: int, decoder_layers: int,
                         heads: int, ffn: int, max_target_positions: int, eot: int, sot: int) -> Any:  # fmt: skip
    """A WhisperConfig for random weights (the tiny one and the real shapes)."""
    from transformers import WhisperConfig

    return WhisperConfig(
        vocab_size=vocab,
        num_mel_bins=mel_bins,
        d_model=d_model,
        encoder_layers=encoder_layers,
        decoder_layers=decoder_layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=ffn,
        decoder_ffn_dim=ffn,
        max_source_positions=1500,  # 3000 mel frames (30 s) after the stride-2 convolution
        max_target_positions=max_target_positions,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
        # Generation settings live in the generation config alone (transformers 5 warns about both).
        begin_suppress_tokens=None,
        suppress_tokens=None,
    )


def whisper_generation_config(tokenizer: Any, languages: Sequence[str], decoder_layers: int, heads: int,
                              max_new_tokens: int) -> Any:  # fmt: skip
    """Greedy generation settings for a random-weight Whisper (the tiny one and the real shapes)."""
    from transformers import GenerationConfig

    ids = tokenizer.convert_tokens_to_ids
    eot, sot = ids(ENDOFTEXT), ids(STARTOFTRANSCRIPT)
    return GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=max_new_tokens + 4,  # + the prompt: start, language, task, no-timestamps
        # Greedy: the ASR pipeline's default of 5 beams (OpenAI's) only slows random weights down.
        num_beams=1,
        is_multilingual=True,
        lang_to_id={f"<|{code}|>": ids(f"<|{code}|>") for code in languages},
        task_to_id={task: ids(f"<|{task}|>") for task in TASKS},
        no_timestamps_token_id=ids(NOTIMESTAMPS),
        prev_sot_token_id=ids(STARTOFPREV),
        max_initial_timestamp_index=50,
        begin_suppress_tokens=[ids("Ġ"), eot],  # Whisper never starts a transcript with a bare space
        suppress_tokens=[],
        # Cross-attention heads for word timestamps (any heads: the weights are random anyway).
        alignment_heads=[[decoder_layers - 1, h] for h in range(heads)],
        return_timestamps=False,
    )


def build_tiny_whisper(path: str | Path, seed: int = 0, spec: TinyWhisperSpec | None = None) -> Path:
    """Write a loadable tiny Whisper checkpoint (model, feature extractor, tokenizer, generation
    config) to ``path`` and return it. Offline and deterministic for a seed; its words mean nothing."""
    import torch
    from transformers import (
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    spec = spec or TinyWhisperSpec()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)

    tokenizer = _build_tokenizer(spec)
    ids = lambda t: tokenizer.convert_tokens_to_ids(t)  # noqa: E731 - a short local alias
    eot, sot = ids(ENDOFTEXT), ids(STARTOFTRANSCRIPT)
    no_timestamps = ids(NOTIMESTAMPS)
    if no_timestamps + 1 != ids(TIMESTAMPS[0]) or ids(NOCAPTIONS) != no_timestamps - 1:
        raise RuntimeError("tiny Whisper tokenizer: special tokens are out of Whisper's order")

    config = whisper_model_config(len(tokenizer), spec.num_mel_bins, spec.d_model, spec.encoder_layers,
                                  spec.decoder_layers, spec.heads, spec.ffn_dim, spec.max_target_positions, eot, sot)  # fmt: skip
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()

    model.generation_config = whisper_generation_config(
        tokenizer, LANGUAGES, spec.decoder_layers, spec.heads, spec.max_new_tokens
    )
    model.save_pretrained(path)

    feature_extractor = WhisperFeatureExtractor(
        feature_size=spec.num_mel_bins,
        sampling_rate=SAMPLING_RATE,
        hop_length=160,
        chunk_length=30,
        n_fft=400,
        padding_value=0.0,
        return_attention_mask=False,
    )
    WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(path)
    (path / MARKER).write_text(json.dumps({"seed": seed, "spec": asdict(spec)}, indent=2))
    return path


def whisper_demo_dir() -> Path:
    return data_dir() / "demo-whisper"


def tiny_whisper_current(path: Path) -> bool:
    """A built tiny Whisper whose sizes match today's TinyWhisperSpec (older builds are rebuilt)."""
    try:
        marker = json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return marker.get("spec") == asdict(TinyWhisperSpec()) and marker.get("seed") == 0


def ensure_demo_whisper() -> Path:
    """The tiny Whisper, built once into the user's data folder."""
    return build_once(whisper_demo_dir(), tiny_whisper_current, lambda tmp: build_tiny_whisper(tmp, seed=0))
