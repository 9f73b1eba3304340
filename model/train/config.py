"""Training settings: one dataclass shared by the command line, the app's training process and the
adapter card. ``None`` means "choose for me" (see ``resolve``); the resolved values are written
to ``train_config.json`` in the output folder, so a resumed run trains with the same settings."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from model.frames import MAX_PIXELS, MIN_PIXELS

LOSSES = ("focal", "ce")
RECIPES = ("lora", "release")
# Step budget when neither --steps nor --epochs is given (``total_steps``): a small set (fewer
# training windows than AUTO_MIN_STEPS) trains at least this many optimiser steps, so a handful of
# clips is seen often enough to be learnt; a large set trains AUTO_EPOCHS epochs, the release's one.
# Measured on the learning test's 12 synthetic clips (tiny model, seeded data sets): 400 steps left
# the live engine at 0.80-0.91 state accuracy, 800 at 0.99.
AUTO_MIN_STEPS = 800
AUTO_EPOCHS = 1.0
# Effective batch when --accum is not given (``auto_accum``): the release steps on 512 sequences
# (8 GPUs x 1 x accumulation 64) and its 465K samples make about 900 such steps an epoch. A set keeps
# about AUTO_STEPS_PER_EPOCH steps an epoch while its batch grows towards 512, so a set under
# 2 x 900 windows steps on one window per process (a 12-clip set takes hundreds of steps).
RELEASE_BATCH = 512
AUTO_STEPS_PER_EPOCH = 900
# The automatic held-out split holds out at most this many videos (10% of the release's 135K videos
# would be 13K videos nobody trains on), and every window of them is scored at each evaluation.
MAX_HELDOUT = 200
# The release's recipe (PROTOCOL.md section 4): full fine-tuning of the language model and the merger,
# vision tower frozen; AdamW lr 1e-5, weight decay 0.1, betas (0.9, 0.95), warm-up 5%, cosine, one
# epoch, grad norm 1, bf16. ``--recipe release`` fills in what the command line leaves unset.
RELEASE_RECIPE = {"lr": 1e-5, "weight_decay": 0.1, "beta2": 0.95, "epochs": 1.0}
LORA_RECIPE = {"weight_decay": 0.0, "beta2": 0.999}
# Learning rate when none is given: 2e-4 for a 2048-wide decoder (Qwen2.5-VL-3B), scaled like
# Adam's step under muP (inversely with the width) and clamped: 7B (3584) gets 1.1e-4, the
# 64-wide demo model 5e-3.
AUTO_LR_BASE, AUTO_LR_WIDTH, AUTO_LR_RANGE = 2e-4, 2048, (5e-5, 5e-3)


class ConfigError(ValueError):
    """A setting out of range; the message names the flag."""


@dataclass
class TrainConfig:
    data: list[str] = field(default_factory=list)  # raw or stream-format JSON/JSONL files, or folders of them
    model: str = ""  # hub id, local folder or "demo"
    out: str = ""  # the adapter folder (checkpoints/, metrics.jsonl and the card live inside)
    video_prefix: str | None = None
    epochs: float | None = None
    steps: int | None = None  # optimiser steps in all; None: from epochs, else the automatic budget
    lr: float | None = None
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    lora_merger: bool = True  # LoRA on the vision merger too (the projector the release fine-tunes)
    # "lora": LoRA (QLoRA on CUDA) on the language model; "release": the release's full fine-tuning
    # of the language model and the merger (RELEASE_RECIPE), the vision tower frozen.
    recipe: str = "lora"
    warmup: float = 0.05  # share of the steps with a linear warm-up, then cosine decay
    weight_decay: float | None = None  # None: the recipe's (LoRA 0, release 0.1)
    beta2: float | None = None  # AdamW's second beta; None: the recipe's (LoRA 0.999, release 0.95)
    max_grad_norm: float = 1.0
    # Micro-batches (one window each) per optimiser step and process; None: from the data size and
    # the process count (auto_accum), resolved at start and saved for --resume.
    accum: int | None = None
    max_turns: int = 120
    loss: str = "focal"
    gamma: float = 2.0
    holdout: float = 0.1
    # Videos to hold out, by name (the path as written in the data, the full path or the file name);
    # empty: chosen automatically (data.heldout_count: ``holdout`` of them, at least ``min_heldout``).
    heldout: list[str] = field(default_factory=list)
    min_heldout: int = 1
    max_heldout: int = MAX_HELDOUT  # the automatic choice holds out at most this many videos
    early_stop: int = 0  # stop after this many held-out evaluations without a new lowest loss; 0: off
    seed: int = 0
    fps: float = 1.0
    live_instructions: bool = False  # first turns carry the Live task's instruction (presets.convert_for_live)
    skip_unannotated: bool = False  # leave out raw samples with no question and no answer
    min_pixels: int | None = None  # None: the model's frame budget (load_model's)
    max_pixels: int | None = None
    precision: str = "auto"
    device: str = "auto"
    gradient_checkpointing: bool | None = None  # None: on for models of GC_MIN_PARAMETERS or more
    save_every: int | None = None  # None: about ten checkpoints a run
    save_minutes: float = 30.0  # also a checkpoint after this many minutes of training since the last; 0: off
    eval_every: int | None = None  # None: about ten held-out evaluations a run
    keep_checkpoints: int = 2
    keep_last: bool = False  # False: the adapter written is the step with the lowest held-out loss
    cache_dir: str | None = None  # None: <data folder>/frame-cache
    resume: bool = False
    command: str = ""  # the command line, for the card

    def validate(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        # On --resume both may be left out: the run's saved ones are used.
        need(bool(self.data) or self.resume, "--data: give at least one annotation file")
        need(bool(self.model) or self.resume, "--model: give a Hugging Face id, a local folder or 'demo'")
        need(bool(self.out), "--out: give the folder to write the adapter to")
        need(self.epochs is None or self.epochs > 0, f"--epochs must be positive, got {self.epochs}")
        need(self.steps is None or self.steps > 0, f"--steps must be positive, got {self.steps}")
        need(self.lr is None or 0 < self.lr < 1, f"--lr must be in (0, 1), got {self.lr}")
        need(self.rank >= 1, f"--rank must be >= 1, got {self.rank}")
        need(self.alpha > 0, f"--alpha must be positive, got {self.alpha}")
        need(0 <= self.dropout < 1, f"--dropout must be in [0, 1), got {self.dropout}")
        need(0 <= self.warmup < 1, f"--warmup must be in [0, 1), got {self.warmup}")
        need(self.accum is None or self.accum >= 1, f"--accum must be >= 1, got {self.accum}")
        need(self.recipe in RECIPES, f"--recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}")
        need(
            self.recipe != "release" or self.precision not in ("4bit", "8bit"),
            f"--recipe release fine-tunes all the language model's weights, which cannot be {self.precision}: "
            "use --precision bf16 (or auto), or the LoRA recipe for QLoRA",
        )
        need(self.weight_decay is None or self.weight_decay >= 0, "--weight-decay must be >= 0")
        need(self.beta2 is None or 0 < self.beta2 < 1, f"--beta2 must be in (0, 1), got {self.beta2}")
        need(self.save_minutes >= 0, f"--save-minutes must be >= 0 (0: off), got {self.save_minutes}")
        need(self.max_heldout >= 0, f"--max-heldout must be >= 0, got {self.max_heldout}")
        need(self.max_turns >= 1, f"--max-turns must be >= 1, got {self.max_turns}")
        need(self.loss in LOSSES, f"--loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        need(self.gamma >= 0, f"--gamma must be >= 0, got {self.gamma}")
        need(0 <= self.holdout < 1, f"--holdout must be in [0, 1), got {self.holdout}")
        need(self.min_heldout >= 0, f"--min-heldout must be >= 0, got {self.min_heldout}")
        need(self.early_stop >= 0, f"--early-stop must be >= 0 (0: off), got {self.early_stop}")
        need(all(isinstance(n, str) and n.strip() for n in self.heldout), "--heldout: give a video's name or path")
        need(
            not self.early_stop or self.holdout > 0 or bool(self.heldout),
            "--early-stop needs held-out clips to watch: give --holdout above 0 or --heldout NAME",
        )
        need(
            self.fps == 1.0,
            f"--fps {self.fps:g}: training runs at 1 turn a second only. The released converter labels turns in "
            "whole seconds (<3s-4s>) and reads numeric times unscaled, while Live at 2 steps a second shows "
            "half-second turns (<1.5s-2s>): an adapter trained at 2 would learn labels Live never shows. "
            "Train with --fps 1 (Live can still run it at 2 steps a second).",
        )
        lo, hi = self.min_pixels or MIN_PIXELS, self.max_pixels or MAX_PIXELS
        need(0 < lo <= hi, f"--min-pixels ({lo}) must be positive and <= --max-pixels ({hi})")
        need(self.keep_checkpoints >= 1, "keep_checkpoints must be >= 1")
        need(self.save_every is None or self.save_every >= 1, "--save-every must be >= 1")
        need(self.eval_every is None or self.eval_every >= 1, "--eval-every must be >= 1")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def auto_lr(hidden_size: int) -> float:
    lo, hi = AUTO_LR_RANGE
    return min(hi, max(lo, AUTO_LR_BASE * AUTO_LR_WIDTH / max(1, hidden_size)))


def with_recipe(config: TrainConfig) -> TrainConfig:
    """``config`` with the recipe's values where it leaves them unset (None); lr stays None for the
    LoRA recipe (``auto_lr`` needs the model's width)."""
    chosen = RELEASE_RECIPE if config.recipe == "release" else LORA_RECIPE
    given = {k: v for k, v in chosen.items() if getattr(config, k) is None}
    if "epochs" in given and config.steps is not None:
        del given["epochs"]  # --steps wins
    return replace(config, **given)


def auto_accum(windows: int, processes: int) -> int:
    """Windows per optimiser step and process when --accum is not given: an effective batch of
    ``windows // AUTO_STEPS_PER_EPOCH`` (about 900 steps an epoch), at least one window a process and
    at most the release's 512, shared over the processes."""
    target = min(RELEASE_BATCH, max(1, windows // AUTO_STEPS_PER_EPOCH))
    return max(1, round(target / max(1, processes)))


def total_steps(config: TrainConfig, steps_per_epoch: int, windows: int | None = None) -> int:
    """Optimiser steps of the whole run: --steps, else --epochs, else the automatic budget: a large
    set (``windows`` >= AUTO_MIN_STEPS) trains AUTO_EPOCHS epochs, a small one at least AUTO_MIN_STEPS
    steps and at least an epoch (``windows`` None: the small-set rule)."""
    if config.steps is not None:
        return config.steps
    if config.epochs is not None:
        return max(1, math.ceil(config.epochs * steps_per_epoch))
    if windows is not None and windows >= AUTO_MIN_STEPS:
        return max(1, math.ceil(AUTO_EPOCHS * steps_per_epoch))
    return max(steps_per_epoch, AUTO_MIN_STEPS)


@dataclass(frozen=True)
class Plan:
    """The run's batch, step budget and intervals, with the reasons printed at start."""

    windows: int
    processes: int
    accum: int
    steps_per_epoch: int
    total: int
    save_every: int
    save_minutes: float
    eval_every: int
    reasons: dict[str, str]

    @property
    def batch(self) -> int:
        return self.processes * self.accum

    def lines(self) -> list[str]:
        r = self.reasons
        saves = f"every {self.save_every} steps" + (
            f" and after {self.save_minutes:g} minutes of training" if self.save_minutes else ""
        )
        return [
            f"effective batch {self.batch} = {self.processes} processes x 1 window x accum {self.accum} ({r['accum']})",
            f"{self.total} optimiser steps, {self.steps_per_epoch} an epoch of {self.windows} windows ({r['steps']})",
            f"checkpoints {saves} ({r['save']}); held-out evaluation every {self.eval_every} steps ({r['eval']})",
        ]


def plan(config: TrainConfig, windows: int, processes: int) -> Plan:
    """Accumulation, steps and intervals for ``windows`` training windows on ``processes`` processes."""
    if config.accum is not None:
        accum, why_accum = config.accum, "--accum"
    else:
        accum = auto_accum(windows, processes)
        target = min(RELEASE_BATCH, max(1, windows // AUTO_STEPS_PER_EPOCH))
        why_accum = (
            f"automatic: {windows} windows // {AUTO_STEPS_PER_EPOCH} steps an epoch = a batch of {target}, "
            f"at most the release's {RELEASE_BATCH}"
        )
    spe = max(1, math.ceil(windows / (processes * accum)))
    total = total_steps(config, spe, windows)
    if config.steps is not None:
        why_steps = "--steps"
    elif config.epochs is not None:
        why_steps = f"{config.epochs:g} epochs" + (" (--recipe release)" if config.recipe == "release" else "")
    elif windows >= AUTO_MIN_STEPS:
        why_steps = f"automatic: a large set ({windows} >= {AUTO_MIN_STEPS} windows) trains {AUTO_EPOCHS:g} epoch"
    else:
        why_steps = (
            f"automatic: a small set ({windows} < {AUTO_MIN_STEPS} windows) trains at least {AUTO_MIN_STEPS} steps"
        )
    return Plan(
        windows=windows,
        processes=processes,
        accum=accum,
        steps_per_epoch=spe,
        total=total,
        save_every=every(config.save_every, total),
        save_minutes=config.save_minutes,
        eval_every=every(config.eval_every, total),
        reasons={
            "accum": why_accum,
            "steps": why_steps,
            "save": "--save-every" if config.save_every is not None else "about ten a run",
            "eval": "--eval-every" if config.eval_every is not None else "about ten a run",
        },
    )


def every(value: int | None, total: int, times: int = 10) -> int:
    """An interval giving about ``times`` events over ``total`` steps."""
    return value if value is not None else max(1, math.ceil(total / times))
