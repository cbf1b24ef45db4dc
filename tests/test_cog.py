"""Maps written as Cloud-Optimized GeoTIFFs, probabilities as float32 or uint8 (issue 27)."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio", reason="the 'geo' extra (rasterio) is not installed")
from rasterio.crs import CRS  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402

from sklearn_mmlgnet import _raster  # noqa: E402
from sklearn_mmlgnet.io import predict_raster, proba_path_for, write_map  # noqa: E402

from .test_io_faults import fast_model  # noqa: E402
from .test_io import write_scene  # noqa: E402

SIDE = 300  # over one 256 px tile: one overview level
CODES = (1, 3, 7)
NAMES = {1: "Woods", 3: "Roads", 7: "Water"}
LIKE = {"hsi": np.zeros((SIDE, SIDE, 1)), "crs": CRS.from_epsg(32617),
        "transform": from_origin(542055.0, 4134999.0, 1.0, 1.0)}


def class_map():
    """Blocks of classes, a checkerboard of 1 and 7 (whose average, 4, is no class), classes
    drawn pixel by pixel, and nodata."""
    rng = np.random.RandomState(0)
    pred = np.kron(rng.choice(CODES, size=(SIDE // 10, SIDE // 10)), np.ones((10, 10), int))
    rows, cols = np.indices((100, 100))
    pred[:100, :100] = np.where((rows + cols) % 2, 1, 7)
    pred[100:200, :100] = rng.choice(CODES, size=(100, 100))
    pred[-20:] = 0
    return pred


def blocks(a, k=2):
    """(rows / k, cols / k, k * k): the pixels under each pixel of an overview of factor k."""
    h, w = a.shape
    return a.reshape(h // k, k, w // k, k).transpose(0, 2, 1, 3).reshape(h // k, w // k, k * k)


def probabilities(pred):
    proba = np.random.RandomState(1).dirichlet([1, 1, 1], size=pred.shape).astype(np.float32)
    return proba


def _layout(src):
    return src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT")


@pytest.fixture(params=["COG driver", "no COG driver"])
def driver(request, monkeypatch):
    if request.param == "no COG driver":  # GDAL < 3.1: a tiled GeoTIFF with overviews
        monkeypatch.setattr(_raster, "cog_available", lambda: False)
    elif not _raster.cog_available():
        pytest.skip("this GDAL has no COG driver")
    return request.param


def test_the_map_is_tiled_compressed_with_class_overviews(tmp_path, driver):
    pred = class_map()
    path = write_map(tmp_path / "map.tif", pred, LIKE, class_names=NAMES)
    assert sorted(os.listdir(tmp_path)) == ["map.tif", "map.tif.aux.xml"]  # nothing staged left
    with rasterio.open(path) as src:
        assert src.profile["tiled"] and src.block_shapes[0] == (256, 256)
        assert src.compression.name.lower() == "deflate"
        assert src.overviews(1) == [2]
        assert src.nodata == 0 and src.dtypes[0] == "uint8"
        np.testing.assert_array_equal(src.read(1), pred)
        assert src.colormap(1)[0] == (0, 0, 0, 0) and src.colormap(1)[7][3] == 255
        assert json.loads(src.tags()["CLASS_NAMES"]) == {"1": "Woods", "3": "Roads", "7": "Water"}
        assert src.descriptions == ("class",)
        if driver == "COG driver":
            assert _layout(src) == "COG"
    with rasterio.open(path, overview_level=0) as ovr:
        small = ovr.read(1)
    assert small.shape == (SIDE // 2, SIDE // 2)
    assert set(np.unique(small)) <= {0, *CODES}  # the checkerboard gives no 4
    # each overview pixel is one of the classes beneath it (no average, even of colours)
    under = blocks(pred)
    assert (under == small[..., None]).any(axis=-1).all()


def test_probabilities_as_uint8_read_back_within_a_step(tmp_path, driver):
    pred = class_map()
    proba = probabilities(pred)
    path = write_map(tmp_path / "map.tif", pred, LIKE, class_names=NAMES, proba=proba,
                     proba_dtype="uint8")
    with rasterio.open(proba_path_for(path)) as src:
        assert src.dtypes == ("uint8",) * 3 and src.nodata == 255
        assert src.profile["tiled"] and src.compression.name.lower() == "deflate"
        assert src.overviews(1) == [2] and src.descriptions == ("P(Woods)", "P(Roads)", "P(Water)")
        raw = src.read()
        got = raw * np.asarray(src.scales, np.float32)[:, None, None]
        assert "PROBA_ENCODING" in src.tags()
    valid = pred > 0
    assert (raw[:, ~valid] == 255).all() and (raw[:, valid] < 255).all()
    np.testing.assert_allclose(got[:, valid], np.moveaxis(proba, -1, 0)[:, valid], atol=1 / 255)
    np.testing.assert_allclose(got[:, valid].sum(axis=0), 1, atol=3 / 254)


def test_float32_probabilities_are_a_compressed_cog_too(tmp_path):
    pred = class_map()
    proba = probabilities(pred)
    path = write_map(tmp_path / "map.tif", pred, LIKE, class_names=NAMES, proba=proba)
    with rasterio.open(proba_path_for(path)) as src:
        assert src.dtypes == ("float32",) * 3 and np.isnan(src.nodata)
        assert src.profile["tiled"] and src.compression.name.lower() == "deflate"
        assert src.overviews(1) == [2]
        if _raster.cog_available():
            assert _layout(src) == "COG"
        got = src.read()
    np.testing.assert_array_equal(got[:, pred > 0], np.moveaxis(proba, -1, 0)[:, pred > 0])
    assert np.isnan(got[:, pred == 0]).all()


def test_predict_raster_writes_cogs(tmp_path):
    h, l, gt, _ = write_scene(tmp_path)
    with pytest.warns(UserWarning, match="name no class"):
        model = fast_model(h, l, gt)
    out = predict_raster(model, h, l, tmp_path / "out" / "map.tif", proba=True,
                         proba_dtype="uint8", block_size=16, progress=False)
    with rasterio.open(out) as src, rasterio.open(proba_path_for(out)) as psrc:
        codes = src.read(1)
        assert src.profile["tiled"] and src.compression.name.lower() == "deflate"
        assert psrc.dtypes[0] == "uint8" and psrc.scales[0] == pytest.approx(1 / 254)
        prob = psrc.read() * psrc.scales[0]
        if _raster.cog_available():
            assert _layout(src) == _layout(psrc) == "COG"
    valid = codes > 0
    np.testing.assert_allclose(prob[:, valid].sum(axis=0), 1, atol=3 / 254)
    np.testing.assert_array_equal(np.argmax(prob[:, valid], axis=0) + 1, codes[valid])
    assert sorted(os.listdir(tmp_path / "out")) == ["map.tif", "map.tif.aux.xml", "map_proba.tif"]


@pytest.mark.parametrize("bad", ["float16", "uint16", "f4", None])
def test_a_bad_proba_dtype_names_the_argument(tmp_path, bad):
    pred = class_map()
    with pytest.raises(ValueError, match=r"proba_dtype must be one of \('float32', 'uint8'\); "
                                         rf"got {bad!r}"):
        write_map(tmp_path / "map.tif", pred, LIKE, proba=probabilities(pred), proba_dtype=bad)
    assert not os.listdir(tmp_path)


def test_a_failure_while_making_the_cog_publishes_nothing(tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_raster, "_publish_cog", disk_full)
    pred = class_map()
    with pytest.raises(OSError, match=r"could not write .*map.tif \(No space left on device\)"):
        write_map(tmp_path / "map.tif", pred, LIKE, proba=probabilities(pred))
    assert os.listdir(tmp_path) == []  # neither the map, nor a temporary or staged file
