"""skorch glue: the network class the estimators train, its data loader and its schedule.

The estimators build a new :class:`PatchNet` at every ``fit`` from their current
parameters, so skorch's callbacks, history, device handling and progress output
apply as skorch documents them.
"""

from __future__ import annotations

import math

import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import LRScheduler
from torch.optim.lr_scheduler import CosineAnnealingLR

from .augment import DihedralCollate

#: CLIP's bound on a learnt log logit scale: the temperature stays >= 0.01.
MAX_LOGIT_SCALE = math.log(100.0)


def softmax(logits):
    """skorch ``predict_nonlinearity``: module-level so that fitted nets pickle."""
    return torch.softmax(logits.float(), dim=-1)


def train_loader(dataset, batch_size, augment=False, **kwargs):
    """skorch ``iterator_train``: a DataLoader over the training part only.

    skorch calls it after ``train_split``, so ``len(dataset)`` is what is really
    trained on. Batch norm cannot train on a batch of one, so the remainder is
    dropped when the training part is larger than a batch. With ``augment`` every
    training patch goes through a random symmetry of the square
    (:class:`~sklearn_mmlgnet.augment.DihedralCollate`); validation and prediction
    use skorch's other iterator and never see it.
    """
    kwargs.setdefault("drop_last", len(dataset) > batch_size)
    if augment:
        kwargs["collate_fn"] = DihedralCollate()
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, **kwargs)


def cosine_schedule(max_epochs):
    """skorch's LRScheduler annealing from the net's ``lr`` to 0 over ``max_epochs``.

    The learning rate of each epoch is recorded in the history as ``event_lr``.
    """
    return LRScheduler(policy=CosineAnnealingLR, T_max=max(1, int(max_epochs)))


class PatchNet(NeuralNetClassifier):
    """skorch's classifier, plus CLIP's bound on a learnt temperature and grouped splits.

    During a fit with groups, ``split_groups`` holds them for ``train_split``.

    As in CLIP, the learnt log logit scale is clamped in place after each optimizer
    step (temperature >= 0.01), not in ``forward``: a clamp in ``forward`` would
    zero its gradient once the parameter passed the bound and leave it stuck there.
    """

    split_groups = None

    def get_split_datasets(self, X, y=None, **fit_params):
        # The estimator's ``fit(..., groups=...)`` goes to ``train_split`` alone:
        # skorch passes its own fit parameters on to the module's forward.
        if self.split_groups is None or not self.train_split:
            return super().get_split_datasets(X, y, **fit_params)
        return self.train_split(self.get_dataset(X, y), y, groups=self.split_groups)

    def train_step(self, batch, **fit_params):
        step = super().train_step(batch, **fit_params)
        scale = getattr(self.module_, "logit_scale", None)
        if isinstance(scale, torch.nn.Parameter) and scale.requires_grad:
            with torch.no_grad():
                scale.clamp_(max=MAX_LOGIT_SCALE)
        return step
