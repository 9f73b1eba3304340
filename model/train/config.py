"""Training settings: one dataclass shared by the command line, the app's training process and the
adapter card. ``None`` means "choose for me" (see ``resolve``); the resolved values are written
to ``train_config.json`` in the output folder, so a resumed run trains with the same settings."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from model.frames import MAX_PIXELS, MIN_PIXELS

LOSSES = ("focal", "ce")
# Step budget when neither --steps nor --epochs is given: at least one epoch, and never fewer than
# this many optimiser steps, so a handful of clips is seen often enough to be learnt while a large set
# gets one epoch. Measured on the learning test's 12 synthetic clips (tiny model, seeded data sets):
# 400 steps left the live engine at 0.80-0.91 state accuracy, 800 at 0.99.
AUTO_MIN_STEPS = 800
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
    lora_merger: bool = False  # LoRA on the vision merger too (the projector the release fine-tunes)
    warmup: float = 0.05  # share of the steps with a linear warm-up, then cosine decay
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    accum: int = 1  # micro-batches (one window each) per optimiser step and process
    max_turns: int = 120
    loss: str = "focal"
    gamma: float = 2.0
    holdout: float = 0.1
    # Videos to hold out, by name (the path as written in the data, the full path or the file name);
    # empty: chosen automatically (data.heldout_count: ``holdout`` of them, at least ``min_heldout``).
    heldout: list[str] = field(default_factory=list)
    min_heldout: int = 1
    early_stop: int = 0  # stop after this many held-out evaluations without a new lowest loss; 0: off
    seed: int = 0
    fps: float = 1.0
    live_instructions: bool = False  # first turns carry the Live task's instruction (presets.convert_for_live)
    skip_unannotated: bool = False  # leave out raw samples with no question and no answer
    min_pixels: int | None = None  # None: the model's frame budget (load_model's)
    max_pixels: int | None = None
    precision: str = "auto"
    device: str = "auto"
    gradient_checkpointing: bool | None = None  # None: on for CUDA
    save_every: int | None = None  # None: about ten checkpoints a run
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
        need(self.accum >= 1, f"--accum must be >= 1, got {self.accum}")
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


def total_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """Optimiser steps of the whole run: --steps, else --epochs, else the automatic budget."""
    if config.steps is not None:
        return config.steps
    if config.epochs is not None:
        return max(1, math.ceil(config.epochs * steps_per_epoch))
    return max(steps_per_epoch, AUTO_MIN_STEPS)


def every(value: int | None, total: int, times: int = 10) -> int:
    """An interval giving about ``times`` events over ``total`` steps."""
    return value if value is not None else max(1, math.ceil(total / times))
