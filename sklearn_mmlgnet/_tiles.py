"""Tile-by-tile prediction behind :func:`sklearn_mmlgnet.io.predict_raster`.

Each tile is read with its halo, nodata is filled with the model's per-band
fill values, the tile is classified with :mod:`sklearn_mmlgnet.prediction`, on
the driver or on dask workers, and the map codes of the model's classes are
returned. Also the check of a scene's band statistics against the training range.
"""

from __future__ import annotations

import contextlib
import numbers
import warnings

import numpy as np
from rasterio.windows import Window

from ._io import gdal_env, open_raster
from ._raster import band_indexes, read_block
from ._warp import read_on_grid
from .prediction import predict_scene, predict_scene_proba

# GDAL's block cache defaults to 5 % of RAM and fills with every block read or
# written: capped while predicting so memory stays flat in the scene size.
GDAL_CACHE_MB = 64


def unwrap(model):
    """(estimator, scene info) of a :class:`~sklearn_mmlgnet.scene.SceneModel` or a classifier."""
    info = getattr(model, "info", None)
    if hasattr(model, "estimator") and isinstance(info, dict):
        return model.estimator, info
    return model, {}


def model_codes(model):
    """(classes, codes): the map code of each of the model's classes.

    Integer classes in 1..65535 are their own codes; other labels get 1..K.
    """
    classes = np.asarray(unwrap(model)[0].classes_)
    if classes.dtype.kind in "iu" and classes.min() >= 1 and classes.max() <= 65535:
        return classes, classes.astype(np.int64)
    return classes, np.arange(1, len(classes) + 1)

def model_patch_size(estimator, info, patch_size):
    if patch_size is not None:
        if not isinstance(patch_size, numbers.Integral) or patch_size < 1 or patch_size % 2 == 0:
            raise ValueError(f"patch_size must be an odd int >= 1; got {patch_size!r}.")
        return int(patch_size)
    if info.get("patch_size"):
        return int(info["patch_size"])
    est = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    if getattr(est, "patch_size_", None):
        return int(est.patch_size_)
    raise ValueError("patch_size is not recorded in the model; pass patch_size.")


def check_model_bands(estimator, info, n_hsi, n_lidar, hsi_name):
    want = (info.get("n_hsi_bands"), info.get("n_lidar_bands"))
    n_in = getattr(estimator, "n_features_in_", None)
    if want[0] is not None and (want[0], want[1]) != (n_hsi, n_lidar):
        raise ValueError(
            f"the model was fitted on {want[0]} HSI + {want[1]} LiDAR bands but {hsi_name} and "
            f"the LiDAR rasters given have {n_hsi} HSI + {n_lidar} LiDAR bands.")
    if n_in is not None and n_in != n_hsi + n_lidar:
        raise ValueError(
            f"the model was fitted on {n_in} bands (HSI + LiDAR) but {hsi_name} and the LiDAR "
            f"rasters given have {n_hsi} + {n_lidar} = {n_hsi + n_lidar}.")


def check_wavelengths(fitted, given, hsi_name, atol=1.0):
    """Refuse HSI bands at other wavelengths (nm, within ``atol``) than the model's, when
    both the model and the raster record them."""
    if not fitted or not given or len(fitted) != len(given):
        return  # a band count that differs is check_model_bands' error
    off = np.flatnonzero(np.abs(np.asarray(fitted) - np.asarray(given)) > atol)
    if off.size:
        k = int(off[0])
        raise ValueError(
            f"{hsi_name}: its HSI bands are not at the wavelengths the model was fitted on "
            f"({off.size} of {len(given)} differ, e.g. band {k + 1}: {given[k]:g} here, "
            f"{fitted[k]:g} in the model); give the raster's bands in the model's order "
            "(bands=) or a raster of the same sensor's bands.")


def check_block_size(block_size):
    if isinstance(block_size, numbers.Integral) and not isinstance(block_size, bool):
        block_size = (block_size, block_size)
    try:
        block_size = tuple(int(b) for b in block_size)
    except (TypeError, ValueError):
        block_size = ()
    if len(block_size) != 2 or min(block_size) < 1:
        raise ValueError(f"block_size must be a positive int or (rows, cols); got {block_size!r}.")
    return block_size


