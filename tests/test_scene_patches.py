"""ScenePatches: lazy patches that fit, predict and cross-validate as materialised ones do."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score

from sklearn_mmlgnet import MMLGNetClassifier, SDHSIClassifier
from sklearn_mmlgnet.patches import ScenePatches, extract_patches

EMB = np.random.RandomState(1).normal(size=(3, 8)).astype(np.float32)


@pytest.fixture(scope="module")
def scene():
    """A 24 x 30 scene whose classes (vertical stripes) lift their own band."""
    rng = np.random.RandomState(0)
    H, W = 24, 30
    labels = np.repeat((np.arange(W) * 3) // W, H).reshape(W, H).T
    hsi = rng.normal(size=(H, W, 5)).astype(np.float32)
    for c in range(3):
        hsi[labels == c, c] += 2.0
    lidar = (0.5 * labels + rng.normal(scale=0.1, size=(H, W))).astype(np.float32)
    rows, cols = np.nonzero(np.ones((H, W), bool))
    return hsi, lidar, rows, cols, labels[rows, cols]


def _mmlg(**kw):
    return MMLGNetClassifier(**{**dict(
        text_embeddings=EMB, module__hsi_channels=(4,), module__lidar_channels=(2,),
        module__fusion_dim=8, module__spectral_channels=(8,), max_epochs=3, lr=1e-2,
        batch_size=32, random_state=0), **kw})


def _sdhsi(**kw):
    return SDHSIClassifier(**{**dict(
        module__conv3d_channels=(2,), module__spectral_kernels=(3,), module__conv2d_channels=4,
        module__hidden=8, module__student_hidden=4, max_epochs=3, lr=1e-2, batch_size=32,
        random_state=0), **kw})


@pytest.mark.parametrize("pad_mode", ["reflect", "symmetric", "edge", "constant"])
def test_indexing_gives_the_patches_extract_patches_gives(scene, pad_mode):
    hsi, lidar, rows, cols, _ = scene
    X = ScenePatches(hsi, lidar, rows, cols, patch_size=5, pad_mode=pad_mode)
    dense = extract_patches(hsi, lidar, rows, cols, patch_size=5, pad_mode=pad_mode)
    assert X.shape == dense.shape and len(X) == len(dense)
    np.testing.assert_array_equal(np.asarray(X), dense)
    np.testing.assert_array_equal(X[7], dense[7])
    idx = np.array([5, 0, 99, 5])
    np.testing.assert_array_equal(np.asarray(X[idx]), dense[idx])
    mask = np.arange(len(X)) % 3 == 0
    np.testing.assert_array_equal(np.asarray(X[mask]), dense[mask])
    np.testing.assert_array_equal(np.asarray(X[10:40:3]), dense[10:40:3])
    np.testing.assert_array_equal(np.asarray(X.crop(3)), dense[:, :, 1:4, 1:4])


def test_a_subset_shares_the_scene_instead_of_copying_it(scene):
    hsi, lidar, rows, cols, _ = scene
    X = ScenePatches(hsi, lidar, rows, cols, patch_size=5)
    assert X[::2]._cube is X._cube and X.crop(3)._cube is X._cube


@pytest.mark.parametrize("make", [_mmlg, _sdhsi], ids=["MMLGNet", "SDHSI"])
def test_fit_on_lazy_patches_equals_fit_on_the_materialised_ones(scene, make):
    hsi, lidar, rows, cols, y = scene
    if make is _sdhsi:
        lidar = None
    lazy = ScenePatches(hsi, lidar, rows, cols, patch_size=5)
    dense = np.asarray(lazy)
    a = make(patch_size=3).fit(lazy, y)
    b = make(patch_size=3).fit(dense, y)
    assert a.n_features_in_ == b.n_features_in_ and a.patch_size_ == b.patch_size_ == 3
    np.testing.assert_allclose(a.predict_proba(lazy), b.predict_proba(dense), atol=1e-6)
    np.testing.assert_array_equal(a.predict(lazy), b.predict(dense))
    assert a.score(lazy, y) > 0.6


def test_cross_validation_and_grid_search_take_lazy_patches(scene):
    hsi, lidar, rows, cols, y = scene
    lazy = ScenePatches(hsi, lidar, rows, cols, patch_size=5)
    cv = KFold(3, shuffle=True, random_state=0)
    lazy_scores = cross_val_score(_mmlg(), lazy, y, cv=cv)
    dense_scores = cross_val_score(_mmlg(), np.asarray(lazy), y, cv=cv)
    np.testing.assert_allclose(lazy_scores, dense_scores)
    search = GridSearchCV(_mmlg(), {"temperature": [0.05, 0.1]}, cv=cv).fit(lazy, y)
    assert search.best_params_["temperature"] in (0.05, 0.1)


def test_bad_arguments_are_named(scene):
    hsi, lidar, rows, cols, y = scene
    with pytest.raises(ValueError, match="rows and cols must have the same length"):
        ScenePatches(hsi, lidar, rows, cols[:-1], patch_size=5)
    with pytest.raises(ValueError, match="inside the 24 x 30 scene"):
        ScenePatches(hsi, lidar, rows + 1, cols, patch_size=5)
    with pytest.raises(ValueError, match="pad_mode"):
        ScenePatches(hsi, lidar, rows, cols, patch_size=5, pad_mode="wrap")
    X = ScenePatches(hsi, lidar, rows, cols, patch_size=5)
    with pytest.raises(ValueError, match="patch_size must be odd and at most 5"):
        X.crop(7)
    with pytest.raises(TypeError, match="one index"):
        X[:, 0]
    clf = _mmlg(max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="features"):  # the LiDAR band is missing
        clf.predict(ScenePatches(hsi, None, rows, cols, 5))
