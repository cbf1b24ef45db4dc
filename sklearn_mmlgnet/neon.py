"""NEON AOP surface reflectance tiles (HDF5), the source of the IDTReeS data.

NEON's airborne observation platform publishes its spectrometer reflectance
(``NEON.DP1.30006.001`` flight lines, ``NEON.DP3.30006.001`` 1 km mosaic tiles, and their
BRDF-corrected ``.002`` revisions) as HDF5 files laid out as::

    /<SITE>/Reflectance/Reflectance_Data           int16 (rows, cols, bands), attributes
                                                   Scale_Factor, Data_Ignore_Value,
                                                   Spatial_Extent_meters [xmin, xmax, ymin, ymax]
    /<SITE>/Reflectance/Metadata/Spectral_Data/Wavelength, FWHM          (nm, one per band)
    /<SITE>/Reflectance/Metadata/Coordinate_System/Map_Info, EPSG Code,
                                                   Coordinate_System_String, Proj4

:func:`read_neon_reflectance` reads a tile (or a window of it, and some of its bands,
without reading the rest) into the scene Bunch :func:`sklearn_mmlgnet.io.read_scene`
returns; :func:`write_neon_geotiff` converts a tile into a float32 GeoTIFF whose bands
carry their wavelengths, which ``read_scene``, ``mmlgnet fit`` and ``mmlgnet predict`` read
like any other HSI raster. h5py comes with the ``datasets`` extra
(``pip install "sklearn-mmlgnet[datasets]"``).
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from sklearn.utils import Bunch

from ._io import atomic_path, check_fits_in_memory, check_outputs, gdal_env
from ._raster import band_indexes, window_in

__all__ = ["read_neon_reflectance", "write_neon_geotiff"]

#: The reflectance cube inside a site's group.
DATA = "Reflectance/Reflectance_Data"
SPECTRAL = "Reflectance/Metadata/Spectral_Data"
COORDS = "Reflectance/Metadata/Coordinate_System"
#: Rows per block when a tile is converted to GeoTIFF.
BLOCK_ROWS = 256


def _h5py():
    try:
        import h5py
    except ImportError as exc:
        raise ImportError("Reading NEON HDF5 tiles needs h5py: "
                          "pip install 'sklearn-mmlgnet[datasets]'.") from exc
    return h5py


def _text(value):
    """A str from an HDF5 string (bytes, str, or a one-element array of them)."""
    if isinstance(value, np.ndarray):
        value = value.ravel()[0] if value.size == 1 else value.tolist()
    if isinstance(value, (bytes, np.bytes_)):
        value = value.decode("utf-8", "replace")
    return str(value).strip().strip("\x00")


def _number(value, what, path):
    """A float from a scalar attribute (number, bytes, or a one-element array)."""
    try:
        arr = np.asarray(value).ravel()
        if arr.size != 1:
            raise ValueError
        item = arr[0]
        return float(_text(item) if isinstance(item, (bytes, np.bytes_, str)) else item)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: the {what} attribute of {DATA} is not a number; "
                         f"got {value!r}.") from None


def _open(h5py, path):
    """The open h5py File of a NEON tile, errors naming the path."""
    path = Path(path).expanduser()
    with open(path, "rb"):  # FileNotFoundError / PermissionError / IsADirectoryError name it
        pass
    if not h5py.is_hdf5(path):
        raise ValueError(f"{path} is not an HDF5 file; a NEON AOP reflectance tile "
                         "(NEON_D.._<SITE>_DP3_..._reflectance.h5) is expected.")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: the HDF5 file cannot be read ({exc}).") from None


def _site(h5py, f, path):
    """(site code, its group) of the one ``<SITE>/Reflectance/Reflectance_Data`` in ``f``."""
    sites = [name for name, group in f.items() if isinstance(group, h5py.Group)
             and isinstance(group.get(DATA), h5py.Dataset)]
    if not sites:
        raise ValueError(f"{path} holds no <SITE>/{DATA} dataset: not a NEON AOP reflectance "
                         f"tile (its top-level entries: {sorted(f.keys())}).")
    if len(sites) > 1:
        raise ValueError(f"{path} holds reflectance of several sites {sites}; "
                         "one per file is expected.")
    return sites[0], f[sites[0]]


def _is_dataset(obj):
    return obj is not None and hasattr(obj, "shape") and hasattr(obj, "dtype")


def _optional(group, name):
    obj = group.get(name)
    return obj[()] if _is_dataset(obj) else None


def _map_info(text, path):
    """The Affine of an ENVI ``map info`` string: the reference pixel (1-based, 1.0 =
    the upper-left corner of the upper-left pixel) at (easting, northing), pixel sizes."""
    fields = [s.strip() for s in text.strip().strip("{}").split(",")]
    try:
        ref_x, ref_y, east, north, px, py = (float(v) for v in fields[1:7])
    except (ValueError, IndexError):
        raise ValueError(f"{path}: cannot read the Map_Info {text!r} (expected 'projection, "
                         "ref x, ref y, easting, northing, pixel x, pixel y, ...').") from None
    rotation = [f for f in fields if f.lower().startswith("rotation=")]
    if rotation and float(rotation[0].split("=")[1]) != 0:
        raise ValueError(f"{path}: the Map_Info {text!r} is a rotated grid, which is not read.")
    if not (px > 0 and py > 0):
        raise ValueError(f"{path}: the Map_Info {text!r} has a non-positive pixel size.")
    return Affine(px, 0.0, east - (ref_x - 1) * px, 0.0, -py, north + (ref_y - 1) * py), fields


def _utm_crs(fields):
    """EPSG:326zz / 327zz from a Map_Info ``UTM, ..., zone, North|South, WGS-84`` or None."""
    if len(fields) < 10 or fields[0].upper() != "UTM" or "WGS" not in fields[9].upper():
        return None
    try:
        zone = int(float(fields[7]))
    except ValueError:
        return None
    south = fields[8].lower().startswith("s")
    return CRS.from_epsg((32700 if south else 32600) + zone) if 1 <= zone <= 60 else None


def _from_proj4(text):
    """A CRS from a PROJ.4 string; NEON writes ``+proj=UTM``, which PROJ spells ``utm``."""
    return CRS.from_proj4(re.sub(r"\+proj=\w+", lambda m: m.group(0).lower(), text))


def _crs(coords, fields, path):
    """The CRS from ``EPSG Code``, else the WKT, the Proj4 string or a UTM Map_Info."""
    for name, make in (("EPSG Code", lambda s: CRS.from_epsg(int(float(s)))),
                       ("Coordinate_System_String", CRS.from_wkt),
                       ("Proj4", _from_proj4)):
        value = _optional(coords, name) if coords is not None else None
        if value is not None and _text(value):
            try:
                return make(_text(value))
            except (ValueError, rasterio.errors.CRSError):
                warnings.warn(f"{path}: cannot read the CRS from its {name} {_text(value)!r}.",
                              stacklevel=3)
    return _utm_crs(fields) if fields else None


def _grid(site_group, ds, path):
    """(crs, full-tile transform) from Map_Info, else from Spatial_Extent_meters."""
    coords = site_group.get(COORDS)
    rows, cols = ds.shape[:2]
    info = _optional(coords, "Map_Info") if coords is not None else None
    extent = ds.attrs.get("Spatial_Extent_meters")
    transform = fields = None
    if info is not None:
        transform, fields = _map_info(_text(info), path)
    if extent is not None:
        try:
            xmin, xmax, ymin, ymax = (float(v) for v in np.asarray(extent, float).ravel())
        except (TypeError, ValueError):
            raise ValueError(f"{path}: cannot read Spatial_Extent_meters {extent!r} "
                             "(expected [xmin, xmax, ymin, ymax]).") from None
        from_extent = Affine((xmax - xmin) / cols, 0.0, xmin, 0.0, -(ymax - ymin) / rows, ymax)
        if transform is None:
            transform = from_extent
        elif max(abs(transform.c - xmin) / transform.a, abs(transform.f - ymax) / -transform.e,
                 abs(transform.a - from_extent.a) * cols / transform.a,
                 abs(transform.e - from_extent.e) * rows / -transform.e) > 0.5:
            warnings.warn(
                f"{path}: Map_Info puts the tile at x {transform.c:.2f}, y {transform.f:.2f} "
                f"({transform.a:g} x {-transform.e:g} m pixels) but Spatial_Extent_meters says "
                f"{[xmin, xmax, ymin, ymax]}; Map_Info is used.", stacklevel=3)
    if transform is None:
        raise ValueError(f"{path}: neither {COORDS}/Map_Info nor a Spatial_Extent_meters "
                         f"attribute of {DATA} says where the tile lies.")
    return _crs(coords, fields, path), transform


def _spectral(site_group, name, n_bands, path):
    group = site_group.get(SPECTRAL)
    value = _optional(group, name) if group is not None else None
    if value is None:
        return None
    value = np.asarray(value, dtype=float).ravel()
    if value.size != n_bands:
        raise ValueError(
            f"{path}: {SPECTRAL}/{name} holds {value.size} values for the {n_bands} bands of "
            f"{DATA} (shape {site_group[DATA].shape}; NEON's layout is rows, cols, bands).")
    return [float(v) for v in value]


def _window(window):
    """A Window or ((row0, row1), (col0, col1)) as read_scene takes, or a flat
    (row_off, col_off, height, width)."""
    if window is not None and not isinstance(window, Window):
        try:
            flat = [int(v) for v in window] if len(window) == 4 else None
        except (TypeError, ValueError):
            flat = None
        if flat is not None:
            row_off, col_off, height, width = flat
            return Window(col_off, row_off, width, height)
    return window


class _Tile:
    """What a NEON tile says of itself, and block reads of its (selected) bands."""

    def __init__(self, h5py, f, path, bands):
        self.path = path
        self.site, group = _site(h5py, f, path)
        self.ds = ds = group[DATA]
        if ds.ndim != 3:
            raise ValueError(f"{path}: {self.site}/{DATA} has shape {ds.shape}; NEON's "
                             "reflectance is (rows, cols, bands).")
        for attr in ("Scale_Factor", "Data_Ignore_Value"):
            if attr not in ds.attrs:
                raise ValueError(f"{path}: {self.site}/{DATA} has no {attr} attribute; "
                                 "cannot scale the reflectance or find its nodata pixels.")
        self.scale = _number(ds.attrs["Scale_Factor"], "Scale_Factor", path)
        if not np.isfinite(self.scale) or self.scale == 0:
            raise ValueError(f"{path}: Scale_Factor {self.scale} cannot scale reflectance.")
        self.nodata = _number(ds.attrs["Data_Ignore_Value"], "Data_Ignore_Value", path)
        self.height, self.width, n_bands = ds.shape
        self.bands = [i - 1 for i in band_indexes(bands, n_bands, f"the NEON tile {path}")]
        self.crs, self.transform = _grid(group, ds, path)
        wl, fwhm = (_spectral(group, n, n_bands, path) for n in ("Wavelength", "FWHM"))
        self.wavelengths = None if wl is None else [wl[b] for b in self.bands]
        self.fwhm = None if fwhm is None else [fwhm[b] for b in self.bands]

    def read(self, win):
        """float32 (h, w, bands) reflectance of ``win``, NaN at Data_Ignore_Value."""
        rows = slice(int(win.row_off), int(win.row_off + win.height))
        cols = slice(int(win.col_off), int(win.col_off + win.width))
        b = self.bands
        if b == list(range(b[0], b[-1] + 1)):  # a run: one hyperslab
            raw = self.ds[rows, cols, b[0]:b[-1] + 1]
        else:  # h5py takes increasing, unique indices only
            order = sorted(set(b))
            raw = self.ds[rows, cols, order][..., [order.index(i) for i in b]]
        cube = raw.astype(np.float32)
        ignore = raw == self.nodata if raw.dtype.kind in "iu" else \
            np.isclose(raw, self.nodata) | ~np.isfinite(cube)
        cube /= np.float32(self.scale)
        cube[ignore] = np.nan
        return cube


def read_neon_reflectance(path, *, bands=None, window=None):
    """Read a NEON AOP surface reflectance HDF5 tile into a scene Bunch.

    Parameters
    ----------
    path : str or Path
        A NEON ``DP1.30006`` / ``DP3.30006`` reflectance ``.h5`` file (one site's
        ``<SITE>/Reflectance/Reflectance_Data``, rows x cols x bands).
    bands : slice or sequence of int, optional
        0-based bands to read (e.g. to drop the water-absorption bands near 1400 and
        1900 nm); only these are read from the file.
    window : Window, ((row0, row1), (col0, col1)) or (row_off, col_off, height, width)
        Read only this part of the tile; only it is read from the file.

    Returns
    -------
    scene : Bunch
        ``hsi`` (H, W, B) float32 reflectance (the stored integers divided by
        ``Scale_Factor``; NaN where they equal ``Data_Ignore_Value``); ``valid_mask``
        (H, W) bool, True where no band is NaN; ``lidar`` (H, W, 0) and ``labels`` None,
        as :func:`~sklearn_mmlgnet.io.read_scene` gives a scene without them;
        ``wavelengths`` and ``fwhm`` (nm, one per band read; None if the file has none);
        ``crs`` (from ``EPSG Code``, else the WKT, Proj4 or a UTM ``Map_Info``; None if
        none says) and ``transform`` (of the window: ``Map_Info`` gives the upper-left
        corner of the upper-left pixel; ``Spatial_Extent_meters`` when it is missing);
        ``site`` (the four-letter site code), ``band_names``, ``files``, ``name``.

    Raises
    ------
    FileNotFoundError, PermissionError
        ``path`` does not exist or cannot be read.
    ValueError
        The file is not HDF5 or not in NEON's layout (no ``<SITE>/Reflectance/
        Reflectance_Data``, no ``Scale_Factor`` or ``Data_Ignore_Value`` attribute, nothing
        that says where the tile lies); bad ``bands`` or ``window``; a read larger than
        the memory available. The message names the file.
    ImportError
        h5py is not installed (the ``datasets`` extra).

    Examples
    --------
    ``scene = read_neon_reflectance("NEON_D17_SJER_DP3_257000_4112000_reflectance.h5",
    window=((0, 200), (0, 200)))`` reads a 200 x 200 m corner of a 1 km tile.
    """
    h5py = _h5py()
    path = Path(path).expanduser()
    with _open(h5py, path) as f:
        tile = _Tile(h5py, f, path, bands)
        win = window_in(_window(window), tile.height, tile.width)
        h, w = int(win.height), int(win.width)
        check_fits_in_memory(
            h * w * len(tile.bands) * (4 + 1 + tile.ds.dtype.itemsize),
            f"the NEON tile {path}: reading {h} x {w} px, {len(tile.bands)} bands as float32")
        cube = tile.read(win)
    return Bunch(
        hsi=cube, valid_mask=np.isfinite(cube).all(axis=-1),
        lidar=np.zeros((h, w, 0), np.float32), labels=None, class_names={},
        crs=tile.crs, transform=window_transform(win, tile.transform),
        wavelengths=tile.wavelengths, fwhm=tile.fwhm, site=tile.site,
        band_names=[f"band {b + 1}" for b in tile.bands],
        files=dict(hsi=str(path), lidar=[], labels=None), name=path.stem, resampling=None,
        DESCR=f"NEON AOP reflectance of {tile.site} read from {path} ({h} x {w} px, "
              f"{len(tile.bands)} bands).")


def write_neon_geotiff(h5_path, out_tif, bands=None, *, window=None):
    """Convert a NEON AOP reflectance HDF5 tile into a float32 GeoTIFF.

    The GeoTIFF holds :func:`read_neon_reflectance`'s cube (reflectance as floats, NaN
    as nodata) on the tile's CRS and grid, each band's ``wavelength`` (nm) and ``fwhm``
    as band tags and descriptions such as ``"band 12 (441.3 nm)"``, so
    :func:`~sklearn_mmlgnet.io.read_scene`, ``mmlgnet fit`` and ``mmlgnet predict`` read
    it like any HSI raster (with the wavelengths a model records). It is tiled and
    deflate-compressed (BigTIFF when needed), written a block of rows at a time (a 1 GB
    tile is never read whole), and whole or not at all.

    Parameters
    ----------
    h5_path : str or Path
        The NEON reflectance ``.h5`` file.
    out_tif : str or Path
        The GeoTIFF to write (replaced if it exists).
    bands : slice or sequence of int, optional
        0-based bands to keep, as :func:`read_neon_reflectance` takes them.
    window : optional
        The part of the tile to write, as :func:`read_neon_reflectance` takes it.

    Returns
    -------
    Path
        ``out_tif``.

    Raises
    ------
    ValueError, FileNotFoundError, PermissionError, ImportError
        As :func:`read_neon_reflectance`; ``out_tif`` is the input or a folder.

    Examples
    --------
    ``write_neon_geotiff("NEON_..._reflectance.h5", "sjer.tif", bands=slice(5, 190))``,
    then ``mmlgnet fit --hsi sjer.tif --lidar chm.tif --labels crowns.shp ...``.
    """
    h5py = _h5py()
    h5_path, out_tif = Path(h5_path).expanduser(), Path(out_tif).expanduser()
    check_outputs({"out_tif": out_tif}, {"h5_path": h5_path})
    with _open(h5py, h5_path) as f:
        tile = _Tile(h5py, f, h5_path, bands)
        win = window_in(_window(window), tile.height, tile.width)
        h, w, n = int(win.height), int(win.width), len(tile.bands)
        profile = dict(driver="GTiff", width=w, height=h, count=n, dtype="float32",
                       crs=tile.crs, transform=window_transform(win, tile.transform),
                       nodata=float("nan"), tiled=True, blockxsize=256, blockysize=256,
                       compress="deflate", predictor=3, BIGTIFF="IF_SAFER")
        with gdal_env(), atomic_path(out_tif) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            for i, b in enumerate(tile.bands, start=1):
                tags = {}
                if tile.wavelengths is not None:
                    tags["wavelength"] = repr(tile.wavelengths[i - 1])
                    tags["wavelength_units"] = "nm"
                    dst.set_band_description(i, f"band {b + 1} ({tile.wavelengths[i - 1]:.1f} nm)")
                else:
                    dst.set_band_description(i, f"band {b + 1}")
                if tile.fwhm is not None:
                    tags["fwhm"] = repr(tile.fwhm[i - 1])
                dst.update_tags(i, **tags)
            dst.update_tags(NEON_SITE=tile.site, SOURCE=os.fspath(h5_path.name))
            for r0 in range(0, h, BLOCK_ROWS):
                block = Window(int(win.col_off), int(win.row_off) + r0, w, min(BLOCK_ROWS, h - r0))
                cube = tile.read(block)
                dst.write(np.moveaxis(cube, -1, 0),
                          window=Window(0, r0, w, int(block.height)))
    return out_tif
