"""The benchmark's datasets, its IDTReeS folds and the rule that sets the patch side."""

from __future__ import annotations

import numpy as np

from .. import datasets

DATASETS = ("synthetic", "trento", "muufl", "houston2013", "jasper_ridge", "idtrees")
#: Plot-grouped outer folds of the IDTReeS benchmark (fixed: random_state=0).
IDTREES_FOLDS = 3
#: The largest patch side the benchmark uses: the paper's 11 x 11 patches.
MAX_PATCH_SIZE = 11


def load_dataset(name, data_home=None, seed=0, patch_size=11):
    """The Bunch of a benchmark dataset; sample-based splits are drawn by ``seed``.

    Scenes come with ``train_mask`` / ``test_mask``; ``"idtrees"`` gives the plots'
    patches ``X`` and per-pixel groups (:func:`~sklearn_mmlgnet.datasets.load_idtrees`;
    ``patch_size=None``: the plots only, no patches).
    """
    if name == "synthetic":
        return datasets.make_hsi_lidar_scene(random_state=0)
    if name == "trento":
        return datasets.load_trento(data_home=data_home, random_state=seed)
    if name == "muufl":
        return datasets.load_muufl(data_home=data_home, random_state=seed)
    if name == "houston2013":
        return datasets.load_houston2013(data_home=data_home)
    if name == "jasper_ridge":
        return datasets.load_jasper_ridge(data_home=data_home, random_state=seed)
    if name == "idtrees":
        return datasets.load_idtrees(data_home, patch_size=patch_size)
    raise ValueError(f"dataset must be one of {DATASETS}; got {name!r}.")


def patch_size_for(image_shapes):
    """The patch side the benchmark cuts: the odd side nearest to a third of the
    smallest image side, at most :data:`MAX_PATCH_SIZE`.

    One rule for every dataset: a whole scene (Jasper Ridge's 100 x 100 px, Trento's
    166 x 600) gets 11 x 11 patches; IDTReeS's 20 x 20 px plots get 7 x 7, so that a
    patch stays mostly inside the plot and near its own crown.

    Parameters
    ----------
    image_shapes : iterable of tuple
        ``(rows, cols, ...)`` of each image (a scene, or every plot).

    Returns
    -------
    patch_size : int

    Examples
    --------
    >>> patch_size_for([(100, 100, 198)]), patch_size_for([(20, 20), (20, 21)])
    (11, 7)
    """
    side = min(min(shape[:2]) for shape in image_shapes)
    nearest_odd = 2 * int(np.floor((side / 3 - 1) / 2 + 0.5)) + 1
    return int(min(MAX_PATCH_SIZE, max(1, nearest_odd)))


def image_shapes(data):
    """The shapes of the images of a loaded dataset (its scene, or IDTReeS's plots)."""
    if "scenes" in data:
        return [scene.labels.shape for scene in data.scenes]
    return [data.labels.shape]
