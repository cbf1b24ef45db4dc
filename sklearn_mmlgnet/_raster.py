"""Reading blocks of rasters and writing map GeoTIFFs: the helpers behind :mod:`sklearn_mmlgnet.io`.

Every read failure names the file and the role it plays (``hsi``, ``lidar``,
``labels``); nodata, masked and non-finite values come back as NaN; label
rasters must hold whole numbers; maps are written tile by tile into a staged
GeoTIFF, copied into a Cloud-Optimized GeoTIFF and published with their side
files through :func:`sklearn_mmlgnet._io.atomic_paths`.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import MaskFlags, Resampling
from rasterio.windows import Window

from ._io import _new_temporary, atomic_paths
from .plotting import class_colors

MAX_CODE = 2**31 - 1  # label codes beyond this are refused


def crs_text(crs):
    if crs is None:
        return "no CRS"
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_string()[:80]


def grid_problems(ref, src):
    """What differs between the grids of ``src`` and ``ref`` (anything with ``crs``,
    ``transform``, ``height`` and ``width``): a list of phrases, empty when they agree."""
    problems = []
    if (ref.crs is None) != (src.crs is None) or (ref.crs is not None and ref.crs != src.crs):
        problems.append(f"CRS {crs_text(src.crs)} vs {crs_text(ref.crs)}")
    if (src.height, src.width) != (ref.height, ref.width):
        problems.append(f"shape {src.height} x {src.width} vs {ref.height} x {ref.width} px")
    tol = 1e-3 * max(abs(ref.transform.a), abs(ref.transform.e), 1e-12)
    if not np.allclose(tuple(src.transform)[:6], tuple(ref.transform)[:6], rtol=0, atol=tol):
        problems.append(f"transform {tuple(round(v, 6) for v in tuple(src.transform)[:6])} vs "
                        f"{tuple(round(v, 6) for v in tuple(ref.transform)[:6])}")
    return problems


def check_same_grid(ref, ref_role, src, role):
    """Raise a ValueError naming both files if ``src`` is not on ``ref``'s grid."""
    problems = grid_problems(ref, src)
    if problems:
        raise ValueError(
            f"{role} {src.name} is not on the grid of {ref_role} {ref.name}: "
            + "; ".join(problems) + ". Pass resample_to='hsi' (or 'lidar', or a pixel size) to "
            "resample it while reading, or resample/reproject it onto the same grid first "
            "(e.g. gdalwarp -tr/-te/-t_srs).")


def as_path_list(paths, role):
    if paths is None:
        paths = []
    elif isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    for p in paths:
        if not isinstance(p, (str, os.PathLike)):
            raise TypeError(f"{role} must be a path or a list of paths; got {type(p).__name__}.")
    return paths


def window_in(window, height, width):
    """A rasterio Window from a Window or ((row0, row1), (col0, col1)), inside the raster."""
    if window is None:
        return Window(0, 0, width, height)
    if not isinstance(window, Window):
        try:
            (r0, r1), (c0, c1) = window
            window = Window(int(c0), int(r0), int(c1) - int(c0), int(r1) - int(r0))
        except (TypeError, ValueError, OverflowError):
            raise ValueError(
                f"window must be a rasterio Window or ((row_start, row_stop), (col_start, "
                f"col_stop)); got {window!r}.") from None
    c0, r0 = int(window.col_off), int(window.row_off)
    w, h = int(window.width), int(window.height)
    if w < 1 or h < 1 or c0 < 0 or r0 < 0 or c0 + w > width or r0 + h > height:
        raise ValueError(
            f"window rows {r0}:{r0 + h}, cols {c0}:{c0 + w} is not inside the "
            f"{height} x {width} scene.")
    return Window(c0, r0, w, h)


