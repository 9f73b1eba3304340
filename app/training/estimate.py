"""Time and memory of a training run, estimated before it starts. No Qt, and no torch at import
(the train panel calls ``estimate`` on the GUI thread; ``scan_data`` reads the annotations and
probes the videos, and belongs on a worker thread).

Where the figures come from, plainly:

- **Measured** (docs/training.md, "Throughput", ``python -m bench.bench_train``): the tiny model on a
  2-core CPU, fp32, one window per step, 99 visual tokens per frame: 1.24 s/step at 8 turns (1,250
  tokens), 3.41 s at 32 (4,399), 11.84 s at 120 (15,903); peak RSS 1.12 / 1.32 / 1.99 GB. Seconds per
  step are fitted as a straight line in the window's tokens (within 3 % of all three), peak memory
  likewise; a spawned 4-step run of the tiny model took 9.6 s from start to end (test_worker), which
  gives the start-up time.
  These are the slowest figures recorded: re-running the 8-turn point while writing this module
  (same machine, less load) gave 0.35-0.47 s/step, so the CPU estimate is an upper bound: a 400-step
  run of the demo model on 12 synthetic 64x48 clips, started from the train panel, took 44 s in all
  (training and the evaluation after it) where this estimates up to about 4 min.
- **Extrapolated**: tiny-model windows shorter or longer than those, or with fewer visual tokens per
  frame (the demo model's budget), along the same lines in tokens.
- **Assumed** (no measurement): GPU training speed (QLoRA, 4-bit) and the CPU speed of real-size
  models, from the FLOPs of a step at an assumed effective rate; GPU memory from the model's sizes.
  Those estimates are marked ``rough``. A held-out evaluation is taken to cost a third of a step per
  window (a forward without the backward); decoding frames into the cache the first time: measured
  130-300 frames a second on small synthetic clips, assumed 10 a second for phone-size video.

Once a run has started, the trainer's own ETA (from the steps it has timed) replaces the estimate.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.catalog import DEMO_MAX_PIXELS, DEMO_MODEL, window_turns
from model.frames import MAX_PIXELS, MIN_PIXELS
from model.train.config import AUTO_MIN_STEPS, auto_accum, every, total_steps  # noqa: F401 - AUTO_MIN_STEPS: the automatic budget's floor, for callers
from model.train.data import heldout_count

GIB = 1024**3

# -- measured: docs/training.md "Throughput" (tiny model, 2-core CPU, fp32, 99 visual tokens/frame)
CPU_TINY_MEASURED: tuple[tuple[int, int, float, float], ...] = (
    # (turns per window, tokens per window, seconds per step, peak RSS in GiB)
    (8, 1250, 1.24, 1.12),
    (32, 4399, 3.41, 1.32),
    (120, 15903, 11.84, 1.99),
)
CPU_TINY_VISUAL_TOKENS = 99  # 320x240 frames at the full Streamo budget
CPU_STARTUP_S = 9.6  # a spawned 4-step run of the tiny model, start to end (tests/model/train/test_worker.py)


def _line(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares (intercept, slope)."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    return my - slope * mx, slope


# Seconds per step and peak RSS as straight lines in the window's tokens, fitted to the measurements.
_CPU_S_A, _CPU_S_B = _line([(t, s) for _, t, s, _ in CPU_TINY_MEASURED])
_CPU_M_A, _CPU_M_B = _line([(t, m) for _, t, _, m in CPU_TINY_MEASURED])
# Tokens of a window: a fixed part (system prompt) plus, per turn, the frame's visual tokens and the
# turn's text, fitted to the measured windows (8 and 120 turns; 32 turns lands within 0.3 %).
_TEXT_PER_TURN = (CPU_TINY_MEASURED[-1][1] - CPU_TINY_MEASURED[0][1]) / (
    CPU_TINY_MEASURED[-1][0] - CPU_TINY_MEASURED[0][0]
) - CPU_TINY_VISUAL_TOKENS
_SYSTEM_TOKENS = CPU_TINY_MEASURED[0][1] - CPU_TINY_MEASURED[0][0] * (CPU_TINY_VISUAL_TOKENS + _TEXT_PER_TURN)

# -- assumed (not measured here): effective training rates and memory overheads
GPU_FLOPS = 20e12  # QLoRA with gradient checkpointing on a consumer GPU (bf16 compute, 4-bit dequantisation)
CPU_FLOPS = 50e9  # fp32 training of a real-size model on a desktop CPU
CUDA_OVERHEAD_BYTES = int(0.8 * GIB)  # CUDA context, allocator slack
CPU_BASELINE_BYTES = int(_CPU_M_A * GIB)  # the Python process with torch and the libraries (measured intercept)
EVAL_WINDOW_COST = 1 / 3  # one held-out window against one training step (a forward only)
EVAL_WINDOWS = 64  # without a held-out split the trainer scores this many training windows per evaluation


# ---------------------------------------------------------------------------------------------
# The data: turns and frame sizes per clip


@dataclass(frozen=True)
class ClipInfo:
    turns: int
    width: int | None = None  # frame size; None when unknown (a stream-format sample: not probed)
    height: int | None = None
    video: str = ""  # the video's path as the trainer reads it ("" unknown): matches chosen held-out names


@dataclass
class DataScan:
    clips: list[ClipInfo] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)
    # Clips with no question and no answer: left out (skip_unannotated), or trained as examples of
    # nothing happening (then among ``clips`` too). Counted apart either way.
    unannotated: int = 0
    unannotated_used: bool = False  # whether the unannotated clips are among ``clips``
    # Videos with annotations among ``clips`` (a clip may train as several conversations: asked and
    # unasked, ``presets.live_variants``; the held-out split and the counts shown go by video).
    annotated: int = 0

    @property
    def turns(self) -> int:
        return sum(c.turns for c in self.clips)


# How the Training tab's data trains (the estimate, the run and its evaluation alike): each clip's
# first turn carries the instruction Live sends for its task, questions enter at their seconds, and
# clips with no annotation are left out (counted apart) rather than taught as "say nothing here",
# unless the user ticks "use unannotated clips as examples of nothing happening" (``tab_data_rules``).
TAB_DATA_RULES: dict[str, bool] = {"live_instructions": True, "skip_unannotated": True}


def tab_data_rules(use_unannotated: bool = False) -> dict[str, bool]:
    """The Training tab's data rules; ``use_unannotated``: unannotated clips train (all Silence)."""
    return {**TAB_DATA_RULES, "skip_unannotated": not use_unannotated}


