"""Whole-scene prediction: both paths give the estimator's own answer, pixel for pixel."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

import sklearn_mmlgnet.prediction as prediction
from sklearn_mmlgnet import MMLGNetClassifier, SDHSIClassifier
from sklearn_mmlgnet.patches import extract_patches
from sklearn_mmlgnet.prediction import (
    DenseNotSupportedError,
    dense_support,
    predict_scene,
    predict_scene_proba,
    supports_dense,
)
from sklearn_mmlgnet.preprocessing import (
    BandStandardScaler,
    CenterPixel,
    SpectralNormalizer,
    SpectralPCA,
)

N_HSI, P = 5, 7
# A spectral path as small as the encoders (the default (256, 128) would dwarf them).
TINY = dict(text_embeddings=np.eye(3, 4), module__hsi_channels=(4, 8),
            module__lidar_channels=(2, 4), module__fusion_dim=8, module__spectral_channels=(8,),
            max_epochs=3, lr=1e-2, random_state=0)
SD_TINY = dict(module__conv3d_channels=(3, 4), module__spectral_kernels=(3, 2),
               module__conv2d_channels=6, module__hidden=8, module__student_hidden=5,
               max_epochs=2, lr=1e-2, random_state=0)
WIDE_TEXT = np.random.RandomState(1).normal(size=(3, 16))
SELF_DISTILLED = dict(TINY, module__hsi_channels=(4, 6, 8), module__lidar_channels=(3,),
                      self_distillation=True, predict_heads="mean")


@pytest.fixture(scope="module")
def scene():
    rng = np.random.RandomState(0)
    H, W = 13, 17
    hsi = rng.normal(size=(H, W, N_HSI)).astype(np.float32) * 2 + 3
    lidar = rng.normal(size=(H, W, 1)).astype(np.float32)
    rows, cols = np.indices((H, W)).reshape(2, -1)
    y = (hsi[rows, cols, 0] > 3).astype(int) + (lidar[rows, cols, 0] > 0.5)
    return hsi, lidar, rows, cols, y


@pytest.fixture(scope="module")
def fitted(scene):
    """One fitted MMLGNet (HSI + LiDAR, 7 x 7 patches) shared by the tests that only read it."""
    hsi, lidar, rows, cols, y = scene
    X = extract_patches(hsi, lidar, rows, cols, P)
    return MMLGNetClassifier(**TINY).fit(X, y), X


def _assert_same(dense, ref, H, W, atol=1e-4):
    """Same label at every pixel (borders included) and probabilities within atol."""
    ref = ref.reshape(H, W, -1)
    assert dense.shape == ref.shape
    np.testing.assert_array_equal(dense.argmax(-1), ref.argmax(-1))
    np.testing.assert_allclose(dense, ref, rtol=0, atol=atol)
    np.testing.assert_allclose(dense.sum(-1), 1, atol=1e-12)


MODELS = {
    "mmlgnet": lambda: MMLGNetClassifier(**TINY),
    "mmlgnet, text wider than the fused features, learnt temperature, dot": lambda:
        MMLGNetClassifier(**dict(TINY, text_embeddings=WIDE_TEXT, learn_temperature=True,
                                 module__similarity="dot")),
    "mmlgnet, cross_entropy head": lambda: MMLGNetClassifier(loss="cross_entropy", **TINY),
    "mmlgnet, self-distillation, 3 vs 1 stages, mean of heads": lambda:
        MMLGNetClassifier(**SELF_DISTILLED),
    "mmlgnet, hsi only": lambda: MMLGNetClassifier(n_lidar_bands=0, **TINY),
    "sdhsi": lambda: SDHSIClassifier(**SD_TINY),  # the mean of every head (predict_heads)
    "sdhsi, final head only": lambda: SDHSIClassifier(predict_heads="final", **SD_TINY),
    "sdhsi without self-distillation": lambda: SDHSIClassifier(self_distillation=False,
                                                               **SD_TINY),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_dense_equals_patch_prediction_at_borders_and_interior(scene, name):
    hsi, lidar, rows, cols, y = scene
    H, W = hsi.shape[:2]
    lidar = None if "hsi only" in name or "sdhsi" in name else lidar
    X = extract_patches(hsi, lidar, rows, cols, P)
    clf = MODELS[name]().fit(X, y)
    assert supports_dense(clf, P)
    dense = predict_scene_proba(clf, hsi, lidar, P, method="dense")
    _assert_same(dense, clf.predict_proba(X), H, W)
    labels = predict_scene(clf, hsi, lidar, P)  # "auto" takes the dense path
    np.testing.assert_array_equal(labels.ravel(), clf.predict(X))


def test_test_time_augmentation_and_heads_are_read_from_the_estimator(scene):
    hsi, lidar, rows, cols, y = scene
    X = extract_patches(hsi, lidar, rows, cols, P, pad_mode="constant")
    clf = MMLGNetClassifier(**SELF_DISTILLED).fit(X, y)
    plain = predict_scene_proba(clf, hsi, lidar, P, pad_mode="constant", method="dense")
    clf.set_params(test_time_augment=True)
    dense = predict_scene_proba(clf, hsi, lidar, P, pad_mode="constant", method="dense",
                                tile_size=(4, 9))
    _assert_same(dense, clf.predict_proba(X), *hsi.shape[:2])
    assert np.abs(dense - plain).max() > 1e-3  # the symmetries did change the map
    final = predict_scene_proba(clf.set_params(predict_heads="final"), hsi, lidar, P,
                                pad_mode="constant", method="dense")
    _assert_same(final, clf.predict_proba(X), *hsi.shape[:2])
    with pytest.raises(ValueError, match="predict_heads must be 'final' or 'mean'; got 'all'"):
        predict_scene(clf.set_params(predict_heads="all"), hsi, lidar, P, method="dense")


def test_larger_scene_patches_are_cropped_to_the_fitted_size(scene):
    hsi, lidar, rows, cols, y = scene
    clf = MMLGNetClassifier(patch_size=5, **TINY).fit(extract_patches(hsi, lidar, rows, cols, 9), y)
    ref = clf.predict_proba(extract_patches(hsi, lidar, rows, cols, 9))
    _assert_same(predict_scene_proba(clf, hsi, lidar, 9, method="dense"), ref, *hsi.shape[:2])
    with pytest.raises(ValueError, match="patch_size=3 is smaller than the model's patch_size=5"):
        predict_scene(clf, hsi, lidar, 3, method="dense")
    with pytest.raises(ValueError, match="patch_size must be an odd positive int; got 6"):
        predict_scene(clf, hsi, lidar, 6)


def test_mask_writes_only_its_pixels(scene, fitted):
    hsi, lidar = scene[:2]
    clf, _ = fitted
    mask = np.zeros(hsi.shape[:2], bool)
    mask[0, 0] = mask[5, 3:9] = mask[12, 16] = True
    full = predict_scene(clf, hsi, lidar, P, method="dense")
    out = predict_scene(clf, hsi, lidar, P, mask=mask, fill_value=-1, method="dense", tile_size=4)
    np.testing.assert_array_equal(out[mask], full[mask])
    assert (out[~mask] == -1).all()
    proba = predict_scene_proba(clf, hsi, lidar, P, mask=mask, method="dense")
    assert np.isnan(proba[~mask]).all() and not np.isnan(proba[mask]).any()
    with pytest.raises(ValueError, match=r"mask must have the scene's shape \(13, 17\)"):
        predict_scene(clf, hsi, lidar, P, mask=mask[:3])


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
    with pytest.raises(ValueError, match="give 6 bands but the estimator was fitted on 5"):
        predict_scene(clf, hsi, lidar, P, method="dense")
    with pytest.raises(ValueError, match="bands must index the scene's 6 bands"):
        predict_scene(clf, hsi, lidar, P, bands=[0, 7])


def test_auto_falls_back_to_patches_and_dense_says_why(scene, fitted, monkeypatch):
    hsi, lidar, rows, cols, y = scene
    clf, X = fitted
    baseline = make_pipeline(CenterPixel(), LogisticRegression()).fit(X, y)
    np.testing.assert_array_equal(predict_scene(baseline, hsi, lidar, P).ravel(),
                                  baseline.predict(X))
    with pytest.raises(DenseNotSupportedError, match="'centerpixel' .CenterPixel. is not a band"):
        predict_scene(baseline, hsi, lidar, P, method="dense")
    with pytest.raises(DenseNotSupportedError, match="LogisticRegression is not an MMLGNet"):
        predict_scene(baseline[-1], hsi, lidar, P, method="dense")

    def no_dense(*a, **k):
        raise AssertionError("the dense path ran")

    with monkeypatch.context() as m:  # a transform= forces the patch path
        m.setattr(prediction, "iter_dense_proba", no_dense)
        out = predict_scene(clf, hsi, lidar, P, transform=lambda p: p)
        np.testing.assert_array_equal(out.ravel(), clf.predict(X))
        predict_scene(clf, hsi, lidar, P, method="patches")
    with pytest.raises(DenseNotSupportedError, match="cannot apply transform="):
        predict_scene(clf, hsi, lidar, P, transform=lambda p: p, method="dense")
    with pytest.raises(ValueError, match=r"method must be one of \('auto', 'dense', 'patches'\)"):
        predict_scene(clf, hsi, lidar, P, method="fast")
    with pytest.raises(NotFittedError):
        predict_scene(MMLGNetClassifier(**TINY), hsi, lidar, P, method="dense")


def test_patches_below_the_receptive_field_are_predicted_patch_by_patch(scene):
    hsi, lidar, rows, cols, y = scene
    X3 = extract_patches(hsi, lidar, rows, cols, 3)
    clf = MMLGNetClassifier(**TINY).fit(X3, y)  # receptive field 5 > 3
    assert not supports_dense(clf, 3)
    with pytest.raises(DenseNotSupportedError, match="receptive field"):
        predict_scene(clf, hsi, lidar, 3, method="dense")
    np.testing.assert_array_equal(predict_scene(clf, hsi, lidar, 3).ravel(), clf.predict(X3))


def test_progress_bar_on_request(scene, fitted, capsys):
    hsi, lidar = scene[:2]
    clf, _ = fitted
    predict_scene(clf, hsi, lidar, P, progress=True)
    assert "dense prediction" in capsys.readouterr().err
    predict_scene(clf, hsi, lidar, P, method="patches", progress=True)
    assert "patch prediction" in capsys.readouterr().err
    predict_scene(clf, hsi, lidar, P)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("method", ["dense", "patches"])
def test_one_model_shared_by_threads_gives_the_sequential_maps(scene, method):
    hsi, lidar, rows, cols, y = scene
    clf = MMLGNetClassifier(**SELF_DISTILLED).fit(extract_patches(hsi, lidar, rows, cols, P), y)
    module = clf.net_.module_
    attributes, state = dict(vars(module)), {k: v.clone() for k, v in module.state_dict().items()}
    expected = predict_scene_proba(clf, hsi, lidar, P, method=method, batch_size=32)
    with ThreadPoolExecutor(4) as pool:
        maps = list(pool.map(lambda _: predict_scene_proba(clf, hsi, lidar, P, method=method,
                                                           batch_size=32), range(8)))
    for out in maps:
        np.testing.assert_array_equal(out, expected)
    # prediction read the model only: same mode, attributes and weights
    assert not module.training and vars(module) == attributes
    assert all(torch.equal(v, state[k]) for k, v in module.state_dict().items())


class _BrightnessClassifier:
    classes_ = np.array(["dark", "bright"])

    def predict(self, X):
        return self.classes_[(X[:, 0, X.shape[2] // 2, X.shape[3] // 2] > 0).astype(int)]


def test_patch_path_writes_every_pixel_with_the_estimators_labels():
    rng = np.random.RandomState(0)
    hsi, lidar = rng.normal(size=(9, 13, 4)), rng.normal(size=(9, 13, 2))
    out = predict_scene(_BrightnessClassifier(), hsi, lidar, patch_size=3, batch_size=26,
                        fill_value="none")
    assert out.shape == hsi.shape[:2]
    np.testing.assert_array_equal(out == "bright", hsi[:, :, 0] > 0)
    mask = np.zeros(hsi.shape[:2], bool)
    mask[0] = True
    masked = predict_scene(_BrightnessClassifier(), hsi, lidar, 3, mask=mask, fill_value="none")
    assert (masked[1:] == "none").all() and (masked[0] != "none").all()


def test_patch_path_probabilities_mask_and_bands():
    rng = np.random.RandomState(0)
    hsi = rng.normal(size=(9, 13, 4)).astype(np.float32)
    lidar = rng.normal(size=(9, 13, 2)).astype(np.float32)
    rows, cols = np.indices(hsi.shape[:2]).reshape(2, -1)
    X = extract_patches(hsi, lidar, rows, cols, 3)
    y = (hsi[rows, cols, 0] > 0).astype(int)
    model = make_pipeline(CenterPixel(), LogisticRegression()).fit(X, y)
    proba = predict_scene_proba(model, hsi, lidar, 3, batch_size=7)  # "auto": patch path
    # float32 features: batches of 7 and one batch round alike to float32 precision
    np.testing.assert_allclose(proba.reshape(-1, 2), model.predict_proba(X), rtol=1e-6)
    mask = hsi[:, :, 1] > 0
    masked = predict_scene_proba(model, hsi, lidar, 3, mask=mask)
    assert np.isnan(masked[~mask]).all()
    np.testing.assert_allclose(masked[mask], proba[mask], rtol=1e-6)
    hsi_model = make_pipeline(CenterPixel(), LogisticRegression()).fit(X[:, :4], y)
    out = predict_scene(hsi_model, hsi, lidar, 3, bands=slice(0, 4))
    np.testing.assert_array_equal(out.ravel(), hsi_model.predict(X[:, :4]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_dense_on_cuda_matches_patches(scene):
    hsi, lidar, rows, cols, y = scene
    X = extract_patches(hsi, lidar, rows, cols, P)
    clf = MMLGNetClassifier(device="cuda", **SELF_DISTILLED).fit(X, y)
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:  # float32 proper (no TF32): the same 1e-4 as on the CPU
        ref = clf.predict_proba(X)
        _assert_same(predict_scene_proba(clf, hsi, lidar, P, method="dense"), ref, *hsi.shape[:2])
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    out = predict_scene_proba(clf, hsi, lidar, P, method="dense", autocast=True)
    np.testing.assert_allclose(out, ref.reshape(out.shape), rtol=0, atol=3e-2)  # bfloat16