def band_indexes(bands, count, role):
    """1-based GDAL band indexes from 0-based ``bands`` (None, slice or ints)."""
    if bands is None:
        return list(range(1, count + 1))
    try:
        if isinstance(bands, slice):
            idx = list(range(count))[bands]
        else:
            arr = np.atleast_1d(np.asarray(bands))
            if arr.dtype.kind not in "iu" or arr.ndim != 1:
                raise TypeError
            idx = [int(b) for b in arr]
    except (TypeError, ValueError):
        idx = []
    bad = [b for b in idx if not 0 <= b < count]
    if not idx or bad:
        raise ValueError(
            f"bands must be 0-based indices of the {count} bands of {role}; got {bands!r}.")
    return [b + 1 for b in idx]


def is_gdal_error(exc):
    return isinstance(exc, rasterio.errors.RasterioError) or \
        type(exc).__module__.startswith("rasterio")


def read_raw(src, indexes, window, role, masks=False, name=None):
    """``src.read`` (or ``read_masks``), a failure naming the file (``name``, else
    ``src.name``) and ``role``."""
    try:
        if masks:
            return src.read_masks(indexes, window=window)
        return src.read(indexes, window=window)
    except Exception as exc:  # noqa: BLE001 - GDAL raises several types for a bad file
        if not is_gdal_error(exc):
            raise
        detail = " ".join(str(exc.__cause__ or exc).split())
        raise ValueError(f"{role}: {name or src.name} could not be read ({detail}); the file may "
                         "be truncated or corrupt.") from None


def invalid_mask(src, i, raw, window, role):
    """Bool mask of band ``i``'s nodata / masked pixels (None when all are valid)."""
    flags = src.mask_flag_enums[i - 1]
    if MaskFlags.all_valid in flags:
        return None
    if MaskFlags.nodata in flags:
        nodata = src.nodatavals[i - 1]
        if nodata is None or np.isnan(nodata):
            return None
        try:  # compared in the raster's own dtype: a float32 cast could merge values
            return raw == np.asarray(nodata).astype(raw.dtype)
        except (OverflowError, ValueError):
            return None  # a nodata value the dtype cannot hold flags no pixel
    return read_raw(src, i, window, role, masks=True) == 0  # per-dataset mask or alpha band


def read_block(src, indexes, window, role):
    """float32 (rows, cols, bands): nodata, masked and non-finite pixels as NaN, scale applied."""
    raw = read_raw(src, indexes, window, role)  # (bands, rows, cols), the raster's dtype
    with np.errstate(over="ignore", invalid="ignore"):
        data = raw.astype(np.float32)
        for k, i in enumerate(indexes):
            bad = invalid_mask(src, i, raw[k], window, role)
            if bad is not None:
                data[k][bad] = np.nan
            scale, offset = src.scales[i - 1], src.offsets[i - 1]
            if scale not in (None, 1) or offset not in (None, 0):
                data[k] *= np.float32(1 if scale is None else scale)
                data[k] += np.float32(offset or 0)
        data[~np.isfinite(data)] = np.nan  # +/-inf (or overflow) is nodata too
    del raw
    return np.moveaxis(data, 0, -1)


def read_labels(src, window, role, name=None):
    """Band 1 as int64 codes: nodata, masked, non-finite and negative values are 0.

    Errors name ``name`` (the file a warped dataset reads), else ``src.name``.
    """
    name = name or src.name
    raw = read_raw(src, [1], window, role, name=name)[0]
    bad = invalid_mask(src, 1, raw, window, role)
    bad = np.zeros(raw.shape, bool) if bad is None else bad
    if raw.dtype.kind == "f":
        bad |= ~np.isfinite(raw)
        frac = ~bad & (raw != np.round(raw))
        if frac.any():
            r, c = np.argwhere(frac)[0]
            raise ValueError(
                f"{role}: {name} holds non-integer values ({int(frac.sum())} pixels, e.g. "
                f"{raw[r, c].item()!r} at row {r}, col {c}); class codes must be whole numbers. "
                "A label raster resampled with bilinear or cubic interpolation mixes classes: "
                "resample it with nearest neighbour.")
    top = raw[~bad].max(initial=0)
    if top > MAX_CODE:
        raise ValueError(f"{role}: {name} holds class code {top.item()!r}; codes must be "
                         f"at most {MAX_CODE}.")
    labels = np.where(bad, 0, raw).astype(np.int64)
    labels[labels < 0] = 0
    return labels


