"""The loss terms against hand computations on small tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sklearn_mmlgnet.losses import (
    ContrastiveCriterion,
    self_distillation_loss,
    symmetric_contrastive_loss,
)


def _log_softmax(v):
    v = np.asarray(v, float)
    return v - np.log(np.exp(v).sum())


def test_symmetric_loss_matches_hand_computation_with_multiple_positives():
    logits = torch.tensor([[2.0, 0.5, -1.0],
                           [1.0, 1.5, 0.0],
                           [0.2, 0.1, 3.0],
                           [1.5, -0.5, 0.5]])
    y = torch.tensor([0, 1, 2, 0])  # class 0 has two positives
    L = logits.numpy()
    i2t = -np.mean([_log_softmax(L[i])[y[i]] for i in range(4)])
    # text->image: each class present is a query over the 4 samples; target uniform over its samples
    t2i_terms = []
    for c in range(3):
        pos = np.flatnonzero(y.numpy() == c)
        t2i_terms.append(-np.mean(_log_softmax(L[:, c])[pos]))
    expected = 0.5 * (i2t + np.mean(t2i_terms))
    assert float(symmetric_contrastive_loss(logits, y)) == pytest.approx(expected, rel=1e-6)


def test_symmetric_loss_skips_classes_absent_from_the_batch():
    logits = torch.tensor([[2.0, 0.0, 5.0], [0.0, 2.0, 5.0]])
    y = torch.tensor([0, 1])
    L = logits.numpy()
    i2t = -np.mean([_log_softmax(L[0])[0], _log_softmax(L[1])[1]])
    t2i = -np.mean([_log_softmax(L[:, 0])[0], _log_softmax(L[:, 1])[1]])
    assert float(symmetric_contrastive_loss(logits, y)) == pytest.approx(0.5 * (i2t + t2i), rel=1e-6)


def test_image_to_text_is_plain_cross_entropy():
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0, 1])
    crit = ContrastiveCriterion(loss="image_to_text")
    assert float(crit(logits, y)) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)))


def test_self_distillation_loss_matches_the_formula():
    T, a, b = 3.0, 0.8, 0.1
    final = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.0, 0.0]])
    aux = [torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.0, 2.0]]),
           torch.tensor([[0.3, 0.2, 0.1], [1.0, -1.0, 0.0]])]
    y = torch.tensor([0, 1])
    teacher = np.exp(_log_softmax_rows(final.numpy() / T))
    expected = 0.0
    for s in aux:
        S = s.numpy()
        ce = -np.mean([_log_softmax(S[i])[y[i]] for i in range(2)])
        log_student = _log_softmax_rows(S / T)
        kl = np.sum(teacher * (np.log(teacher) - log_student)) / 2  # batchmean
        expected += (a * ce + b * kl * T * T) / len(aux)  # the students' mean
    got = self_distillation_loss(final, aux, y, temperature=T, aux_ce_weight=a, distill_weight=b)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def _log_softmax_rows(M):
    return np.stack([_log_softmax(r) for r in M])


def test_no_gradient_flows_into_the_teacher_through_the_kl_term():
    final = torch.tensor([[2.0, 0.0, -1.0]], requires_grad=True)
    student = torch.tensor([[0.0, 1.0, 0.0]], requires_grad=True)
    y = torch.tensor([0])
    loss = self_distillation_loss(final, [student], y, aux_ce_weight=0.0, distill_weight=1.0)
    loss.backward()
    assert final.grad is None or torch.all(final.grad == 0)
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_criterion_adds_distillation_only_when_enabled():
    final = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    aux = [torch.tensor([[0.0, 1.0], [1.0, 0.0]])]
    y = torch.tensor([0, 1])
    plain = ContrastiveCriterion("cross_entropy", distill=False)((final, aux), y)
    sd = ContrastiveCriterion("cross_entropy", distill=True)((final, aux), y)
    extra = self_distillation_loss(final, aux, y)
    assert float(sd) == pytest.approx(float(plain) + float(extra), rel=1e-6)
    assert not math.isclose(float(sd), float(plain))
