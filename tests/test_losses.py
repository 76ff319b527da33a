"""distill.losses against hand computations on tiny inputs."""
from __future__ import annotations

import math

import pytest
import torch

from distill.losses import (
    action_loss,
    discrete_action_loss,
    info_nce,
    position_loss,
    reasoning_weight,
    yaw_loss,
)

F64 = torch.float64
E = math.e


def close(got: torch.Tensor, want: float, tol: float = 1e-12):
    assert got.dim() == 0, got.shape
    assert abs(got.item() - want) <= tol, (got.item(), want)


def test_position_loss_by_hand():
    pred = torch.tensor([[[0.5, -2.0], [0.0, 3.0]]], dtype=F64, requires_grad=True)  # (1, 2, 2)
    # |d| < 1: 0.5 d^2; else |d| - 0.5:  0.125, 1.5, 0, 2.5 -> mean 4.125 / 4
    loss = position_loss(pred, torch.zeros(1, 2, 2, dtype=F64))
    close(loss, 4.125 / 4)
    loss.backward()  # d/dpred: d (|d| < 1) or sign(d), / 4 elements
    torch.testing.assert_close(pred.grad, torch.tensor([[[0.5, -1.0], [0.0, 1.0]]], dtype=F64) / 4)
    with pytest.raises(ValueError, match="differ in shape"):
        position_loss(torch.zeros(2, 3, 2), torch.zeros(2, 4, 2))
    with pytest.raises(ValueError, match="last dim of 2"):
        position_loss(torch.zeros(2, 3), torch.zeros(2, 3))


def test_yaw_loss_by_hand():
    pred = torch.tensor([[0.0, math.pi / 2, 2 * math.pi + 0.3, math.pi]], dtype=F64)
    target = torch.tensor([[0.0, 0.0, 0.3, 0.0]], dtype=F64)
    # (sin p - sin t)^2 + (cos p - cos t)^2: 0, 1 + 1, 0 (2 pi periodic), 0 + 4
    close(yaw_loss(pred, target), (0 + 2 + 0 + 4) / 4)


def test_action_loss_by_hand():
    pred = torch.tensor([[1.0, 2.0], [0.0, -1.0]], dtype=F64)
    close(action_loss(pred, torch.zeros(2, 2, dtype=F64)), (1 + 4 + 0 + 1) / 4)


