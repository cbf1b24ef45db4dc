"""A user's own rasters in, georeferenced maps out (rasterio / GDAL).

:func:`read_scene` reads a hyperspectral raster, optional LiDAR rasters and
optional labels (a label raster, or polygons in a shapefile / GeoJSON rasterised
onto the scene grid) into the scene Bunch the loaders return; rasters on other
grids are resampled onto one with ``resample_to``.
:func:`write_map` writes a classification map as a Cloud-Optimized GeoTIFF that
QGIS opens with the scene's coordinates, a colour table and the class names in
its legend.
:func:`predict_raster` classifies a scene larger than memory tile by tile,
reading each tile (with the halo its patches need) straight from the rasters
and writing each tile of the map into the output GeoTIFF, on one machine or on
a dask.distributed cluster whose workers read their own tiles.

**Nodata.** Pixels flagged as nodata in any input raster (its nodata value, its GDAL mask,
NaN or +/-inf) come back as NaN in ``hsi``/``lidar`` and False in ``valid_mask``. The
estimators reject NaN, so prediction never classifies those pixels: they are
written as 0, the map's nodata value. Where a valid pixel's patch reaches into
nodata, the missing values are filled with the band's training mean (recorded
by :func:`~sklearn_mmlgnet.scene.fit_scene`; else the mean of a fitted
``BandStandardScaler`` in the model, else 0), which a standardising model sees as a neutral 0.

The map's codes are the model's class labels when these are integers in
1..65535, else 1..K in the order of ``classes_`` (the ``CLASS_LABELS`` tag then
gives each code's label); 0 is nodata.

**Safety.** Outputs are checked before any work (an output that is an input, or an
existing folder, is refused) and written whole or not at all. GDAL does not reach
the network (a VRT's ``/vsicurl/`` source) unless ``MMLGNET_ALLOW_NETWORK=1``; an
ENVI header whose size disagrees with its data file is refused; a scene too large
for memory is refused by :func:`read_scene` before it is read.
"""

from __future__ import annotations

import contextlib
import numbers
import os
from pathlib import Path

import numpy as np
import rasterio
import rasterio.features
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from sklearn.utils import Bunch

from ._io import check_fits_in_memory, check_outputs, gdal_env, open_raster
from ._raster import (
    MAX_CODE,
    as_path_list,
    band_indexes,
    check_proba_dtype,
    check_same_grid,
    grid_problems,
    map_outputs,
    map_writer,
    proba_path_for,
    raster_class_names,
    window_in,
    write_proba,
)
from ._tiles import (
    GDAL_CACHE_MB,
    check_block_size,
    check_model_bands,
    check_scene_statistics,
    check_wavelengths,
    fill_values,
    model_codes,
    model_patch_size,
    run_tiles,
    sample_pixels,
    tiles_of,
    training_statistics,
    unwrap,
)
from ._vector import pick_field, read_vector, to_grid_crs
from ._warp import (
    check_crs,
    check_resample_to,
    check_resampling,
    labels_on_grid,
    read_on_grid,
    resampling_record,
    target_grid,
)

__all__ = ["read_scene", "rasterize_labels", "write_map", "predict_raster", "proba_path_for",
           "model_codes"]

VECTOR_SUFFIXES = (".shp", ".geojson", ".json")