def unannotated_samples(paths: Sequence[str | Path]) -> dict[tuple[str, int], str]:
    """The raw samples with no question and no answer, {(file, index): clip name}, by the converter's
    own rule (``presets.has_annotations``). Reads the annotation files only (no video)."""
    from model.presets import has_annotations
    from model.train.data import annotation_files, read_annotation_file

    out: dict[tuple[str, int], str] = {}
    for path in annotation_files(paths):
        for index, sample in read_annotation_file(path, []):
            if isinstance(sample, dict) and "video_path" in sample and not has_annotations(sample):
                name = sample.get("video_name") or Path(str(sample.get("video_path") or "")).name
                out[(str(path), index)] = str(name)
    return out


def scan_data(
    paths: Sequence[str | Path],
    video_prefix: str | Path | None = None,
    fps: float = 1.0,
    live_instructions: bool = False,
    skip_unannotated: bool = False,
) -> DataScan:
    """Turns and frame size of every usable clip, the way the trainer reads them (``load_clips``),
    decoding only each video's first frame (the one probe, ``model.video_probe``). Imports torch and
    OpenCV: call it off the GUI thread."""
    from model.train.data import load_clips

    probe, sizes = sized_probe()
    clips, issues = load_clips(list(paths), video_prefix, fps, probe=probe, live_instructions=live_instructions,
                               skip_unannotated=skip_unannotated)  # fmt: skip
    out = []
    for clip in clips:
        w, h = sizes.get(str(clip.video), (None, None))
        out.append(ClipInfo(clip.turns, w or None, h or None, str(clip.video)))
    empty = unannotated_samples(paths)
    used = len({str(c.video) for c in clips if (c.file, c.index) in empty}) if not skip_unannotated else 0
    annotated = len({str(c.video) for c in clips if (c.file, c.index) not in empty})
    return DataScan(out, [str(i) for i in issues], unannotated=used if not skip_unannotated else len(empty),
                    unannotated_used=not skip_unannotated, annotated=annotated)  # fmt: skip


