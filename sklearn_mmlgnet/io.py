"""A user's own rasters in, georeferenced maps out (rasterio / GDAL).

:func:`read_scene` reads a co-registered hyperspectral raster, optional LiDAR
rasters and optional labels (a label raster, or polygons in a shapefile /
GeoJSON rasterised onto the scene grid) into the scene Bunch the loaders return.
:func:`write_map` writes a classification map as a GeoTIFF that QGIS opens with
the scene's coordinates, a colour table and the class names in its legend.
:func:`predict_raster` classifies a scene larger than memory tile by tile,
reading each tile (with the halo its patches need) straight from the rasters
and writing each tile of the map into the output GeoTIFF, on one machine or on
a dask.distributed cluster whose workers read their own tiles.

**Nodata.** Pixels flagged as nodata in any input raster (its nodata value, its GDAL mask,
or NaN) come back as NaN in ``hsi``/``lidar`` and False in ``valid_mask``. The
estimators reject NaN, so prediction never classifies those pixels: they are
written as 0, the map's nodata value. Where a valid pixel's patch reaches into
nodata, the missing values are filled with the band's training mean (recorded
by ``mmlgnet fit``; else the mean of a fitted ``BandStandardScaler`` in the
model, else 0), which a standardising model sees as a neutral 0.

The map's codes are the model's class labels when these are integers in
1..65535, else 1..K in the order of ``classes_``; 0 is nodata.
"""

from __future__ import annotations

import contextlib
import json
import numbers
import os
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from sklearn.utils import Bunch

from ._io import atomic_path

ENVI_DATA_SUFFIXES = ("", ".img", ".dat", ".bsq", ".bil", ".bip", ".raw", ".bin")
VECTOR_SUFFIXES = (".shp", ".geojson", ".json")
# GDAL's block cache defaults to 5 % of RAM and fills with every block read or
# written: capped while predicting so memory stays flat in the scene size.
GDAL_CACHE_MB = 64
CLASS_FIELD_GUESSES = ("class", "class_name", "classname", "label", "category", "taxonid",
                       "species", "name", "landcover", "lc")


def _rasterio():
    try:
        import rasterio
    except ImportError as exc:  # pragma: no cover - rasterio is a declared extra
        raise ImportError("sklearn_mmlgnet.io needs rasterio: pip install rasterio") from exc
    return rasterio


# --------------------------------------------------------------------- opening
def _data_path(path, role):
    """The file GDAL should open: an ENVI ``.hdr`` is swapped for its data file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{role}: no such file: {path}")
    if path.suffix.lower() == ".hdr":
        for suffix in ENVI_DATA_SUFFIXES:
            for cand in (path.with_suffix(suffix), path.with_suffix(suffix.upper())):
                if cand.is_file() and cand != path:
                    return cand
        raise FileNotFoundError(
            f"{role}: {path} is an ENVI header but no data file beside it was found "
            f"(looked for {', '.join(path.stem + s for s in ENVI_DATA_SUFFIXES if s)} "
            f"and {path.stem}).")
    return path


def _open(path, role):
    rasterio = _rasterio()
    data = _data_path(path, role)
    try:
        return rasterio.open(data)
    except rasterio.errors.RasterioIOError as exc:
        raise ValueError(f"{role}: {data} could not be read as a raster ({exc}).") from None


def _crs_text(crs):
    if crs is None:
        return "no CRS"
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_string()[:80]


def _check_same_grid(ref, ref_role, src, role):
    """Raise a ValueError naming both files if ``src`` is not on ``ref``'s grid."""
    problems = []
    if (ref.crs is None) != (src.crs is None) or (ref.crs is not None and ref.crs != src.crs):
        problems.append(f"CRS {_crs_text(src.crs)} vs {_crs_text(ref.crs)}")
    if (src.height, src.width) != (ref.height, ref.width):
        problems.append(f"shape {src.height} x {src.width} vs {ref.height} x {ref.width} px")
    tol = 1e-3 * max(abs(ref.transform.a), abs(ref.transform.e), 1e-12)
    if not np.allclose(tuple(src.transform)[:6], tuple(ref.transform)[:6], rtol=0, atol=tol):
        problems.append(f"transform {tuple(round(v, 6) for v in tuple(src.transform)[:6])} vs "
                        f"{tuple(round(v, 6) for v in tuple(ref.transform)[:6])}")
    if problems:
        raise ValueError(
            f"{role} {src.name} is not on the grid of {ref_role} {ref.name}: "
            + "; ".join(problems) + ". Resample/reproject it onto the same grid first "
            "(e.g. gdalwarp -tr/-te/-t_srs).")


def _as_list(paths):
    if paths is None:
        return []
    if isinstance(paths, (str, os.PathLike)):
        return [paths]
    return list(paths)


