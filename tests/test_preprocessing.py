"""Transformers for patch arrays, alone and in Pipelines."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from sklearn_mmlgnet import BandStandardScaler, CenterPixel, MMLGNetClassifier, SpectralPCA

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


def test_spectral_pca_feeds_the_classifier_with_the_new_band_count():
    X, y = make_patches(n_hsi=12, n_lidar=1)
    pipe = make_pipeline(SpectralPCA(n_components=5, n_lidar_bands=1, random_state=0),
                         MMLGNetClassifier(n_lidar_bands=1, text_embeddings=np.eye(3, 8),
                                           hsi_channels=(8,), lidar_channels=(4,), fusion_dim=8,
                                           max_epochs=3, random_state=0))
    pipe.fit(X, y)
    clf = pipe[-1]
    assert clf.n_features_in_ == 6 and clf.n_hsi_bands_ == 5


def test_center_pixel_baseline_on_the_same_patches():
    X, y = make_patches(n_per_class=30)
    np.testing.assert_array_equal(CenterPixel().fit_transform(X), X[:, :, 2, 2])
    scores = cross_val_score(make_pipeline(CenterPixel(), StandardScaler(), SVC()), X, y, cv=3)
    assert scores.mean() > 0.6
