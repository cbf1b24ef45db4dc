"""The examples, the command line and grid search on a dask cluster, on small scenes."""

from __future__ import annotations

import json
import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sklearn_mmlgnet.cli import main

from .conftest import HAS_ST, SHARED_DATA, make_patches, requires_shared

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


def _quick_scene():
    """The scene the examples use with MMLGNET_EXAMPLE_QUICK=1."""
    from sklearn_mmlgnet.datasets import make_hsi_lidar_scene

    return make_hsi_lidar_scene(n_rows=80, n_cols=160, n_bands=16, patch_size=5, random_state=0)


def _percent(pattern, out):
    """The percentage after ``pattern`` in ``out``, checked to lie in [0, 100]."""
    found = re.search(pattern + r"\s*([0-9.]+)", out)
    assert found, f"{pattern!r} not in the example's output:\n{out}"
    value = float(found.group(1))
    assert 0 <= value <= 100
    return value


def _check_classification_map(out, tmp_path):
    from sklearn_mmlgnet.plotting import class_colors, plot_classification_map

    # 6 classes: chance is 16.7 %; the quick run gets about 86 %.
    assert _percent(r"OA on the test pixels:", out) > 50
    path = tmp_path / "classification_map.png"
    assert f"wrote {path}" in out
    img = plt_imread(path)
    # the size plot_classification_map gives this scene's map, with the example's title
    scene = _quick_scene()
    ref = tmp_path / "reference.png"
    plot_classification_map(np.ones_like(scene.labels), scene.labels, scene.class_names, path=ref,
                            title="MMLGNet")
    assert img.shape == plt_imread(ref).shape
    rgb = img[..., :3]
    for color in class_colors(6):  # every class is drawn (in the map and the ground truth)
        assert np.all(np.abs(rgb - color) < 2 / 255, axis=-1).mean() > 0.005
    assert np.all(rgb < 2 / 255, axis=-1).mean() > 0.01  # unlabelled ground truth in black


def _check_compare_baselines(out, tmp_path):
    scores = {m.group(1).strip(): (float(m.group(2)), float(m.group(3))) for m in
              re.finditer(r"^\s*(.+?): AA ([0-9.]+) ± ([0-9.]+) %$", out, re.MULTILINE)}
    assert set(scores) == {"MMLGNet", "SVM (RBF)", "RandomForest", "KNN"}
    for mean, std in scores.values():
        assert 0 <= mean <= 100 and 0 <= std <= 100
    # centre-pixel spectra separate the synthetic classes well (96-100 % here)
    assert min(scores[m][0] for m in ("SVM (RBF)", "RandomForest", "KNN")) > 80
    assert scores["MMLGNet"][0] > 100 / 6  # 3 epochs: above chance, no more promised


def _check_grid_search(out, tmp_path):
    import ast

    best = ast.literal_eval(out.split("best parameters (chosen on training pixels only):")[1]
                            .splitlines()[0].strip())
    assert best["mmlgnetclassifier__temperature"] in (0.07, 0.2)
    assert best["mmlgnetclassifier__patch_size"] in (3, 5)
    _percent(r"best cross-validated AA:", out)
    scene = _quick_scene()
    n_test = int((scene.test_mask & (scene.labels > 0)).sum())
    assert f"| **OA** | {n_test} |" in out
    for name in scene.class_names.values():
        assert f"| {name} |" in out
    assert _percent(r"\| \*\*OA\*\* \| \d+ \|", out) > 50
    _percent(r"\| \*\*AA\*\* \|  \|", out)


def _check_own_scene(out, tmp_path):
    import rasterio

    map_path = tmp_path / "map.tif"
    size = re.search(rf"Map {re.escape(str(map_path))}: (\d+) x (\d+) px", out)
    assert size, out
    with rasterio.open(map_path) as src:
        pred = src.read(1)
        names = json.loads(src.tags()["CLASS_NAMES"])
    assert (src.width, src.height) == (int(size.group(1)), int(size.group(2)))
    assert set(np.unique(pred).tolist()) <= {0} | {int(k) for k in names}
    if (tmp_path / "hsi.tif").exists():  # the synthetic branch: the map covers the scene
        assert pred.shape == _quick_scene().labels.shape
    with rasterio.open(tmp_path / "map_proba.tif") as src:
        proba = src.read()
    assert proba.shape == (len(names),) + pred.shape
    np.testing.assert_allclose(proba.sum(0)[pred > 0], 1, atol=1e-3)
    if "Pixel accuracy" in out:
        _percent(r"held-out labelled pixels of the trained classes:", out)


def plt_imread(path):
    import matplotlib.image

    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    return img


CHECKS = {"classification_map.py": _check_classification_map,
          "compare_baselines.py": _check_compare_baselines,
          "grid_search.py": _check_grid_search,
          "own_scene.py": _check_own_scene}


def test_every_example_has_a_check():
    assert {p.name for p in EXAMPLES} == set(CHECKS)


