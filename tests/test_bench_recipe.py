"""The lab of the defaults: inner validation never reads a test pixel, and every row builds."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils import Bunch

from sklearn_mmlgnet.benchmark import IDTREES_FOLDS
from sklearn_mmlgnet.datasets import idtrees_splits, load_jasper_ridge
from sklearn_mmlgnet.patches import labelled_patches

from .conftest import SHARED_DATA, load_benchmark, requires_shared

bench_recipe = load_benchmark("bench_recipe")


@requires_shared
def test_jasper_inner_folds_hold_training_pixels_only_and_keep_patches_apart():
    seed = 1
    scene, X, y, folds, where = bench_recipe.inner_folds(SHARED_DATA, seed)
    ref = load_jasper_ridge(SHARED_DATA, random_state=seed)
    _, y_ref, rows, cols = labelled_patches(ref, ref.train_mask, bench_recipe.PATCH)
    np.testing.assert_array_equal(y, y_ref)
    # the early-stopping rows' groups: each pixel's 16 x 16 block
    assert list(where) == ["blocks"] and len(where["blocks"]) == len(y)
    b = bench_recipe.VALID_BLOCK
    same = (rows[:, None] // b == rows[None] // b) & (cols[:, None] // b == cols[None] // b)
    np.testing.assert_array_equal(where["blocks"][:, None] == where["blocks"][None], same)
    assert ref.train_mask[rows, cols].all() and not ref.test_mask[rows, cols].any()
    h = bench_recipe.PATCH // 2
    held = np.concatenate([va for _, va in folds])
    assert sorted(held.tolist()) == list(range(len(y)))  # every training pixel held out once
    for tr, va in folds:
        # no inner-training patch reaches an inner-validation pixel
        dr = np.abs(rows[tr][:, None] - rows[va][None, :])
        dc = np.abs(cols[tr][:, None] - cols[va][None, :])
        assert not ((dr <= h) & (dc <= h)).any()


def test_idtrees_inner_folds_come_from_the_outer_training_plots_only():
    rng = np.random.RandomState(0)
    n = 240
    plot_group = np.repeat(np.arange(24), 10)
    data = Bunch(X=np.arange(n)[:, None],  # each row's feature is its own index
                 y=rng.randint(1, 4, n), plot_group=plot_group, crown_id=np.arange(n),
                 site=np.where(plot_group < 12, "MLBS", "OSBS"))
    outer = idtrees_splits(data, kind="plot", n_splits=IDTREES_FOLDS, random_state=0)
    for seed in range(IDTREES_FOLDS):
        _, X, y, folds, where = bench_recipe.idtrees_inner_folds(data, seed)
        outer_train, outer_test = outer[seed]
        index = X[:, 0]
        np.testing.assert_array_equal(np.sort(index), np.sort(outer_train))
        np.testing.assert_array_equal(where["groups"], plot_group[index])
        assert not np.isin(index, outer_test).any()
        for tr, va in folds:  # plots (groups) never on both sides of an inner split
            assert not set(plot_group[index[tr]]) & set(plot_group[index[va]])


def test_rows_crop_the_patches_with_the_packages_center_crop():
    from sklearn_mmlgnet._validation import center_crop

    pipe = bench_recipe.mmlg_pipeline("jasper_ridge", {1: "tree"}, 5, 0, patch=5)
    crop = pipe.named_steps["center_crop"]
    assert crop.func is center_crop and crop.kw_args == {"patch_size": 5}
    X = np.random.RandomState(0).rand(4, 3, 11, 11)
    C = crop.transform(X)
    assert C.shape == (4, 3, 5, 5)
    np.testing.assert_array_equal(C[:, :, 2, 2], X[:, :, 5, 5])  # the centre stays the centre
    assert bench_recipe.IDTREES_PATCH == 7  # the benchmark's rule on 20 x 20 px plots


def test_prior_shift_moves_predictions_towards_the_frequent_classes():
    classes = np.array([1, 2, 3])
    y_train = np.array([1] * 8 + [2] * 2)  # class 3 never trained on
    proba = np.array([[0.45, 0.55, 0.0], [0.2, 0.8, 0.0]])
    pick = lambda tau: classes[bench_recipe.prior_shift(proba, y_train, classes, tau).argmax(1)]
    np.testing.assert_array_equal(pick(0.0), [2, 2])  # no shift: the argmax of proba
    np.testing.assert_array_equal(pick(1.0), [1, 1])  # 0.45 * 0.8 > 0.55 * 0.2
    np.testing.assert_array_equal(pick(0.5), [1, 2])
    # tau < 0 favours rare classes, but never one the fold did not train on
    assert not np.isin(pick(-5.0), 3).any()


def test_jasper_rows_cannot_ask_for_patches_larger_than_the_inner_buffer(capsys):
    # up to the buffer itself (11 px) the rows pass, and the data are looked for
    with pytest.raises(FileNotFoundError):
        bench_recipe.main(["--rows", "patch 9", "patch 11", "--data-home", "/nonexistent"])
    bench_recipe.MMLG_ROWS["patch 13 (test)"] = dict(patch=13)
    try:
        with pytest.raises(SystemExit):
            bench_recipe.main(["--rows", "patch 13 (test)", "--data-home", "/nonexistent"])
        assert "need patches over 11 px" in capsys.readouterr().err
    finally:
        del bench_recipe.MMLG_ROWS["patch 13 (test)"]


@pytest.mark.parametrize("factory, classifier", [
    ("tuned_svm", "SVC"), ("tuned_logistic_regression", "LogisticRegression")])
def test_the_classic_rows_search_on_folds_cut_as_the_benchmark_cuts_them(factory, classifier):
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    from sklearn_mmlgnet.benchmark import SEARCH_SAMPLES

    def searched(est):  # the classifier inside the row's search
        return type(est.steps[-1][1].estimator.steps[-1][1]).__name__

    tr = np.arange(0, 60, 2)
    factory = getattr(bench_recipe, factory)
    est, fit_kw = bench_recipe.classic_search({"groups": np.arange(60) // 5}, tr, 0, factory)
    assert searched(est) == classifier
    cv = est.steps[-1][1].cv  # the search's folds, each candidate on a capped sample
    assert isinstance(cv.cv, StratifiedGroupKFold)  # plots, as the benchmark
    assert cv.max_samples == SEARCH_SAMPLES
    np.testing.assert_array_equal(fit_kw["groups"], tr // 5)
    # Jasper Ridge: too few blocks in an inner-training region, so stratified folds
    est, fit_kw = bench_recipe.classic_search({}, tr, 0, factory)
    assert searched(est) == classifier
    assert isinstance(est.steps[-1][1].cv.cv, StratifiedKFold) and fit_kw == {}


def test_rows_build_the_benchmarks_network_behind_a_centre_crop():
    from sklearn_mmlgnet.benchmark import network_pipeline

    pipe = bench_recipe.mmlg_pipeline("idtrees", {1: "oak"}, 5, 3, patch=5,
                                      module__similarity="dot", module__class_bias=True)
    bench = network_pipeline(dict(n_lidar_bands=1, text_encoder="sentence-transformers",
                                  class_names={1: "oak"}, max_epochs=5, random_state=3,
                                  module__similarity="dot", module__class_bias=True),
                             pca=bench_recipe.BASE_PCA["idtrees"])
    assert [n for n, _ in pipe.steps] == ["center_crop"] + [n for n, _ in bench.steps]
    assert pipe[0].kw_args == {"patch_size": 5}
    for ours, theirs in zip(pipe.steps[1:], bench.steps):
        assert ours[1].get_params() == theirs[1].get_params()
    # the rows keep the language head of the figures measured before its class bias
    assert bench_recipe.mmlg_pipeline("idtrees", {1: "oak"}, 5, 3)[-1].get_params()[
        "module__class_bias"] is False


def test_log_reflectance_turns_illumination_into_an_offset_and_leaves_lidar_alone():
    rng = np.random.default_rng(0)
    X = rng.uniform(0.01, 0.9, size=(3, 5, 3, 3)).astype(np.float32)  # 4 HSI bands + LiDAR
    X[1, :4, 0, 0] = 0.0                                      # a pixel without signal
    before = X.copy()
    brighter = X.copy()
    brighter[:, :4] *= 2.5                                    # the same surfaces, lit 2.5x
    log = bench_recipe.log_reflectance(X, n_lidar=1)
    shift = bench_recipe.log_reflectance(brighter, n_lidar=1)[:, :4] - log[:, :4]
    np.testing.assert_allclose(shift[X[:, :4] > 0], np.log(2.5), rtol=1e-5)  # an offset
    np.testing.assert_allclose(log[1, :4, 0, 0], np.log(bench_recipe.REFLECTANCE_FLOOR))
    np.testing.assert_array_equal(log[:, 4], X[:, 4])         # the LiDAR band
    np.testing.assert_array_equal(X, before)                  # the caller's array
    with pytest.raises(ValueError, match="kind must be"):
        bench_recipe.spectra_step("l2", 0)


def test_unit_and_brightness_splits_a_spectrum_into_its_shape_and_its_length():
    rng = np.random.default_rng(0)
    X = rng.uniform(0.01, 0.9, size=(3, 5, 3, 3)).astype(np.float32)  # 4 HSI bands + LiDAR
    out = bench_recipe.unit_and_brightness(X, n_lidar=1)
    assert out.shape == (3, 6, 3, 3)                      # 4 unit bands, brightness, LiDAR
    np.testing.assert_allclose(np.linalg.norm(out[:, :4], axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(out[:, 4], np.log(np.linalg.norm(X[:, :4], axis=1)), rtol=1e-5)
    np.testing.assert_array_equal(out[:, 5], X[:, 4])
    brighter = X.copy()
    brighter[:, :4] *= 2.5
    lit = bench_recipe.unit_and_brightness(brighter, n_lidar=1)
    np.testing.assert_allclose(lit[:, :4], out[:, :4], rtol=1e-5)     # the shape stays
    np.testing.assert_allclose(lit[:, 4] - out[:, 4], np.log(2.5), rtol=1e-5)


def test_unit_spectra_rows_build_the_benchmarks_normalised_network():
    from sklearn_mmlgnet.benchmark import network_pipeline

    pipe = bench_recipe.mmlg_pipeline("idtrees", {1: "oak"}, 5, 3, spectra="unit",
                                      module__class_bias=True)
    bench = network_pipeline(dict(n_lidar_bands=1, text_encoder="sentence-transformers",
                                  class_names={1: "oak"}, max_epochs=5, random_state=3,
                                  module__class_bias=True),
                             pca=bench_recipe.BASE_PCA["idtrees"], spectral_norm="l2")
    names = [n for n, _ in bench.steps[1:]]
    assert [n for n, _ in pipe.steps] == ["center_crop", "spectra"] + names
    for ours, theirs in zip(pipe.steps[1:], bench.steps):
        assert type(ours[1]) is type(theirs[1]) and ours[1].get_params() == theirs[1].get_params()
    log = bench_recipe.mmlg_pipeline("jasper_ridge", {1: "tree"}, 5, 3, spectra="log")
    assert [n for n, _ in log.steps][:3] == ["center_crop", "spectra", "bandstandardscaler"]
    assert log.steps[1][1].kw_args == {"n_lidar": 0}


def test_input_noise_moves_training_batches_only():
    import torch

    noise = bench_recipe.InputNoise(0.5)
    X = torch.zeros(64, 3, 5, 5)
    noise.on_batch_begin(None, batch=(X, None), training=False)
    assert not X.any()  # validation batches are left alone
    noise.on_batch_begin(None, batch=(X, None), training=True)
    assert 0.4 < float(X.std()) < 0.6
    pipe = bench_recipe.mmlg_pipeline("jasper_ridge", {1: "tree"}, 5, 0, noise=0.2)
    (name, cb), = pipe[-1].get_params()["callbacks"]
    assert name == "input_noise" and cb.std == 0.2


def test_patch_mix_keeps_each_patch_dominant_and_leaves_validation_alone():
    import torch

    mix = bench_recipe.PatchMix(0.7)
    i = torch.arange(64.0, dtype=torch.float64)
    # patch i: band 0 all i, band 1 all i^2 / 64 (a mix of i and j is then solvable)
    base = torch.stack([i, i ** 2 / 64], dim=1).view(64, 2, 1, 1).expand(64, 2, 5, 5).contiguous()
    y = torch.arange(64)
    X = base.clone()
    mix.on_batch_begin(None, batch=(X, y), training=False)
    assert torch.equal(X, base)  # validation batches are left alone
    torch.manual_seed(0)
    mix.on_batch_begin(None, batch=(X, y), training=True)
    assert torch.equal(y, torch.arange(64))  # labels untouched
    # each patch is mixed as a whole (one lam for every pixel)
    assert torch.equal(X, X[:, :, :1, :1].expand_as(X))
    v = X[:, :, 0, 0]
    changed = (v != base[:, :, 0, 0]).any(dim=1)
    assert 16 < int(changed.sum()) < 48  # about half the batch
    for k in torch.nonzero(changed).ravel().tolist():
        # lam * x_k + (1 - lam) * x_j for one other patch j of the batch, lam in [0.7, 1)
        j = i[i != k]
        lam = (v[k, 0] - j) / (k - j)
        fits = (torch.abs(lam * k ** 2 / 64 + (1 - lam) * j ** 2 / 64 - v[k, 1]) < 1e-6)
        assert bool((fits & (lam >= 0.7 - 1e-9) & (lam < 1)).any()), k
    pipe = bench_recipe.mmlg_pipeline("jasper_ridge", {1: "tree"}, 5, 0, mix=0.55, noise=0.1)
    names = [n for n, _ in pipe[-1].get_params()["callbacks"]]
    assert names == ["input_noise", "patch_mix"]


def test_centred_class_embeddings_spread_the_classes_apart(monkeypatch):
    from sklearn_mmlgnet import text

    # three names that share a direction (an "oak" part) and differ in the rest
    E = np.array([[3.0, 1.0, 0.0], [3.0, 0.0, 1.0], [3.0, -1.0, -1.0]])
    monkeypatch.setattr(text, "make_text_encoder", lambda name: name)
    monkeypatch.setattr(text, "encode_class_names", lambda names, encoder: E[
        [{"white oak": 0, "red oak": 1, "scarlet oak": 2}[n] for n in names]])
    names = {7: "scarlet oak", 2: "white oak", 5: "red oak"}
    C = bench_recipe.centred_class_embeddings(names)
    assert sorted(C) == [2, 5, 7]
    np.testing.assert_allclose([np.linalg.norm(v) for v in C.values()], 1.0)
    unit = E / np.linalg.norm(E, axis=1, keepdims=True)
    assert float(C[2] @ C[5]) < float(unit[0] @ unit[1])  # further apart than before
    # the same geometry: each class is its unit embedding less the classes' mean
    centred = unit[0] - unit.mean(axis=0)
    np.testing.assert_allclose(C[2], centred / np.linalg.norm(centred))
    pipe = bench_recipe.mmlg_pipeline("jasper_ridge", names, 5, 0, centred_text=True)
    assert set(pipe[-1].get_params()["text_embeddings"]) == {2, 5, 7}


def _split_params(params):
    """A row's parameters: the estimator's own, the module's and the criterion's."""
    own = {k: v for k, v in params.items() if "__" not in k}
    module = {k[len("module__"):]: v for k, v in params.items() if k.startswith("module__")}
    criterion = {k for k in params if k.startswith("criterion__")}
    assert set(params) == set(own) | {f"module__{k}" for k in module} | criterion
    return own, module, criterion


def test_every_mmlgnet_row_builds_a_valid_network_with_todays_parameters():
    """No row passes a removed parameter, and each module__ setting builds the module."""
    import inspect

    import torch

    from sklearn_mmlgnet import MMLGNetClassifier
    from sklearn_mmlgnet.nn import MMLGNetModule

    accepted = set(inspect.signature(MMLGNetClassifier).parameters)
    for name, row in bench_recipe.MMLG_ROWS.items():
        pipe = bench_recipe.mmlg_pipeline("jasper_ridge", {1: "tree", 2: "water"}, 2, 0, **row)
        params = {k: v for k, v in pipe[-1].get_params(deep=False).items()}
        own, module, criterion = _split_params(params)
        assert set(own) <= accepted, (name, set(own) - accepted)
        assert not criterion, name
        MMLGNetModule(8, 0, torch.eye(2, 4), **module)  # validates the module's arguments


def test_every_sdhsi_row_builds_a_valid_network_with_todays_parameters(monkeypatch):
    import inspect
    import sys

    from sklearn_mmlgnet import SDHSIClassifier
    from sklearn_mmlgnet.losses import ContrastiveCriterion
    from sklearn_mmlgnet.nn import SDHSINet

    monkeypatch.setitem(sys.modules, "bench_recipe", bench_recipe)  # as benchmarks/ on sys.path
    sd = load_benchmark("bench_self_distillation")
    accepted = set(inspect.signature(SDHSIClassifier).parameters)
    rows = {**bench_recipe.SDHSI_ROWS, **{k: v for k, (v, _) in sd.ROWS.items()}}
    for name, row in rows.items():
        params = {k: v for k, v in row.items() if not k.startswith("_")}
        own, module, criterion = _split_params(SDHSIClassifier(**params).get_params(deep=False))
        assert set(own) <= accepted, (name, set(own) - accepted)
        SDHSINet(15, 4, **module)
        ContrastiveCriterion(distill=True,
                             **{k[len("criterion__"):]: params[k] for k in criterion})