def sized_probe() -> tuple[Any, dict[str, tuple[int, int]]]:
    """A ``load_clips`` probe by the one rule (``model.video_probe``) that also notes each video's
    frame size: (probe, {path: (width, height)})."""
    from model import protocol as P
    from model.video_probe import inspect_video

    sizes: dict[str, tuple[int, int]] = {}

    def probe(path: Path) -> Any:
        facts = inspect_video(path)  # the rule P.probe_video applies, with the frame size
        if not facts.ok:
            return None
        sizes[str(path)] = (facts.width, facts.height)
        return P.VideoMeta(facts.frames, facts.fps)

    return probe, sizes


# ---------------------------------------------------------------------------------------------
# The model's sizes


@dataclass(frozen=True)
class ModelSize:
    hidden: int
    layers: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    tied: bool = False
    vision_depth: int = 32
    vision_hidden: int = 1280
    vision_intermediate: int = 3420
    name: str = ""

    @property
    def kv_dim(self) -> int:
        return self.hidden // max(1, self.heads) * self.kv_heads

    @property
    def linear_params(self) -> int:
        """The decoder's projection weights (q, k, v, o, gate, up, down): what LoRA wraps and 4-bit packs."""
        h, i, kv = self.hidden, self.intermediate, self.kv_dim
        return self.layers * (2 * h * h + 2 * h * kv + 3 * h * i)

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def vision_params(self) -> int:
        d, i = self.vision_hidden, self.vision_intermediate
        return self.vision_depth * (4 * d * d + 3 * d * i)

    def lora_params(self, rank: int) -> int:
        """LoRA A and B of every q/k/v/o/gate/up/down projection: rank * (in + out) each."""
        h, i, kv = self.hidden, self.intermediate, self.kv_dim
        return self.layers * rank * ((h + h) * 2 + (h + kv) * 2 + (h + i) * 3)

    @property
    def is_tiny(self) -> bool:
        """The tiny test/demo network: the CPU measurements were taken on it."""
        return self.hidden <= 256

    @classmethod
    def from_config(cls, config: dict[str, Any], name: str = "") -> ModelSize:
        text = config.get("text_config") or config
        vision = config.get("vision_config") or {}
        heads = int(text.get("num_attention_heads", 1))
        return cls(
            hidden=int(text["hidden_size"]),
            layers=int(text["num_hidden_layers"]),
            intermediate=int(text.get("intermediate_size", 4 * int(text["hidden_size"]))),
            vocab=int(text.get("vocab_size", config.get("vocab_size", 0))),
            heads=heads,
            kv_heads=int(text.get("num_key_value_heads", heads)),
            tied=bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", False))),
            vision_depth=int(vision.get("depth", 32)),
            vision_hidden=int(vision.get("hidden_size", 1280)),
            vision_intermediate=int(vision.get("intermediate_size", 3420)),
            name=name,
        )


# The catalog models' published sizes (their config.json), for before they are downloaded.
CATALOG_SIZES: dict[str, ModelSize] = {
    "Qwen/Qwen2.5-VL-7B-Instruct": ModelSize(3584, 28, 18944, 152064, 28, 4, False, name="Qwen2.5-VL-7B"),
    "Qwen/Qwen2.5-VL-3B-Instruct": ModelSize(2048, 36, 11008, 151936, 16, 2, True, name="Qwen2.5-VL-3B"),
}
# model.tiny.TinySpec's defaults (the demo model), for before the demo checkpoint is built.
TINY_SIZE = ModelSize(64, 2, 128, 768, 4, 2, False, 2, 32, 64, name="demo (tiny)")


