"""The benchmark runner: IDTReeS grouped CV, tuned rows, resume, per-head scores."""

import json
from pathlib import Path

import numpy as np
import pytest

from sklearn_mmlgnet import benchmark
from sklearn_mmlgnet.benchmark import BenchmarkRun, default_methods, select_methods

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
requires_idtrees = pytest.mark.skipif(
    not (SHARED_DATA / "idtrees2020_train").is_dir(),
    reason="needs the IDTReeS files in ../shared/data (absent in a user's clone)")


def _tiny_scene():
    from sklearn_mmlgnet.datasets import make_hsi_lidar_scene

    return make_hsi_lidar_scene(n_rows=80, n_cols=160, n_bands=8, patch_size=5, random_state=0)


def test_select_methods_names_every_method_when_nothing_matches():
    methods = default_methods(1, 1, {})
    assert [m.name for m in select_methods(methods, ["knn"])] == ["KNN (tuned), centre pixel"]
    # the linear classic row, on the centre pixel; on IDTReeS also on crown means
    assert [m.name for m in select_methods(methods, ["logistic"])] == [
        "Logistic regression (tuned), centre pixel"]
    crowns = select_methods(default_methods(1, 1, {}, crowns=True), ["logistic"])
    assert [m.features for m in crowns] == ["patches", "crown_mean"]
    with pytest.raises(ValueError, match="matches none of the methods") as err:
        select_methods(methods, ["no such method"])
    assert all(m.name in str(err.value) for m in methods)


@requires_idtrees
def test_idtrees_benchmark_scores_pixels_and_crowns_out_of_fold(tmp_path, monkeypatch):
    from sklearn_mmlgnet.datasets import load_idtrees

    # One site and a two-value grid keep the test short; the runner is the same.
    data = load_idtrees(SHARED_DATA, sites=("OSBS",), patch_size=3)
    monkeypatch.setattr(benchmark, "load_dataset", lambda *a, **k: data)
    monkeypatch.setattr(benchmark.baselines, "KNN_GRID", {"n_neighbors": (1, 9)})
    out = tmp_path / "bench"
    run = BenchmarkRun("idtrees", out, seeds=1, data_home=SHARED_DATA, patch_size=3, maps=False,
                       methods=["KNN (tuned)"], log=lambda msg: None)
    rows = run.run()
    assert [r["method"] for r in rows] == ["KNN (tuned), centre pixel",
                                           "KNN (tuned), crown-mean spectrum"]
    n_crowns = len(np.unique(data.crown_id))
    for r in rows:
        # Every labelled pixel is predicted once, by the fold that held it out.
        assert r["n_test"] == len(data.y) and r["n_crowns"] == n_crowns
        assert 1 / 3 < r["crown_accuracy"] <= 1 and 0 < r["crown_macro_f1"] <= 1
        assert len(r["best_params"]) == benchmark.IDTREES_FOLDS  # chosen per outer fold
        assert all(set(p) == {"n_neighbors"} for p in r["best_params"])
    table = (out / "results_idtrees.md").read_text()
    assert "| **crown accuracy** |" in table and "| **crown macro F1** |" in table
    assert "plot-grouped folds" in table and "StratifiedGroupKFold" in table
    assert "tuned by inner CV on the training pixels" in table
    csv_header = (out / "results.csv").read_text().splitlines()[0]
    assert "crown_accuracy" in csv_header and "crown_macro_f1" in csv_header


