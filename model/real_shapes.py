"""Real-shape models without downloads: Qwen2.5-VL-3B/7B-Instruct and Whisper base/small at their
published configurations, random weights, a tokenizer with the real special tokens at their real ids.

Speed and memory do not depend on the weights' values, so the GPU check (``bench/gpu_check.py``)
measures these instead of the downloaded checkpoints (the GPU machine reaches no hub).

A real-shape Qwen is a *folder* (``write_qwen_folder``): config.json, the processor and tokenizer
files and a marker (``RANDOM_WEIGHTS_MARKER``), no weights. ``model.loading.load_model`` recognises
the marker and builds the model straight on the target device (``build_random_model``) instead of
reading safetensors; everything else is the product's own path (NF4 with double quantisation and
bf16 compute from ``loading._quantization``, the state tokens, the pixel budget, adapters, the
kernel switch), and the trainer loads it by its folder like any checkpoint.

Where the numbers come from (checked with the search tool against the hub's config.json files and
the models' printed module trees; see docs/gpu.md):
* Qwen/Qwen2.5-VL-3B-Instruct config.json: hidden 2048, intermediate 11008, 36 layers, 16 heads,
  2 KV heads, vocab 151936, tie_word_embeddings true, rope_theta 1e6, mrope_section [16, 24, 24],
  max_position_embeddings 128000, sliding_window 32768, rms_norm_eps 1e-6; vision: depth 32,
  hidden 1280, intermediate 3420, 16 heads, out_hidden_size 2048, window_size 112, patch 14,
  spatial_merge 2, temporal_patch 2, fullatt_block_indexes [7, 15, 23, 31], tokens_per_second 2;
  special ids bos 151643, eos 151645, vision_start 151652 .. video_pad 151656.
* Qwen/Qwen2.5-VL-7B-Instruct: hidden 3584, intermediate 18944, 28 layers, 28 heads, 4 KV heads,
  vocab 152064, tie_word_embeddings false, vision out_hidden_size 3584 (merger 5120 -> 3584); the
  rest as the 3B.
* openai/whisper-base / -small (OpenAI's ModelDimensions, the HF config.json): 80 mels, 1500 audio
  positions, 448 text positions, vocab 51865; base d_model 512, 6+6 layers, 8 heads, ffn 2048;
  small d_model 768, 12+12 layers, 12 heads, ffn 3072. Special ids: <|endoftext|> 50257,
  <|startoftranscript|> 50258, 99 languages from 50259, then translate, transcribe, startoflm,
  startofprev, nocaptions, notimestamps (50363) and 1501 timestamps up to 51864.

Published parameter totals (the hub's safetensors metadata): 3B 3,754,622,976; 7B 8,292,166,656;
Whisper base 72,593,920 (OpenAI rounds it to "74M"), small 241,734,912 ("244M").
``tests/model/test_real_shapes.py`` builds each on the meta device and checks these totals.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from model import protocol as P

log = logging.getLogger(__name__)

RANDOM_WEIGHTS_MARKER = "streamo_random_weights.json"
VERSION = 1

# Qwen2.5's added special tokens from id 151643 on, in the released tokenizer's order.
QWEN_SPECIALS: tuple[str, ...] = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
)  # fmt: skip
QWEN_BPE_SIZE = 151643  # byte-level BPE rows before the specials


@dataclass(frozen=True)
class QwenShape:
    name: str
    hub_id: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab_rows: int  # embedding rows (the tokenizer has QWEN_BPE_SIZE + 22; the rest are spare)
    tie: bool
    vision_depth: int = 32
    vision_hidden: int = 1280
    vision_intermediate: int = 3420
    vision_heads: int = 16
    fullatt: tuple[int, ...] = (7, 15, 23, 31)
    bpe_size: int = QWEN_BPE_SIZE
    published_params: int | None = None

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


@dataclass(frozen=True)
class WhisperShape:
    name: str
    hub_id: str
    d_model: int
    layers: int  # encoder and decoder each
    heads: int
    ffn: int
    bpe_size: int = 50257
    languages: int = 99
    max_target_positions: int = 448
    published_params: int | None = None


QWEN_SHAPES: dict[str, QwenShape] = {
    "3b": QwenShape("3b", "Qwen/Qwen2.5-VL-3B-Instruct", 2048, 11008, 36, 16, 2, 151936, True,
                    published_params=3_754_622_976),
    "7b": QwenShape("7b", "Qwen/Qwen2.5-VL-7B-Instruct", 3584, 18944, 28, 28, 4, 152064, False,
                    published_params=8_292_166_656),
    # The dry run's stand-in: every code path of the real ones at a size the CPU runs in milliseconds.
    "tiny": QwenShape("tiny", "(tiny stand-in)", 128, 256, 2, 4, 2, 1024, False, vision_depth=2, vision_hidden=64,
                      vision_intermediate=128, vision_heads=2, fullatt=(1,), bpe_size=700),
}  # fmt: skip
WHISPER_SHAPES: dict[str, WhisperShape] = {
    "base": WhisperShape("base", "openai/whisper-base", 512, 6, 8, 2048, published_params=72_593_920),
    "small": WhisperShape("small", "openai/whisper-small", 768, 12, 12, 3072, published_params=241_734_912),
    "tiny": WhisperShape("tiny", "(tiny stand-in)", 64, 2, 4, 128, bpe_size=400, languages=8, max_target_positions=64),
}


# ---------------------------------------------------------------------------------------------
# Tokenizers: a small in-process BPE, padded to the real vocabulary size with unreachable rows,
# so every special token sits at its real id.


def _padded_bpe(trained: Any, size: int, filler: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The trained BPE's vocabulary and merges with filler entries (never produced: no merge makes
    them) up to ``size`` rows."""
    raw = json.loads(trained.to_str())
    vocab: dict[str, int] = dict(raw["model"]["vocab"])
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in raw["model"]["merges"]]
    if len(vocab) > size:
        raise ValueError(f"trained BPE has {len(vocab)} rows, more than {size}")
    for i in range(len(vocab), size):
        vocab[f"{filler}{i}"] = i
    return vocab, merges


