"""Frame preprocessing shared by inference and training: one numpy frame -> processor inputs
at the Streamo pixel budget (PROTOCOL.md section 2: 3136..100352 pixels, 4..128 tokens)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

MIN_PIXELS = 3136
MAX_PIXELS = 100352


@dataclass
class FrameInputs:
    pixel_values: torch.Tensor  # [n_patches, C * temporal_patch * patch * patch]
    image_grid_thw: torch.Tensor  # [1, 3]: (t, h, w) in patches
    n_tokens: int  # <|image_pad|> tokens after the 2x2 merge


def as_rgb(frame: np.ndarray, channel_order: str = "rgb") -> np.ndarray:
    """A contiguous HxWx3 uint8 RGB array from RGB/BGR, grey or RGBA input."""
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise ValueError(f"expected an HxWx3 frame, got shape {frame.shape}")
    frame = frame[:, :, :3]
    if channel_order == "bgr":
        frame = frame[:, :, ::-1]
    elif channel_order != "rgb":
        raise ValueError(f"channel_order must be 'rgb' or 'bgr', not {channel_order!r}")
    if frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(frame)


def preprocess_frame(
    processor: Any,
    frame: np.ndarray,
    channel_order: str = "rgb",
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> FrameInputs:
    """Resize to the pixel budget (multiples of 28) and patchify with the model's processor."""
    image_processor = getattr(processor, "image_processor", processor)
    size = dict(getattr(image_processor, "size", None) or {})
    lo = min_pixels or size.get("shortest_edge") or MIN_PIXELS
    hi = max_pixels or size.get("longest_edge") or MAX_PIXELS
    out = image_processor(
        images=[as_rgb(frame, channel_order)],
        size={"shortest_edge": lo, "longest_edge": hi},
        return_tensors="pt",
    )
    grid = out["image_grid_thw"]
    merge = getattr(image_processor, "merge_size", 2)
    return FrameInputs(out["pixel_values"], grid, int(grid.prod().item()) // (merge * merge))
