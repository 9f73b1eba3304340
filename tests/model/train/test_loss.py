"""Stream focal loss (model/train/loss.py) against a direct per-position computation (PROTOCOL.md section 4)."""

import math

import pytest
import torch
import torch.nn.functional as F

from model.train.loss import loss_on_selected, select_targets, stream_ce_loss, stream_focal_loss

V = 11
SIL, STB, RSP, END = 7, 8, 9, 10  # state ids are not the last vocab ids
STATES = [SIL, STB, RSP]
X = -100

# Two sequences: states, answer text after Response, end tokens, unlabelled stretches.
LABELS = torch.tensor(
    [
        [X, X, SIL, END, X, X, SIL, END, X, X, RSP, 3, 4, END],
        [X, X, STB, END, X, X, SIL, END, X, X, RSP, 5, END, X],
    ]
)


def batch_logits(dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (2.0 * torch.randn(LABELS.shape[0], LABELS.shape[1], V, generator=g)).to(dtype)


def softmax_row(row: torch.Tensor) -> torch.Tensor:
    e = torch.exp(row - row.max())
    return e / e.sum()


def direct_loss(
    logits, labels, state_ids, gamma=2.0, num_items=None, per_sequence_alpha=False, detach=False, three_way=False
):
    """The protocol's formula, one labelled position at a time, in float64 (differentiable)."""
    logits = logits.double()
    B, T, _ = logits.shape
    picked = [(b, t, int(labels[b, t + 1])) for b in range(B) for t in range(T - 1) if int(labels[b, t + 1]) != X]

    def alphas(entries):
        counts = {}
        for _, _, y in entries:
            if y in state_ids:
                counts[y] = counts.get(y, 0) + 1
        total, k = sum(counts.values()), len(counts)
        return {c: total / (k * n) for c, n in counts.items()}

    alpha_of = {}
    for b in range(B):
        entries = [e for e in picked if e[0] == b] if per_sequence_alpha else picked
        alpha_of[b] = alphas(entries)
    total = logits.new_zeros(())
    for b, t, y in picked:
        p = softmax_row(logits[b, t])
        ce = -torch.log(p[y])
        if y in state_ids:
            p_t = softmax_row(logits[b, t, state_ids])[state_ids.index(y)] if three_way else p[y]
            factor = alpha_of[b][y] * (1.0 - p_t) ** gamma
            total = total + (factor.detach() if detach else factor) * ce
        else:
            total = total + ce
    return total / (len(picked) if num_items is None else num_items)


def test_matches_direct_computation_on_a_mixed_batch():
    logits = batch_logits()
    for gamma in (0.0, 1.0, 2.0, 3.5):
        got = stream_focal_loss(logits, LABELS, STATES, gamma=gamma)
        want = direct_loss(logits, LABELS, STATES, gamma=gamma)
        assert got.dim() == 0 and got.dtype == torch.float32
        assert got.item() == pytest.approx(want.item(), abs=1e-5)


def test_alpha_is_counted_over_the_whole_call():
    # The per-sequence variant differs on this batch (3 Silence, 1 Standby, 2 Response over both).
    logits = batch_logits()
    got = stream_focal_loss(logits, LABELS, STATES).item()
    assert got == pytest.approx(direct_loss(logits, LABELS, STATES).item(), abs=1e-5)
    assert abs(got - direct_loss(logits, LABELS, STATES, per_sequence_alpha=True).item()) > 1e-3


def test_alpha_by_hand_three_silence_one_response():
    # Sequence 0: Silence, Silence; sequence 1: Silence, Response. Silence rows are uniform
    # (CE = log V); the Response row has logit 2 on Response. gamma = 0 leaves alpha alone:
    # alpha_S = 4 / (2 * 3), alpha_R = 4 / (2 * 1).
    labels = torch.tensor([[X, SIL, X, SIL], [X, SIL, X, RSP]])
    logits = torch.zeros(2, 4, V)
    logits[1, 2, RSP] = 2.0
    ce_s = math.log(V)
    ce_r = math.log(math.exp(2.0) + V - 1) - 2.0
    want = (3 * (4 / 6) * ce_s + (4 / 2) * ce_r) / 4
    assert stream_focal_loss(logits, labels, STATES, gamma=0.0).item() == pytest.approx(want, abs=1e-5)
    # Per sequence it would be a plain mean (alpha 1 everywhere): check the numbers tell them apart.
    assert abs(want - (3 * ce_s + ce_r) / 4) > 1e-2


def test_one_class_present_gives_alpha_one():
    labels = torch.tensor([[X, SIL, X, SIL, 2, END], [X, X, SIL, X, X, X]])
    logits = torch.zeros(2, 6, V)
    logits[0, 3, 2] = 1.5  # the text row is not uniform
    ce_text = math.log(math.exp(1.5) + V - 1) - 1.5
    # gamma = 2: the uniform state rows weigh (1 - 1/V)^2 with alpha 1.
    want = (3 * (1 - 1 / V) ** 2 * math.log(V) + math.log(V) + ce_text) / 5
    assert stream_focal_loss(logits, labels, STATES).item() == pytest.approx(want, abs=1e-5)


def test_gamma_zero_with_one_state_class_is_plain_ce():
    labels = LABELS.clone()
    labels[labels == STB] = SIL
    labels[labels == RSP] = SIL
    logits = batch_logits()
    got = stream_focal_loss(logits, labels, STATES, gamma=0.0)
    want = F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=X)
    assert got.item() == pytest.approx(want.item(), abs=1e-5)


