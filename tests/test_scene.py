"""fit_scene and SceneModel (sklearn_mmlgnet.scene): the library behind ``mmlgnet fit``."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio", reason="the 'geo' extra (rasterio) is not installed")

from sklearn_mmlgnet import BandStandardScaler, MMLGNetClassifier, SpectralNormalizer  # noqa: E402
from sklearn_mmlgnet import scene as scene_module  # noqa: E402
from sklearn_mmlgnet.io import read_scene  # noqa: E402
from sklearn_mmlgnet.scene import SceneModel, fit_scene  # noqa: E402

from .test_io import _box, _write_shapefile, write_scene  # noqa: E402

INFO_KEYS = {"n_hsi_bands", "n_lidar_bands", "patch_size", "class_names", "fill_values",
             "band_std", "wavelengths", "trained_on", "n_labelled", "pixels_per_class",
             "resampling", "date", "sklearn_mmlgnet_version"}


def tiny_estimator(**kw):
    return MMLGNetClassifier(text_embeddings=np.eye(3, 8), module__hsi_channels=(8,),
                             module__lidar_channels=(4,), module__fusion_dim=8, max_epochs=2,
                             lr=1e-2, random_state=0, **kw)


def _quiet(h, l, labels, **kw):
    return fit_scene(h, l, labels, log=lambda m: None, **kw)


def test_fit_scene_clones_the_estimator_and_keeps_the_scene_info_beside_it(tmp_path):
    h, l, gt, labels = write_scene(tmp_path)
    given = tiny_estimator()
    before = given.get_params()
    with pytest.warns(UserWarning, match=r"name no class for code\(s\) \[1, 2, 3\]"):
        model = _quiet(h, l, gt, estimator=given, patch_size=5)
    assert isinstance(model, SceneModel)
    assert not hasattr(given, "classes_")  # the estimator given is not touched
    assert {k: str(v) for k, v in given.get_params().items()} == \
        {k: str(v) for k, v in before.items()}
    clf = model.estimator[-1]
    assert clf is not given and clf.n_lidar_bands == 1 and clf.class_names == {1: "1", 2: "2",
                                                                               3: "3"}
    assert type(model.estimator[0]) is BandStandardScaler  # no SpectralNormalizer unless asked
    assert set(model.info) == INFO_KEYS
    info = model.info
    assert info["n_hsi_bands"] == 6 and info["n_lidar_bands"] == 1 and info["patch_size"] == 5
    assert info["class_names"] == {1: "1", 2: "2", 3: "3"}
    (scene,) = info["trained_on"]  # one scene: a list of one
    assert scene["hsi"].endswith("hsi.tif") and scene["crs"] == "EPSG:32617"
    assert scene["n_labelled"] == info["n_labelled"] == int((labels > 0).sum()) - 2  # 2 nodata
    assert scene["pixels_per_class"] == info["pixels_per_class"] and info["resampling"] is None
    np.testing.assert_array_equal(model.classes_, [1, 2, 3])
    # nodata inside training patches is filled with each band's mean over the valid pixels
    scene = read_scene(h, l)
    cube = np.concatenate([scene.hsi, scene.lidar], -1)[scene.valid_mask]
    np.testing.assert_allclose(info["fill_values"], cube.mean(axis=0), rtol=1e-4)
    np.testing.assert_allclose(info["band_std"], cube.std(axis=0), rtol=1e-3)
    # the information lives in SceneModel.info, never as an attribute added to a Pipeline
    assert not any(hasattr(obj, "scene_info_") for obj in [model.estimator, *model.estimator])


def test_bad_arguments_are_refused_before_the_rasters_are_read(tmp_path, monkeypatch):
    monkeypatch.setattr(scene_module, "read_scene", lambda *a, **k: pytest.fail("read"))
    for kw, message in [(dict(patch_size=4), "patch_size must be an odd int >= 1"),
                        (dict(patch_size=0), "got 0"), (dict(patch_size=True), "got True"),
                        (dict(spectral_norm="l3"), "spectral_norm must be one of"),
                        (dict(labels=None), "labels are required")]:
        args = dict(labels="gt.tif", patch_size=5) | kw
        with pytest.raises(ValueError, match=message):
            _quiet("hsi.tif", None, args.pop("labels"), **args)


def test_spectral_norm_and_given_class_names(tmp_path):
    h, l, gt, _ = write_scene(tmp_path)
    names = {1: "Woods", 2: "Roads", 3: "Vineyard"}
    with pytest.warns(UserWarning):
        model = _quiet(h, l, gt, estimator=tiny_estimator(class_names=names), patch_size=3,
                       spectral_norm="l2")
    assert type(model.estimator[0]) is SpectralNormalizer and model.estimator[0].norm == "l2"
    assert model.estimator[-1].class_names_ == ["Woods", "Roads", "Vineyard"]


def test_fit_from_polygons_takes_the_names_from_the_attribute(tmp_path):
    h, l, _, _ = write_scene(tmp_path)
    x0, y0 = 542055.0, 4134999.0
    shp = _write_shapefile(tmp_path / "fields", [
        (_box(x0 + 1, y0 - 12, x0 + 10, y0 - 2), "Woods"),
        (_box(x0 + 13, y0 - 12, x0 + 22, y0 - 2), "Roads"),
        (_box(x0 + 26, y0 - 12, x0 + 35, y0 - 2), "Vineyard"),
    ], field="crop")
    model = _quiet(h, l, shp, class_field="crop", patch_size=5, estimator=tiny_estimator())
    assert model.info["class_names"] == {1: "Roads", 2: "Vineyard", 3: "Woods"}
    assert model.info["n_labelled"] == 3 * 90 - 1  # one nodata px


def test_labels_covering_one_class_are_refused(tmp_path):
    h, l, _, labels = write_scene(tmp_path)
    from .test_io import _write

    one = _write(tmp_path / "one.tif", (labels == 1).astype("uint8"), "uint8")
    with pytest.raises(ValueError, match=r"labels .*one.tif give \d+ labelled pixel\(s\) of 1 "
                                         r"class\(es\)"):
        _quiet(h, l, one, estimator=tiny_estimator(), patch_size=3)


def test_predict_refuses_hsi_bands_at_other_wavelengths(tmp_path):
    from sklearn_mmlgnet.io import predict_raster

    h, l, gt, _ = write_scene(tmp_path)

    def tag(path, wavelengths):
        with rasterio.open(path, "r+") as dst:
            for i, w in enumerate(wavelengths, start=1):
                dst.update_tags(i, wavelength=str(w))
        return path

    tag(h, [450, 500, 550, 600, 650, 700])
    model = _quiet(h, l, gt, patch_size=5, estimator=tiny_estimator())
    assert model.info["wavelengths"] == [450, 500, 550, 600, 650, 700]
    other = tmp_path / "other.tif"
    shutil.copy(h, other)
    tag(other, [450, 500, 550, 600, 650, 900])
    with pytest.raises(ValueError, match=r"other.tif: its HSI bands are not at the wavelengths "
                                         r"the model was fitted on \(1 of 6 differ, e.g. band 6: "
                                         r"900 here, 700 in the model\)"):
        predict_raster(model, other, l, tmp_path / "map.tif", progress=False)
    assert not (tmp_path / "map.tif").exists()
    predict_raster(model, h, l, tmp_path / "map.tif", progress=False)  # the same bands: fine
