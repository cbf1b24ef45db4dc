"""Exact dense full-scene prediction: every pixel's convolution features computed once.

The networks of :mod:`sklearn_mmlgnet.nn` use "valid" 3 x 3 convolutions (no zero
padding inside a patch), so a P x P patch's feature maps are crops of the whole
(padded) scene's maps, and each network's dense forward
(:meth:`MMLGNetModule.dense_logits <sklearn_mmlgnet.nn.MMLGNetModule.dense_logits>`,
:meth:`SDHSINet.dense_logits <sklearn_mmlgnet.nn.SDHSINet.dense_logits>`) gives, for
every pixel of a tile, the logits its patch forward gives on that pixel's patch, up
to float rounding, at about ``P^2`` times less convolution work.

This module is the tiling engine around it: :func:`iter_dense_proba` walks the
scene in tiles with a halo of ``P // 2`` pixels (what a patch reaches beyond its
centre), padded at the scene's border as
:func:`~sklearn_mmlgnet.patches.extract_patches` pads it, so memory is bounded by
the tile, not by the scene. Band-wise transformers before the network (a
Pipeline's :class:`~sklearn_mmlgnet.preprocessing.SpectralNormalizer`,
:class:`~sklearn_mmlgnet.preprocessing.BandStandardScaler`,
:class:`~sklearn_mmlgnet.preprocessing.SpectralPCA`) map each pixel on its own, so
they are applied to the tile's pixels as P = 1 patches. Test-time augmentation is
exact too: a symmetry of the whole tile is that symmetry of every patch in it.

Dense prediction is exact only for patches at least the network's
``receptive_field`` wide (``2 * n_stages + 1``: 5 for MMLGNet's two stages, 9 for
SDHSI-Net's four); smaller patches are replicate-padded inside the network, which
has no scene-level equivalent, so such models are predicted patch by patch.
:mod:`sklearn_mmlgnet.prediction` chooses between the two paths for a fitted model.
"""

from __future__ import annotations

import math
import numbers
import sys

import numpy as np
import torch
from tqdm.auto import tqdm

from .augment import N_SYMMETRIES, dihedral, inverse_dihedral
from .nn._ops import reuse_plans
from .patches import (
    border_index,
    check_bands,
    check_mask,
    check_pad_mode,
    check_scene,
    check_scene_patch_size,
)

__all__ = ["DenseNotSupportedError", "check_dense_network", "iter_dense_proba"]

# Float32 values a tile's feature maps may hold (192 MiB): tiles of about 170 x 170
# pixels for MMLGNet's default widths on 145 bands, whatever the scene size.
_DEFAULT_TILE_FLOATS = 48 * 2**20


class DenseNotSupportedError(ValueError):
    """The model cannot be predicted densely; the message says why."""


def check_dense_network(module, patch_size):
    """Check that ``module`` has a dense forward exact on ``patch_size`` patches.

    Parameters
    ----------
    module : torch.nn.Module
        A network with ``dense_logits``, ``receptive_field`` and ``in_channels``
        (:class:`~sklearn_mmlgnet.nn.MMLGNetModule`,
        :class:`~sklearn_mmlgnet.nn.SDHSINet`).
    patch_size : int
        The patch side the network was fitted on.

    Returns
    -------
    int
        ``patch_size``.

    Raises
    ------
    DenseNotSupportedError
        Saying why the network can only be predicted patch by patch.

    Examples
    --------
    >>> import torch
    >>> from sklearn_mmlgnet.nn import SDHSINet
    >>> check_dense_network(SDHSINet(6, 3), 9)
    9
    """
    if not all(hasattr(module, a) for a in ("dense_logits", "receptive_field", "in_channels")):
        raise DenseNotSupportedError(
            f"the network is a {type(module).__name__}, which has no dense forward "
            "(dense_logits); only MMLGNetModule and SDHSINet have one.")
    rf = module.receptive_field
    if (not isinstance(patch_size, numbers.Integral) or patch_size % 2 == 0
            or patch_size < rf):
        raise DenseNotSupportedError(
            f"the model was fitted on {patch_size} x {patch_size} patches (patch_size_="
            f"{patch_size!r}); dense prediction (method='dense') is exact only for odd patches "
            f"of at least the network's receptive field ({rf} x {rf}).")
    return int(patch_size)


def _autocast_dtype(autocast):
    if autocast is None or autocast is False:
        return None
    if autocast is True:
        return torch.bfloat16
    if isinstance(autocast, torch.dtype) and autocast in (torch.bfloat16, torch.float16):
        return autocast
    raise ValueError(f"autocast must be False, True (bfloat16) or torch.bfloat16 / torch.float16; "
                     f"got {autocast!r}.")


