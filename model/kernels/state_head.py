"""The per-second state decision in one launch: the few LM-head rows of the state tokens dotted with the last
hidden state, and their softmax. Replaces a full [V, H] LM-head GEMV (V = 151936 for Qwen2.5-VL: ~1.1 GB read per
step in bf16 at 7B) by a read of S*H weights when only the state tokens' relative probabilities are needed.

`hidden` is the final hidden state *after* the model's last norm (what the LM head sees). `weight` is the dense
LM-head weight [V, H] (tied or not; bitsandbytes keeps lm_head unquantised by default).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._util import can_launch, next_pow2

_IDS_CACHE: dict[tuple[str, tuple[int, ...]], torch.Tensor] = {}


@triton.jit
def _state_head_kernel(
    h_ptr,  # [H] last hidden state, contiguous
    w_ptr,  # [V, H] LM-head weight, row stride stride_wv, unit column stride
    ids_ptr,  # int64 [S] state token ids
    logits_ptr,  # fp32 [S]
    probs_ptr,  # fp32 [S]
    H,
    S,
    stride_wv,
    S_PAD: tl.constexpr,  # S rounded up to a power of two
    BLOCK_H: tl.constexpr,
):
    # single program: S_PAD rows x BLOCK_H columns per iteration, fp32 accumulation, softmax in registers
    offs_s = tl.arange(0, S_PAD)
    mask_s = offs_s < S
    rows = tl.load(ids_ptr + offs_s, mask=mask_s, other=0).to(tl.int64) * stride_wv  # [S_PAD]
    acc = tl.zeros((S_PAD, BLOCK_H), dtype=tl.float32)
    for h0 in range(0, H, BLOCK_H):
        offs_h = h0 + tl.arange(0, BLOCK_H)
        mask_h = offs_h < H
        h = tl.load(h_ptr + offs_h, mask=mask_h, other=0.0).to(tl.float32)  # [BLOCK_H]
        w = tl.load(w_ptr + rows[:, None] + offs_h[None, :], mask=mask_s[:, None] & mask_h[None, :], other=0.0)
        acc += w.to(tl.float32) * h[None, :]
    logits = tl.sum(acc, axis=1)  # [S_PAD]
    z = tl.where(mask_s, logits, float("-inf"))
    e = tl.exp(z - tl.max(z, axis=0))
    probs = e / tl.sum(e, axis=0)
    tl.store(logits_ptr + offs_s, logits, mask=mask_s)
    tl.store(probs_ptr + offs_s, probs, mask=mask_s)


def _ids_tensor(state_ids: torch.Tensor | list[int], device: torch.device) -> torch.Tensor:
    if isinstance(state_ids, torch.Tensor):
        return state_ids.to(device=device, dtype=torch.int64).reshape(-1).contiguous()
    key = (str(device), tuple(int(i) for i in state_ids))
    t = _IDS_CACHE.get(key)
    if t is None:  # cached: a list would otherwise cost a host->device copy every second
        t = _IDS_CACHE[key] = torch.tensor(key[1], dtype=torch.int64, device=device)
    return t


def state_probs_reference(
    hidden: torch.Tensor, weight: torch.Tensor, state_ids: torch.Tensor | list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain torch: (logits[S], softmax(logits)[S]) in fp32."""
    h = hidden.reshape(-1).float()  # [H]
    ids = _ids_tensor(state_ids, weight.device)
    logits = weight.index_select(0, ids).float() @ h  # [S]
    return logits, torch.softmax(logits, dim=-1)


def state_probs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    state_ids: torch.Tensor | list[int],
    *,
    out: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """hidden [H] or [1, H] (or [1, 1, H]), weight [V, H], S state ids -> (logits[S], probs[S]) fp32.
    One Triton launch on CUDA (or under TRITON_INTERPRET=1); otherwise the torch reference."""
    h = hidden.reshape(-1)
    assert h.numel() == weight.shape[1], (hidden.shape, weight.shape)
    if not can_launch(_state_head_kernel, h, weight) or weight.stride(1) != 1:
        return state_probs_reference(h, weight, state_ids)
    h = h.contiguous()
    ids = _ids_tensor(state_ids, weight.device)
    s = ids.numel()
    assert 1 <= s <= 64, f"{s} state ids"
    logits, probs = (
        out
        if out is not None
        else (
            torch.empty(s, dtype=torch.float32, device=h.device),
            torch.empty(s, dtype=torch.float32, device=h.device),
        )
    )
    s_pad = next_pow2(s)
    # one program: 8 warps for memory parallelism; S_PAD x 1024 at 8 warps compiles without spills (sm_90), 4 warps
    # spill in fp16
    block_h = min(1024, next_pow2(h.numel()))
    _state_head_kernel[(1,)](
        h, weight, ids, logits, probs, h.numel(), s, weight.stride(0), S_PAD=s_pad, BLOCK_H=block_h, num_warps=8
    )
    return logits, probs