def model_size(source: str) -> ModelSize | None:
    """Sizes from the checkpoint's config.json: a local folder, the demo model, or a catalog id (from
    the local Hugging Face cache, else the published sizes). None when unknown."""
    source = (source or "").strip()
    if not source:
        return None
    if source == "demo":
        from model.paths import data_dir

        return _read_size(data_dir() / "demo-model" / "config.json", "demo (tiny)") or TINY_SIZE
    folder = Path(source).expanduser()
    if folder.is_dir():
        return _read_size(folder / "config.json", folder.name)
    if source.count("/") == 1:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(source, "config.json")
        except Exception:  # noqa: BLE001 - no cache, a bad id: fall back to the catalog
            cached = None
        if isinstance(cached, str):
            size = _read_size(Path(cached), source.split("/")[-1])
            if size is not None:
                return size
        return CATALOG_SIZES.get(source)
    return None


def _read_size(path: Path, name: str) -> ModelSize | None:
    try:
        return ModelSize.from_config(json.loads(path.read_text(encoding="utf-8")), name)
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ---------------------------------------------------------------------------------------------
# The estimate


@dataclass(frozen=True)
class Estimate:
    seconds: float  # the whole run: start-up, frame decoding, the steps, the held-out evaluations
    peak_memory_bytes: int  # GPU memory on CUDA, the process's RAM on the CPU
    device: str  # "cpu" | "cuda"
    steps: int  # optimiser steps of the run (from the start, also on resume)
    note: str  # which figures are measured, which extrapolated or assumed
    rough: bool = False  # True when the speed is assumed, not measured
    seconds_per_step: float = 0.0
    train_windows: int = 0
    heldout_clips: int = 0
    visual_tokens: int = 0  # per frame
    precision: str = ""

    def summary(self) -> str:
        """One line for the panel: 'up to about 6 min on the CPU · peak memory about 1.1 GB · 800 steps'."""
        where = "on the GPU" if self.device == "cuda" else "on the CPU"
        memory = "GPU memory" if self.device == "cuda" else "memory"
        # The CPU figures were measured on a busy machine (the slowest runs recorded): an upper bound.
        about = "about" if self.rough else "up to about"
        rough = " (rough)" if self.rough else ""
        return (
            f"{about} {format_duration(self.seconds)} {where}{rough} · peak {memory} about "
            f"{format_bytes(self.peak_memory_bytes)} · {self.steps:,} steps"
        )


def format_duration(seconds: float) -> str:
    s = max(0, round(seconds))
    if s < 90:
        return f"{s} s"
    if s < 90 * 60:
        return f"{round(s / 60)} min"
    if s < 48 * 3600:
        h, m = divmod(round(s / 60), 60)
        return f"{h} h {m:02d} min"
    return f"{s / 86400:.1f} days"


def format_bytes(n: float) -> str:
    return f"{n / GIB:.1f} GB" if n >= 0.1 * GIB else f"{n / 1024**2:.0f} MB"