@pytest.mark.skipif(not HAS_ST, reason="the examples use the packaged offline text model here")
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs_on_a_small_scene(path, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MMLGNET_EXAMPLE_QUICK", "1")
    monkeypatch.setenv("MMLGNET_EXAMPLE_OUT", str(tmp_path))
    runpy.run_path(str(path), run_name="__main__")
    CHECKS[path.name](capsys.readouterr().out, tmp_path)


@requires_shared
def test_benchmark_command_writes_tables_and_maps(tmp_path):
    out = tmp_path / "bench"
    code = main(["benchmark", "--dataset", "jasper_ridge", "--data-home", str(SHARED_DATA),
                 "--seeds", "2", "--quick", "--epochs", "1", "--out", str(out),
                 "--text-encoder", "random-clip", "--methods", "MMLGNet (symmetric", "RandomForest"])
    assert code == 0
    data = json.loads((out / "results.json").read_text())
    methods = {r["method"] for r in data["runs"]}
    assert len(methods) == 2 and "MMLGNet (symmetric loss)" in methods
    assert any(m.startswith("RandomForest") and m.endswith("centre pixel") for m in methods)
    assert sorted({r["seed"] for r in data["runs"]}) == [0, 1]
    table = (out / "results_jasper_ridge.md").read_text()
    assert "| **OA** |" in table and "±" in table and "Split:" in table
    assert "no checkpoint, epoch or hyperparameter is chosen on the test split" in table
    assert (out / "results.csv").read_text().startswith("method,group,seed,OA")
    assert len(list(out.glob("map_*.png"))) == 2
    # Test predictions line up with the test labels: a misaligned map would score near chance.
    rf = [r for r in data["runs"] if r["method"].startswith("RandomForest")]
    assert all(r["n_test"] == 5000 for r in rf) and min(r["OA"] for r in rf) > 0.7


def test_interrupted_benchmark_keeps_finished_runs(tmp_path, monkeypatch):
    from sklearn_mmlgnet import benchmark

    calls = {"n": 0}
    real = benchmark.BenchmarkRun._run_one

    def run_then_interrupt(self, *a, **k):
        if calls["n"] == 1:
            raise KeyboardInterrupt
        calls["n"] += 1
        return real(self, *a, **k)

    monkeypatch.setattr(benchmark.BenchmarkRun, "_run_one", run_then_interrupt)
    monkeypatch.setattr(benchmark._run, "load_dataset",
                        lambda name, data_home, seed: _tiny_scene())
    out = tmp_path / "o"
    code = main(["benchmark", "--dataset", "synthetic", "--seeds", "1", "--quick", "--no-maps",
                 "--out", str(out), "--methods", "RandomForest", "KNN"])
    assert code == 130
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert len(runs) == 1 and runs[0]["method"].startswith("RandomForest")
    assert runs[0]["method"].endswith("centre pixel")


def _tiny_scene():
    from sklearn_mmlgnet.datasets import make_hsi_lidar_scene

    return make_hsi_lidar_scene(n_rows=80, n_cols=160, n_bands=8, patch_size=5, random_state=0)


@pytest.mark.skipif(not HAS_ST, reason="the demo uses the packaged offline text model here")
def test_demo_prints_scores_and_writes_the_map(tmp_path, monkeypatch, capsys):
    import sklearn_mmlgnet.datasets as datasets

    scene = _tiny_scene()
    monkeypatch.setattr(datasets, "make_hsi_lidar_scene", lambda random_state: scene)
    n_test = int((scene.test_mask & (scene.labels > 0)).sum())
    code = main(["demo", "--epochs", "15", "--patch-size", "5", "--out", str(tmp_path),
                 "--text-encoder", "sentence-transformers"])
    assert code == 0
    out = capsys.readouterr().out
    oa = float(out.split("\nOA ")[1].split()[0])
    assert oa > 70  # the test labels and the predicted map line up
    assert f"| **OA** | {n_test} |" in (tmp_path / "demo_results.md").read_text()
    assert (tmp_path / "demo_map.png").stat().st_size > 10_000


def test_python_dash_m_runs_the_command():
    res = subprocess.run([sys.executable, "-m", "sklearn_mmlgnet", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and "benchmark" in res.stdout and "demo" in res.stdout


def test_grid_search_on_a_local_dask_cluster_matches_the_sequential_one():
    distributed = pytest.importorskip("distributed", reason="the 'dask' extra is not installed")
    import joblib
    from sklearn.model_selection import GridSearchCV

    from sklearn_mmlgnet import MMLGNetClassifier

    X, y = make_patches(n_per_class=20)
    clf = MMLGNetClassifier(text_embeddings=np.eye(3, 8), module__hsi_channels=(8,),
                            module__lidar_channels=(4,), module__fusion_dim=8, max_epochs=2,
                            random_state=0)
    grid = {"temperature": [0.05, 0.2], "patch_size": [3, 5]}
    sequential = GridSearchCV(clf, grid, cv=2).fit(X, y)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        with joblib.parallel_backend("dask"):
            on_dask = GridSearchCV(clf, grid, cv=2, n_jobs=-1).fit(X, y)
    np.testing.assert_allclose(on_dask.cv_results_["mean_test_score"],
                               sequential.cv_results_["mean_test_score"])