def _tile_shape(tile_size, module, H, W, P, turned_copy=False):
    """(rows, cols) of the output pixels of a tile.

    ``turned_copy``: test-time augmentation holds a turned copy of the tile's input too.
    """
    if tile_size is None:  # padded pixels:
        per_pixel = ((2 if turned_copy else 1) * module.in_channels
                     + module.dense_floats_per_pixel())
        budget = _DEFAULT_TILE_FLOATS // per_pixel
        side = max(P, math.isqrt(budget) - (P - 1))  # square tiles: the least halo
        if W <= side:  # narrow scenes: full-width tiles, as many rows as the budget allows
            return min(H, max(P, budget // (W + P - 1) - (P - 1))), W
        # Columns split evenly (no sliver tile); rows fixed by the budget alone, not by H,
        # so the largest tile, and the peak memory, is the same for any scene height.
        return min(H, side), -(-W // -(-W // side))
    sizes = (tile_size, tile_size) if isinstance(tile_size, numbers.Integral) else tuple(tile_size)
    if len(sizes) != 2 or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1
                              for v in sizes):
        raise ValueError(f"tile_size must be a positive int or a pair of them; got {tile_size!r}.")
    return int(sizes[0]), int(sizes[1])


def _tile_proba(module, x, P, heads, symmetries, dtype):
    """(R, W, n_classes) probabilities of a padded tile (1, C, R + P - 1, W + P - 1),
    summed over ``symmetries``.

    The network runs on each symmetry of the tile; its output map is turned back
    into the tile's own orientation before it is added.
    """
    total = None
    for k in symmetries:
        xk = x if k == 0 else dihedral(x, k)  # the identity: no copy
        logits = module.dense_logits(xk, P, heads=heads, dtype=dtype)  # (1, K, rk, wk)
        del xk
        proba = torch.softmax(logits.float(), dim=1)
        proba = (proba if k == 0 else inverse_dihedral(proba, k))[0]
        del logits
        total = proba if total is None else total + proba
    return total.permute(1, 2, 0)


def _gather(array, rows, cols):
    """``array[rows][:, cols]``: a view when both index runs are consecutive (a tile
    inside the scene), else a gathered copy (a tile reaching over the border)."""
    def run(idx):
        if len(idx) and idx[-1] - idx[0] == len(idx) - 1 and (np.diff(idx) == 1).all():
            return slice(int(idx[0]), int(idx[-1]) + 1)
        return None

    r, c = run(rows), run(cols)
    if r is not None and c is not None:
        return array[r, c]
    return array[np.ix_(rows, cols)]


def _transform_pixels(slab, transformers):
    """Apply per-pixel transformers to a (rows, cols, C) slab, as P = 1 patches."""
    if not transformers:
        return slab
    R, W, C = slab.shape
    X = slab.reshape(R * W, C, 1, 1)  # 4-D: the transformers keep their float32 patch arithmetic
    for t in transformers:
        X = t.transform(X)
    return np.asarray(X, dtype=np.float32).reshape(R, W, -1)


def iter_dense_proba(module, hsi, lidar, patch_size, *, heads="final", test_time_augment=False,
                     transformers=(), pad_mode="reflect", mask=None, bands=None, tile_size=None,
                     autocast=False, progress=False):
    """Class probabilities of every pixel from a network's dense forward, tile by tile.

    Gives, up to float rounding, the softmax of ``module(patches, heads=heads)`` (in
    eval mode) on the pixels' patches from
    :func:`~sklearn_mmlgnet.patches.extract_patches`, on the module's device. The
    module is only read (no mode set, no attribute changed): threads may share it.

    Parameters
    ----------
    module : torch.nn.Module
        The network (see :func:`check_dense_network`), in eval mode for batch norm
        and dropout as at prediction (its dense forward computes the eval-mode
        function whatever the mode).
    hsi, lidar, pad_mode, mask
        As in :func:`~sklearn_mmlgnet.patches.iter_scene_patches`.
    patch_size : int
        The patch side the network was fitted on.
    heads : {"final", "mean"}, default="final"
        The network's heads to read (``"mean"``: the mean of every head's
        probabilities).
    test_time_augment : bool, default=False
        Average the probabilities of the 8 symmetries of every patch.
    transformers : sequence of fitted transformers, default=()
        Band-wise transformers applied to every pixel (as a P = 1 patch) before the
        network, in order.
    bands : slice, sequence of int or bool mask, optional
        Scene bands (HSI then LiDAR) passed on, in order; default all.
    tile_size : int or (int, int), optional
        Output rows and columns per tile (each tile also reads a halo of
        ``P // 2`` pixels around it). By default tiles as square as the scene
        allows, sized so a tile's feature maps take about 200 MiB: memory is
        bounded whatever the scene size.
    autocast : bool or torch.dtype, default=False
        Run the network's convolutions and per-pixel layers in bfloat16 (``True``)
        or the dtype given, with float32 accumulation and float32 logits. About 1.7
        times faster on CPUs with AVX-512 BF16 or AMX and on GPUs (slower on CPUs
        without them); the probabilities differ from float32 by up to about 1e-2
        and labels agreed on 99.97 % of the synthetic scene's pixels
        (docs/performance.rst). Float32 by default, so that the dense map is the
        patch path's.
    progress : bool, default=False
        Show a tqdm progress bar over the scene's pixels.

    Yields
    ------
    r0, c0 : int
        Scene row and column of the tile's top-left output pixel.
    proba : ndarray of shape (rows, cols, n_classes), float64
        Rows sum to 1; columns follow the network's classes.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn_mmlgnet.nn import SDHSINet
    >>> net = SDHSINet(4, 3, conv3d_channels=(2,), spectral_kernels=(3,)).eval()
    >>> hsi = np.random.RandomState(0).normal(size=(8, 10, 4))
    >>> [(r0, c0, p.shape) for r0, c0, p in iter_dense_proba(net, hsi, None, 5, tile_size=(8, 6))]
    [(0, 0, (8, 6, 3)), (0, 6, (8, 4, 3))]
    """
    P = check_dense_network(module, patch_size)
    if not (isinstance(heads, str) and heads in ("final", "mean")):
        raise ValueError(f"heads must be 'final' or 'mean'; got {heads!r}.")
    if not isinstance(test_time_augment, (bool, np.bool_)):
        raise ValueError(f"test_time_augment must be True or False; got {test_time_augment!r}.")
    hsi, lidar = check_scene(hsi, lidar)
    H, W = hsi.shape[:2]
    check_scene_patch_size(P, (H, W))
    check_pad_mode(pad_mode)
    n_scene = hsi.shape[2] + lidar.shape[2]
    band_idx = check_bands(bands, n_scene)
    mask = check_mask(mask, (H, W))
    amp = _autocast_dtype(autocast)
    device = next(module.parameters()).device
    h = P // 2
    symmetries = range(N_SYMMETRIES) if test_time_augment else [0]
    tile_rows, tile_cols = _tile_shape(tile_size, module, H, W, P,
                                       turned_copy=len(symmetries) > 1)
    plans = {}  # the network's prepared weights (folded batch norm...), kept across tiles
    bar = tqdm(total=H * W if mask is None else int(mask.sum()), desc="dense prediction",
               unit="px", unit_scale=True, disable=not progress, file=sys.stderr)
    try:
        for r0, c0 in ((r, c) for r in range(0, H, tile_rows) for c in range(0, W, tile_cols)):
            r1, c1 = min(H, r0 + tile_rows), min(W, c0 + tile_cols)
            if mask is not None:  # only the rows and columns of this tile's masked pixels
                tile_mask = mask[r0:r1, c0:c1]
                rows = np.flatnonzero(tile_mask.any(axis=1))
                cols = np.flatnonzero(tile_mask.any(axis=0))
                if not rows.size:
                    continue
                r0, r1, c0, c1 = r0 + rows[0], r0 + rows[-1] + 1, c0 + cols[0], c0 + cols[-1] + 1
                n_done = int(tile_mask.sum())
            else:
                n_done = (r1 - r0) * (c1 - c0)
            row_idx, row_valid = border_index(np.arange(r0 - h, r1 + h), H, pad_mode)
            col_idx, col_valid = border_index(np.arange(c0 - h, c1 + h), W, pad_mode)
            # Only the tile (and its halo) is read, never whole rows of the scene; inside
            # the scene with one copy (the concatenation), no gather.
            parts = [_gather(c, row_idx, col_idx) for c in (hsi, lidar) if c.shape[2]]
            slab = (np.concatenate(parts, axis=-1).astype(np.float32, copy=False) if len(parts) > 1
                    else parts[0].astype(np.float32))
            del parts
            if pad_mode == "constant":
                slab *= (row_valid[:, None] & col_valid[None, :])[..., None]
            if band_idx is not None:
                slab = slab[..., band_idx]
            slab = _transform_pixels(slab, transformers)
            if slab.shape[-1] != module.in_channels:
                raise ValueError(
                    f"the scene gives {slab.shape[-1]} bands to the network, but it is "
                    f"expecting {module.in_channels} features as input; select them with "
                    "bands=.")
            # (rows, cols, C) is already channels-last: the layout oneDNN's CPU
            # convolutions and pooling run fastest on, with no copy.
            x = torch.from_numpy(np.ascontiguousarray(slab)).permute(2, 0, 1)[None]
            del slab
            with torch.inference_mode(), reuse_plans(plans):
                proba = _tile_proba(module, x.to(device), P, heads, symmetries, amp)
            del x
            proba = proba.cpu().numpy().astype(np.float64)
            proba /= proba.sum(axis=-1, keepdims=True)
            yield int(r0), int(c0), proba
            bar.update(n_done)
    finally:
        bar.close()
