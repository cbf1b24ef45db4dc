"""``mmlgnet fit`` / ``mmlgnet predict`` on a user's rasters, and tile-parallel prediction on dask."""

from __future__ import annotations

import json

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio", reason="the 'geo' extra (rasterio) is not installed")

from sklearn_mmlgnet import BandStandardScaler  # noqa: E402
from sklearn_mmlgnet.cli import main  # noqa: E402
from sklearn_mmlgnet.io import predict_raster, proba_path_for, read_scene, write_map  # noqa: E402
from sklearn_mmlgnet.persistence import load_model, save_model  # noqa: E402
from sklearn_mmlgnet.prediction import predict_scene  # noqa: E402
from sklearn_mmlgnet.scene import SceneModel, fit_scene  # noqa: E402

from .conftest import requires_st  # noqa: E402
from .test_io import ORIGIN, UTM17, _write, write_scene  # noqa: E402
from .test_scene import tiny_estimator  # noqa: E402

NAMES = {1: "Woods", 2: "Roads", 3: "Vineyard"}
TINY = ["--epochs", "2", "--patch-size", "5", "--hsi-channels", "8", "--lidar-channels", "4",
        "--fusion-dim", "8", "--quiet"]


def _named_labels(tmp_path, labels, scene_path):
    """The ground truth as a map with class names, as a GIS would export it."""
    return str(write_map(tmp_path / "gt_named.tif", labels, like=scene_path, class_names=NAMES))


@requires_st
def test_fit_then_predict_writes_a_georeferenced_map(tmp_path, capsys):
    h, l, _, labels = write_scene(tmp_path)
    gt = _named_labels(tmp_path, labels, h)
    model_path = tmp_path / "model.safetensors"
    assert main(["fit", "--hsi", h, "--lidar", l, "--labels", gt, "--out", str(model_path),
                 "--text-encoder", "sentence-transformers", *TINY]) == 0
    out = capsys.readouterr().out
    assert "Woods (" in out and f"Saved the model to {model_path}" in out
    model = load_model(model_path)  # the safe format: no trust needed
    assert isinstance(model, SceneModel)
    info = model.info
    assert info["n_hsi_bands"] == 6 and info["n_lidar_bands"] == 1 and info["patch_size"] == 5
    assert info["class_names"] == NAMES
    (scene,) = info["trained_on"]
    assert scene["hsi"].endswith("hsi.tif") and scene["crs"] == "EPSG:32617"
    assert scene["n_labelled"] == int(((labels > 0)).sum()) - 2  # 2 nodata px
    assert info["date"].startswith("20")
    clf = model.estimator[-1]
    assert clf.text_encoder_info_["backend"] == "sentence-transformers"
    assert clf.class_names_ == ["Woods", "Roads", "Vineyard"]
    assert clf.module__hsi_channels == (8,) and clf.module__fusion_dim == 8  # the CLI's options

    map_path = tmp_path / "maps" / "map.tif"
    assert main(["predict", str(model_path), "--hsi", h, "--lidar", l, "--out", str(map_path),
                 "--proba", "--block-size", "16", "--quiet"]) == 0
    with rasterio.open(map_path) as src:
        assert src.crs == UTM17 and src.transform == ORIGIN and src.nodata == 0
        got = src.read(1)
        assert json.loads(src.tags()["CLASS_NAMES"]) == {str(k): v for k, v in NAMES.items()}
    scene = read_scene(h, l)
    assert (got[~scene.valid_mask] == 0).all() and set(np.unique(got[scene.valid_mask])) <= {1, 2, 3}
    with rasterio.open(proba_path_for(map_path)) as src:
        proba = src.read()
    assert proba.shape == (3, 30, 36)
    np.testing.assert_allclose(proba[:, scene.valid_mask].sum(axis=0), 1, rtol=1e-5)
    np.testing.assert_array_equal(proba.argmax(axis=0)[scene.valid_mask] + 1, got[scene.valid_mask])