def qwen_tokenizer(shape: QwenShape):
    """A PreTrainedTokenizerFast with Qwen2.5's special tokens at their real ids (151643 ...) and the
    chat template of model/tiny.py; its words are a small BPE trained in-process."""
    from tokenizers import AddedToken, Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    from model.tiny import QWEN2_5_VL_CHAT_TEMPLATE, _train_tokenizer

    trained = _train_tokenizer([], min(shape.bpe_size, 700))
    vocab, merges = _padded_bpe(trained, shape.bpe_size, "\u0100unused")
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.normalizer, tok.pre_tokenizer, tok.decoder = trained.normalizer, trained.pre_tokenizer, trained.decoder
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIALS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=P.IM_END,
        pad_token=P.ENDOFTEXT,
        unk_token=None,
        model_max_length=131072,
        chat_template=QWEN2_5_VL_CHAT_TEMPLATE,
        extra_special_tokens=[t for t in QWEN_SPECIALS if t != P.ENDOFTEXT],
    )
    return tokenizer


def qwen_config(shape: QwenShape, tokenizer: Any | None = None):
    from transformers import Qwen2_5_VLConfig

    ids = {t: shape.bpe_size + i for i, t in enumerate(QWEN_SPECIALS)}
    if tokenizer is not None:
        assert all(tokenizer.convert_tokens_to_ids(t) == i for t, i in ids.items()), "special ids moved"
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": shape.vocab_rows,
            "hidden_size": shape.hidden,
            "intermediate_size": shape.intermediate,
            "num_hidden_layers": shape.layers,
            "num_attention_heads": shape.heads,
            "num_key_value_heads": shape.kv_heads,
            "hidden_act": "silu",
            "max_position_embeddings": 128000,
            "rms_norm_eps": 1e-6,
            "sliding_window": 32768,
            "use_sliding_window": False,
            "max_window_layers": 70,
            "initializer_range": 0.02,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": _mrope(shape)},
            "bos_token_id": ids[P.ENDOFTEXT],
            "eos_token_id": ids[P.IM_END],
            "pad_token_id": ids[P.ENDOFTEXT],
            "tie_word_embeddings": shape.tie,
        },
        vision_config={
            "depth": shape.vision_depth,
            "hidden_size": shape.vision_hidden,
            "intermediate_size": shape.vision_intermediate,
            "num_heads": shape.vision_heads,
            "hidden_act": "silu",
            "in_channels": 3,
            "out_hidden_size": shape.hidden,
            "fullatt_block_indexes": list(shape.fullatt),
            "window_size": 112,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "tokens_per_second": 2,
        },
        image_token_id=ids[P.IMAGE_PAD],
        video_token_id=ids[P.VIDEO_PAD],
        vision_start_token_id=ids[P.VISION_START],
        vision_end_token_id=ids[P.VISION_END],
        tie_word_embeddings=shape.tie,
    )