def test_resume_keeps_finished_runs_and_runs_only_the_others(tmp_path, monkeypatch):
    monkeypatch.setattr(benchmark, "load_dataset", lambda name, data_home, seed: _tiny_scene())
    out = tmp_path / "o"
    common = dict(seeds=1, quick=True, maps=False, log=lambda msg: None, text_encoder="random-clip")
    first = BenchmarkRun("synthetic", out, methods=["KNN (tuned), centre"], **common).run()
    fitted = []
    real_fit = BenchmarkRun._fit

    def spy(self, method, *a, **k):
        fitted.append(method.name)
        return real_fit(self, method, *a, **k)

    monkeypatch.setattr(BenchmarkRun, "_fit", spy)
    rows = BenchmarkRun("synthetic", out, methods=["KNN (tuned), centre", "RandomForest"],
                        resume=True, **common).run()
    assert fitted == ["RandomForest (tuned), centre pixel"]  # KNN was kept, not refitted
    assert rows[0] == first[0] and len(rows) == 2
    saved = json.loads((out / "results.json").read_text())["runs"]
    assert [r["method"] for r in saved] == ["KNN (tuned), centre pixel",
                                            "RandomForest (tuned), centre pixel"]
    with pytest.raises(ValueError, match="--resume"):
        BenchmarkRun("synthetic", out, methods=["KNN"], resume=True,
                     **dict(common, quick=False)).run()


def test_on_predict_receives_each_fit_s_test_predictions(tmp_path, monkeypatch):
    monkeypatch.setattr(benchmark, "load_dataset", lambda name, data_home, seed: _tiny_scene())
    calls = []
    rows = BenchmarkRun("synthetic", tmp_path, seeds=2, quick=True, maps=False,
                        methods=["KNN (tuned), centre"], log=lambda msg: None,
                        on_predict=lambda *args: calls.append(args)).run()
    assert [(name, seed) for name, seed, *_ in calls] == [("KNN (tuned), centre pixel", 0),
                                                         ("KNN (tuned), centre pixel", 1)]
    for (_, _, scene, mask, pred), row in zip(calls, rows):
        assert pred.shape == (mask.sum(),) and not (mask & ~scene.test_mask).any()
        assert np.mean(pred == scene.labels[mask]) == pytest.approx(row["OA"])


def test_per_head_scores_are_batched_and_equal_one_pass(tmp_path, monkeypatch):
    """Per-head scores walk the test pixels batch by batch and equal a single head_scores call."""
    from sklearn_mmlgnet.patches import extract_patches

    scene = _tiny_scene()
    monkeypatch.setattr(benchmark, "N_HEAD_PIXELS", 300)
    run = BenchmarkRun("synthetic", tmp_path, patch_size=5, log=lambda msg: None)
    method = [m for m in default_methods(1, 2, {"text_embeddings": np.eye(len(scene.class_names))},
                                         quick=True, verbose=0)
              if m.name == "MMLGNet + self-distillation"][0]
    Xtr, ytr = (extract_patches(scene.hsi, scene.lidar, *np.nonzero(scene.train_mask), 5),
                scene.labels[scene.train_mask])
    est = method.build(0, 1).fit(Xtr[ytr > 0], ytr[ytr > 0])
    test = scene.test_mask & (scene.labels > 0)
    batches = []
    real = benchmark.iter_scene_patches
    monkeypatch.setattr(benchmark, "iter_scene_patches",
                        lambda *a, **k: (batches.append(1) or b for b in real(*a, batch_size=64, **k)))
    got = run._head_scores(est, method, scene, scene.hsi.shape[2], test)
    assert len(batches) > 1
    r, c = (idx[:300] for idx in np.nonzero(test))
    X = extract_patches(scene.hsi, scene.lidar, r, c, 5)
    want = est[-1].head_scores(est[:-1].transform(X), scene.labels[r, c])
    assert got.keys() == want.keys()
    assert all(abs(got[k] - want[k]) < 1e-9 for k in want)


