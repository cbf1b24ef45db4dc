"""Classic baselines tuned by inner cross-validation on the training pixels.

Each factory returns a :class:`TunedPipeline`: a feature step for 4-D patch
arrays (:class:`~sklearn_mmlgnet.preprocessing.CenterPixel` or
:class:`~sklearn_mmlgnet.preprocessing.ExtendedMorphologicalProfile`) followed
by a :class:`~sklearn.model_selection.GridSearchCV` over scaler + classifier.
``fit(X, y)`` runs the search on the pixels it is given, which must be the
training pixels only, then refits the best setting on all of them; the test
split is never seen, so the rows stay honest when compared with MMLGNet.

* The unsupervised feature step (the profiles' PCA) is fitted once on all
  training pixels, so the profiles are computed once rather than once per
  candidate and fold; the scaler and the classifier are refitted in every
  inner fold.
* Inner folds: ``cv`` (default :func:`inner_cv`: 3 stratified shuffled folds).
  Pass ``groups`` to ``fit`` with a grouped splitter (crowns, plots), or build
  spatially blocked folds from the training pixels' coordinates with
  ``inner_cv(rows=..., cols=...)``: random folds of overlapping patches are
  optimistic and favour settings that overfit. Every spatial fold must train on
  at least half as many pixels of every class as a stratified sample of its
  size would hold, and validate on at least two classes; where the blocks
  cannot give that, the whole search runs on the folds of a plain stratified
  search instead (with a warning), so it never picks a setting on folds that
  starve a class.
* Searches on more than ``max_search_samples`` pixels score each candidate on
  a stratified subsample of every fold (at most that many pixels to train on
  and as many to validate on); the refit uses every training pixel.

The grids are the module constants below, so a results table can print them
(:func:`describe_search`).

Examples
--------
>>> import numpy as np
>>> from sklearn_mmlgnet.baselines import tuned_svm
>>> rng = np.random.RandomState(0)
>>> y = np.repeat([0, 1, 2], 20)
>>> X = rng.normal(size=(60, 5, 7, 7)) + y[:, None, None, None]
>>> svm = tuned_svm(random_state=0).fit(X, y)
>>> sorted(svm.best_params_)
['C', 'gamma']
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import (
    GridSearchCV,
    KFold,
    StratifiedGroupKFold,
    StratifiedKFold,
    check_cv,
)
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils import check_random_state

from .model_selection import SpatialBlockKFold
from .preprocessing import CenterPixel, ExtendedMorphologicalProfile

#: RBF SVM grid (on standardised features): 6 x 5 decades. 1 / n_features, the
#: ``gamma="scale"`` of standardised data, lies inside for 10 to 100,000 features;
#: large C with small gamma reaches near-linear boundaries, which spatially
#: blocked inner folds often prefer.
SVM_GRID = {"C": (1.0, 10.0, 100.0, 1e3, 1e4, 1e5),
            "gamma": (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)}
#: Logistic-regression grid (inverse L2 strength on standardised features): 6 decades.
LOGREG_GRID = {"C": (0.01, 0.1, 1.0, 10.0, 100.0, 1e3)}
#: Iterations of its L-BFGS solver: enough for the weakest penalty of the grid on a few
#: thousand pixels of a few hundred correlated bands.
LOGREG_MAX_ITER = 5000
#: KNN grid (on standardised features).
KNN_GRID = {"n_neighbors": (1, 3, 5, 9, 15, 25)}
#: Random-forest grid; every forest has :data:`RF_N_ESTIMATORS` trees.
RF_GRID = {"max_features": ("sqrt", 0.3), "max_depth": (None, 15)}
RF_N_ESTIMATORS = 200
#: Inner folds of the default :func:`inner_cv`.
INNER_N_SPLITS = 3
#: Pixels per inner fold above which candidates are scored on a subsample.
MAX_SEARCH_SAMPLES = 5000
#: The spectral-spatial row's profile: PCA components and structuring-element radii.
EMP_N_COMPONENTS = 4
EMP_RADII = (1, 2, 3)


class TunedPipeline(Pipeline):
    """A Pipeline whose last step is a search (e.g. GridSearchCV).

    ``fit(X, y, groups=g)`` hands ``groups`` to the search's inner CV (a plain
    Pipeline would need ``search__groups=g``), and the search's results are
    read on the pipeline: :attr:`best_params_` (without the step prefixes),
    :attr:`best_score_`, :attr:`cv_results_`.
    """

    def fit(self, X, y=None, groups=None, **params):
        """Fit the feature step, then run the search on the training pixels ``X, y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_bands, P, P)
        y : array-like of shape (n_samples,)
        groups : array-like of shape (n_samples,), optional
            Groups (crowns, plots) for a grouped inner CV.
        **params
            Passed to :meth:`sklearn.pipeline.Pipeline.fit`.

        Returns
        -------
        self
        """
        if groups is not None:
            params[f"{self.steps[-1][0]}__groups"] = groups
        return super().fit(X, y, **params)

    @property
    def best_params_(self):
        """The chosen setting, e.g. ``{"C": 100.0, "gamma": 0.01}``."""
        return {k.rsplit("__", 1)[-1]: v for k, v in self.steps[-1][1].best_params_.items()}

    @property
    def best_score_(self):
        """Mean inner-CV score of the chosen setting."""
        return self.steps[-1][1].best_score_

    @property
    def cv_results_(self):
        return self.steps[-1][1].cv_results_


class SubsampledCV:
    """Any CV splitter with each fold's train and test indices capped by subsampling.

    Parameters
    ----------
    cv : int, CV splitter or iterable of (train, test)
        The folds to subsample (an int means stratified k-fold, as in GridSearchCV).
    max_samples : int or None
        Largest number of training and of validation indices per fold; None keeps
        every index.
    random_state : int, RandomState or None
        Draws the subsample (stratified by ``y`` where every class can keep a pixel).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.model_selection import KFold
    >>> cv = SubsampledCV(KFold(3), max_samples=50, random_state=0)
    >>> [(len(tr), len(te)) for tr, te in cv.split(np.zeros((300, 1)))]
    [(50, 50), (50, 50), (50, 50)]
    """

    def __init__(self, cv, max_samples, random_state=None):
        self.cv = cv
        self.max_samples = max_samples
        self.random_state = random_state

    def get_n_splits(self, X=None, y=None, groups=None):
        return check_cv(self.cv, y, classifier=True).get_n_splits(X, y, groups)

    def split(self, X, y=None, groups=None):
        if self.max_samples is not None and (
                not isinstance(self.max_samples, numbers.Integral) or self.max_samples < 2):
            raise ValueError(f"max_samples must be an int >= 2 or None; got {self.max_samples!r}.")
        rng = check_random_state(self.random_state)
        y_arr = None if y is None else np.asarray(y)
        for train, test in check_cv(self.cv, y, classifier=True).split(X, y, groups):
            yield self._cap(train, y_arr, rng), self._cap(test, y_arr, rng)

    def _cap(self, idx, y, rng):
        idx = np.asarray(idx)
        if self.max_samples is None or len(idx) <= self.max_samples:
            return idx
        if y is None:
            return np.sort(rng.choice(idx, self.max_samples, replace=False))
        # Each class keeps its share (at least one pixel), so rare classes stay in the search.
        classes, counts = np.unique(y[idx], return_counts=True)
        quota = np.maximum(1, np.floor(counts * self.max_samples / len(idx))).astype(int)
        keep = [rng.choice(idx[y[idx] == c], q, replace=False) for c, q in zip(classes, quota)]
        return np.sort(np.concatenate(keep))

    def __repr__(self):
        return f"SubsampledCV({self.cv!r}, max_samples={self.max_samples})"


class _InnerSpatialBlockKFold(SpatialBlockKFold):
    """SpatialBlockKFold for an inner search, with a fallback decided before the search.

    The block folds are used only if every one of them

    * trains on at least half as many pixels of every class as a stratified
      sample of its size would hold: ``ceil(n_c * m / (2 * n))`` of a class's
      ``n_c`` pixels for a fold training on ``m`` of the ``n`` pixels (without a
      buffer, half a stratified k-fold's share: ``ceil((k - 1) * n_c / (2 * k))``),
    * validates on pixels of at least two classes (one if ``y`` has one), so
      that no fold rewards a constant prediction.

    The share is of ``m`` because the buffer shrinks every class alike (to about
    40 % of the pixels at 32 px blocks and 11 px patches); what misleads the
    search is a class shrunk far more than the others, e.g. a token pixel or two
    left to train on while the validation blocks hold the rest of the class.

    Where a fold breaks the rule (a rare class in one or two blocks, a small
    training area that the buffers eat up, fewer blocks than folds), the whole
    search runs on shuffled stratified folds instead, with a UserWarning: the
    folds of a plain stratified search (see :func:`_stratified_folds`), so the
    choice is that search's. ``fallback_reason_`` holds why (None while the
    block folds are used), for :func:`describe_search`.
    """

    fallback_reason_ = None

    def _splits(self, X, y, groups):
        y = None if y is None else np.asarray(y)
        self._check_lengths(X, y)  # a wrong X or y is the caller's error, not a fallback
        try:
            splits = list(super().split(X, y, groups))
            reason = _starving_fold(splits, y, self.patch_size)
        except ValueError as exc:  # more folds than blocks; a class the blocks cannot spread
            reason = str(exc)
        self.fallback_reason_ = reason
        if reason is None:
            return splits
        warnings.warn(
            f"inner CV: {reason} Using {self.n_splits} shuffled stratified folds instead (as a "
            "plain stratified search would); they are optimistic where training patches overlap.",
            UserWarning, stacklevel=3)
        return list(_stratified_folds(y, len(self.rows), self.n_splits, self.random_state))

    def split(self, X=None, y=None, groups=None):
        yield from self._splits(X, y, groups)


def _starving_fold(splits, y, patch_size):
    """Why the block folds ``splits`` would mislead a search on ``y``, or None if they pass.

    The rule of :class:`_InnerSpatialBlockKFold`: every fold has pixels on both
    sides, trains on at least half of every class's stratified share of its
    training pixels and validates on at least two classes.
    """
    k = len(splits)
    for i, (tr, te) in enumerate(splits):
        if not len(tr) or not len(te):
            return (f"spatial fold {i + 1} of {k} has no pixel to train or validate on once the "
                    f"{patch_size} px buffer around its validation blocks is removed.")
    if y is None:
        return None
    classes, y_idx = np.unique(y, return_inverse=True)
    n_c, n = np.bincount(y_idx), len(y)
    for i, (tr, te) in enumerate(splits):
        got = np.bincount(y_idx[tr], minlength=len(classes))
        need = -(-n_c * len(tr) // (2 * n))  # integer ceil of half the stratified share
        short = np.flatnonzero(got < need)
        if short.size:
            c = short[0]
            return (f"spatial fold {i + 1} of {k} would train on {got[c]} of the {n_c[c]} pixels "
                    f"of class {classes[c].item()!r}, fewer than {need[c]}: half of what a "
                    f"stratified sample of its {len(tr)} training pixels would hold.")
        if len(np.unique(y_idx[te])) < min(2, len(classes)):
            return f"spatial fold {i + 1} of {k} would validate on a single class."
    return None


def _stratified_folds(y, n_samples, n_splits, random_state):
    """The folds of ``StratifiedKFold(n_splits, shuffle=True, random_state=random_state)``.

    Exactly its folds when every class has at least two samples (a plain stratified
    search's); a class of one sample trains in every fold and is never validated,
    the other samples are dealt as StratifiedKFold deals them. Without ``y``: the
    folds of the same shuffled KFold.
    """
    if y is None:
        yield from KFold(n_splits, shuffle=True, random_state=random_state).split(
            np.zeros((n_samples, 1)))
        return
    classes, counts = np.unique(y, return_counts=True)
    single = np.isin(y, classes[counts < 2])
    rest, always = np.flatnonzero(~single), np.flatnonzero(single)
    folds = StratifiedKFold(n_splits, shuffle=True, random_state=random_state)
    for tr, te in folds.split(rest, y[rest]):
        yield np.sort(np.concatenate([rest[tr], always])), rest[te]


def inner_cv(n_splits=INNER_N_SPLITS, *, rows=None, cols=None, grouped=False, patch_size=11,
             block_size=32, random_state=None):
    """The inner folds for a tuned baseline.

    Parameters
    ----------
    n_splits : int, default=3
        Number of inner folds.
    rows, cols : array-like of int, optional
        Scene coordinates of the training pixels, in the order of X: spatially
        blocked folds (:class:`~sklearn_mmlgnet.model_selection.SpatialBlockKFold`)
        whose training patches never overlap a validation patch. They are used
        only if every fold trains on at least half as many pixels of every class
        as a stratified sample of its size would hold (``ceil(n_c * m / (2 * n))``
        of a class's ``n_c`` pixels, for a fold training on ``m`` of the ``n``
        pixels after its buffer) and validates on at least two classes.
        Where the blocks cannot give that (a rare class in one or two blocks, a
        training area the buffers eat up), the search runs on the folds of
        ``StratifiedKFold(n_splits, shuffle=True, random_state=random_state)``
        instead, those of a plain stratified search, with a UserWarning; the
        choice is made when the folds are drawn, before any candidate is
        fitted. In those, a class with a single training pixel trains in every
        fold.
    grouped : bool, default=False
        Stratified group folds: pass ``groups`` (crown or plot ids) to ``fit``.
    patch_size : int, default=11
        For the spatial folds: the buffer, the side of the patches.
    block_size : int, default=32
        For the spatial folds: the side of the blocks.
    random_state : int, RandomState or None
        Deals the blocks to folds, or shuffles the stratified folds.

    Returns
    -------
    cv : CV splitter

    Examples
    --------
    >>> inner_cv(random_state=0)
    StratifiedKFold(n_splits=3, random_state=0, shuffle=True)
    >>> inner_cv(grouped=True, random_state=0)
    StratifiedGroupKFold(n_splits=3, random_state=0, shuffle=True)
    """
    if (rows is None) != (cols is None):
        raise ValueError("give both rows and cols (the training pixels' coordinates) or neither.")
    if rows is not None:
        if grouped:
            raise ValueError("grouped=True and rows/cols exclude each other: choose group folds "
                             "or spatial blocks.")
        return _InnerSpatialBlockKFold(rows, cols, n_splits=n_splits, block_size=block_size,
                                       patch_size=patch_size, random_state=random_state)
    if grouped:
        return StratifiedGroupKFold(n_splits, shuffle=True, random_state=random_state)
    return StratifiedKFold(n_splits, shuffle=True, random_state=random_state)


def _tuned(features, steps, param_grid, cv, max_search_samples, scoring, n_jobs, random_state,
           error_score="raise"):
    if cv is None:
        cv = inner_cv(random_state=random_state)
    name = steps[-1][0]
    grid = {f"{name}__{k}": list(v) for k, v in param_grid.items()}
    search = GridSearchCV(Pipeline(steps), grid, scoring=scoring, n_jobs=n_jobs,
                          cv=SubsampledCV(cv, max_search_samples, random_state), refit=True,
                          error_score=error_score)
    return TunedPipeline([("features", features), ("search", search)])


def tuned_svm(features=None, *, param_grid=None, cv=None, max_search_samples=MAX_SEARCH_SAMPLES,
              scoring=None, n_jobs=1, random_state=None):
    """RBF SVM with C and gamma chosen by inner CV on the training pixels.

    Parameters
    ----------
    features : transformer, default=CenterPixel()
        Turns patch arrays into a 2-D feature matrix.
    param_grid : dict, default=SVM_GRID
        Grid over :class:`~sklearn.svm.SVC` parameters (names without prefix).
    cv : int, CV splitter or iterable, default=inner_cv(random_state=random_state)
        Inner folds over the training pixels (see :func:`inner_cv`).
    max_search_samples : int or None, default=MAX_SEARCH_SAMPLES
        Cap on the pixels each candidate is trained and validated on per fold.
    scoring : str or callable, default=None (accuracy, i.e. OA)
    n_jobs : int, default=1
    random_state : int, RandomState or None
        Default folds and search subsample.

    Returns
    -------
    TunedPipeline
        ``features`` then a GridSearchCV over StandardScaler + SVC.
    """
    return _tuned(features if features is not None else CenterPixel(),
                  [("scale", StandardScaler()), ("svc", SVC(kernel="rbf"))],
                  SVM_GRID if param_grid is None else param_grid, cv, max_search_samples, scoring,
                  n_jobs, random_state)


def tuned_logistic_regression(features=None, *, param_grid=None, cv=None,
                              max_search_samples=MAX_SEARCH_SAMPLES, scoring=None, n_jobs=1,
                              random_state=None):
    """Multinomial logistic regression with C chosen by inner CV (grid :data:`LOGREG_GRID`).

    The linear classic: where a pixel is labelled by the most abundant of a few
    endmembers whose spectra mix about linearly (Jasper Ridge), the class boundaries lie
    near hyperplanes in the spectrum, and a linear model carries them into unseen
    regions. Parameters as in :func:`tuned_svm`; the search runs over
    StandardScaler + :class:`~sklearn.linear_model.LogisticRegression` (L-BFGS,
    :data:`LOGREG_MAX_ITER` iterations).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> y = np.repeat([0, 1, 2], 20)
    >>> X = rng.normal(size=(60, 5, 7, 7)) + y[:, None, None, None]
    >>> clf = tuned_logistic_regression(random_state=0).fit(X, y)
    >>> clf.best_params_["C"] in LOGREG_GRID["C"], clf.classes_.tolist()
    (True, [0, 1, 2])
    """
    return _tuned(features if features is not None else CenterPixel(),
                  [("scale", StandardScaler()),
                   ("logreg", LogisticRegression(max_iter=LOGREG_MAX_ITER))],
                  LOGREG_GRID if param_grid is None else param_grid, cv, max_search_samples,
                  scoring, n_jobs, random_state)


def tuned_knn(features=None, *, param_grid=None, cv=None, max_search_samples=MAX_SEARCH_SAMPLES,
              scoring=None, n_jobs=1, random_state=None):
    """k-nearest neighbours with k chosen by inner CV (grid :data:`KNN_GRID`).

    Parameters as in :func:`tuned_svm`; the search runs over StandardScaler +
    :class:`~sklearn.neighbors.KNeighborsClassifier`. A k larger than an inner
    training fold cannot be fitted: it scores NaN there (with scikit-learn's
    FitFailedWarning) and is not chosen.
    """
    return _tuned(features if features is not None else CenterPixel(),
                  [("scale", StandardScaler()), ("knn", KNeighborsClassifier())],
                  KNN_GRID if param_grid is None else param_grid, cv, max_search_samples, scoring,
                  n_jobs, random_state, error_score=np.nan)


def tuned_random_forest(features=None, *, n_estimators=RF_N_ESTIMATORS, param_grid=None, cv=None,
                        max_search_samples=MAX_SEARCH_SAMPLES, scoring=None, n_jobs=1,
                        random_state=None):
    """Random forest with max_features and max_depth chosen by inner CV (grid :data:`RF_GRID`).

    Parameters as in :func:`tuned_svm`, plus ``n_estimators`` (fixed, not searched).
    ``random_state`` also seeds the forest.
    """
    forest = RandomForestClassifier(n_estimators=n_estimators, random_state=random_state)
    return _tuned(features if features is not None else CenterPixel(), [("rf", forest)],
                  RF_GRID if param_grid is None else param_grid, cv, max_search_samples, scoring,
                  n_jobs, random_state)


def spectral_spatial_svm(n_lidar_bands=1, *, n_components=EMP_N_COMPONENTS, radii=EMP_RADII,
                         include_center=True, include_patch_mean=False, param_grid=None, cv=None,
                         max_search_samples=MAX_SEARCH_SAMPLES, scoring=None, n_jobs=1,
                         random_state=None):
    """The classic spectral-spatial SVM: extended morphological profiles + tuned RBF SVM.

    Features: :class:`~sklearn_mmlgnet.preprocessing.ExtendedMorphologicalProfile`
    (centre spectrum, then the opening/closing-by-reconstruction profiles of
    ``n_components`` PCA components and of each LiDAR band; the patch-mean
    spectrum too with ``include_patch_mean=True``), then the same search as
    :func:`tuned_svm`.

    Parameters
    ----------
    n_lidar_bands : int, default=1
        Trailing LiDAR bands of the patches (0 for HSI-only scenes).
    n_components, radii, include_center, include_patch_mean
        Passed to the profile.
    param_grid, cv, max_search_samples, scoring, n_jobs, random_state
        As in :func:`tuned_svm`.
    """
    emp = ExtendedMorphologicalProfile(n_components=n_components, radii=radii,
                                       n_lidar_bands=n_lidar_bands, include_center=include_center,
                                       include_patch_mean=include_patch_mean,
                                       random_state=random_state)
    return tuned_svm(emp, param_grid=param_grid, cv=cv, max_search_samples=max_search_samples,
                     scoring=scoring, n_jobs=n_jobs, random_state=random_state)


def _cv_name(cv):
    cv = getattr(cv, "cv", cv)
    if isinstance(cv, numbers.Integral):
        return f"{cv}-fold stratified"
    name = type(cv).__name__
    n = getattr(cv, "n_splits", None)
    extra = ", shuffled" if getattr(cv, "shuffle", False) else ""
    if isinstance(cv, SpatialBlockKFold):
        name = "SpatialBlockKFold"
        extra = f", {cv.block_size} px blocks, {cv.patch_size} px buffer"
    return f"{n}-fold {name}{extra}" if n else name


def describe_search(estimator):
    """One line naming the grid and the inner CV of a tuned baseline, for a table header.

    Parameters
    ----------
    estimator : TunedPipeline or GridSearchCV
        A tuned baseline, fitted or not; once fitted, the line says when spatial
        inner folds gave way to stratified ones (:func:`inner_cv` gives the rule).

    Returns
    -------
    line : str

    Examples
    --------
    >>> import textwrap
    >>> print(textwrap.fill(describe_search(tuned_knn(random_state=0)), 88))
    KNeighborsClassifier tuned by inner CV on the training pixels (3-fold StratifiedKFold,
    shuffled; candidates scored on at most 5000 pixels per fold, best refitted on all):
    n_neighbors in {1, 3, 5, 9, 15, 25}
    """
    search = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    inner = search.estimator
    clf = inner.steps[-1][1] if isinstance(inner, Pipeline) else inner
    grid = "; ".join(f"{k.rsplit('__', 1)[-1]} in {{{', '.join(_fmt(v) for v in vals)}}}"
                     for k, vals in search.param_grid.items())
    cap = getattr(search.cv, "max_samples", None)
    cap = (f"; candidates scored on at most {cap} pixels per fold, best refitted on all"
           if cap is not None else "")
    if getattr(getattr(search.cv, "cv", search.cv), "fallback_reason_", None):
        cap += ("; the blocks left a fold training on under half a stratified share of a "
                "class, or validating on one class: stratified folds used")
    return (f"{type(clf).__name__} tuned by inner CV on the training pixels "
            f"({_cv_name(search.cv)}{cap}): {grid}")


def _fmt(v):
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


__all__ = [
    "SVM_GRID", "LOGREG_GRID", "LOGREG_MAX_ITER", "KNN_GRID", "RF_GRID", "RF_N_ESTIMATORS",
    "INNER_N_SPLITS", "MAX_SEARCH_SAMPLES", "EMP_N_COMPONENTS", "EMP_RADII", "TunedPipeline",
    "SubsampledCV", "inner_cv", "tuned_svm", "tuned_logistic_regression", "tuned_knn",
    "tuned_random_forest", "spectral_spatial_svm", "describe_search",
]
