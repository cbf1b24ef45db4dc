"""Per-class sampling, the Trento standard counts, spatially disjoint splits."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import maximum_filter
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from sklearn_mmlgnet import CenterPixel
from sklearn_mmlgnet.model_selection import (
    TRENTO_TRAIN_COUNTS,
    SpatialBlockKFold,
    sample_per_class,
    spatially_disjoint_split,
    trento_standard_split,
)

from .conftest import SHARED_DATA, requires_shared


def _labels(seed=0, shape=(60, 80), n_classes=4):
    rng = np.random.RandomState(seed)
    lab = rng.randint(0, n_classes + 1, size=shape)
    return lab


def test_sample_per_class_counts_fraction_and_repeatability():
    lab = _labels()
    tr, te = sample_per_class(lab, n_per_class=10, random_state=0)
    assert all(((lab == c) & tr).sum() == 10 for c in range(1, 5))
    assert not (tr & te).any() and ((tr | te) == (lab > 0)).all()
    tr2, _ = sample_per_class(lab, n_per_class=10, random_state=0)
    np.testing.assert_array_equal(tr, tr2)
    trf, _ = sample_per_class(lab, fraction=0.05, random_state=1)
    for c in range(1, 5):
        assert ((lab == c) & trf).sum() == round(0.05 * (lab == c).sum())
    with pytest.raises(ValueError, match="exactly one"):
        sample_per_class(lab)
    with pytest.raises(ValueError, match="fraction must be"):
        sample_per_class(lab, fraction=1.5)


@requires_shared
def test_trento_standard_split_exact_counts_on_the_real_ground_truth():
    from sklearn_mmlgnet.datasets._base import read_mat

    labels = read_mat(SHARED_DATA / "trento_partial" / "allgrd.mat", "mask_test").astype(int)
    tr, te = trento_standard_split(labels, random_state=0)
    assert tr.sum() == 819 and te.sum() == 29395
    for c, n in TRENTO_TRAIN_COUNTS.items():
        assert ((labels == c) & tr).sum() == n


def _patch_overlap(tr, te, P):
    """True if some training patch shares a pixel with some test patch."""
    h = P // 2
    grow = lambda m: maximum_filter(m.astype(np.uint8), size=2 * h + 1, mode="constant") > 0
    return bool((grow(tr) & grow(te)).any())


@pytest.mark.parametrize("P", [5, 11])
def test_spatially_disjoint_split_has_no_patch_overlap(P):
    lab = np.kron(_labels(shape=(12, 16)), np.ones((8, 8), int))  # parcels, 96 x 128
    tr, te = spatially_disjoint_split(lab, patch_size=P, block_size=24, test_size=0.5, random_state=0)
    assert tr.any() and te.any()
    assert not (tr & te).any()
    assert not _patch_overlap(tr, te, P)
    # a random per-class split of the same map does overlap: that is the leak avoided
    rtr, rte = sample_per_class(lab, fraction=0.3, random_state=0)
    assert _patch_overlap(rtr, rte, P)
    frac = te.sum() / (lab > 0).sum()
    assert 0.3 < frac < 0.7


def test_spatial_block_kfold_is_a_cv_splitter_without_overlap():
    r, c = np.indices((48, 48))
    r, c = r.ravel(), c.ravel()
    cv = SpatialBlockKFold(r, c, n_splits=3, block_size=12, patch_size=5, random_state=0)
    folds = list(cv.split(r))
    assert len(folds) == 3
    assert sorted(np.concatenate([te for _, te in folds]).tolist()) == list(range(len(r)))
    for tr, te in folds:
        grid_tr = np.zeros((48, 48), bool)
        grid_te = np.zeros((48, 48), bool)
        grid_tr[r[tr], c[tr]] = True
        grid_te[r[te], c[te]] = True
        assert not _patch_overlap(grid_tr, grid_te, 5)
    # usable as cv= in cross_val_score
    X = np.random.RandomState(0).normal(size=(len(r), 3, 1, 1))
    y = (r > 24).astype(int)
    scores = cross_val_score(make_pipeline(CenterPixel(), RandomForestClassifier(5, random_state=0)),
                             X, y, cv=cv)
    assert scores.shape == (3,)
    with pytest.raises(ValueError, match="more than the"):
        list(SpatialBlockKFold(r, c, n_splits=50, block_size=12).split(r))


def _rare_class_map():
    """64 x 64 map of class 1 with a 4 x 4 patch of class 2 inside one 16 px block."""
    lab = np.ones((64, 64), int)
    lab[20:24, 36:40] = 2
    return lab


def test_spatially_disjoint_split_keeps_a_rare_class_in_training():
    lab = _rare_class_map()
    for seed in range(3):
        with pytest.warns(UserWarning, match=r"class\(es\) \[2\] have no test pixel"):
            tr, te = spatially_disjoint_split(lab, patch_size=5, block_size=16, random_state=seed)
        assert ((lab == 2) & tr).sum() == 16  # before: the block went to test, 0 training pixels
        assert ((lab == 1) & tr).any() and ((lab == 1) & te).any()
        assert not _patch_overlap(tr, te, 5)
    # min_train=0 is the unguarded split: the rare block lands in the test set
    tr0, _ = spatially_disjoint_split(lab, patch_size=5, block_size=16, min_train=0, random_state=0)
    assert ((lab == 2) & tr0).sum() == 0


def test_spatially_disjoint_split_min_train_counts_and_errors():
    lab = np.kron(_labels(shape=(12, 16)), np.ones((8, 8), int))
    tr, te = spatially_disjoint_split(lab, patch_size=5, block_size=24, min_train=300, random_state=0)
    assert all(((lab == c) & tr).sum() >= 300 for c in range(1, 5))
    assert not _patch_overlap(tr, te, 5)
    with pytest.raises(ValueError, match=r"class 2 has 16 labelled pixels, fewer than min_train=20"):
        spatially_disjoint_split(_rare_class_map(), patch_size=5, block_size=16, min_train=20)
    with pytest.raises(ValueError, match="min_train must be an int >= 0; got -1"):
        spatially_disjoint_split(lab, min_train=-1)


def _fold_blocks(r, c, y, **kw):
    """Folds and the blocks (16 px) of each fold's test set."""
    cv = SpatialBlockKFold(r, c, n_splits=3, block_size=16, patch_size=3, random_state=0, **kw)
    return list(cv.split(r, y))


