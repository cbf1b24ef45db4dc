"""The network input, chosen inside the run on inner validation of the training pixels.

The MMLGNet rows take the estimator's defaults on every dataset. What goes in front of
the network (each pixel's spectrum as it is or scaled to unit length; every HSI band or
a PCA of them) differs between scenes, so the run chooses it: for each seed (and each
outer fold on IDTReeS) the main row, ``MMLGNet (symmetric loss)``, is fitted once per
candidate on one inner split of that fit's training pixels (spatial blocks on a scene,
plot groups on IDTReeS) and scored on the held-out part; the candidate with the highest
mean of OA and AA is taken (ties: the earlier candidate, the plainer input) by every
MMLGNet row that sees HSI bands. The same code runs on every dataset.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from ..metrics import average_accuracy, overall_accuracy
from ..model_selection import SpatialBlockKFold
from ._methods import SPECTRAL_NORM

#: Inner folds the split is the first of, and the side of the spatial blocks.
N_SPLITS = 3
BLOCK_SIZE = 32
#: PCA components of the candidates that reduce the HSI bands (on datasets with more
#: HSI bands than this; the others keep every band).
INPUT_PCA = 30
#: The candidate network inputs, in order of preference on a tie: the first is the
#: estimators' plain input (every band, standardised per band).
INPUT_CANDIDATES = (
    {"spectral_norm": None, "pca": None},
    {"spectral_norm": SPECTRAL_NORM, "pca": None},
    {"spectral_norm": None, "pca": INPUT_PCA},
    {"spectral_norm": SPECTRAL_NORM, "pca": INPUT_PCA},
)


def input_candidates(n_hsi):
    """The candidates of :data:`INPUT_CANDIDATES` that apply to ``n_hsi`` HSI bands."""
    return [c for c in INPUT_CANDIDATES if not c["pca"] or c["pca"] < n_hsi]


def describe_input(choice):
    """``"l2-normalised spectra, PCA 30"``-style name of a network input."""
    norm = (f"{choice['spectral_norm']}-normalised spectra" if choice.get("spectral_norm")
            else "spectra as they are")
    bands = f"PCA {choice['pca']}" if choice.get("pca") else "every band"
    tta = ", 8-symmetry test-time augmentation" if choice.get("test_time_augment") else ""
    return f"{norm}, {bands}{tta}"


def inner_split(y, seed, *, rows=None, cols=None, patch_size=11, groups=None):
    """One inner (train, validation) split of a fit's training pixels.

    With ``rows, cols``: the first fold of 3 spatially blocked folds (32 px blocks,
    :class:`~sklearn_mmlgnet.model_selection.SpatialBlockKFold`, ``min_train=0``) that
    trains on two classes or more: no inner-training patch reaches a validation pixel;
    a class confined to the validation blocks costs every candidate alike. With
    ``groups``: the first fold of a 3-fold
    :class:`~sklearn.model_selection.StratifiedGroupKFold` (no group on both sides).

    Examples
    --------
    >>> import numpy as np
    >>> rows, cols = np.divmod(np.arange(96 * 96), 96)
    >>> tr, va = inner_split(cols // 48, 0, rows=rows, cols=cols, patch_size=5)
    >>> len(tr) + len(va) < 96 * 96  # the buffer around the validation blocks is dropped
    True
    """
    y = np.asarray(y)
    X = np.zeros((len(y), 1))
    if groups is not None:
        cv = StratifiedGroupKFold(N_SPLITS, shuffle=True, random_state=seed)
        return next(iter(cv.split(X, y, groups)))
    cv = SpatialBlockKFold(rows, cols, n_splits=N_SPLITS, block_size=BLOCK_SIZE,
                           patch_size=patch_size, min_train=0, random_state=seed)
    for tr, va in cv.split(X, y):
        if len(va) and len(np.unique(y[tr])) >= 2:
            return tr, va
    raise ValueError(f"no spatial inner split of these {len(y)} training pixels trains on two "
                     "classes: the training area is too small for 32 px blocks.")


def choose_network_input(method, seed, X, y, split, n_lidar, class_names=None, log=print):
    """The candidate input that scores best for ``method`` on one inner split.

    Parameters
    ----------
    method : Method
        The row that decides (its ``build`` takes ``network_input``).
    seed : int
        The network's ``random_state``.
    X, y : ndarray
        The fit's training patches (all bands) and labels.
    split : (ndarray, ndarray)
        Indices of the inner training and validation pixels (:func:`inner_split`).
    n_lidar : int
        LiDAR bands of ``X``.
    class_names : dict or list, optional
        Handed to the network for its prompts.
    log : callable

    Returns
    -------
    choice : dict
        ``{"spectral_norm": ..., "pca": ..., "test_time_augment": ...,
        "scores": [[OA, AA] per candidate],
        "candidates": [...], "inner": [n train, n validation], "seconds": s}``.
    """
    tr, va = split
    candidates, scores = [], []
    t0 = time.perf_counter()
    for cand in input_candidates(X.shape[1] - n_lidar):
        est = method.build(seed, n_lidar, network_input=cand)
        if class_names is not None:
            est[-1].set_params(class_names=class_names)
        est.fit(X[tr], y[tr])
        for tta in (False, True):  # a prediction setting: the same fit serves both
            est[-1].set_params(test_time_augment=tta)
            pred = est.predict(X[va])
            candidates.append(dict(cand, test_time_augment=tta))
            scores.append([overall_accuracy(y[va], pred), average_accuracy(y[va], pred)])
    best = int(np.argmax([np.mean(s) for s in scores]))  # the first on a tie
    choice = dict(candidates[best], candidates=[dict(c) for c in candidates],
                  scores=[[float(v) for v in s] for s in scores],
                  inner=[int(len(tr)), int(len(va))], seconds=time.perf_counter() - t0)
    log(f"[seed {seed}] network input on inner validation ({len(tr)} / {len(va)} px): "
        + "; ".join(f"{describe_input(c)} OA {100 * s[0]:.2f} AA {100 * s[1]:.2f}"
                    for c, s in zip(candidates, scores))
        + f" -> {describe_input(choice)}")
    return choice
