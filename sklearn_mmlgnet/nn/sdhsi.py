"""SDHSI-Net's spectral-spatial network, its patch forward and its dense forward."""

from __future__ import annotations

import numbers
from types import SimpleNamespace

import torch
from torch import nn

from .._validation import check_channels, check_positive_int, check_real
from ._ops import (
    box_and_centre,
    check_dense_input,
    check_flag,
    check_heads,
    compute_dtype,
    conv_stage,
    dense_plan,
    logit_rows,
    pad_to_receptive_field,
    per_pixel,
    pool,
    rows_to_map,
)
from .layers import mean_of_heads, select_heads

__all__ = ["SDHSINet"]


def _check_student_stages(student_stages, n_stages, n_3d):
    if student_stages is None:
        return tuple(range(1, n_stages + 1))
    try:
        stages = tuple(student_stages)
    except TypeError:
        stages = None
    if not (stages and all(isinstance(k, numbers.Integral) and not isinstance(k, bool)
                           and 1 <= k <= n_stages for k in stages)
            and len(set(stages)) == len(stages)):
        raise ValueError(
            f"module__student_stages must be None or distinct stage numbers in 1..{n_stages} "
            f"({n_3d} 3-D stages, then the 2-D one); got {student_stages!r}.")
    return tuple(int(k) for k in stages)