@requires_st
def test_predict_with_test_time_augment_averages_the_symmetries(tmp_path):
    h, l, gt, _ = write_scene(tmp_path)
    mpath = tmp_path / "model.safetensors"
    assert main(["fit", "--hsi", h, "--lidar", l, "--labels", gt, "--out", str(mpath),
                 "--text-encoder", "sentence-transformers", *TINY]) == 0
    model = load_model(mpath)
    plain = predict_raster(model, h, l, tmp_path / "plain.tif", proba=True, block_size=16)
    model.estimator.set_params(mmlgnetclassifier__test_time_augment=True)
    ref = predict_raster(model, h, l, tmp_path / "ref.tif", proba=True, block_size=16)
    out = tmp_path / "tta.tif"
    assert main(["predict", str(mpath), "--hsi", h, "--lidar", l, "--out", str(out), "--proba",
                 "--block-size", "16", "--quiet", "--test-time-augment"]) == 0

    def read(path):
        with rasterio.open(proba_path_for(path)) as src:
            return src.read()

    np.testing.assert_allclose(read(out), read(ref), rtol=0, atol=1e-6)
    assert np.nanmax(np.abs(read(out) - read(plain))) > 1e-4  # NaN: nodata pixels


def test_test_time_augment_on_a_model_without_it_is_one_line(tmp_path, capsys):
    import joblib
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from sklearn_mmlgnet.preprocessing import CenterPixel

    h, l, _, _ = write_scene(tmp_path)
    rng = np.random.RandomState(0)
    model = make_pipeline(CenterPixel(), LogisticRegression()).fit(
        rng.normal(size=(20, 7, 3, 3)), np.arange(20) % 2)
    joblib.dump(model, tmp_path / "lr.joblib")  # a pickle of the user's own: trusted
    code = main(["predict", str(tmp_path / "lr.joblib"), "--trust-pickle", "--hsi", h, "--lidar",
                 l, "--out", str(tmp_path / "x.tif"), "--quiet", "--test-time-augment"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert "--test-time-augment" in err and "no test_time_augment parameter" in err


def _tiny_estimator():
    return tiny_estimator()


@requires_st
def test_fit_with_spectral_norm_normalises_first_and_predicts_the_scene_densely(tmp_path):
    from sklearn_mmlgnet import SpectralNormalizer
    from sklearn_mmlgnet.prediction import supports_dense

    h, l, _, labels = write_scene(tmp_path)
    gt = _named_labels(tmp_path, labels, h)
    model_path = tmp_path / "model.safetensors"
    assert main(["fit", "--hsi", h, "--lidar", l, "--labels", gt, "--out", str(model_path),
                 "--text-encoder", "sentence-transformers", "--spectral-norm", "l2", *TINY]) == 0
    model = load_model(model_path).estimator
    assert [type(s) for _, s in model.steps[:2]] == [SpectralNormalizer, BandStandardScaler]
    assert model[0].norm == "l2" and model[0].n_lidar_bands == 1 and model[0].n_hsi_bands_ == 6
    assert supports_dense(model, 5)
    assert main(["predict", str(model_path), "--hsi", h, "--lidar", l,
                 "--out", str(tmp_path / "map.tif"), "--quiet"]) == 0


def test_bad_input_gives_one_error_line_and_a_nonzero_exit_status(tmp_path, capsys):
    h, l, gt, labels = write_scene(tmp_path)
    model = fit_scene(h, l, _named_labels(tmp_path, labels, h), patch_size=5,
                      estimator=_tiny_estimator(), log=lambda m: None)
    mpath = str(save_model(model, tmp_path / "m.safetensors"))
    other_crs = _write(tmp_path / "chm_18n.tif", np.ones((30, 36)), "float32",
                       crs=rasterio.crs.CRS.from_epsg(32618))
    five_bands = _write(tmp_path / "hsi5.tif", np.ones((5, 30, 36)), "int16")
    (tmp_path / "junk.joblib").write_text("not a model")
    cases = [
        (["predict", str(tmp_path / "nope.joblib"), "--hsi", h, "--out", "x.tif"],
         "model: no such file"),
        (["predict", str(tmp_path / "junk.joblib"), "--hsi", h, "--out", "x.tif"],
         "is not a sklearn-mmlgnet model file"),
        (["predict", mpath, "--hsi", str(tmp_path / "no.tif"), "--lidar", l, "--out", "x.tif"],
         "hsi: no such file"),
        (["predict", mpath, "--hsi", h, "--lidar", other_crs, "--out", "x.tif"],
         "CRS EPSG:32618 vs EPSG:32617"),
        (["predict", mpath, "--hsi", five_bands, "--lidar", l, "--out", "x.tif"],
         "fitted on 6 HSI + 1 LiDAR bands"),
        (["fit", "--hsi", h, "--labels", str(tmp_path / "gt.shp"), "--out", "m2.safetensors"],
         "--labels: no such file"),
    ]
    for argv, message in cases:
        # 3: a file is missing; 2: a file is there but not what the command needs.
        assert main(argv) == (3 if "no such file" in message else 2), argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("mmlgnet: error: ") and message in err[0], \
            (argv, err)
    assert not (tmp_path / "x.tif").exists()


def test_local_dask_cluster_map_equals_the_single_process_map(tmp_path, capsys):
    distributed = pytest.importorskip("distributed", reason="the 'dask' extra is not installed")
    h, l, _, labels = write_scene(tmp_path, H=40, W=44)
    model = fit_scene(h, l, _named_labels(tmp_path, labels, h), patch_size=5,
                      estimator=_tiny_estimator(), log=lambda m: None)
    mpath = str(save_model(model, tmp_path / "m.safetensors"))
    local = predict_raster(model, h, l, tmp_path / "local.tif", block_size=16, proba=True,
                           progress=False)
    # one worker process, two threads: its tiles run side by side on one unpickled model
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        on_dask = predict_raster(model, h, l, tmp_path / "dask.tif", block_size=16, proba=True,
                                 client=client, progress=False)
        assert main(["predict", mpath, "--hsi", h, "--lidar", l, "--out",
                     str(tmp_path / "cli.tif"), "--block-size", "16", "--quiet",
                     "--scheduler", cluster.scheduler_address]) == 0
    with rasterio.open(local) as a, rasterio.open(on_dask) as b, \
            rasterio.open(tmp_path / "cli.tif") as c:
        expected = a.read(1)
        np.testing.assert_array_equal(b.read(1), expected)
        np.testing.assert_array_equal(c.read(1), expected)
        assert b.crs == a.crs and b.transform == a.transform and b.colormap(1) == a.colormap(1)
    with rasterio.open(proba_path_for(local)) as a, rasterio.open(proba_path_for(on_dask)) as b:
        np.testing.assert_array_equal(b.read(), a.read())
    # and it is the map predict_scene gives on the scene read whole (9 tiles of 16 x 16 here)
    scene = read_scene(h, l)
    cube = np.concatenate([scene.hsi, scene.lidar], -1)
    cube = np.where(np.isnan(cube), np.float32(model.info["fill_values"]), cube)
    whole = predict_scene(model.estimator, cube[..., :6], cube[..., 6:], patch_size=5, mask=scene.valid_mask)
    np.testing.assert_array_equal(expected[scene.valid_mask], whole[scene.valid_mask])


@requires_st
def test_fit_resamples_a_finer_lidar_and_predict_writes_uint8_probabilities(tmp_path):
    from rasterio.transform import from_origin

    h, l, _, labels = write_scene(tmp_path)
    with rasterio.open(l) as src:  # the CHM at half the HSI's pixel size
        fine = np.repeat(np.repeat(src.read(1), 2, axis=0), 2, axis=1)
    fine_path = _write(tmp_path / "chm_05m.tif", fine, "float32",
                       transform=from_origin(ORIGIN.c, ORIGIN.f, 0.5, 0.5))
    gt = _named_labels(tmp_path, labels, h)
    mpath = tmp_path / "m.safetensors"
    fit = ["fit", "--hsi", h, "--lidar", fine_path, "--labels", gt, "--out", str(mpath),
           "--text-encoder", "sentence-transformers", *TINY]
    assert main(fit) == 2  # other grids: refused without --resample-to
    assert main([*fit, "--resample-to", "hsi"]) == 0
    assert load_model(mpath).info["resampling"]["resample_to"] == "hsi"
    assert main([*fit, "--resample-to", "coarse"]) == 2
    out = tmp_path / "map.tif"
    assert main(["predict", str(mpath), "--hsi", h, "--lidar", fine_path, "--out", str(out),
                 "--proba", "--proba-dtype", "uint8", "--quiet"]) == 0
    with rasterio.open(proba_path_for(out)) as src:
        assert src.dtypes[0] == "uint8" and src.shape == (30, 36)
