"""Reading a user's rasters and writing georeferenced maps (sklearn_mmlgnet.io)."""

from __future__ import annotations

import ctypes
import glob
import json
import os

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio", reason="the 'geo' extra (rasterio) is not installed")
from rasterio.crs import CRS  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402

from sklearn_mmlgnet import BandStandardScaler, MMLGNetClassifier  # noqa: E402
from sklearn_mmlgnet.io import (  # noqa: E402
    predict_raster,
    proba_path_for,
    rasterize_labels,
    read_scene,
    write_map,
)
from sklearn_mmlgnet.patches import extract_patches  # noqa: E402
from sklearn_mmlgnet.prediction import predict_scene  # noqa: E402

from .conftest import SHARED_DATA, requires_shared  # noqa: E402

UTM17 = CRS.from_epsg(32617)
ORIGIN = from_origin(542055.0, 4134999.0, 1.0, 1.0)  # an IDTReeS plot's corner, 1 m pixels


def _write(path, array, dtype, crs=UTM17, transform=ORIGIN, nodata=None, **kw):
    """(bands, rows, cols) or (rows, cols) array -> GeoTIFF."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    with rasterio.open(path, "w", driver="GTiff", width=array.shape[2], height=array.shape[1],
                       count=array.shape[0], dtype=dtype, crs=crs, transform=transform,
                       nodata=nodata, **kw) as dst:
        dst.write(array.astype(dtype))
    return str(path)


def write_scene(folder, H=30, W=36, B=6, seed=0, n_classes=3, nodata_px=((0, 0), (5, 7))):
    """A small scene as the user has it: int16 HSI (x 10000, nodata -9999), float32 LZW CHM.

    Classes are vertical stripes that lift their own band, so a model can learn them.
    Returns (hsi path, chm path, label raster path without names, labels array).
    """
    rng = np.random.RandomState(seed)
    labels = np.zeros((H, W), np.int64)
    stripe = (np.arange(W) * n_classes) // W + 1
    labels[:, :] = stripe[None, :]
    labels[::3] = 0  # unlabelled rows
    refl = 0.2 + 0.02 * rng.normal(size=(B, H, W))
    for c in range(1, n_classes + 1):
        refl[c - 1][stripe[None, :].repeat(H, 0) == c] += 0.3
    hsi = np.round(refl * 10000).astype("int16")
    chm = (5 * stripe[None, :] + rng.normal(size=(H, W))).astype("float32")
    for r, c in nodata_px:
        hsi[:, r, c] = -9999
    chm[H - 1, W - 1] = -3.4e38  # the NEON CHM's nodata
    h = _write(folder / "hsi.tif", hsi, "int16", nodata=-9999)
    l = _write(folder / "chm.tif", chm, "float32", nodata=-3.4e38, compress="lzw")
    gt = _write(folder / "gt.tif", labels, "uint8", nodata=None)
    return h, l, gt, labels


def tiny_model(X, y, seed=0):
    clf = MMLGNetClassifier(n_lidar_bands=1, text_embeddings=np.eye(len(np.unique(y)), 8),
                            module__hsi_channels=(8,), module__lidar_channels=(4,),
                            module__fusion_dim=8, max_epochs=3, lr=1e-2, random_state=seed)
    from sklearn.pipeline import make_pipeline

    return make_pipeline(BandStandardScaler(), clf).fit(X, y)


# ------------------------------------------------------------------ reading
def test_geotiff_round_trip_applies_nodata_scale_and_keeps_the_georeference(tmp_path):
    h, l, gt, labels = write_scene(tmp_path)
    with rasterio.open(h, "r+") as dst:  # reflectance x 10000 stored as int16, as NEON does
        dst.scales = (1e-4,) * dst.count
    scene = read_scene(h, l, gt)
    assert scene.hsi.shape == (30, 36, 6) and scene.lidar.shape == (30, 36, 1)
    assert scene.hsi.dtype == np.float32
    assert scene.crs == UTM17 and scene.transform == ORIGIN
    with rasterio.open(h) as src:
        raw = src.read(1).astype(np.float32)
    np.testing.assert_allclose(scene.hsi[1, 1, 0], raw[1, 1] * 1e-4, rtol=1e-6)
    assert 0 < np.nanmax(scene.hsi) < 1  # scaled reflectance
    # nodata -> NaN and not valid, in the HSI and in the CHM
    assert np.isnan(scene.hsi[0, 0]).all() and np.isnan(scene.hsi[5, 7]).all()
    assert np.isnan(scene.lidar[29, 35, 0])
    assert not scene.valid_mask[0, 0] and not scene.valid_mask[29, 35]
    assert scene.valid_mask.sum() == 30 * 36 - 3
    np.testing.assert_array_equal(scene.labels, labels)
    assert scene.class_names == {}
    assert scene.files["hsi"].endswith("hsi.tif") and scene.files["lidar"][0].endswith("chm.tif")


def test_window_and_bands_read_part_of_the_scene(tmp_path):
    h, l, gt, _ = write_scene(tmp_path)
    full = read_scene(h, [l, l], gt)
    part = read_scene(h, [l, l], gt, bands=[0, 2, 5], window=((4, 20), (10, 30)))
    assert full.lidar.shape[2] == 2  # every band of each LiDAR raster, stacked
    np.testing.assert_array_equal(part.hsi, full.hsi[4:20, 10:30][:, :, [0, 2, 5]])
    np.testing.assert_array_equal(part.labels, full.labels[4:20, 10:30])
    assert part.transform @ (0, 0) == full.transform @ (10, 4)  # the window's corner
    with pytest.raises(ValueError, match="window rows 4:40"):
        read_scene(h, window=((4, 40), (0, 5)))
    with pytest.raises(ValueError, match="bands must be 0-based"):
        read_scene(h, bands=[6])


@pytest.mark.parametrize("what,expected", [
    (dict(crs=CRS.from_epsg(32618)), "CRS EPSG:32618 vs EPSG:32617"),
    (dict(transform=from_origin(542056.0, 4134999.0, 1.0, 1.0)), "transform"),
    (dict(shape=(30, 35)), "shape 30 x 35 vs 30 x 36"),
])
def test_rasters_off_the_hsi_grid_raise_naming_both_files(tmp_path, what, expected):
    h, _, _, _ = write_scene(tmp_path)
    shape = what.get("shape", (30, 36))
    other = _write(tmp_path / "other_chm.tif", np.ones(shape), "float32",
                   crs=what.get("crs", UTM17), transform=what.get("transform", ORIGIN))
    with pytest.raises(ValueError, match=expected) as info:
        read_scene(h, lidar=other)
    assert "other_chm.tif" in str(info.value) and "hsi.tif" in str(info.value)
    with pytest.raises(ValueError, match="labels .*other_chm.tif"):
        read_scene(h, labels=other)


def test_missing_and_unreadable_files_name_the_argument(tmp_path):
    h, _, _, _ = write_scene(tmp_path)
    with pytest.raises(FileNotFoundError, match="lidar: no such file: .*nope.tif"):
        read_scene(h, lidar=tmp_path / "nope.tif")
    (tmp_path / "junk.tif").write_text("not a raster")
    with pytest.raises(ValueError, match="hsi: .*junk.tif could not be read as a raster"):
        read_scene(tmp_path / "junk.tif")


def _write_envi(folder, cube, name, extra=""):
    """A BSQ ENVI file pair as ENVI/IDL software writes it (hand-written header)."""
    B, H, W = cube.shape
    cube.astype("<i2").tofile(folder / f"{name}.img")
    (folder / f"{name}.hdr").write_text(
        "ENVI\ndescription = {test}\n"
        f"samples = {W}\nlines = {H}\nbands = {B}\nheader offset = 0\nfile type = ENVI Standard\n"
        "data type = 2\ninterleave = bsq\nbyte order = 0\n"
        "map info = {UTM, 1, 1, 542055.0, 4134999.0, 1.0, 1.0, 17, North, WGS-84, units=Meters}\n"
        + extra)
    return folder / f"{name}.hdr", folder / f"{name}.img"


def test_envi_input_header_or_data_file(tmp_path):
    rng = np.random.RandomState(0)
    cube = rng.randint(0, 5000, size=(4, 12, 10)).astype("int16")
    cube[:, 3, 4] = -9999
    hdr, img = _write_envi(
        tmp_path, cube, "flight", "data ignore value = -9999\n"
        "band names = {b1, b2, b3, b4}\nwavelength = {450, 550, 650, 750}\n")
    codes = np.zeros((1, 12, 10), "int16")
    codes[0, :, 5:] = 2
    codes[0, :, :3] = 1
    gt_hdr, _ = _write_envi(
        tmp_path, codes, "classes", "file type = ENVI Classification\nclasses = 3\n"
        "class names = {Unclassified, Woods, Roads}\n"
        "class lookup = {0, 0, 0, 0, 255, 0, 255, 0, 0}\n")
    by_header = read_scene(hdr, labels=gt_hdr)
    by_data = read_scene(img)
    np.testing.assert_array_equal(by_header.hsi, by_data.hsi)
    assert by_header.hsi.shape == (12, 10, 4)
    assert by_header.crs.to_epsg() == 32617 and by_header.transform == ORIGIN
    assert np.isnan(by_header.hsi[3, 4]).all() and not by_header.valid_mask[3, 4]
    np.testing.assert_array_equal(by_header.hsi[0, 0], cube[:, 0, 0].astype(np.float32))
    assert by_header.band_names == ["b1 (450)", "b2 (550)", "b3 (650)", "b4 (750)"]  # GDAL's naming
    assert by_header.wavelengths == [450.0, 550.0, 650.0, 750.0]
    assert by_header.class_names == {1: "Woods", 2: "Roads"}
    np.testing.assert_array_equal(by_header.labels, codes[0])


# ------------------------------------------------------------------ vectors
def _write_shapefile(base, polygons, field="class", kind="C", prj_crs=UTM17):
    shapefile = pytest.importorskip("shapefile")
    with shapefile.Writer(str(base), shapeType=shapefile.POLYGON) as w:
        w.field(field, kind, size=40) if kind == "C" else w.field(field, "N", decimal=0)
        w.field("id", "N", decimal=0)
        for k, (ring, value) in enumerate(polygons):
            w.poly([ring])
            w.record(value, k)
    if prj_crs is not None:
        base.with_suffix(".prj").write_text(prj_crs.to_wkt(version="WKT1_ESRI"))
    return base.with_suffix(".shp")


def _box(x0, y0, x1, y1):
    return [[x0, y0], [x0, y1], [x1, y1], [x1, y0], [x0, y0]]  # clockwise: an outer ring


def test_polygon_labels_are_rasterised_onto_the_grid(tmp_path):
    h, _, _, _ = write_scene(tmp_path)
    x0, y0 = 542055.0, 4134999.0  # top-left corner; rows go south
    shp = _write_shapefile(tmp_path / "crowns", [
        (_box(x0 + 2, y0 - 6, x0 + 6, y0 - 2), "Woods"),     # rows 2-5, cols 2-5
        (_box(x0 + 10, y0 - 4, x0 + 13, y0 - 1), "Roads"),   # rows 1-3, cols 10-12
        (_box(x0 + 5, y0 - 6, x0 + 8, y0 - 2), "Roads"),     # overlaps Woods at col 5
    ])
    scene = read_scene(h, labels=shp)
    assert scene.class_names == {1: "Roads", 2: "Woods"}  # sorted names -> codes 1..K
    assert (scene.labels[2:6, 2:5] == 2).all()
    assert (scene.labels[1:4, 10:13] == 1).all() and (scene.labels[2:6, 6:8] == 1).all()
    assert (scene.labels[2:6, 5] == 0).all()  # claimed by two classes: left unlabelled
    assert (scene.labels > 0).sum() == 12 + 9 + 8
    # the same polygons as GeoJSON, and integer classes (kept as codes, no names)
    features = [{"type": "Feature", "properties": {"kind": 3},
                 "geometry": {"type": "Polygon", "coordinates": [_box(x0 + 2, y0 - 6, x0 + 6, y0 - 2)]}}]
    gj = tmp_path / "labels.geojson"
    gj.write_text(json.dumps({"type": "FeatureCollection", "features": features,
                              "crs": {"type": "name", "properties": {"name": "EPSG:32617"}}}))
    labels, names = rasterize_labels(gj, h)
    assert names == {} and (labels == 3).sum() == 16 and set(np.unique(labels)) == {0, 3}


def test_polygons_in_another_crs_are_reprojected_onto_the_grid(tmp_path):
    from rasterio.warp import transform_geom

    h, _, _, _ = write_scene(tmp_path)
    ring = _box(542057.0, 4134993.0, 542061.0, 4134997.0)  # rows 2-5, cols 2-5
    lonlat = transform_geom(UTM17, CRS.from_epsg(4326), {"type": "Polygon", "coordinates": [ring]})
    shp = _write_shapefile(tmp_path / "wgs84", [(lonlat["coordinates"][0], "Woods")],
                           prj_crs=CRS.from_epsg(4326))
    labels = read_scene(h, labels=shp).labels
    assert (labels[2:6, 2:6] == 1).all() and (labels > 0).sum() == 16


def test_polygons_without_a_class_field_raise(tmp_path):
    h, _, _, _ = write_scene(tmp_path)
    ring = _box(542057.0, 4134993.0, 542061.0, 4134997.0)
    shp = _write_shapefile(tmp_path / "two", [(ring, "Woods")], field="kind")
    with pytest.raises(ValueError, match=r"attributes \['kind', 'id'\].*class_field"):
        read_scene(h, labels=shp)
    assert (read_scene(h, labels=shp, class_field="kind").labels > 0).sum() == 16
    with pytest.raises(ValueError, match="class_field 'taxon' is not an attribute"):
        read_scene(h, labels=shp, class_field="taxon")


@requires_shared
def test_idtrees_plot_reads_with_its_crowns():
    d = SHARED_DATA / "idtrees2020_train"
    scene = read_scene(d / "RemoteSensing/HSI/MLBS_1.tif", d / "RemoteSensing/CHM/MLBS_1.tif",
                       d / "ITC/train_MLBS.shp", class_field="indvdID")
    assert scene.hsi.shape == (20, 20, 369) and scene.lidar.shape == (20, 20, 1)
    assert scene.crs.to_epsg() == 32617 and scene.valid_mask.all()
    # crowns (boxes named by tree id) fall on the plot; the .prj's ESRI WKT matches EPSG:32617
    assert (scene.labels > 0).sum() > 100
    on_plot = [scene.class_names[c] for c in np.unique(scene.labels) if c]
    assert len(on_plot) > 10 and all(name.startswith("MLBS") for name in on_plot)
    # codes number every crown of the file, so they agree between plots
    assert len(scene.class_names) > 600


# ------------------------------------------------------------------ writing
def _gdal_category_names(path):
    """Band 1 category names as GDAL itself reads them (rasterio has no API for them)."""
    libs = glob.glob(os.path.join(os.path.dirname(rasterio.__file__) + ".libs", "libgdal*"))
    if not libs:
        pytest.skip("rasterio's bundled libgdal was not found (not a wheel install)")
    g = ctypes.CDLL(libs[0])
    g.GDALAllRegister()
    g.GDALOpen.restype, g.GDALOpen.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_int]
    g.GDALGetRasterBand.restype = ctypes.c_void_p
    g.GDALGetRasterBand.argtypes = [ctypes.c_void_p, ctypes.c_int]
    g.GDALGetRasterCategoryNames.restype = ctypes.c_void_p
    g.GDALGetRasterCategoryNames.argtypes = [ctypes.c_void_p]
    g.GDALClose.argtypes = [ctypes.c_void_p]
    g.GDALGetMetadataItem.restype = ctypes.c_char_p
    g.GDALGetMetadataItem.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
    ds = g.GDALOpen(str(path).encode(), 0)
    try:
        band = g.GDALGetRasterBand(ds, 1)
        # Reading metadata first loads the .aux.xml, as any application (QGIS) does on opening.
        g.GDALGetMetadataItem(ds, b"CLASS_NAMES", None)
        ptr = g.GDALGetRasterCategoryNames(band)
        names = []
        if ptr:
            arr = ctypes.cast(ptr, ctypes.POINTER(ctypes.c_char_p))
            while arr[len(names)] is not None:
                names.append(arr[len(names)].decode())
        return names
    finally:
        g.GDALClose(ds)


def test_write_map_round_trip_crs_transform_nodata_colours_and_names(tmp_path):
    h, l, gt, labels = write_scene(tmp_path)
    scene = read_scene(h, l)
    names = {1: "Woods", 2: "Roads", 3: "Apple trees"}
    path = write_map(tmp_path / "out" / "map.tif", labels, like=scene, class_names=names)
    with rasterio.open(path) as src:
        assert src.crs == UTM17 and src.transform == ORIGIN and src.count == 1
        assert src.nodata == 0 and src.dtypes[0] == "uint8"
        np.testing.assert_array_equal(src.read(1), labels)
        cmap = src.colormap(1)
        assert cmap[0] == (0, 0, 0, 0)  # nodata transparent
        assert len({cmap[c] for c in (1, 2, 3)}) == 3 and all(cmap[c][3] == 255 for c in (1, 2, 3))
        assert json.loads(src.tags()["CLASS_NAMES"]) == {"1": "Woods", "2": "Roads",
                                                         "3": "Apple trees"}
    # GDAL (and so QGIS, which labels a paletted layer with them) sees the category names
    assert _gdal_category_names(path) == ["", "Woods", "Roads", "Apple trees"]
    # and read_scene takes the names back when the map serves as a label raster
    again = read_scene(h, labels=path)
    assert again.class_names == names
    assert not list((tmp_path / "out").glob(".map*"))  # no temporary left behind


def test_write_map_probabilities_and_failure_leaves_nothing(tmp_path):
    h, _, _, labels = write_scene(tmp_path)
    scene = read_scene(h)
    proba = np.random.RandomState(0).dirichlet([1, 1, 1], size=labels.shape).astype(np.float32)
    path = write_map(tmp_path / "map.tif", labels, like=scene, class_names=["a", "b", "c"],
                     proba=proba)
    with rasterio.open(proba_path_for(path)) as src:
        assert src.count == 3 and src.descriptions == ("P(a)", "P(b)", "P(c)")
        assert src.crs == UTM17 and src.transform == ORIGIN
        got = src.read()
    np.testing.assert_allclose(got[:, labels > 0], np.moveaxis(proba, -1, 0)[:, labels > 0])
    assert np.isnan(got[:, labels == 0]).all()
    with pytest.raises(ValueError, match="pred_map has shape"):
        write_map(tmp_path / "bad.tif", labels[:5], like=scene)
    with pytest.raises(ValueError, match="integer class codes"):
        write_map(tmp_path / "bad.tif", labels.astype(float), like=scene)
    assert not (tmp_path / "bad.tif").exists()


# ------------------------------------------------------------ windowed predict
def _fitted(h, l, gt, patch_size=5):
    scene = read_scene(h, l, gt)
    ok = (scene.labels > 0) & scene.valid_mask
    rows, cols = np.nonzero(ok)
    X = extract_patches(np.nan_to_num(scene.hsi), np.nan_to_num(scene.lidar), rows, cols, patch_size)
    return tiny_model(X, scene.labels[rows, cols]), scene


def test_windowed_prediction_equals_predict_scene_on_the_whole_scene(tmp_path):
    h, l, gt, _ = write_scene(tmp_path)
    model, scene = _fitted(h, l, gt)
    fill = model[0].mean_.astype(np.float32)  # nodata stands in as the band's training mean
    cube = np.concatenate([scene.hsi, scene.lidar], axis=-1)
    cube = np.where(np.isnan(cube), fill, cube)
    expected = predict_scene(model, cube[..., :6], cube[..., 6:], patch_size=5,
                             mask=scene.valid_mask)
    # 11 x 13 tiles: interior halos come from the raster, border ones are padded like the scene's
    path = predict_raster(model, h, l, tmp_path / "map.tif", block_size=(11, 13), progress=False)
    with rasterio.open(path) as src:
        got = src.read(1)
        assert src.crs == UTM17 and src.transform == ORIGIN
    np.testing.assert_array_equal(got[scene.valid_mask], expected[scene.valid_mask])
    assert (got[~scene.valid_mask] == 0).all()
    # one tile for the whole scene gives the same map
    predict_raster(model, h, l, tmp_path / "one.tif", block_size=64, progress=False)
    with rasterio.open(tmp_path / "one.tif") as src:
        np.testing.assert_array_equal(src.read(1), got)


def test_predict_raster_checks_the_model_against_the_rasters(tmp_path):
    h, l, gt, _ = write_scene(tmp_path)
    model, _ = _fitted(h, l, gt)
    with pytest.raises(ValueError, match="fitted on 7 bands .* 6 \\+ 0 = 6"):
        predict_raster(model, h, None, tmp_path / "m.tif", progress=False)
    assert not (tmp_path / "m.tif").exists()
