"""scikit-learn transformers for 4-D patch arrays ``(n_samples, n_bands, P, P)``.

Each also accepts a 2-D ``(n_samples, n_bands)`` array (single pixels) and
returns the rank it was given, so they chain in Pipelines before either
:class:`~sklearn_mmlgnet.MMLGNetClassifier` or a classic estimator. Patch arrays come
back as float32 (what the networks train on, half the memory of float64); 2-D
arrays as float64, like scikit-learn's own transformers.

:class:`CenterPixel` and :class:`ExtendedMorphologicalProfile` end the patch
stage: they turn patches into a 2-D float64 feature matrix for a classic
estimator (SVC, random forest, KNN).
"""

from __future__ import annotations

import contextlib
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.decomposition import PCA
from sklearn.preprocessing import normalize
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._validation import check_band_split, check_patches

#: Bytes of float64 work space per chunk when :class:`BandStandardScaler` takes its statistics.
_CHUNK_BYTES = 1 << 23


def _check_X(est, X, *, reset, keep_dtype=False):
    """``(patches of rank 4, was_2d)``: content checked by ``check_patches``, band count
    recorded (``reset``) or compared by scikit-learn's ``validate_data``. float32 patches,
    float64 pixels, or a numeric dtype kept as it is (no copy) with ``keep_dtype``."""
    if not hasattr(X, "toarray"):  # sparse input gets check_patches' TypeError
        with contextlib.suppress(TypeError, ValueError):  # ragged: check_patches says so
            X = np.asarray(X)
    was_2d = getattr(X, "ndim", None) == 2
    dtype = np.float64 if was_2d else np.float32
    if keep_dtype and getattr(X, "dtype", np.dtype(object)).kind in "biuf":
        dtype = X.dtype
    X = check_patches(X, dtype=dtype)
    validate_data(est, X, reset=reset, skip_check_array=True)
    return X, was_2d


def _map_hsi_pixels(est, X, fn):
    """``X`` with its HSI bands replaced by ``fn`` of them, pixel by pixel; LiDAR bands kept.

    ``fn`` maps a ``(n_pixels, est.n_hsi_bands_)`` matrix to ``(n_pixels, k)``; the result
    holds those ``k`` bands followed by the LiDAR bands, in ``X``'s rank and float dtype.
    """
    X, was_2d = _check_X(est, X, reset=False)
    n, _, P, _ = X.shape
    hsi = np.moveaxis(X[:, : est.n_hsi_bands_], 1, -1).reshape(-1, est.n_hsi_bands_)
    out = np.asarray(fn(hsi), dtype=X.dtype).reshape(n, P, P, -1)
    Xt = np.concatenate([np.moveaxis(out, -1, 1), X[:, est.n_hsi_bands_:]], axis=1)
    return Xt[:, :, 0, 0] if was_2d else Xt


