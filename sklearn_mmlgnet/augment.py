"""Augmentation of patches by the eight symmetries of the square.

A land-cover label belongs to a patch's centre pixel and does not depend on which
way the sensor faced, so flipping a patch or rotating it by a multiple of 90
degrees keeps its label. :class:`DihedralCollate` applies one such symmetry,
drawn at random per patch, to every training batch; the estimators use it as the
training DataLoader's ``collate_fn`` when ``augment=True``. At prediction,
``test_time_augment=True`` averages the class probabilities of all eight
symmetries of each patch instead (:func:`dihedral` and :func:`inverse_dihedral`).

:class:`MixupCollate` blends each training batch with a shuffled copy of itself
(mixup; ``mixup > 0`` in the estimators). For reflectance the blend of two patches
is the linear mixture of their surfaces, the model hyperspectral unmixing assumes.
"""

from __future__ import annotations

import torch
from torch.utils.data import default_collate

#: Number of symmetries of the square (the dihedral group D4).
N_SYMMETRIES = 8


def dihedral(X, k):
    """Symmetry ``k`` (0-7) of the square applied to the last two axes of ``X``.

    ``k % 4`` quarter turns, after a left-right flip when ``k >= 4``; ``k = 0``
    is the identity. Every axis before the last two (batch, bands) is kept, so
    all bands of a patch (HSI and LiDAR) move together and the centre pixel stays
    the centre pixel.

    Parameters
    ----------
    X : Tensor of shape (..., P, P)
    k : int in [0, 8)

    Returns
    -------
    Tensor of shape (..., P, P)

    Examples
    --------
    >>> import torch
    >>> x = torch.arange(4).reshape(2, 2)
    >>> dihedral(x, 1).tolist()  # a quarter turn counter-clockwise
    [[1, 3], [0, 2]]
    >>> dihedral(x, 4).tolist()  # a left-right flip
    [[1, 0], [3, 2]]
    """
    k = int(k)
    if not 0 <= k < N_SYMMETRIES:
        raise ValueError(f"k must be an int in [0, {N_SYMMETRIES}); got {k}.")
    if k >= 4:
        X = torch.flip(X, dims=(-1,))
    return torch.rot90(X, k % 4, dims=(-2, -1))


def inverse_dihedral(X, k):
    """The inverse of :func:`dihedral`: ``inverse_dihedral(dihedral(X, k), k)`` is ``X``.

    Dense prediction runs the network on a transformed scene and maps its output
    back to the scene's own orientation with it.

    Examples
    --------
    >>> import torch
    >>> x = torch.arange(6).reshape(2, 3)
    >>> all(torch.equal(inverse_dihedral(dihedral(x, k), k), x) for k in range(8))
    True
    """
    k = int(k)
    if not 0 <= k < N_SYMMETRIES:
        raise ValueError(f"k must be an int in [0, {N_SYMMETRIES}); got {k}.")
    X = torch.rot90(X, -(k % 4), dims=(-2, -1))
    return torch.flip(X, dims=(-1,)) if k >= 4 else X


def random_dihedral(X, generator=None):
    """Each patch of ``X`` through one of the 8 symmetries of the square, drawn at random.

    Parameters
    ----------
    X : Tensor of shape (n_samples, ..., P, P)
        Square patches.
    generator : torch.Generator, optional
        Source of the draws; ``None`` uses torch's global generator (which the
        estimators seed from ``random_state``).

    Returns
    -------
    Tensor of the shape of ``X``

    Examples
    --------
    >>> import torch
    >>> X = torch.arange(2 * 3 * 3).reshape(2, 1, 3, 3)
    >>> out = random_dihedral(X, generator=torch.Generator().manual_seed(0))
    >>> out.shape == X.shape and bool((out[:, :, 1, 1] == X[:, :, 1, 1]).all())
    True
    """
    if X.shape[-1] != X.shape[-2]:
        raise ValueError(f"X must hold square patches; got {tuple(X.shape[-2:])}.")
    draws = torch.randint(N_SYMMETRIES, (len(X),), generator=generator)
    out = torch.empty_like(X)
    for k in torch.unique(draws).tolist():
        idx = torch.nonzero(draws == k).flatten()
        out[idx] = dihedral(X[idx], k)
    return out


class DihedralCollate:
    """``collate_fn`` for a training DataLoader: batch as usual, then a random symmetry per patch.

    Items are ``(X_i, y_i)`` pairs, as a skorch dataset yields them; only ``X`` is
    transformed, so labels are unchanged.

    Examples
    --------
    >>> import torch
    >>> items = [(torch.ones(2, 3, 3), torch.tensor(1)), (torch.zeros(2, 3, 3), torch.tensor(0))]
    >>> X, y = DihedralCollate()(items)
    >>> X.shape, y.tolist()
    (torch.Size([2, 2, 3, 3]), [1, 0])
    """

    def __call__(self, items):
        X, y = default_collate(items)
        return random_dihedral(X), y
