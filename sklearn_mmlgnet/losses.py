"""Training losses: symmetric multi-positive contrastive loss and self-distillation.

All losses take ``logits`` of shape (batch, n_classes) where
``logits[i, c] = cos(visual_i, text_c) / temperature``, and integer targets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._validation import check_real


def symmetric_contrastive_loss(logits, y, label_smoothing=0.0, class_weight=None):
    """Image->text plus text->image loss with every same-class sample a positive.

    The image->text direction is the usual cross-entropy over classes. In the
    text->image direction each class present in the batch is a query over the batch's
    samples; since a batch usually holds several samples of a class, the target is
    uniform over all of them (multi-positive), not CLIP's ``arange(batch)``. The two
    directions are averaged.

    Parameters
    ----------
    logits : Tensor of shape (n_samples, n_classes)
    y : LongTensor of shape (n_samples,)
    label_smoothing : float, default=0.0
        Smoothing ``eps`` of the image->text cross-entropy (its target is
        ``(1 - eps) * onehot + eps / n_classes``); the text->image targets are
        already spread over every positive and are left as they are.
    class_weight : Tensor of shape (n_classes,), optional
        Weights of the image->text cross-entropy per target class (a weighted mean,
        as :func:`torch.nn.functional.cross_entropy`). The text->image direction is
        already one term per class present in the batch, whatever its count.

    Returns
    -------
    loss : scalar Tensor

    Examples
    --------
    >>> import torch
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    >>> y = torch.tensor([0, 1, 0])
    >>> round(float(symmetric_contrastive_loss(logits, y)), 4)
    0.313
    """
    i2t = F.cross_entropy(logits, y, weight=class_weight, label_smoothing=label_smoothing)
    onehot = F.one_hot(y, logits.shape[1]).to(logits.dtype)  # (n, C)
    present = onehot.sum(0) > 0
    # Rows: classes in the batch; columns: samples. Target: uniform over positives.
    t2i_logits = logits.t()[present]
    targets = onehot.t()[present]
    targets = targets / targets.sum(1, keepdim=True)
    t2i = F.cross_entropy(t2i_logits, targets)
    return 0.5 * (i2t + t2i)


def self_distillation_loss(final_logits, aux_logits, y, *, temperature=5.0, aux_ce_weight=0.8,
                           distill_weight=0.1, label_smoothing=0.0):
    """The SDHSI-Net auxiliary terms: ``mean_k [a * CE(aux_k) + b * KL(p || q_k) * T^2]``.

    ``p = softmax(final / T)`` is the teacher, ``q_k = softmax(aux_k / T)`` a student:
    the KL is taken from the student to the teacher, ``KL(teacher || student) =
    sum p (log p - log q_k)`` (what :func:`torch.nn.functional.kl_div` computes from
    the student's log-probabilities and the teacher's probabilities), averaged over
    the batch. The final head is detached, so the KL term moves only the students.
    The main loss of the final head is added by the caller.

    Parameters
    ----------
    final_logits : Tensor of shape (n_samples, n_classes)
    aux_logits : list of Tensor of shape (n_samples, n_classes)
    y : LongTensor of shape (n_samples,)
    temperature : float, default=5.0
        ``T > 0``.
    aux_ce_weight, distill_weight : float, default=0.8, 0.1
        ``a >= 0`` and ``b >= 0``.
    label_smoothing : float, default=0.0
        Smoothing of the students' cross-entropy terms (as in the main loss).

    The students' terms are averaged, so together they weigh ``a + b * T^2``
    against the final head's loss whatever their number (the SDHSI paper sums them).

    Examples
    --------
    >>> import torch
    >>> final = torch.tensor([[3.0, 0.0]])
    >>> aux = [torch.tensor([[3.0, 0.0]])]
    >>> y = torch.tensor([0])
    >>> # identical student and teacher: KL is 0, only 0.8 * CE remains
    >>> round(float(self_distillation_loss(final, aux, y)), 4)
    0.0389
    >>> # two students averaged weigh as one
    >>> round(float(self_distillation_loss(final, aux * 2, y)), 4)
    0.0389
    """
    T = float(temperature)
    teacher = F.softmax(final_logits.detach() / T, dim=1)
    total = final_logits.new_zeros(())
    for logits in aux_logits:
        ce = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        kl = F.kl_div(F.log_softmax(logits / T, dim=1), teacher, reduction="batchmean")
        total = total + aux_ce_weight * ce + distill_weight * kl * T * T
    return total / max(1, len(aux_logits))


class ContrastiveCriterion(nn.Module):
    """skorch criterion: the language-guided loss, plus self-distillation when enabled.

    Parameters
    ----------
    loss : {"symmetric", "image_to_text", "cross_entropy"}
        ``"symmetric"`` is MMLGNet's bi-directional loss, ``"image_to_text"`` the
        ablation with one direction (plain cross-entropy over class similarities).
    distill : bool
        Whether the module's output carries auxiliary logits to distil.
    distill_temperature, aux_ce_weight, distill_weight : float
        See :func:`self_distillation_loss`.
    label_smoothing : float, default=0.0
        Smoothing ``eps`` in [0, 1) of every cross-entropy term against the labels:
        the whole loss for ``"image_to_text"`` and ``"cross_entropy"``, the
        image->text term of ``"symmetric"``, and the students' terms.
    class_weight : array-like of shape (n_classes,), optional
        Per-class weights of the main loss's cross-entropy against the labels (the
        image->text term of ``"symmetric"``, the whole loss otherwise); the students'
        terms are not weighted. A buffer: it follows the criterion's device.
    """

    def __init__(self, loss="symmetric", distill=False, distill_temperature=5.0,
                 aux_ce_weight=0.8, distill_weight=0.1, label_smoothing=0.0, class_weight=None):
        super().__init__()
        check_real(distill_temperature, "criterion__distill_temperature", low=0, low_inclusive=False)
        check_real(aux_ce_weight, "criterion__aux_ce_weight", low=0)
        check_real(distill_weight, "criterion__distill_weight", low=0)
        self.register_buffer(
            "class_weight", None if class_weight is None
            else torch.as_tensor(class_weight, dtype=torch.float32))
        self.loss = loss
        self.distill = distill
        self.distill_temperature = distill_temperature
        self.aux_ce_weight = aux_ce_weight
        self.distill_weight = distill_weight
        self.label_smoothing = label_smoothing

    def forward(self, y_pred, y):
        aux = []
        if isinstance(y_pred, tuple):
            y_pred, aux = y_pred
        if self.loss == "symmetric":
            main = symmetric_contrastive_loss(y_pred, y, label_smoothing=self.label_smoothing,
                                              class_weight=self.class_weight)
        else:  # "image_to_text" and "cross_entropy" are both CE over class logits
            main = F.cross_entropy(y_pred, y, weight=self.class_weight,
                                   label_smoothing=self.label_smoothing)
        if self.distill and aux:
            main = main + self_distillation_loss(
                y_pred, aux, y, temperature=self.distill_temperature,
                aux_ce_weight=self.aux_ce_weight, distill_weight=self.distill_weight,
                label_smoothing=self.label_smoothing)
        return main
