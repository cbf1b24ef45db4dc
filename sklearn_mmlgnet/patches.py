"""Patch extraction from co-registered HSI + LiDAR scenes, and full-scene prediction.

Scenes are channel-last arrays: ``hsi`` of shape (H, W, B) and ``lidar`` of shape
(H, W, L) (or (H, W) for one raster). Patches come out channel-first, HSI bands
then LiDAR bands: (n, B + L, P, P) float32, the layout the estimators take.

Nothing here copies a whole padded scene. :func:`extract_patches` gathers each
patch through border-aware index maps, and :func:`iter_scene_patches` walks the
scene in blocks of rows, padding only that block and cutting it with
:func:`numpy.lib.stride_tricks.sliding_window_view` (a zero-copy window view), so
a batch costs only its own memory whatever the scene size.
"""

from __future__ import annotations

import numbers
import sys

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

PAD_MODES = ("reflect", "symmetric", "edge", "constant")


def _check_raster(values, name):
    """A real-valued array (bool, int or float), else an error naming the argument."""
    values = np.asarray(values)
    if values.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers; got an array of dtype {values.dtype}.")
    return values


def _check_scene(hsi, lidar):
    hsi = _check_raster(hsi, "hsi")
    if hsi.ndim != 3:
        raise ValueError(f"hsi must be a cube of shape (H, W, B); got shape {hsi.shape}.")
    if lidar is None:
        lidar = np.zeros(hsi.shape[:2] + (0,), dtype=np.float32)
    lidar = _check_raster(lidar, "lidar")
    if lidar.ndim == 2:
        lidar = lidar[:, :, None]
    if lidar.ndim != 3 or lidar.shape[:2] != hsi.shape[:2]:
        raise ValueError(
            f"lidar must have shape (H, W) or (H, W, L) with the HSI's H x W = {hsi.shape[:2]}; "
            f"got {lidar.shape}.")
    if hsi.shape[2] + lidar.shape[2] == 0:
        raise ValueError(f"hsi has 0 bands (shape {hsi.shape}) and there is no lidar band; "
                         "at least one band is needed.")
    return hsi, lidar


def _check_coords(values, name):
    """Pixel coordinates as a flat int array; floats only when they are whole numbers."""
    values = np.asarray(values)
    if values.size and values.dtype.kind not in "iu":
        whole = values.dtype.kind == "f" and np.isfinite(values).all() and (values % 1 == 0).all()
        if not whole:
            raise TypeError(f"{name} must hold integer pixel coordinates; got {values.dtype} "
                            f"values such as {values.ravel()[:3].tolist()}.")
    return values.astype(np.intp).ravel()


def _check_patch_size(patch_size, shape):
    if not isinstance(patch_size, numbers.Integral) or patch_size < 1 or patch_size % 2 == 0:
        raise ValueError(f"patch_size must be an odd positive int; got {patch_size!r}.")
    if patch_size > 2 * min(shape) - 1:
        raise ValueError(
            f"patch_size={patch_size} is too large for a {shape[0]} x {shape[1]} scene; "
            f"at most {2 * min(shape) - 1} can be padded.")
    return int(patch_size)


def _check_pad_mode(pad_mode):
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES}; got {pad_mode!r}.")
    return pad_mode


def _border_index(idx, n, mode):
    """Map indices that may fall outside [0, n) back inside, as np.pad's modes do.

    Returns (index, valid); ``valid`` is False where ``mode="constant"`` pads zeros.
    """
    idx = np.asarray(idx)
    valid = (idx >= 0) & (idx < n)
    if mode == "edge" or mode == "constant":
        return np.clip(idx, 0, n - 1), valid
    if mode == "reflect":  # ... 2 1 | 0 1 2 ... n-1 | n-2 ...
        period = 2 * (n - 1) if n > 1 else 1
        m = np.mod(idx, period)
        return np.where(m < n, m, period - m), valid
    period = 2 * n  # symmetric: ... 1 0 | 0 1 ... n-1 | n-1 ...
    m = np.mod(idx, period)
    return np.where(m < n, m, period - 1 - m), valid


