"""The benchmark runner: rows on the estimators' defaults, the input chosen on inner
validation, IDTReeS grouped CV, tuned rows, resume, per-head scores, the table."""

import importlib
import json
import pkgutil

import numpy as np
import pytest
from sklearn.utils import Bunch

from sklearn_mmlgnet import MMLGNetClassifier, baselines, benchmark
from sklearn_mmlgnet.benchmark import (
    BenchmarkRun,
    default_methods,
    input_candidates,
    patch_size_for,
    select_methods,
)
from sklearn_mmlgnet.benchmark import _run as bench_run

from .conftest import SHARED_DATA

requires_idtrees = pytest.mark.skipif(
    not (SHARED_DATA / "idtrees2020_train").is_dir(),
    reason="needs the IDTReeS files in ../shared/data (absent in a user's clone)")
TEXT = dict(text_encoder="sentence-transformers")
TINY = dict(module__hsi_channels=(4, 8), module__lidar_channels=(2, 4), module__fusion_dim=8,
            module__spectral_channels=(4,))


def _tiny_scene():
    from sklearn_mmlgnet.datasets import make_hsi_lidar_scene

    return make_hsi_lidar_scene(n_rows=80, n_cols=160, n_bands=8, patch_size=5, random_state=0)


def _quiet(msg):
    pass


def test_select_methods_names_every_method_when_nothing_matches():
    methods = default_methods(1, 1, {})
    assert [m.name for m in select_methods(methods, ["knn"])] == ["KNN (tuned), centre pixel"]
    # the linear classic rows, on the centre pixel as it is and normalised; on IDTReeS
    # also on crown means
    assert [m.name for m in select_methods(methods, ["logistic"])] == [
        "Logistic regression (tuned), centre pixel",
        "Logistic regression (tuned), centre pixel, l2-normalised spectrum"]
    crowns = select_methods(default_methods(1, 1, {}, crowns=True), ["logistic"])
    assert [m.features for m in crowns] == ["patches", "patches", "crown_mean"]
    with pytest.raises(ValueError, match="matches none of the methods") as err:
        select_methods(methods, ["no such method"])
    assert all(m.name in str(err.value) for m in methods)


def test_no_module_of_the_benchmark_holds_a_setting_per_dataset():
    """No per-dataset constant: no module-level mapping keyed by a dataset's name."""
    names = set(benchmark.DATASETS)
    for info in pkgutil.iter_modules(benchmark.__path__):
        module = importlib.import_module(f"{benchmark.__name__}.{info.name}")
        for attr, value in vars(module).items():
            assert not attr.startswith("NETWORK_"), (info.name, attr)
            if isinstance(value, dict):
                assert not names & set(map(str, value)), (info.name, attr)


def test_network_rows_take_the_estimators_defaults():
    methods = {m.name: m for m in default_methods(1, 7, TEXT, verbose=0)}
    defaults = MMLGNetClassifier().get_params()
    set_by_the_run = {"n_lidar_bands", "max_epochs", "random_state", "verbose", "device",
                      "text_encoder"}
    for name, loss, sd in [("MMLGNet (symmetric loss)", "symmetric", False),
                           ("MMLGNet, image->text loss only", "image_to_text", False),
                           ("Same encoders, cross-entropy head (no language)", "cross_entropy",
                            False),
                           ("MMLGNet + self-distillation", "symmetric", True)]:
        params = methods[name].build(3, 1)[-1].get_params()
        assert (params["loss"], params["self_distillation"]) == (loss, sd)
        assert (params["max_epochs"], params["random_state"]) == (7, 3)
        differ = {k for k, v in defaults.items() if k not in ("loss", "self_distillation")
                  and params.get(k, v) != v}
        assert differ <= set_by_the_run, (name, differ)
        assert not any(k.startswith(("module__", "criterion__")) for k in params)
    from sklearn_mmlgnet import SDHSIClassifier

    sd_defaults = SDHSIClassifier().get_params()
    sdhsi = methods["SDHSI-Net without self-distillation"].build(3, 0)
    assert sdhsi[1].n_components == benchmark.SDHSI_PCA
    differ = {k for k, v in sdhsi[-1].get_params().items() if sd_defaults[k] != v}
    assert differ == {"self_distillation", "max_epochs", "random_state"}  # verbose=0: the default