def _window(window, height, width):
    """A rasterio Window from a Window or ((row0, row1), (col0, col1)), inside the raster."""
    from rasterio.windows import Window

    if window is None:
        return Window(0, 0, width, height)
    if not isinstance(window, Window):
        try:
            (r0, r1), (c0, c1) = window
            window = Window(int(c0), int(r0), int(c1) - int(c0), int(r1) - int(r0))
        except (TypeError, ValueError):
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


def _band_indexes(bands, count, role):
    """1-based GDAL band indexes from 0-based ``bands`` (None, slice or ints)."""
    if bands is None:
        return list(range(1, count + 1))
    if isinstance(bands, slice):
        idx = list(range(count))[bands]
    else:
        idx = [int(b) for b in np.atleast_1d(np.asarray(bands))]
    bad = [b for b in idx if not 0 <= b < count]
    if not idx or bad:
        raise ValueError(
            f"bands must be 0-based indices of the {count} bands of {role}; got {bands!r}.")
    return [b + 1 for b in idx]


def _read(src, indexes, window):
    """float32 (rows, cols, bands) with nodata/masked pixels as NaN, scale and offset applied."""
    from rasterio.enums import MaskFlags

    raw = src.read(indexes, window=window)  # (bands, rows, cols), the raster's dtype
    data = raw.astype(np.float32)
    for k, i in enumerate(indexes):
        flags = src.mask_flag_enums[i - 1]
        if MaskFlags.all_valid in flags:
            pass
        elif MaskFlags.nodata in flags:
            nodata = src.nodatavals[i - 1]
            if nodata is not None and not np.isnan(nodata):
                # Compared in the raster's own dtype: a float32 cast could merge values.
                data[k][raw[k] == np.asarray(nodata).astype(raw.dtype)] = np.nan
        else:  # per-dataset mask or alpha band
            data[k][src.read_masks(i, window=window) == 0] = np.nan
        scale, offset = src.scales[i - 1], src.offsets[i - 1]
        if scale not in (None, 1) or offset not in (None, 0):
            data[k] *= np.float32(1 if scale is None else scale)
            data[k] += np.float32(offset or 0)
    del raw
    return np.moveaxis(data, 0, -1)


# ----------------------------------------------------------------- class names
def _parse_names(text):
    """'{a, b}' (ENVI) or JSON -> list/dict of names."""
    text = text.strip()
    with contextlib.suppress(ValueError):
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


def _raster_class_names(src):
    """{code: name} from a label raster's metadata, or {} when it has none.

    Looks at the ``CLASS_NAMES`` tag (JSON, as :func:`write_map` writes it), the
    ENVI header's ``class names``, and GDAL category names in a ``.aux.xml``.
    """
    names = None
    for tags in (src.tags(1), src.tags()):
        if "CLASS_NAMES" in tags:
            names = _parse_names(tags["CLASS_NAMES"])
            break
    if names is None:
        with contextlib.suppress(Exception):
            envi = src.tags(ns="ENVI")
            if "class_names" in envi:
                names = _parse_names(envi["class_names"])
    if names is None:
        names = _pam_category_names(src.name)
    if isinstance(names, dict):
        return {int(k): str(v) for k, v in names.items() if int(k) > 0}
    if names:  # a list indexed by code; code 0 is "unclassified"
        return {i: str(n) for i, n in enumerate(names) if i > 0 and str(n).strip()}
    return {}


# ------------------------------------------------------------------ vectors
def _vector_records(path, class_field):
    """(geometries as GeoJSON dicts, class values, field name, CRS or None) of a vector file."""
    rasterio = _rasterio()
    path = Path(path)
    suffix = path.suffix.lower()
    crs = None
    if suffix == ".shp":
        import shapefile

        try:
            reader = shapefile.Reader(str(path))
        except shapefile.ShapefileException as exc:
            raise ValueError(f"labels: {path} could not be read as a shapefile ({exc}).") from None
        with reader:
            fields = [f[0] for f in reader.fields[1:]]
            field = _pick_field(fields, class_field, path)
            geoms, values = [], []
            for rec in reader.iterShapeRecords():
                if rec.shape.shapeType == shapefile.NULL:
                    continue
                geoms.append(rec.shape.__geo_interface__)
                values.append(rec.record[field])
        prj = path.with_suffix(".prj")
        if prj.is_file():
            crs = rasterio.crs.CRS.from_wkt(prj.read_text(errors="replace"))
    else:  # GeoJSON
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"labels: {path} is not GeoJSON ({exc}).") from None
        features = data.get("features", []) if isinstance(data, dict) else []
        fields = sorted({k for f in features for k in (f.get("properties") or {})})
        field = _pick_field(fields, class_field, path)
        geoms = [f["geometry"] for f in features if f.get("geometry")]
        values = [(f.get("properties") or {}).get(field) for f in features if f.get("geometry")]
        name = ((data.get("crs") or {}).get("properties") or {}).get("name")
        if name:
            crs = rasterio.crs.CRS.from_user_input(name)
    return geoms, values, field, crs


