"""The inner validation the defaults were chosen on never reads a test pixel."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from sklearn_mmlgnet.benchmark import IDTREES_FOLDS
from sklearn_mmlgnet.datasets import idtrees_splits, load_jasper_ridge
from sklearn_mmlgnet.patches import labelled_patches

from .conftest import SHARED_DATA, requires_shared

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_recipe.py"
_spec = importlib.util.spec_from_file_location("bench_recipe", _PATH)
bench_recipe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_recipe)


@requires_shared
def test_jasper_inner_folds_hold_training_pixels_only_and_keep_patches_apart():
    seed = 1
    scene, X, y, folds = bench_recipe.inner_folds(SHARED_DATA, seed)
    ref = load_jasper_ridge(SHARED_DATA, random_state=seed)
    _, y_ref, rows, cols = labelled_patches(ref, ref.train_mask, bench_recipe.PATCH)
    np.testing.assert_array_equal(y, y_ref)
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
        _, X, y, folds = bench_recipe.idtrees_inner_folds(data, seed)
        outer_train, outer_test = outer[seed]
        index = X[:, 0]
        np.testing.assert_array_equal(np.sort(index), np.sort(outer_train))
        assert not np.isin(index, outer_test).any()
        for tr, va in folds:  # plots (groups) never on both sides of an inner split
            assert not set(plot_group[index[tr]]) & set(plot_group[index[va]])
