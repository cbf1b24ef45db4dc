"""Whole-scene prediction: every pixel's label or class probabilities.

:func:`predict_scene` and :func:`predict_scene_proba` classify every pixel (or every
masked pixel) of a scene in bounded memory, by one of two paths that give the same
answer:

* ``"patches"`` cuts every pixel's patch
  (:func:`~sklearn_mmlgnet.patches.iter_scene_patches`) and calls the estimator's
  ``predict`` / ``predict_proba`` batch by batch: any classifier of patch arrays;
* ``"dense"`` runs the network's convolutions once over the scene, tile by tile
  (:mod:`sklearn_mmlgnet.dense`): exact, and tens of times faster, for an
  :class:`~sklearn_mmlgnet.MMLGNetClassifier` or
  :class:`~sklearn_mmlgnet.SDHSIClassifier` (alone, after band-wise transformers
  in a Pipeline, or refitted by a search; see :func:`dense_support`).

``method="auto"`` takes the dense path whenever the model supports it. Neither path
changes the fitted model: one model may predict in several threads at once.
"""

from __future__ import annotations

import sys

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from .dense import DenseNotSupportedError, check_dense_network, iter_dense_proba
from .patches import (
    check_bands,
    check_mask,
    check_scene,
    check_scene_patch_size,
    iter_scene_patches,
)
from .preprocessing import BandStandardScaler, SpectralNormalizer, SpectralPCA

__all__ = ["METHODS", "DenseNotSupportedError", "dense_support", "predict_scene",
           "predict_scene_proba", "supports_dense"]

#: The paths :func:`predict_scene` may take.
METHODS = ("auto", "dense", "patches")
_BAND_WISE = (SpectralNormalizer, BandStandardScaler, SpectralPCA)


def _unwrap_search(estimator):
    """A fitted GridSearchCV-like object predicts with its ``best_estimator_``."""
    best = getattr(estimator, "best_estimator_", None)
    if best is not None and hasattr(estimator, "cv_results_"):
        return best
    return estimator


def _prediction_params(clf):
    """The classifier's ``predict_heads`` and ``test_time_augment``, checked by name."""
    heads, tta = clf.predict_heads, clf.test_time_augment
    if not (isinstance(heads, str) and heads in ("final", "mean")):
        raise ValueError(f"predict_heads must be 'final' or 'mean'; got {heads!r}.")
    if not isinstance(tta, (bool, np.bool_)):
        raise ValueError(f"test_time_augment must be True or False; got {tta!r}.")
    return heads, bool(tta)


def dense_support(estimator, patch_size=None):
    """The band-wise transformers and the classifier of a model that can be predicted densely.

    Parameters
    ----------
    estimator : fitted estimator
        An :class:`~sklearn_mmlgnet.MMLGNetClassifier` or
        :class:`~sklearn_mmlgnet.SDHSIClassifier`, a Pipeline of
        :class:`~sklearn_mmlgnet.preprocessing.SpectralNormalizer` /
        :class:`~sklearn_mmlgnet.preprocessing.BandStandardScaler` /
        :class:`~sklearn_mmlgnet.preprocessing.SpectralPCA` steps followed by one
        of them, or a fitted search (GridSearchCV) refitted on one. A network
        classifier is recognised by its public parameters and fitted attributes
        (``predict_heads``, ``test_time_augment``, ``patch_size_``, ``net_``).
    patch_size : int, optional
        The patch side the caller would extract; checked against the model's.

    Returns
    -------
    transformers : list
        The fitted per-pixel transformers, in order.
    classifier : estimator
        The fitted classifier.

    Raises
    ------
    DenseNotSupportedError
        Saying why the model can only be predicted patch by patch.

    Examples
    --------
    >>> from sklearn.svm import SVC
    >>> dense_support(SVC())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sklearn_mmlgnet.dense.DenseNotSupportedError: SVC is not an MMLGNetClassifier or ...
    """
    est = _unwrap_search(estimator)
    transformers = []
    if isinstance(est, Pipeline):
        *steps, (_, clf) = est.steps
        for name, step in steps:
            if step is None or step == "passthrough":
                continue
            if type(step) not in _BAND_WISE:
                raise DenseNotSupportedError(
                    f"Pipeline step {name!r} ({type(step).__name__}) is not a band-wise "
                    "transformer (SpectralNormalizer, BandStandardScaler, SpectralPCA); dense "
                    "prediction needs every step before the classifier to map each pixel on "
                    "its own.")
            transformers.append(step)
    else:
        clf = est
    if not (hasattr(clf, "predict_heads") and hasattr(clf, "test_time_augment")):
        raise DenseNotSupportedError(
            f"{type(clf).__name__} is not an MMLGNetClassifier or SDHSIClassifier; only "
            "their networks can be evaluated densely.")
    check_is_fitted(clf, "net_")
    P = check_dense_network(clf.net_.module_, clf.patch_size_)
    if patch_size is not None and patch_size < P:
        raise ValueError(
            f"patch_size={patch_size} is smaller than the model's patch_size={P}; extract "
            "patches of at least that size.")
    return transformers, clf


