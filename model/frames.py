"""Frame preprocessing shared by inference and training: one numpy frame -> processor inputs
at the Streamo pixel budget (PROTOCOL.md section 2: 3136..100352 pixels, 4..128 tokens)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch loads where frames are processed, not where this module is imported
    import torch

MIN_PIXELS = 3136
MAX_PIXELS = 100352


@dataclass
class FrameInputs:
    pixel_values: torch.Tensor  # [n_patches, C * temporal_patch * patch * patch]
    image_grid_thw: torch.Tensor  # [1, 3]: (t, h, w) in patches
    n_tokens: int  # <|image_pad|> tokens after the 2x2 merge


def as_rgb(frame: np.ndarray, channel_order: str = "rgb") -> np.ndarray:
    """A contiguous, writable HxWx3 uint8 RGB array from RGB/BGR, grey or RGBA input."""
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
    if not frame.flags.writeable:  # a memory-mapped frame cache: torch.from_numpy warns about read-only arrays
        return frame.copy()
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
    out = image_processor(
        images=[as_rgb(frame, channel_order)],
        size=_budget(image_processor, min_pixels, max_pixels),
        return_tensors="pt",
    )
    grid = out["image_grid_thw"]
    merge = getattr(image_processor, "merge_size", 2)
    return FrameInputs(out["pixel_values"], grid, int(grid.prod().item()) // (merge * merge))


def _budget(image_processor: Any, min_pixels: int | None, max_pixels: int | None) -> dict[str, int]:
    size = dict(getattr(image_processor, "size", None) or {})
    return {
        "shortest_edge": min_pixels or size.get("shortest_edge") or MIN_PIXELS,
        "longest_edge": max_pixels or size.get("longest_edge") or MAX_PIXELS,
    }


def resize_to_budget(
    processor: Any, frame: np.ndarray, min_pixels: int | None = None, max_pixels: int | None = None
) -> np.ndarray:
    """One RGB uint8 frame resized exactly as the processor resizes it (multiples of 28 within
    the pixel budget), still uint8. Feeding the result back to ``preprocess_frame`` gives the same
    pixel values as the original frame, so training caches these instead of decoding again."""
    import torch
    from transformers.image_utils import SizeDict

    image_processor = getattr(processor, "image_processor", processor)
    factor = getattr(image_processor, "patch_size", 14) * getattr(image_processor, "merge_size", 2)
    chw = torch.from_numpy(as_rgb(frame)).permute(2, 0, 1).contiguous()  # [3, H, W] uint8
    out = image_processor.resize(
        chw,
        size=SizeDict(**_budget(image_processor, min_pixels, max_pixels)),
        resample=image_processor.resample,
        factor=factor,
    )
    return out.permute(1, 2, 0).contiguous().numpy()


def preprocess_frames(
    processor: Any, frames: list[np.ndarray] | np.ndarray, min_pixels: int | None = None, max_pixels: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Many RGB frames in one processor call: (pixel_values [sum patches, D], image_grid_thw
    [n, 3], visual tokens per frame). Each frame is its own image, as in the Streamo data."""
    image_processor = getattr(processor, "image_processor", processor)
    out = image_processor(
        images=[as_rgb(np.asarray(f)) for f in frames],
        size=_budget(image_processor, min_pixels, max_pixels),
        return_tensors="pt",
    )
    grid = out["image_grid_thw"]
    merge = getattr(image_processor, "merge_size", 2)
    return out["pixel_values"], grid, (grid.prod(-1) // (merge * merge)).tolist()
