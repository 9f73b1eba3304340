"""LoRA adapters with peft: the language model's attention and MLP projections, plus the three
state-token rows of the input embedding and the LM head (peft's trainable token indices), so
the adapter folder carries the trained state tokens with it.

The vision tower's MLP uses the same module names (gate_proj/up_proj/down_proj) as the decoder,
so targets are chosen by path: only modules under ``language_model``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from model.loading import LoadedModel

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# A full match on the module path (peft's rule for a string): decoder projections only.
TARGET_MODULES = r".*\.language_model\..*\.(" + "|".join(PROJECTIONS) + r")"
# With the merger (the vision-to-language projector, which the release fine-tunes): its two Linears too.
MERGER_MODULES = r".*\.visual\.merger\.mlp\.(0|2)"


def target_modules(merger: bool) -> str:
    return f"({TARGET_MODULES})|({MERGER_MODULES})" if merger else TARGET_MODULES


def tied_embeddings(model: Any) -> bool:
    config = model.config
    text = getattr(config, "text_config", None)
    return bool(getattr(config, "tie_word_embeddings", False) or getattr(text, "tie_word_embeddings", False))


def lora_config(loaded: LoadedModel, rank: int, alpha: int, dropout: float, merger: bool = False):
    from peft import LoraConfig

    ids = loaded.state_ids
    # With tied embeddings (Qwen2.5-VL-3B) the LM head IS the embedding: peft ties the head's rows
    # to the embedding's adapter by itself, and naming both would train one matrix twice.
    tokens = {"embed_tokens": ids} if tied_embeddings(loaded.model) else {"embed_tokens": ids, "lm_head": ids}
    return LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules(merger),
        trainable_token_indices=tokens,
        bias="none",
        task_type=None,
    )


# Gradient checkpointing by default from this model size: a 120-turn window is ~15K tokens, whose
# activations outweigh a LoRA's weights and optimiser state on a 3B model (Qwen2.5-VL-3B: 3.8B
# parameters). The tiny test and demo models (under 1M) only lose time recomputing.
GC_MIN_PARAMETERS = 100_000_000


def auto_gradient_checkpointing(model: Any) -> bool:
    """Gradient checkpointing's default for ``model``: on from GC_MIN_PARAMETERS parameters."""
    return sum(p.numel() for p in model.parameters()) >= GC_MIN_PARAMETERS


def prepare_kbit(model: Any, gradient_checkpointing: bool) -> Any:
    """A k-bit base made ready for LoRA: every weight frozen, gradient checkpointing (non-reentrant,
    so the inputs need no grad) where asked. Unlike peft's ``prepare_model_for_kbit_training`` the
    frozen bf16 parts (vision tower, embeddings, LM head, norms) stay bf16: peft casts them to fp32,
    about 3.5 GB more on 7B for weights that never change (the release trains all in bf16)."""
    for p in model.parameters():
        p.requires_grad_(False)
    if gradient_checkpointing:
        from model.hf_compat import enable_checkpointing

        enable_checkpointing(model)
    return model


def add_lora(
    loaded: LoadedModel, rank: int, alpha: int, dropout: float, gradient_checkpointing: bool, merger: bool = False
) -> Any:
    """Wrap ``loaded.model`` (a trainable load) with a fresh adapter, or make a loaded adapter's
    weights trainable; returns the peft model. 4-bit bases get ``prepare_kbit``."""
    from peft import PeftModel, get_peft_model

    from model.hf_compat import enable_checkpointing, peft_calls

    model = loaded.model
    if loaded.precision == "4bit" and loaded.device.type == "cpu":
        _keep_cpu_4bit_layout(model)
    with peft_calls():
        if loaded.precision in ("4bit", "8bit") and not isinstance(model, PeftModel):
            model = prepare_kbit(model, gradient_checkpointing)
        elif gradient_checkpointing:
            enable_checkpointing(model)
            model.enable_input_require_grads()
        if not isinstance(model, PeftModel):
            model = get_peft_model(model, lora_config(loaded, rank, alpha, dropout, merger))
    model.config.use_cache = False
    loaded.model = model
    return model


def is_trained_in_full(name: str) -> bool:
    """The release recipe's trainable parameters: the language model, the LM head and the merger
    (the vision tower's blocks and patch embedding stay frozen)."""
    return ".visual." not in f".{name}" or ".visual.merger." in f".{name}"


def full_finetune(loaded: LoadedModel, gradient_checkpointing: bool) -> Any:
    """The release's recipe on ``loaded.model`` (loaded unquantised): the language model and the
    merger trainable, the vision tower frozen; returns the model (no adapter)."""
    model = loaded.model
    for name, p in model.named_parameters():
        p.requires_grad_(is_trained_in_full(name))
    if gradient_checkpointing:
        from model.hf_compat import enable_checkpointing

        enable_checkpointing(model)
    model.config.use_cache = False
    return model


class FullConfig:
    """Stands in for a peft config in a full fine-tuning checkpoint: says what the weights are."""

    FILE = "full_finetune.json"

    def __init__(self, base: str) -> None:
        self.base = base

    def save_pretrained(self, folder: str) -> None:
        payload = {"recipe": "release", "base_model": self.base, "trained": "language model, lm_head, merger"}
        (Path(folder) / self.FILE).write_text(json.dumps(payload, indent=2), encoding="utf-8")