def fill_values(estimator, info, n_bands):
    """Per-band values standing in for nodata inside patches (see module notes)."""
    fill = info.get("fill_values")
    if fill is None:
        for _, step in getattr(estimator, "steps", None) or []:
            mean = getattr(step, "mean_", None)
            if mean is not None and np.shape(mean) == (n_bands,):
                fill = mean
                break
    if fill is None:
        return np.zeros(n_bands, np.float32)
    fill = np.asarray(fill, np.float32)
    if fill.shape != (n_bands,):
        raise ValueError(f"the model's fill values cover {fill.shape[0]} bands, the rasters "
                         f"{n_bands}.")
    return fill

def training_statistics(estimator, info):
    """(mean, std) per band of the training pixels, or None when the model has none."""
    if info.get("fill_values") is not None and info.get("band_std") is not None:
        return np.asarray(info["fill_values"], float), np.asarray(info["band_std"], float)
    steps = getattr(estimator, "steps", None) or []
    first = steps[0][1] if steps else None
    if getattr(first, "mean_", None) is not None and getattr(first, "scale_", None) is not None:
        return np.asarray(first.mean_, float), np.asarray(first.scale_, float)
    return None

def sample_pixels(srcs_indexes, shape, n=4, side=64, grid=None, resampling="bilinear"):
    """Pixels of up to n x n windows of side px spread over the scene: (pixels, bands).

    With ``grid``, the rasters are read onto it (see :func:`read_on_grid`).
    """
    H, W = shape
    rows = np.unique(np.linspace(0, max(H - side, 0), n).astype(int))
    cols = np.unique(np.linspace(0, max(W - side, 0), n).astype(int))
    blocks = []
    for r in rows:
        for c in cols:
            win = Window(int(c), int(r), min(side, W - int(c)), min(side, H - int(r)))
            cube = np.concatenate([read_block(s, idx, win, role) if grid is None else
                                   read_on_grid(s, idx, grid, win, role, resampling)
                                   for s, idx, role in srcs_indexes], axis=-1)
            blocks.append(cube.reshape(-1, cube.shape[-1]))
    return np.concatenate(blocks)

def check_scene_statistics(sample, stats, scene_name, z_max=5.0, ratio_max=10.0):
    """Warn when most bands of the scene lie far outside the training range."""
    mean, std = stats
    sample = sample[np.isfinite(sample).all(axis=1)]
    if len(sample) < 2 or sample.shape[1] != len(mean):
        return
    m, s = sample.mean(axis=0), sample.std(axis=0)
    ok = std > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        z, r = np.abs(m - mean) / std, s / std
    far = ok & ((z > z_max) | (r > ratio_max) | ((r < 1 / ratio_max) & (s > 0)))
    if ok.any() and far.sum() * 2 > ok.sum():
        b = int(np.argmax(np.where(far, z + r + 1 / np.maximum(r, 1e-30), -1)))
        warnings.warn(
            f"the scene {scene_name} looks unlike the training data: {int(far.sum())} of "
            f"{int(ok.sum())} bands lie far outside the training range (band {b}: scene mean "
            f"{m[b]:.4g}, std {s[b]:.4g}; training mean {mean[b]:.4g}, std {std[b]:.4g}). Is it "
            "scaled differently (digital numbers vs reflectance, another unit)? The map may be "
            "meaningless.", UserWarning, stacklevel=3)

def _fill_nan(cube, fill):
    bad = np.isnan(cube)
    if bad.any():
        cube[bad] = np.broadcast_to(fill, cube.shape)[bad]
    return cube

def tiles_of(height, width, block_size):
    rows, cols = block_size
    for r0 in range(0, height, rows):
        for c0 in range(0, width, cols):
            yield (r0, min(height, r0 + rows)), (c0, min(width, c0 + cols))

