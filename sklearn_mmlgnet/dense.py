"""Exact dense full-scene prediction: every pixel's convolution features computed once.

The encoders of :class:`~sklearn_mmlgnet.nn.MMLGNetModule` and
:class:`~sklearn_mmlgnet.nn.SDHSINet` use "valid" 3 x 3 convolutions (no zero
padding inside a patch). A P x P patch's stage-k feature map is then the crop,
around the patch centre, of the feature map of the whole (padded) scene, and
what the network reads from a patch's last map is a function of the dense map:

* its global average is a ``P - 2K`` box filter of the dense map (K stages),
  computed here as two separable stride-1 average poolings;
* its centre-pixel features are the dense features at that pixel;
* batch norm in eval mode is a per-channel affine map, ReLU acts pixel-wise,
  and the fusion, projection and heads act on each pixel's pooled features.

So running the convolutions once over the scene (padded as
:func:`~sklearn_mmlgnet.patches.extract_patches` pads it) gives, for every
pixel, the logits the patch network gives on that pixel's patch, up to float
rounding: about ``P^2`` times less convolution work than patch by patch.

The scene is walked in tiles with a halo of ``P // 2`` pixels (what a patch
reaches beyond its centre) on each side, so memory is bounded by the tile, not
by the scene. Band-wise transformers before the classifier in a Pipeline
(:class:`~sklearn_mmlgnet.preprocessing.SpectralNormalizer`,
:class:`~sklearn_mmlgnet.preprocessing.BandStandardScaler`,
:class:`~sklearn_mmlgnet.preprocessing.SpectralPCA`) map each pixel on its own,
so they are applied to the tile's pixels as P = 1 patches.

Dense prediction is exact only for patches at least the network's
``receptive_field`` wide (``2 * n_stages + 1``: 5 for MMLGNet's two stages, 9
for SDHSI-Net's four); smaller patches are replicate-padded inside the network,
which has no scene-level equivalent, so such models are predicted patch by patch.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import sys

import numpy as np
import torch
import torch.nn.functional as F

from .augment import N_SYMMETRIES, dihedral, inverse_dihedral
from .nn import MMLGNetModule, SDHSINet, TextSimilarityHead, mean_of_heads
from .patches import _border_index, _check_pad_mode, _check_patch_size, _check_scene

__all__ = ["DenseNotSupportedError", "dense_support", "iter_dense_proba", "supports_dense"]

# Float32 values a tile's feature maps may hold (192 MiB): tiles of about 170 x 170
# pixels for MMLGNet's default widths on 145 bands, whatever the scene size.
_DEFAULT_TILE_FLOATS = 48 * 2**20
_HEAD_CHUNK = 16384  # pixels per pass through the fusion / heads


class DenseNotSupportedError(ValueError):
    """The model cannot be predicted densely; the message says why."""


def _unwrap_search(estimator):
    """A fitted GridSearchCV-like object predicts with its ``best_estimator_``."""
    best = getattr(estimator, "best_estimator_", None)
    if best is not None and hasattr(estimator, "cv_results_"):
        return best
    return estimator


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
        of them, or a fitted search (GridSearchCV) refitted on one.
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
    """
    from sklearn.pipeline import Pipeline
    from sklearn.utils.validation import check_is_fitted

    from ._estimator import _SkorchPatchClassifier
    from .preprocessing import BandStandardScaler, SpectralNormalizer, SpectralPCA

    est = _unwrap_search(estimator)
    transformers = []
    if isinstance(est, Pipeline):
        *steps, (_, clf) = est.steps
        for name, step in steps:
            if step is None or step == "passthrough":
                continue
            if type(step) not in (SpectralNormalizer, BandStandardScaler, SpectralPCA):
                raise DenseNotSupportedError(
                    f"Pipeline step {name!r} ({type(step).__name__}) is not a band-wise "
                    "transformer (SpectralNormalizer, BandStandardScaler, SpectralPCA); dense "
                    "prediction needs every step before the classifier to map each pixel on "
                    "its own.")
            transformers.append(step)
    else:
        clf = est
    if not isinstance(clf, _SkorchPatchClassifier):
        raise DenseNotSupportedError(
            f"{type(clf).__name__} is not an MMLGNetClassifier or SDHSIClassifier; only "
            "their networks can be evaluated densely.")
    check_is_fitted(clf, "net_")
    module = clf.net_.module_
    if not isinstance(module, (MMLGNetModule, SDHSINet)):
        raise DenseNotSupportedError(
            f"the fitted network is a {type(module).__name__}, not MMLGNetModule or SDHSINet.")
    P = clf.patch_size_
    rf = module.receptive_field
    if P % 2 == 0 or P < rf:
        raise DenseNotSupportedError(
            f"the model was fitted on {P} x {P} patches; dense prediction is exact only for odd "
            f"patches of at least the network's receptive field ({rf} x {rf}).")
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


