"""Transformers for patch arrays, alone and in Pipelines."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from sklearn_mmlgnet import (
    BandStandardScaler,
    CenterPixel,
    MMLGNetClassifier,
    SpectralNormalizer,
    SpectralPCA,
)

from .conftest import make_patches


def test_band_standard_scaler_per_channel():
    X = np.random.RandomState(0).normal(3, 5, size=(20, 4, 5, 5)).astype(np.float32)
    X[:, 2] *= 10
    Xt = BandStandardScaler().fit(X).transform(X)
    assert Xt.shape == X.shape and Xt.dtype == np.float32
    np.testing.assert_allclose(Xt.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(Xt.std(axis=(0, 2, 3)), 1, atol=1e-4)
    # 2-D input (single pixels) stays 2-D
    assert BandStandardScaler().fit_transform(X[:, :, 2, 2]).shape == (20, 4)
    with pytest.raises(ValueError, match="X has 3 features, but BandStandardScaler is expecting 4"):
        BandStandardScaler().fit(X).transform(X[:, :3])


def test_band_standard_scaler_fit_takes_little_memory_beyond_x(monkeypatch):
    import tracemalloc

    import sklearn_mmlgnet.preprocessing as pp

    monkeypatch.setattr(pp, "_CHUNK_BYTES", 1 << 19)  # chunks of 512 KiB of float64
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 24, 9, 9), dtype=np.float32)  # 3.1 MB
    X *= rng.uniform(0.5, 50, size=(1, 24, 1, 1)).astype(np.float32)
    X += rng.uniform(-100, 1e4, size=(1, 24, 1, 1)).astype(np.float32)

    def peak_of(fn):
        tracemalloc.start()
        try:
            out = fn()
            return out, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    scaler, peak = peak_of(lambda: BandStandardScaler().fit(X))
    assert peak < 0.3 * X.nbytes, (peak, X.nbytes)  # a float64 copy of X was 2 x X.nbytes
    # the statistics numpy takes over the whole array in float64, for patches and pixels
    for Xi, axes in ((X, (0, 2, 3)), (X[:, :, 4, 4], 0)):
        scaler = BandStandardScaler().fit(Xi)
        np.testing.assert_allclose(scaler.mean_, Xi.mean(axis=axes, dtype=np.float64),
                                   rtol=1e-12)
        np.testing.assert_allclose(scaler.scale_, Xi.std(axis=axes, dtype=np.float64),
                                   rtol=1e-10)
    # transform allocates its output and no second X-sized temporary
    Xt, peak = peak_of(lambda: scaler.fit(X).transform(X))
    assert Xt.dtype == np.float32 and peak < 1.3 * X.nbytes, (peak, X.nbytes)


def test_spectral_pca_reduces_hsi_and_keeps_lidar():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(30, 11, 3, 3)).astype(np.float32)
    pca = SpectralPCA(n_components=4, n_lidar_bands=2, random_state=0).fit(X)
    Xt = pca.transform(X)
    assert Xt.shape == (30, 6, 3, 3) and pca.n_features_out_ == 6
    np.testing.assert_array_equal(Xt[:, 4:], X[:, 9:])  # LiDAR untouched
    # the components are the PCA of every HSI pixel
    pixels = np.moveaxis(X[:, :9], 1, -1).reshape(-1, 9)
    np.testing.assert_allclose(np.moveaxis(Xt[:, :4], 1, -1).reshape(-1, 4),
                               pca.pca_.transform(pixels), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="n_lidar_bands=11"):
        SpectralPCA(n_lidar_bands=11).fit(X)


def test_spectral_normalizer_scales_each_pixels_hsi_spectrum_and_keeps_lidar():
    rng = np.random.RandomState(0)
    X = rng.uniform(0.01, 0.9, size=(6, 7, 3, 3)).astype(np.float32)   # 5 HSI + 2 LiDAR
    X[2, :5, 1, 0] = 0                                                 # a pixel without signal
    shaded = X.copy()
    shaded[:, :5] *= rng.uniform(0.2, 3, size=(6, 1, 3, 3)).astype(np.float32)  # per pixel
    norm = SpectralNormalizer(n_lidar_bands=2).fit(X)
    Xt = norm.transform(X)
    assert Xt.shape == X.shape and Xt.dtype == np.float32 and norm.n_hsi_bands_ == 5
    lit = X[:, :5].any(axis=1)
    np.testing.assert_allclose(np.linalg.norm(Xt[:, :5], axis=1)[lit], 1, rtol=1e-5)
    assert (Xt[2, :5, 1, 0] == 0).all()
    np.testing.assert_array_equal(Xt[:, 5:], X[:, 5:])                 # LiDAR untouched
    # brightness drops out, the spectrum's shape stays
    np.testing.assert_allclose(norm.transform(shaded), Xt, rtol=1e-5, atol=1e-7)
    ref = X[4, :5, 2, 1] / np.linalg.norm(X[4, :5, 2, 1])
    np.testing.assert_allclose(Xt[4, :5, 2, 1], ref, rtol=1e-6)
    # the other norms; single pixels (2-D) stay 2-D and match the patches' pixels
    l1 = SpectralNormalizer("l1", n_lidar_bands=2).fit_transform(X)
    np.testing.assert_allclose(l1[:, :5].sum(axis=1)[lit], 1, rtol=1e-5)
    mx = SpectralNormalizer("max", n_lidar_bands=2).fit_transform(X)
    np.testing.assert_allclose(np.abs(mx[:, :5]).max(axis=1)[lit], 1, rtol=1e-6)
    np.testing.assert_allclose(norm.transform(X[:, :, 1, 1]), Xt[:, :, 1, 1], rtol=1e-6)


@pytest.mark.parametrize("params, match", [
    (dict(norm="l3"), "The 'norm' parameter of SpectralNormalizer must be a str among .* Got 'l3'"),
    (dict(n_lidar_bands=7), "n_lidar_bands=7"),
    (dict(n_lidar_bands=-1), "The 'n_lidar_bands' parameter of SpectralNormalizer must be an int "
                             r"in the range \[0, inf\). Got -1 instead."),
])
def test_spectral_normalizer_names_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        SpectralNormalizer(**params).fit(np.ones((3, 7, 3, 3)))


def test_spectral_pca_feeds_the_classifier_with_the_new_band_count():
    X, y = make_patches(n_hsi=12, n_lidar=1)
    pipe = make_pipeline(SpectralPCA(n_components=5, n_lidar_bands=1, random_state=0),
                         MMLGNetClassifier(n_lidar_bands=1, text_embeddings=np.eye(3, 8),
                                           module__hsi_channels=(8,), module__lidar_channels=(4,),
                                           module__fusion_dim=8, max_epochs=3, random_state=0))
    pipe.fit(X, y)
    clf = pipe[-1]
    assert clf.n_features_in_ == 6 and clf.n_hsi_bands_ == 5


def test_center_pixel_baseline_on_the_same_patches():
    X, y = make_patches(n_per_class=30)
    np.testing.assert_array_equal(CenterPixel().fit_transform(X), X[:, :, 2, 2])
    scores = cross_val_score(make_pipeline(CenterPixel(), StandardScaler(), SVC()), X, y, cv=3)
    assert scores.mean() > 0.6


# ---------------------------------------------------------------- morphological profiles
from skimage import morphology  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from sklearn_mmlgnet.preprocessing import (  # noqa: E402
    ExtendedMorphologicalProfile,
    _profile_centres,
    _reconstruct,
)


def _hand_patch():
    """One 5 x 5 patch: HSI band A, a bright 3 x 3 plateau (5) with a peak (9) on 0;
    LiDAR band 10 - A, the same shape as a pit."""
    A = np.zeros((5, 5), np.float32)
    A[1:4, 1:4] = 5
    A[2, 2] = 9
    return np.stack([A, 10 - A])[None]


def test_emp_equals_hand_computation_on_a_hand_made_patch():
    X = _hand_patch()
    emp = ExtendedMorphologicalProfile(n_components=None, radii=(1, 2), n_lidar_bands=1,
                                       include_patch_mean=True)
    out = emp.fit_transform(X)
    # Band A at the centre, by hand (disk(1) is the 3 x 3 cross, disk(2) reaches 2 px):
    # opening r=1: the cross fits in the plateau only at the centre, erosion leaves 5 there,
    #   reconstruction spreads 5 over the plateau and stops under the peak -> 5;
    # opening r=2: the disk never fits inside the plateau -> everything eroded to 0 -> 0;
    # closings fill nothing (the peak is a maximum, not a hole): r=1 -> 9; r=2: every
    #   pixel of the 5 x 5 patch is within 2 px of the plateau, so the dilated marker is
    #   >= 5 everywhere and the peak keeps 9 -> 9.
    # Band 10 - A is the dual: opening(10 - A) = 10 - closing(A) and the converse.
    expected = [9, 1,                 # centre pixel of both bands
                49 / 25, 10 - 49 / 25,  # patch means
                9, 5, 0, 9, 9,        # A: centre, openings r=1, 2, closings r=1, 2
                1, 1, 1, 5, 10]       # 10 - A
    np.testing.assert_allclose(out[0], expected, rtol=1e-6)
    assert out.shape == (1, emp.n_features_out_) and out.dtype == np.float64
    # Only the profile: the centre/mean blocks go away.
    emp2 = ExtendedMorphologicalProfile(n_components=None, radii=(1, 2), n_lidar_bands=1,
                                        include_center=False, include_patch_mean=False)
    np.testing.assert_allclose(emp2.fit_transform(X)[0], expected[4:], rtol=1e-6)


@pytest.mark.parametrize("footprint", ["disk", "square"])
def test_vectorised_profile_equals_skimage_per_patch(footprint):
    from scipy.ndimage import uniform_filter

    rng = np.random.RandomState(0)
    # Smoothed noise with ties (rounded) exercises plateaus and the patch border.
    images = np.round(uniform_filter(rng.rand(60, 9, 9), size=(1, 3, 3)) * 20).astype(np.float32)
    radii = (1, 2, 3)
    got = _profile_centres(images, radii, footprint)
    for i, img in enumerate(images):
        want = []
        for method, op in (("open", morphology.erosion), ("close", morphology.dilation)):
            for r in radii:
                fp = morphology.disk(r) if footprint == "disk" else np.ones((2 * r + 1,) * 2)
                rec = morphology.reconstruction(
                    op(img, fp), img, method="dilation" if method == "open" else "erosion")
                want.append(rec[4, 4])
        np.testing.assert_array_equal(got[i], want)
    # the whole reconstructed images agree, not only their centres
    marker = images - 3
    np.testing.assert_array_equal(
        _reconstruct(marker, images, "dilation"),
        np.stack([morphology.reconstruction(m, im) for m, im in zip(marker, images)]))


def test_emp_profiles_the_pca_components_and_the_lidar_bands():
    rng = np.random.RandomState(1)
    X = rng.normal(size=(25, 9, 7, 7)).astype(np.float32)  # 7 HSI + 2 LiDAR bands
    emp = ExtendedMorphologicalProfile(n_components=3, radii=(1, 2), n_lidar_bands=2,
                                       include_center=False, include_patch_mean=False,
                                       random_state=0).fit(X)
    assert emp.n_features_out_ == (3 + 2) * 5
    # the same as profiling SpectralPCA's output band by band
    images = SpectralPCA(n_components=3, n_lidar_bands=2, random_state=0).fit(X).transform(X)
    want = ExtendedMorphologicalProfile(n_components=None, radii=(1, 2), n_lidar_bands=0,
                                        include_center=False, include_patch_mean=False
                                        ).fit(images).transform(images)
    np.testing.assert_allclose(emp.transform(X), want, rtol=1e-4, atol=1e-4)
    # the LiDAR profile is the raw bands', untouched by PCA
    np.testing.assert_array_equal(emp.transform(X)[:, 15:20], want[:, 15:20])


def test_emp_rejects_bad_parameters_with_named_errors():
    X = np.random.RandomState(0).normal(size=(5, 4, 5, 5))
    for params, match in [({"radii": ()}, r"radii must be a non-empty sequence .* got \(\)"),
                          ({"radii": (1, 0)}, r"radii must be .* got \(1, 0\)"),
                          ({"radii": 2}, "The 'radii' parameter of ExtendedMorphologicalProfile "
                                         "must be an array-like. Got 2 instead."),
                          ({"footprint": "ball"}, "The 'footprint' parameter of "
                                                  "ExtendedMorphologicalProfile must be a str "
                                                  "among .* Got 'ball' instead."),
                          ({"n_components": 0}, "The 'n_components' parameter .* Got 0 instead"),
                          ({"n_lidar_bands": 4}, "n_lidar_bands=4")]:
        with pytest.raises(ValueError, match=match):
            ExtendedMorphologicalProfile(**params).fit(X)
    emp = ExtendedMorphologicalProfile(n_components=2, n_lidar_bands=1).fit(X)
    with pytest.raises(ValueError, match="X has 3 features, but ExtendedMorphologicalProfile"):
        emp.transform(X[:, :3])


@parametrize_with_checks([
    BandStandardScaler(),
    SpectralPCA(n_components=2, n_lidar_bands=0, random_state=0),
    SpectralNormalizer(n_lidar_bands=0),
    CenterPixel(),
    ExtendedMorphologicalProfile(n_components=2, n_lidar_bands=0, include_patch_mean=True,
                                 random_state=0),
    ExtendedMorphologicalProfile(n_components=None, radii=(1,), footprint="square",
                                 n_lidar_bands=0, include_patch_mean=False),
])
def test_transformers_pass_sklearn_checks(estimator, check):
    check(estimator)
