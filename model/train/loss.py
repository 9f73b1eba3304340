"""The stream focal loss of the official Streamo release (../shared/streamo/PROTOCOL.md, section 4).

Labels are unshifted (``-100`` = not labelled): logits at position p predict the label at p + 1.
Every labelled position contributes its cross-entropy over the full vocabulary; at positions whose
label is a state token (Silence, Standby, Response) that CE is multiplied by
``alpha_c * (1 - p_t) ** gamma``, with p_t the full-vocabulary probability of the label and the factor
left in the graph. ``alpha_c = N_state / (K * n_c)`` balances the state classes, counted over the
state labels of this call (all sequences of the batch). The weighted sum is divided by the number of
labelled tokens (unweighted), or by ``num_items``: the labelled-token count over all micro-batches of
an optimiser step under gradient accumulation.

The maths lives in :func:`loss_on_selected`, which works on rows already shifted and selected; the
trainer selects with :func:`select_targets` and asks the model for logits at those positions only
(``logits_to_keep``), since a 152k vocabulary makes full ``[T, V]`` logits expensive.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

IGNORE_INDEX = -100
KINDS = ("focal", "ce")


def select_targets(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Logit positions of one sequence whose next label is labelled, and those labels.

    ``labels`` is ``[T]`` or ``[1, T]``. Returns ``(positions [N] long, targets [N] long)`` with
    ``labels[positions + 1] != -100`` and ``targets = labels[positions + 1]``.
    """
    if labels.dim() == 2 and labels.shape[0] == 1:
        labels = labels[0]
    if labels.dim() != 1:
        raise ValueError(f"select_targets takes one sequence's labels [T] or [1, T], got {tuple(labels.shape)}")
    nxt = labels[1:]  # [T - 1]: the label each logit position predicts
    positions = (nxt != IGNORE_INDEX).nonzero().squeeze(1)  # [N]
    return positions, nxt[positions].long()


def loss_on_selected(
    logits: Tensor,
    targets: Tensor,
    state_ids: Sequence[int] | Tensor,
    kind: str = "focal",
    gamma: float = 2.0,
    num_items: int | Tensor | None = None,
) -> Tensor:
    """The loss on already shifted and selected rows: ``logits [N, V]`` or ``[1, N, V]``, ``targets [N]``.

    ``kind`` is ``"focal"`` (stream focal loss) or ``"ce"`` (plain cross-entropy). Returns an fp32 scalar.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown loss kind {kind!r}: expected one of {KINDS}")
    rows = logits.reshape(-1, logits.shape[-1])  # [N, V]
    targets = targets.reshape(-1).to(device=rows.device, dtype=torch.long)  # [N]
    if rows.shape[0] != targets.shape[0]:
        raise ValueError(f"{rows.shape[0]} logit rows for {targets.shape[0]} targets")
    n = targets.shape[0]
    if n == 0:
        return logits.sum().float() * 0.0

    logp_t = torch.log_softmax(rows.float(), dim=-1).gather(1, targets[:, None]).squeeze(1)  # [N] fp32
    ce = -logp_t  # [N]
    if kind == "focal":
        ce = ce * _focal_weights(logp_t, targets, state_ids, gamma)

    denom = n if num_items is None else torch.as_tensor(num_items, dtype=torch.float32, device=ce.device)
    return ce.sum() / denom


def _focal_weights(logp_t: Tensor, targets: Tensor, state_ids: Sequence[int] | Tensor, gamma: float) -> Tensor:
    """Per-row weight ``[N]``: ``alpha_c * (1 - p_t) ** gamma`` at state labels, 1 elsewhere."""
    sids = torch.unique(torch.as_tensor(state_ids, dtype=torch.long, device=targets.device).reshape(-1))  # [S]
    match = targets[:, None] == sids[None, :]  # [N, S]
    is_state = match.any(dim=1)  # [N]
    counts = match.sum(dim=0).float()  # [S]: n_c over this call
    present = (counts > 0).sum().clamp(min=1)  # K
    alpha = counts.sum() / (present * counts.clamp(min=1))  # [S]
    alpha_row = torch.where(is_state, (match.float() * alpha[None, :]).sum(dim=1), 1.0)  # [N]
    # Non-state rows take base 1 so that pow's backward never sees (1 - p_t) = 0 there.
    base = torch.where(is_state, -torch.expm1(logp_t), 1.0)  # [N]: 1 - p_t at state rows
    return alpha_row * base.pow(gamma)


def stream_focal_loss(
    logits: Tensor,
    labels: Tensor,
    state_ids: Sequence[int] | Tensor,
    gamma: float = 2.0,
    num_items: int | Tensor | None = None,
) -> Tensor:
    """Stream focal loss of ``logits [B, T, V]`` against unshifted ``labels [B, T]``; a scalar."""
    rows, targets = _shift_select(logits, labels)
    return loss_on_selected(rows, targets, state_ids, kind="focal", gamma=gamma, num_items=num_items)


def stream_ce_loss(logits: Tensor, labels: Tensor, num_items: int | Tensor | None = None) -> Tensor:
    """Plain cross-entropy with the same shift, selection and normalisation (``--loss ce``); a scalar."""
    rows, targets = _shift_select(logits, labels)
    return loss_on_selected(rows, targets, (), kind="ce", num_items=num_items)


def _shift_select(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Rows ``[N, V]`` of ``logits [B, T, V]`` whose next label is labelled, and those labels ``[N]``."""
    nxt = labels[:, 1:].to(logits.device)  # [B, T - 1]
    keep = nxt != IGNORE_INDEX  # [B, T - 1]
    return logits[:, :-1][keep], nxt[keep]