def test_num_items_divides_instead_of_the_labelled_count():
    logits = batch_logits()
    count = int((LABELS[:, 1:] != X).sum())
    base = stream_focal_loss(logits, LABELS, STATES)
    halved = stream_focal_loss(logits, LABELS, STATES, num_items=2 * count)
    as_tensor = stream_focal_loss(logits, LABELS, STATES, num_items=torch.tensor(2 * count))
    assert halved.item() == pytest.approx(base.item() / 2, abs=1e-6)
    assert as_tensor.item() == pytest.approx(base.item() / 2, abs=1e-6)
    want = direct_loss(logits, LABELS, STATES, num_items=37)
    assert stream_focal_loss(logits, LABELS, STATES, num_items=37).item() == pytest.approx(want.item(), abs=1e-5)


def test_gradient_flows_through_the_focal_factor():
    logits = batch_logits().requires_grad_(True)
    (got,) = torch.autograd.grad(stream_focal_loss(logits, LABELS, STATES), logits)
    ref_in = logits.detach().double().requires_grad_(True)
    (want,) = torch.autograd.grad(direct_loss(ref_in, LABELS, STATES), ref_in)
    (detached,) = torch.autograd.grad(direct_loss(ref_in, LABELS, STATES, detach=True), ref_in)
    assert (got.double() - want).abs().max().item() < 1e-5
    assert (want - detached).abs().max().item() > 1e-2


def test_p_t_is_the_full_vocabulary_probability():
    # Silence is well ahead of the other states but far behind a text token: full-vocabulary
    # p_t is small, the softmax over the three states is large.
    labels = torch.tensor([[X, SIL, X, RSP, X, SIL]])
    logits = torch.zeros(1, 6, V)
    for t in (0, 2, 4):
        logits[0, t, 1] = 6.0
        logits[0, t, SIL] = 3.0
    logits[0, 2, RSP] = 2.0
    full = direct_loss(logits, labels, STATES).item()
    three = direct_loss(logits, labels, STATES, three_way=True).item()
    assert abs(full - three) > 0.1
    assert stream_focal_loss(logits, labels, STATES).item() == pytest.approx(full, abs=1e-5)


def test_no_labelled_positions_gives_a_differentiable_zero():
    logits = batch_logits().requires_grad_(True)
    labels = torch.full_like(LABELS, X)
    for loss in (stream_focal_loss(logits, labels, STATES), stream_ce_loss(logits, labels)):
        assert loss.item() == 0.0 and torch.isfinite(loss)
        loss.backward()
        assert logits.grad is not None and torch.all(logits.grad == 0)


def test_ce_loss_is_torch_cross_entropy_on_the_shifted_tensors():
    logits = batch_logits()
    rows, targets = logits[:, :-1].reshape(-1, V), LABELS[:, 1:].reshape(-1)
    want = F.cross_entropy(rows, targets, ignore_index=X)
    assert stream_ce_loss(logits, LABELS).item() == pytest.approx(want.item(), abs=1e-5)
    summed = F.cross_entropy(rows, targets, ignore_index=X, reduction="sum")
    assert stream_ce_loss(logits, LABELS, num_items=40).item() == pytest.approx(summed.item() / 40, abs=1e-5)


def test_select_targets_then_loss_on_selected_matches_full_logits():
    logits = batch_logits()
    rows, targets = [], []
    for b in range(LABELS.shape[0]):
        positions, tgt = select_targets(LABELS[b : b + 1])
        want_pos = [t for t in range(LABELS.shape[1] - 1) if LABELS[b, t + 1] != X]
        assert positions.dtype == torch.long and positions.tolist() == want_pos
        assert tgt.tolist() == [int(LABELS[b, t + 1]) for t in want_pos]
        assert torch.equal(select_targets(LABELS[b])[0], positions)
        one = loss_on_selected(logits[b][positions][None], tgt, STATES)  # [1, N, V] as logits_to_keep gives
        assert one.item() == pytest.approx(
            stream_focal_loss(logits[b : b + 1], LABELS[b : b + 1], STATES).item(), abs=1e-5
        )
        rows.append(logits[b][positions])
        targets.append(tgt)
    both = loss_on_selected(torch.cat(rows), torch.cat(targets), STATES)
    assert both.item() == pytest.approx(stream_focal_loss(logits, LABELS, STATES).item(), abs=1e-5)
    ce = loss_on_selected(torch.cat(rows), torch.cat(targets), STATES, kind="ce")
    assert ce.item() == pytest.approx(stream_ce_loss(logits, LABELS).item(), abs=1e-5)


def test_bf16_logits_are_reduced_in_fp32():
    logits = batch_logits(torch.bfloat16)
    got = stream_focal_loss(logits, LABELS, STATES)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(stream_focal_loss(logits.float(), LABELS, STATES).item(), abs=1e-5)
    assert got.item() == pytest.approx(direct_loss(logits.float(), LABELS, STATES).item(), abs=1e-5)
    ce = stream_ce_loss(logits, LABELS)
    assert ce.dtype == torch.float32
    assert ce.item() == pytest.approx(stream_ce_loss(logits.float(), LABELS).item(), abs=1e-5)


def test_unknown_kind_raises():
    with pytest.raises(ValueError, match="kind"):
        loss_on_selected(torch.zeros(2, V), torch.tensor([1, SIL]), STATES, kind="mse")