def _parse_names(text):
    """'{a, b}' (ENVI) or JSON -> list/dict of names."""
    text = text.strip()
    with contextlib.suppress(ValueError, RecursionError):
        return json.loads(text)
    return [t.strip() for t in text.strip("{}").split(",")]


def _pam_category_names(path):
    """Band 1 category names from GDAL's .aux.xml (where GTiff keeps them)."""
    import xml.etree.ElementTree as ET

    aux = Path(str(path) + ".aux.xml")
    if not aux.is_file():
        return None
    try:
        root = ET.parse(aux).getroot()
    except ET.ParseError:
        return None
    for band in root.iter("PAMRasterBand"):
        if band.get("band", "1") == "1":
            cats = band.find("CategoryNames")
            if cats is not None:
                return [c.text or "" for c in cats.findall("Category")]
    return None


def raster_class_names(src, role="labels"):
    """{code: name} from a label raster's metadata, or {} when it has none.

    Looks at the ``CLASS_NAMES`` tag (JSON, as :func:`write_map` writes it), the
    ENVI header's ``class names``, and GDAL category names in a ``.aux.xml``.
    """
    names, where = None, None
    for tags in (src.tags(1), src.tags()):
        if "CLASS_NAMES" in tags:
            names, where = _parse_names(tags["CLASS_NAMES"]), "its CLASS_NAMES tag"
            break
    if names is None:
        with contextlib.suppress(Exception):
            envi = src.tags(ns="ENVI")
            if "class_names" in envi:
                names, where = _parse_names(envi["class_names"]), "its ENVI class names"
    if names is None:
        names, where = _pam_category_names(src.name), "its .aux.xml category names"
    if names is None:
        return {}
    if isinstance(names, dict):
        out = {}
        for k, v in names.items():
            try:
                code = int(k)
            except (TypeError, ValueError):
                raise ValueError(
                    f"{role}: {src.name}: {where} has the key {k!r}, which is not an integer "
                    'class code; expected JSON like {"1": "Woods", "2": "Roads"}.') from None
            if code > 0:
                out[code] = str(v)
        return out
    if isinstance(names, list):  # a list indexed by code; code 0 is "unclassified"
        return {i: str(n) for i, n in enumerate(names) if i > 0 and str(n).strip()}
    raise ValueError(f"{role}: {src.name}: {where} is {str(names)[:60]!r}; expected a JSON "
                     'object {"code": "name", ...} or a list of names indexed by code.')


# ------------------------------------------------------------------- map files
def _colormap(codes):
    """{code: RGBA} for the codes (tab10/tab20 colours), 0 transparent."""
    codes = sorted(c for c in codes if c > 0)
    colors = (255 * class_colors(max(len(codes), 1))).round().astype(int)
    cmap = {0: (0, 0, 0, 0)}
    for k, code in enumerate(codes):
        r, g, b = colors[k % len(colors)]
        cmap[int(code)] = (int(r), int(g), int(b), 255)
    return cmap


def _pam_xml(class_names, max_code):
    """GDAL .aux.xml holding band 1's category names (QGIS labels the palette with them)."""
    cats = "".join(f"      <Category>{escape(class_names.get(i, ''))}</Category>\n"
                   for i in range(max_code + 1))
    return ("<PAMDataset>\n  <PAMRasterBand band=\"1\">\n    <CategoryNames>\n" + cats
            + "    </CategoryNames>\n  </PAMRasterBand>\n</PAMDataset>\n")


#: Side of the maps' tiles; overviews are added until the smallest fits in one tile.
BLOCK = 256
#: How probabilities may be stored: float32, or uint8 with p = value / PROBA_STEPS.
PROBA_DTYPES = ("float32", "uint8")
PROBA_STEPS = 254
PROBA_NODATA_UINT8 = 255


def check_proba_dtype(proba_dtype):
    if not isinstance(proba_dtype, str) or proba_dtype not in PROBA_DTYPES:
        raise ValueError(
            f"proba_dtype must be one of {PROBA_DTYPES}; got {proba_dtype!r}. (float16 is not "
            "offered: GDAL before 3.11 has no Float16 rasters.)")
    return proba_dtype


