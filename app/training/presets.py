"""The Training tab's presets (no Qt). Each maps to TrainConfig values; the panel's advanced settings
start from them and can change each one (changing one shows the preset as "Custom").

============  =====================================  ======  =========  ============================
preset        optimiser steps                        rank    max turns  what for
============  =====================================  ======  =========  ============================
Quick         1 epoch, at least 300 steps            8       60         a first look
Balanced      1 epoch, at least 800 steps            16      120        the trainer's own defaults:
                                                                        measured 0.98-1.00 live state
                                                                        accuracy on 12 synthetic clips
                                                                        (docs/training.md)
Thorough      3 epochs, at least 1,600 steps         32      120        more data, more passes
============  =====================================  ======  =========  ============================

All presets: learning rate automatic (2e-4 at a 2048-wide model, scaled by width), 20 % of the
videos held out and at least 2 (``HOLDOUT_PERCENT``, ``MIN_HELDOUT``: below that the evaluation's
figures swing with one clip), alpha = 2 x rank, the trainer's other defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# The tab holds out "at least 2 clips or 20 %" (issue 18: one clip of 14 held out could not catch an
# adapter that stayed silent in Live). Fewer clips than that hold out what they can, with a warning.
HOLDOUT_PERCENT = 20
MIN_HELDOUT = 2


@dataclass(frozen=True)
class Preset:
    key: str
    label: str
    epochs: float
    min_steps: int
    rank: int
    max_turns: int
    tip: str

    def steps(self, steps_per_epoch: int) -> int:
        return max(self.min_steps, math.ceil(self.epochs * steps_per_epoch))


PRESETS: dict[str, Preset] = {
    p.key: p
    for p in (
        Preset("quick", "Quick", 1.0, 300, 8, 60, "A first look: one epoch, at least 300 steps, rank 8, 60-turn windows"),
        Preset("balanced", "Balanced", 1.0, 800, 16, 120,
               "The trainer's defaults: one epoch, at least 800 steps, rank 16, 120-turn windows"),
        Preset("thorough", "Thorough", 3.0, 1600, 32, 120,
               "Three epochs, at least 1,600 steps, rank 32, 120-turn windows"),
    )
}  # fmt: skip
CUSTOM = "custom"