def _check_bands(bands, n_channels):
    """Channel indices selected by ``bands`` (slice, int sequence or bool mask) or None."""
    if bands is None:
        return None
    if isinstance(bands, slice):
        return np.arange(n_channels)[bands]
    idx = np.asarray(bands)
    if idx.dtype == bool:
        if idx.shape != (n_channels,):
            raise ValueError(
                f"bands as a boolean mask must have one entry per scene band ({n_channels}); "
                f"got shape {idx.shape}.")
        return np.flatnonzero(idx)
    if idx.ndim != 1 or idx.size == 0 or idx.dtype.kind not in "iu":
        raise ValueError(f"bands must be a slice, a non-empty sequence of ints or a boolean mask; "
                         f"got {bands!r}.")
    if idx.min() < -n_channels or idx.max() >= n_channels:
        raise ValueError(f"bands must index the scene's {n_channels} bands (HSI then LiDAR); "
                         f"got {bands!r}.")
    return idx % n_channels


def _autocast_dtype(autocast):
    if autocast is None or autocast is False:
        return None
    if autocast is True:
        return torch.bfloat16
    if isinstance(autocast, torch.dtype) and autocast in (torch.bfloat16, torch.float16):
        return autocast
    raise ValueError(f"autocast must be False, True (bfloat16) or torch.bfloat16 / torch.float16; "
                     f"got {autocast!r}.")


def _floats_per_pixel(module, n_channels, turned_copy=False):
    """Rough float32 values a padded pixel costs across the convolution stages.

    ``turned_copy``: test-time augmentation holds a turned copy of the tile's input too.
    """
    n_inputs = 2 * n_channels if turned_copy else n_channels
    if isinstance(module, SDHSINet):
        total, depth = n_inputs, n_channels
        for stage in module.stages3d:
            conv = stage[0]
            depth = depth - conv.kernel_size[0] + 1
            total += 2 * conv.out_channels * depth  # conv output and batch-norm output
        return total + 4 * module.conv2d[0].out_channels
    total = n_inputs
    for enc in (module.hsi, module.lidar):
        if enc is not None:
            total += sum(2 * s[0].out_channels for s in enc.stages) + 2 * enc.out_features
    if module.spectral is not None:  # the pixels' copy and the path's output
        total += n_channels + module.spectral.out_features
    return total


def _tile_shape(tile_size, module, n_channels, H, W, P, turned_copy=False):
    """(rows, cols) of the output pixels of a tile."""
    if tile_size is None:  # padded pixels:
        budget = _DEFAULT_TILE_FLOATS // _floats_per_pixel(module, n_channels, turned_copy)
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


def _box_and_centre(x, k):
    """Per pixel: the mean of the k x k window around it and its own features.

    ``x`` is (1, C, R + k - 1, W + k - 1); returns two (R * W, C) arrays, pixels in
    raster order: what ``nn._pool`` gives on every pixel's k x k patch of ``x``.
    """
    # Box sums in float32 even under autocast; channels-last so the pooling is
    # fast and the pixel-major (R * W, C) views below need no transpose copy.
    x = x.float().contiguous(memory_format=torch.channels_last)
    mean = F.avg_pool2d(F.avg_pool2d(x, (k, 1), stride=1), (1, k), stride=1)
    return [_pixels(mean), _centres(x, k)]


def _pixels(x):
    """A (1, C, R, W) map as (R * W, C) rows, pixels in raster order."""
    return x[0].permute(1, 2, 0).reshape(-1, x.shape[1])


def _centres(x, k):
    """Per pixel: the features at the centre of its k x k window, as (R * W, C) rows."""
    h = k // 2
    return _pixels(x[:, :, h:x.shape[2] - h, h:x.shape[3] - h])