def cog_available():
    """Whether GDAL has its COG driver (GDAL >= 3.1)."""
    with rasterio.Env() as env:
        return "COG" in env.drivers()


def _stage_profile(crs, transform, shape, dtype, count, nodata):
    """A tiled GeoTIFF written tile by tile, copied into the COG at the end: fast deflate."""
    profile = dict(driver="GTiff", height=shape[0], width=shape[1], count=count, dtype=dtype,
                   crs=crs, nodata=nodata, compress="deflate", zlevel=1, tiled=True,
                   blockxsize=BLOCK, blockysize=BLOCK, BIGTIFF="IF_SAFER")
    if transform is not None:
        profile["transform"] = transform
    return profile


def overview_factors(height, width, block=BLOCK):
    """2, 4, 8... until the overview fits in one tile (as the COG driver's default)."""
    factors, f = [], 2
    while -(-max(height, width) // (f // 2)) > block:  # the level above is still over a tile
        factors.append(f)
        f *= 2
    return factors


def _publish_cog(stage, out, resampling, predictor=False):
    """Copy the staged GeoTIFF ``stage`` to ``out`` as a Cloud-Optimized GeoTIFF.

    Tiled, deflate-compressed, with internal overviews built with ``resampling``
    (MODE for class codes, never an average of them). Without GDAL's COG driver:
    a tiled GeoTIFF with the same internal overviews.
    """
    options = dict(COMPRESS="DEFLATE", BIGTIFF="IF_SAFER", PREDICTOR="YES" if predictor else "NO")
    if cog_available():
        rasterio.shutil.copy(stage, out, driver="COG", BLOCKSIZE=BLOCK,
                             OVERVIEW_RESAMPLING=resampling, **options)
        return
    with rasterio.Env(COMPRESS_OVERVIEW="DEFLATE"), rasterio.open(stage, "r+") as ds:
        factors = overview_factors(ds.height, ds.width)
        if factors:
            ds.build_overviews(factors, Resampling[resampling.lower()])
    options["PREDICTOR"] = 3 if predictor else 1
    rasterio.shutil.copy(stage, out, driver="GTiff", TILED="YES", BLOCKXSIZE=BLOCK,
                         BLOCKYSIZE=BLOCK, COPY_SRC_OVERVIEWS="YES", **options)


def write_proba(dst, prob, window=None):
    """Write probabilities (K, rows, cols), NaN = nodata, in ``dst``'s dtype (float32 or
    uint8 steps of 1 / PROBA_STEPS with nodata PROBA_NODATA_UINT8)."""
    if dst.dtypes[0] == "uint8":
        with np.errstate(invalid="ignore"):
            prob = np.where(np.isnan(prob), PROBA_NODATA_UINT8,
                            np.round(np.clip(prob, 0, 1) * PROBA_STEPS)).astype(np.uint8)
    dst.write(prob, window=window)


def _map_dtype(max_code):
    if max_code > 65535:
        raise ValueError(f"class codes must be at most 65535 for a GeoTIFF map; got {max_code}.")
    return "uint8" if max_code <= 255 else "uint16"


def map_outputs(path, proba):
    """The files a map writes: the map, its ``.aux.xml`` and, with probabilities, those."""
    path = Path(path)
    return [path, Path(str(path) + ".aux.xml")] + ([proba_path_for(path)] if proba else [])


def _write_error(path, exc):
    detail = " ".join(str(getattr(exc, "strerror", None) or exc.__cause__ or exc).split())
    return OSError(f"could not write {path} ({detail}); is the disk full, or the folder not "
                   "writable?")


@contextlib.contextmanager
def _staging(paths):
    """Hidden temporary files beside ``paths`` for the tile-by-tile writing; always removed.

    Named like :func:`~sklearn_mmlgnet._io.atomic_paths`' temporaries, so that
    those a killed process leaves are removed by the next write of the map.
    """
    stages = []
    try:
        for p in paths:
            stages.append(str(_new_temporary(Path(p))))
        yield stages
    finally:
        for t in stages:
            for f in (t, t + ".aux.xml", t + ".ovr"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(f)


@contextlib.contextmanager
def map_writer(path, crs, transform, shape, class_names, codes, n_proba=0, proba_names=None,
               labels=None, proba_dtype="float32"):
    """Open GeoTIFF(s) for a map (and probabilities); publish them as COGs only on success.

    Yields ``(dst, proba_dst)``, tiled GeoTIFFs to write tile by tile (``proba_dst``
    is None without probabilities; write to it with :func:`write_proba`). At the
    end each is copied into a Cloud-Optimized GeoTIFF (:func:`_publish_cog`: the
    map's overviews by MODE, the probabilities' by AVERAGE) under a temporary name.
    The class names go in the ``CLASS_NAMES`` tag and, as GDAL category names, in
    the ``.aux.xml`` beside the map; the map, its ``.aux.xml`` and the
    probabilities are renamed into place together at the end (the map last). A
    failure to write (disk full) is an OSError naming the map.
    """
    path = Path(path)
    max_code = max([0, *codes, *class_names])
    dtype = _map_dtype(max_code)
    check_proba_dtype(proba_dtype)
    names = {int(c): class_names.get(int(c), str(c)) for c in codes if c > 0}
    tags = dict(CLASS_NAMES=json.dumps({str(k): v for k, v in sorted(names.items())}),
                NODATA_MEANING="0 = nodata / not classified")
    if labels:
        tags["CLASS_LABELS"] = json.dumps({str(k): str(v) for k, v in sorted(labels.items())})
    outputs = map_outputs(path, n_proba)
    with atomic_paths(outputs) as tmps, _staging([outputs[0], *outputs[2:]]) as stages, \
            contextlib.ExitStack() as stack:
        try:
            dst = stack.enter_context(rasterio.open(
                stages[0], "w", **_stage_profile(crs, transform, shape, dtype, 1, 0)))
            dst.write_colormap(1, _colormap(names))
            dst.update_tags(**tags)
            dst.set_band_description(1, "class")
            proba_dst = None
            if n_proba:
                u8 = proba_dtype == "uint8"
                proba_dst = stack.enter_context(rasterio.open(stages[1], "w", **_stage_profile(
                    crs, transform, shape, proba_dtype, n_proba,
                    PROBA_NODATA_UINT8 if u8 else float("nan"))))
                for k, name in enumerate(proba_names or [], start=1):
                    proba_dst.set_band_description(k, f"P({name})")
                proba_dst.update_tags(CLASS_NAMES=tags["CLASS_NAMES"])
                if u8:  # GDAL (QGIS, gdal_translate -unscale) reads p = value * scale back
                    proba_dst.scales = (1 / PROBA_STEPS,) * n_proba
                    proba_dst.offsets = (0.0,) * n_proba
                    proba_dst.update_tags(PROBA_ENCODING=f"p = value / {PROBA_STEPS}; "
                                          f"{PROBA_NODATA_UINT8} = nodata")
            yield dst, proba_dst
            stack.close()  # flushes the GeoTIFFs: where a full disk shows
            _publish_cog(stages[0], tmps[0], "MODE")
            if n_proba:
                _publish_cog(stages[1], tmps[2], "AVERAGE", predictor=proba_dtype != "uint8")
            # Category names live in .aux.xml for GTiff; published with the map.
            Path(tmps[1]).write_text(_pam_xml(names, max_code), encoding="utf-8")
        except Exception as exc:
            if is_gdal_error(exc) or (isinstance(exc, OSError) and not isinstance(
                    exc, (FileNotFoundError, PermissionError)) and exc.errno is not None):
                raise _write_error(path, exc) from None
            raise
        finally:  # GDAL may leave a PAM file for the temporary names; it describes nothing
            for t in tmps:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(t + ".aux.xml")


def proba_path_for(path):
    """Where the probabilities of map ``path`` go: ``<stem>_proba.tif`` beside it."""
    path = Path(path)
    return path.with_name(path.stem + "_proba" + (path.suffix or ".tif"))
