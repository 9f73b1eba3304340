"""Fused RMSNorm, optionally with the residual add that precedes it (Qwen2.5-VL decoder: `h = residual + attn;
post_attention_layernorm(h)`), in one pass over the row.

Numerics follow transformers' Qwen2RMSNorm / Qwen2_5_VLRMSNorm ("llama" casting):
    s   = (x + residual) rounded to x.dtype               (what `residual + hidden_states` gives in torch)
    y   = weight * (s_fp32 * rsqrt(mean(s_fp32^2) + eps)).to(x.dtype)
    out dtype = torch.promote_types(weight.dtype, x.dtype)
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._util import can_launch, row_block


@triton.jit
def _rms_norm_kernel(
    x_ptr,  # [R, C] rows with stride stride_x, unit column stride
    res_ptr,  # [R, C] residual (HAS_RESIDUAL only)
    w_ptr,  # [C]
    y_ptr,  # [R, C] normalised output
    sum_ptr,  # [R, C] x + residual, in x's dtype (HAS_RESIDUAL only)
    stride_x,
    stride_res,
    stride_y,
    stride_sum,
    n_cols,
    eps,
    HAS_RESIDUAL: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,  # >= n_cols: one program reads its row once
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_SIZE)
    mask = cols < n_cols
    x = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0)
    if HAS_RESIDUAL:
        r = tl.load(res_ptr + row * stride_res + cols, mask=mask, other=0.0)
        x = (x.to(tl.float32) + r.to(tl.float32)).to(x.dtype)  # round like the unfused add
        tl.store(sum_ptr + row * stride_sum + cols, x, mask=mask)
    xf = x.to(tl.float32)
    rstd = tl.rsqrt(tl.sum(xf * xf, axis=0) / n_cols + eps)
    normed = (xf * rstd).to(x.dtype).to(tl.float32)  # cast to the input dtype before the weight, as HF does
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(y_ptr + row * stride_y + cols, (w * normed).to(y_ptr.dtype.element_ty), mask=mask)


def rms_norm(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    residual: torch.Tensor | None = None,
    *,
    out: torch.Tensor | None = None,
    sum_out: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """RMSNorm over the last dim. x [..., C], weight [C] -> y [..., C].
    With `residual` ([..., C]) returns (y, x + residual), the sum being the next residual stream."""
    shape = x.shape
    c = shape[-1]
    x2 = x.reshape(-1, c)  # [R, C]
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    r2 = None
    if residual is not None:
        r2 = residual.reshape(-1, c)
        if r2.stride(-1) != 1:
            r2 = r2.contiguous()
    out_dtype = torch.promote_types(weight.dtype, x.dtype)
    y = out if out is not None else torch.empty(x2.shape, dtype=out_dtype, device=x.device)  # [R, C]
    y = y.reshape(-1, c)
    s = None
    if r2 is not None:
        s = sum_out if sum_out is not None else torch.empty(x2.shape, dtype=x.dtype, device=x.device)
        s = s.reshape(-1, c)
    block, num_warps = row_block(c)  # whole row per program: read once, reduce in registers
    _rms_norm_kernel[(x2.shape[0],)](
        x2,
        r2 if r2 is not None else x2,
        weight,
        y,
        s if s is not None else y,
        x2.stride(0),
        r2.stride(0) if r2 is not None else 0,
        y.stride(0),
        s.stride(0) if s is not None else 0,
        c,
        float(eps),
        HAS_RESIDUAL=r2 is not None,
        BLOCK_SIZE=block,
        num_warps=num_warps,
    )
    if s is not None:
        return y.reshape(shape), s.reshape(shape)
    return y.reshape(shape)


def rms_norm_reference(
    x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """transformers' Qwen2RMSNorm, with the preceding residual add when `residual` is given."""
    if residual is not None:
        x = residual + x
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    y = weight * h.to(x.dtype)
    return (y, x) if residual is not None else y


def rmsnorm_module_forward(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """Forward of an HF RMSNorm module (`weight`, `variance_epsilon`) via the kernel; None if it cannot run here."""
    w = module.weight
    if not can_launch(_rms_norm_kernel, x, w) or x.shape[-1] != w.shape[0] or x.numel() == 0:
        return None
    if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad):  # no backward kernel
        return None
    return rms_norm(x, w, module.variance_epsilon)
