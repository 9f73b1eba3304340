"""Qwen2.5-VL multimodal rotary positions for a piece of a conversation, and key re-rotation.

Qwen2.5-VL gives every token three position ids (temporal, height, width). Text tokens carry the
same id in all three; an image of llm grid (1, h, w) starting at position p gets (p, p + row,
p + col), and the text after it continues from p + max(h, w), i.e. max(image positions) + 1.
This is what ``Qwen2_5_VLModel.get_rope_index`` computes for a whole sequence (transformers
5.23, checked against it in tests/model/test_engine.py). The rule is translation-invariant, so a
turn's positions are its own positions from 0 plus the offset where the previous turn ended:
the engine prefills one turn at a time and gets the full conversation's positions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def mrope_positions(
    ids: Sequence[int],
    image_token_id: int,
    grids: Sequence[tuple[int, int, int]],
    spatial_merge: int,
    start: int,
) -> tuple[torch.Tensor, int]:
    """3-D positions of ``ids`` placed after ``start`` earlier positions.

    ``grids`` holds the (t, h, w) patch grid of each image, in order; each image is a
    contiguous run of t*h*w / merge**2 image-pad tokens in ``ids``.
    Returns (positions [3, len(ids)] long, the next free position).
    """
    pieces: list[torch.Tensor] = []
    pos = start
    i, n, img = 0, len(ids), 0
    while i < n:
        if ids[i] == image_token_id:
            t, h, w = grids[img]
            img += 1
            gh, gw = h // spatial_merge, w // spatial_merge
            count = t * gh * gw
            # Still images: temporal id is the start for every patch (no 2 s temporal spacing).
            tt = torch.arange(t).view(-1, 1, 1).expand(t, gh, gw)
            hh = torch.arange(gh).view(1, -1, 1).expand(t, gh, gw)
            ww = torch.arange(gw).view(1, 1, -1).expand(t, gh, gw)
            block = torch.stack([tt.reshape(-1), hh.reshape(-1), ww.reshape(-1)]) + pos  # [3, count]
            pieces.append(block)
            pos += max(gh, gw)  # as get_rope_index: images advance by their larger side only
            i += count
        else:
            j = i
            while j < n and ids[j] != image_token_id:
                j += 1
            pieces.append(torch.arange(pos, pos + j - i).view(1, -1).expand(3, -1))
            pos += j - i
            i = j
    if img != len(grids):
        raise ValueError(f"{len(grids)} image grids given but {img} image blocks found in the tokens")
    if not pieces:
        return torch.zeros(3, 0, dtype=torch.long), start
    return torch.cat(pieces, dim=1), pos


def rotate_keys(keys: torch.Tensor, shift: int, inv_freq: torch.Tensor) -> torch.Tensor:
    """Move cached keys by ``shift`` positions (all three sections alike), in place.

    RoPE is a rotation per frequency pair (i, i + d/2); rotating a stored key by ``shift`` gives
    exactly the key it would have had at position p + shift, whichever mrope section the pair
    reads, since text and image positions all move by the same amount.
    keys: [B, kv_heads, n, head_dim]; inv_freq: [head_dim / 2].
    """
    freqs = shift * inv_freq.to(device=keys.device, dtype=torch.float32)  # [d/2]
    emb = torch.cat([freqs, freqs])  # [d]
    cos, sin = emb.cos(), emb.sin()
    k = keys.float()
    half = k.shape[-1] // 2
    rotated = torch.cat([-k[..., half:], k[..., :half]], dim=-1)  # rotate_half
    keys.copy_((k * cos + rotated * sin).to(keys.dtype))
    return keys