class BandStandardScaler(TransformerMixin, BaseEstimator):
    """Standardise every band (channel) to zero mean and unit variance.

    Statistics are taken over all samples and all pixels of the patches (so the spatial
    structure of a patch is kept), in float64 over chunks of samples: fitting needs
    little memory beyond ``X`` itself.

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

    _parameter_constraints: dict = {}

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Compute every band's mean and standard deviation.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_bands, P, P) or (n_samples, n_bands)
            Patches (or single pixels).
        y : None
            Ignored.

        Returns
        -------
        self
        """
        X, _ = _check_X(self, X, reset=True, keep_dtype=True)
        # numpy's two passes (mean, then squared deviations), one chunk of float64 at a time.
        step = max(1, _CHUNK_BYTES // (8 * X[0].size))
        chunks = [slice(i, i + step) for i in range(0, len(X), step)]
        count = X.shape[0] * X.shape[2] * X.shape[3]
        total = np.zeros(X.shape[1])
        for chunk in chunks:
            total += X[chunk].sum(axis=(0, 2, 3), dtype=np.float64)
        mean = total / count
        squares = np.zeros(X.shape[1])
        work = np.empty((min(step, len(X)),) + X.shape[1:])
        for chunk in chunks:
            dev = np.subtract(X[chunk], mean[:, None, None], out=work[: len(X[chunk])])
            np.multiply(dev, dev, out=dev)
            squares += dev.sum(axis=(0, 2, 3))
        std = np.sqrt(squares / count)
        self.mean_ = mean
        self.scale_ = np.where(std > 0, std, 1.0)
        return self

    def transform(self, X):
        """Standardise every band with the fitted statistics.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_bands, P, P) or (n_samples, n_bands)

        Returns
        -------
        Xt : ndarray of the rank of ``X``
            float32 patches, or float64 pixels for a 2-D ``X``.
        """
        check_is_fitted(self, "mean_")
        X, was_2d = _check_X(self, X, reset=False)
        Xt = X - self.mean_[:, None, None].astype(X.dtype)
        Xt /= self.scale_[:, None, None].astype(X.dtype)
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
        Scale the components to unit variance.
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

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "n_lidar_bands": [Interval(Integral, 0, None, closed="left")],
        "whiten": ["boolean"],
        "max_pixels": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, n_components=30, n_lidar_bands=1, whiten=False, max_pixels=200_000,
                 random_state=None):
        self.n_components = n_components
        self.n_lidar_bands = n_lidar_bands
        self.whiten = whiten
        self.max_pixels = max_pixels
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the PCA on (a subsample of) the HSI bands of every pixel of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_bands, P, P) or (n_samples, n_bands)
        y : None
            Ignored.

        Returns
        -------
        self
        """
        X, _ = _check_X(self, X, reset=True)
        n_hsi, _ = check_band_split(X.shape[1], self.n_lidar_bands)
        pixels = np.moveaxis(X[:, :n_hsi], 1, -1).reshape(-1, n_hsi)
        if len(pixels) > self.max_pixels:
            rng = check_random_state(self.random_state)
            pixels = pixels[rng.choice(len(pixels), self.max_pixels, replace=False)]
        n_components = min(self.n_components, n_hsi, len(pixels))
        self.pca_ = PCA(n_components=n_components, whiten=self.whiten,
                        random_state=self.random_state).fit(pixels)
        self.n_hsi_bands_ = n_hsi
        self.n_features_out_ = n_components + X.shape[1] - n_hsi
        return self

    def transform(self, X):
        """Replace every pixel's HSI bands by their principal components.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_bands, P, P) or (n_samples, n_bands)

        Returns
        -------
        Xt : ndarray with ``n_features_out_`` bands, of the rank of ``X``
        """
        check_is_fitted(self, "pca_")
        return _map_hsi_pixels(self, X, self.pca_.transform)


class SpectralNormalizer(TransformerMixin, BaseEstimator):
    """Scale every pixel's HSI spectrum to unit norm; LiDAR bands pass through untouched.

    A pixel's brightness (illumination, shade, slope) drops out and the shape of its
    spectrum stays: with ``norm="l2"`` two pixels then differ by the angle between their
    spectra, as the spectral angle mapper compares them. Each pixel is mapped on its own
    (no statistics are learnt), so it chains before :class:`BandStandardScaler` and dense
    scene prediction stays exact. A pixel whose HSI bands are all zero stays zero.

    Parameters
    ----------
    norm : {"l2", "l1", "max"}, default="l2"
        The norm each pixel's HSI bands are divided by, as in
        :func:`sklearn.preprocessing.normalize` ("l1" for non-negative reflectance is
        the pixel's band sum).
    n_lidar_bands : int, default=1
        Trailing bands that are LiDAR and are not scaled.

    Attributes
    ----------
    n_features_in_ : int
    n_hsi_bands_ : int

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.RandomState(0).uniform(0.1, 0.9, size=(4, 6, 3, 3))
    >>> Xt = SpectralNormalizer(n_lidar_bands=1).fit_transform(X)
    >>> np.allclose(np.linalg.norm(Xt[:, :5], axis=1), 1), np.allclose(Xt[:, 5], X[:, 5])
    (True, True)
    """

    _parameter_constraints: dict = {
        "norm": [StrOptions({"l2", "l1", "max"})],
        "n_lidar_bands": [Interval(Integral, 0, None, closed="left")],
    }

    def __init__(self, norm="l2", n_lidar_bands=1):
        self.norm = norm
        self.n_lidar_bands = n_lidar_bands

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check ``X`` and record its band split; nothing is learnt.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_bands, P, P) or (n_samples, n_bands)
        y : None
            Ignored.

        Returns
        -------
        self
        """
        X, _ = _check_X(self, X, reset=True)
        self.n_hsi_bands_, _ = check_band_split(X.shape[1], self.n_lidar_bands)
        return self

    def transform(self, X):
        """Divide every pixel's HSI bands by their norm.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_bands, P, P) or (n_samples, n_bands)

        Returns
        -------
        Xt : ndarray of the shape of ``X``
        """
        check_is_fitted(self, "n_hsi_bands_")
        return _map_hsi_pixels(self, X, lambda hsi: normalize(hsi, norm=self.norm))


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

    _parameter_constraints: dict = {}

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check ``X`` and record its band count; nothing is learnt.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_bands, P, P) or (n_samples, n_bands)
        y : None
            Ignored.

        Returns
        -------
        self
        """
        _check_X(self, X, reset=True)
        return self

    def transform(self, X):
        """The centre pixel's bands of every patch.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_bands, P, P) or (n_samples, n_bands)

        Returns
        -------
        Xt : ndarray of shape (n_samples, n_bands)
        """
        check_is_fitted(self, "n_features_in_")
        X, _ = _check_X(self, X, reset=False)
        c = X.shape[-1] // 2
        return np.ascontiguousarray(X[:, :, c, c])


def _footprint(kind, radius):
    if kind == "disk":
        from skimage.morphology import disk

        return disk(radius).astype(bool)
    return np.ones((2 * radius + 1, 2 * radius + 1), bool)


def _filter3x3(a, op):
    """3 x 3 max (``op=np.maximum``) or min filter of a stack ``(m, P, P)``, borders ignored.

    Shifted ufunc calls: for patch-sized images several times faster than
    scipy.ndimage's 1-D filters, and a reconstruction calls this ~20 times.
    """
    h = a.copy()
    op(h[:, :, 1:], a[:, :, :-1], out=h[:, :, 1:])
    op(h[:, :, :-1], a[:, :, 1:], out=h[:, :, :-1])
    v = h.copy()
    op(v[:, 1:], h[:, :-1], out=v[:, 1:])
    op(v[:, :-1], h[:, 1:], out=v[:, :-1])
    return v


def _reconstruct(marker, mask, method):
    """Grey reconstruction of a stack of images ``(m, P, P)``, all at once.

    The same result as :func:`skimage.morphology.reconstruction` (3 x 3
    connectivity, which pads with values that never win) on every image: the
    marker is dilated (``"dilation"``) or eroded (``"erosion"``) by 3 x 3 and
    clipped to ``mask`` until nothing changes. Images that have converged leave
    the stack, so late iterations only touch the slow ones.
    """
    step, clip = (np.maximum, np.minimum) if method == "dilation" else (np.minimum, np.maximum)
    out = clip(marker, mask)
    active = np.arange(len(out))
    cur, lim = out, mask
    while active.size:
        nxt = clip(_filter3x3(cur, step), lim)
        changed = (nxt != cur).reshape(len(cur), -1).any(axis=1)
        out[active] = nxt
        active, cur, lim = active[changed], nxt[changed], lim[changed]
    return out


def _profile_centres(images, radii, footprint):
    """Centre values of openings and closings by reconstruction, ``(m, 2 * len(radii))``.

    Opening by reconstruction: erode by the footprint, then reconstruct by
    dilation under the image; closing by reconstruction is its dual.
    """
    from scipy.ndimage import maximum_filter, minimum_filter

    c = images.shape[-1] // 2
    opens, closes = [], []
    for r in radii:
        fp = _footprint(footprint, r)[None]
        # "reflect" only brings in pixels the (symmetric, convex) footprint covers
        # anyway, as skimage.morphology.erosion / dilation do by default.
        ero = minimum_filter(images, footprint=fp, mode="reflect")
        opens.append(_reconstruct(ero, images, "dilation")[:, c, c])
        dil = maximum_filter(images, footprint=fp, mode="reflect")
        closes.append(_reconstruct(dil, images, "erosion")[:, c, c])
    return np.stack(opens + closes, axis=1)


class ExtendedMorphologicalProfile(TransformerMixin, BaseEstimator):
    """Spectral-spatial features of patches: extended morphological profiles (EMP).

    The classic spectral-spatial input of an SVM (Benediktsson et al., 2005;
    Fauvel et al., 2008): the HSI bands are reduced by PCA (fitted on every pixel
    of the training patches) and each component image, and each LiDAR band as
    it is (its own profile: the usual EMP of a DSM), is opened and closed by
    reconstruction with disks (or squares) of growing radius. Each pixel is then
    described by the values of those filtered images at the patch's centre, so
    it sees the size and contrast of the structure it belongs to. The centre
    pixel's bands come first (``include_center``), optionally followed by the
    patch-mean bands.

    The profile is computed on each P x P patch alone: a structure reaching beyond
    the patch border is cut there (the more often, the larger the radius relative to
    P). In exchange it runs on the very patch arrays the networks take, in
    cross-validation and in :func:`~sklearn_mmlgnet.prediction.predict_scene`, and
    never looks outside a pixel's patch (so it respects spatially disjoint splits).

    Output features, in order: the centre pixel's ``n_bands`` values (if
    ``include_center``), the patch mean of each band (if
    ``include_patch_mean``), then for each of the ``n_components`` components
    and ``n_lidar_bands`` LiDAR bands: its centre value, its openings (one per
    radius, small to large), its closings (same order).

    Parameters
    ----------
    n_components : int or None, default=4
        PCA components profiled; None profiles every HSI band without PCA.
    radii : sequence of int, default=(1, 2, 3)
        Radii of the structuring elements (a disk of radius r, or a
        (2r + 1)-wide square).
    footprint : {"disk", "square"}, default="disk"
        Shape of the structuring elements.
    n_lidar_bands : int, default=1
        Trailing bands that are LiDAR: profiled as they are, not through PCA.
    include_center : bool, default=True
        Put the centre pixel's bands (HSI and LiDAR) first.
    include_patch_mean : bool, default=False
        Then the mean of each band over the patch. Off by default, as in the
        classic EMP + spectrum input: the mean mixes the classes of a patch
        that straddles a boundary, which the reconstruction filters avoid.
    max_pixels : int, default=200_000
        PCA is fitted on at most this many pixels drawn from the patches.
    random_state : int, RandomState or None, default=None
        Draws the PCA's pixel subsample.

    Attributes
    ----------
    pca_ : SpectralPCA or None
        The fitted band reduction (None when ``n_components`` is None).
    n_features_in_ : int
        Bands of the input patches.
    n_features_out_ : int

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.RandomState(0).normal(size=(30, 9, 7, 7))  # 8 HSI + 1 LiDAR band
    >>> emp = ExtendedMorphologicalProfile(n_components=3, radii=(1, 2), n_lidar_bands=1,
    ...                                    random_state=0)
    >>> emp.fit_transform(X).shape  # 9 centre bands + (3 + 1) x (1 + 2 x 2)
    (30, 29)

    A spectral-spatial SVM on patch arrays, in one Pipeline:

    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn.svm import SVC
    >>> y = np.arange(30) % 2
    >>> make_pipeline(emp, StandardScaler(), SVC()).fit(X, y).predict(X[:3]).shape
    (3,)
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "radii": ["array-like"],
        "footprint": [StrOptions({"disk", "square"})],
        "n_lidar_bands": [Interval(Integral, 0, None, closed="left")],
        "include_center": ["boolean"],
        "include_patch_mean": ["boolean"],
        "max_pixels": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, n_components=4, radii=(1, 2, 3), footprint="disk", n_lidar_bands=1,
                 include_center=True, include_patch_mean=False, max_pixels=200_000,
                 random_state=None):
        self.n_components = n_components
        self.radii = radii
        self.footprint = footprint
        self.n_lidar_bands = n_lidar_bands
        self.include_center = include_center
        self.include_patch_mean = include_patch_mean
        self.max_pixels = max_pixels
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the PCA of the HSI bands (unless ``n_components`` is None).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_bands, P, P)
        y : None
            Ignored.

        Returns
        -------
        self
        """
        radii = list(self.radii)
        if not radii or not all(isinstance(r, Integral) and not isinstance(r, bool) and r >= 1
                                for r in radii):
            raise ValueError(f"radii must be a non-empty sequence of positive ints; got "
                             f"{self.radii!r}.")
        X, _ = _check_X(self, X, reset=True)
        n_hsi, n_lidar = check_band_split(X.shape[1], self.n_lidar_bands)
        if self.n_components is None:
            self.pca_ = None
            n_images = X.shape[1]
        else:
            self.pca_ = SpectralPCA(n_components=self.n_components, n_lidar_bands=n_lidar,
                                    max_pixels=self.max_pixels,
                                    random_state=self.random_state).fit(X)
            n_images = self.pca_.n_features_out_
        self.n_features_out_ = (X.shape[1] * (int(bool(self.include_center))
                                              + int(bool(self.include_patch_mean)))
                                + n_images * (1 + 2 * len(radii)))
        return self

    def transform(self, X):
        """The features of every patch: centre bands, patch means, profiles.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_bands, P, P)

        Returns
        -------
        Xt : ndarray of shape (n_samples, ``n_features_out_``), float64
        """
        check_is_fitted(self, "n_features_out_")
        radii = tuple(int(r) for r in self.radii)
        X, _ = _check_X(self, X, reset=False)
        # Batches bound the memory of the PCA projection of every pixel.
        return np.concatenate([self._transform(X[i:i + 4096], radii)
                               for i in range(0, len(X), 4096)])

    def _transform(self, X, radii):
        n, _, P, _ = X.shape
        c = P // 2
        parts = []
        if self.include_center:
            parts.append(X[:, :, c, c])
        if self.include_patch_mean:
            parts.append(X.mean(axis=(2, 3), dtype=np.float64))
        images = X if self.pca_ is None else self._project(X)
        k = images.shape[1]
        stack = np.ascontiguousarray(images, dtype=np.float32).reshape(n * k, P, P)
        # (n * k, 1 + 2 * len(radii)), image by image
        profile = np.concatenate(
            [stack[:, c, c, None], _profile_centres(stack, radii, self.footprint)], axis=1)
        parts.append(profile.reshape(n, k * profile.shape[1]))
        return np.concatenate([np.asarray(p, dtype=np.float64).reshape(n, -1) for p in parts],
                              axis=1)

    def _project(self, X):
        """``self.pca_.transform(X)`` as one batched product over the band axis.

        Avoids the band-last copy of every pixel that SpectralPCA makes.
        """
        n, _, P, _ = X.shape
        pca, n_hsi = self.pca_.pca_, self.pca_.n_hsi_bands_
        W = pca.components_.astype(X.dtype)
        comps = np.matmul(W, X[:, :n_hsi].reshape(n, n_hsi, P * P))
        comps -= (W @ pca.mean_.astype(X.dtype))[:, None]
        return np.concatenate([comps.reshape(n, -1, P, P), X[:, n_hsi:]], axis=1)