# -------------------------------------------------------------------- labels
def rasterize_labels(path, like, class_field=None, window=None):
    """Rasterise labelled polygons (a shapefile or GeoJSON) onto a raster's grid.

    Pixels whose centre falls in a polygon take its class; pixels covered by
    polygons of different classes are left unlabelled (0), as ambiguous.

    Parameters
    ----------
    path : str or Path
        ``.shp`` (read with pyshp, its CRS from the ``.prj``; none: the grid's) or
        ``.geojson``, whose CRS is its ``crs`` member or else WGS84 (RFC 7946).
        Polygons in another CRS than the grid's are reprojected onto it.
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
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"labels: no such file: {path}")
    with gdal_env(), contextlib.ExitStack() as stack:
        src = like if hasattr(like, "transform") else stack.enter_context(open_raster(like, "hsi"))
        if not os.access(path, os.R_OK):
            raise PermissionError(f"labels: {path} cannot be read (permission denied).")
        records, crs, implicit, fields = read_vector(path)
        field = pick_field(fields, class_field, path)
        win = window_in(window, src.height, src.width)
        shape, transform = (int(win.height), int(win.width)), window_transform(win, src.transform)
        pairs = [(g, p.get(field)) for g, p in records
                 if p.get(field) is not None and str(p.get(field)).strip() != ""]
        geoms = to_grid_crs([g for g, _ in pairs], crs, implicit, src.crs, path, src.name)
    values = [v for _, v in pairs]
    bad = [v for v in values if not isinstance(v, (str, numbers.Real))]
    if bad:
        raise ValueError(f"labels: {path}: class attribute {field!r} holds {str(bad[0])[:40]}; "
                         "a class must be a name or an integer code.")
    if all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
        codes = [int(v) for v in values]
        if any(not 0 < c <= MAX_CODE for c in codes):
            raise ValueError(f"labels: {path}: integer classes in {field!r} must be in "
                             f"1..{MAX_CODE} (0 = unlabelled).")
        class_names = {}
    else:
        names = sorted({str(v).strip() for v in values})
        code_of = {n: i for i, n in enumerate(names, start=1)}
        codes = [code_of[str(v).strip()] for v in values]
        class_names = {i: n for n, i in code_of.items()}
    labels = np.zeros(shape, dtype=np.int64)
    covered = np.zeros(shape, dtype=np.uint8)
    codes = np.asarray(codes, dtype=np.int64)
    for code in np.unique(codes):
        shapes = [g for g, c in zip(geoms, codes) if c == code]
        try:
            hit = rasterio.features.rasterize(shapes, out_shape=shape, transform=transform,
                                              fill=0, default_value=1, dtype="uint8").astype(bool)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"labels: {path}: its polygons could not be rasterised "
                             f"({exc}).") from None
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


def read_scene(hsi, lidar=None, labels=None, *, bands=None, window=None, class_field=None,
               resample_to=None, resampling="bilinear"):
    """Read an HSI raster, LiDAR raster(s) and labels onto one grid, into a scene Bunch.

    Parameters
    ----------
    hsi : str or Path
        Hyperspectral raster: GeoTIFF, ENVI (the ``.hdr`` or its data file), or
        anything else GDAL opens.
    lidar : str, Path or list of them, optional
        LiDAR rasters (DSM, CHM, intensity...), every band of each stacked in order.
        They must share the HSI's CRS, transform and shape, unless ``resample_to``.
    labels : str or Path, optional
        A label raster on the same grid, unless ``resample_to`` (band 1, integer
        codes; 0, negative and nodata = unlabelled), or polygons in a ``.shp`` /
        ``.geojson`` with a class attribute (see :func:`rasterize_labels`).
    bands : slice or sequence of int, optional
        0-based HSI bands to read (e.g. to drop water-absorption bands).
    window : rasterio Window or ((row0, row1), (col0, col1)), optional
        Read only this part of the scene (pixels of the target grid).
    class_field : str, optional
        Attribute of a vector label file holding the class.
    resample_to : {None, "hsi", "lidar"} or float, default=None
        The grid every raster is read onto, with GDAL's warper (a rasterio
        ``WarpedVRT``; a CRS other than the grid's is reprojected): ``"hsi"`` the
        HSI's grid, ``"lidar"`` the first LiDAR raster's, a float the HSI's CRS and
        extent at that pixel size (in the CRS units). None: every raster must be
        on the HSI's grid already; one that is not is refused.
    resampling : {"bilinear", "cubic", "average", "nearest"}, default="bilinear"
        The kernel for HSI and LiDAR bands resampled under ``resample_to``
        (``"average"`` suits a much coarser grid). A label raster is always read with
        nearest neighbour (a class code is never interpolated); polygons are
        rasterised on the target grid.

    Returns
    -------
    scene : Bunch
        ``hsi`` (H, W, B) float32 and ``lidar`` (H, W, L) float32 with nodata and
        non-finite values as NaN and scale/offset applied; ``valid_mask`` (H, W)
        bool, True where no band is nodata; ``labels`` (H, W) int64 or None;
        ``class_names`` ``{code: name}`` when the label file names its classes
        (raster tags, ENVI ``class names``, GDAL category names, or the vector
        attribute), else ``{}``; ``crs``, ``transform`` (of the window),
        ``band_names``, ``wavelengths`` (from the bands' ``wavelength`` metadata, as
        ENVI headers give it, else None), ``files``, ``name``, and ``resampling``:
        None without ``resample_to``, else (JSON-ready, for a model to record)
        ``{"resample_to": ..., "method": resampling, "labels": "nearest",
        "warped": [the roles of the rasters that were resampled]}``.

    Raises
    ------
    FileNotFoundError
        A path does not exist.
    PermissionError
        A file cannot be read.
    ValueError
        A file is not a raster (or is truncated), the rasters are not on the same
        grid (without ``resample_to``), a label raster holds non-integer values, or
        the scene is larger than the memory available (the message names the file
        and says what to do); a bad ``resample_to`` or ``resampling``.

    Notes
    -----
    Nodata stays nodata when resampling: nodata source pixels are left out of
    the kernel, pixels outside a raster's footprint are nodata, and so is a pixel
    whose centre falls in a nodata pixel of the source.

    Examples
    --------
    >>> import tempfile, numpy as np, rasterio
    >>> from rasterio.transform import from_origin
    >>> folder = tempfile.mkdtemp()
    >>> def write(name, size, pixel):
    ...     with rasterio.open(f"{folder}/{name}", "w", driver="GTiff", width=size,
    ...                        height=size, count=1, dtype="float32", crs="EPSG:32617",
    ...                        transform=from_origin(500000, 4100000, pixel, pixel)) as dst:
    ...         dst.write(np.ones((1, size, size), "float32"))
    ...     return f"{folder}/{name}"
    >>> hsi, chm = write("hsi.tif", 4, 1.0), write("chm.tif", 8, 0.5)  # 1 m and 0.5 m
    >>> scene = read_scene(hsi, chm, resample_to="hsi")
    >>> scene.hsi.shape, scene.lidar.shape, scene.resampling["warped"]
    ((4, 4, 1), (4, 4, 1), ['lidar'])
    >>> read_scene(hsi, chm, resample_to="lidar").hsi.shape
    (8, 8, 1)
    """
    lidar_paths = as_path_list(lidar, "lidar")
    if labels is not None and not isinstance(labels, (str, os.PathLike)):
        raise TypeError(f"labels must be a path; got {type(labels).__name__}.")
    resample_to, resampling = check_resample_to(resample_to), check_resampling(resampling)
    with gdal_env(), contextlib.ExitStack() as stack:
        ref = stack.enter_context(open_raster(hsi, "hsi"))
        lidar_srcs, roles = [], []
        for k, p in enumerate(lidar_paths):
            roles.append("lidar" if len(lidar_paths) == 1 else f"lidar[{k}]")
            src = stack.enter_context(open_raster(p, roles[-1]))
            if resample_to is None:
                check_same_grid(ref, "hsi", src, roles[-1])
            lidar_srcs.append(src)
        label_src = None
        is_vector = labels is not None and Path(labels).suffix.lower() in VECTOR_SUFFIXES
        if labels is not None and not is_vector:
            label_src = stack.enter_context(open_raster(labels, "labels"))
            if resample_to is None:
                check_same_grid(ref, "hsi", label_src, "labels")
        grid = target_grid(resample_to, ref, lidar_srcs)
        win = window_in(window, grid.height, grid.width)
        warped = [role for src, role in zip([ref, *lidar_srcs, label_src],
                                            ["hsi", *roles, "labels"])
                  if src is not None and grid_problems(grid, src)]

        indexes = band_indexes(bands, ref.count, f"hsi {ref.name}")
        n_lidar = sum(s.count for s in lidar_srcs)
        px = int(win.height) * int(win.width)
        # a raster read whole in its dtype, or (warped) twice as float32
        biggest = max((8 if role in warped else np.dtype(s.dtypes[0]).itemsize) * s.count
                      for s, role in zip([ref, *lidar_srcs], ["hsi", *roles]))
        check_fits_in_memory(
            px * (4 * (len(indexes) + n_lidar) + 9 + biggest),
            f"hsi {ref.name}: reading the scene whole ({int(win.height)} x {int(win.width)} px, "
            f"{len(indexes)} HSI + {n_lidar} LiDAR bands as float32)")
        hsi_arr = read_on_grid(ref, indexes, grid, win, "hsi", resampling)
        parts = [read_on_grid(s, list(range(1, s.count + 1)), grid, win, role, resampling)
                 for s, role in zip(lidar_srcs, roles)]
        lidar_arr = (np.concatenate(parts, axis=-1) if parts
                     else np.zeros(hsi_arr.shape[:2] + (0,), np.float32))
        valid = np.isfinite(hsi_arr).all(axis=-1) & np.isfinite(lidar_arr).all(axis=-1)

        class_names, label_arr = {}, None
        if label_src is not None:
            label_arr = labels_on_grid(label_src, grid, win, "labels")
            class_names = raster_class_names(label_src)
        elif is_vector:
            label_arr, class_names = rasterize_labels(labels, grid, class_field, window=win)
        band_names = [ref.descriptions[i - 1] or f"band {i}" for i in indexes]
        wavelengths = _wavelengths(ref, indexes)
        crs, transform = grid.crs, window_transform(win, grid.transform)
        files = dict(hsi=str(ref.name), lidar=[str(s.name) for s in lidar_srcs],
                     labels=None if labels is None else str(Path(labels)))
    how = ""
    if warped:
        onto = f"the {resample_to}" if isinstance(resample_to, str) else f"a {resample_to:g}-unit"
        how = f", {', '.join(warped)} resampled ({resampling}) onto {onto} grid"
    return Bunch(hsi=hsi_arr, lidar=lidar_arr, labels=label_arr, valid_mask=valid,
                 class_names=class_names, crs=crs, transform=transform, band_names=band_names,
                 wavelengths=wavelengths, files=files, name=Path(files["hsi"]).stem,
                 resampling=resampling_record(resample_to, resampling, warped),
                 DESCR=f"Scene read from {files['hsi']} ({hsi_arr.shape[0]} x "
                       f"{hsi_arr.shape[1]} px, {hsi_arr.shape[2]} HSI + "
                       f"{lidar_arr.shape[2]} LiDAR bands{how}).")


def _check_class_names(class_names):
    if class_names is None:
        return {}
    if isinstance(class_names, dict):
        return {int(k): str(v) for k, v in class_names.items()}
    return {i: str(n) for i, n in enumerate(class_names, start=1)}


def _grid(like):
    """(crs, transform, (H, W)) of a scene Bunch, a rasterio dataset or a raster path."""
    if isinstance(like, (str, os.PathLike)):
        with gdal_env(), open_raster(like, "like") as src:
            return src.crs, src.transform, (src.height, src.width)
    if hasattr(like, "height"):  # an open dataset
        return like.crs, like.transform, (like.height, like.width)
    shape = like["hsi"].shape[:2] if "hsi" in like else like["shape"]
    return like.get("crs"), like.get("transform"), tuple(shape)


def write_map(path, pred_map, like, class_names=None, proba=None, *, proba_dtype="float32"):
    """Write a classification map as a Cloud-Optimized GeoTIFF, whole or not at all.

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
        Class probabilities, written as a K-band GeoTIFF ``<stem>_proba.tif``
        beside the map (a GeoTIFF colour table needs a single-band file); bands
        follow the sorted codes, nodata where the map is 0.
    proba_dtype : {"float32", "uint8"}, default="float32"
        How the probabilities are stored: float32 (nodata NaN), or uint8, a
        quarter of the size: ``p = value / 254`` (the bands' GDAL scale, which
        QGIS and ``gdal_translate -unscale`` apply; rasterio's ``src.read`` does
        not: multiply by ``src.scales``), 255 = nodata; rounding is within
        ``1 / 508``.
        (float16 is not offered: GDAL before 3.11 cannot write it.)

    Returns
    -------
    path : Path

    Notes
    -----
    The map is one uint8 band (uint16 above 255 classes) with nodata 0, a colour
    table (0 transparent), the class names as the ``CLASS_NAMES`` tag (JSON
    ``{code: name}``), and as GDAL category names in ``<map>.tif.aux.xml``: QGIS
    opens it as a paletted layer whose legend shows the class names.

    Map and probabilities are Cloud-Optimized GeoTIFFs (GDAL's COG driver):
    256 x 256 deflate-compressed tiles and internal overviews (halving until one
    tile holds the whole), so QGIS or a web viewer draws a large map zoomed out
    at once. The map's overviews take the most frequent class of each block
    (``MODE``), never an average of class codes; the probabilities' overviews
    average them. Without the COG driver (GDAL < 3.1) the files are tiled
    GeoTIFFs with the same overviews.

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
    codes = sorted(set(np.unique(pred_map).tolist()) | set(names))
    n_proba = 0
    if proba is not None:
        proba = np.asarray(proba, dtype=np.float32)
        if proba.ndim != 3 or proba.shape[:2] != pred_map.shape:
            raise ValueError(f"proba must have shape (H, W, K) with H x W = {pred_map.shape}; "
                             f"got {proba.shape}.")
        n_proba = proba.shape[2]
    check_proba_dtype(proba_dtype)
    check_outputs({"path": path}, {"like": like if isinstance(like, (str, os.PathLike)) else None})
    pos = [c for c in codes if c > 0]
    with map_writer(path, crs, transform, shape, names, codes, n_proba,
                    [names.get(c, str(c)) for c in pos][:n_proba],
                    proba_dtype=proba_dtype) as (dst, pdst):
        dst.write(pred_map.astype(dst.dtypes[0]), 1)
        if pdst is not None:
            write_proba(pdst, np.moveaxis(np.where(pred_map[..., None] > 0, proba, np.nan), -1, 0))
    return Path(path)


# ----------------------------------------------------------- windowed predict
def predict_raster(model, hsi, lidar=None, out=None, *, patch_size=None, bands=None,
                   block_size=256, batch_size=1024, proba=False, client=None, progress=True,
                   proba_dtype="float32", resample_to=None, resampling=None):
    """Classify a whole scene from its rasters, tile by tile, into a COG map.

    Memory is flat in the scene size: each tile (``block_size`` pixels square plus
    a halo of ``patch_size // 2``) is read from the rasters, classified with
    :func:`~sklearn_mmlgnet.prediction.predict_scene` and written into the output
    at once. At the scene's borders the halo stops at the border and
    ``predict_scene`` pads as it would the whole scene, so the map is the one
    ``predict_scene`` gives on the scene read whole.

    Parameters
    ----------
    model : SceneModel or fitted classifier
        A :class:`~sklearn_mmlgnet.scene.SceneModel` (from
        :func:`~sklearn_mmlgnet.scene.fit_scene` or
        :func:`~sklearn_mmlgnet.persistence.load_model`: it records the patch size,
        band counts, class names, nodata fill values and band statistics), or a
        classifier taking patch arrays (n, B + L, P, P).
    hsi : str or Path
        The HSI raster.
    lidar : str, Path or list of them, optional
        LiDAR raster(s) on the same grid, unless ``resample_to``.
    out : str or Path
        The map to write, a Cloud-Optimized GeoTIFF (see :func:`write_map`); with
        ``proba=True`` the
        probabilities go to ``<stem>_proba.tif``. Refused before any work when it is
        an input or a folder; written to temporary files, renamed at the end.
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
        ``predict_proba``); NaN where a pixel is nodata.
    client : dask.distributed.Client, optional
        Classify tiles in parallel on the cluster's workers: each worker reads its
        own tiles from the paths (which the workers must see), the driver writes
        the results. A bounded number of tiles is in flight at once. The
        workers' glibc mmap threshold is raised to 32 MiB (see Notes).
    progress : bool, default=True
        A tqdm progress bar over the tiles.
    proba_dtype : {"float32", "uint8"}, default="float32"
        How probabilities are stored (see :func:`write_map`).
    resample_to : {"hsi", "lidar"} or float, optional
        Read the rasters onto this grid, tile by tile, and write the map on it (see
        :func:`read_scene`). Default: the model's recorded choice
        (``model.info["resampling"]``, what :func:`read_scene` returned at fit),
        else none: the rasters must then share the HSI's grid.
    resampling : {"bilinear", "cubic", "average", "nearest"}, optional
        The kernel with ``resample_to``. Default: the model's recorded one, else
        ``"bilinear"``.

    Returns
    -------
    path : Path
        The map written.

    Warns
    -----
    UserWarning
        When most bands of the scene lie far outside the training range recorded
        in the model (a scene in digital numbers for a model fitted on reflectance).

    Notes
    -----
    GDAL's block cache is capped at ``GDAL_CACHE_MB`` (64 MB) while predicting,
    in the driver and on the workers: by default it takes up to 5 % of RAM and
    would grow with the scene. dask starts its workers with
    ``MALLOC_TRIM_THRESHOLD_=65536``, which turns off glibc's adaptive mmap
    threshold and made every batch's numpy temporaries page-fault afresh
    (2-3x slower tiles on a worker than in the driver); ``client`` workers get
    ``mallopt(M_MMAP_THRESHOLD, 32 MiB)``, which lasts for the worker's life.
    """
    from tqdm.auto import tqdm

    if out is None:
        raise ValueError("out (the map GeoTIFF to write) is required.")
    estimator, info = unwrap(model)
    lidar_paths = as_path_list(lidar, "lidar")
    block_size = check_block_size(block_size)
    if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1; got {batch_size!r}.")
    check_outputs(dict(zip(("out", "out's side file", "out's probabilities"),
                           map_outputs(out, proba))),
                  {"hsi": hsi, "lidar": lidar_paths})
    P = model_patch_size(estimator, info, patch_size)
    check_proba_dtype(proba_dtype)
    recorded = info.get("resampling") if isinstance(info.get("resampling"), dict) else {}
    resample_to = check_resample_to(recorded.get("resample_to") if resample_to is None
                                    else resample_to)
    resampling = check_resampling(resampling or recorded.get("method") or "bilinear")
    # Check the inputs once in the driver; workers open them by absolute path.
    with gdal_env(), contextlib.ExitStack() as stack:
        ref = stack.enter_context(open_raster(hsi, "hsi"))
        n_lidar, lidar_abs, srcs = 0, [], []
        for k, p in enumerate(lidar_paths):
            role = "lidar" if len(lidar_paths) == 1 else f"lidar[{k}]"
            src = stack.enter_context(open_raster(p, role))
            if resample_to is None:
                check_same_grid(ref, "hsi", src, role)
            n_lidar += src.count
            lidar_abs.append(str(Path(src.name).resolve()))
            srcs.append((src, list(range(1, src.count + 1)), role))
        indexes = band_indexes(bands, ref.count, f"hsi {ref.name}")
        grid = target_grid(resample_to, ref, [s for s, _, _ in srcs])
        crs, transform, shape = grid.crs, grid.transform, (grid.height, grid.width)
        if resample_to is None:
            grid = None  # read every raster as it is
        else:  # refused here rather than in the first tile
            for src, _, role in [(ref, indexes, "hsi"), *srcs]:
                check_crs(src, grid, role)
        hsi_path = str(Path(ref.name).resolve())
        check_model_bands(estimator, info, len(indexes), n_lidar, hsi_path)
        check_wavelengths(info.get("wavelengths"), _wavelengths(ref, indexes), hsi_path)
        stats = training_statistics(estimator, info)
        if stats is not None:
            check_scene_statistics(sample_pixels([(ref, indexes, "hsi"), *srcs], shape, grid=grid,
                                                 resampling=resampling), stats, hsi_path)
    if P > 2 * min(shape) - 1:
        raise ValueError(f"patch_size={P} is too large for the {shape[0]} x {shape[1]} scene.")
    fill = fill_values(estimator, info, len(indexes) + n_lidar)
    classes, codes = model_codes(estimator)
    known = {str(k): str(v) for k, v in (info.get("class_names") or {}).items()}
    names = {int(code): known.get(str(cls), str(cls)) for cls, code in zip(classes.tolist(), codes)}
    relabelled = {int(code): cls for cls, code in zip(classes.tolist(), codes) if code != cls}
    tiles = list(tiles_of(shape[0], shape[1], block_size))
    args = (hsi_path, lidar_abs)
    kwargs = dict(patch_size=P, bands=bands, batch_size=batch_size, proba=bool(proba), fill=fill)
    if grid is not None:
        kwargs.update(grid=grid, resampling=resampling)
    bar = tqdm(total=len(tiles), unit="tile", desc="predict", disable=not progress)
    writer = map_writer(out, crs, transform, shape, names, codes.tolist(),
                        len(classes) if proba else 0, [names[int(c)] for c in codes],
                        labels=relabelled, proba_dtype=proba_dtype)
    with gdal_env(GDAL_CACHEMAX=GDAL_CACHE_MB), writer as (dst, pdst):
        for (tr, tc), tile_codes, tile_prob in run_tiles(estimator, args, kwargs, tiles, client):
            win = Window(tc[0], tr[0], tc[1] - tc[0], tr[1] - tr[0])
            dst.write(tile_codes.astype(dst.dtypes[0]), 1, window=win)
            if pdst is not None:
                write_proba(pdst, np.moveaxis(tile_prob, -1, 0), window=win)
            bar.update(1)
    bar.close()
    return Path(out)