def _mrope(shape: QwenShape) -> list[int]:
    """[16, 24, 24] at head_dim 128, scaled the same way for the tiny stand-in."""
    half = shape.head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def whisper_config(shape: WhisperShape):
    from model.tiny_whisper import whisper_model_config

    eot = shape.bpe_size  # then <|startoftranscript|>, the languages, the tasks, ..., the timestamps
    vocab = shape.bpe_size + 2 + shape.languages + 6 + 1501
    return whisper_model_config(vocab, 80, shape.d_model, shape.layers, shape.layers, shape.heads, shape.ffn,
                                shape.max_target_positions, eot, eot + 1)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Parameter counts on the meta device (no memory, no GPU)


def count_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (a tied LM head counts once, as the published totals do)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():  # parameters() already yields a shared tensor once
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def meta_model(kind: str, name: str) -> torch.nn.Module:
    """The real-shape network on the meta device (no storage): for counts and descriptions."""
    from transformers import AutoModelForImageTextToText, WhisperForConditionalGeneration

    with torch.device("meta"):
        if kind == "qwen":
            return AutoModelForImageTextToText.from_config(qwen_config(QWEN_SHAPES[name]), dtype=torch.bfloat16)
        return WhisperForConditionalGeneration(whisper_config(WHISPER_SHAPES[name]))


def describe(kind: str, name: str) -> dict[str, Any]:
    """Configuration and parameter count of a real-shape model, built on the meta device."""
    model = meta_model(kind, name)
    shape = QWEN_SHAPES[name] if kind == "qwen" else WHISPER_SHAPES[name]
    n = count_parameters(model)
    out: dict[str, Any] = {"kind": kind, "name": name, "hub_id": shape.hub_id, "params": n}
    out["published_params"] = shape.published_params
    out["shape"] = asdict(shape)
    if kind == "qwen":
        vis = sum(p.numel() for k, p in model.named_parameters() if ".visual." in f".{k}")
        out["vision_params"] = vis
        out["vocab_rows"] = shape.vocab_rows
        out["tied_embeddings"] = shape.tie
    return out


# ---------------------------------------------------------------------------------------------
# Folders that load_model takes


@dataclass
class RandomFolder:
    path: Path
    kind: str
    name: str
    extra: dict = field(default_factory=dict)


def write_qwen_folder(name: str, path: str | Path, seed: int = 0) -> Path:
    """config.json + processor/tokenizer + the random-weights marker: a folder ``load_model`` loads
    (random weights built on the target device). Seconds for any size: no weights are written."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    from model.tiny import QWEN2_5_VL_CHAT_TEMPLATE

    shape = QWEN_SHAPES[name]
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = qwen_tokenizer(shape)
    config = qwen_config(shape, tokenizer)
    config.save_pretrained(path)
    Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN2_5_VL_CHAT_TEMPLATE,
    ).save_pretrained(path)
    marker = {"kind": "qwen", "name": name, "seed": seed, "version": VERSION, "hub_id": shape.hub_id}
    (path / RANDOM_WEIGHTS_MARKER).write_text(json.dumps(marker, indent=2))
    return path


def random_weights_marker(path: Path) -> dict | None:
    """The marker of a random-weights folder, or None for an ordinary checkpoint."""
    try:
        return json.loads((Path(path) / RANDOM_WEIGHTS_MARKER).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _skipped(name: str, skip: list[str]) -> bool:
    parts = name.split(".")
    return any(s in parts for s in skip)


def quantize_linears(model: torch.nn.Module, quant: Any, device: torch.device) -> int:
    """Replace every ``nn.Linear`` outside ``quant.llm_int8_skip_modules`` by a bitsandbytes
    ``Linear4bit`` quantised as ``quant`` (a BitsAndBytesConfig) says, on ``device``; what
    transformers' bitsandbytes integration produces from a checkpoint, done to weights in memory.
    Returns the number of layers replaced."""
    import bitsandbytes as bnb

    skip = list(quant.llm_int8_skip_modules or [])
    storage = getattr(quant, "bnb_4bit_quant_storage", None) or torch.uint8
    if isinstance(storage, str):
        storage = getattr(torch, storage)
    n = 0
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            full = f"{parent_name}.{child_name}" if parent_name else child_name
            if type(child) is not torch.nn.Linear or _skipped(full, skip):
                continue
            q = bnb.nn.Linear4bit(
                child.in_features,
                child.out_features,
                bias=child.bias is not None,
                compute_dtype=quant.bnb_4bit_compute_dtype,
                compress_statistics=quant.bnb_4bit_use_double_quant,
                quant_type=quant.bnb_4bit_quant_type,
                quant_storage=storage,
                device="meta",
            )
            q.weight = bnb.nn.Params4bit(
                child.weight.data,
                requires_grad=False,
                quant_type=quant.bnb_4bit_quant_type,
                compress_statistics=quant.bnb_4bit_use_double_quant,
                quant_storage=storage,
                module=q,
            ).to(device)
            if child.bias is not None:
                q.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
            if device.type == "cpu":
                q.support_avx512bf16_for_cpu = False  # keep bnb's storage (its CPU fast path repacks it)
            q.train(child.training)
            setattr(parent, child_name, q)
            n += 1
    return n


def build_random_model(path: Path, *, dtype: torch.dtype, quantization: Any, device: torch.device) -> Any:
    """The model of a random-weights folder, built on ``device`` in ``dtype`` (transformers' own
    init, seeded by the marker), then quantised as ``quantization`` says (None: not at all). Only
    4-bit quantisation is supported (8-bit has no kernels of ours to measure)."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    marker = random_weights_marker(path) or {}
    if quantization is not None and not getattr(quantization, "load_in_4bit", False):
        raise ValueError("random-weights folders load in 4bit, bf16, fp16 or fp32 (not 8bit)")
    config = AutoConfig.from_pretrained(path)
    torch.manual_seed(int(marker.get("seed", 0)))
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    if quantization is not None:
        quantize_linears(model, quantization, device)
        # What peft's k-bit preparation and the model's own helpers read off a quantised load.
        model.is_loaded_in_4bit = True
        model.quantization_method = "bitsandbytes"
        model.config.quantization_config = quantization
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return model