def _pick_field(fields, class_field, path):
    if class_field is not None:
        if class_field not in fields:
            raise ValueError(
                f"class_field {class_field!r} is not an attribute of {path}; it has {fields}.")
        return class_field
    lower = {f.lower(): f for f in fields}
    for guess in CLASS_FIELD_GUESSES:
        if guess in lower:
            return lower[guess]
    if len(fields) == 1:
        return fields[0]
    raise ValueError(
        f"{path} has attributes {fields}; say which one holds the class with class_field "
        "(--class-field on the command line).")


def rasterize_labels(path, like, class_field=None, window=None):
    """Rasterise labelled polygons (a shapefile or GeoJSON) onto a raster's grid.

    Pixels whose centre falls in a polygon take its class; pixels covered by
    polygons of different classes are left unlabelled (0), as ambiguous.

    Parameters
    ----------
    path : str or Path
        ``.shp`` (read with pyshp; its ``.prj`` is checked against the grid's
        CRS) or ``.geojson``. Reprojection is out of scope: the vector must be in
        the raster's CRS.
    like : str, Path or rasterio dataset
        The raster giving the grid (CRS, transform, shape).
    class_field : str, optional
        The attribute holding the class. By default one named like ``class``,
        ``label``, ``taxonID``... or the only attribute.
    window : rasterio Window or ((row0, row1), (col0, col1)), optional
        Rasterise onto this part of the grid only.

    Returns
    -------
    labels : ndarray of shape (rows, cols), int64
        0 = unlabelled.
    class_names : dict
        ``{code: name}``: string classes get codes 1..K in sorted order;
        integer classes keep their value as code and have no names (``{}``).
    """
    _rasterio()  # a clear error when rasterio is missing
    from rasterio.features import rasterize
    from rasterio.windows import transform as window_transform

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"labels: no such file: {path}")
    owns = not hasattr(like, "transform")
    src = _open(like, "hsi") if owns else like
    try:
        geoms, values, field, crs = _vector_records(path, class_field)
        if crs is not None and src.crs is not None and crs != src.crs:
            raise ValueError(
                f"labels {path} are in {_crs_text(crs)} but the scene {src.name} is in "
                f"{_crs_text(src.crs)}; reproject the vector file to the scene's CRS first "
                "(e.g. ogr2ogr -t_srs).")
        win = _window(window, src.height, src.width)
        shape, transform = (int(win.height), int(win.width)), window_transform(win, src.transform)
    finally:
        if owns:
            src.close()
    keep = [i for i, v in enumerate(values) if v is not None and str(v).strip() != ""]
    values = [values[i] for i in keep]
    geoms = [geoms[i] for i in keep]
    if all(isinstance(v, numbers.Integral) for v in values):
        codes = [int(v) for v in values]
        if any(c <= 0 for c in codes):
            raise ValueError(f"{path}: integer classes in {field!r} must be > 0 (0 = unlabelled).")
        class_names = {}
    else:
        names = sorted({str(v).strip() for v in values})
        code_of = {n: i for i, n in enumerate(names, start=1)}
        codes = [code_of[str(v).strip()] for v in values]
        class_names = {i: n for n, i in code_of.items()}
    labels = np.zeros(shape, dtype=np.int64)
    covered = np.zeros(shape, dtype=np.uint8)
    codes = np.asarray(codes)
    for code in np.unique(codes):
        shapes = [g for g, c in zip(geoms, codes) if c == code]
        hit = rasterize(shapes, out_shape=shape, transform=transform, fill=0,
                        default_value=1, dtype="uint8").astype(bool)
        labels[hit] = code
        covered += hit
    labels[covered > 1] = 0  # claimed by two classes: ambiguous
    return labels, class_names


# ------------------------------------------------------------------- reading
def _wavelengths(src, indexes):
    try:
        return [float(src.tags(i)["wavelength"]) for i in indexes]
    except (KeyError, ValueError):
        return None