def extract_patches(hsi, lidar, rows, cols, patch_size=11, pad_mode="reflect"):
    """Patches centred on the given pixels, HSI bands first, borders padded.

    Parameters
    ----------
    hsi : array of shape (H, W, B)
    lidar : array of shape (H, W, L) or (H, W), or None
    rows, cols : array-like of int, shape (n,)
        Pixel coordinates of the patch centres.
    patch_size : int, default=11
        Odd patch side P.
    pad_mode : {"reflect", "symmetric", "edge", "constant"}, default="reflect"
        How pixels beyond the scene border are filled (as :func:`numpy.pad`).

    Returns
    -------
    patches : ndarray of shape (n, B + L, P, P), float32

    Examples
    --------
    >>> import numpy as np
    >>> hsi = np.arange(5 * 6 * 2, dtype=float).reshape(5, 6, 2)
    >>> lidar = np.ones((5, 6))
    >>> extract_patches(hsi, lidar, [0, 2], [0, 3], patch_size=3).shape
    (2, 3, 3, 3)
    """
    hsi, lidar = _check_scene(hsi, lidar)
    H, W = hsi.shape[:2]
    P = _check_patch_size(patch_size, (H, W))
    _check_pad_mode(pad_mode)
    rows = _check_coords(rows, "rows")
    cols = _check_coords(cols, "cols")
    if rows.shape != cols.shape:
        raise ValueError(f"rows and cols must have the same length; got {rows.shape} and {cols.shape}.")
    if rows.size and (rows.min() < 0 or rows.max() >= H or cols.min() < 0 or cols.max() >= W):
        raise ValueError(f"rows/cols must lie inside the {H} x {W} scene.")
    offsets = np.arange(P) - P // 2
    ri, rv = _border_index(rows[:, None] + offsets, H, pad_mode)  # (n, P)
    ci, cv = _border_index(cols[:, None] + offsets, W, pad_mode)
    parts = []
    for cube in (hsi, lidar):
        if cube.shape[2]:
            # (n, P, P, C) gathered straight from the scene: no padded copy.
            parts.append(cube[ri[:, :, None], ci[:, None, :]].astype(np.float32, copy=False))
    out = np.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]
    if pad_mode == "constant":
        out = out * (rv[:, :, None] & cv[:, None, :])[..., None]
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def iter_scene_patches(hsi, lidar, patch_size=11, batch_size=1024, pad_mode="reflect", mask=None):
    """Walk every pixel of a scene in batches of patches, in bounded memory.

    Parameters
    ----------
    hsi, lidar, patch_size, pad_mode
        As in :func:`extract_patches`.
    batch_size : int, default=1024
        Largest number of pixels (patches) per batch. Rows are padded in blocks
        of about ``batch_size`` pixels (at least one row) and cut into batches of
        at most ``batch_size`` patches, so memory does not grow with the scene's
        width either. 1024 patches of 145 bands x 11 x 11 take 72 MB.
    mask : array of shape (H, W) of bool, optional
        Only these pixels are yielded.

    Yields
    ------
    rows, cols : ndarray of int
        Coordinates of the batch's pixels.
    patches : ndarray of shape (n, B + L, P, P), float32

    Examples
    --------
    >>> import numpy as np
    >>> hsi = np.zeros((10, 8, 3)); lidar = np.zeros((10, 8))
    >>> sum(len(r) for r, c, p in iter_scene_patches(hsi, lidar, 5, batch_size=16))
    80
    """
    hsi, lidar = _check_scene(hsi, lidar)
    H, W = hsi.shape[:2]
    P = _check_patch_size(patch_size, (H, W))
    _check_pad_mode(pad_mode)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (H, W):
            raise ValueError(f"mask must have the scene's shape {(H, W)}; got {mask.shape}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
    h = P // 2
    rows_per_block = max(1, batch_size // W)
    col_idx, col_valid = _border_index(np.arange(-h, W + h), W, pad_mode)
    for r0 in range(0, H, rows_per_block):
        r1 = min(H, r0 + rows_per_block)
        block_mask = np.ones((r1 - r0, W), bool) if mask is None else mask[r0:r1]
        if not block_mask.any():
            continue
        row_idx, row_valid = _border_index(np.arange(r0 - h, r1 + h), H, pad_mode)
        # Only this block of rows (plus its margins) is padded and stacked.
        slab = np.concatenate(
            [c[row_idx][:, col_idx].astype(np.float32, copy=False) for c in (hsi, lidar) if c.shape[2]],
            axis=-1)
        if pad_mode == "constant":
            slab *= (row_valid[:, None] & col_valid[None, :])[..., None]
        windows = sliding_window_view(slab, (P, P), axis=(0, 1))  # (rows, W, C, P, P), a view
        br, bc = np.nonzero(block_mask)
        for start in range(0, len(br), batch_size):
            r, c = br[start:start + batch_size], bc[start:start + batch_size]
            yield r + r0, c, np.ascontiguousarray(windows[r, c])


METHODS = ("auto", "dense", "patches")


def _choose_method(method, estimator, patch_size, transform):
    """"dense" or "patches": the path :func:`predict_scene` takes."""
    from .dense import DenseNotSupportedError, dense_support, supports_dense

    if method not in METHODS:
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
    from tqdm.auto import tqdm

    from .dense import _check_bands, dense_support, iter_dense_proba

    hsi, lidar = _check_scene(hsi, lidar)
    H, W = hsi.shape[:2]
    method = _choose_method(method, estimator, patch_size, transform)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (H, W):
            raise ValueError(f"mask must have the scene's shape {(H, W)}; got {mask.shape}.")
    if progress is None:  # on for long scenes, and only where someone watches
        n = H * W if mask is None else int(mask.sum())
        progress = n >= 250_000 and sys.stderr.isatty()
    if method == "dense":
        classes = dense_support(estimator, patch_size)[1].classes_
        for r0, c0, p in iter_dense_proba(estimator, hsi, lidar, patch_size, pad_mode, mask, bands,
                                          tile_size, autocast, progress):
            R, C = p.shape[:2]
            values = p if proba else classes[p.argmax(axis=-1)]
            view = out[r0:r0 + R, c0:c0 + C]
            if mask is None:
                view[...] = values
            else:
                keep = mask[r0:r0 + R, c0:c0 + C]
                view[keep] = values[keep]
        return out
    band_idx = _check_bands(bands, hsi.shape[2] + lidar.shape[2])
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
    (:mod:`sklearn_mmlgnet.dense`): exact, and tens of times faster.

    Parameters
    ----------
    estimator : fitted classifier
        Anything with ``predict`` on patch arrays (an MMLGNet classifier, or a
        Pipeline such as ``CenterPixel() + SVC()``).
    hsi, lidar, patch_size, batch_size, pad_mode, mask
        As in :func:`iter_scene_patches` (``batch_size`` is for the patch path).
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
        :func:`~sklearn_mmlgnet.dense.dense_support`: an MMLGNet or SDHSI
        classifier, alone, after band-wise transformers in a Pipeline, or refitted
        by a search; fitted patches at least the network's receptive field; no
        ``transform``) and the patch path otherwise. ``"dense"`` raises
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
    >>> from sklearn_mmlgnet import MMLGNetClassifier
    >>> from sklearn_mmlgnet.patches import extract_patches
    >>> rng = np.random.RandomState(0)
    >>> hsi, lidar = rng.normal(size=(12, 10, 4)), rng.normal(size=(12, 10))
    >>> rows, cols = np.indices((12, 10)).reshape(2, -1)
    >>> X = extract_patches(hsi, lidar, rows, cols, patch_size=5)
    >>> clf = MMLGNetClassifier(text_embeddings=np.eye(2, 3), hsi_channels=(4, 8),
    ...                         lidar_channels=(2, 4), fusion_dim=8, max_epochs=2,
    ...                         random_state=0).fit(X, rows % 2)
    >>> dense = predict_scene(clf, hsi, lidar, patch_size=5, method="dense")
    >>> bool((dense.ravel() == clf.predict(X)).all())
    True
    """
    hsi, _ = _check_scene(hsi, lidar)
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
    """
    hsi, _ = _check_scene(hsi, lidar)
    n_classes = len(estimator.classes_)
    out = np.full(hsi.shape[:2] + (n_classes,), np.nan)
    return _fill_scene(out, estimator, hsi, lidar, patch_size, batch_size, pad_mode, mask,
                       transform, bands, method, tile_size, autocast, progress, proba=True)


def labelled_patches(scene, mask, patch_size=11, pad_mode="reflect"):
    """Patches and labels of the pixels of ``mask`` in a scene Bunch.

    Parameters
    ----------
    scene : Bunch
        From :mod:`sklearn_mmlgnet.datasets` (``hsi``, ``lidar``, ``labels``).
    mask : array of shape (H, W), bool
        E.g. ``scene.train_mask``; unlabelled pixels in it are skipped.
    patch_size, pad_mode
        As in :func:`extract_patches`.

    Returns
    -------
    X : ndarray of shape (n, B + L, P, P), float32
    y : ndarray of shape (n,), the integer labels
    rows, cols : ndarray of shape (n,)

    Examples
    --------
    >>> from sklearn_mmlgnet.datasets import make_hsi_lidar_scene
    >>> scene = make_hsi_lidar_scene(n_rows=80, n_cols=160, n_bands=10, patch_size=5)
    >>> X, y, r, c = labelled_patches(scene, scene.train_mask, patch_size=5)
    >>> X.shape[1:]
    (11, 5, 5)
    """
    mask = np.asarray(mask, bool) & (scene.labels > 0)
    rows, cols = np.nonzero(mask)
    X = extract_patches(scene.hsi, scene.lidar, rows, cols, patch_size, pad_mode)
    return X, scene.labels[rows, cols], rows, cols