def _head_on_parts(first, rest, parts):
    """``rest(first(cat(parts, dim=1)))`` in chunks of pixels, without the concatenation.

    ``first`` is the Linear layer that reads the pooled features: its weight is
    split by columns, one block per part, so no (pixels, features) copy is made.
    """
    sizes = [p.shape[1] for p in parts]
    weights = [w.t().contiguous() for w in first.weight.split(sizes, dim=1)]
    bias = first.bias if first.bias is not None else torch.zeros(
        first.out_features, dtype=weights[0].dtype, device=weights[0].device)
    out = []
    for i in range(0, len(parts[0]), _HEAD_CHUNK):
        z = torch.addmm(bias, parts[0][i:i + _HEAD_CHUNK], weights[0])
        for p, w in zip(parts[1:], weights[1:]):
            # Accumulate in place (no temporaries); in the dtype autocast chose.
            z.addmm_(p[i:i + _HEAD_CHUNK].to(z.dtype), w.to(z.dtype))
        out.append(rest(z))
    return torch.cat(out)


def _fused_stages(stages):
    """Each (conv, batch norm, ReLU) stage as (conv with the batch norm folded in, ReLU).

    In eval mode batch norm is a per-channel affine map, so it folds into the
    convolution's weights and bias (one pass over the feature map fewer); other
    stage layouts are used as they are.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = []
    for stage in stages:
        layers = list(stage) if isinstance(stage, torch.nn.Sequential) else []
        if (len(layers) == 3 and isinstance(layers[0], torch.nn.modules.conv._ConvNd)
                and isinstance(layers[1], torch.nn.modules.batchnorm._BatchNorm)
                and isinstance(layers[2], torch.nn.ReLU)):
            fused.append(torch.nn.Sequential(fuse_conv_bn_eval(layers[0], layers[1]),
                                             torch.nn.ReLU(inplace=True)))
        else:
            fused.append(stage)
    return fused


def _text_head(head):
    """The text head as a function of the fused features, in fewer operations.

    ``head(z) = scale * normalize(W z + b) @ T.T`` with W of shape (D, F). When the
    text dimension D exceeds F (512 against 256 by default), ``W z + b`` lies in an
    (F + 1)-dimensional affine subspace: with the reduced QR factorisation W = Q R,
    ``W z + b = Q u + b_perp`` where ``u = R z + Q.T b`` and ``b_perp`` is orthogonal
    to Q's columns, so ``|W z + b|^2 = |u|^2 + |b_perp|^2`` and
    ``(W z + b) . t = u . (Q.T t) + b_perp . t``. The same cosines (or, for a head with
    ``normalize=False``, dot products over ``sqrt(D)``), from F-wide instead of D-wide
    arrays, plus the head's class bias if it has one. An orthogonal change of basis: no
    cancellation.
    """
    if type(head) is not TextSimilarityHead or head.proj.in_features >= head.proj.out_features:
        return head
    with torch.no_grad():  # in float64, then stored in float32
        W, b = head.proj.weight.double(), head.proj.bias.double()
        T = head.class_embeddings().double()
        Q, R = torch.linalg.qr(W)  # (D, F), (F, F)
        b_par = Q.t() @ b
        b_perp = b - Q @ b_par
        A = (Q.t() @ T.t()).float()  # (F, n_classes)
        beta = (T @ b_perp).float()
        norm2_perp = float(b_perp @ b_perp)
        Rt, b_par = R.t().contiguous().float(), b_par.float()

    def logits(z):
        u = torch.addmm(b_par, z, Rt.to(z.dtype)).float()
        if head.normalize:
            norm = (u.square().sum(dim=1, keepdim=True) + norm2_perp).sqrt().clamp_min(1e-12)
        else:
            norm = math.sqrt(W.shape[0])
        # As TextSimilarityHead.forward (the dense tests check they agree).
        out = head.logit_scale.exp() * ((u @ A + beta) / norm)
        return out if head.bias is None else out + head.bias

    return logits


def _mmlgnet_logits(module, fused, x, P):
    """Logits of every pixel of a padded tile (1, C, R + P - 1, W + P - 1); with
    ``fused["students"]`` (the student heads, one per stage but the last), the log of
    the mean of every head's probabilities (``predict_heads="mean"``)."""
    students = fused["students"]
    parts, student_parts = [], [[] for _ in students]
    for enc, xe in ((module.hsi, x[:, : module.n_hsi_bands]),
                    (module.lidar, x[:, module.n_hsi_bands:])):
        if enc is None:
            continue
        xe = xe.contiguous(memory_format=torch.channels_last)
        for k, stage in enumerate(fused[enc]):
            xe = stage(xe)
            if k < len(students):  # student k reads stage k of every encoder that has one
                student_parts[k] += _box_and_centre(xe, P - 2 * (k + 1))
        parts += _box_and_centre(xe, P - 2 * len(enc.stages))  # as MMLGNetModule.forward
        del xe
    if module.spectral is not None:  # per pixel: the centre pixel of its patch is itself
        pixels = _centres(x, P)
        parts.append(torch.cat([module.spectral(pixels[i:i + _HEAD_CHUNK])
                                for i in range(0, len(pixels), _HEAD_CHUNK)]))
    fusion = module.fusion
    head = fused["head"]
    logits = _head_on_parts(fusion[0], lambda z: head(fusion[1:](z)), parts)
    if not students:
        return logits
    aux = [torch.cat([student(torch.cat([p[i:i + _HEAD_CHUNK] for p in sp], dim=1))
                      for i in range(0, len(sp[0]), _HEAD_CHUNK)])
           for student, sp in zip(students, student_parts)]
    return mean_of_heads([logits] + aux)