def read_scene(hsi, lidar=None, labels=None, *, bands=None, window=None, class_field=None):
    """Read a co-registered HSI raster, LiDAR raster(s) and labels into a scene Bunch.

    Parameters
    ----------
    hsi : str or Path
        Hyperspectral raster: GeoTIFF, ENVI (the ``.hdr`` or its data file), or
        anything else GDAL opens.
    lidar : str, Path or list of them, optional
        LiDAR rasters (DSM, CHM, intensity...), every band of each stacked in order.
        They must share the HSI's CRS, transform and shape.
    labels : str or Path, optional
        A label raster on the same grid (band 1; 0 = unlabelled), or polygons in a
        ``.shp`` / ``.geojson`` with a class attribute (see :func:`rasterize_labels`).
    bands : slice or sequence of int, optional
        0-based HSI bands to read (e.g. to drop water-absorption bands).
    window : rasterio Window or ((row0, row1), (col0, col1)), optional
        Read only this part of the scene.
    class_field : str, optional
        Attribute of a vector label file holding the class.

    Returns
    -------
    scene : Bunch
        ``hsi`` (H, W, B) float32 and ``lidar`` (H, W, L) float32 with nodata as
        NaN and scale/offset applied; ``valid_mask`` (H, W) bool, True where no
        band is nodata; ``labels`` (H, W) int64 or None; ``class_names``
        ``{code: name}`` when the label file names its classes (raster tags, ENVI
        ``class names``, GDAL category names, or the vector attribute), else ``{}``;
        ``crs``, ``transform`` (of the window), ``band_names``, ``wavelengths``
        (from the bands' ``wavelength`` metadata, as ENVI headers give it, else
        None), ``files`` and ``name``.

    Raises
    ------
    FileNotFoundError
        A path does not exist.
    ValueError
        A file is not a raster, or the rasters are not on the same grid (the
        message names the files and the mismatch).

    Examples
    --------
    >>> import tempfile, numpy as np, rasterio
    >>> from rasterio.transform import from_origin
    >>> path = tempfile.mkdtemp() + "/hsi.tif"
    >>> with rasterio.open(path, "w", driver="GTiff", width=4, height=3, count=2,
    ...                    dtype="int16", crs="EPSG:32617", nodata=-9999,
    ...                    transform=from_origin(500000, 4100000, 1, 1)) as dst:
    ...     dst.write(np.full((2, 3, 4), 100, dtype="int16"))
    >>> scene = read_scene(path)
    >>> scene.hsi.shape, scene.lidar.shape, scene.crs.to_epsg()
    ((3, 4, 2), (3, 4, 0), 32617)
    """
    from rasterio.windows import transform as window_transform

    lidar_paths = _as_list(lidar)
    with contextlib.ExitStack() as stack:
        ref = stack.enter_context(_open(hsi, "hsi"))
        win = _window(window, ref.height, ref.width)
        lidar_srcs = []
        for k, p in enumerate(lidar_paths):
            role = "lidar" if len(lidar_paths) == 1 else f"lidar[{k}]"
            src = stack.enter_context(_open(p, role))
            _check_same_grid(ref, "hsi", src, role)
            lidar_srcs.append(src)
        label_src = None
        is_vector = labels is not None and Path(labels).suffix.lower() in VECTOR_SUFFIXES
        if labels is not None and not is_vector:
            label_src = stack.enter_context(_open(labels, "labels"))
            _check_same_grid(ref, "hsi", label_src, "labels")

        indexes = _band_indexes(bands, ref.count, f"hsi {ref.name}")
        hsi_arr = _read(ref, indexes, win)
        parts = [_read(s, list(range(1, s.count + 1)), win) for s in lidar_srcs]
        lidar_arr = (np.concatenate(parts, axis=-1) if parts
                     else np.zeros(hsi_arr.shape[:2] + (0,), np.float32))
        valid = np.isfinite(hsi_arr).all(axis=-1) & np.isfinite(lidar_arr).all(axis=-1)

        class_names, label_arr = {}, None
        if label_src is not None:
            raw = _read(label_src, [1], win)[..., 0]
            label_arr = np.where(np.isfinite(raw), raw, 0).astype(np.int64)
            label_arr[label_arr < 0] = 0
            class_names = _raster_class_names(label_src)
        elif is_vector:
            label_arr, class_names = rasterize_labels(labels, ref, class_field, window=win)
        band_names = [ref.descriptions[i - 1] or f"band {i}" for i in indexes]
        wavelengths = _wavelengths(ref, indexes)
        crs, transform = ref.crs, window_transform(win, ref.transform)
        files = dict(hsi=str(ref.name), lidar=[str(s.name) for s in lidar_srcs],
                     labels=None if labels is None else str(Path(labels)))
    return Bunch(hsi=hsi_arr, lidar=lidar_arr, labels=label_arr, valid_mask=valid,
                 class_names=class_names, crs=crs, transform=transform, band_names=band_names,
                 wavelengths=wavelengths, files=files, name=Path(files["hsi"]).stem,
                 DESCR=f"Scene read from {files['hsi']} ({hsi_arr.shape[0]} x "
                       f"{hsi_arr.shape[1]} px, {hsi_arr.shape[2]} HSI + "
                       f"{lidar_arr.shape[2]} LiDAR bands).")


