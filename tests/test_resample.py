"""Rasters on different grids read onto one: read_scene(resample_to=...) (issue 27)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio", reason="the 'geo' extra (rasterio) is not installed")
import rasterio.warp  # noqa: E402
from rasterio.crs import CRS  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from sklearn_mmlgnet import CenterPixel  # noqa: E402
from sklearn_mmlgnet.io import predict_raster, read_scene  # noqa: E402
from sklearn_mmlgnet.patches import extract_patches  # noqa: E402
from sklearn_mmlgnet.scene import SceneModel  # noqa: E402

UTM17, UTM18 = CRS.from_epsg(32617), CRS.from_epsg(32618)
X0, Y0 = 542055.0, 4134999.0  # the top-left corner of every scene here


def smooth(x, y, band=0):
    """A smooth field of position (metres of UTM zone 17), different per band."""
    return 10 + band + np.sin((x - X0) / 6 + band) + 0.5 * np.cos((Y0 - y) / 4)


def _write(path, bands, transform, crs=UTM17, nodata=None, dtype="float32"):
    bands = np.asarray(bands)
    bands = bands[None] if bands.ndim == 2 else bands
    with rasterio.open(path, "w", driver="GTiff", width=bands.shape[2], height=bands.shape[1],
                       count=bands.shape[0], dtype=dtype, crs=crs, transform=transform,
                       nodata=nodata) as dst:
        dst.write(bands.astype(dtype))
    return str(path)


def _centres(transform, rows, cols):
    r, c = np.meshgrid(np.arange(rows) + 0.5, np.arange(cols) + 0.5, indexing="ij")
    return transform @ (c, r)


def smooth_raster(path, pixel, n, count=1, crs=UTM17, origin=(X0, Y0), **kw):
    """An n x n raster of `smooth` sampled at its pixel centres (in any CRS)."""
    transform = from_origin(*origin, pixel, pixel)
    x, y = _centres(transform, n, n)
    if crs != UTM17:
        x, y = (np.reshape(v, x.shape) for v in rasterio.warp.transform(
            crs, UTM17, x.ravel(), y.ravel()))
    return _write(path, [smooth(x, y, b) for b in range(count)], transform, crs, **kw)


@pytest.fixture
def two_grids(tmp_path):
    """HSI at 1 m (20 x 20, 2 bands), LiDAR at 0.5 m (40 x 40) over the same area."""
    return (smooth_raster(tmp_path / "hsi.tif", 1.0, 20, count=2),
            smooth_raster(tmp_path / "chm.tif", 0.5, 40))


def _fine(path):
    with rasterio.open(path) as src:
        return src.read(1)


def _block_mean(a, k=2):
    return a.reshape(a.shape[0] // k, k, a.shape[1] // k, k).mean(axis=(1, 3))


# ------------------------------------------------------------ onto one grid
def test_a_finer_lidar_read_onto_the_hsi_grid_is_its_block_mean(two_grids):
    h, l = two_grids
    scene = read_scene(h, l, resample_to="hsi")
    assert scene.lidar.shape == (20, 20, 1) and scene.valid_mask.all()
    assert scene.crs == UTM17 and scene.transform == from_origin(X0, Y0, 1, 1)
    np.testing.assert_array_equal(scene.hsi, read_scene(h).hsi)  # on the grid: read as it is
    # close to the block mean; less so on the border, where the kernel is cut short
    np.testing.assert_allclose(scene.lidar[1:-1, 1:-1, 0], _block_mean(_fine(l))[1:-1, 1:-1],
                               atol=0.01)
    np.testing.assert_allclose(scene.lidar[..., 0], _block_mean(_fine(l)), atol=0.05)
    assert scene.resampling == {"resample_to": "hsi", "method": "bilinear",
                                "labels": "nearest", "warped": ["lidar"]}
    json.dumps(scene.resampling)  # a model can record it as it is
    # "average" is exactly the block mean
    avg = read_scene(h, l, resample_to="hsi", resampling="average")
    np.testing.assert_allclose(avg.lidar[..., 0], _block_mean(_fine(l)), rtol=1e-6)
    assert "lidar resampled (bilinear) onto the hsi grid" in scene.DESCR


def test_resample_to_lidar_reads_the_hsi_and_labels_on_the_fine_grid(two_grids, tmp_path):
    h, l = two_grids
    codes = np.random.RandomState(0).choice([1, 3, 7], size=(20, 20))
    gt = _write(tmp_path / "gt.tif", codes, from_origin(X0, Y0, 1, 1), dtype="uint8")
    scene = read_scene(h, l, gt, resample_to="lidar", resampling="cubic")
    assert scene.hsi.shape == (40, 40, 2) and scene.transform == from_origin(X0, Y0, 0.5, 0.5)
    np.testing.assert_array_equal(scene.lidar[..., 0], _fine(l))  # on the grid: as it is
    x, y = _centres(scene.transform, 40, 40)
    inner = (slice(2, -2), slice(2, -2))
    np.testing.assert_allclose(scene.hsi[..., 1][inner], smooth(x, y, 1)[inner], atol=0.02)
    # labels by nearest neighbour only, whatever the kernel of the bands
    np.testing.assert_array_equal(scene.labels, np.kron(codes, np.ones((2, 2), int)))
    assert scene.resampling["warped"] == ["hsi", "labels"]
    # a window is of the target grid, and the same pixels as read whole
    part = read_scene(h, l, gt, resample_to="lidar", resampling="cubic",
                      window=((5, 17), (9, 30)))
    np.testing.assert_allclose(part.hsi, scene.hsi[5:17, 9:30], atol=1e-5)
    np.testing.assert_array_equal(part.labels, scene.labels[5:17, 9:30])


def test_a_shifted_lidar_in_another_crs_is_brought_back_onto_the_hsi_grid(tmp_path):
    h = smooth_raster(tmp_path / "hsi.tif", 1.0, 20)
    # the scene's area in UTM 18, a margin around it, origin half a pixel off
    left, bottom, right, top = rasterio.warp.transform_bounds(UTM17, UTM18, X0, Y0 - 20,
                                                              X0 + 20, Y0)
    n = int(max(right - left, top - bottom)) + 8
    l = smooth_raster(tmp_path / "chm18.tif", 1.0, n, crs=UTM18,
                      origin=(np.floor(left) - 3.5, np.ceil(top) + 3.5))
    with pytest.raises(ValueError, match="resample_to"):
        read_scene(h, l)
    scene = read_scene(h, l, resample_to="hsi")
    assert scene.crs == UTM17 and scene.lidar.shape == (20, 20, 1) and scene.valid_mask.all()
    x, y = _centres(scene.transform, 20, 20)
    np.testing.assert_allclose(scene.lidar[..., 0], smooth(x, y), atol=0.04)


def test_a_pixel_size_reads_every_raster_on_the_hsi_extent_and_crs(two_grids):
    h, l = two_grids
    half = read_scene(h, l, resample_to=0.5)
    assert half.hsi.shape == (40, 40, 2) and half.transform == from_origin(X0, Y0, 0.5, 0.5)
    assert half.resampling["warped"] == ["hsi"]  # the LiDAR is on that grid already
    np.testing.assert_array_equal(half.lidar[..., 0], _fine(l))
    coarse = read_scene(h, l, resample_to=6)  # 20 m / 6 m: a pixel more, not less
    assert coarse.hsi.shape == (4, 4, 2) and coarse.resampling["resample_to"] == 6.0
    # the last pixels' centres (21 m) lie beyond the rasters: nodata
    assert not coarse.valid_mask[-1].any() and not coarse.valid_mask[:, -1].any()
    assert coarse.valid_mask[:-1, :-1].all()


# --------------------------------------------------------------- labels
def test_label_codes_are_never_interpolated(tmp_path):
    h = smooth_raster(tmp_path / "hsi.tif", 1.0, 20)
    fine = np.random.RandomState(1).choice([0, 2, 5, 9], size=(40, 40))
    for crs, name in ((UTM17, "gt.tif"), (UTM18, "gt18.tif")):
        origin = (X0 + 0.25, Y0 - 0.25)
        if crs == UTM18:
            origin = tuple(np.round(rasterio.warp.transform(UTM17, UTM18, [X0], [Y0]), 1)[:, 0])
        gt = _write(tmp_path / name, fine, from_origin(*origin, 0.5, 0.5), crs=crs,
                    dtype="float32", nodata=0)
        scene = read_scene(h, labels=gt, resample_to="hsi", resampling="cubic")
        assert scene.labels.dtype == np.int64 and scene.labels.shape == (20, 20)
        assert set(np.unique(scene.labels)) <= {0, 2, 5, 9}
        assert len(set(np.unique(scene.labels)) - {0}) == 3


def test_polygons_are_rasterised_on_the_target_grid(two_grids, tmp_path):
    h, l = two_grids
    ring = [[X0 + 2, Y0 - 2], [X0 + 2, Y0 - 5], [X0 + 7, Y0 - 5], [X0 + 7, Y0 - 2],
            [X0 + 2, Y0 - 2]]
    path = tmp_path / "fields.geojson"
    path.write_text(json.dumps({
        "type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:32617"}},
        "features": [{"type": "Feature", "properties": {"class": "Woods"},
                      "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    scene = read_scene(h, l, path, resample_to="lidar")
    expected = np.zeros((40, 40), int)
    expected[4:10, 4:14] = 1  # 3 m x 5 m at 0.5 m
    np.testing.assert_array_equal(scene.labels, expected)
    assert scene.class_names == {1: "Woods"}


# --------------------------------------------------------------- nodata
def test_nodata_stays_nodata_and_outside_the_footprint_is_nodata(tmp_path):
    h = smooth_raster(tmp_path / "hsi.tif", 1.0, 20, count=2)
    fine = smooth(*_centres(from_origin(X0, Y0, 0.5, 0.5), 40, 30))
    fine[10:12, 10:12] = -9999  # one coarse pixel's block
    l = _write(tmp_path / "chm.tif", fine, from_origin(X0, Y0, 0.5, 0.5), nodata=-9999)
    scene = read_scene(h, l, resample_to="hsi")  # the LiDAR covers 15 of 20 columns
    lidar = scene.lidar[..., 0]
    assert np.isnan(lidar[5, 5]) and not scene.valid_mask[5, 5]
    assert np.isnan(lidar[:, 15:]).all() and not scene.valid_mask[:, 15:].any()
    ok = scene.valid_mask
    assert ok.sum() == 20 * 15 - 1 and np.isfinite(lidar[ok]).all()
    assert 8 < lidar[ok].min() and lidar[ok].max() < 12  # no -9999 mixed in
    # NaN in a float raster without a nodata value is nodata too, not spread by the kernel
    fine[10:12, 10:12] = np.nan
    nan = read_scene(h, _write(tmp_path / "chm_nan.tif", fine, from_origin(X0, Y0, 0.5, 0.5)),
                     resample_to="hsi")
    np.testing.assert_array_equal(nan.valid_mask, scene.valid_mask)
    # the other way: an HSI nodata pixel is four nodata pixels on the 0.5 m grid; the
    # HSI is int16 x 1000 with a GDAL scale, applied after the kernel
    with rasterio.open(h) as src:
        cube, profile = np.round(src.read() * 1000), src.profile
    cube[:, 3, 3] = -9999
    profile.update(nodata=-9999, dtype="int16")
    with rasterio.open(tmp_path / "hsi_nd.tif", "w", **profile) as dst:
        dst.write(cube.astype("int16"))
        dst.scales = (1e-3, 1e-3)
    up = read_scene(tmp_path / "hsi_nd.tif", l, resample_to="lidar", resampling="cubic")
    assert np.isnan(up.hsi[6:8, 6:8]).all() and up.valid_mask.sum() == 40 * 30 - 4 - 4
    x, y = _centres(up.transform, 40, 30)
    inner = (slice(2, 5), slice(2, 28))
    np.testing.assert_allclose(up.hsi[..., 0][inner], smooth(x, y)[inner], atol=0.03)


# ----------------------------------------------------------- bad arguments
@pytest.mark.parametrize("bad", ["foo", "HSI", -1, 0, 0.0, float("nan"), float("inf"), True,
                                 [1.0]])
def test_a_bad_resample_to_is_a_value_error_naming_it(two_grids, bad):
    h, l = two_grids
    with pytest.raises(ValueError, match=r"resample_to must be None, 'hsi', 'lidar' or a "
                                         r"pixel size > 0 .*; got " + re.escape(repr(bad))):
        read_scene(h, l, resample_to=bad)


def test_other_bad_resampling_arguments(two_grids, tmp_path):
    h, l = two_grids
    with pytest.raises(ValueError,
                       match=r"resampling must be one of .*'bilinear'.*; got 'lanczos'"):
        read_scene(h, l, resample_to="hsi", resampling="lanczos")
    with pytest.raises(ValueError, match="resample_to='lidar' needs a LiDAR raster"):
        read_scene(h, resample_to="lidar")
    with pytest.raises(ValueError, match=r"lidar .*chm.tif is not on the grid of hsi .*hsi.tif: "
                                         r".*Pass resample_to='hsi'"):
        read_scene(h, l)
    with rasterio.open(l) as src:
        bare = _write(tmp_path / "bare.tif", src.read(), src.transform, crs=None)
    with pytest.raises(ValueError, match=r"lidar: .*bare.tif cannot be resampled onto the grid "
                                         r"of .*hsi.tif: .*bare.tif has no CRS"):
        read_scene(h, bare, resample_to="hsi")


# ---------------------------------------------------------- predict_raster
def test_predict_raster_resamples_as_the_model_recorded(two_grids, tmp_path):
    h, l = two_grids
    scene = read_scene(h, l, resample_to="hsi")
    y = (scene.lidar[..., 0] > np.median(scene.lidar)).astype(int) + 1
    rows, cols = np.nonzero(np.ones((20, 20), bool))
    X = extract_patches(scene.hsi, scene.lidar, rows, cols, 3)
    clf = make_pipeline(CenterPixel(), LogisticRegression(max_iter=500)).fit(X, y.ravel())
    model = SceneModel(clf, {"patch_size": 3, "resampling": scene.resampling})
    with pytest.raises(ValueError, match="resample_to"):  # without the record: refused
        predict_raster(SceneModel(clf, {"patch_size": 3}), h, l, tmp_path / "m.tif",
                       progress=False)
    path = predict_raster(model, h, l, tmp_path / "map.tif", block_size=7, progress=False)
    with rasterio.open(path) as src:
        assert src.shape == (20, 20) and src.transform == scene.transform
        got = src.read(1)
    np.testing.assert_array_equal(got, clf.predict(X).reshape(20, 20))
    fine = predict_raster(model, h, l, tmp_path / "fine.tif", resample_to="lidar",
                          progress=False)
    with rasterio.open(fine) as src:
        assert src.shape == (40, 40) and src.res == (0.5, 0.5)
