"""Rasters read onto another grid: the resampling behind ``read_scene(resample_to=...)``.

A raster off the target grid is read through a rasterio ``WarpedVRT`` (GDAL's
warper, CRS reprojection included): continuous bands with the chosen kernel,
label rasters always with nearest neighbour, so that a class code is never
interpolated. Nodata stays nodata: GDAL leaves source nodata (its nodata value,
GDAL mask or alpha band; NaN in a float raster without one) out of the kernel,
pixels outside the source's footprint get no value, and a pixel whose centre
falls in a nodata source pixel is nodata too (so that interpolation does not
shrink the holes of a raster).
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np
import rasterio
from rasterio.enums import MaskFlags, Resampling
from rasterio.transform import from_origin
from rasterio.vrt import WarpedVRT

from ._raster import grid_problems, is_gdal_error, read_block, read_labels

__all__ = ["Grid", "RESAMPLINGS", "check_crs", "check_resample_to", "check_resampling",
           "target_grid", "grid_of", "read_on_grid", "labels_on_grid", "resampling_record"]

#: Kernels for continuous bands (labels are always read with nearest neighbour).
RESAMPLINGS = {"nearest": Resampling.nearest, "bilinear": Resampling.bilinear,
               "cubic": Resampling.cubic, "average": Resampling.average}
RESAMPLE_TARGETS = ("hsi", "lidar")


class Grid(NamedTuple):
    """A raster grid: what :func:`~sklearn_mmlgnet.io.rasterize_labels` needs of a ``like``."""

    crs: object
    transform: object
    height: int
    width: int
    name: str  # the raster it comes from, for messages


def grid_of(src):
    return Grid(src.crs, src.transform, int(src.height), int(src.width), str(src.name))


def check_resample_to(resample_to):
    """``None``, ``"hsi"``, ``"lidar"`` or a float pixel size > 0; else a ValueError."""
    if resample_to is None or (isinstance(resample_to, str) and resample_to in RESAMPLE_TARGETS):
        return resample_to
    if isinstance(resample_to, numbers.Real) and not isinstance(resample_to, bool) \
            and np.isfinite(resample_to) and resample_to > 0:
        return float(resample_to)
    raise ValueError(f"resample_to must be None, 'hsi', 'lidar' or a pixel size > 0 in the "
                     f"CRS units (e.g. 1.0); got {resample_to!r}.")


def check_resampling(resampling):
    if not isinstance(resampling, str) or resampling not in RESAMPLINGS:
        raise ValueError(f"resampling must be one of {tuple(RESAMPLINGS)}; got {resampling!r}.")
    return resampling


def target_grid(resample_to, ref, lidar_srcs):
    """The grid every raster is read onto: the HSI's, the first LiDAR raster's, or the
    HSI's extent and CRS at pixel size ``resample_to``."""
    if resample_to in (None, "hsi"):
        return grid_of(ref)
    if resample_to == "lidar":
        if not lidar_srcs:
            raise ValueError("resample_to='lidar' needs a LiDAR raster; none was given. Pass "
                             "lidar=..., or resample_to='hsi' or a pixel size.")
        return grid_of(lidar_srcs[0])
    xs, ys = zip(*(ref.transform @ (c, r) for r in (0, ref.height) for c in (0, ref.width)))
    left, bottom, right, top = min(xs), min(ys), max(xs), max(ys)
    # A pixel more rather than less where the size does not divide the extent.
    width = max(1, int(np.ceil((right - left) / resample_to - 1e-6)))
    height = max(1, int(np.ceil((top - bottom) / resample_to - 1e-6)))
    return Grid(ref.crs, from_origin(left, top, resample_to, resample_to), height, width,
                f"{ref.name} at {resample_to:g} CRS units")


def check_crs(src, grid, role):
    """Refuse to resample between a raster with a CRS and one without."""
    if (src.crs is None) != (grid.crs is None):  # GDAL would take one for the other silently
        has, lacks = (grid.name, src.name) if src.crs is None else (src.name, grid.name)
        raise ValueError(f"{role}: {src.name} cannot be resampled onto the grid of {grid.name}: "
                         f"{lacks} has no CRS and {has} has one. Set the missing CRS "
                         "(e.g. gdal_edit -a_srs).")


def _warped(src, grid, resampling, role, **kw):
    check_crs(src, grid, role)
    if src.nodata is None and np.dtype(src.dtypes[0]).kind == "f" and \
            all(MaskFlags.all_valid in f for f in src.mask_flag_enums):
        kw.setdefault("src_nodata", np.nan)  # NaN is nodata: left out of the kernel
    return WarpedVRT(src, crs=grid.crs, transform=grid.transform, width=grid.width,
                     height=grid.height, resampling=resampling, **kw)


def _read(vrt, indexes, window, src, role, grid):
    try:
        return vrt.read(indexes, window=window)
    except Exception as exc:  # noqa: BLE001 - GDAL raises several types for a bad file
        if not is_gdal_error(exc):
            raise
        detail = " ".join(str(exc.__cause__ or exc).split())
        raise ValueError(f"{role}: {src.name} could not be resampled onto the grid of "
                         f"{grid.name} ({detail}); the file may be truncated or corrupt, or "
                         "its CRS cannot be transformed to the grid's.") from None


def read_on_grid(src, indexes, grid, window, role, resampling="bilinear"):
    """float32 (rows, cols, bands) of ``src`` on ``grid`` (see :func:`read_block`)."""
    if not grid_problems(grid, src):
        return read_block(src, indexes, window, role)
    try:
        with _warped(src, grid, RESAMPLINGS[resampling], role, dtype="float32",
                     nodata=np.nan) as vrt:
            data = _read(vrt, indexes, window, src, role, grid)
        if resampling != "nearest":  # nodata where the source pixel under the centre is
            with _warped(src, grid, Resampling.nearest, role, dtype="float32",
                         nodata=np.nan) as near:
                data[np.isnan(_read(near, indexes, window, src, role, grid))] = np.nan
    except rasterio.errors.CRSError as exc:
        raise ValueError(f"{role}: {src.name} cannot be reprojected onto the grid of "
                         f"{grid.name} ({exc}).") from None
    with np.errstate(over="ignore", invalid="ignore"):
        for k, i in enumerate(indexes):  # scale / offset are linear: applied after the kernel
            scale, offset = src.scales[i - 1], src.offsets[i - 1]
            if scale not in (None, 1) or offset not in (None, 0):
                data[k] *= np.float32(1 if scale is None else scale)
                data[k] += np.float32(offset or 0)
        data[~np.isfinite(data)] = np.nan
    return np.moveaxis(data, 0, -1)


def labels_on_grid(src, grid, window, role):
    """int64 class codes of label raster ``src`` on ``grid``: nearest neighbour only,
    0 outside its footprint (see :func:`read_labels`)."""
    if not grid_problems(grid, src):
        return read_labels(src, window, role)
    try:
        with _warped(src, grid, Resampling.nearest, role) as vrt:
            return read_labels(vrt, window, role, name=src.name)
    except rasterio.errors.CRSError as exc:
        raise ValueError(f"{role}: {src.name} cannot be reprojected onto the grid of "
                         f"{grid.name} ({exc}).") from None


def resampling_record(resample_to, resampling, warped):
    """What a model records of how its scene was read (JSON-ready; None without resampling)."""
    if resample_to is None:
        return None
    return {"resample_to": resample_to, "method": resampling, "labels": "nearest",
            "warped": list(warped)}
