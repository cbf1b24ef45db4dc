"""The benchmark's rows: how each estimator is built, and what it sees of the data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.pipeline import make_pipeline

from .. import MMLGNetClassifier, SDHSIClassifier, baselines
from ..metrics import aggregate_by_group
from ..preprocessing import BandStandardScaler, CenterPixel, SpectralNormalizer, SpectralPCA

#: PCA components of SDHSI-Net's input, on every dataset (the row's definition, in its
#: name; measured in docs/self_distillation.rst).
SDHSI_PCA = 15
#: Pixels each inner-CV candidate of the tuned rows is trained and validated on, on every
#: dataset (the chosen setting is refitted on every training pixel): it bounds the cost of
#: the SVM searches, which grows with the square of the pixels.
SEARCH_SAMPLES = 2000
#: The norm of the spectral normalisation the network input may choose, and the row of the
#: logistic regression on normalised spectra.
SPECTRAL_NORM = "l2"
#: Widths of the networks in ``quick`` mode (a smoke run), routed to the module.
QUICK_WIDTHS = dict(module__hsi_channels=(32, 64), module__lidar_channels=(16, 32),
                    module__fusion_dim=128)


@dataclass
class Method:
    """A benchmark row: how to build the estimator, which bands and what features it sees.

    ``build(seed, n_lidar_bands, cv=None, network_input=None)`` returns an unfitted
    estimator; ``cv`` is the inner folds a tuned row searches over (the networks ignore
    it); ``network_input`` (``{"spectral_norm": ..., "pca": ...}``) is what the rows with
    ``chooses_input`` put in front of the network (the others ignore it). ``features`` is
    ``"patches"`` (the row sees each pixel's patch) or ``"crown_mean"`` (IDTReeS only:
    one sample per crown, the mean of its pixels' centre spectra).
    """

    name: str
    build: callable
    bands: str = "all"          # "all", "hsi" or "lidar"
    group: str = "MMLGNet"
    features: str = "patches"
    chooses_input: bool = False


def network_pipeline(params, spectral_norm=None, pca=None, test_time_augment=False):
    """A network row's estimator: ``[SpectralNormalizer] -> BandStandardScaler ->
    [SpectralPCA] -> MMLGNetClassifier(**params)``.

    Parameters
    ----------
    params : dict
        Parameters of :class:`~sklearn_mmlgnet.MMLGNetClassifier` (``n_lidar_bands``,
        ``random_state`` also set the steps in front).
    spectral_norm : str or None
        ``norm`` of a :class:`~sklearn_mmlgnet.preprocessing.SpectralNormalizer` in front;
        None: none.
    pca : int or None
        :class:`~sklearn_mmlgnet.preprocessing.SpectralPCA` components of the HSI bands;
        None or 0 keeps every band.
    test_time_augment : bool, default=False
        The classifier's ``test_time_augment``.

    Examples
    --------
    >>> network_pipeline(dict(n_lidar_bands=0, random_state=0), pca=10).steps[1][1]
    SpectralPCA(n_components=10, n_lidar_bands=0, random_state=0)
    """
    n_lidar = params.get("n_lidar_bands", 1)
    steps = [SpectralNormalizer(spectral_norm, n_lidar_bands=n_lidar)] if spectral_norm else []
    steps.append(BandStandardScaler())
    if pca:
        steps.append(SpectralPCA(n_components=pca, n_lidar_bands=n_lidar,
                                 random_state=params.get("random_state")))
    return make_pipeline(*steps, MMLGNetClassifier(**params).set_params(
        test_time_augment=test_time_augment))


def sdhsi_pipeline(params):
    """SDHSI-Net's row: ``BandStandardScaler -> SpectralPCA(SDHSI_PCA) -> SDHSIClassifier``."""
    return make_pipeline(
        BandStandardScaler(),
        SpectralPCA(n_components=SDHSI_PCA, n_lidar_bands=0,
                    random_state=params.get("random_state")),
        SDHSIClassifier(**params))


def default_methods(n_lidar, epochs, text_kwargs, device="cpu", quick=False, verbose=1,
                    crowns=False, search_samples=SEARCH_SAMPLES):
    """The benchmark's rows: MMLGNet, the paper's ablations, SDHSI-Net, tuned classic baselines.

    The networks take the estimators' defaults, with ``max_epochs=epochs``; the MMLGNet
    rows that see HSI bands put the network input of the run's inner validation in front
    (``chooses_input``). ``quick`` narrows the networks (:data:`QUICK_WIDTHS`);
    ``verbose=1`` prints skorch's line per epoch. ``crowns=True`` adds the classic rows on
    crown-mean spectra (IDTReeS). ``search_samples`` caps the pixels of every inner-CV
    candidate of the tuned rows.
    """
    width = QUICK_WIDTHS if quick else {}
    common = dict(max_epochs=epochs, device=device, verbose=verbose)

    def mmlg(**kw):
        def build(seed, n_lidar_bands, cv=None, network_input=None):
            params = dict(text_kwargs, n_lidar_bands=n_lidar_bands, random_state=seed, **common,
                          **width, **kw)
            return network_pipeline(params, **(network_input or {}))
        return build

    def sdhsi(self_distillation):
        def build(seed, n_lidar_bands, cv=None, network_input=None):
            return sdhsi_pipeline(dict(self_distillation=self_distillation, random_state=seed,
                                       **common))
        return build

    def tuned(factory, **kw):
        def build(seed, n_lidar_bands, cv=None, network_input=None):
            return factory(cv=cv, random_state=seed, max_search_samples=search_samples, **kw)
        return build

    def normalised_logreg(seed, n_lidar_bands, cv=None, network_input=None):
        features = make_pipeline(SpectralNormalizer(SPECTRAL_NORM, n_lidar_bands=n_lidar_bands),
                                 CenterPixel())
        return tuned(baselines.tuned_logistic_regression, features=features)(seed, n_lidar_bands,
                                                                              cv)

    def emp(seed, n_lidar_bands, cv=None, network_input=None):
        return baselines.spectral_spatial_svm(n_lidar_bands, cv=cv, random_state=seed,
                                              max_search_samples=search_samples)

    methods = [Method("MMLGNet (symmetric loss)", mmlg(), chooses_input=True),
               Method("MMLGNet, image->text loss only", mmlg(loss="image_to_text"),
                      group="ablation", chooses_input=True)]
    if n_lidar:
        methods += [Method("MMLGNet, HSI only", mmlg(), bands="hsi", group="ablation",
                           chooses_input=True),
                    Method("MMLGNet, LiDAR only", mmlg(), bands="lidar", group="ablation")]
    methods += [
        Method("Same encoders, cross-entropy head (no language)", mmlg(loss="cross_entropy"),
               group="ablation", chooses_input=True),
        Method("MMLGNet + self-distillation", mmlg(self_distillation=True),
               group="self-distillation", chooses_input=True),
        Method(f"SDHSI-Net (HSI only, PCA {SDHSI_PCA})", sdhsi(True), bands="hsi",
               group="self-distillation"),
        Method("SDHSI-Net without self-distillation", sdhsi(False), bands="hsi",
               group="self-distillation"),
        Method("SVM (RBF, tuned), centre pixel", tuned(baselines.tuned_svm), group="baseline"),
        Method("Logistic regression (tuned), centre pixel",
               tuned(baselines.tuned_logistic_regression), group="baseline"),
        Method(f"Logistic regression (tuned), centre pixel, {SPECTRAL_NORM}-normalised spectrum",
               normalised_logreg, group="baseline"),
        Method("RandomForest (tuned), centre pixel", tuned(baselines.tuned_random_forest),
               group="baseline"),
        Method("KNN (tuned), centre pixel", tuned(baselines.tuned_knn), group="baseline"),
        Method("SVM (RBF, tuned), morphological profiles (spectral-spatial)", emp,
               group="baseline"),
    ]
    if crowns:
        methods += [
            Method("SVM (RBF, tuned), crown-mean spectrum", tuned(baselines.tuned_svm),
                   group="baseline", features="crown_mean"),
            Method("Logistic regression (tuned), crown-mean spectrum",
                   tuned(baselines.tuned_logistic_regression), group="baseline",
                   features="crown_mean"),
            Method("RandomForest (tuned), crown-mean spectrum",
                   tuned(baselines.tuned_random_forest), group="baseline", features="crown_mean"),
            Method("KNN (tuned), crown-mean spectrum", tuned(baselines.tuned_knn),
                   group="baseline", features="crown_mean"),
        ]
    return methods


def select_methods(methods, filters):
    """The methods whose name contains one of ``filters`` (case-insensitive); all if None.

    Raises
    ------
    ValueError
        When nothing matches; the message lists the method names.
    """
    if not filters:
        return methods
    chosen = [m for m in methods if any(f.lower() in m.name.lower() for f in filters)]
    if not chosen:
        names = "; ".join(m.name for m in methods)
        raise ValueError(f"--methods {' '.join(filters)!r} matches none of the methods: {names}.")
    return chosen


def select_bands(X, bands, n_hsi):
    """The bands of patches ``X`` a row sees: ``"all"``, ``"hsi"`` or ``"lidar"``."""
    if bands == "hsi":
        return X[:, :n_hsi]
    if bands == "lidar":
        return X[:, n_hsi:]
    return X


def band_slice(bands, n_hsi):
    """The scene bands a row sees, for ``predict_scene``'s ``bands=``."""
    return {"hsi": slice(0, n_hsi), "lidar": slice(n_hsi, None)}.get(bands)


def n_lidar_for(bands, n_lidar):
    """The LiDAR bands of the input of a row that sees ``bands``."""
    return n_lidar if bands == "all" else 0


def search_of(est):
    """The tuned row itself (it searches by inner CV), or None for the networks."""
    return est if isinstance(est, baselines.TunedPipeline) else None


def proba_columns(est, X, classes):
    """``predict_proba`` with one column per entry of ``classes``.

    A fold whose training part lacks a class gives that class probability 0.
    Classifiers without probabilities (the SVM) vote: one-hot of ``predict``.
    """
    fitted = np.asarray(est.classes_)
    if hasattr(est, "predict_proba"):
        p = est.predict_proba(X)
    else:
        p = (est.predict(X)[:, None] == fitted[None, :]).astype(float)
    out = np.zeros((len(X), len(classes)))
    out[:, np.searchsorted(classes, fitted)] = p
    return out


def crown_means(X, idx, crown_id):
    """Mean centre-pixel spectrum (all bands) of the crowns of pixels ``idx``.

    Returns the crowns' means and, for every pixel of ``idx``, the row of its crown.
    Only the centre pixels are read, never a copy of the patches.
    """
    c = X.shape[-1] // 2
    crowns, means = aggregate_by_group(X[idx, :, c, c], crown_id[idx])
    return means, np.searchsorted(crowns, crown_id[idx])