def test_table_names_each_rows_epochs_when_runs_of_several_epoch_counts_are_merged():
    def row(method, group, epochs=None):
        r = dict(method=method, group=group, seed=0, per_class={1: 0.5, 2: 1.0}, OA=0.75,
                 AA=0.75, kappa=0.5, fit_s=1.0, predict_s=0.1)
        return r if epochs is None else dict(r, epochs=epochs)

    meta = dict(scene=dict(dataset="synthetic", split="a split.", per_seed={0: [10, 20]},
                           class_names={1: "a", 2: "b"}),
                epochs=20, quick=False, patch_size=7, text=dict(text_encoder="sentence-transformers"),
                searches={}, test_time_augment=True)
    rows = [row("MMLGNet (symmetric loss)", "MMLGNet", 5),
            row("SDHSI-Net without self-distillation", "self-distillation", 20),
            row("KNN (tuned), centre pixel", "baseline")]
    table = benchmark.markdown_table(rows, meta)
    assert "networks: 5 / 20 epochs (row 'epochs')" in table
    assert "| epochs | 5 | 20 | — |" in table
    assert "mean of its patch's 8 symmetries (test_time_augment=True)" in table
    assert "similarity=" not in table  # the default cosine goes unsaid
    dot = benchmark.markdown_table(rows, dict(meta, similarity="dot"))
    assert "score image against text embeddings with similarity='dot'" in dot
    assert "networks (random_state" not in table  # single networks go unsaid
    assert "predict_heads" not in table  # the final head goes unsaid
    heads = benchmark.markdown_table(rows, dict(meta, predict_heads="mean"))
    assert "self-distillation row predicts with the mean of its heads" in heads
    ens = benchmark.markdown_table(rows, dict(meta, ensemble=2))
    assert "mean of the class probabilities of 2 networks (random_state seed + 1000 i" in ens
    assert "SpectralNormalizer" not in table
    unit = benchmark.markdown_table(rows, dict(meta, spectral_norm="l2"))
    assert "scale each pixel's spectrum to unit l2 norm first (SpectralNormalizer" in unit
    one = benchmark.markdown_table(rows[:1] + rows[2:], meta)  # one epoch count: no row
    assert "networks: 5 epochs fixed" in one and "| epochs |" not in one


def test_network_rows_take_the_per_scene_settings():
    methods = default_methods(1, 2, dict(text_encoder="sentence-transformers"),
                              class_weight="balanced_sqrt", similarity="dot", predict_heads="mean")
    by = {m.name: m for m in methods}
    for name in ("MMLGNet (symmetric loss)", "Same encoders, cross-entropy head (no language)",
                 "MMLGNet + self-distillation"):
        clf = by[name].build(0, 1)[-1]
        assert clf.test_time_augment is benchmark.NETWORK_TTA
        assert clf.class_weight == "balanced_sqrt" and clf.max_epochs == 2
        assert clf.similarity == "dot" and clf.predict_heads == "mean"
    sdhsi = by["SDHSI-Net without self-distillation"].build(0, 0)[-1]
    assert sdhsi.class_weight is None and sdhsi.test_time_augment is False  # not measured there
    assert benchmark.NETWORK_CLASS_WEIGHT == {"jasper_ridge": "balanced_sqrt"}
    assert benchmark.NETWORK_SIMILARITY == {"idtrees": "dot", "jasper_ridge": "dot"}
    assert benchmark.NETWORK_PREDICT_HEADS == {"idtrees": "mean"}
    plain = default_methods(1, 2, dict(text_encoder="sentence-transformers"))
    assert plain[0].build(0, 1)[-1].similarity == "cosine"
    assert plain[0].build(0, 1)[-1].predict_heads == "final"


