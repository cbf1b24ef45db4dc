"""Patch extraction, border padding, the batched scene iterator and full-scene prediction."""

from __future__ import annotations

import numpy as np
import pytest

from sklearn_mmlgnet.patches import extract_patches, iter_scene_patches, predict_scene


@pytest.fixture
def scene():
    rng = np.random.RandomState(0)
    return rng.normal(size=(9, 13, 4)).astype(np.float32), rng.normal(size=(9, 13, 2)).astype(np.float32)


def _reference(hsi, lidar, r, c, P, mode):
    cube = np.concatenate([hsi, lidar], axis=-1)
    h = P // 2
    padded = np.pad(cube, ((h, h), (h, h), (0, 0)), mode=mode)
    return padded[r:r + P, c:c + P].transpose(2, 0, 1)


@pytest.mark.parametrize("mode", ["reflect", "symmetric", "edge", "constant"])
def test_patches_match_np_pad_everywhere_including_borders(scene, mode):
    hsi, lidar = scene
    rows, cols = np.indices(hsi.shape[:2])
    rows, cols = rows.ravel(), cols.ravel()
    P = 7
    out = extract_patches(hsi, lidar, rows, cols, P, pad_mode=mode)
    assert out.shape == (len(rows), 6, P, P) and out.dtype == np.float32
    for k in [0, 12, 13 * 4 + 6, len(rows) - 1]:  # corners, edge, centre
        np.testing.assert_array_equal(out[k], _reference(hsi, lidar, rows[k], cols[k], P, mode))


def test_hsi_bands_first_then_lidar_and_centre_pixel(scene):
    hsi, lidar = scene
    p = extract_patches(hsi, lidar, [4], [6], 5)[0]
    np.testing.assert_array_equal(p[:4, 2, 2], hsi[4, 6])
    np.testing.assert_array_equal(p[4:, 2, 2], lidar[4, 6])


def test_lidar_may_be_2d_or_absent(scene):
    hsi, lidar = scene
    assert extract_patches(hsi, lidar[:, :, 0], [0], [0], 3).shape == (1, 5, 3, 3)
    assert extract_patches(hsi, None, [0], [0], 3).shape == (1, 4, 3, 3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(patch_size=4), "odd positive int"),
    (dict(patch_size=19), "too large"),
    (dict(pad_mode="wrap"), "pad_mode must be one of"),
])
def test_bad_arguments(scene, kwargs, match):
    hsi, lidar = scene
    args = dict(patch_size=3, pad_mode="reflect")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        extract_patches(hsi, lidar, [0], [0], **args)


def test_bad_scene_shapes(scene):
    hsi, lidar = scene
    with pytest.raises(ValueError, match=r"hsi must be a cube"):
        extract_patches(hsi[:, :, 0], lidar, [0], [0], 3)
    with pytest.raises(ValueError, match="lidar must have shape"):
        extract_patches(hsi, lidar[:5], [0], [0], 3)
    with pytest.raises(ValueError, match="inside the 9 x 13 scene"):
        extract_patches(hsi, lidar, [9], [0], 3)


@pytest.mark.parametrize("batch_size", [1, 20, 10_000])
def test_scene_iterator_covers_every_pixel_once_with_the_same_patches(scene, batch_size):
    hsi, lidar = scene
    seen = np.zeros(hsi.shape[:2], int)
    for r, c, p in iter_scene_patches(hsi, lidar, 5, batch_size=batch_size):
        seen[r, c] += 1
        np.testing.assert_array_equal(p, extract_patches(hsi, lidar, r, c, 5))
        assert len(r) <= batch_size
    assert (seen == 1).all()


@pytest.mark.parametrize("batch_size", [0, -4, 2.5, True])
def test_scene_iterator_rejects_a_bad_batch_size(scene, batch_size):
    with pytest.raises(ValueError, match=r"batch_size must be a positive integer; got"):
        next(iter_scene_patches(*scene, 3, batch_size=batch_size))


def test_scene_iterator_respects_mask(scene):
    hsi, lidar = scene
    mask = np.zeros(hsi.shape[:2], bool)
    mask[2, 3] = mask[8, 12] = True
    out = [(r, c) for r, c, _ in iter_scene_patches(hsi, lidar, 3, batch_size=13, mask=mask)]
    coords = sorted(zip(np.concatenate([r for r, _ in out]), np.concatenate([c for _, c in out])))
    assert coords == [(2, 3), (8, 12)]


class _BrightnessClassifier:
    classes_ = np.array(["dark", "bright"])

    def predict(self, X):
        return self.classes_[(X[:, 0, X.shape[2] // 2, X.shape[3] // 2] > 0).astype(int)]


def test_predict_scene_writes_every_pixel_with_the_estimators_labels(scene):
    hsi, lidar = scene
    out = predict_scene(_BrightnessClassifier(), hsi, lidar, patch_size=3, batch_size=26,
                        fill_value="none")
    assert out.shape == hsi.shape[:2]
    np.testing.assert_array_equal(out == "bright", hsi[:, :, 0] > 0)
    mask = np.zeros(hsi.shape[:2], bool)
    mask[0] = True
    masked = predict_scene(_BrightnessClassifier(), hsi, lidar, 3, mask=mask, fill_value="none")
    assert (masked[1:] == "none").all() and (masked[0] != "none").all()


def test_predict_scene_proba_patch_path_and_mask(scene):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from sklearn_mmlgnet.patches import predict_scene_proba
    from sklearn_mmlgnet.preprocessing import CenterPixel

    hsi, lidar = scene
    rows, cols = np.indices(hsi.shape[:2]).reshape(2, -1)
    X = extract_patches(hsi, lidar, rows, cols, 3)
    y = (hsi[rows, cols, 0] > 0).astype(int)
    model = make_pipeline(CenterPixel(), LogisticRegression()).fit(X, y)
    proba = predict_scene_proba(model, hsi, lidar, 3, batch_size=7)  # "auto": patch path
    np.testing.assert_allclose(proba.reshape(-1, 2), model.predict_proba(X))
    mask = hsi[:, :, 1] > 0
    masked = predict_scene_proba(model, hsi, lidar, 3, mask=mask)
    assert np.isnan(masked[~mask]).all()
    np.testing.assert_allclose(masked[mask], proba[mask])
    hsi_model = make_pipeline(CenterPixel(), LogisticRegression()).fit(X[:, :4], y)
    np.testing.assert_array_equal(predict_scene(hsi_model, hsi, lidar, 3, bands=slice(0, 4)).ravel(),
                                  hsi_model.predict(X[:, :4]))
