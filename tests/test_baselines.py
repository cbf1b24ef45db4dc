"""Tuned classic baselines: the inner search sees training pixels only, folds stay apart."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold
from sklearn.utils import Bunch

from sklearn_mmlgnet.baselines import (
    KNN_GRID,
    LOGREG_GRID,
    RF_GRID,
    SVM_GRID,
    SubsampledCV,
    TunedPipeline,
    describe_search,
    inner_cv,
    spectral_spatial_svm,
    tuned_knn,
    tuned_logistic_regression,
    tuned_random_forest,
    tuned_svm,
)
from sklearn_mmlgnet.model_selection import sample_per_class, spatially_disjoint_split
from sklearn_mmlgnet.patches import labelled_patches
from sklearn_mmlgnet.prediction import predict_scene
from sklearn_mmlgnet.preprocessing import ExtendedMorphologicalProfile

from .conftest import make_patches

_SMALL_SVM = {"C": (1.0, 100.0), "gamma": (1e-3, 1e-1)}
SEEN = []  # what the recording step saw, across the clones GridSearchCV makes


class _Recorder(TransformerMixin, BaseEstimator):
    """Passes X through and keeps every row it is fitted on or transforms."""

    def fit(self, X, y=None):
        SEEN.append(np.array(X, copy=True))
        return self

    def transform(self, X):
        SEEN.append(np.array(X, copy=True))
        return X


@pytest.fixture(scope="module")
def scene():
    """A 64 x 96 HSI + LiDAR scene of 8 px tiles of 3 classes, split in disjoint blocks."""
    rng = np.random.RandomState(0)
    r, c = np.indices((64, 96))
    labels = (r // 8 + c // 8) % 3 + 1
    signature = rng.rand(4, 8)
    hsi = (signature[labels] + 0.15 * rng.normal(size=(64, 96, 8))).astype(np.float32)
    lidar = (labels[..., None] * 0.5 + 0.3 * rng.normal(size=(64, 96, 1))).astype(np.float32)
    train, test = spatially_disjoint_split(labels, patch_size=5, block_size=16, random_state=0)
    return Bunch(hsi=hsi, lidar=lidar, labels=labels, train_mask=train, test_mask=test)


def _rows(a):
    return {r.tobytes() for r in np.asarray(a, np.float32)}


def test_inner_search_sees_only_training_pixels(scene):
    Xtr, ytr, rows, cols = labelled_patches(scene, scene.train_mask, 5)
    Xte, _, _, _ = labelled_patches(scene, scene.test_mask, 5)
    est = tuned_svm(param_grid=_SMALL_SVM, random_state=0)
    est.set_params(search__estimator__scale=_Recorder())
    SEEN.clear()
    est.fit(Xtr, ytr)
    seen = set().union(*(_rows(a) for a in SEEN))
    train_px, test_px = _rows(Xtr[:, :, 2, 2]), _rows(Xte[:, :, 2, 2])
    assert seen == train_px          # every training pixel (folds + refit) and nothing else
    assert not seen & test_px
    # Every inner validation fold is made of training pixels, disjoint from its fold's fit.
    for tr, va in est.steps[-1][1].cv.split(Xtr, ytr):
        assert not set(tr) & set(va) and max(tr.max(), va.max()) < len(Xtr)


def test_test_pixels_do_not_change_the_tuned_baseline(scene):
    """Poison every test pixel of the scene: the tuned EMP SVM is unchanged."""
    Xtr, ytr, rows, cols = labelled_patches(scene, scene.train_mask, 5)
    poisoned = Bunch(**scene)
    poisoned.hsi = scene.hsi.copy()
    poisoned.lidar = scene.lidar.copy()
    poisoned.hsi[scene.test_mask] = 1e3
    poisoned.lidar[scene.test_mask] = -1e3
    Xp, yp, _, _ = labelled_patches(poisoned, poisoned.train_mask, 5)
    fits = []
    for X in (Xtr, Xp):
        est = spectral_spatial_svm(1, n_components=3, radii=(1,), param_grid=_SMALL_SVM,
                                   cv=inner_cv(rows=rows, cols=cols, patch_size=5,
                                               block_size=8, random_state=0),
                                   random_state=0).fit(X, ytr)
        fits.append(est)
    assert fits[0].best_params_ == fits[1].best_params_
    assert fits[0].best_score_ == fits[1].best_score_
    np.testing.assert_array_equal(fits[0].predict(Xtr), fits[1].predict(Xp))


@pytest.mark.parametrize("factory, grid", [
    (tuned_svm, SVM_GRID), (tuned_knn, KNN_GRID), (tuned_logistic_regression, LOGREG_GRID),
    (lambda **kw: tuned_random_forest(n_estimators=10, **kw), RF_GRID),
    (lambda **kw: spectral_spatial_svm(1, radii=(1,), **kw), SVM_GRID),
])
def test_factories_fit_predict_and_record_the_choice(factory, grid):
    X, y = make_patches(n_per_class=20, labels=np.array(["road", "tree", "water"]))
    est = factory(random_state=0)
    assert isinstance(est, TunedPipeline)
    est.fit(X, y)
    assert set(est.predict(X[:7])) <= set(y)
    assert list(est.classes_) == ["road", "tree", "water"]
    assert set(est.best_params_) == set(grid)
    assert all(v in grid[k] for k, v in est.best_params_.items())
    assert est.best_score_ > 0.5  # chance is 1/3
    assert len(est.cv_results_["params"]) == np.prod([len(v) for v in grid.values()])
    # the table header names the grid and the inner folds
    line = describe_search(est)
    assert "3-fold StratifiedKFold" in line and all(k in line for k in grid)


def test_grouped_inner_cv_keeps_groups_apart():
    X, y = make_patches(n_per_class=24)
    groups = np.arange(len(y)) // 4  # crowns of 4 pixels, each of one class
    folds = []

    class RecordingGroupKFold(GroupKFold):
        def split(self, X, y=None, groups=None):
            for tr, va in super().split(X, y, groups):
                folds.append((groups[tr], groups[va]))
                yield tr, va

    est = tuned_svm(param_grid=_SMALL_SVM, cv=RecordingGroupKFold(3), random_state=0)
    est.fit(X, y, groups=groups)
    assert len(folds) == 3
    for g_tr, g_va in folds:
        assert not set(g_tr) & set(g_va)
    with pytest.raises(ValueError, match="groups"):
        tuned_svm(param_grid=_SMALL_SVM, cv=GroupKFold(3)).fit(X, y)  # forgotten groups
    # the default grouped splitter also keeps them apart, after the search's subsample
    cv = SubsampledCV(inner_cv(grouped=True, random_state=0), max_samples=20, random_state=0)
    for tr, va in cv.split(X, y, groups):
        assert not set(groups[tr]) & set(groups[va]) and len(tr) <= 20 and len(va) <= 20


def test_spatial_inner_cv_keeps_training_patches_off_validation_pixels(scene):
    _, ytr, rows, cols = labelled_patches(scene, scene.train_mask, 5)
    cv = SubsampledCV(inner_cv(rows=rows, cols=cols, patch_size=5, block_size=8, random_state=0),
                      max_samples=60, random_state=0)
    n = 0
    for tr, va in cv.split(rows, ytr):
        n += 1
        dist = np.maximum(abs(rows[tr][:, None] - rows[va][None]),
                          abs(cols[tr][:, None] - cols[va][None]))
        assert dist.min() >= 5  # 5 x 5 patches of training and validation pixels never overlap
        assert set(ytr[tr]) == {1, 2, 3}
    assert n == 3
    est = tuned_svm(cv=inner_cv(rows=rows, cols=cols, patch_size=5, block_size=8))
    assert "(3-fold SpatialBlockKFold, 8 px blocks, 5 px buffer;" in describe_search(est)
    with pytest.raises(ValueError, match="rows and cols"):
        inner_cv(rows=rows)
    with pytest.raises(ValueError, match="y has 3 samples but rows/cols give"):  # no fallback
        list(inner_cv(rows=rows, cols=cols, patch_size=5).split(rows, ytr[:3]))
    assert cv.cv.fallback_reason_ is None


def _same_folds(a, b):
    return len(a) == len(b) and all(np.array_equal(np.sort(tr), np.sort(tr2))
                                    and np.array_equal(np.sort(va), np.sort(va2))
                                    for (tr, va), (tr2, va2) in zip(a, b))


@pytest.mark.parametrize("case", ["one block", "buffer eats the training area",
                                  "one block per class", "more folds than blocks"])
def test_spatial_inner_cv_never_trains_a_fold_without_a_class(case):
    """Where the blocks cannot train every class in every fold, the stratified folds of a
    plain search are used, decided before any candidate is fitted."""
    gr, gc = (a.ravel() for a in np.indices((40, 40)))
    kw = dict(patch_size=3, block_size=10)
    y = np.where((gr < 10) & (gc < 10), 2, 1)             # class 2 in a single block
    if case != "one block":
        gr, gc = (a.ravel() for a in np.indices((10, 30)))  # three 10 px blocks side by side
        kw = dict(patch_size=11, block_size=10)             # holding the middle one out
        y = gr % 2 if case != "one block per class" else gc // 10  # leaves nothing to train
    if case == "more folds than blocks":
        kw["n_splits"] = 4
    cv = inner_cv(rows=gr, cols=gc, random_state=0, **kw)
    with pytest.warns(UserWarning, match="inner CV: .* Using .* shuffled stratified folds"):
        folds = list(cv.split(gr, y))
    assert cv.fallback_reason_
    assert all(set(y[tr]) == set(y) for tr, va in folds)
    want = list(StratifiedKFold(kw.get("n_splits", 3), shuffle=True, random_state=0)
                .split(gr, y))
    assert _same_folds(folds, want)
    assert cv.get_n_splits(gr, y) == len(folds)  # what GridSearchCV checks against split()


def test_stratified_fallback_trains_a_single_pixel_class_in_every_fold():
    gr, gc = (a.ravel() for a in np.indices((10, 30)))
    y = gr % 2
    y[0] = 7                                                   # one pixel of class 7
    cv = inner_cv(rows=gr, cols=gc, patch_size=11, block_size=10, random_state=0)
    with pytest.warns(UserWarning, match="inner CV"):
        folds = list(cv.split(gr, y))
    assert len(folds) == 3 and all(0 in tr and 0 not in va for tr, va in folds)
    assert all(set(y[tr]) == {0, 1, 7} for tr, va in folds)
    assert sorted(np.concatenate([va for tr, va in folds]).tolist()) == list(range(1, 300))


def _rare_class_scene(seed):
    """48 x 64 px of four 12 x 16 px tile classes and a rare fifth class in one 4 x 4 spot,
    spectrally close to class 3; 12 training pixels per class, drawn at random."""
    rng = np.random.RandomState(seed)
    r, c = np.indices((48, 64))
    labels = ((r // 12) * 2 + c // 16) % 4 + 1
    labels[20:24, 40:44] = 5
    signature = rng.rand(6, 10)
    signature[5] = signature[2] + 0.15 * rng.rand(10)
    hsi = (signature[labels] + 0.25 * rng.normal(size=(48, 64, 10))).astype(np.float32)
    lidar = (labels[..., None] * 0.2 + 0.5 * rng.normal(size=(48, 64, 1))).astype(np.float32)
    train, test = sample_per_class(labels, n_per_class=12, random_state=seed)
    return Bunch(hsi=hsi, lidar=lidar, labels=labels, train_mask=train, test_mask=test)


def test_spatially_tuned_baseline_on_a_rare_class_does_not_lose_to_a_plain_search():
    """The rare class lies in one 16 px block: spatial folds cannot all train on it. Before,
    the folds that held it out were kept and the search chose C = 1000 (test OA 0.77);
    a plain stratified 3-fold search chooses C = 0.1 (0.91)."""
    scene = _rare_class_scene(0)
    Xtr, ytr, rows, cols = labelled_patches(scene, scene.train_mask, 5)
    Xte, yte, _, _ = labelled_patches(scene, scene.test_mask, 5)
    cv = inner_cv(rows=rows, cols=cols, patch_size=5, block_size=16, random_state=0)
    with pytest.warns(UserWarning, match="class 5 cannot give every fold"):
        est = tuned_logistic_regression(cv=cv, random_state=0).fit(Xtr, ytr)
    plain = tuned_logistic_regression(cv=StratifiedKFold(3, shuffle=True, random_state=0),
                                      random_state=0).fit(Xtr, ytr)
    assert est.best_params_ == plain.best_params_
    assert (est.predict(Xte) == yte).mean() >= (plain.predict(Xte) == yte).mean() > 0.85
    assert "stratified folds used" in describe_search(est)


# k=25 > 20 pixels: that k scores NaN and is not chosen
@pytest.mark.filterwarnings("ignore:Scoring failed", "ignore:One or more of the test scores")
def test_subsampled_cv_caps_folds_and_keeps_every_class():
    y = np.r_[np.zeros(500, int), np.ones(20, int), np.full(3, 2)]
    cv = SubsampledCV(KFold(3, shuffle=True, random_state=0), max_samples=40, random_state=0)
    full = list(KFold(3, shuffle=True, random_state=0).split(y))
    for (tr, va), (ftr, fva) in zip(cv.split(y, y), full):
        assert len(tr) <= 40 and set(tr) <= set(ftr) and set(va) <= set(fva)
        assert set(y[tr]) == set(y[ftr])  # the rare classes stay in
    assert cv.get_n_splits() == 3
    with pytest.raises(ValueError, match="max_samples"):
        next(SubsampledCV(KFold(3), max_samples=1).split(y))
    # the refit still uses every training pixel
    X, yy = make_patches(n_per_class=30)
    est = tuned_knn(max_search_samples=20, random_state=0).fit(X, yy)
    assert est.steps[-1][1].best_estimator_[-1].n_samples_fit_ == len(yy)


def test_tuned_emp_svm_predicts_a_scene(scene):
    Xtr, ytr, rows, cols = labelled_patches(scene, scene.train_mask, 5)
    est = spectral_spatial_svm(1, n_components=3, radii=(1,), param_grid=_SMALL_SVM,
                               random_state=0).fit(Xtr, ytr)
    assert isinstance(est[0], ExtendedMorphologicalProfile)
    test = scene.test_mask & (scene.labels > 0)
    pred = predict_scene(est, scene.hsi, scene.lidar, 5, mask=test)
    assert (pred[test] == scene.labels[test]).mean() > 0.5