def test_the_chosen_input_goes_in_front_of_the_rows_that_see_hsi():
    from sklearn_mmlgnet import BandStandardScaler, SpectralNormalizer, SpectralPCA

    by = {m.name: m for m in default_methods(1, 2, TEXT, verbose=0)}
    choice = {"spectral_norm": "l2", "pca": 30}
    for name in ("MMLGNet (symmetric loss)", "MMLGNet, image->text loss only",
                 "MMLGNet, HSI only", "Same encoders, cross-entropy head (no language)",
                 "MMLGNet + self-distillation"):
        assert by[name].chooses_input, name
        n_lidar = 0 if "HSI only" in name else 1
        steps = [s for _, s in by[name].build(0, n_lidar, network_input=choice).steps]
        assert [type(s) for s in steps[:3]] == [SpectralNormalizer, BandStandardScaler,
                                                SpectralPCA]
        assert (steps[0].norm, steps[0].n_lidar_bands) == ("l2", n_lidar)
        assert (steps[2].n_components, steps[2].n_lidar_bands) == (30, n_lidar)
        plain = by[name].build(0, n_lidar).steps
        assert [type(s) for _, s in plain[:-1]] == [BandStandardScaler]
    assert not by["MMLGNet, LiDAR only"].chooses_input
    assert not by["SDHSI-Net without self-distillation"].chooses_input


def test_patch_side_follows_the_images_size():
    assert patch_size_for([(100, 100)]) == 11          # Jasper Ridge
    assert patch_size_for([(166, 600, 63)]) == 11      # Trento-sized
    assert patch_size_for([(20, 20)] * 84) == 7        # IDTReeS's plots
    assert patch_size_for([(20, 20), (9, 30)]) == 3    # the smallest image decides
    assert patch_size_for([(2, 2)]) == 1


def test_input_candidates_keep_pca_where_there_are_more_bands():
    assert [c["pca"] for c in input_candidates(369)] == [None, None, 30, 30]
    assert [c["spectral_norm"] for c in input_candidates(369)] == [None, "l2", None, "l2"]
    assert input_candidates(30) == input_candidates(8) == list(benchmark.INPUT_CANDIDATES[:2])


class _Stub:
    """A row whose fit is good only on the ``good`` input: a perfect 1-NN, else one class."""

    def __init__(self, good):
        self.good, self.built = good, []

    def build(self, seed, n_lidar_bands, cv=None, network_input=None):
        from sklearn.dummy import DummyClassifier
        from sklearn.neighbors import KNeighborsClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import FunctionTransformer

        class Knn(KNeighborsClassifier):  # a prediction setting, as the networks have
            def __init__(self, test_time_augment=False):
                super().__init__(1)
                self.test_time_augment = test_time_augment

        class Dummy(DummyClassifier):
            def __init__(self, test_time_augment=False):
                super().__init__(strategy="most_frequent")
                self.test_time_augment = test_time_augment

        self.built.append(network_input)
        clf = Knn() if network_input in self.good else Dummy()
        return make_pipeline(FunctionTransformer(lambda X: X.reshape(len(X), -1)), clf)


