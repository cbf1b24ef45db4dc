"""The tiling engine: a network's dense map equals its patch forward on every pixel's patch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sklearn_mmlgnet.augment import N_SYMMETRIES, dihedral
from sklearn_mmlgnet.dense import (
    DenseNotSupportedError,
    _tile_shape,
    check_dense_network,
    iter_dense_proba,
)
from sklearn_mmlgnet.nn import MMLGNetModule, SDHSINet
from sklearn_mmlgnet.patches import extract_patches
from sklearn_mmlgnet.preprocessing import BandStandardScaler

from .test_nn import _randomize

H, W, N_HSI, P = 13, 17, 5, 7


@pytest.fixture(scope="module")
def scene():
    rng = np.random.RandomState(0)
    hsi = rng.normal(size=(H, W, N_HSI)).astype(np.float32) * 2 + 3
    lidar = rng.normal(size=(H, W, 1)).astype(np.float32)
    return hsi, lidar


NETS = {
    "mmlgnet, students": lambda: MMLGNetModule(
        N_HSI, 1, torch.randn(3, 16, generator=torch.Generator().manual_seed(1)),
        hsi_channels=(4, 6, 8), lidar_channels=(3,), fusion_dim=8, spectral_channels=(8,),
        aux_heads=True),
    "sdhsi": lambda: SDHSINet(N_HSI + 1, 3, conv3d_channels=(3, 4), spectral_kernels=(3, 2),
                              conv2d_channels=6, hidden=8, student_hidden=5),
}


def _reference(net, hsi, lidar, heads="final", tta=False, pad_mode="reflect", bands=None):
    """The patch forward's probabilities on every pixel's patch, as an (H, W, K) map."""
    rows, cols = np.indices(hsi.shape[:2]).reshape(2, -1)
    X = torch.as_tensor(extract_patches(hsi, lidar, rows, cols, P, pad_mode=pad_mode))
    if bands is not None:
        X = X[:, bands]
    with torch.no_grad():
        proba = sum(torch.softmax(net(dihedral(X, k), heads=heads), 1).double()
                    for k in (range(N_SYMMETRIES) if tta else [0]))
    proba = (proba / proba.sum(1, keepdim=True)).numpy()
    return proba.reshape(*hsi.shape[:2], -1)


def _dense_map(net, hsi, lidar, **kw):
    out = np.full(hsi.shape[:2] + (3,), np.nan)
    for r0, c0, p in iter_dense_proba(net, hsi, lidar, P, **kw):
        out[r0:r0 + p.shape[0], c0:c0 + p.shape[1]] = p
    return out


@pytest.mark.parametrize("heads", ["final", "mean"])
@pytest.mark.parametrize("pad_mode", ["reflect", "symmetric", "edge", "constant"])
@pytest.mark.parametrize("name", list(NETS))
def test_dense_map_equals_the_patch_forward_at_borders_and_interior(scene, name, pad_mode, heads):
    net = _randomize(NETS[name]())
    ref = _reference(net, *scene, heads=heads, pad_mode=pad_mode)
    dense = _dense_map(net, *scene, heads=heads, pad_mode=pad_mode)
    np.testing.assert_array_equal(dense.argmax(-1), ref.argmax(-1))
    np.testing.assert_allclose(dense, ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(dense.sum(-1), 1, atol=1e-12)


@pytest.mark.parametrize("name", list(NETS))
def test_test_time_augmentation_is_exact_on_non_square_tiles(scene, name):
    # The quarter turns swap each tile's rows and columns.
    net = _randomize(NETS[name]())
    ref = _reference(net, *scene, heads="mean", tta=True, pad_mode="constant")
    dense = _dense_map(net, *scene, heads="mean", test_time_augment=True, pad_mode="constant",
                       tile_size=(4, 9))
    np.testing.assert_allclose(dense, ref, rtol=0, atol=1e-5)
    plain = _dense_map(net, *scene, heads="mean", pad_mode="constant")
    assert np.abs(dense - plain).max() > 1e-3  # the symmetries did change the map


@pytest.mark.parametrize("tile_size", [1, 4, (2, 9), (100, 3)])
def test_any_tiling_gives_the_same_map(scene, tile_size):
    net = _randomize(NETS["mmlgnet, students"]())
    ref = _dense_map(net, *scene)
    np.testing.assert_allclose(_dense_map(net, *scene, tile_size=tile_size), ref, rtol=0,
                               atol=1e-6)


def test_tiles_cover_the_scene_once_and_a_mask_only_its_pixels(scene):
    net = _randomize(NETS["sdhsi"]())
    seen = np.zeros((H, W), int)
    for r0, c0, proba in iter_dense_proba(net, *scene, P, tile_size=(5, 6)):
        assert proba.shape[0] <= 5 and proba.shape[1] <= 6 and proba.shape[2] == 3
        seen[r0:r0 + proba.shape[0], c0:c0 + proba.shape[1]] += 1
    assert (seen == 1).all()
    mask = np.zeros((H, W), bool)
    mask[0, 0] = mask[5, 3:9] = mask[12, 16] = True
    seen[:] = 0
    for r0, c0, proba in iter_dense_proba(net, *scene, P, mask=mask, tile_size=4):
        seen[r0:r0 + proba.shape[0], c0:c0 + proba.shape[1]] += 1
    assert (seen[mask] == 1).all() and seen.sum() < H * W / 2  # only tiles with masked pixels


def test_bands_and_band_wise_transformers_before_the_network(scene):
    hsi, lidar = scene
    net = _randomize(SDHSINet(3, 3, conv3d_channels=(3,), spectral_kernels=(2,),
                              conv2d_channels=4, hidden=8))
    rows, cols = np.indices((H, W)).reshape(2, -1)
    X = extract_patches(hsi, lidar, rows, cols, P)[:, [4, 0, 5]]
    scaler = BandStandardScaler().fit(X)
    with torch.no_grad():
        ref = torch.softmax(net(torch.as_tensor(scaler.transform(X))), 1).numpy()
    dense = _dense_map(net, hsi, lidar, bands=[4, 0, -1], transformers=[scaler])
    np.testing.assert_allclose(dense.reshape(-1, 3), ref, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="gives 6 bands to the network, but it is expecting 3"):
        _dense_map(net, hsi, lidar)
    with pytest.raises(ValueError, match="bands must index the scene's 6 bands"):
        _dense_map(net, hsi, lidar, bands=[0, 7])


def test_the_module_is_only_read(scene):
    net = _randomize(NETS["mmlgnet, students"]())
    state = {k: v.clone() for k, v in net.state_dict().items()}
    ref = _dense_map(net, *scene, heads="mean")
    net.train()  # the dense forward computes the eval-mode function whatever the mode
    np.testing.assert_array_equal(_dense_map(net, *scene, heads="mean"), ref)
    assert net.training and all(torch.equal(v, state[k]) for k, v in net.state_dict().items())


def test_networks_without_an_exact_dense_forward_are_refused():
    net = NETS["sdhsi"]()
    assert check_dense_network(net, 9) == 9
    match = r"fitted on 7 x 7 patches \(patch_size_=7\); .* receptive field \(9 x 9\)"
    with pytest.raises(DenseNotSupportedError, match=match):
        check_dense_network(SDHSINet(4, 2), 7)
    with pytest.raises(DenseNotSupportedError, match="fitted on 8 x 8 patches"):
        check_dense_network(net, 8)
    with pytest.raises(DenseNotSupportedError, match="Linear, which has no dense forward"):
        check_dense_network(torch.nn.Linear(2, 2), 9)


@pytest.mark.parametrize("kwargs, match", [
    (dict(heads="all"), "heads must be 'final' or 'mean'; got 'all'"),
    (dict(test_time_augment=1), "test_time_augment must be True or False; got 1"),
    (dict(autocast="yes"), "autocast must be False, True"),
    (dict(tile_size=(0, 3)), r"tile_size must be a positive int or a pair of them; got \(0, 3\)"),
    (dict(pad_mode="wrap"), "pad_mode must be one of"),
    (dict(mask=np.ones((2, 2))), r"mask must have the scene's shape \(13, 17\)"),
])
def test_bad_arguments_are_named(scene, kwargs, match):
    with pytest.raises(ValueError, match=match):
        next(iter_dense_proba(NETS["sdhsi"]().eval(), *scene, 9, **kwargs))


def test_tiles_do_not_grow_with_the_scene():
    module = MMLGNetModule(144, 1, torch.eye(15, 32))
    small = _tile_shape(None, module, 349, 1905, 11)
    assert _tile_shape(None, module, 10 * 349, 1905, 11) == small
    rows, cols = small
    assert rows * cols * (145 + 2 * 64 + 2 * 128) * 4 < 400 * 2**20  # a tile's maps stay small
    assert _tile_shape(None, module, 30, 40, 11) == (30, 40)  # a small scene: one tile


def test_bfloat16_autocast_stays_close(scene):
    net = _randomize(NETS["mmlgnet, students"]())
    ref = _dense_map(net, *scene)
    # bfloat16 keeps 8 bits of mantissa: probabilities agree to about 1e-2.
    np.testing.assert_allclose(_dense_map(net, *scene, autocast=True), ref, rtol=0, atol=3e-2)


def test_progress_bar_on_request(scene, capsys):
    net = NETS["sdhsi"]().eval()
    list(iter_dense_proba(net, *scene, 9, progress=True))
    assert "dense prediction" in capsys.readouterr().err
    list(iter_dense_proba(net, *scene, 9))
    assert capsys.readouterr().err == ""