def test_spatial_block_kfold_gives_every_fold_training_samples_of_every_class():
    r, c = np.indices((64, 64))
    r, c = r.ravel(), c.ravel()
    blocks = (r // 16) * 4 + c // 16
    # Find two blocks that the unguarded dealing puts in the same test fold ...
    folds0 = _fold_blocks(r, c, None, min_train=0)
    same = np.unique(blocks[folds0[0][1]])[:2]
    # ... and put a rare class (a 4 x 4 patch) in the middle of each.
    y = np.zeros(len(r), int)
    for b in same:
        y[(blocks == b) & (r % 16 // 4 == 1) & (c % 16 // 4 == 1)] = 1
    unguarded = _fold_blocks(r, c, y, min_train=0)
    assert min((y[tr] == 1).sum() for tr, _ in unguarded) == 0  # the defect: a fold without class 1
    folds = _fold_blocks(r, c, y)
    assert all((y[tr] == 1).sum() >= 1 and (y[tr] == 0).sum() >= 1 for tr, _ in folds)
    assert sorted(np.concatenate([te for _, te in folds]).tolist()) == list(range(len(r)))
    for tr, te in folds:
        g_tr, g_te = np.zeros((64, 64), bool), np.zeros((64, 64), bool)
        g_tr[r[tr], c[tr]] = g_te[r[te], c[te]] = True
        assert not _patch_overlap(g_tr, g_te, 3)
    # class labels of any kind; a class in a single block cannot be in two folds
    y_one = np.where((blocks == same[0]) & (r % 16 // 4 == 1), "Roads", "Woods")
    with pytest.raises(ValueError, match=r"class 'Roads' cannot give every fold min_train=1"):
        _fold_blocks(r, c, y_one)
    with pytest.raises(ValueError, match="y has 3 samples"):
        _fold_blocks(r, c, y[:3])


def test_spatially_disjoint_split_names_the_class_when_the_test_set_would_vanish():
    # 30 x 30 px, patch 11: a test block's buffer covers almost the whole scene.
    lab = np.ones((30, 30), int)
    lab[:, 15:] = 2
    tr, te = spatially_disjoint_split(lab, patch_size=11, block_size=10, min_train=100, random_state=0)
    assert ((lab == 1) & tr).sum() >= 100 and ((lab == 2) & tr).sum() >= 100 and te.any()
    with pytest.raises(ValueError, match=r"class 1 cannot get min_train=400 training pixels while any test"):
        spatially_disjoint_split(lab, patch_size=11, block_size=10, min_train=400, random_state=0)