def _sdhsi_logits(module, fused, x, P):
    """The final head's logits, or with ``fused["students"]`` ({stage: student head})
    the log of the mean of every head's probabilities (``predict_heads="mean"``)."""
    students = fused["students"]
    x = x.unsqueeze(1)
    aux = []
    for k, stage in enumerate(fused[module.stages3d], start=1):
        x = stage(x)
        if k in students:  # what SDHSINet.forward pools for this stage's student
            feats = x.flatten(1, 2) if module.student_hidden else x.mean(dim=2)
            aux.append(_student_on_parts(students[k], _box_and_centre(feats, P - 2 * k)))
            del feats
    x = fused[module.conv2d][0](x.flatten(1, 2))
    n_stages = len(module.stages3d) + 1
    parts = _box_and_centre(x, P - 2 * n_stages)
    del x
    logits = _head_on_parts(module.fc[0], module.fc[1:], parts)
    if n_stages in students:
        aux.append(_student_on_parts(students[n_stages], parts))
    return mean_of_heads([logits] + aux) if students else logits


def _student_on_parts(head, parts):
    """A student head (a Linear layer, or Linear first in a Sequential) on pooled parts."""
    if isinstance(head, torch.nn.Sequential):
        return _head_on_parts(head[0], head[1:], parts)
    return _head_on_parts(head, torch.nn.Identity(), parts)


def _tile_proba(logits_fn, module, fused, x, P, symmetries):
    """(R, W, n_classes) probabilities of a padded tile, summed over ``symmetries``.

    The network runs on each symmetry of the tile; its output map is turned back
    into the tile's own orientation before it is added.
    """
    R, W = x.shape[2] - P + 1, x.shape[3] - P + 1
    total = None
    for k in symmetries:
        xk = dihedral(x, k)
        logits = logits_fn(module, fused, xk, P)
        proba = torch.softmax(logits.float(), dim=-1)
        del logits
        rk, wk = xk.shape[2] - P + 1, xk.shape[3] - P + 1
        proba = inverse_dihedral(proba.t().reshape(-1, rk, wk), k)  # (n_classes, R, W)
        total = proba if total is None else total + proba
    return total.permute(1, 2, 0).reshape(R, W, -1)


def _transform_pixels(slab, transformers):
    """Apply per-pixel transformers to a (rows, cols, C) slab, as P = 1 patches."""
    if not transformers:
        return slab
    R, W, C = slab.shape
    X = slab.reshape(R * W, C, 1, 1)  # 4-D: the transformers keep their float32 patch arithmetic
    for t in transformers:
        X = t.transform(X)
    return np.asarray(X, dtype=np.float32).reshape(R, W, -1)


