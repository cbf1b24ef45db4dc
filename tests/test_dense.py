"""Dense full-scene prediction gives what patch-by-patch prediction gives, pixel for pixel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from sklearn_mmlgnet import MMLGNetClassifier, SDHSIClassifier
from sklearn_mmlgnet.dense import (
    DenseNotSupportedError,
    _tile_shape,
    dense_support,
    iter_dense_proba,
    supports_dense,
)
from sklearn_mmlgnet.nn import MMLGNetModule, SDHSINet
from sklearn_mmlgnet.patches import extract_patches, predict_scene, predict_scene_proba
from sklearn_mmlgnet.preprocessing import (
    BandStandardScaler,
    CenterPixel,
    SpectralNormalizer,
    SpectralPCA,
)

N_HSI, P = 5, 7
# A spectral path as small as the encoders (the default (256, 128) would dwarf them).
TINY = dict(text_embeddings=np.eye(3, 4), hsi_channels=(4, 8), lidar_channels=(2, 4),
            fusion_dim=8, spectral_channels=(8,), max_epochs=3, lr=1e-2, random_state=0)
SD_TINY = dict(conv3d_channels=(3, 4), spectral_kernels=(3, 2), conv2d_channels=6, hidden=8,
               max_epochs=2, lr=1e-2, random_state=0)


@pytest.fixture(scope="module")
def scene():
    rng = np.random.RandomState(0)
    H, W = 13, 17
    hsi = rng.normal(size=(H, W, N_HSI)).astype(np.float32) * 2 + 3
    lidar = rng.normal(size=(H, W, 1)).astype(np.float32)
    rows, cols = np.indices((H, W)).reshape(2, -1)
    y = (hsi[rows, cols, 0] > 3).astype(int) + (lidar[rows, cols, 0] > 0.5)
    return hsi, lidar, rows, cols, y


def _assert_same(dense, ref, H, W, atol=1e-4):
    """Same label at every pixel (borders included) and probabilities within atol."""
    ref = ref.reshape(H, W, -1)
    assert dense.shape == ref.shape
    np.testing.assert_array_equal(dense.argmax(-1), ref.argmax(-1))
    np.testing.assert_allclose(dense, ref, rtol=0, atol=atol)
    np.testing.assert_allclose(dense.sum(-1), 1, atol=1e-12)


MODELS = {
    "hsi+lidar, text head": lambda: MMLGNetClassifier(**TINY),
    "hsi+lidar, text head wider than the fused features": lambda: MMLGNetClassifier(
        **dict(TINY, text_embeddings=np.random.RandomState(1).normal(size=(3, 16)),
               learn_temperature=True)),
    "hsi+lidar, cross_entropy head": lambda: MMLGNetClassifier(loss="cross_entropy", **TINY),
    "hsi+lidar, self-distillation, 3 vs 1 stages": lambda: MMLGNetClassifier(
        **dict(TINY, hsi_channels=(4, 6, 8), lidar_channels=(3,), self_distillation=True)),
    "hsi+lidar, self-distillation, 3 vs 1 stages, mean of heads": lambda: MMLGNetClassifier(
        **dict(TINY, hsi_channels=(4, 6, 8), lidar_channels=(3,), self_distillation=True,
               predict_heads="mean")),
    "hsi+lidar, self-distillation, cross_entropy head, mean of heads": lambda: MMLGNetClassifier(
        **dict(TINY, hsi_channels=(4, 6), lidar_channels=(3, 5), self_distillation=True,
               loss="cross_entropy", predict_heads="mean")),
    "hsi+lidar, self-distillation, dot, mean of heads": lambda: MMLGNetClassifier(
        **dict(TINY, hsi_channels=(4, 6), lidar_channels=(3, 5), self_distillation=True,
               similarity="dot", predict_heads="mean")),
    "hsi only": lambda: MMLGNetClassifier(n_lidar_bands=0, **TINY),
    "hsi+lidar, no spectral path": lambda: MMLGNetClassifier(**dict(TINY, spectral_channels=())),
    "hsi+lidar, two-stage spectral path": lambda: MMLGNetClassifier(
        **dict(TINY, spectral_channels=(6, 5))),
    "hsi+lidar, text adapter, text wider than the fused features": lambda: MMLGNetClassifier(
        **dict(TINY, text_embeddings=np.random.RandomState(1).normal(size=(3, 16)),
               text_adapter=1.0)),
    "hsi+lidar, dot similarity, text wider than the fused features": lambda: MMLGNetClassifier(
        **dict(TINY, text_embeddings=np.random.RandomState(1).normal(size=(3, 16)),
               similarity="dot")),
    "hsi+lidar, no class bias, text wider than the fused features": lambda: MMLGNetClassifier(
        **dict(TINY, text_embeddings=np.random.RandomState(1).normal(size=(3, 16)),
               class_bias=False)),
    "hsi+lidar, dot, no class bias, self-distillation": lambda: MMLGNetClassifier(
        **dict(TINY, hsi_channels=(4, 6), lidar_channels=(3,), self_distillation=True,
               similarity="dot", class_bias=False, predict_heads="mean")),
    "sdhsi": lambda: SDHSIClassifier(**SD_TINY),  # the mean of every head (predict_heads)
    "sdhsi, final head only": lambda: SDHSIClassifier(predict_heads="final", **SD_TINY),
    "sdhsi, linear students on stages 2 and 3": lambda: SDHSIClassifier(
        **dict(SD_TINY, student_hidden=0, student_stages=(2, 3))),
    "sdhsi without self-distillation": lambda: SDHSIClassifier(self_distillation=False, **SD_TINY),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_dense_equals_patch_prediction_at_borders_and_interior(scene, name):
    hsi, lidar, rows, cols, y = scene
    H, W = hsi.shape[:2]
    hsi_only = "hsi only" in name or "sdhsi" in name
    X = extract_patches(hsi, None if hsi_only else lidar, rows, cols, P)
    clf = MODELS[name]().fit(X, y)
    assert supports_dense(clf, P)
    dense = predict_scene_proba(clf, hsi, None if hsi_only else lidar, P, method="dense")
    _assert_same(dense, clf.predict_proba(X), H, W)
    labels = predict_scene(clf, hsi, None if hsi_only else lidar, P)  # "auto" takes the dense path
    np.testing.assert_array_equal(labels.ravel(), clf.predict(X))


@pytest.mark.parametrize("name", ["hsi+lidar, text head", "hsi+lidar, self-distillation, 3 vs 1 stages",
                                  "hsi+lidar, self-distillation, 3 vs 1 stages, mean of heads",
                                  "sdhsi"])
@pytest.mark.parametrize("pad_mode", ["reflect", "constant"])
def test_dense_test_time_augmentation_equals_the_patch_path(scene, name, pad_mode):
    # A non-square scene and tiles: the quarter turns swap each tile's rows and columns.
    hsi, lidar, rows, cols, y = scene
    H, W = hsi.shape[:2]
    hsi_only = "sdhsi" in name
    X = extract_patches(hsi, None if hsi_only else lidar, rows, cols, P, pad_mode=pad_mode)
    clf = MODELS[name]().fit(X, y)
    plain = predict_scene_proba(clf, hsi, None if hsi_only else lidar, P, pad_mode=pad_mode,
                                method="dense")
    clf.set_params(test_time_augment=True)
    ref = clf.predict_proba(X)
    dense = predict_scene_proba(clf, hsi, None if hsi_only else lidar, P, pad_mode=pad_mode,
                                method="dense", tile_size=(4, 9))
    _assert_same(dense, ref, H, W)
    assert np.abs(dense - plain).max() > 1e-3  # the symmetries did change the map


@pytest.mark.parametrize("pad_mode", ["symmetric", "edge", "constant"])
def test_dense_follows_every_pad_mode_of_extract_patches(scene, pad_mode):
    hsi, lidar, rows, cols, y = scene
    X = extract_patches(hsi, lidar, rows, cols, P, pad_mode=pad_mode)
    clf = MMLGNetClassifier(**TINY).fit(X, y)
    dense = predict_scene_proba(clf, hsi, lidar, P, pad_mode=pad_mode, method="dense")
    _assert_same(dense, clf.predict_proba(X), *hsi.shape[:2])


def test_larger_scene_patches_are_cropped_to_the_fitted_size(scene):
    hsi, lidar, rows, cols, y = scene
    clf = MMLGNetClassifier(patch_size=5, **TINY).fit(extract_patches(hsi, lidar, rows, cols, 9), y)
    ref = clf.predict_proba(extract_patches(hsi, lidar, rows, cols, 9))
    _assert_same(predict_scene_proba(clf, hsi, lidar, 9, method="dense"), ref, *hsi.shape[:2])
    with pytest.raises(ValueError, match="patch_size=3 is smaller than the model's patch_size=5"):
        predict_scene(clf, hsi, lidar, 3, method="dense")


@pytest.mark.parametrize("tile_size", [1, 4, (2, 9), (100, 3)])
def test_any_tiling_gives_the_same_map(scene, tile_size):
    hsi, lidar, rows, cols, y = scene
    clf = MMLGNetClassifier(**TINY).fit(extract_patches(hsi, lidar, rows, cols, P), y)
    ref = predict_scene_proba(clf, hsi, lidar, P, method="dense")
    out = predict_scene_proba(clf, hsi, lidar, P, method="dense", tile_size=tile_size)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)


def test_mask_writes_only_its_pixels(scene):
    hsi, lidar, rows, cols, y = scene
    clf = MMLGNetClassifier(**TINY).fit(extract_patches(hsi, lidar, rows, cols, P), y)
    mask = np.zeros(hsi.shape[:2], bool)
    mask[0, 0] = mask[5, 3:9] = mask[12, 16] = True
    full = predict_scene(clf, hsi, lidar, P, method="dense")
    out = predict_scene(clf, hsi, lidar, P, mask=mask, fill_value=-1, method="dense", tile_size=4)
    np.testing.assert_array_equal(out[mask], full[mask])
    assert (out[~mask] == -1).all()
    proba = predict_scene_proba(clf, hsi, lidar, P, mask=mask, method="dense")
    assert np.isnan(proba[~mask]).all() and not np.isnan(proba[mask]).any()


def test_tiles_do_not_grow_with_the_scene():
    module = MMLGNetModule(144, 1, torch.eye(15, 32))
    small = _tile_shape(None, module, 145, 349, 1905, 11)
    assert _tile_shape(None, module, 145, 10 * 349, 1905, 11) == small
    rows, cols = small
    assert rows * cols * (145 + 2 * 64 + 2 * 128) * 4 < 400 * 2**20  # a tile's maps stay small


def test_iterator_yields_bounded_tiles(scene):
    hsi, lidar, rows, cols, y = scene
    clf = MMLGNetClassifier(**TINY).fit(extract_patches(hsi, lidar, rows, cols, P), y)
    seen = np.zeros(hsi.shape[:2], int)
    for r0, c0, proba in iter_dense_proba(clf, hsi, lidar, P, tile_size=(5, 6)):
        assert proba.shape[0] <= 5 and proba.shape[1] <= 6 and proba.shape[2] == 3
        seen[r0:r0 + proba.shape[0], c0:c0 + proba.shape[1]] += 1
    assert (seen == 1).all()


def test_pipeline_of_band_wise_transformers_is_predicted_densely(scene):
    hsi, lidar, rows, cols, y = scene
    X = extract_patches(hsi, lidar, rows, cols, P)
    pipe = make_pipeline(SpectralNormalizer(n_lidar_bands=1), BandStandardScaler(),
                         SpectralPCA(n_components=3, n_lidar_bands=1, random_state=0),
                         MMLGNetClassifier(**TINY)).fit(X, y)
    transformers, clf = dense_support(pipe, P)
    assert len(transformers) == 3 and clf is pipe[-1]
    dense = predict_scene_proba(pipe, hsi, lidar, P, method="dense")
    _assert_same(dense, pipe.predict_proba(X), *hsi.shape[:2])
    search = GridSearchCV(pipe, {"mmlgnetclassifier__lr": [1e-2]}, cv=2).fit(X, y)
    assert supports_dense(search, P)
    np.testing.assert_array_equal(predict_scene(search, hsi, lidar, P).ravel(), search.predict(X))


def test_bands_selects_the_models_bands_on_both_paths(scene):
    hsi, lidar, rows, cols, y = scene
    X = extract_patches(hsi, lidar, rows, cols, P)
    clf = MMLGNetClassifier(n_lidar_bands=0, **TINY).fit(X[:, :N_HSI], y)
    ref = clf.predict_proba(X[:, :N_HSI])
    for bands in (slice(0, N_HSI), list(range(N_HSI)), np.arange(N_HSI + 1) < N_HSI):
        _assert_same(predict_scene_proba(clf, hsi, lidar, P, bands=bands, method="dense"), ref,
                     *hsi.shape[:2])
        np.testing.assert_array_equal(
            predict_scene(clf, hsi, lidar, P, bands=bands, method="patches").ravel(),
            clf.predict(X[:, :N_HSI]))
    with pytest.raises(ValueError, match="expecting 5 features"):
        predict_scene(clf, hsi, lidar, P, method="dense")
    with pytest.raises(ValueError, match="bands must index the scene's 6 bands"):
        predict_scene(clf, hsi, lidar, P, bands=[0, 7])


def test_auto_falls_back_to_patches_and_dense_says_why(scene, monkeypatch):
    hsi, lidar, rows, cols, y = scene
    X = extract_patches(hsi, lidar, rows, cols, P)
    baseline = make_pipeline(CenterPixel(), LogisticRegression()).fit(X, y)
    np.testing.assert_array_equal(predict_scene(baseline, hsi, lidar, P).ravel(),
                                  baseline.predict(X))
    with pytest.raises(DenseNotSupportedError, match="'centerpixel' .CenterPixel. is not a band"):
        predict_scene(baseline, hsi, lidar, P, method="dense")
    with pytest.raises(DenseNotSupportedError, match="LogisticRegression is not an MMLGNet"):
        predict_scene(baseline[-1], hsi, lidar, P, method="dense")

    clf = MMLGNetClassifier(**TINY).fit(X, y)
    import sklearn_mmlgnet.dense as dense_mod

    def no_dense(*a, **k):
        raise AssertionError("the dense path ran")

    with monkeypatch.context() as m:  # a transform= forces the patch path
        m.setattr(dense_mod, "iter_dense_proba", no_dense)
        out = predict_scene(clf, hsi, lidar, P, transform=lambda p: p)
        np.testing.assert_array_equal(out.ravel(), clf.predict(X))
        predict_scene(clf, hsi, lidar, P, method="patches")
    with pytest.raises(DenseNotSupportedError, match="cannot apply transform="):
        predict_scene(clf, hsi, lidar, P, transform=lambda p: p, method="dense")
    with pytest.raises(ValueError, match=r"method must be one of \('auto', 'dense', 'patches'\)"):
        predict_scene(clf, hsi, lidar, P, method="fast")


def test_patches_below_the_receptive_field_are_padded_and_predicted_patch_by_patch(scene):
    hsi, lidar, rows, cols, y = scene
    X3 = extract_patches(hsi, lidar, rows, cols, 3)
    clf = MMLGNetClassifier(**TINY).fit(X3, y)  # receptive field 5 > 3
    assert not supports_dense(clf, 3)
    with pytest.raises(DenseNotSupportedError, match="receptive field"):
        predict_scene(clf, hsi, lidar, 3, method="dense")
    np.testing.assert_array_equal(predict_scene(clf, hsi, lidar, 3).ravel(), clf.predict(X3))
    # The network replicate-pads such patches itself: the same as padding them first.
    module = clf.net_.module_.eval()
    x = torch.as_tensor(X3[:4])
    with torch.no_grad():
        np.testing.assert_allclose(module(x), module(F.pad(x, (1, 1, 1, 1), mode="replicate")),
                                   atol=1e-6)
        assert module(x[:, :, 1:2, 1:2]).shape == (4, 3)  # single pixels (P = 1) too
    net = SDHSINet(N_HSI, 2).eval()
    assert net.receptive_field == 9 and net(torch.zeros(2, N_HSI, 1, 1)).shape == (2, 2)


def test_bfloat16_autocast_stays_close(scene):
    hsi, lidar, rows, cols, y = scene
    X = extract_patches(hsi, lidar, rows, cols, P)
    clf = MMLGNetClassifier(**TINY).fit(X, y)
    ref = clf.predict_proba(X).reshape(*hsi.shape[:2], -1)
    out = predict_scene_proba(clf, hsi, lidar, P, method="dense", autocast=True)
    # bfloat16 keeps 8 bits of mantissa: probabilities agree to about 1e-2.
    np.testing.assert_allclose(out, ref, rtol=0, atol=3e-2)
    with pytest.raises(ValueError, match="autocast must be"):
        predict_scene(clf, hsi, lidar, P, method="dense", autocast="yes")


def test_progress_bar_on_request(scene, capsys):
    hsi, lidar, rows, cols, y = scene
    clf = MMLGNetClassifier(**TINY).fit(extract_patches(hsi, lidar, rows, cols, P), y)
    predict_scene(clf, hsi, lidar, P, progress=True)
    assert "dense prediction" in capsys.readouterr().err
    predict_scene(clf, hsi, lidar, P)
    assert capsys.readouterr().err == ""


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_dense_on_cuda_matches_patches(scene):
    hsi, lidar, rows, cols, y = scene
    X = extract_patches(hsi, lidar, rows, cols, P)
    clf = MMLGNetClassifier(device="cuda", **TINY).fit(X, y)
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:  # float32 proper (no TF32): the same 1e-4 as on the CPU
        ref = clf.predict_proba(X)
        _assert_same(predict_scene_proba(clf, hsi, lidar, P, method="dense"), ref, *hsi.shape[:2])
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    out = predict_scene_proba(clf, hsi, lidar, P, method="dense", autocast=True)
    np.testing.assert_allclose(out, ref.reshape(out.shape), rtol=0, atol=3e-2)  # bfloat16
