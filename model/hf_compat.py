"""Every transformers call whose spelling depends on the installed version, in one place.

The streaming engine, the KV cache, the kernels' module swap and the trainer reach transformers'
Qwen2.5-VL internals only through this module, so the next renamed argument or changed forward
lands here and nowhere else. Supported: the range pyproject.toml allows (tested in CI on the
locked version and on 5.17, the version on the GPU machine; see docs/dependencies.md).

What changed inside that range, and how it is handled:
- 5.24 renamed the cache argument of every forward from ``past_key_values`` to ``cache`` (the old
  name warns, "will be removed in version 5.40.0") and the outputs' field likewise. The argument
  name is read from each forward's own signature (:func:`cache_argument`); outputs are read by
  whichever field they carry (:func:`output_cache`).
- The decoder layer's forward takes that renamed argument too; the fused add+RMSNorm forward
  (model/kernels/patch.py) passes it through under the installed name, and is only swapped in for a
  signature listed in :data:`DECODER_LAYER_SIGNATURES`.

Only documented interfaces are used: the public cache base classes (``transformers.cache_utils``),
the attention mask transformers builds itself from the cache (``masking_utils.create_causal_mask``
through ``Cache.get_mask_sizes``), ``get_image_features`` and the models' keyword arguments.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any

import torch
import transformers
from transformers.cache_utils import Cache, CacheLayerMixin

__all__ = [
    "Cache",
    "CacheLayerMixin",
    "DECODER_LAYER_SIGNATURES",
    "TRANSFORMERS_VERSION",
    "attention_implementation",
    "cache_argument",
    "decoder_layer_unsupported",
    "image_features",
    "output_cache",
    "peft_calls",
    "quiet_whisper_generate_notice",
    "qwen_classes",
    "text_forward",
    "vlm_forward",
]

TRANSFORMERS_VERSION = transformers.__version__

_QWEN_MODULES = (
    "transformers.models.qwen2_5_vl.modeling_qwen2_5_vl",
    "transformers.models.qwen2.modeling_qwen2",
)

# Qwen2_5_VLDecoderLayer.forward's parameters in each supported version; the fused forward in
# model/kernels/patch.py takes every one of them (the cache under either name, through **kwargs).
DECODER_LAYER_SIGNATURES: dict[tuple[str, ...], str] = {
    (
        "self",
        "hidden_states",
        "attention_mask",
        "position_ids",
        "past_key_values",
        "use_cache",
        "position_embeddings",
        "kwargs",
    ): "5.0 - 5.23",  # fmt: skip
    (
        "self",
        "hidden_states",
        "attention_mask",
        "position_ids",
        "cache",
        "use_cache",
        "position_embeddings",
        "kwargs",
    ): "5.24 -",  # fmt: skip
}


@functools.cache
def _parameters(fn: Callable) -> tuple[str, ...]:
    # inspect.signature follows functools.wraps (transformers' deprecate_kwarg keeps the real signature)
    return tuple(inspect.signature(fn).parameters)


def cache_argument(fn: Callable) -> str:
    """The keyword under which ``fn`` (a forward) takes the KV cache: ``cache`` from 5.24 on,
    ``past_key_values`` before."""
    return "cache" if "cache" in _parameters(getattr(fn, "__func__", fn)) else "past_key_values"


def output_cache(out: Any) -> Cache | None:
    """The cache a model output carries (field ``cache`` from 5.24 on, ``past_key_values`` before),
    read without touching the deprecated alias."""
    keys = out.keys()
    for name in ("cache", "past_key_values"):
        if name in keys:
            return out[name]
    return None


def attention_implementation(config: Any) -> str:
    """The attention implementation a loaded config runs ("sdpa", "eager", ...)."""
    return config._attn_implementation


def text_forward(
    lm: torch.nn.Module, inputs_embeds: torch.Tensor, position_ids: torch.Tensor, cache: Cache
) -> torch.Tensor:
    """One forward of the language model (``model.language_model``) after what ``cache`` holds; the
    final-norm hidden states [1, q, H]. The attention mask (full over the cache, causal over the new
    tokens) is transformers' own, built by its public ``create_causal_mask`` from the cache's
    ``get_mask_sizes``: for one new token under sdpa it is no mask at all (native GQA on CUDA)."""
    out = lm(
        inputs_embeds=inputs_embeds,
        position_ids=position_ids,
        use_cache=True,
        **{cache_argument(type(lm).forward): cache},
    )
    return out.last_hidden_state


def image_features(vlm: torch.nn.Module, pixel_values: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """The merged vision tokens of the images in ``pixel_values`` [n_tokens, H] (``vlm``: the
    Qwen2.5-VL model under the ForConditionalGeneration, i.e. ``base.model``)."""
    out = vlm.get_image_features(pixel_values, grid, return_dict=True)
    feats = out.pooler_output  # a tuple of per-image tensors
    return torch.cat(list(feats)) if len(feats) > 1 else feats[0]


def vlm_forward(model: Any, input_ids: torch.Tensor, pixel_values: torch.Tensor, grid: torch.Tensor,
                image_token_id: int, **kwargs: Any) -> Any:  # fmt: skip
    """A plain (cache-less) forward of the whole vision-language model, as the trainer and the
    reference tests run it; ``kwargs`` such as ``logits_to_keep`` go through unchanged."""
    return model(
        input_ids=input_ids,
        pixel_values=pixel_values,
        image_grid_thw=grid,
        mm_token_type_ids=(input_ids == image_token_id).int(),
        use_cache=False,
        **kwargs,
    )


def qwen_classes(*names: str) -> list[type]:
    """The Qwen2/Qwen2.5-VL module classes called ``names`` that this transformers has."""
    out: list[type] = []
    for modname in _QWEN_MODULES:
        try:
            mod = __import__(modname, fromlist=["_"])
        except Exception:  # noqa: BLE001 - a model family this version lacks
            continue
        out += [getattr(mod, n) for n in names if isinstance(getattr(mod, n, None), type)]
    return list(dict.fromkeys(out))


def decoder_layer_unsupported(cls: type) -> str | None:
    """None when the fused decoder-layer forward takes exactly what ``cls.forward`` takes, else why not."""
    params = _parameters(cls.forward)
    if params not in DECODER_LAYER_SIGNATURES:
        return f"forward signature {params} is not one the fused version follows (transformers {TRANSFORMERS_VERSION})"
    return None


@contextlib.contextmanager
def peft_calls():
    """Around calls into peft: peft 0.21 reads ``model.is_gradient_checkpointing``, which transformers
    5.24 deprecates, so every adapter load printed a FutureWarning about peft's own code that a user
    can do nothing about. Only that warning is silenced; the test suite checks no other one appears."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def enable_checkpointing(model: Any) -> None:
    """Non-reentrant gradient (activation) checkpointing: ``activation_checkpointing_enable`` where transformers
    has it (5.24 deprecates the old name), else ``gradient_checkpointing_enable`` (5.17)."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


class _DropMessage:
    """A logging filter dropping records whose message starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def filter(self, record: Any) -> bool:
        return not str(record.getMessage()).startswith(self.prefix)


_WHISPER_NOTICE = _DropMessage("Passing `generation_config` together with generation-related arguments")


def quiet_whisper_generate_notice() -> None:
    """transformers 5.24's own WhisperForConditionalGeneration.generate passes ``suppress_tokens`` beside
    its generation config, and its own generate() then logs that this is deprecated: a notice about
    transformers' code on every first recognition. That one message is dropped; nothing else."""
    import logging

    logger = logging.getLogger("transformers.generation.utils")
    if _WHISPER_NOTICE not in logger.filters:
        logger.addFilter(_WHISPER_NOTICE)