def predict_tile(model, hsi_path, lidar_paths, tile, patch_size, bands, batch_size, proba,
                 fill, grid=None, resampling="bilinear"):
    """Predict one tile of the map, reading the tile and its halo from the rasters.

    Runs in the driver or on a dask worker (only paths, the tile and the grid travel).
    With ``grid``, the tile is of that grid and the rasters are resampled onto it.
    Returns ``(tile, codes, probabilities or None)``.
    """
    (r0, r1), (c0, c1) = tile
    h = patch_size // 2
    with contextlib.ExitStack() as stack:
        stack.enter_context(gdal_env(GDAL_CACHEMAX=GDAL_CACHE_MB))
        ref = stack.enter_context(open_raster(hsi_path, "hsi"))
        srcs = [stack.enter_context(open_raster(p, "lidar")) for p in lidar_paths]
        # The halo reaches into the scene only: beyond its border, predict_scene pads
        # the chunk exactly as it pads the full scene.
        H, W = (ref.height, ref.width) if grid is None else (grid.height, grid.width)
        ra, rb = max(0, r0 - h), min(H, r1 + h)
        ca, cb = max(0, c0 - h), min(W, c1 + h)
        win = Window(ca, ra, cb - ca, rb - ra)

        def read(src, indexes, role):
            if grid is None:
                return read_block(src, indexes, win, role)
            return read_on_grid(src, indexes, grid, win, role, resampling)

        hsi = read(ref, band_indexes(bands, ref.count, "hsi"), "hsi")
        parts = [read(s, list(range(1, s.count + 1)), "lidar") for s in srcs]
    lidar = np.concatenate(parts, axis=-1) if parts else np.zeros(hsi.shape[:2] + (0,), np.float32)
    valid = np.isfinite(hsi).all(-1) & np.isfinite(lidar).all(-1)
    n_hsi = hsi.shape[2]
    _fill_nan(hsi, fill[:n_hsi])
    _fill_nan(lidar, fill[n_hsi:])
    crop = (slice(r0 - ra, r0 - ra + r1 - r0), slice(c0 - ca, c0 - ca + c1 - c0))
    mask = np.zeros(valid.shape, bool)
    mask[crop] = valid[crop]
    classes, codes = model_codes(model)
    out = np.zeros(valid.shape, np.int64)
    prob = np.full((r1 - r0, c1 - c0, len(classes)), np.nan, np.float32) if proba else None
    if not mask.any():
        pass  # a tile of nodata only (a flight line's corner): 0 and NaN
    elif proba:
        prob = predict_scene_proba(model, hsi, lidar, patch_size=patch_size,
                                   batch_size=batch_size, mask=mask,
                                   progress=False)[crop].astype(np.float32)
        keep = mask[crop]
        out[crop][keep] = codes[np.argmax(prob[keep], axis=1)]
    else:
        labels = predict_scene(model, hsi, lidar, patch_size=patch_size, batch_size=batch_size,
                               mask=mask, fill_value=classes[0], progress=False)
        out[mask] = codes[np.searchsorted(classes, labels[mask])]
    return tile, out[crop], prob

def run_tiles(model, args, kwargs, tiles, client):
    """Yield the tiles' results, in order locally, as they finish on a cluster."""
    if client is None:
        for tile in tiles:
            yield predict_tile(model, *args, tile=tile, **kwargs)
        return
    from distributed import as_completed

    client.run(_raise_mmap_threshold)
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    model_f = client.scatter(model, broadcast=True)
    todo = iter(tiles)
    # At most two tiles per worker in flight: the driver's memory stays bounded too.
    first = [client.submit(predict_tile, model_f, *args, tile=t, pure=False, **kwargs)
             for t in _take(todo, 2 * n_workers)]
    pending = as_completed(first)
    for fut in pending:
        result = fut.result()
        fut.release()
        for t in _take(todo, 1):
            pending.add(client.submit(predict_tile, model_f, *args, tile=t, pure=False, **kwargs))
        yield result

def _raise_mmap_threshold(nbytes=32 * 2**20):
    """Let glibc serve allocations up to 32 MiB from the heap rather than fresh mmaps.

    dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which turns
    off glibc's adaptive mmap threshold: every numpy temporary over 128 kB is then
    a new mmap, page-faulted in and unmapped again, and the batches of patches
    ran 2-3x (elementwise numpy up to 15x) slower on a worker than in the driver.
    A no-op (False) where the C library is not glibc.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, int(nbytes)))  # -3 = M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False

def _take(it, n):
    out = []
    for _ in range(n):
        try:
            out.append(next(it))
        except StopIteration:
            break
    return out
