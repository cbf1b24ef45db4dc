"""skorch glue: the network class the estimators train, its data loader and its schedule.

The estimators build a new :class:`PatchNet` at every ``fit`` from their current
parameters, so skorch's callbacks, history, device handling and progress output
apply as skorch documents them.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import LRScheduler
from skorch.dataset import unpack_data
from torch.optim.lr_scheduler import CosineAnnealingLR

from .augment import N_SYMMETRIES, DihedralCollate, dihedral

#: CLIP's bound on a learnt log logit scale: the temperature stays >= 0.01.
MAX_LOGIT_SCALE = math.log(100.0)

#: The estimators' ``precision``: the dtype the forward passes compute in (autocast).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def autocast(precision, device):
    """The context a forward pass of ``precision`` runs in: :func:`torch.autocast` to
    bfloat16 on ``device``'s type for ``"bf16"``, nothing for ``"fp32"``."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def _float(y):
    """Network outputs (a tensor, or a (final, [students]) pair) in float32."""
    if isinstance(y, torch.Tensor):
        return y.float()
    return type(y)(_float(v) for v in y)


def softmax(logits):
    """skorch ``predict_nonlinearity``: module-level so that fitted nets pickle."""
    return torch.softmax(logits.float(), dim=-1)


def train_loader(dataset, batch_size, augment=False, shuffle=False, drop_last=None, **kwargs):
    """skorch ``iterator_train``: a DataLoader over the training part only.

    skorch calls it after ``train_split``, so ``len(dataset)`` is what is really
    trained on. Batch norm cannot train on a batch of one, so the remainder is
    dropped when the training part is larger than a batch. With ``augment`` every
    training patch goes through a random symmetry of the square
    (:class:`BatchDihedralCollate`); validation and prediction
    use skorch's other iterator and never see it.

    Each batch is read from the arrays at once (one fancy-indexing copy, not one
    tensor per patch then a stack) and turned by one gather: the same batches and
    symmetries, drawn from torch's generator as before, at a fraction of the copies.
    """
    if drop_last is None:
        drop_last = len(dataset) > batch_size
    sampler = (torch.utils.data.RandomSampler(dataset) if shuffle
               else torch.utils.data.SequentialSampler(dataset))
    batches = torch.utils.data.BatchSampler(sampler, batch_size, drop_last)
    collate = BatchDihedralCollate() if augment else BatchCollate()
    return torch.utils.data.DataLoader(dataset, batch_size=None, sampler=batches,
                                       collate_fn=collate, **kwargs)


def _as_tensors(batch):
    return tuple(v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))
                 for v in batch)


class BatchCollate:
    """``collate_fn`` of :func:`train_loader` without augmentation: a whole batch
    ``(X, y)``, read from the arrays at once, as tensors."""

    def __call__(self, batch):
        return _as_tensors(batch)


class BatchDihedralCollate(DihedralCollate):
    """:class:`~sklearn_mmlgnet.augment.DihedralCollate` on a whole batch ``(X, y)`` read
    at once: each patch of ``X`` through a random symmetry of the square, by one gather.

    Draws as :func:`~sklearn_mmlgnet.augment.random_dihedral` does (one
    ``torch.randint`` per batch, from torch's generator), so a seeded fit trains on
    the same patches as with the per-patch loader.

    Examples
    --------
    >>> import numpy as np, torch
    >>> X = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 1, 3, 3)
    >>> Xb, yb = BatchDihedralCollate()((X, np.array([0, 1])))
    >>> Xb.shape, bool((Xb[:, :, 1, 1] == torch.as_tensor(X)[:, :, 1, 1]).all())
    (torch.Size([2, 1, 3, 3]), True)
    """

    def __call__(self, batch):
        X, y = _as_tensors(batch)
        n, P = len(X), X.shape[-1]
        if X.shape[-2] != P:
            raise ValueError(f"X must hold square patches; got {tuple(X.shape[-2:])}.")
        draws = torch.randint(N_SYMMETRIES, (n,))
        grid = torch.arange(P * P).reshape(P, P)
        perms = torch.stack([dihedral(grid, k).reshape(-1) for k in range(N_SYMMETRIES)])
        index = perms[draws].unsqueeze(1).expand(n, X[0].numel() // (P * P), P * P)
        return torch.gather(X.reshape(n, -1, P * P), 2, index).reshape(X.shape), y


def cosine_schedule(max_epochs):
    """skorch's LRScheduler annealing from the net's ``lr`` to 0 over ``max_epochs``.

    The learning rate of each epoch is recorded in the history as ``event_lr``.
    """
    return LRScheduler(policy=CosineAnnealingLR, T_max=max(1, int(max_epochs)))


class PatchNet(NeuralNetClassifier):
    """skorch's classifier, plus CLIP's bound on a learnt temperature, grouped splits and
    mixed precision (``precision="bf16"``: the forward passes under bfloat16 autocast).

    During a fit with groups, ``split_groups`` holds them for ``train_split``.

    As in CLIP, the learnt log logit scale is clamped in place after each optimizer
    step (temperature >= 0.01), not in ``forward``: a clamp in ``forward`` would
    zero its gradient once the parameter passed the bound and leave it stuck there.
    """

    split_groups = None

    def __init__(self, module, *args, precision="fp32", **kwargs):
        super().__init__(module, *args, **kwargs)
        self.precision = precision

    def get_split_datasets(self, X, y=None, **fit_params):
        # The estimator's ``fit(..., groups=...)`` goes to ``train_split`` alone:
        # skorch passes its own fit parameters on to the module's forward.
        if self.split_groups is None or not self.train_split:
            return super().get_split_datasets(X, y, **fit_params)
        return self.train_split(self.get_dataset(X, y), y, groups=self.split_groups)

    def train_step_single(self, batch, **fit_params):
        # skorch's step, the forward under autocast for precision="bf16" (weights, their
        # gradients and the optimizer stay float32); the loss and backward in float32.
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        with autocast(self.precision, self.device):
            y_pred = self.infer(Xi, **fit_params)
        loss = self.get_loss(_float(y_pred), yi, X=Xi, training=True)
        loss.backward()
        return {"loss": loss, "y_pred": y_pred}

    def evaluation_step(self, batch, training=False):
        with autocast(self.precision, self.device):
            return _float(super().evaluation_step(batch, training=training))

    def train_step(self, batch, **fit_params):
        step = super().train_step(batch, **fit_params)
        scale = getattr(self.module_, "logit_scale", None)
        if isinstance(scale, torch.nn.Parameter) and scale.requires_grad:
            with torch.no_grad():
                scale.clamp_(max=MAX_LOGIT_SCALE)
        return step