def _keep_cpu_4bit_layout(model: Any) -> None:
    """bitsandbytes' CPU backend repacks 4-bit weights in place for inference the first time a layer
    runs in eval mode without grad (on AVX512-BF16 CPUs), which breaks on small layers and leaves an
    inference-only layout behind for the next training step. Held-out evaluation runs in eval mode,
    so the repacking is switched off for training."""
    import bitsandbytes as bnb

    for m in model.modules():
        if isinstance(m, bnb.nn.Linear4bit):
            m.support_avx512bf16_for_cpu = False


def trainable_parameters(model: Any) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def save_adapter(model: Any, loaded: LoadedModel, folder: Path, card: str | None = None) -> Path:
    """Save the adapter (standard PEFT files), the processor with the state tokens (so plain
    transformers code can load the tokenizer from the adapter folder) and the card, through a
    temporary folder renamed into place: a crash never leaves a half-written adapter."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + f".part-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    loaded.processor.save_pretrained(str(tmp))
    if card is not None:
        (tmp / "README.md").write_text(card, encoding="utf-8")
    old = folder.with_name(folder.name + f".old-{os.getpid()}")
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def write_card(
    loaded: LoadedModel,
    config_dict: dict[str, Any],
    data_summary: dict[str, Any],
    steps: int,
    metrics: dict[str, Any],
    command: str,
) -> str:
    """The adapter's README.md: what it was trained from, how, and how well."""
    lines = [
        "---",
        f"base_model: {loaded.source if not loaded.is_demo else 'streamo-live demo (tiny random Qwen2.5-VL)'}",
        "library_name: peft",
        "tags: [streamo, streaming-video, lora]",
        "---",
        "",
        "# Streamo LoRA adapter",
        "",
        "Trained by Streamo Live (`streamo-live train`) with the Streamo protocol: one turn per second, "
        "three state tokens (`</Silence>`, `</Standby>`, `</Response>`), stream focal loss.",
        "",
        f"- **Base model:** `{loaded.source}` ({loaded.model_type}, {loaded.precision})",
        f"- **Data:** {', '.join(f'`{d}`' for d in config_dict.get('data', []))}",
        f"- **Clips:** {data_summary.get('train_clips', 0)} training, {data_summary.get('heldout_clips', 0)} held out; "
        f"{data_summary.get('train_windows', 0)} windows, {data_summary.get('train_turns', 0)} turns",
        f"- **Steps:** {steps} (rank {config_dict.get('rank')}, alpha {config_dict.get('alpha')}, "
        f"lr {config_dict.get('lr'):.3g}, loss {config_dict.get('loss')}, max turns {config_dict.get('max_turns')})",
        *(
            [
                f"- **Kept:** step {sel['step']}, the lowest held-out loss ({sel['heldout_loss']:.4f}); the last "
                f"step ({sel['last_step']}) had {sel['last_heldout_loss']:.4f} (`--keep-last` keeps the last)"
            ]
            if (sel := data_summary.get("selected"))
            else []
        ),
        "",
        "## Final metrics",
        "",
        "```json",
        json.dumps(metrics, indent=2),
        "```",
        "",
        "## Command",
        "",
        "```bash",
        command or "(started from the app)",
        "```",
        "",
        "## Use",
        "",
        "```bash",
        f"streamo-live narrate --model {loaded.source} --adapter <this folder> --source webcam:0",
        "```",
        "",
        "Plain peft: `PeftModel.from_pretrained(Qwen2_5_VLForConditionalGeneration.from_pretrained(base), folder)`; "
        "the tokenizer with the state tokens loads from this folder (`AutoProcessor.from_pretrained(folder)`).",
        "",
    ]
    return "\n".join(lines)


EVALUATION_HEADING = "## Evaluation"


def card_with_evaluation(card: str, result: dict[str, Any]) -> str:
    """The card with its evaluation section (base vs adapter through the live engine, on the clips
    named, with the cautions in plain words) put in, or replaced if it had one."""
    from model.train.metrics import cautions

    base, adapter = result["base"], result["adapter"]
    where = "held-out" if result.get("split") == "heldout" else "training (none were held out)"
    rows = [("macro-F1", "macro_f1"), ("state accuracy", "state_accuracy"), ("answer F1", "answer_f1"),
            ("timing error (s)", "timing_error_s")]  # fmt: skip

    def cell(value: Any) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    lines = [
        EVALUATION_HEADING,
        "",
        f"Base model vs this adapter through the live engine, on {len(result.get('clips', []))} {where} clips: "
        + ", ".join(f"`{c}`" for c in result.get("clips", [])),
        "",
        "| metric | base | adapter |",
        "|---|---|---|",
        *(f"| {label} | {cell(base.get(key))} | {cell(adapter.get(key))} |" for label, key in rows),
        "",
        *(f"- Caution: {c}" for c in cautions(base, adapter)),
    ]
    section = "\n".join(lines).rstrip() + "\n"
    head, sep, rest = card.partition(EVALUATION_HEADING)
    if sep:  # replace the old section: up to the next heading of the same level
        nxt = rest.find("\n## ")
        tail = rest[nxt + 1 :] if nxt >= 0 else ""
        return head + section + ("\n" + tail if tail else "")
    return card.rstrip() + "\n\n" + section