class SDHSINet(nn.Module):
    """HybridSN-like spectral-spatial CNN with student heads (SDHSI-Net).

    3-D convolutions over (band, row, col), then a 2-D convolution over the stacked
    spectral feature maps, then a fully connected head. A student head reads the
    pooled output of each of the ``student_stages`` (by default every convolutional
    stage); they are the students of self-distillation. Each student has a
    bottleneck of its own (as in "Be Your Own Teacher", Zhang et al. 2019): it reads
    the stage's whole (channel x band) map, pooled, through a hidden layer, so the
    shared stage is not pushed to make its features linearly separable.
    The convolutions are valid in space (no zero padding), as in
    :class:`~sklearn_mmlgnet.nn.ConvEncoder`, so the dense forward
    (:meth:`dense_logits`) equals the patch forward for patches of at least
    :attr:`receptive_field` pixels (``2 * (n_3d_stages + 1) + 1``, 9 by default).

    Arguments are checked here; errors name them as
    :class:`~sklearn_mmlgnet.SDHSIClassifier` routes them (``module__<name>``).

    Parameters
    ----------
    n_bands : int
        Bands of the input patches.
    n_classes : int
        Number of classes.
    conv3d_channels : tuple of int, default=(8, 16, 32)
        Widths of the 3-D stages.
    spectral_kernels : tuple of int, default=(7, 5, 3)
        Spectral extent of each 3-D stage's kernel, one per stage (shrunk to the
        bands left when there are few).
    conv2d_channels : int, default=64
        Width of the 2-D stage.
    hidden : int, default=256
        Width of the fully connected head's hidden layer.
    dropout : float, default=0.4
        Dropout in the fully connected head.
    aux_heads : bool, default=True
        Whether the student heads are built (self-distillation).
    student_stages : tuple of int, optional
        The stages (1-based, the 2-D stage last) a student reads; default all.
    student_hidden : int, default=64
        Width of each student's hidden layer.

    Attributes
    ----------
    in_channels : int
        ``n_bands``.
    receptive_field : int
        Smallest patch side read without padding.

    Examples
    --------
    >>> import torch
    >>> net = SDHSINet(n_bands=30, n_classes=4).eval()
    >>> net(torch.zeros(2, 30, 9, 9)).shape
    torch.Size([2, 4])
    >>> final, students = net(torch.zeros(2, 30, 9, 9), heads="all")
    >>> len(students)
    4
    """

    def __init__(self, n_bands, n_classes, conv3d_channels=(8, 16, 32), spectral_kernels=(7, 5, 3),
                 conv2d_channels=64, hidden=256, dropout=0.4, aux_heads=True,
                 student_stages=None, student_hidden=64):
        super().__init__()
        n_bands = check_positive_int(n_bands, "module__n_bands")
        n_classes = check_positive_int(n_classes, "module__n_classes")
        conv3d_channels = check_channels(conv3d_channels, "module__conv3d_channels")
        spectral_kernels = check_channels(spectral_kernels, "module__spectral_kernels")
        if len(spectral_kernels) != len(conv3d_channels):
            raise ValueError(
                f"module__spectral_kernels has {len(spectral_kernels)} entries but "
                f"module__conv3d_channels has {len(conv3d_channels)} stages; give one spectral "
                f"kernel per 3-D stage; got {spectral_kernels!r}.")
        conv2d_channels = check_positive_int(conv2d_channels, "module__conv2d_channels")
        hidden = check_positive_int(hidden, "module__hidden")
        dropout = check_real(dropout, "module__dropout", low=0, high=1)
        aux_heads = check_flag(aux_heads, "module__aux_heads")
        n_stages = len(conv3d_channels) + 1
        self.student_stages = _check_student_stages(student_stages, n_stages, n_stages - 1)
        self.student_hidden = check_positive_int(student_hidden, "module__student_hidden")

        self.in_channels = n_bands
        stages3d, prev, depth, depths = [], 1, n_bands, []
        for width, k in zip(conv3d_channels, spectral_kernels):
            k = max(1, min(k, depth))  # few bands: shrink the spectral kernel, never fail
            stages3d.append(nn.Sequential(
                nn.Conv3d(prev, width, kernel_size=(k, 3, 3), padding=0, bias=False),
                nn.BatchNorm3d(width), nn.ReLU(inplace=True)))
            prev, depth = width, depth - k + 1
            depths.append(depth)
        self.stages3d = nn.ModuleList(stages3d)
        self.conv2d = nn.Sequential(
            nn.Conv2d(prev * depth, conv2d_channels, kernel_size=3, padding=0, bias=False),
            nn.BatchNorm2d(conv2d_channels), nn.ReLU(inplace=True))
        # Valid 3 x 3 convolutions in space (as HybridSN): see ConvEncoder.
        self.receptive_field = 2 * n_stages + 1
        self.fc = nn.Sequential(nn.Linear(2 * conv2d_channels, hidden), nn.ReLU(inplace=True),
                                nn.Dropout(dropout), nn.Linear(hidden, n_classes))
        # A student reads the whole flattened (channel x band) map of its stage, mean and
        # centre; no student is built (or run) without aux_heads.
        widths = [w * d for w, d in zip(conv3d_channels, depths)] + [conv2d_channels]
        self.aux = nn.ModuleList(
            [self._student(2 * widths[k - 1], n_classes) for k in self.student_stages]
            if aux_heads else [])

    def _student(self, in_features, n_classes):
        return nn.Sequential(nn.Linear(in_features, self.student_hidden),
                             nn.BatchNorm1d(self.student_hidden), nn.ReLU(inplace=True),
                             nn.Linear(self.student_hidden, n_classes))

    def forward(self, X, heads="final"):
        """Logits of a batch of patches.

        Parameters
        ----------
        X : Tensor of shape (n, n_bands, P, P)
            Patches narrower than :attr:`receptive_field` are replicate-padded to it.
        heads : {"final", "mean", "all"}, default="final"
            As in :meth:`MMLGNetModule.forward <sklearn_mmlgnet.nn.MMLGNetModule.forward>`:
            in training mode with students always ``(final, [students])``.

        Returns
        -------
        Tensor of shape (n, n_classes), or a (final, list of students) pair
        """
        heads = check_heads(heads)
        students = bool(self.aux) and (self.training or heads != "final")
        x = pad_to_receptive_field(X, self.receptive_field).unsqueeze(1)
        pooled = {}
        for k, stage in enumerate(self.stages3d, start=1):
            x = stage(x)
            if students and k in self.student_stages:
                pooled[k] = pool(x.flatten(1, 2))
        x = self.conv2d(x.flatten(1, 2))
        feats = pool(x)
        logits = self.fc(feats)
        aux = []
        if students:
            pooled[len(self.stages3d) + 1] = feats
            aux = [head(pooled[k]) for head, k in zip(self.aux, self.student_stages)]
        return select_heads(logits, aux, heads, self.training)

    def dense_floats_per_pixel(self):
        """Rough float32 values one tile pixel costs in :meth:`dense_logits`, input excluded.

        Sizes the tiles of dense prediction (:mod:`sklearn_mmlgnet.dense`).
        """
        total, depth = 0, self.in_channels
        for stage in self.stages3d:
            conv = stage[0]
            depth = depth - conv.kernel_size[0] + 1
            total += 2 * conv.out_channels * depth  # the map and its flattened copy
        return total + 4 * self.conv2d[0].out_channels

    @torch.inference_mode()
    def dense_logits(self, x, patch_size, heads="final", *, dtype=None):
        """Eval-mode logits of every P x P patch of a tile, the convolutions run once.

        As :meth:`MMLGNetModule.dense_logits
        <sklearn_mmlgnet.nn.MMLGNetModule.dense_logits>`: the 3-D and 2-D
        convolutions (batch norm folded in) run once over the tile, and each pixel's
        pooled features (box mean and centre) feed the fully connected head and the
        students. Equals ``forward(patches, heads)`` in eval mode on the tile's
        patches, up to float rounding; the module is not changed.

        Parameters
        ----------
        x : Tensor of shape (N, n_bands, R + P - 1, W + P - 1)
            Tiles with their halo of ``P // 2`` pixels on every side.
        patch_size : int
            The patch side P: odd, at least :attr:`receptive_field`.
        heads : {"final", "mean", "all"}, default="final"
            As in :meth:`forward` (eval mode).
        dtype : torch.dtype, optional
            As in :meth:`MMLGNetModule.dense_logits
            <sklearn_mmlgnet.nn.MMLGNetModule.dense_logits>`.

        Returns
        -------
        Tensor of shape (N, n_classes, R, W), or a (final, list of students) pair

        Examples
        --------
        >>> import torch
        >>> net = SDHSINet(n_bands=6, n_classes=3, conv3d_channels=(4,), spectral_kernels=(3,))
        >>> net.dense_logits(torch.randn(1, 6, 9, 8), patch_size=5, heads="mean").shape
        torch.Size([1, 3, 5, 4])
        """
        heads = check_heads(heads)
        P = check_dense_input(x, patch_size, self)
        dtype = compute_dtype(dtype, x.device)
        N, R, W = x.shape[0], x.shape[2] - P + 1, x.shape[3] - P + 1
        with torch.autocast(x.device.type, enabled=False):  # the dtypes are chosen here
            w = dense_plan(self, dtype, lambda: self._dense_weights(dtype))
            students = dict(zip(self.student_stages, w.students)) if heads != "final" else {}
            x = x.to(dtype).unsqueeze(1)
            aux = {}
            for k, stage in enumerate(w.stages3d, start=1):
                x = stage(x)
                if k in students:  # what forward pools for this stage's student
                    aux[k] = per_pixel(students[k], box_and_centre(x.flatten(1, 2), P - 2 * k),
                                       dtype)
            x = w.conv2d(x.flatten(1, 2))
            n_stages = len(w.stages3d) + 1
            maps = box_and_centre(x, P - 2 * n_stages)
            del x
            logits = per_pixel(w.fc, maps, dtype)
            if n_stages in students:
                aux[n_stages] = per_pixel(students[n_stages], maps, dtype)
        aux = [aux[k] for k in self.student_stages if k in aux]
        if heads == "final":
            return rows_to_map(logits, N, R, W)
        if heads == "mean":
            return rows_to_map(mean_of_heads([logits] + aux), N, R, W)
        return rows_to_map(logits, N, R, W), [rows_to_map(a, N, R, W) for a in aux]

    def _dense_weights(self, dtype):
        """The stages and heads :meth:`dense_logits` runs, in ``dtype``, batch norm folded
        in; fc = (Linear, ReLU, Dropout, Linear): the dropout is the identity."""
        return SimpleNamespace(
            stages3d=[conv_stage(stage, dtype) for stage in self.stages3d],
            conv2d=conv_stage(self.conv2d, dtype), fc=logit_rows(self.fc, dtype),
            students=[logit_rows(student, dtype) for student in self.aux])
