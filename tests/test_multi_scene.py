"""Several scenes at once (issue 27): ``fit_scene`` / ``mmlgnet fit`` on a list of scenes on
different grids, ``mmlgnet predict`` over several rasters (or a folder) with a VRT mosaic."""

from __future__ import annotations

import json

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio", reason="the 'geo' extra (rasterio) is not installed")

from rasterio.crs import CRS  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402

from sklearn_mmlgnet import _cli_scene  # noqa: E402
from sklearn_mmlgnet.cli import main  # noqa: E402
from sklearn_mmlgnet.io import write_map  # noqa: E402
from sklearn_mmlgnet.persistence import load_model, save_model  # noqa: E402
from sklearn_mmlgnet.scene import _merge_classes, fit_scene  # noqa: E402

from .conftest import requires_st  # noqa: E402
from .test_scene import tiny_estimator  # noqa: E402

TINY = ["--epochs", "2", "--patch-size", "5", "--hsi-channels", "8", "--lidar-channels", "4",
        "--fusion-dim", "16", "--quiet"]
UTM17, UTM18 = CRS.from_epsg(32617), CRS.from_epsg(32618)


def write_plot(folder, name, names, *, crs=UTM17, origin=(542055.0, 4134999.0), H=24, W=24,
               B=6, seed=0):
    """A scene as GeoTIFFs: ``<name>_hsi.tif`` (B bands), ``<name>_chm.tif``, ``<name>_gt.tif``.

    ``names`` is ``{code: class name}`` of the label raster: class ``c`` fills a block of
    columns and lifts HSI band ``c`` and the height, so that a tiny network learns it.
    Returns the three paths.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    labels = np.zeros((H, W), np.int64)
    hsi = 0.2 + 0.02 * rng.normal(size=(B, H, W))
    chm = rng.normal(size=(H, W))
    width = W // len(names)
    for k, (code, class_name) in enumerate(sorted(names.items())):
        block = slice(k * width, (k + 1) * width)
        labels[2:H - 2:2, block] = code  # every other row labelled
        lift = {"Woods": 0, "Roads": 1, "Vineyard": 2}[class_name]
        hsi[lift, :, block] += 0.3
        chm[:, block] += 5 * lift
    grid = dict(crs=crs, transform=from_origin(*origin, 1.0, 1.0))
    paths = []
    for suffix, cube in (("hsi", hsi), ("chm", chm[None])):
        path = folder / f"{name}_{suffix}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=W, height=H, count=len(cube),
                           dtype="float32", **grid) as dst:
            dst.write(cube.astype("float32"))
        paths.append(str(path))
    gt = write_map(folder / f"{name}_gt.tif", labels, like={"shape": (H, W), **grid},
                   class_names=names)
    return (*paths, str(gt))


@pytest.fixture
def two_plots(tmp_path):
    """Two scenes on different grids, CRSs and sizes, whose label files number their
    classes differently: Woods + Roads, then Roads + Vineyard."""
    a = write_plot(tmp_path / "a", "plot_a", {1: "Woods", 2: "Roads"})
    b = write_plot(tmp_path / "b", "plot_b", {1: "Roads", 2: "Vineyard"}, crs=UTM18,
                   origin=(300000.0, 4000000.0), H=20, W=28, seed=1)
    return a, b


def _error(capsys):
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmlgnet: error: "), lines
    return lines[0]


# ------------------------------------------------------------------ fit
@requires_st
def test_fit_on_two_scenes_lists_both_and_learns_the_union_of_their_classes(two_plots, tmp_path,
                                                                           capsys):
    (ha, la, ya), (hb, lb, yb) = two_plots
    model_path = tmp_path / "model.safetensors"
    assert main(["fit", "--hsi", ha, "--lidar", la, "--labels", ya,
                 "--hsi", hb, "--lidar", lb, "--labels", yb, "--out", str(model_path),
                 "--text-encoder", "sentence-transformers", *TINY]) == 0
    out = capsys.readouterr().out
    assert "scene 2 of 2" in out and "classes matched by name" in out and "of 2 scenes" in out
    info = load_model(model_path).info
    assert info["class_names"] == {1: "Woods", 2: "Roads", 3: "Vineyard"}
    assert [s["hsi"] for s in info["trained_on"]] == [ha, hb]
    assert [s["crs"] for s in info["trained_on"]] == ["EPSG:32617", "EPSG:32618"]
    assert [s["shape"] for s in info["trained_on"]] == [(24, 24), (20, 28)]
    per_scene = [s["pixels_per_class"] for s in info["trained_on"]]
    assert per_scene == [{1: 120, 2: 120}, {2: 112, 3: 112}]  # b's codes as the model's
    assert info["pixels_per_class"] == {1: 120, 2: 232, 3: 112}
    assert info["n_labelled"] == 464
    np.testing.assert_array_equal(load_model(model_path).classes_, [1, 2, 3])


def test_fit_scene_on_a_list_pools_the_band_statistics(two_plots):
    (ha, la, ya), (hb, lb, yb) = two_plots
    model = fit_scene([ha, hb], [la, [lb]], [ya, yb], estimator=tiny_estimator(), patch_size=3,
                      log=lambda m: None)
    both = []
    for h, l in ((ha, la), (hb, lb)):
        with rasterio.open(h) as s, rasterio.open(l) as t:
            both.append(np.concatenate([s.read(), t.read()]).reshape(7, -1))
    pixels = np.concatenate(both, axis=1)
    np.testing.assert_allclose(model.info["fill_values"], pixels.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(model.info["band_std"], pixels.std(axis=1), rtol=1e-4)
    assert len(model.info["trained_on"]) == 2 and model.info["n_lidar_bands"] == 1


def test_resample_to_reads_each_scene_onto_its_hsi_grid_and_is_recorded(two_plots, tmp_path):
    (ha, la, ya), (hb, lb, yb) = two_plots
    fine = tmp_path / "chm_b_50cm.tif"  # plot b's CHM at 0.5 m: off its HSI's 1 m grid
    with rasterio.open(lb) as src:
        profile = src.profile | dict(width=56, height=40,
                                     transform=from_origin(300000.0, 4000000.0, 0.5, 0.5))
        with rasterio.open(fine, "w", **profile) as dst:
            dst.write(src.read().repeat(2, axis=1).repeat(2, axis=2))
    model = fit_scene([ha, hb], [la, str(fine)], [ya, yb], estimator=tiny_estimator(),
                      patch_size=3, resample_to="hsi", log=lambda m: None)
    assert model.info["resampling"] == {"resample_to": "hsi", "method": "bilinear",
                                        "labels": "nearest"}
    assert [s["resampled"] for s in model.info["trained_on"]] == [[], ["lidar"]]
    assert model.info["trained_on"][1]["shape"] == (20, 28)


def test_a_scene_with_other_bands_is_refused_naming_it_before_any_pixel_is_read(
        two_plots, tmp_path, capsys, monkeypatch):
    (ha, la, ya), _ = two_plots
    hc, lc, yc = write_plot(tmp_path / "c", "plot_c", {1: "Woods", 2: "Roads"}, B=5)
    monkeypatch.setattr("sklearn_mmlgnet.scene.read_scene",
                        lambda *a, **k: pytest.fail("pixels read"))
    code = main(["fit", "--hsi", ha, "--lidar", la, "--labels", ya, "--hsi", hc, "--lidar", lc,
                 "--labels", yc, "--out", str(tmp_path / "m.safetensors"),
                 "--text-encoder", "random-clip", *TINY])
    line = _error(capsys)
    assert code == 2 and f"scene 2 of 2 ({hc}) has 5 HSI + 1 LiDAR band(s)" in line
    assert f"scene 1 ({ha}) has 6 + 1" in line


def test_a_lidar_off_its_hsi_grid_is_refused_naming_the_scene(two_plots, tmp_path, capsys):
    (ha, la, ya), (hb, lb, yb) = two_plots
    code = main(["fit", "--hsi", ha, "--lidar", la, "--labels", ya, "--hsi", hb, "--lidar", la,
                 "--labels", yb, "--out", str(tmp_path / "m.safetensors"),
                 "--text-encoder", "random-clip", *TINY])
    line = _error(capsys)
    assert code == 2 and f"scene 2 of 2 ({hb}): lidar {la} is not on the grid of hsi" in line
    assert "CRS EPSG:32617 vs EPSG:32618" in line


@pytest.mark.parametrize("argv, message", [
    (["--hsi", "a.tif", "--hsi", "b.tif", "--lidar", "la.tif", "--labels", "y.tif"],
     "--lidar is given 1 times for 2 --hsi"),
    (["--hsi", "a.tif", "--hsi", "b.tif", "--labels", "y.tif", "--labels", "y.tif",
      "--labels", "z.tif"], "--labels is given 3 times for 2 --hsi"),
    (["--hsi", "a.tif"], "--labels is required"),
    (["--labels", "y.tif"], "--hsi is required (once per scene), or --scenes"),
])
def test_options_that_do_not_pair_up_are_one_line_exit_2(argv, message, capsys, tmp_path):
    code = main(["fit", *argv, "--out", str(tmp_path / "m.safetensors")])
    assert code == 2 and message in _error(capsys)


def test_missing_files_name_their_scene(two_plots, tmp_path, capsys):
    (ha, la, ya), _ = two_plots
    code = main(["fit", "--hsi", ha, "--hsi", str(tmp_path / "nope.tif"), "--labels", ya,
                 "--out", str(tmp_path / "m.safetensors")])
    assert code == 3 and "--hsi (scene 2 of 2): no such file" in _error(capsys)


def test_a_scene_list_and_repeated_options_give_the_same_scenes(two_plots, tmp_path,
                                                                monkeypatch):
    (ha, la, ya), (hb, lb, yb) = two_plots
    calls = []

    class Stop(Exception):
        pass

    def fit_scene_stand_in(*args, **kwargs):
        calls.append(args)
        raise Stop

    monkeypatch.setattr(_cli_scene, "fit_scene", fit_scene_stand_in)

    def fit(argv):
        with pytest.raises(Stop):
            main(["--traceback", "fit", *argv, "--out", str(tmp_path / "m.safetensors"),
                  "--text-encoder", "random-clip"])

    fit(["--hsi", ha, "--lidar", la, "--labels", ya, "--hsi", hb, "--lidar", lb, "--labels", yb])
    scenes = tmp_path / "scenes.csv"  # relative paths: from the CSV's folder
    scenes.write_text(f"hsi,lidar,labels\na/{ha.split('/')[-1]},{la},a/plot_a_gt.tif\n\n"
                      f"{hb},{lb};{lb},\n")
    fit(["--scenes", str(scenes), "--labels", yb])  # --labels once: rows without their own
    assert calls[0] == ([ha, hb], [[la], [lb]], [ya, yb])
    assert calls[1] == ([ha, hb], [[la], [lb, lb]], [ya, yb])


def test_merge_classes_matches_names_and_keeps_unnamed_codes():
    recode, names = _merge_classes([{1: "Woods", 2: "Roads"}, {1: "Roads", 2: "Vineyard"},
                                    {2: None, 7: None}])
    assert recode == [{1: 1, 2: 2}, {1: 2, 2: 3}, {2: 2, 7: 7}]
    assert names == {1: "Woods", 2: "Roads", 3: "Vineyard", 7: None}


# ------------------------------------------------------------------ predict
def test_predict_over_two_rasters_writes_one_map_on_each_grid(two_plots, tmp_path, capsys):
    (ha, la, ya), (hb, lb, yb) = two_plots
    model = fit_scene([ha, hb], [la, lb], [ya, yb], estimator=tiny_estimator(), patch_size=3,
                      log=lambda m: None)
    mpath = str(save_model(model, tmp_path / "m.safetensors"))
    maps = tmp_path / "maps"
    assert main(["predict", mpath, "--hsi", ha, "--lidar", la, "--hsi", hb, "--lidar", lb,
                 "--out", str(maps), "--quiet"]) == 0
    assert "[2/2] Wrote" in capsys.readouterr().out
    for h, m in ((ha, "plot_a_hsi.tif"), (hb, "plot_b_hsi.tif")):
        with rasterio.open(h) as ref, rasterio.open(maps / m) as src:
            assert (src.crs, src.transform, src.shape) == (ref.crs, ref.transform, ref.shape)
            assert set(np.unique(src.read(1))) <= {1, 2, 3}
    # --out a file with several rasters, or two rasters of one name: refused before any work
    assert main(["predict", mpath, "--hsi", ha, "--hsi", hb, "--out", str(tmp_path / "x.tif")]) == 2
    assert "--out" in _error(capsys)


def test_predict_a_folder_matches_lidar_by_name_and_writes_a_mosaic(tmp_path, capsys):
    names = {1: "Woods", 2: "Roads"}
    plots = [write_plot(tmp_path / "in", f"p{k}", names, origin=(542055.0 + 30 * k, 4134999.0),
                        seed=k) for k in range(2)]
    hsi, lidar = tmp_path / "HSI", tmp_path / "CHM"
    hsi.mkdir(), lidar.mkdir()
    for k, (h, l, _) in enumerate(plots):  # the IDTReeS layout: HSI/<plot>.tif, CHM/<plot>.tif
        (hsi / f"plot_{k + 1}.tif").symlink_to(h)
        (lidar / f"plot_{k + 1}.tif").symlink_to(l)
    model = fit_scene(*plots[0], estimator=tiny_estimator().set_params(
        text_embeddings=np.eye(2, 8)), patch_size=3, log=lambda m: None)
    mpath = str(save_model(model, tmp_path / "m.safetensors"))
    maps, mosaic = tmp_path / "maps", tmp_path / "maps" / "mosaic.vrt"
    assert main(["predict", mpath, "--hsi", str(hsi), "--lidar", str(lidar), "--out", str(maps),
                 "--mosaic", str(mosaic), "--quiet"]) == 0
    with rasterio.open(maps / "plot_1.tif") as a, rasterio.open(maps / "plot_2.tif") as b, \
            rasterio.open(mosaic) as m:
        assert m.shape == (24, 54) and m.crs == a.crs and m.transform == a.transform
        got = m.read(1)
        np.testing.assert_array_equal(got[:, :24], a.read(1))
        np.testing.assert_array_equal(got[:, 30:], b.read(1))
        assert (got[:, 24:30] == 0).all() and m.nodata == 0  # the gap between the plots
        assert m.colormap(1)[1] == a.colormap(1)[1]
        assert json.loads(m.tags()["CLASS_NAMES"]) == {"1": "Woods", "2": "Roads"}
    assert f"Wrote {mosaic}" in capsys.readouterr().out
