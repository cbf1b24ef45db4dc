"""bench_jasper_labels: the abundance margin is read in the scene's pixel order; the split scores."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from .conftest import SHARED_DATA, load_benchmark, requires_shared

bench = load_benchmark("bench_jasper_labels")


@requires_shared
def test_margin_is_read_in_the_scene_pixel_order():
    from sklearn_mmlgnet.datasets import load_jasper_ridge

    scene = load_jasper_ridge(SHARED_DATA, random_state=0)
    margin = bench.abundance_margin(scene)
    assert margin.shape == scene.labels.shape
    A = scipy.io.loadmat(scene.files["endmembers"])["A"]
    # pixel (row 3, col 70) is column-major index 70 * n_rows + 3
    a = np.sort(A[:, 70 * scene.labels.shape[0] + 3])
    assert margin[3, 70] == a[-1] - a[-2]
    assert ((margin >= 0) & (margin <= 1 + 1e-6)).all() and 0.04 < np.mean(margin < 0.1) < 0.12


def test_split_scores_separate_near_tie_and_clear_pixels():
    y = np.array([1, 1, 2, 2, 3, 3, 1, 2])
    pred = np.array([1, 2, 2, 2, 1, 3, 2, 2])
    # pixels 6 and 7 sit on the bounds: margin == tie is not near-tie, margin == clear is clear
    margin = np.array([0.05, 0.05, 0.5, 0.15, 0.9, 0.9, 0.1, 0.2])
    s = bench.split_scores(y, pred, margin, tie=0.1, clear=0.2)
    assert s["oa"] == pytest.approx(100 * 5 / 8)
    assert s["oa_tie"] == pytest.approx(50)             # pixels 0, 1
    assert s["oa_clear"] == pytest.approx(75)           # pixels 2, 4, 5, 7
    assert s["err_tie"] == pytest.approx(100 / 3)       # errors: pixels 1 (near-tie), 4, 6
    assert s["clear_errors"] == 1 and s["n"] == 8       # pixel 4


def test_linear_separability_tells_a_linear_rule_from_one_it_cannot_be():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 2))
    halves = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)    # one hyperplane
    xor = ((X[:, 0] > 0) ^ (X[:, 1] > 0)).astype(int)     # no hyperplane does better than ~half
    assert bench.linear_separability(X, halves) > 98
    assert bench.linear_separability(X, xor) < 70