def test_spectral_norm_normalises_the_rows_that_see_hsi_and_adds_a_normalised_logistic_row():
    from sklearn_mmlgnet import BandStandardScaler, SpectralNormalizer

    text = dict(text_encoder="sentence-transformers")
    assert benchmark.NETWORK_SPECTRAL_NORM == {"jasper_ridge": "l2", "idtrees": "l2"}
    by = {m.name: m for m in default_methods(1, 2, text, spectral_norm="l2")}
    for name, n_lidar in [("MMLGNet (symmetric loss)", 1), ("MMLGNet, image->text loss only", 1),
                          ("MMLGNet, HSI only", 0),
                          ("Same encoders, cross-entropy head (no language)", 1),
                          ("MMLGNet + self-distillation", 1)]:
        first = by[name].build(0, n_lidar)[0]
        assert isinstance(first, SpectralNormalizer), name
        assert (first.norm, first.n_lidar_bands) == ("l2", n_lidar)
    for name in ("MMLGNet, LiDAR only", "SDHSI-Net without self-distillation"):
        steps = by[name].build(0, 0 if "SDHSI" in name else 1).steps
        assert not any(isinstance(s, SpectralNormalizer) for _, s in steps), name

    # the classic row on the normalised centre pixel: a pixel's brightness does not move it
    row = by["Logistic regression (tuned), centre pixel, l2-normalised spectrum"]
    assert row.group == "baseline"
    rng = np.random.RandomState(0)
    X = rng.uniform(0.05, 1, size=(60, 5, 3, 3))
    y = np.repeat([1, 2, 3], 20)
    X[y == 2, :4] *= np.linspace(0.5, 1.5, 4)[:, None, None]        # a spectral shape per class
    X[y == 3, :4] *= np.linspace(1.5, 0.5, 4)[:, None, None]
    lit = X.copy()
    lit[:, :4] *= rng.uniform(0.3, 3, size=(60, 1, 3, 3))           # brightness per pixel
    ref = row.build(0, 1, cv=3).fit(X, y).predict(X)
    np.testing.assert_array_equal(row.build(0, 1, cv=3).fit(lit, y).predict(lit), ref)

    plain = {m.name: m for m in default_methods(1, 2, text)}
    assert not any("normalised" in name for name in plain)
    assert isinstance(plain["MMLGNet (symmetric loss)"].build(0, 1)[0], BandStandardScaler)


def test_ensemble_rows_average_networks_of_successive_seeds_and_name_every_members_classes():
    from sklearn.ensemble import VotingClassifier

    text = dict(text_embeddings=np.eye(3, 8), hsi_channels=(4,), lidar_channels=(2,),
                fusion_dim=8, spectral_channels=(4,), test_time_augment=False, verbose=0)
    methods = {m.name: m for m in default_methods(1, 1, text, ensemble=2, similarity="dot")}
    method = methods["MMLGNet (symmetric loss)"]
    assert benchmark.NETWORK_ENSEMBLE == {"idtrees": 2}
    rng = np.random.RandomState(0)
    X, y = rng.rand(48, 5, 5, 5).astype("float32"), np.repeat([1, 2, 3], 16)
    run = BenchmarkRun("synthetic", ".", log=lambda msg: None)
    names = {1: "oak", 2: "pine", 3: "maple"}
    est, _ = run._fit(method, 7, 1, X, y, cv=None, class_names=names)
    vote = est[-1]
    assert isinstance(vote, VotingClassifier) and vote.voting == "soft"
    members = [e for _, e in vote.estimators]
    assert [m.random_state for m in members] == [7, 1007]
    # the members see y encoded as 0, 1, 2: the names follow the sorted labels
    assert all(m.class_names == ["oak", "pine", "maple"] and m.similarity == "dot"
               for m in members)
    assert [m.class_names_ for m in vote.estimators_] == [["oak", "pine", "maple"]] * 2
    np.testing.assert_array_equal(vote.classes_, [1, 2, 3])
    # names already one per sorted label are handed on as they are
    listed, _ = run._fit(method, 7, 1, X, y, cv=None, class_names=["oak", "pine", "maple"])
    assert [m.class_names_ for m in listed[-1].estimators_] == [["oak", "pine", "maple"]] * 2
    Xt = est[:-1].transform(X[:5])
    mean = np.mean([m.predict_proba(Xt) for m in vote.estimators_], axis=0)
    np.testing.assert_allclose(est.predict_proba(X[:5]), mean, rtol=1e-6)
