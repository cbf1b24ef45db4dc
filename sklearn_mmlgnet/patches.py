"""Patch extraction from co-registered HSI + LiDAR scenes.

Scenes are channel-last arrays: ``hsi`` of shape (H, W, B) and ``lidar`` of shape
(H, W, L) (or (H, W) for one raster). Patches come out channel-first, HSI bands
then LiDAR bands: (n, B + L, P, P) float32, the layout the estimators take.

Nothing here copies a whole padded scene. :func:`extract_patches` gathers each
patch through border-aware index maps, and :func:`iter_scene_patches` walks the
scene in blocks of rows, padding only that block and cutting it with
:func:`numpy.lib.stride_tricks.sliding_window_view` (a zero-copy window view), so
a batch costs only its own memory whatever the scene size.

The scene checks and the border rule (:func:`check_scene`, :func:`border_index`,
...) are public: the dense path (:mod:`sklearn_mmlgnet.dense`) reads a scene by the
same rules, so a pixel's dense answer is its patch's answer. Whole-scene prediction
lives in :mod:`sklearn_mmlgnet.prediction`.
"""

from __future__ import annotations

import numbers

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["PAD_MODES", "ScenePatches", "border_index", "check_bands", "check_mask", "check_pad_mode",
           "check_scene", "check_scene_patch_size", "extract_patches", "iter_scene_patches",
           "labelled_patches"]

#: Border rules of :func:`extract_patches` (as :func:`numpy.pad`'s modes).
PAD_MODES = ("reflect", "symmetric", "edge", "constant")


def _check_raster(values, name):
    """A real-valued array (bool, int or float), else an error naming the argument."""
    values = np.asarray(values)
    if values.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers; got an array of dtype {values.dtype}.")
    return values


def check_scene(hsi, lidar):
    """A scene's rasters as two channel-last cubes, else an error naming the bad one.

    Parameters
    ----------
    hsi : array-like of shape (H, W, B)
    lidar : array-like of shape (H, W, L) or (H, W), or None
        None (or L = 0) for a scene without LiDAR.

    Returns
    -------
    hsi : ndarray of shape (H, W, B)
    lidar : ndarray of shape (H, W, L)
        (H, W, 0) when ``lidar`` is None.

    Examples
    --------
    >>> import numpy as np
    >>> hsi, lidar = check_scene(np.zeros((4, 5, 3)), np.zeros((4, 5)))
    >>> lidar.shape
    (4, 5, 1)
    """
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


def check_scene_patch_size(patch_size, shape):
    """``patch_size`` as an int if it is odd and can be padded on an H x W scene.

    The border rules mirror at most ``min(H, W) - 1`` pixels, so a patch is at most
    ``2 * min(H, W) - 1`` wide.

    Parameters
    ----------
    patch_size : int
    shape : (int, int)
        The scene's (H, W).

    Returns
    -------
    int

    Examples
    --------
    >>> check_scene_patch_size(5, (10, 12))
    5
    """
    if (not isinstance(patch_size, numbers.Integral) or isinstance(patch_size, (bool, np.bool_))
            or patch_size < 1 or patch_size % 2 == 0):
        raise ValueError(f"patch_size must be an odd positive int; got {patch_size!r}.")
    if patch_size > 2 * min(shape) - 1:
        raise ValueError(
            f"patch_size={patch_size} is too large for a {shape[0]} x {shape[1]} scene; "
            f"at most {2 * min(shape) - 1} can be padded.")
    return int(patch_size)


def check_pad_mode(pad_mode):
    """``pad_mode`` if it is one of :data:`PAD_MODES`, else a ValueError naming it.

    Examples
    --------
    >>> check_pad_mode("edge")
    'edge'
    """
    if not (isinstance(pad_mode, str) and pad_mode in PAD_MODES):
        raise ValueError(f"pad_mode must be one of {PAD_MODES}; got {pad_mode!r}.")
    return pad_mode


def check_mask(mask, shape):
    """``mask`` as a bool array of the scene's shape, or None.

    Examples
    --------
    >>> check_mask([[1, 0]], (1, 2))
    array([[ True, False]])
    """
    if mask is None:
        return None
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != tuple(shape):
        raise ValueError(f"mask must have the scene's shape {tuple(shape)}; got {mask.shape}.")
    return mask