def test_choice_takes_the_best_candidate_on_the_inner_validation_pixels_only():
    rng = np.random.RandomState(0)
    y = np.repeat([1, 2, 3], 30)
    X = rng.rand(90, 41, 1, 1) + y[:, None, None, None]
    tr, va = np.arange(0, 90, 2), np.arange(1, 90, 2)
    l2 = {"spectral_norm": "l2", "pca": None}
    stub = _Stub([l2])
    choice = benchmark.choose_network_input(stub, 0, X, y, (tr, va), 1, log=_quiet)
    assert (choice["spectral_norm"], choice["pca"]) == ("l2", None)
    assert stub.built == input_candidates(40)  # every input, fitted once, in order
    # each fit scored without and with test-time augmentation
    assert choice["candidates"] == [dict(c, test_time_augment=t)
                                    for c in input_candidates(40) for t in (False, True)]
    assert choice["scores"][2] == [1.0, 1.0] and choice["inner"] == [45, 45]
    assert choice["scores"][0][0] == pytest.approx(1 / 3, abs=0.02)
    # a tie goes to the earlier (plainer) candidate: no test-time augmentation
    assert choice["test_time_augment"] is False
    tie = benchmark.choose_network_input(_Stub(input_candidates(40)), 0, X, y, (tr, va), 1,
                                         log=_quiet)
    assert (tie["spectral_norm"], tie["pca"], tie["test_time_augment"]) == (None, None, False)