# ------------------------------------------------------------------- writing
def _check_class_names(class_names):
    if class_names is None:
        return {}
    if isinstance(class_names, dict):
        return {int(k): str(v) for k, v in class_names.items()}
    return {i: str(n) for i, n in enumerate(class_names, start=1)}


def _colormap(codes):
    """{code: RGBA} for the codes (tab10/tab20 colours), 0 transparent."""
    from .plotting import class_colors

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


def _grid(like):
    """(crs, transform, (H, W)) of a scene Bunch, a rasterio dataset or a raster path."""
    if isinstance(like, (str, os.PathLike)):
        with _open(like, "like") as src:
            return src.crs, src.transform, (src.height, src.width)
    if hasattr(like, "height"):  # an open dataset
        return like.crs, like.transform, (like.height, like.width)
    shape = like["hsi"].shape[:2] if "hsi" in like else like["shape"]
    return like.get("crs"), like.get("transform"), tuple(shape)


def _map_profile(crs, transform, shape, dtype, count, nodata):
    profile = dict(driver="GTiff", height=shape[0], width=shape[1], count=count, dtype=dtype,
                   crs=crs, nodata=nodata, compress="deflate", tiled=True,
                   blockxsize=256, blockysize=256, BIGTIFF="IF_SAFER")
    if transform is not None:
        profile["transform"] = transform
    return profile


def _map_dtype(max_code):
    if max_code > 65535:
        raise ValueError(f"class codes must be at most 65535 for a GeoTIFF map; got {max_code}.")
    return "uint8" if max_code <= 255 else "uint16"


@contextlib.contextmanager
def _map_writer(path, crs, transform, shape, class_names, codes, n_proba=0, proba_names=None):
    """Open temp GeoTIFF(s) for a map (and probabilities); publish them only on success.

    Yields ``(dst, proba_dst)``; ``proba_dst`` is None without probabilities. The
    class names go in the ``CLASS_NAMES`` tag and, as GDAL category names, in the
    ``.aux.xml`` beside the map.
    """
    rasterio = _rasterio()
    path = Path(path)
    proba_path = proba_path_for(path)
    max_code = max([0, *codes, *class_names])
    dtype = _map_dtype(max_code)
    names = {int(c): class_names.get(int(c), str(c)) for c in codes if c > 0}
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_path(path))
        tmp_proba = stack.enter_context(atomic_path(proba_path)) if n_proba else None
        with rasterio.open(tmp, "w", **_map_profile(crs, transform, shape, dtype, 1, 0)) as dst:
            dst.write_colormap(1, _colormap(names))
            dst.update_tags(CLASS_NAMES=json.dumps({str(k): v for k, v in sorted(names.items())}),
                            NODATA_MEANING="0 = nodata / not classified")
            dst.set_band_description(1, "class")
            proba_dst = None
            if n_proba:
                proba_dst = stack.enter_context(rasterio.open(
                    tmp_proba, "w", **_map_profile(crs, transform, shape, "float32", n_proba,
                                                   float("nan"))))
                for k, name in enumerate(proba_names or [], start=1):
                    proba_dst.set_band_description(k, f"P({name})")
                proba_dst.update_tags(CLASS_NAMES=dst.tags()["CLASS_NAMES"])
            yield dst, proba_dst
            if proba_dst is not None:
                proba_dst.close()
        # GDAL may leave a PAM file for the temporary name; it describes nothing.
        for t in (tmp, tmp_proba):
            if t is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(t + ".aux.xml")
        # Category names live in .aux.xml for GTiff; written (atomically) just before the map.
        with atomic_path(str(path) + ".aux.xml") as aux:
            Path(aux).write_text(_pam_xml(names, max_code), encoding="utf-8")


def proba_path_for(path):
    """Where the probabilities of map ``path`` go: ``<stem>_proba.tif`` beside it."""
    path = Path(path)
    return path.with_name(path.stem + "_proba" + (path.suffix or ".tif"))