def iter_dense_proba(estimator, hsi, lidar, patch_size=11, pad_mode="reflect", mask=None,
                     bands=None, tile_size=None, autocast=False, progress=False):
    """Class probabilities of every pixel, computed densely tile by tile.

    Gives, up to float rounding, what ``estimator.predict_proba`` gives on the
    pixels' patches from :func:`~sklearn_mmlgnet.patches.extract_patches` (see the
    module docstring), on the estimator's device.

    Parameters
    ----------
    estimator : fitted estimator
        See :func:`dense_support`.
    hsi, lidar, patch_size, pad_mode, mask
        As in :func:`~sklearn_mmlgnet.patches.iter_scene_patches`. Only the
        model's ``patch_size_`` matters (patches are centre-cropped to it anyway).
    bands : slice, sequence of int or bool mask, optional
        Scene bands (HSI then LiDAR) the model sees, in order; default all.
    tile_size : int or (int, int), optional
        Output rows and columns per tile (each tile also reads a halo of
        ``P // 2`` pixels around it). By default tiles as square as the scene
        allows, sized so a tile's feature maps take about 200 MiB: memory is
        bounded whatever the scene size.
    autocast : bool or torch.dtype, default=False
        Run the network under :func:`torch.autocast` (``True``: bfloat16).
        Faster on GPUs; the probabilities then differ from float32 by up to about
        1e-2.
    progress : bool, default=False
        Show a tqdm progress bar over the scene's rows.

    Yields
    ------
    r0, c0 : int
        Scene row and column of the tile's top-left output pixel.
    proba : ndarray of shape (rows, cols, n_classes), float64
        Columns follow the classifier's ``classes_``.
    """
    transformers, clf = dense_support(estimator, patch_size)
    hsi, lidar = _check_scene(hsi, lidar)
    H, W = hsi.shape[:2]
    _check_patch_size(patch_size, (H, W))
    _check_pad_mode(pad_mode)
    n_scene = hsi.shape[2] + lidar.shape[2]
    band_idx = _check_bands(bands, n_scene)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (H, W):
            raise ValueError(f"mask must have the scene's shape {(H, W)}; got {mask.shape}.")
    amp = _autocast_dtype(autocast)
    module = clf.net_.module_
    device = next(module.parameters()).device
    P = clf.patch_size_
    h = P // 2
    # A symmetry of the whole tile is that symmetry of every patch in it (the halo is
    # read by the same rule on every side), so test-time augmentation is exact here too.
    symmetries = range(N_SYMMETRIES) if clf._test_time_augment() else [0]
    tile_rows, tile_cols = _tile_shape(tile_size, module, n_scene, H, W, P,
                                       turned_copy=len(symmetries) > 1)
    was_training = module.training
    module.eval()  # batch norm as its per-channel affine map, no dropout
    if isinstance(module, SDHSINet):
        logits_fn = _sdhsi_logits
        fused = {module.stages3d: _fused_stages(module.stages3d),
                 module.conv2d: _fused_stages([module.conv2d]),
                 "students": (dict(zip(module.student_stages, module.aux))
                              if module.aux and clf._predict_heads() == "mean" else {})}
    else:
        logits_fn = _mmlgnet_logits
        fused = {enc: _fused_stages(enc.stages) for enc in (module.hsi, module.lidar) if enc}
        fused["head"] = _text_head(module.head)
        fused["students"] = list(module.aux) if clf._predict_heads() == "mean" else []
    amp_ctx = (torch.autocast(device_type=device.type, dtype=amp) if amp is not None
               else contextlib.nullcontext())
    from tqdm.auto import tqdm

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
            row_idx, row_valid = _border_index(np.arange(r0 - h, r1 + h), H, pad_mode)
            col_idx, col_valid = _border_index(np.arange(c0 - h, c1 + h), W, pad_mode)
            # Only the tile (and its halo) is gathered, never whole rows of the scene.
            parts = [c[np.ix_(row_idx, col_idx)] for c in (hsi, lidar) if c.shape[2]]
            slab = (np.concatenate(parts, axis=-1).astype(np.float32, copy=False) if len(parts) > 1
                    else parts[0].astype(np.float32))
            del parts
            if pad_mode == "constant":
                slab *= (row_valid[:, None] & col_valid[None, :])[..., None]
            if band_idx is not None:
                slab = slab[..., band_idx]
            slab = _transform_pixels(slab, transformers)
            if slab.shape[-1] != clf.n_features_in_:
                raise ValueError(
                    f"the scene gives {slab.shape[-1]} bands to the classifier, but "
                    f"{type(clf).__name__} is expecting {clf.n_features_in_} features as input "
                    f"({clf._band_description()}); select them with bands=.")
            # (rows, cols, C) is already channels-last: the layout oneDNN's CPU
            # convolutions and pooling run fastest on, with no copy.
            x = torch.from_numpy(np.ascontiguousarray(slab)).permute(2, 0, 1)[None]
            del slab
            with torch.inference_mode(), amp_ctx:
                proba = _tile_proba(logits_fn, module, fused, x.to(device), P, symmetries)
            del x
            proba = proba.cpu().numpy().astype(np.float64)
            proba /= proba.sum(axis=-1, keepdims=True)
            yield int(r0), int(c0), proba
            bar.update(n_done)
    finally:
        bar.close()
        module.train(was_training)