def test_inner_split_keeps_training_patches_off_the_validation_pixels():
    rows, cols = np.divmod(np.arange(96 * 96), 96)
    y = 1 + (rows // 40) + 3 * (cols // 40)
    tr, va = benchmark.inner_split(y, 1, rows=rows, cols=cols, patch_size=5)
    assert len(va) and len(np.unique(y[tr])) >= 2 and not set(tr) & set(va)
    gap = np.maximum(np.abs(rows[tr][:, None] - rows[va][None]),
                     np.abs(cols[tr][:, None] - cols[va][None]))
    assert gap.min() > 2  # no 5 x 5 training patch reaches a validation pixel
    groups = np.arange(96 * 96) // 300
    tr, va = benchmark.inner_split(y, 0, groups=groups)
    assert not set(groups[tr]) & set(groups[va])


def test_a_scene_run_chooses_the_input_once_per_seed_and_records_it(tmp_path, monkeypatch):
    pytest.importorskip("sentence_transformers")
    scene = _tiny_scene()
    monkeypatch.setattr(bench_run, "load_dataset", lambda *a, **k: scene)
    monkeypatch.setattr(benchmark._methods, "QUICK_WIDTHS", TINY)
    splits = []
    real = bench_run.choose_network_input

    def spy(method, seed, X, y, split, *a, **k):
        splits.append((seed, split))
        return real(method, seed, X, y, split, *a, **k)

    monkeypatch.setattr(bench_run, "choose_network_input", spy)
    rows = BenchmarkRun("synthetic", tmp_path, seeds=1, epochs=1, quick=True, maps=False,
                        verbose=0, text_encoder="sentence-transformers", log=_quiet,
                        methods=["MMLGNet (symmetric", "LiDAR only"]).run()
    assert [r["method"] for r in rows] == ["MMLGNet (symmetric loss)", "MMLGNet, LiDAR only"]
    assert len(splits) == 1  # one choice for the seed, shared by the rows
    choice = rows[0]["network_input"]["all"]
    assert [c["pca"] for c in choice["candidates"]] == [None] * 4  # 8 bands: no PCA
    assert len(choice["scores"]) == 4 and "network_input" not in rows[1]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["meta"]["patch_size"] == 11 and saved["meta"]["patch_rule"] == "rule"
    table = (tmp_path / "results_synthetic.md").read_text()
    assert "Network input chosen on inner validation" in table
    assert "seed 0: spectra as they are" in table or "seed 0: l2-normalised" in table


def test_idtrees_choices_are_made_per_fold_on_its_training_plots(tmp_path, monkeypatch):
    rng = np.random.RandomState(0)
    n = 240
    plot = np.repeat(np.arange(24), 10)
    X = rng.rand(n, 5, 3, 3).astype(np.float32)
    crown = np.arange(n) // 5 + 1
    data = Bunch(X=X, y=rng.randint(1, 4, n // 5)[crown - 1], plot_group=plot, plot_id=plot,
                 crown_id=crown, site=np.where(plot < 12, "MLBS", "OSBS"),
                 class_names={1: "a", 2: "b", 3: "c"},
                 scenes=[Bunch(hsi=np.zeros((20, 20, 4)), labels=np.zeros((20, 20)))] * 24)
    monkeypatch.setattr(bench_run, "load_dataset", lambda *a, **k: data)
    chosen = []

    def choose(self, seed, X, y, split, n_lidar, class_names):
        chosen.append(split)
        return {"spectral_norm": None, "pca": None, "fold": len(chosen)}

    def fit_fold(self, method, seed, data, tr, te, classes, n_hsi, n_lidar, choice):
        fits.append((tr, choice))
        proba = np.eye(len(classes))[np.searchsorted(classes, data.y[te])]
        return None, 0.0, (proba, 0.0)

    fits = []
    monkeypatch.setattr(BenchmarkRun, "_choose", choose)
    monkeypatch.setattr(BenchmarkRun, "_fit_fold", fit_fold)
    rows = BenchmarkRun("idtrees", tmp_path, seeds=1, maps=False, text_encoder="random-clip",
                        methods=["MMLGNet (symmetric"], log=_quiet).run()
    assert len(chosen) == benchmark.IDTREES_FOLDS == len(fits)
    for (tr, _), (a, b) in zip(fits, chosen):
        assert set(a) | set(b) <= set(tr)               # the fold's training pixels only
        assert not set(plot[a]) & set(plot[b])          # plots never on both sides
    assert [choice["fold"] for _, choice in fits] == [1, 2, 3]  # each fold its own choice
    assert sorted(rows[0]["network_input"]) == ["0", "1", "2"]
    assert rows[0]["OA"] == 1.0
    assert json.loads((tmp_path / "results.json").read_text())["meta"]["patch_size"] == 7


@requires_idtrees
def test_idtrees_benchmark_scores_pixels_and_crowns_out_of_fold(tmp_path, monkeypatch):
    from sklearn_mmlgnet.datasets import load_idtrees

    # One site and a two-value grid keep the test short; the runner is the same.
    data = load_idtrees(SHARED_DATA, sites=("OSBS",), patch_size=3)
    monkeypatch.setattr(bench_run, "load_dataset", lambda *a, **k: data)
    monkeypatch.setattr(baselines, "KNN_GRID", {"n_neighbors": (1, 9)})
    out = tmp_path / "bench"
    run = BenchmarkRun("idtrees", out, seeds=1, data_home=SHARED_DATA, patch_size=3, maps=False,
                       methods=["KNN (tuned)"], log=_quiet)
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
    assert "Patches 3 x 3 (--patch-size)" in table
    csv_header = (out / "results.csv").read_text().splitlines()[0]
    assert "crown_accuracy" in csv_header and "crown_macro_f1" in csv_header


def test_resume_keeps_finished_runs_and_runs_only_the_others(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_run, "load_dataset", lambda name, data_home, seed: _tiny_scene())
    out = tmp_path / "o"
    common = dict(seeds=1, quick=True, maps=False, log=_quiet, text_encoder="random-clip")
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
    saved = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in saved["runs"]] == ["KNN (tuned), centre pixel",
                                                    "RandomForest (tuned), centre pixel"]
    assert saved["meta"]["resumed"] == 1
    assert "1 runs were kept from an earlier run" in (out / "results_synthetic.md").read_text()
    with pytest.raises(ValueError, match="--resume"):
        BenchmarkRun("synthetic", out, methods=["KNN"], resume=True,
                     **dict(common, quick=False)).run()


def test_on_predict_receives_each_fit_s_test_predictions(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_run, "load_dataset", lambda name, data_home, seed: _tiny_scene())
    calls = []
    rows = BenchmarkRun("synthetic", tmp_path, seeds=2, quick=True, maps=False,
                        methods=["KNN (tuned), centre"], log=_quiet,
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
    monkeypatch.setattr(bench_run, "N_HEAD_PIXELS", 300)
    run = BenchmarkRun("synthetic", tmp_path, patch_size=5, log=_quiet)
    text = {"text_embeddings": np.eye(len(scene.class_names), 8), **TINY}
    method = [m for m in default_methods(1, 2, text, verbose=0)
              if m.name == "MMLGNet + self-distillation"][0]
    Xtr, ytr = (extract_patches(scene.hsi, scene.lidar, *np.nonzero(scene.train_mask), 5),
                scene.labels[scene.train_mask])
    est = method.build(0, 1).fit(Xtr[ytr > 0], ytr[ytr > 0])
    test = scene.test_mask & (scene.labels > 0)
    batches = []
    real = bench_run.iter_scene_patches
    monkeypatch.setattr(bench_run, "iter_scene_patches", lambda *a, **k: (
        batches.append(1) or b for b in real(*a, batch_size=64, **k)))
    got = run._head_scores(est, method, scene, scene.hsi.shape[2], test)
    assert len(batches) > 1
    r, c = (idx[:300] for idx in np.nonzero(test))
    X = extract_patches(scene.hsi, scene.lidar, r, c, 5)
    want = est[-1].head_scores(est[:-1].transform(X), scene.labels[r, c])
    assert got.keys() == want.keys() and len(want) == 2  # a student and the final head
    assert all(abs(got[k] - want[k]) < 1e-9 for k in want)


def test_rows_without_probabilities_vote_and_missing_classes_get_zero():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from sklearn_mmlgnet.benchmark._methods import proba_columns

    rng = np.random.RandomState(0)
    X, y = rng.rand(60, 3), np.repeat([2, 5], 30)
    X[y == 5] += 1
    classes = np.array([1, 2, 5])
    svc = make_pipeline(StandardScaler(), SVC()).fit(X, y)
    assert not hasattr(svc, "predict_proba")
    votes = proba_columns(svc, X[:4], classes)
    np.testing.assert_array_equal(votes, np.eye(3)[np.searchsorted(classes, svc.predict(X[:4]))])
    logreg = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    p = proba_columns(logreg, X[:4], classes)
    np.testing.assert_allclose(p[:, 1:], logreg.predict_proba(X[:4]))
    assert not p[:, 0].any()


def test_table_names_each_rows_epochs_when_runs_of_several_epoch_counts_are_merged():
    def row(method, group, epochs=None, **extra):
        r = dict(method=method, group=group, seed=0, per_class={1: 0.5, 2: 1.0}, OA=0.75,
                 AA=0.75, kappa=0.5, fit_s=1.0, predict_s=0.1, **extra)
        return r if epochs is None else dict(r, epochs=epochs)

    meta = dict(scene=dict(dataset="synthetic", split="a split.", per_seed={0: [10, 20]},
                           class_names={1: "a", 2: "b"}),
                epochs=20, quick=False, patch_size=7, text=dict(TEXT), searches={})
    choice = {"all": {"spectral_norm": "l2", "pca": 30, "seconds": 4.0}}
    rows = [row("MMLGNet (symmetric loss)", "MMLGNet", 5, network_input=choice),
            row("SDHSI-Net without self-distillation", "self-distillation", 20),
            row("KNN (tuned), centre pixel", "baseline")]
    table = benchmark.markdown_table(rows, meta)
    assert "networks: 5 / 20 epochs (row 'epochs')" in table
    assert "| epochs | 5 | 20 | — |" in table
    assert "the estimators' defaults otherwise" in table
    assert "Patches 7 x 7 (the odd side nearest to a third of the smallest image side" in table
    assert ("Network input chosen on inner validation (l2-normalised spectra, PCA 30: 1 of 1 "
            "fits; 4 s per choice); per fit: seed 0: l2-normalised spectra, PCA 30.") in table
    assert "kept from an earlier run" not in table
    assert "sentence-transformers (packaged all-MiniLM-L6-v2)" in table
    one = benchmark.markdown_table(rows[:1] + rows[2:], dict(meta, patch_rule="given"))
    assert "networks: 5 epochs fixed" in one and "| epochs |" not in one
    assert "Patches 7 x 7 (--patch-size)" in one
    assert "Network input chosen" not in benchmark.markdown_table(rows[1:], meta)