def write_map(path, pred_map, like, class_names=None, proba=None):
    """Write a classification map as a georeferenced GeoTIFF, whole or not at all.

    Parameters
    ----------
    path : str or Path
        The ``.tif`` to write.
    pred_map : array of shape (H, W), int
        Class codes; 0 = nodata / not classified.
    like : Bunch, rasterio dataset or path
        Gives the CRS and transform (a scene from :func:`read_scene`, or a raster).
    class_names : dict or sequence of str, optional
        ``{code: name}``, or names for codes 1..K. Codes without a name are named
        by their number.
    proba : array of shape (H, W, K), optional
        Class probabilities, written as a K-band float32 GeoTIFF
        ``<stem>_proba.tif`` beside the map (a GeoTIFF colour table needs a
        single-band file); bands follow the sorted codes, NaN at nodata.

    Returns
    -------
    path : Path

    Notes
    -----
    The map is one uint8 band (uint16 above 255 classes) with nodata 0, a colour
    table (0 transparent), the class names as the ``CLASS_NAMES`` tag (JSON
    ``{code: name}``), and as GDAL category names in ``<map>.tif.aux.xml``: QGIS
    opens it as a paletted layer whose legend shows the class names.

    Examples
    --------
    >>> import tempfile, numpy as np, rasterio
    >>> from rasterio.transform import from_origin
    >>> scene = {"hsi": np.zeros((2, 3, 1)), "crs": rasterio.crs.CRS.from_epsg(32617),
    ...          "transform": from_origin(500000, 4100000, 1, 1)}
    >>> path = write_map(tempfile.mkdtemp() + "/map.tif", np.array([[1, 2, 0], [2, 2, 1]]),
    ...                  like=scene, class_names={1: "Woods", 2: "Roads"})
    >>> with rasterio.open(path) as src:
    ...     src.read(1).tolist(), src.tags()["CLASS_NAMES"], src.colormap(1)[0]
    ([[1, 2, 0], [2, 2, 1]], '{"1": "Woods", "2": "Roads"}', (0, 0, 0, 0))
    """
    pred_map = np.asarray(pred_map)
    if pred_map.ndim != 2 or pred_map.dtype.kind not in "iub":
        raise ValueError(
            f"pred_map must be a 2-D array of integer class codes; got {pred_map.dtype} "
            f"shape {pred_map.shape}.")
    if pred_map.size and pred_map.min() < 0:
        raise ValueError("pred_map codes must be >= 0 (0 = nodata).")
    crs, transform, shape = _grid(like)
    if tuple(shape) != pred_map.shape:
        raise ValueError(f"pred_map has shape {pred_map.shape} but like's grid is {tuple(shape)}.")
    names = _check_class_names(class_names)
    codes = sorted(set(np.unique(pred_map).tolist()) | set(names)) if pred_map.size else sorted(names)
    n_proba = 0
    if proba is not None:
        proba = np.asarray(proba, dtype=np.float32)
        if proba.ndim != 3 or proba.shape[:2] != pred_map.shape:
            raise ValueError(f"proba must have shape (H, W, K) with H x W = {pred_map.shape}; "
                             f"got {proba.shape}.")
        n_proba = proba.shape[2]
    pos = [c for c in codes if c > 0]
    with _map_writer(path, crs, transform, shape, names, codes, n_proba,
                     [names.get(c, str(c)) for c in pos][:n_proba]) as (dst, pdst):
        dst.write(pred_map.astype(dst.dtypes[0]), 1)
        if pdst is not None:
            pdst.write(np.moveaxis(np.where(pred_map[..., None] > 0, proba, np.nan), -1, 0))
    return Path(path)


# ----------------------------------------------------------- windowed predict
def model_codes(model):
    """(classes, codes): the map code of each of the model's classes.

    Integer classes in 1..65535 are their own codes; other labels get 1..K.
    """
    classes = np.asarray(model.classes_)
    if classes.dtype.kind in "iu" and classes.min() >= 1 and classes.max() <= 65535:
        return classes, classes.astype(np.int64)
    return classes, np.arange(1, len(classes) + 1)


def _fill_values(model, n_bands):
    """Per-band values standing in for nodata inside patches (see module notes)."""
    info = getattr(model, "scene_info_", None) or {}
    fill = info.get("fill_values")
    if fill is None:
        steps = getattr(model, "steps", None) or []
        for _, step in steps:
            mean = getattr(step, "mean_", None)
            if mean is not None and np.shape(mean) == (n_bands,):
                fill = mean
                break
    if fill is None:
        return np.zeros(n_bands, np.float32)
    fill = np.asarray(fill, np.float32)
    if fill.shape != (n_bands,):
        raise ValueError(f"the model's fill values cover {fill.shape[0]} bands, the rasters {n_bands}.")
    return fill


def _fill_nan(cube, fill):
    bad = np.isnan(cube)
    if bad.any():
        cube[bad] = np.broadcast_to(fill, cube.shape)[bad]
    return cube


def _tiles(height, width, block_size):
    rows, cols = block_size
    for r0 in range(0, height, rows):
        for c0 in range(0, width, cols):
            yield (r0, min(height, r0 + rows)), (c0, min(width, c0 + cols))


