"""scikit-learn transformers for 4-D patch arrays ``(n_samples, n_bands, P, P)``.

Each also accepts a 2-D ``(n_samples, n_bands)`` array (single pixels) and
returns the rank it was given, so they chain in Pipelines before either
:class:`~sklearn_mmlgnet.MMLGNetClassifier` or a classic estimator. Patch arrays come
back as float32 (what the networks train on, half the memory of float64); 2-D
arrays as float64, like scikit-learn's own transformers.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ._validation import check_band_split, check_patches


def _as_patches(X, name="X"):
    """(patches, was_2d): validated float array of rank 4 and whether X was 2-D."""
    if not hasattr(X, "toarray"):  # sparse input gets check_patches' TypeError
        X = np.asarray(X)
    was_2d = getattr(X, "ndim", None) == 2
    return check_patches(X, name=name, dtype=np.float64 if was_2d else np.float32), was_2d


def _check_n_features(est, X):
    if X.shape[1] != est.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} features, but {type(est).__name__} is expecting "
            f"{est.n_features_in_} features as input.")


class BandStandardScaler(TransformerMixin, BaseEstimator):
    """Standardise every band (channel) to zero mean and unit variance.

    Statistics are taken over all samples and all pixels of the patches, so the
    spatial structure of a patch is kept.

    Attributes
    ----------
    mean_, scale_ : ndarray of shape (n_bands,)
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.RandomState(0).normal(5, 2, size=(10, 3, 5, 5))
    >>> Xt = BandStandardScaler().fit_transform(X)
    >>> np.allclose(Xt.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    True
    """

    def fit(self, X, y=None):
        X, _ = _as_patches(X)
        self.n_features_in_ = X.shape[1]
        self.mean_ = X.mean(axis=(0, 2, 3), dtype=np.float64)
        std = X.std(axis=(0, 2, 3), dtype=np.float64)
        self.scale_ = np.where(std > 0, std, 1.0)
        return self

    def transform(self, X):
        check_is_fitted(self, "mean_")
        X, was_2d = _as_patches(X)
        _check_n_features(self, X)
        Xt = (X - self.mean_[:, None, None].astype(X.dtype)) / self.scale_[:, None, None].astype(X.dtype)
        return Xt[:, :, 0, 0] if was_2d else Xt


class SpectralPCA(TransformerMixin, BaseEstimator):
    """PCA over the HSI bands of every pixel; LiDAR bands pass through untouched.

    The output holds ``n_components`` HSI components followed by the
    ``n_lidar_bands`` LiDAR bands, so a classifier after it sees
    ``n_components + n_lidar_bands`` bands with the same ``n_lidar_bands``.

    Parameters
    ----------
    n_components : int, default=30
        Components kept (at most the number of HSI bands).
    n_lidar_bands : int, default=1
        Trailing bands that are LiDAR and are not projected.
    whiten : bool, default=False
    max_pixels : int, default=200_000
        PCA is fitted on at most this many pixels drawn from the patches.
    random_state : int, RandomState or None, default=None
        Draws the pixel subsample.

    Attributes
    ----------
    pca_ : sklearn.decomposition.PCA
    n_features_in_ : int
    n_features_out_ : int

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.RandomState(0).normal(size=(20, 11, 3, 3))
    >>> SpectralPCA(n_components=4, n_lidar_bands=1).fit_transform(X).shape
    (20, 5, 3, 3)
    """

    def __init__(self, n_components=30, n_lidar_bands=1, whiten=False, max_pixels=200_000,
                 random_state=None):
        self.n_components = n_components
        self.n_lidar_bands = n_lidar_bands
        self.whiten = whiten
        self.max_pixels = max_pixels
        self.random_state = random_state

    def fit(self, X, y=None):
        X, _ = _as_patches(X)
        n_hsi, _ = check_band_split(X.shape[1], self.n_lidar_bands)
        if not isinstance(self.n_components, numbers.Integral) or not 1 <= self.n_components:
            raise ValueError(f"n_components must be a positive int; got {self.n_components!r}.")
        pixels = np.moveaxis(X[:, :n_hsi], 1, -1).reshape(-1, n_hsi)
        if len(pixels) > self.max_pixels:
            rng = check_random_state(self.random_state)
            pixels = pixels[rng.choice(len(pixels), self.max_pixels, replace=False)]
        n_components = min(self.n_components, n_hsi, len(pixels))
        self.pca_ = PCA(n_components=n_components, whiten=self.whiten,
                        random_state=self.random_state).fit(pixels)
        self.n_features_in_ = X.shape[1]
        self.n_hsi_bands_ = n_hsi
        self.n_features_out_ = n_components + X.shape[1] - n_hsi
        return self

    def transform(self, X):
        check_is_fitted(self, "pca_")
        X, was_2d = _as_patches(X)
        _check_n_features(self, X)
        n, _, P, _ = X.shape
        hsi = np.moveaxis(X[:, : self.n_hsi_bands_], 1, -1).reshape(-1, self.n_hsi_bands_)
        comps = self.pca_.transform(hsi).astype(X.dtype).reshape(n, P, P, -1)
        Xt = np.concatenate([np.moveaxis(comps, -1, 1), X[:, self.n_hsi_bands_:]], axis=1)
        return Xt[:, :, 0, 0] if was_2d else Xt


class CenterPixel(TransformerMixin, BaseEstimator):
    """Reduce patches to the band vector of their centre pixel.

    Lets SVC, RandomForest or KNN baselines run on the very patch array
    MMLGNet is fitted on, e.g. in ``cross_val_score``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.arange(2 * 3 * 5 * 5, dtype=float).reshape(2, 3, 5, 5)
    >>> CenterPixel().fit_transform(X)[0].tolist()
    [12.0, 37.0, 62.0]
    """

    def fit(self, X, y=None):
        X, _ = _as_patches(X)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        check_is_fitted(self, "n_features_in_")
        X, _ = _as_patches(X)
        _check_n_features(self, X)
        c = X.shape[-1] // 2
        return np.ascontiguousarray(X[:, :, c, c])
