"""Faults a careful user (or an attacker) meets in sklearn_mmlgnet.io: handled, or a clear error.

Issue 25's items on the library side; the command's side is in test_cli_faults.py.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio", reason="the 'geo' extra (rasterio) is not installed")
from rasterio.crs import CRS  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from sklearn_mmlgnet import _io, CenterPixel  # noqa: E402
from sklearn_mmlgnet.io import predict_raster, proba_path_for, read_scene  # noqa: E402
from sklearn_mmlgnet.scene import fit_scene  # noqa: E402

from .test_io import ORIGIN, UTM17, _box, _write, _write_envi, write_scene  # noqa: E402


def fast_estimator():
    """A quick classifier of patches (centre pixel + logistic regression): no network to train."""
    return make_pipeline(CenterPixel(), LogisticRegression(max_iter=300))


def fast_model(h, l, gt, patch_size=3):
    return fit_scene(h, l, gt, estimator=fast_estimator(), patch_size=patch_size,
                     log=lambda m: None)


def _quiet(**kw):
    return dict(progress=False, **kw)


# ------------------------------------------------------------ 1: out is an input
@pytest.mark.parametrize("which", ["hsi", "lidar", "symlink to hsi"])
def test_predict_raster_refuses_an_output_that_is_an_input(tmp_path, which):
    h, l, gt, _ = write_scene(tmp_path)
    with pytest.warns(UserWarning, match="name no class"):
        model = fast_model(h, l, gt)
    before = {p: open(p, "rb").read() for p in (h, l)}
    out = {"hsi": h, "lidar": l, "symlink to hsi": tmp_path / "link.tif"}[which]
    if which.startswith("symlink"):
        os.symlink(h, out)
    with pytest.raises(ValueError, match=r"out .* is the input (hsi|lidar) .*destroy"):
        predict_raster(model, h, l, out, **_quiet())
    assert before == {p: open(p, "rb").read() for p in (h, l)}


# ------------------------------------------------------ 4: a tile of nodata only
def test_proba_with_a_tile_of_nodata_only(tmp_path):
    h, l, gt, _ = write_scene(tmp_path, nodata_px=())
    with rasterio.open(h, "r+") as dst:  # a flight line's corner: one whole 8 x 8 tile
        cube = dst.read()
        cube[:, :8, :8] = -9999
        dst.write(cube)
    with pytest.warns(UserWarning, match="name no class"):
        model = fast_model(h, l, gt)
    out = predict_raster(model, h, l, tmp_path / "map.tif", proba=True, block_size=8, **_quiet())
    with rasterio.open(out) as src, rasterio.open(proba_path_for(out)) as psrc:
        pred, proba = src.read(1), psrc.read()
    assert (pred[:8, :8] == 0).all() and np.isnan(proba[:, :8, :8]).all()
    valid = read_scene(h, l).valid_mask
    assert (pred[valid] > 0).all()
    np.testing.assert_allclose(proba[:, valid].sum(axis=0), 1, rtol=1e-5)


# ------------------------------------------------------- 6: codes above 65535
def test_label_codes_above_65535_keep_their_names_in_the_legend(tmp_path):
    h, l, _, labels = write_scene(tmp_path, n_classes=2)
    codes = np.select([labels == 1, labels == 2], [2, 70000], 0)
    gt = _write(tmp_path / "gt_big.tif", codes, "uint32")
    with rasterio.open(gt, "r+") as dst:
        dst.update_tags(CLASS_NAMES=json.dumps({"2": "Oak", "70000": "Pine"}))
    model = fast_model(h, l, gt)
    np.testing.assert_array_equal(model.classes_, [2, 70000])
    out = predict_raster(model, h, l, tmp_path / "map.tif", **_quiet())
    with rasterio.open(out) as src:
        pred = src.read(1)
        tags = src.tags()
    # codes 1..K in the order of classes_; the legend names the right class for each
    assert json.loads(tags["CLASS_NAMES"]) == {"1": "Oak", "2": "Pine"}
    assert json.loads(tags["CLASS_LABELS"]) == {"1": "2", "2": "70000"}
    keep = (codes > 0) & read_scene(h, l).valid_mask
    assert np.mean(pred[keep] == np.where(codes[keep] == 2, 1, 2)) > 0.9


# ------------------------------------------------------- 7: fractional labels
def test_fractional_label_values_are_refused_naming_the_file(tmp_path):
    h, _, _, labels = write_scene(tmp_path)
    smooth = labels.astype("float32")
    gt = _write(tmp_path / "gt_whole.tif", smooth, "float32")
    np.testing.assert_array_equal(read_scene(h, labels=gt).labels, labels)  # 2.0 is class 2
    smooth[3, 4] = 1.5  # resampled bilinearly
    gt = _write(tmp_path / "gt_bilinear.tif", smooth, "float32")
    with pytest.raises(ValueError, match=r"labels: .*gt_bilinear.tif holds non-integer values "
                                         r"\(1 pixels, e.g. 1.5 at row 3, col 4\)"):
        read_scene(h, labels=gt)


# ----------------------------------------------------------- 8: +/-inf values
def test_infinite_values_are_nodata_in_fit_and_predict(tmp_path):
    h, l, gt, labels = write_scene(tmp_path, nodata_px=())
    with rasterio.open(h) as src:
        cube = src.read().astype("float32")
    cube[1, 2, 3], cube[0, 4, 5] = np.inf, -np.inf
    hf = _write(tmp_path / "hsi_float.tif", cube, "float32")
    scene = read_scene(hf, l, gt)
    assert np.isnan(scene.hsi[2, 3, 1]) and np.isnan(scene.hsi[4, 5, 0])
    assert not scene.valid_mask[2, 3] and not scene.valid_mask[4, 5]
    with pytest.warns(UserWarning, match="name no class"):
        model = fast_model(hf, l, gt)  # no "fill or mask them before fitting"
    out = predict_raster(model, hf, l, tmp_path / "map.tif", **_quiet())
    with rasterio.open(out) as src:
        pred = src.read(1)
    assert pred[2, 3] == 0 and pred[4, 5] == 0 and (pred[scene.valid_mask] > 0).all()


# ------------------------------------------------ 9: messages that name the file
@pytest.mark.parametrize("role", ["hsi", "lidar", "labels"])
def test_truncated_raster_is_named_with_its_role(tmp_path, role):
    h, l, gt, _ = write_scene(tmp_path, H=60, W=64)
    path = {"hsi": h, "lidar": l, "labels": gt}[role]
    with rasterio.open(path) as src:  # rewritten uncompressed, in strips
        raw = _write(tmp_path / f"raw_{role}.tif", src.read(), src.dtypes[0], nodata=src.nodata)
    size = os.path.getsize(raw)
    with open(raw, "r+b") as f:
        f.truncate(size // 2)
    args = {"hsi": h, "lidar": l, "labels": gt, role: raw}
    with pytest.raises(ValueError, match=rf"{role}: .*raw_{role}.tif could not be read .*"
                                         "truncated or corrupt"):
        read_scene(args["hsi"], args["lidar"], args["labels"])


def test_bad_class_names_tag_names_the_file(tmp_path):
    h, _, _, labels = write_scene(tmp_path)
    gt = _write(tmp_path / "gt_tagged.tif", labels, "uint8")
    with rasterio.open(gt, "r+") as dst:
        dst.update_tags(CLASS_NAMES=json.dumps({"Woods": 1}))
    with pytest.raises(ValueError, match=r"labels: .*gt_tagged.tif: its CLASS_NAMES tag has the "
                                         r"key 'Woods', which is not an integer class code"):
        read_scene(h, labels=gt)


def _geojson(path, features, crs="EPSG:32617", raw=None):
    data = {"type": "FeatureCollection", "features": features}
    if crs is not None:
        data["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(raw if raw is not None else json.dumps(data))
    return path


def _feature(ring, cls="Woods"):
    return {"type": "Feature", "properties": {"class": cls},
            "geometry": {"type": "Polygon", "coordinates": [ring]}}


X0, Y0 = 542055.0, 4134999.0


@pytest.mark.parametrize("crs, message", [
    ({"type": "name", "properties": {"name": "EPSG:999999"}},
     r"its crs 'EPSG:999999' is not a CRS GDAL knows"),
    (["not", "a", "name"], r"its 'crs' member .* names no CRS"),
])
def test_bad_geojson_crs_names_the_file(tmp_path, crs, message):
    h, _, _, _ = write_scene(tmp_path)
    gj = tmp_path / "bad_crs.geojson"
    gj.write_text(json.dumps({"type": "FeatureCollection", "crs": crs, "features": [
        _feature(_box(X0 + 2, Y0 - 6, X0 + 6, Y0 - 2))]}))
    with pytest.raises(ValueError, match=r"labels: .*bad_crs.geojson: " + message):
        read_scene(h, labels=gj)


# ------------------------------------------ 10: odd GeoJSON, huge sparse rasters
@pytest.mark.parametrize("text, message", [
    ('{"type": "FeatureCollection", "features": ' + "[" * 100_000 + "]" * 100_000 + "}",
     "nested too deeply"),
    ('{"type": "FeatureCollection", "features": [1, "a", null]}',
     "feature 0 is not a GeoJSON Feature object"),
    ('{"type": "FeatureCollection", "features": {"a": 1}}', "has no list of 'features'"),
    ('[1, 2]', "holds a JSON list, not a GeoJSON FeatureCollection"),
    ('{"features": [{"type": "Feature", "properties": [], "geometry": null}]}',
     "feature 0 is not a GeoJSON Feature object"),
    ('{"features": [{"type": "Feature", "properties": {"class": "a"}, '
     '"geometry": {"type": "Polygon", "coordinates": "abc"}}]}', "feature 0's geometry"),
    ('{"features": [{"type": "Feature", "properties": {"class": "a"}, '
     '"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, NaN], [1, 1], [0, 0]]]}}]}',
     "feature 0's geometry"),
    ('{"features": [{"type": "Feature", "properties": {"class": [1]}, "geometry": '
     '{"type": "Point", "coordinates": [542057.5, 4134997.5]}}], '
     '"crs": {"type": "name", "properties": {"name": "EPSG:32617"}}}', "holds [1]"),
])
def test_odd_geojson_is_a_clear_error(tmp_path, text, message):
    h, _, _, _ = write_scene(tmp_path)
    gj = tmp_path / "odd.geojson"
    gj.write_text(text)
    with pytest.raises(ValueError, match=r"labels: .*odd.geojson.*" + re.escape(message)):
        read_scene(h, labels=gj)


def _sparse_giant(path, side=100_000):
    """A BigTIFF of side x side px whose blocks are all sparse: a few hundred KB on disk."""
    with rasterio.open(path, "w", driver="GTiff", width=side, height=side, count=1,
                       dtype="uint8", crs=UTM17, transform=ORIGIN, tiled=True, BIGTIFF="YES",
                       SPARSE_OK="TRUE"):
        pass
    return path


def test_a_raster_too_large_for_memory_is_refused_before_it_is_read(tmp_path):
    giant = _sparse_giant(tmp_path / "giant.tif")
    assert os.path.getsize(giant) < 5_000_000
    with pytest.raises(ValueError, match=r"hsi .*giant.tif: reading the scene whole \(100000 x "
                                         r"100000 px, 1 HSI \+ 0 LiDAR bands as float32\) needs "
                                         r"[\d.]+ GiB of memory"):
        read_scene(giant)
    assert read_scene(giant, window=((0, 3), (0, 4))).hsi.shape == (3, 4, 1)  # a part is fine


# ------------------------------------------- 11: outputs checked before the work
def test_an_existing_folder_as_out_fails_before_the_work_and_publishes_nothing(tmp_path,
                                                                                monkeypatch):
    from sklearn_mmlgnet import _tiles

    h, l, gt, _ = write_scene(tmp_path)
    with pytest.warns(UserWarning):
        model = fast_model(h, l, gt)
    (tmp_path / "maps").mkdir()
    monkeypatch.setattr(_tiles, "predict_tile", lambda *a, **k: pytest.fail("predicted"))
    with pytest.raises(ValueError, match=r"out .*maps is an existing folder"):
        predict_raster(model, h, l, tmp_path / "maps", **_quiet())
    assert not (tmp_path / "maps.aux.xml").exists()


def test_map_and_side_files_are_published_together_map_last(tmp_path, monkeypatch):
    h, l, gt, _ = write_scene(tmp_path)
    with pytest.warns(UserWarning):
        model = fast_model(h, l, gt)
    renamed, real = [], os.replace
    monkeypatch.setattr(_io.os, "replace", lambda a, b: (renamed.append(os.path.basename(b)),
                                                         real(a, b))[1])
    predict_raster(model, h, l, tmp_path / "map.tif", proba=True, **_quiet())
    assert renamed == ["map_proba.tif", "map.tif.aux.xml", "map.tif"]
    # a failure in the middle of the work publishes nothing and leaves no temporary file
    calls = {"n": 0}
    real_predict = model.estimator.predict

    def fail_second(X):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")
        return real_predict(X)

    monkeypatch.setattr(model.estimator, "predict", fail_second)
    with pytest.raises(RuntimeError, match="boom"):
        predict_raster(model, h, l, tmp_path / "other.tif", block_size=8, **_quiet())
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".other", "other")))
    assert left == []


# -------------------------------------------- 13: temporary files, fsync, umask
def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_a_killed_process_are_removed_on_the_next_write(tmp_path):
    target = tmp_path / "notes.txt"
    host = _io._host()
    stale = tmp_path / f".notes.txt{_io.TMP_MARK}{host}-{_dead_pid()}-abcd1234.txt"
    live = tmp_path / f".notes.txt{_io.TMP_MARK}{host}-{os.getpid()}-abcd1234.txt"
    other = tmp_path / f".notes.txt{_io.TMP_MARK}otherhost-{_dead_pid()}-abcd1234.txt"
    unrelated = tmp_path / ".notes.txt.backup"
    for p in (stale, live, other, unrelated):
        p.write_text("x")
    _io.write_text(target, "hello")
    assert target.read_text() == "hello"
    assert not stale.exists()
    assert live.exists() and other.exists() and unrelated.exists()  # not ours to judge


def test_files_are_flushed_to_disk_before_the_rename(tmp_path, monkeypatch):
    events, real_fsync, real_replace = [], os.fsync, os.replace
    monkeypatch.setattr(_io.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(_io.os, "replace",
                        lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    _io.write_text(tmp_path / "a.txt", "x")
    assert events[:2] == ["fsync", "replace"]


def test_the_umask_is_obeyed_without_being_read_or_changed(tmp_path, monkeypatch):
    def no_umask(mask):
        raise AssertionError("os.umask called: it changes the mask of every thread")

    old = os.umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", no_umask)
        _io.write_text(tmp_path / "a.txt", "x")
    finally:
        monkeypatch.undo()
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640


# -------------------------------------------------------------------- 14: odds
def test_geojson_without_crs_is_wgs84_and_reprojected(tmp_path):
    from rasterio.warp import transform_geom

    h, _, _, _ = write_scene(tmp_path)
    ring = _box(X0 + 2, Y0 - 6, X0 + 6, Y0 - 2)  # rows 2-5, cols 2-5
    lonlat = transform_geom(UTM17, CRS.from_epsg(4326), {"type": "Polygon", "coordinates": [ring]})
    gj = _geojson(tmp_path / "rfc7946.geojson", [_feature(lonlat["coordinates"][0])], crs=None)
    labels = read_scene(h, labels=gj).labels
    assert (labels[2:6, 2:6] == 1).all() and (labels > 0).sum() == 16
    # UTM coordinates without a crs member: a clear error, not polygons in the wrong place
    gj = _geojson(tmp_path / "utm_no_crs.geojson", [_feature(ring)], crs=None)
    with pytest.raises(ValueError, match=r"utm_no_crs.geojson has no 'crs' member, so its "
                                         r"coordinates are WGS84 .* \(RFC 7946\)"):
        read_scene(h, labels=gj)


class _Server:
    """A local HTTP server counting the requests it gets."""

    def __enter__(self):
        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self):  # noqa: N802
                hits.append(self.path)
                self.send_response(404)
                self.end_headers()

            do_GET = do_HEAD  # noqa: N815

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _vrt(path, source):
    path.write_text(
        '<VRTDataset rasterXSize="36" rasterYSize="30"><SRS>EPSG:32617</SRS>'
        '<GeoTransform>542055.0, 1.0, 0.0, 4134999.0, 0.0, -1.0</GeoTransform>'
        '<VRTRasterBand dataType="Float32" band="1"><SimpleSource>'
        f'<SourceFilename relativeToVRT="0">{source}</SourceFilename>'
        "<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>")
    return path


def test_gdal_reaches_no_network_unless_allowed(tmp_path, monkeypatch):
    h, _, _, _ = write_scene(tmp_path)
    with _Server() as server:
        url = f"/vsicurl/http://127.0.0.1:{server.server.server_address[1]}/chm.tif"
        vrt = _vrt(tmp_path / "remote_chm.vrt", url)
        monkeypatch.delenv(_io.REMOTE_OPT_IN, raising=False)
        with pytest.raises(ValueError, match=r"lidar: .*remote_chm.vrt refers to a network "
                                             r"resource \(/vsicurl/.*MMLGNET_ALLOW_NETWORK=1"):
            read_scene(h, vrt)
        assert server.hits == []
        # even a reference the scan misses is not fetched: GDAL's own switch is off too
        monkeypatch.setattr(_io, "_check_network_refs", lambda path, role: None)
        with pytest.raises(ValueError, match=r"lidar: .*remote_chm.vrt could not be read"):
            read_scene(h, vrt)
        assert server.hits == []
        monkeypatch.setenv(_io.REMOTE_OPT_IN, "1")  # the user opts in: GDAL asks the server
        with pytest.raises(ValueError):
            read_scene(h, _vrt(tmp_path / "remote2.vrt", url.replace("chm", "chm2")))
        assert server.hits


@pytest.mark.parametrize("change, message", [
    (lambda hdr, img: img.write_bytes(img.read_bytes()[:-100]), "has 860 bytes"),
    (lambda hdr, img: hdr.write_text(hdr.read_text().replace("bands = 4", "bands = 3")),
     r"describes 10 samples x 12 lines x 3 bands of int16 \(720 bytes"),
])
def test_envi_header_disagreeing_with_its_data_file_is_refused(tmp_path, change, message):
    cube = np.arange(4 * 12 * 10).reshape(4, 12, 10).astype("int16")
    hdr, img = _write_envi(tmp_path, cube, "flight")
    assert read_scene(hdr).hsi.shape == (12, 10, 4)  # 960 bytes: as the header says
    change(hdr, img)
    with pytest.raises(ValueError, match=r"hsi: the ENVI header .*flight.hdr .*" + message):
        read_scene(hdr)


def test_a_scene_far_outside_the_training_range_warns(tmp_path):
    h, l, gt, _ = write_scene(tmp_path)  # int16 digital numbers, reflectance x 10000
    with pytest.warns(UserWarning, match="name no class"):
        model = fast_model(h, l, gt)
    with rasterio.open(h) as src:
        cube = src.read().astype("float32")
    refl = _write(tmp_path / "hsi_reflectance.tif", np.where(cube == -9999, -9999, cube / 1e4),
                  "float32", nodata=-9999)
    with pytest.warns(UserWarning, match=r"hsi_reflectance.tif looks unlike the training data: "
                                         r"6 of 7 bands lie far outside the training range"):
        predict_raster(model, refl, l, tmp_path / "map.tif", **_quiet())
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the training scene itself: no warning
        predict_raster(model, h, l, tmp_path / "map2.tif", **_quiet())
