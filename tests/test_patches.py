"""Patch extraction, border padding, the batched scene iterator and the scene checks."""

from __future__ import annotations

import numpy as np
import pytest

from sklearn_mmlgnet.patches import (
    border_index,
    check_bands,
    check_scene,
    check_scene_patch_size,
    extract_patches,
    iter_scene_patches,
)


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


@pytest.mark.parametrize("bands, expected", [
    (None, None),
    (slice(1, None, 2), [1, 3, 5]),
    ([5, 0, -2], [5, 0, 4]),
    (np.arange(6) < 4, [0, 1, 2, 3]),
])
def test_check_bands_selects_scene_bands(bands, expected):
    out = check_bands(bands, 6)
    assert out is None if expected is None else out.tolist() == expected


@pytest.mark.parametrize("bands, match", [
    ([0, 6], "bands must index the scene's 6 bands"),
    ([], "bands must be a slice, a non-empty sequence of ints or a boolean mask"),
    ([0.5], "bands must be a slice"),
    (np.ones(4, bool), r"one entry per scene band \(6\); got shape \(4,\)"),
])
def test_check_bands_names_a_bad_selection(bands, match):
    with pytest.raises(ValueError, match=match):
        check_bands(bands, 6)


@pytest.mark.parametrize("mode", ["reflect", "symmetric", "edge", "constant"])
def test_border_index_follows_np_pad(mode):
    n = 5
    idx, valid = border_index(np.arange(-4, n + 4), n, mode)
    padded = np.pad(np.arange(n), 4, mode=mode if mode != "constant" else "edge")
    np.testing.assert_array_equal(idx, padded)
    np.testing.assert_array_equal(valid, (np.arange(-4, n + 4) >= 0) & (np.arange(-4, n + 4) < n))


def test_scene_checks_name_the_argument(scene):
    hsi, lidar = scene
    assert check_scene(hsi, None)[1].shape == (9, 13, 0)
    with pytest.raises(TypeError, match="hsi must hold real numbers"):
        check_scene(hsi.astype(str), lidar)
    with pytest.raises(ValueError, match="at least one band is needed"):
        check_scene(hsi[:, :, :0], None)
    assert check_scene_patch_size(np.int64(17), (9, 13)) == 17
    for bad in (True, 4, 0, 2.0):
        with pytest.raises(ValueError, match="patch_size must be an odd positive int"):
            check_scene_patch_size(bad, (9, 13))
