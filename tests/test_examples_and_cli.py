"""The examples, the command line and grid search on a dask cluster, on small scenes."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sklearn_mmlgnet.cli import main

from .conftest import HAS_ST, SHARED_DATA, make_patches, requires_shared

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


@pytest.mark.skipif(not HAS_ST, reason="the examples use the packaged offline text model here")
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs_on_a_small_scene(path, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MMLGNET_EXAMPLE_QUICK", "1")
    monkeypatch.setenv("MMLGNET_EXAMPLE_OUT", str(tmp_path))
    runpy.run_path(str(path), run_name="__main__")
    assert capsys.readouterr().out.strip()


@requires_shared
def test_benchmark_command_writes_tables_and_maps(tmp_path):
    out = tmp_path / "bench"
    code = main(["benchmark", "--dataset", "jasper_ridge", "--data-home", str(SHARED_DATA),
                 "--seeds", "2", "--quick", "--epochs", "1", "--out", str(out),
                 "--text-encoder", "random-clip", "--methods", "MMLGNet (symmetric", "RandomForest"])
    assert code == 0
    data = json.loads((out / "results.json").read_text())
    assert {r["method"] for r in data["runs"]} == {"MMLGNet (symmetric loss)", "RandomForest, centre pixel"}
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
    monkeypatch.setattr(benchmark, "load_dataset", lambda name, data_home, seed: _tiny_scene())
    out = tmp_path / "o"
    code = main(["benchmark", "--dataset", "synthetic", "--seeds", "1", "--quick", "--no-maps",
                 "--out", str(out), "--methods", "RandomForest", "KNN"])
    assert code == 130
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [r["method"] for r in runs] == ["RandomForest, centre pixel"]


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
    clf = MMLGNetClassifier(text_embeddings=np.eye(3, 8), hsi_channels=(8,), lidar_channels=(4,),
                            fusion_dim=8, max_epochs=2, random_state=0)
    grid = {"temperature": [0.05, 0.2], "patch_size": [3, 5]}
    sequential = GridSearchCV(clf, grid, cv=2).fit(X, y)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        with joblib.parallel_backend("dask"):
            on_dask = GridSearchCV(clf, grid, cv=2, n_jobs=-1).fit(X, y)
    np.testing.assert_allclose(on_dask.cv_results_["mean_test_score"],
                               sequential.cv_results_["mean_test_score"])