def supports_dense(estimator, patch_size=None):
    """Whether :func:`dense_support` accepts the model (True) or not (False).

    Examples
    --------
    >>> from sklearn.svm import SVC
    >>> supports_dense(SVC())
    False
    """
    try:
        dense_support(estimator, patch_size)
    except DenseNotSupportedError:
        return False
    return True


def _choose_method(method, estimator, patch_size, transform):
    """"dense" or "patches": the path :func:`predict_scene` takes."""
    if not (isinstance(method, str) and method in METHODS):
        raise ValueError(f"method must be one of {METHODS}; got {method!r}.")
    if method == "patches":
        return method
    if transform is not None:
        if method == "dense":
            raise DenseNotSupportedError(
                "method='dense' cannot apply transform=, an arbitrary function of patch arrays; "
                "select bands with bands= and put band-wise transformers in a Pipeline, or use "
                "method='patches'.")
        return "patches"
    if method == "dense":
        dense_support(estimator, patch_size)  # raises, saying why
        return method
    return "dense" if supports_dense(estimator, patch_size) else "patches"


def _fill_scene(out, estimator, hsi, lidar, patch_size, batch_size, pad_mode, mask, transform,
                bands, method, tile_size, autocast, progress, proba):
    """Write labels (or probabilities) of the scene's (masked) pixels into ``out``."""
    H, W = hsi.shape[:2]
    check_scene_patch_size(patch_size, (H, W))
    method = _choose_method(method, estimator, patch_size, transform)
    mask = check_mask(mask, (H, W))
    if progress is None:  # on for long scenes, and only where someone watches
        n = H * W if mask is None else int(mask.sum())
        progress = n >= 250_000 and sys.stderr.isatty()
    if method == "dense":
        transformers, clf = dense_support(estimator, patch_size)
        heads, tta = _prediction_params(clf)
        classes = clf.classes_
        tiles = iter_dense_proba(
            clf.net_.module_, hsi, lidar, clf.patch_size_, heads=heads, test_time_augment=tta,
            transformers=transformers, pad_mode=pad_mode, mask=mask, bands=bands,
            tile_size=tile_size, autocast=autocast, progress=progress)
        for r0, c0, p in tiles:
            R, C = p.shape[:2]
            values = p if proba else classes[p.argmax(axis=-1)]
            view = out[r0:r0 + R, c0:c0 + C]
            if mask is None:
                view[...] = values
            else:
                keep = mask[r0:r0 + R, c0:c0 + C]
                view[keep] = values[keep]
        return out
    band_idx = check_bands(bands, hsi.shape[2] + lidar.shape[2])
    with tqdm(total=H * W if mask is None else int(mask.sum()), desc="patch prediction",
              unit="px", unit_scale=True, disable=not progress, file=sys.stderr) as bar:
        for r, c, patches in iter_scene_patches(hsi, lidar, patch_size, batch_size, pad_mode, mask):
            if band_idx is not None:
                patches = patches[:, band_idx]
            if transform is not None:
                patches = transform(patches)
            out[r, c] = estimator.predict_proba(patches) if proba else estimator.predict(patches)
            bar.update(len(r))
    return out


