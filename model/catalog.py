"""Facts about the models Streamo Live offers, torch-free (the model manager reads them on the GUI
thread): the known checkpoints and their sizes, the precisions, the demo model's frame budget.
``model.loading`` uses them to load."""

from __future__ import annotations

from dataclasses import dataclass

SUPPORTED_MODEL_TYPES = {"qwen2_5_vl": "Qwen2.5-VL", "qwen3_vl": "Qwen3-VL"}
PRECISIONS = ("auto", "4bit", "8bit", "bf16", "fp16", "fp32")
# KERNEL_MODES = ("auto", "triton", "off"), the ``kernels`` choices (defined in model.device so the CLI
# and the settings name them without importing torch):
#   auto:   our Triton kernels where they apply (a CUDA GPU, a 4-bit model), otherwise bitsandbytes/torch,
#           silently;
#   triton: the same, but a warning in LoadedModel.warnings saying why when they cannot apply;
#   off:    never; bitsandbytes/torch always.
DEMO_MODEL = "demo"
# The demo model sees frames at a fifth of the Streamo budget (a 320x240 frame: 20 visual tokens, not
# 99): the tiny network learns the demo shapes from small frames in about a minute of CPU training.
DEMO_MAX_PIXELS = 28 * 28 * 20
# ... and keeps a window of 32 turns (the engine drops to 16 past it): the shapes adapter trains on
# windows that long, clips of up to two minutes cut into them, so what the demo meets five minutes
# into a stream (a 16-32 turn context, times in the hundreds) is what it learnt. Real models keep
# the Streamo window, EngineOptions.max_turns.
DEMO_MAX_TURNS = 32


def window_turns(asked: int, is_demo: bool) -> int:
    """The window in turns a run uses when ``asked`` for one: the engine's and the trainer's rule."""
    return min(asked, DEMO_MAX_TURNS) if is_demo else asked


@dataclass(frozen=True)
class ModelChoice:
    """A known checkpoint. Sizes are approximate, for the model manager and the default pick."""

    model_id: str
    params_b: float
    download_gb: float  # bf16 safetensors on the hub
    vram_4bit_gb: float  # weights in NF4 + vision tower + a 300-turn context, approximate
    vram_bf16_gb: float
    note: str = ""


KNOWN_MODELS: tuple[ModelChoice, ...] = (
    ModelChoice("Qwen/Qwen2.5-VL-7B-Instruct", 8.3, 16.6, 7.5, 18.5, "best quality; the paper's Streamo-7B base"),
    ModelChoice("Qwen/Qwen2.5-VL-3B-Instruct", 3.8, 7.5, 3.5, 9.0, "for GPUs with less than ~10 GB free"),
)
# Qwen3-VL checkpoints load (SUPPORTED_MODEL_TYPES) but the streaming engine speaks Qwen2.5-VL's
# rotary layout only, so the model manager offers Qwen2.5-VL alone.
DEFAULT_7B, DEFAULT_3B = KNOWN_MODELS[0].model_id, KNOWN_MODELS[1].model_id


def active_model_label(source: str, adapter: str | None = None, card: bool = False) -> str:
    """The model a run uses, in words, the same wherever it is named (the status bar, `narrate`'s
    header, the session record): the base, and the adapter by its folder's name. The demo's own
    shapes adapter is "demo shapes model"; any other adapter on the demo base is the user's, named.
    ``card``: a user's adapter also with its card in one line (``model.adapters.card_summary``)."""
    label = _model_label(source, adapter)
    if card and adapter and label != "demo shapes model":
        from model.adapters import adapter_summary

        summary = adapter_summary(adapter)
        return f"{label} ({summary})" if summary else label
    return label


def _model_label(source: str, adapter: str | None) -> str:
    from pathlib import Path

    base = "demo" if source == DEMO_MODEL else (source.rstrip("/").split("/")[-1] or source)
    if not adapter:
        return "demo model (random)" if source == DEMO_MODEL else base
    folder = Path(adapter)
    if source == DEMO_MODEL:
        from model.train.demo import demo_adapter_dir

        try:
            if folder.resolve() == demo_adapter_dir().resolve():
                return "demo shapes model"
        except OSError:
            pass
    return f"{base} + adapter {folder.name}"