def test_discrete_action_loss_by_hand():
    # One step (T = 1), two actions, K = 2 bins.
    logits = torch.tensor([[[[0.0, 0.0], [math.log(3.0), 0.0]]]], dtype=F64, requires_grad=True)  # (1, 1, 2, 2)
    target = torch.tensor([[[0, 1]]])
    eps = 0.1
    # accel: p = (1/2, 1/2), -log p_y = log 2 and the smoothing term is log 2 too;
    # curvature: p = (3/4, 1/4), y = 1: (1 - eps) log 4 + eps / 2 (log 4/3 + log 4).
    first = math.log(2)
    second = (1 - eps) * math.log(4) + eps / 2 * (math.log(4 / 3) + math.log(4))
    loss = discrete_action_loss(logits, target, label_smoothing=eps)
    close(loss, (first + second) / 2)
    close(discrete_action_loss(logits, target, label_smoothing=0.0), (math.log(2) + math.log(4)) / 2)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match="do not match"):
        discrete_action_loss(torch.zeros(1, 3, 2, 5), torch.zeros(1, 4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="torch.long"):
        discrete_action_loss(torch.zeros(1, 3, 2, 5), torch.zeros(1, 3, 2))


# info_nce on 2-D unit vectors: students s0 = (1, 0), s1 = (0, 1) (given unnormalized), teachers
# t0 = (1, 0), t1 = (0, 1) and an extra negative t2 = (-1, 0). With temperature 1 the logits
# are the cosines: row 0 = (1, 0, -1), row 1 = (0, 1, 0).
STUDENT = torch.tensor([[2.0, 0.0], [0.0, 0.5]], dtype=F64)
TEACHER = torch.tensor([[1.0, 0.0], [0.0, 3.0], [-1.0, 0.0]], dtype=F64)
IDS = torch.tensor([5, 5, 7])  # t0 and t1 are the same sentence


@pytest.mark.parametrize("symmetric,ids,want", [
    (False, None, ((math.log(E + 1 + 1 / E) - 1) + (math.log(1 + E + 1) - 1)) / 2),
    # row 0 drops column 1, row 1 drops column 0
    (False, IDS, ((math.log(E + 1 / E) - 1) + (math.log(E + 1) - 1)) / 2),
    # teacher -> student over t0, t1: rows (1, 0) and (0, 1), each log(e + 1) - 1
    (True, None, (((math.log(E + 1 + 1 / E) - 1) + (math.log(E + 2) - 1)) / 2 + (math.log(E + 1) - 1)) / 2),
    # with ids the teacher rows keep only their positive: 0 each
    (True, IDS, (((math.log(E + 1 / E) - 1) + (math.log(E + 1) - 1)) / 2 + 0.0) / 2),
])
def test_info_nce_by_hand(symmetric, ids, want):
    student = STUDENT.clone().requires_grad_()
    loss = info_nce(student, TEACHER, temperature=1.0, symmetric=symmetric, teacher_ids=ids)
    close(loss, want)
    loss.backward()
    assert torch.isfinite(student.grad).all()


def test_info_nce_temperature_scales_the_logits():
    # temperature 0.5 doubles every logit: row 0 = (2, 0, -2), row 1 = (0, 2, 0)
    want = ((math.log(E**2 + 1 + E**-2) - 2) + (math.log(2 + E**2) - 2)) / 2
    close(info_nce(STUDENT, TEACHER, temperature=0.5), want)


def brute_force_info_nce(student, teacher, temperature, symmetric, ids):
    """The definition, one row and one column at a time."""
    s = [r / r.norm() for r in student]
    t = [r / r.norm() for r in teacher]
    B, N = len(s), len(t)

    def direction(rows, cols, skip):
        total = 0.0
        for i in range(len(rows)):
            terms = [float(rows[i] @ cols[j]) / temperature for j in range(len(cols)) if j == i or not skip(i, j)]
            total += math.log(sum(math.exp(x) for x in terms)) - float(rows[i] @ cols[i]) / temperature
        return total / len(rows)

    def same(i, j):
        return ids is not None and int(ids[i]) == int(ids[j])

    loss = direction(s, t, same)
    if symmetric:
        loss = (loss + direction(t[:B], s, same)) / 2
    assert N >= B
    return loss


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("with_ids", [False, True])
def test_info_nce_matches_brute_force(symmetric, with_ids):
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(5, 8, generator=g, dtype=F64), torch.randn(9, 8, generator=g, dtype=F64)
    ids = torch.tensor([0, 1, 0, 2, 1, 3, 0, 4, 2]) if with_ids else None
    got = info_nce(student, teacher, temperature=0.2, symmetric=symmetric, teacher_ids=ids)
    close(got, brute_force_info_nce(student, teacher, 0.2, symmetric, ids), tol=1e-10)


def test_info_nce_all_rows_one_sentence_float32_gradients():
    # Every other row excluded: each row keeps only its positive, the loss is exactly 0.
    student = torch.randn(4, 16, requires_grad=True)
    teacher = torch.randn(6, 16, requires_grad=True)
    loss = info_nce(student, teacher, symmetric=True, teacher_ids=torch.zeros(6, dtype=torch.long))
    assert loss.dtype == torch.float32 and loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(student.grad).all() and torch.isfinite(teacher.grad).all()


def test_info_nce_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same D"):
        info_nce(torch.zeros(2, 4), torch.zeros(3, 5))
    with pytest.raises(ValueError, match="same D"):
        info_nce(torch.zeros(2, 3, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="N=2 < B=3"):
        info_nce(torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="teacher_ids"):
        info_nce(torch.zeros(2, 4), torch.zeros(3, 4), teacher_ids=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="teacher_ids"):
        info_nce(torch.zeros(2, 4), torch.zeros(3, 4), teacher_ids=torch.zeros(3))
    with pytest.raises(ValueError, match="temperature"):
        info_nce(torch.zeros(2, 4), torch.zeros(3, 4), temperature=0.0)


def test_reasoning_weight_warmup():
    assert reasoning_weight(0.0, 0.5, 2.0) == 0.0
    assert reasoning_weight(0.5, 0.5, 2.0) == 0.125
    assert reasoning_weight(1.0, 0.5, 2.0) == 0.25
    assert reasoning_weight(2.0, 0.5, 2.0) == 0.5
    assert reasoning_weight(7.3, 0.5, 2.0) == 0.5
    assert reasoning_weight(0.0, 0.5, 0.0) == 0.5  # no warmup: full weight at once
    with pytest.raises(ValueError, match="warmup_epochs"):
        reasoning_weight(1.0, 0.5, -1.0)