def predict_scene(estimator, hsi, lidar, patch_size=11, batch_size=1024, pad_mode="reflect",
                  mask=None, fill_value=0, transform=None, *, bands=None, method="auto",
                  tile_size=None, autocast=False, progress=None):
    """Classify every pixel (or every masked pixel) of a scene in bounded memory.

    Two paths give the same labels. ``"patches"`` cuts every pixel's patch and
    calls ``estimator.predict`` batch by batch: it works for any classifier of
    patch arrays. ``"dense"`` runs the network's convolutions once over the scene,
    tile by tile, and reads every pixel's answer off the dense feature maps
    (:mod:`sklearn_mmlgnet.dense`): exact, and tens of times faster. Neither
    changes the estimator.

    Parameters
    ----------
    estimator : fitted classifier
        Anything with ``predict`` on patch arrays (an MMLGNet classifier, or a
        Pipeline such as ``CenterPixel() + SVC()``).
    hsi, lidar, patch_size, batch_size, pad_mode, mask
        As in :func:`~sklearn_mmlgnet.patches.iter_scene_patches` (``batch_size``
        is for the patch path).
    fill_value : scalar, default=0
        Label written where ``mask`` is False.
    transform : callable, optional
        Applied to each batch of patches before ``predict`` (e.g. a scaler's
        ``transform`` fitted outside the estimator). An arbitrary function of
        patches, so it forces the patch path; prefer ``bands=`` and Pipelines.
    bands : slice, sequence of int or bool mask, optional
        The scene bands (HSI then LiDAR) the estimator takes, e.g.
        ``slice(0, n_hsi)`` for a model fitted on the HSI bands only. Both paths
        support it (applied before ``transform``).
    method : {"auto", "dense", "patches"}, default="auto"
        ``"auto"`` takes the dense path whenever the model supports it (see
        :func:`dense_support`: an MMLGNet or SDHSI classifier, alone, after
        band-wise transformers in a Pipeline, or refitted by a search; fitted
        patches at least the network's receptive field; no ``transform``) and the
        patch path otherwise. ``"dense"`` raises
        :class:`~sklearn_mmlgnet.dense.DenseNotSupportedError` when the model does
        not support it.
    tile_size : int or (int, int), optional
        Dense path: output pixels per tile side; default sized for about 200 MiB.
    autocast : bool or torch.dtype, default=False
        Dense path: run the network under bfloat16 autocast (``True``), for GPUs.
    progress : bool, optional
        Show a tqdm progress bar; by default shown for scenes of 250,000 pixels
        or more when stderr is a terminal.

    Returns
    -------
    label_map : ndarray of shape (H, W)
        The predicted labels, with the dtype of ``estimator.classes_``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_mmlgnet import SDHSIClassifier
    >>> from sklearn_mmlgnet.patches import extract_patches
    >>> rng = np.random.RandomState(0)
    >>> hsi = rng.normal(size=(12, 10, 6))
    >>> rows, cols = np.indices((12, 10)).reshape(2, -1)
    >>> X = extract_patches(hsi, None, rows, cols, patch_size=5)
    >>> clf = SDHSIClassifier(module__conv3d_channels=(2,), module__spectral_kernels=(3,),
    ...                       module__hidden=8, max_epochs=2, random_state=0).fit(X, rows % 2)
    >>> dense = predict_scene(clf, hsi, None, patch_size=5, method="dense")
    >>> bool((dense.ravel() == clf.predict(X)).all())
    True
    """
    hsi, lidar = check_scene(hsi, lidar)
    _check_scene_values(estimator, hsi, lidar, bands, transform)
    classes = getattr(estimator, "classes_", None)
    dtype = classes.dtype if classes is not None else np.asarray(fill_value).dtype
    if dtype.kind in "US":  # string labels: room for the longest name
        dtype = np.result_type(dtype, np.asarray(fill_value).dtype)
    out = np.full(hsi.shape[:2], fill_value, dtype=dtype)
    return _fill_scene(out, estimator, hsi, lidar, patch_size, batch_size, pad_mode, mask,
                       transform, bands, method, tile_size, autocast, progress, proba=False)


def predict_scene_proba(estimator, hsi, lidar, patch_size=11, batch_size=1024, pad_mode="reflect",
                        mask=None, transform=None, *, bands=None, method="auto", tile_size=None,
                        autocast=False, progress=None):
    """Class probabilities of every pixel (or every masked pixel) of a scene.

    Parameters
    ----------
    estimator : fitted classifier with ``predict_proba``
    hsi, lidar, patch_size, batch_size, pad_mode, mask, transform, bands, method
        As in :func:`predict_scene`.
    tile_size, autocast, progress
        As in :func:`predict_scene`.

    Returns
    -------
    proba : ndarray of shape (H, W, n_classes), float64
        Columns follow ``estimator.classes_``; NaN where ``mask`` is False.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn_mmlgnet.patches import extract_patches
    >>> from sklearn_mmlgnet.preprocessing import CenterPixel
    >>> rng = np.random.RandomState(0)
    >>> hsi = rng.normal(size=(6, 7, 3))
    >>> rows, cols = np.indices((6, 7)).reshape(2, -1)
    >>> X = extract_patches(hsi, None, rows, cols, patch_size=3)
    >>> model = make_pipeline(CenterPixel(), LogisticRegression()).fit(X, hsi[rows, cols, 0] > 0)
    >>> predict_scene_proba(model, hsi, None, patch_size=3).shape  # the patch path
    (6, 7, 2)
    """
    hsi, lidar = check_scene(hsi, lidar)
    _check_scene_values(estimator, hsi, lidar, bands, transform)
    n_classes = len(estimator.classes_)
    out = np.full(hsi.shape[:2] + (n_classes,), np.nan)
    return _fill_scene(out, estimator, hsi, lidar, patch_size, batch_size, pad_mode, mask,
                       transform, bands, method, tile_size, autocast, progress, proba=True)


def _check_scene_values(estimator, hsi, lidar, bands, transform):
    """Refuse non-finite values and a band count other than the fitted one, naming them."""
    n_bands = hsi.shape[2] + (0 if lidar is None else lidar.shape[2])
    idx = check_bands(bands, n_bands)
    n_used = n_bands if idx is None else len(idx)
    n_fitted = getattr(estimator, "n_features_in_", None)
    if transform is None and n_fitted is not None and n_used != n_fitted:
        raise ValueError(
            f"hsi and lidar give {n_used} bands but the estimator was fitted on {n_fitted}; "
            "give the scene's bands in the fitted order, or choose them with bands=.")
    for name, array in (("hsi", hsi), ("lidar", lidar)):
        if array is None or array.dtype.kind not in "fc":
            continue
        for start in range(0, array.shape[0], 256):  # in row blocks: bounded memory
            bad = ~np.isfinite(array[start:start + 256])
            if bad.any():
                r, c, b = np.argwhere(bad)[0]
                raise ValueError(
                    f"{name} holds NaN or infinite values (e.g. row {start + r}, col {c}, band "
                    f"{b}); fill them, or leave them out with mask= (read_scene treats them as "
                    "nodata).")
