"""A tiny, offline Qwen2.5-VL checkpoint: tokenizer trained in-process, random weights.

Tests and `--demo` runs use it so that every code path (saving, loading through the real
loader, the processor, the engine) runs without a model hub. Its words mean nothing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from model import protocol as P

# Qwen2.5-VL's chat template (string and list content), as its tokenizer_config ships it.
QWEN2_5_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2's pre-tokenizer split (byte-level BPE over these pieces).
_PRETOKENIZE_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

_CORPUS_EXTRA = [
    "The person pours water into the glass.",
    "A red circle appears on the left and moves to the right.",
    "A blue square enters the frame and leaves at the top.",
    "Find all significant events in the video and describe them.",
    "What is happening now? Tell me when the green triangle appears.",
    "Silence Standby Response silence standby response",
    "The man opens the door, walks in and sits on the chair.",
    # The demo's captions (model/train/synthetic.py): a real tokenizer has these words as whole tokens;
    # without them the toy spells each caption in ~40 fragments and the demo adapter garbles them.
    "A red ball rolls across the frame.",
    "A blue square grows in the centre and vanishes.",
    "A green triangle falls to the floor.",
]


@dataclass(frozen=True)
class TinySpec:
    """Sizes of the tiny model. The defaults run a forward in milliseconds on a laptop CPU."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 128
    vision_depth: int = 2
    vision_hidden: int = 32
    vision_heads: int = 2
    vision_intermediate: int = 64
    bpe_vocab: int = 700
    spare_rows: int = 64  # like Qwen's padded embedding: added tokens land on spare rows
    # Weight init std. Transformers' 0.02 suits thousands of dimensions; at 64 the LM head's logits
    # could not exceed ~1.3, so no token ever got more than ~1% probability and training could not
    # teach the tiny model words. 1/sqrt(hidden) (fan-in init) gives logits a usable range.
    initializer_range: float | None = None
    tie_word_embeddings: bool = False  # True: the LM head is the embedding, as in Qwen2.5-VL-3B

    @property
    def init_std(self) -> float:
        return self.initializer_range or self.hidden_size**-0.5


def _train_tokenizer(special: list[str], vocab_size: int):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [P.SYSTEM_PROMPT, *_CORPUS_EXTRA] + [P.user_turn_content(i, i + 1) for i in range(0, 400, 7)]
    # Repeat so merges are deterministic and frequent enough to be learnt.
    tok.train_from_iterator(corpus * 3, trainer=trainer)
    return tok


# Bumped when the tokenizer's corpus or the weight init (``_init_weights``) changes, so cached demo
# checkpoints (and the demo adapter trained on them) are rebuilt.
TINY_VERSION = 2


def _init_weights(model, seed: int, text_std: float, vision_std: float) -> None:
    """Seeded weights that do not depend on the transformers version: normal(0, std) matrices (the
    vision tower's std for ``visual.*``), zero biases, unit norm weights; each parameter drawn from
    its own generator seeded by its name. transformers' own init changes between releases, and the
    demo's words and its trained adapter moved with it (issue 16)."""
    import zlib

    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.zero_()
            elif p.dim() == 1:
                p.fill_(1.0)
            else:
                g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
                std = vision_std if name.startswith(("visual.", "model.visual.")) else text_std
                p.copy_(torch.randn(p.shape, generator=g) * std)


def build_tiny_checkpoint(
    path: str | Path,
    seed: int = 0,
    spec: TinySpec | None = None,
    with_state_tokens: bool = True,
    min_pixels: int = 3136,
    max_pixels: int = 100352,
) -> Path:
    """Write a loadable tiny Qwen2.5-VL checkpoint to ``path`` and return it.

    Deterministic for a seed. ``with_state_tokens=False`` mimics a base model whose tokenizer
    lacks the three state tokens (the loader must add and initialise them).
    """
    import torch
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    spec = spec or TinySpec()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)

    special = list(P.CHAT_SPECIAL_TOKENS) + (list(P.STATE_TOKENS) if with_state_tokens else [])
    raw = _train_tokenizer(special, spec.bpe_vocab)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        eos_token=P.IM_END,
        pad_token=P.ENDOFTEXT,
        unk_token=None,
        model_max_length=32768,
        chat_template=QWEN2_5_VL_CHAT_TEMPLATE,
        extra_special_tokens=[t for t in special if t != P.ENDOFTEXT],
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in special}
    vocab_rows = -(-(len(tokenizer) + spec.spare_rows) // 64) * 64
    head_dim = spec.hidden_size // spec.num_heads
    # Qwen2.5-VL splits each rotary half into temporal/height/width sections (16/24/24 of 64).
    t_sec = head_dim // 2 // 4
    h_sec = (head_dim // 2 - t_sec) // 2
    mrope = [t_sec, h_sec, head_dim // 2 - t_sec - h_sec]
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": vocab_rows,
            "hidden_size": spec.hidden_size,
            "intermediate_size": spec.intermediate_size,
            "num_hidden_layers": spec.num_layers,
            "num_attention_heads": spec.num_heads,
            "num_key_value_heads": spec.num_kv_heads,
            "max_position_embeddings": 32768,
            "initializer_range": spec.init_std,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": mrope},
            "bos_token_id": ids[P.ENDOFTEXT],
            "eos_token_id": ids[P.IM_END],
            "pad_token_id": ids[P.ENDOFTEXT],
        },
        vision_config={
            "depth": spec.vision_depth,
            "hidden_size": spec.vision_hidden,
            "intermediate_size": spec.vision_intermediate,
            "num_heads": spec.vision_heads,
            "out_hidden_size": spec.hidden_size,
            "fullatt_block_indexes": [spec.vision_depth - 1],
            "window_size": 112,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "initializer_range": spec.vision_hidden**-0.5 if spec.initializer_range is None else spec.initializer_range,
        },
        image_token_id=ids[P.IMAGE_PAD],
        video_token_id=ids[P.VIDEO_PAD],
        vision_start_token_id=ids[P.VISION_START],
        vision_end_token_id=ids[P.VISION_END],
        tie_word_embeddings=spec.tie_word_embeddings,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    _init_weights(model, seed, text_std=spec.init_std, vision_std=config.vision_config.initializer_range)
    model.generation_config.eos_token_id = ids[P.IM_END]
    model.generation_config.pad_token_id = ids[P.ENDOFTEXT]
    model.save_pretrained(path)

    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN2_5_VL_CHAT_TEMPLATE,
    )
    processor.save_pretrained(path)
    (path / "streamo_tiny.json").write_text(
        json.dumps(
            {"seed": seed, "spec": asdict(spec), "with_state_tokens": with_state_tokens, "version": TINY_VERSION},
            indent=2,
        )
    )
    return path