def _predict_tile(model, hsi_path, lidar_paths, tile, patch_size, bands, batch_size, proba,
                  fill):
    """Predict one tile of the map, reading the tile and its halo from the rasters.

    Runs in the driver or on a dask worker (only paths and the tile travel).
    Returns ``(tile, codes, probabilities or None)``.
    """
    from rasterio.windows import Window

    from .patches import predict_scene, predict_scene_proba

    (r0, r1), (c0, c1) = tile
    h = patch_size // 2
    with contextlib.ExitStack() as stack:
        stack.enter_context(_rasterio().Env(GDAL_CACHEMAX=GDAL_CACHE_MB))
        ref = stack.enter_context(_open(hsi_path, "hsi"))
        srcs = [stack.enter_context(_open(p, "lidar")) for p in lidar_paths]
        # The halo reaches into the scene only: beyond its border, predict_scene pads
        # the chunk exactly as it pads the full scene.
        ra, rb = max(0, r0 - h), min(ref.height, r1 + h)
        ca, cb = max(0, c0 - h), min(ref.width, c1 + h)
        win = Window(ca, ra, cb - ca, rb - ra)
        hsi = _read(ref, _band_indexes(bands, ref.count, "hsi"), win)
        parts = [_read(s, list(range(1, s.count + 1)), win) for s in srcs]
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
    prob = None
    if not mask.any():
        pass
    elif proba:
        prob = predict_scene_proba(model, hsi, lidar, patch_size=patch_size,
                                   batch_size=batch_size, mask=mask)[crop].astype(np.float32)
        keep = mask[crop]
        out[crop][keep] = codes[np.argmax(prob[keep], axis=1)]
    else:
        labels = predict_scene(model, hsi, lidar, patch_size=patch_size, batch_size=batch_size,
                               mask=mask, fill_value=classes[0])
        out[mask] = codes[np.searchsorted(classes, labels[mask])]
    return tile, out[crop], prob


def _model_patch_size(model, patch_size):
    if patch_size is not None:
        return int(patch_size)
    info = getattr(model, "scene_info_", None) or {}
    if info.get("patch_size"):
        return int(info["patch_size"])
    est = model.steps[-1][1] if hasattr(model, "steps") else model
    if getattr(est, "patch_size_", None):
        return int(est.patch_size_)
    raise ValueError("patch_size is not recorded in the model; pass patch_size.")


def _check_model_bands(model, n_hsi, n_lidar, hsi_name):
    info = getattr(model, "scene_info_", None) or {}
    want = (info.get("n_hsi_bands"), info.get("n_lidar_bands"))
    n_in = getattr(model, "n_features_in_", None)
    if want[0] is not None and (want[0], want[1]) != (n_hsi, n_lidar):
        raise ValueError(
            f"the model was fitted on {want[0]} HSI + {want[1]} LiDAR bands but {hsi_name} and "
            f"the LiDAR rasters given have {n_hsi} HSI + {n_lidar} LiDAR bands.")
    if n_in is not None and n_in != n_hsi + n_lidar:
        raise ValueError(
            f"the model was fitted on {n_in} bands (HSI + LiDAR) but {hsi_name} and the LiDAR "
            f"rasters given have {n_hsi} + {n_lidar} = {n_hsi + n_lidar}.")