# ---------------------------------------------------------------------------------------------
# Whisper: a checkpoint folder (small enough to write: 0.5 GB at most) for the product's voice path


def whisper_tokenizer(shape: WhisperShape):
    from transformers import WhisperTokenizer

    from model.tiny_whisper import ENDOFTEXT, _train_bpe, add_whisper_specials
    from model.tiny_whisper import LANGUAGES as TINY_LANGUAGES

    if shape.languages == len(TINY_LANGUAGES):
        languages = list(TINY_LANGUAGES)
    else:
        from transformers.models.whisper.tokenization_whisper import LANGUAGES

        languages = list(LANGUAGES)[: shape.languages]
    trained = _train_bpe(min(shape.bpe_size, 400))
    vocab, merges = _padded_bpe(trained, shape.bpe_size, "\u0100unused")
    tokenizer = WhisperTokenizer(
        vocab=vocab, merges=merges, unk_token=ENDOFTEXT, bos_token=ENDOFTEXT, eos_token=ENDOFTEXT, model_max_length=1024
    )
    tokenizer.add_special_tokens({"eos_token": ENDOFTEXT})
    add_whisper_specials(tokenizer, languages)
    return tokenizer, languages


def write_whisper_folder(name: str, path: str | Path, seed: int = 0, max_new_tokens: int = 24) -> Path:
    """A loadable Whisper checkpoint at the real shape with random weights (fp16 safetensors:
    145 MB for base, 484 MB for small). Its words mean nothing."""
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

    from model.tiny_whisper import ENDOFTEXT, NOTIMESTAMPS, SAMPLING_RATE, whisper_generation_config

    shape = WHISPER_SHAPES[name]
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer, languages = whisper_tokenizer(shape)
    ids = tokenizer.convert_tokens_to_ids
    eot = ids(ENDOFTEXT)
    if eot != shape.bpe_size or ids(NOTIMESTAMPS) != shape.bpe_size + 2 + shape.languages + 5:
        raise RuntimeError("real-shape Whisper tokenizer: special tokens off their ids")
    config = whisper_config(shape)
    if len(tokenizer) != config.vocab_size:
        raise RuntimeError(f"Whisper tokenizer has {len(tokenizer)} rows, the model {config.vocab_size}")
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval().half()
    model.generation_config = whisper_generation_config(tokenizer, languages, shape.layers, shape.heads, max_new_tokens)
    model.save_pretrained(path)
    fe = WhisperFeatureExtractor(
        feature_size=80, sampling_rate=SAMPLING_RATE, hop_length=160, chunk_length=30, n_fft=400, padding_value=0.0
    )
    WhisperProcessor(feature_extractor=fe, tokenizer=tokenizer).save_pretrained(path)
    (path / RANDOM_WEIGHTS_MARKER).write_text(json.dumps({"kind": "whisper", "name": name, "seed": seed}, indent=2))
    return path