def check_bands(bands, n_bands):
    """Scene band indices selected by ``bands``, or None for all of them.

    Parameters
    ----------
    bands : slice, sequence of int, bool mask of length ``n_bands``, or None
        Bands of the scene, HSI then LiDAR, in the order a model takes them.
    n_bands : int
        Bands of the scene (HSI and LiDAR).

    Returns
    -------
    ndarray of int or None

    Examples
    --------
    >>> check_bands(slice(0, 3), 5)
    array([0, 1, 2])
    >>> check_bands([-1, 0], 5)
    array([4, 0])
    """
    if bands is None:
        return None
    if isinstance(bands, slice):
        return np.arange(n_bands)[bands]
    idx = np.asarray(bands)
    if idx.dtype == bool:
        if idx.shape != (n_bands,):
            raise ValueError(
                f"bands as a boolean mask must have one entry per scene band ({n_bands}); "
                f"got shape {idx.shape}.")
        return np.flatnonzero(idx)
    if idx.ndim != 1 or idx.size == 0 or idx.dtype.kind not in "iu":
        raise ValueError(f"bands must be a slice, a non-empty sequence of ints or a boolean mask; "
                         f"got {bands!r}.")
    if idx.min() < -n_bands or idx.max() >= n_bands:
        raise ValueError(f"bands must index the scene's {n_bands} bands (HSI then LiDAR); "
                         f"got {bands!r}.")
    return idx % n_bands