def smart_resize_tokens(width: int, height: int, min_pixels: int, max_pixels: int, factor: int = 28) -> int:
    """Visual tokens of one frame after Qwen2.5-VL's image processor resizes it to the pixel budget
    (transformers' ``smart_resize``: sides rounded to 28, area kept within [min, max]; 2x2 patches
    of 14 pixels merge into one token)."""
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return max(1, (h_bar // factor) * (w_bar // factor))


def window_tokens(turns: int, visual_tokens: int) -> float:
    """Tokens of a window of ``turns`` turns (fitted to the measured windows)."""
    return _SYSTEM_TOKENS + turns * (visual_tokens + _TEXT_PER_TURN)


def windows_of(turns: int, max_turns: int) -> list[int]:
    """Turns of each window a clip is cut into (``cut_windows``)."""
    full, rest = divmod(max(0, turns), max(1, max_turns))
    return [max_turns] * full + ([rest] if rest else [])


@dataclass(frozen=True)
class Plan:
    """The run's shape as the trainer will cut it (before the held-out clips are known, an average)."""

    train_windows: list[int]  # turns per training window
    eval_windows: list[int]
    heldout_clips: int
    steps_per_epoch: int
    steps: int


def plan_run(config: Any, clips: Sequence[ClipInfo | int], held: Sequence[ClipInfo | int] | None = None) -> Plan:
    """Windows, held-out clips and optimiser steps of ``config`` (a TrainConfig or anything with its
    fields) over ``clips``: the trainer's own rules (split by video, at least ``min_heldout``, or the
    videos named in ``heldout``; windows of ``max_turns``, one epoch = ``ceil(windows / accum)`` steps,
    ``steps`` > ``epochs`` > the automatic budget). ``held``: the split is known (the preview's,
    ``data.choose_heldout``): ``clips`` are then the training clips and ``held`` the held-out ones."""
    infos = [c if isinstance(c, ClipInfo) else ClipInfo(int(c)) for c in clips]
    max_turns = window_turns(int(getattr(config, "max_turns", 120)), getattr(config, "model", "") == DEMO_MODEL)
    if held is not None:
        held = [c if isinstance(c, ClipInfo) else ClipInfo(int(c)) for c in held]
        train = infos
    else:
        held, train = _guess_split(config, infos)
    n_hold = len({c.video or f"#{i}" for i, c in enumerate(held)})  # videos (a clip's conversations: one)
    train_windows = [w for c in train for w in windows_of(c.turns, max_turns)]
    eval_windows = [w for c in (held or train) for w in windows_of(c.turns, max_turns)]
    if not held:  # the trainer scores a held-out split in full, training clips on a sample
        eval_windows = eval_windows[:EVAL_WINDOWS]
    given = getattr(config, "accum", None)
    accum = max(1, int(given)) if given is not None else auto_accum(len(train_windows), 1)
    spe = max(1, math.ceil(len(train_windows) / accum))
    return Plan(train_windows, eval_windows, n_hold, spe, total_steps(config, spe, len(train_windows)))


def _guess_split(config: Any, infos: list[ClipInfo]) -> tuple[list[ClipInfo], list[ClipInfo]]:
    """(held, train) before the clips themselves are at hand: the videos named in ``heldout`` where
    the infos know their videos, else as many of the shortest clips as the trainer holds out (which
    ones is its seeded choice; the shortest, so the training time is not underestimated)."""
    chosen = [str(n) for n in (getattr(config, "heldout", None) or ())]
    videos: dict[str, list[ClipInfo]] = {}  # a video's conversations go to one side together
    for i, c in enumerate(infos):
        videos.setdefault(c.video or f"#{i}", []).append(c)
    if chosen and any(c.video for c in infos):
        held_keys = [v for v in videos if not v.startswith("#") and any(_names(n, v) for n in chosen)]
    else:
        n_hold = (
            len(chosen)
            if chosen
            else heldout_count(
                len(videos),
                float(getattr(config, "holdout", 0.0)),
                int(getattr(config, "min_heldout", 1)),
                getattr(config, "max_heldout", None),
            )
        )
        held_keys = sorted(videos, key=lambda v: sum(c.turns for c in videos[v]))[:n_hold]
    held = [c for v in held_keys for c in videos[v]]
    return held, [c for v in videos if v not in held_keys for c in videos[v]]


def _names(name: str, video: str) -> bool:
    """``data.names_video`` for a path alone (the same path, its tail, or its file name)."""
    given, path = Path(name), Path(video)
    return name == video or given.name == name == path.name or path.parts[-len(given.parts) :] == given.parts


def cuda_present() -> bool:
    """Whether a CUDA GPU is likely there, without importing torch: torch's answer when it is
    already imported, else an NVIDIA driver on the system."""
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            return bool(torch.cuda.is_available())
        except Exception:  # noqa: BLE001
            return False
    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


def _resolve_device(device: str, cuda: bool | None) -> str:
    device = (device or "auto").lower()
    if device.startswith("cuda"):
        return "cuda"
    if device == "cpu":
        return "cpu"
    return "cuda" if (cuda_present() if cuda is None else cuda) else "cpu"


def _bytes_per_weight(precision: str) -> float:
    return {"4bit": 0.52, "8bit": 1.0, "bf16": 2.0, "fp16": 2.0, "fp32": 4.0}.get(precision, 4.0)


def estimate(
    config: Any,
    clips: Sequence[ClipInfo | int],
    *,
    model: ModelSize | None = None,
    cuda: bool | None = None,
    cold_cache: bool = True,
) -> Estimate:
    """Time and peak memory of training ``config`` (a TrainConfig, or anything with its fields) on
    ``clips`` (ClipInfo, or plain turn counts: frames then taken as large as the budget allows).
    ``model``: the base model's sizes (default: ``model_size(config.model)``); ``cuda``: whether a GPU
    is there for device "auto" (default: asked without importing torch). ``cold_cache``: the frames
    are not decoded yet (the first run on these clips)."""
    plan = plan_run(config, clips)
    size = model if model is not None else model_size(str(getattr(config, "model", "")))
    device = _resolve_device(str(getattr(config, "device", "auto")), cuda)
    precision = str(getattr(config, "precision", "auto") or "auto")
    if precision == "auto":
        precision = "4bit" if device == "cuda" else "fp32"
    source = str(getattr(config, "model", ""))
    max_pixels = getattr(config, "max_pixels", None) or (DEMO_MAX_PIXELS if source == DEMO_MODEL else MAX_PIXELS)
    min_pixels = getattr(config, "min_pixels", None) or MIN_PIXELS
    infos = [c if isinstance(c, ClipInfo) else ClipInfo(int(c)) for c in clips]
    sized = [c for c in infos if c.width and c.height]
    if sized:  # the clips' own frame sizes; the most common one stands for all
        tokens = [smart_resize_tokens(c.width, c.height, min_pixels, max_pixels) for c in sized]  # type: ignore[arg-type]
        visual = max(set(tokens), key=tokens.count)
    else:
        visual = max(1, max_pixels // (28 * 28))
    rank = int(getattr(config, "rank", 16))
    gc = getattr(config, "gradient_checkpointing", None)
    gc = device == "cuda" if gc is None else bool(gc)
    windows = plan.train_windows or [0]
    mean_tokens = sum(window_tokens(w, visual) for w in windows) / len(windows)
    peak_tokens = max(window_tokens(w, visual) for w in windows)
    n_evals = math.ceil(plan.steps / every(config.eval_every, plan.steps))
    eval_windows = plan.eval_windows or [0]
    rough = True
    notes: list[str] = []
    if device == "cpu" and size is not None and size.is_tiny and precision == "fp32":
        rough = False
        per_step = _CPU_S_A + _CPU_S_B * mean_tokens
        per_eval_window = EVAL_WINDOW_COST * (_CPU_S_A + _CPU_S_B * _mean_tokens(eval_windows, visual))
        peak = int((_CPU_M_A + _CPU_M_B * peak_tokens) * GIB)
        startup = CPU_STARTUP_S
        inside = CPU_TINY_MEASURED[0][1] <= mean_tokens <= CPU_TINY_MEASURED[-1][1]
        notes.append(
            "Time and memory from the tiny model's measured CPU throughput (docs/training.md: 1.24 s/step "
            "at 8 turns, 3.41 at 32, 11.84 at 120, 99 visual tokens per frame), "
            + (
                "interpolated"
                if inside
                else f"extrapolated to {mean_tokens:,.0f} tokens per window ({visual} visual tokens per frame)"
            )
            + ". Those are the slowest runs recorded (a shared 2-core CPU): a later run of the same benchmark took "
            "0.35-0.47 s for the 8-turn step, so take this as an upper bound."
        )
    else:
        if size is None:
            size = CATALOG_SIZES["Qwen/Qwen2.5-VL-3B-Instruct"]
            notes.append("The model's size is unknown (no config.json found); sized as Qwen2.5-VL-3B.")
        flops_per_step = _step_flops(size, mean_tokens, visual, windows, gc)
        rate = GPU_FLOPS if device == "cuda" else CPU_FLOPS
        per_step = flops_per_step / rate
        per_eval_window = EVAL_WINDOW_COST * _step_flops(size, _mean_tokens(eval_windows, visual), visual,
                                                         eval_windows, gc) / rate  # fmt: skip
        peak = _peak_memory(size, peak_tokens, precision, rank, gc, device)
        startup = 15.0 + size.linear_params * _bytes_per_weight(precision) / (0.5 * GIB)  # load at ~0.5 GB/s
        where = "GPU" if device == "cuda" else "CPU"
        notes.append(
            f"Rough: {where} training speed for {size.name or 'this model'} in {precision} was not measured; the "
            f"time assumes {rate / 1e12:g} TFLOP/s effective and the memory is computed from the model's sizes."
        )
    decode = sum(c.turns * _decode_seconds(c) for c in infos) if cold_cache else 0.0
    seconds = startup + decode + plan.steps * per_step + n_evals * len(eval_windows) * per_eval_window
    if plan.heldout_clips == 0:
        notes.append("Too few clips for a held-out split: accuracy is measured on the training clips.")
    return Estimate(
        seconds=seconds,
        peak_memory_bytes=int(peak),
        device=device,
        steps=plan.steps,
        note=" ".join(notes),
        rough=rough,
        seconds_per_step=per_step,
        train_windows=len(plan.train_windows),
        heldout_clips=plan.heldout_clips,
        visual_tokens=visual,
        precision=precision,
    )


def _decode_seconds(clip: ClipInfo) -> float:
    """Seconds to decode one sampled frame into the cache the first time: measured 130-300 frames a
    second on small synthetic clips (320x240 and 448x448, 4 fps); larger video (a phone's 1080p at
    30 fps decodes every frame between two samples) is assumed at 10 sampled frames a second."""
    small = clip.width is not None and clip.height is not None and clip.width * clip.height <= 448 * 448
    return 1 / 130 if small else 0.1


def _mean_tokens(windows: Sequence[int], visual: int) -> float:
    return sum(window_tokens(w, visual) for w in windows) / max(1, len(windows))


def _step_flops(size: ModelSize, tokens: float, visual: int, windows: Sequence[int], gc: bool) -> float:
    """FLOPs of one training step on a window of ``tokens`` tokens: the decoder's forward (2 per
    weight and token), the backward to the inputs (2 more; the base weights get no gradient), a second
    forward with gradient checkpointing, attention (quadratic in tokens), and the frozen vision
    tower's forward over the frames' patches."""
    passes = 6 if gc else 4
    linear = passes * size.linear_params * tokens
    attention = passes * 2 * size.layers * tokens * tokens * size.hidden
    frames = sum(windows) / max(1, len(windows))
    vision = 2 * size.vision_params * frames * visual * 4
    return linear + attention + vision


def _peak_memory(size: ModelSize, tokens: float, precision: str, rank: int, gc: bool, device: str) -> int:
    """Weights (the decoder's projections at the precision, embeddings and head in 16 bits on the GPU,
    the vision tower in 16 bits), LoRA weights with their gradients and AdamW moments in fp32, and
    the activations of the longest window (each layer's input kept with gradient checkpointing, all
    of them without), plus the process's own overhead."""
    half = 2.0 if device == "cuda" else 4.0
    weights = size.linear_params * _bytes_per_weight(precision) + (size.embedding_params + size.vision_params) * half
    lora = size.lora_params(rank) * 16
    act_bytes = 2.0 if device == "cuda" else 4.0
    per_layer = tokens * (6 * size.hidden + 2 * size.kv_dim + 4 * size.intermediate) * act_bytes
    if gc:
        activations = size.layers * tokens * size.hidden * act_bytes + per_layer
    else:
        activations = size.layers * per_layer
    overhead = CUDA_OVERHEAD_BYTES if device == "cuda" else CPU_BASELINE_BYTES
    return int(weights + lora + activations + overhead)