def predict_raster(model, hsi, lidar=None, out=None, *, patch_size=None, bands=None,
                   block_size=256, batch_size=1024, proba=False, client=None, progress=True):
    """Classify a whole scene from its rasters, tile by tile, into a GeoTIFF map.

    Memory is flat in the scene size: each tile (``block_size`` pixels square plus
    a halo of ``patch_size // 2``) is read from the rasters, classified with
    :func:`~sklearn_mmlgnet.patches.predict_scene` and written into the output
    at once. At the scene's borders the halo stops at the border and
    ``predict_scene`` pads as it would the whole scene, so the map is the one
    ``predict_scene`` gives on the scene read whole.

    Parameters
    ----------
    model : fitted classifier
        Takes patch arrays (n, B + L, P, P), e.g. a model saved by ``mmlgnet fit``
        (which records its patch size, band counts and nodata fill values).
    hsi : str or Path
        The HSI raster.
    lidar : str, Path or list of them, optional
        LiDAR raster(s) on the same grid.
    out : str or Path
        The map GeoTIFF to write (see :func:`write_map`); with ``proba=True`` the
        probabilities go to ``<stem>_proba.tif``. Written to temporary files,
        renamed at the end.
    patch_size : int, optional
        Default: the model's.
    bands : slice or sequence of int, optional
        0-based HSI bands, as at fit.
    block_size : int or (int, int), default=256
        Tile side(s) in pixels.
    batch_size : int, default=1024
        Patches per ``predict`` call.
    proba : bool, default=False
        Also write class probabilities (labels are then the argmax of
        ``predict_proba``).
    client : dask.distributed.Client, optional
        Classify tiles in parallel on the cluster's workers: each worker reads its
        own tiles from the paths (which the workers must see), the driver writes
        the results. A bounded number of tiles is in flight at once. The
        workers' glibc mmap threshold is raised to 32 MiB (see Notes).
    progress : bool, default=True
        A tqdm progress bar over the tiles.

    Returns
    -------
    path : Path
        The map written.

    Notes
    -----
    GDAL's block cache is capped at ``GDAL_CACHE_MB`` (64 MB) while predicting,
    in the driver and on the workers: by default it takes up to 5 % of RAM and
    would grow with the scene. dask starts its workers with
    ``MALLOC_TRIM_THRESHOLD_=65536``, which turns off glibc's adaptive mmap
    threshold and made every batch's numpy temporaries page-fault afresh (2-3x
    slower tiles on a worker than in the driver); ``client`` workers get
    ``mallopt(M_MMAP_THRESHOLD, 32 MiB)``, which lasts for the worker's life.
    """
    from tqdm.auto import tqdm

    if out is None:
        raise ValueError("out (the map GeoTIFF to write) is required.")
    lidar_paths = _as_list(lidar)
    if isinstance(block_size, numbers.Integral):
        block_size = (int(block_size), int(block_size))
    block_size = tuple(int(b) for b in block_size)
    if len(block_size) != 2 or min(block_size) < 1:
        raise ValueError(f"block_size must be a positive int or (rows, cols); got {block_size!r}.")
    P = _model_patch_size(model, patch_size)
    # Check the inputs once in the driver; workers open them by absolute path.
    with contextlib.ExitStack() as stack:
        ref = stack.enter_context(_open(hsi, "hsi"))
        n_lidar, lidar_abs = 0, []
        for k, p in enumerate(lidar_paths):
            role = "lidar" if len(lidar_paths) == 1 else f"lidar[{k}]"
            src = stack.enter_context(_open(p, role))
            _check_same_grid(ref, "hsi", src, role)
            n_lidar += src.count
            lidar_abs.append(str(Path(src.name).resolve()))
        n_hsi = len(_band_indexes(bands, ref.count, f"hsi {ref.name}"))
        crs, transform, shape = ref.crs, ref.transform, (ref.height, ref.width)
        hsi_path = str(Path(ref.name).resolve())
    _check_model_bands(model, n_hsi, n_lidar, hsi_path)
    if P > 2 * min(shape) - 1:
        raise ValueError(f"patch_size={P} is too large for the {shape[0]} x {shape[1]} scene.")
    fill = _fill_values(model, n_hsi + n_lidar)
    classes, codes = model_codes(model)
    info = getattr(model, "scene_info_", None) or {}
    names = {int(c): str(n) for c, n in (info.get("class_names") or {}).items()}
    names = {int(code): names.get(int(code), str(cls)) for cls, code in zip(classes.tolist(), codes)}
    tiles = list(_tiles(shape[0], shape[1], block_size))
    args = (hsi_path, lidar_abs)
    kwargs = dict(patch_size=P, bands=bands, batch_size=batch_size, proba=bool(proba), fill=fill)
    bar = tqdm(total=len(tiles), unit="tile", desc="predict", disable=not progress)
    writer = _map_writer(out, crs, transform, shape, names, codes.tolist(),
                         len(classes) if proba else 0, [names[int(c)] for c in codes])
    with _rasterio().Env(GDAL_CACHEMAX=GDAL_CACHE_MB), writer as (dst, pdst):
        for (tr, tc), tile_codes, tile_prob in _run_tiles(model, args, kwargs, tiles, client):
            from rasterio.windows import Window

            win = Window(tc[0], tr[0], tc[1] - tc[0], tr[1] - tr[0])
            dst.write(tile_codes.astype(dst.dtypes[0]), 1, window=win)
            if pdst is not None:
                pdst.write(np.moveaxis(tile_prob, -1, 0), window=win)
            bar.update(1)
    bar.close()
    return Path(out)


def _run_tiles(model, args, kwargs, tiles, client):
    """Yield the tiles' results, in order locally, as they finish on a cluster."""
    if client is None:
        for tile in tiles:
            yield _predict_tile(model, *args, tile=tile, **kwargs)
        return
    from distributed import as_completed

    client.run(_raise_mmap_threshold)
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    model_f = client.scatter(model, broadcast=True)
    todo = iter(tiles)
    # At most two tiles per worker in flight: the driver's memory stays bounded too.
    first = [client.submit(_predict_tile, model_f, *args, tile=t, pure=False, **kwargs)
             for t in _take(todo, 2 * n_workers)]
    pending = as_completed(first)
    for fut in pending:
        result = fut.result()
        fut.release()
        for t in _take(todo, 1):
            pending.add(client.submit(_predict_tile, model_f, *args, tile=t, pure=False, **kwargs))
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