def border_index(idx, n, mode):
    """Map indices that may fall outside [0, n) back inside, as :func:`numpy.pad`'s modes do.

    Parameters
    ----------
    idx : array-like of int
        Indices along an axis of length ``n``, possibly beyond its ends.
    n : int
        Length of the axis.
    mode : {"reflect", "symmetric", "edge", "constant"}

    Returns
    -------
    index : ndarray of int
        Indices inside [0, n).
    valid : ndarray of bool
        False where ``mode="constant"`` pads zeros (outside the axis).

    Examples
    --------
    >>> border_index([-2, -1, 0, 3, 4], 4, "reflect")[0]
    array([2, 1, 0, 3, 2])
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
    hsi, lidar = check_scene(hsi, lidar)
    H, W = hsi.shape[:2]
    P = check_scene_patch_size(patch_size, (H, W))
    check_pad_mode(pad_mode)
    rows = _check_coords(rows, "rows")
    cols = _check_coords(cols, "cols")
    if rows.shape != cols.shape:
        raise ValueError(f"rows and cols must have the same length; got {rows.shape} and {cols.shape}.")
    if rows.size and (rows.min() < 0 or rows.max() >= H or cols.min() < 0 or cols.max() >= W):
        raise ValueError(f"rows/cols must lie inside the {H} x {W} scene.")
    offsets = np.arange(P) - P // 2
    ri, rv = border_index(rows[:, None] + offsets, H, pad_mode)  # (n, P)
    ci, cv = border_index(cols[:, None] + offsets, W, pad_mode)
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
    hsi, lidar = check_scene(hsi, lidar)
    H, W = hsi.shape[:2]
    P = check_scene_patch_size(patch_size, (H, W))
    check_pad_mode(pad_mode)
    mask = check_mask(mask, (H, W))
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
    h = P // 2
    rows_per_block = max(1, batch_size // W)
    col_idx, col_valid = border_index(np.arange(-h, W + h), W, pad_mode)
    for r0 in range(0, H, rows_per_block):
        r1 = min(H, r0 + rows_per_block)
        block_mask = np.ones((r1 - r0, W), bool) if mask is None else mask[r0:r1]
        if not block_mask.any():
            continue
        row_idx, row_valid = border_index(np.arange(r0 - h, r1 + h), H, pad_mode)
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


class ScenePatches:
    """The patches of scene pixels as an array-like that extracts them when indexed.

    Stands in for ``extract_patches(hsi, lidar, rows, cols, patch_size)`` as ``X`` of
    :meth:`MMLGNetClassifier.fit <sklearn_mmlgnet.MMLGNetClassifier.fit>` /
    :meth:`SDHSIClassifier.fit <sklearn_mmlgnet.SDHSIClassifier.fit>`, their
    ``predict`` and ``predict_proba``, ``cross_val_score`` and ``GridSearchCV``:
    indexing with an int gives one patch; with a slice, an index array or a boolean
    mask, another ``ScenePatches`` over the same scene. Memory is the scene's, not
    ``n x bands x P x P``; ``np.asarray(X)`` materialises every patch. The networks
    batch it as they batch an array; transformers in a ``Pipeline`` in front would
    materialise it, so scale the scene itself first (e.g. with the statistics of a
    :class:`~sklearn_mmlgnet.BandStandardScaler` fitted on a sample of patches).

    Parameters
    ----------
    hsi : array-like of shape (H, W, B)
    lidar : array-like of shape (H, W, L) or (H, W), or None
    rows, cols : array-like of int, shape (n,)
        The patch centres.
    patch_size : int, default=11
        Odd patch side P.
    pad_mode : {"reflect", "symmetric", "edge", "constant"}, default="reflect"

    Attributes
    ----------
    shape : tuple
        ``(n, B + L, P, P)``.

    Examples
    --------
    >>> import numpy as np
    >>> hsi = np.random.RandomState(0).rand(20, 30, 4)
    >>> rows, cols = np.divmod(np.arange(600), 30)
    >>> X = ScenePatches(hsi, None, rows, cols, patch_size=5)
    >>> X.shape, X[3].shape, X[10:20].shape
    ((600, 4, 5, 5), (4, 5, 5), (10, 4, 5, 5))
    >>> bool((np.asarray(X[:7]) == extract_patches(hsi, None, rows[:7], cols[:7], 5)).all())
    True
    """

    dtype = np.dtype(np.float32)
    ndim = 4

    def __init__(self, hsi, lidar, rows, cols, patch_size=11, pad_mode="reflect"):
        hsi, lidar = check_scene(hsi, lidar)
        H, W = hsi.shape[:2]
        self.patch_size = check_scene_patch_size(patch_size, (H, W))
        self.pad_mode = check_pad_mode(pad_mode)
        rows, cols = _check_coords(rows, "rows"), _check_coords(cols, "cols")
        if rows.shape != cols.shape:
            raise ValueError(f"rows and cols must have the same length; got {rows.shape} and "
                             f"{cols.shape}.")
        if rows.size and (rows.min() < 0 or rows.max() >= H or cols.min() < 0
                          or cols.max() >= W):
            raise ValueError(f"rows/cols must lie inside the {H} x {W} scene.")
        # One float32 cube, channels last: each patch is one fancy-indexed gather.
        parts = [c for c in (hsi, lidar) if c.shape[2]]
        self._cube = np.ascontiguousarray(
            np.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0], dtype=np.float32)
        self.rows, self.cols = rows, cols

    def _subset(self, rows, cols, patch_size=None):
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.rows, new.cols = rows, cols
        new.patch_size = self.patch_size if patch_size is None else patch_size
        return new

    @property
    def shape(self):
        return (len(self.rows), self._cube.shape[2], self.patch_size, self.patch_size)

    def __len__(self):
        return len(self.rows)

    def __repr__(self):
        return f"ScenePatches(shape={self.shape}, pad_mode={self.pad_mode!r})"

    def __getitem__(self, key):
        if isinstance(key, tuple) and len(key) == 2 and key[1] is Ellipsis:
            key = key[0]  # X[idx, ...], as scikit-learn indexes arrays
        if isinstance(key, (int, np.integer)):
            return self._extract(self.rows[[key]], self.cols[[key]])[0]
        if isinstance(key, tuple):
            raise TypeError("ScenePatches takes one index (int, slice, index array or boolean "
                            "mask) over its patches; materialise it with np.asarray first "
                            "to index bands or pixels.")
        return self._subset(self.rows[key], self.cols[key])

    def crop(self, patch_size):
        """The centre ``patch_size x patch_size`` of every patch, still lazy."""
        if patch_size > self.patch_size or patch_size % 2 == 0:
            raise ValueError(f"patch_size must be odd and at most {self.patch_size}; got "
                             f"{patch_size}.")
        return self._subset(self.rows, self.cols, patch_size)

    def _extract(self, rows, cols):
        H, W, _ = self._cube.shape
        offsets = np.arange(self.patch_size) - self.patch_size // 2
        ri, rv = border_index(rows[:, None] + offsets, H, self.pad_mode)
        ci, cv = border_index(cols[:, None] + offsets, W, self.pad_mode)
        out = self._cube[ri[:, :, None], ci[:, None, :]]  # (n, P, P, C)
        if self.pad_mode == "constant":
            out = out * (rv[:, :, None] & cv[:, None, :])[..., None]
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2))

    def __array__(self, dtype=None, copy=None):
        out = self._extract(self.rows, self.cols)
        return out if dtype is None else out.astype(dtype, copy=False)
