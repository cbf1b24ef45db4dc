"""Training-recipe levers, one at a time, on inner validation of Jasper Ridge's training pixels.

The test split is never read. For each seed the scene's TRAINING pixels are split
by spatial blocks (SpatialBlockKFold, 3 folds of 32 x 32 blocks, a buffer so no
inner-training patch overlaps an inner-validation pixel) into inner train / inner
validation, three times: every training pixel is predicted once, by the model of
the fold that held it out, and OA / AA are taken over these pooled out-of-fold
predictions. (Jasper's training region is small and patchy: one fold alone can
hold 16 px of a class or none, so a single fold's score is mostly noise; and a
class confined to one block cannot be in every fold's inner train, hence
``min_train=0``.) Each row fits
``BandStandardScaler -> MMLGNetClassifier`` (HSI only, the packaged offline text
model, ``--epochs`` fixed epochs) with one lever changed from today's defaults (but
the paper's language head without a class bias, ``module__class_bias=False``, the default
until it was measured here, unless a row names ``module__class_bias=True``: the rows measured
before keep their figures), next to the tuned centre-pixel SVM on the same split (a
row may also set the epochs, ``max_epochs``, the PCA in front of the network, ``pca``, the centre
``patch`` x ``patch`` of the patches the network sees, Gaussian ``noise`` on the
training batches, training patches ``mix``-ed with others, ``centred_text`` class
prototypes, or each pixel's ``spectra`` normalised: see ``mmlg_pipeline``). Prints
inner-validation OA / AA (%) mean +/- std over seeds, the paired difference from
the first network row on the same seed (mean +/- std), and seconds per fit (mean
over folds and seeds). ``--dataset idtrees`` runs the same rows on IDTReeS: seed s
takes the training pixels of the benchmark's plot-grouped outer fold s, cut into 3
plot-grouped inner folds, with PCA 30 + canopy height and 7 x 7 patches; the SVM's own
C / gamma search then runs on plot-grouped folds too, as the benchmark's (``classic_search``).
Next to the SVM runs the tuned logistic regression on the centre pixel (its C searched the
same way); ``--no-svm`` leaves both out, ``--classic-spectra unit`` adds both again on
unit-length spectra (``spectra_step``, as the network rows' ``spectra``).

    OMP_NUM_THREADS=1 python benchmarks/bench_recipe.py --data-home ../shared/data --seeds 0 1 2
    OMP_NUM_THREADS=1 python benchmarks/bench_recipe.py --sdhsi --seeds 0 1 2   # SDHSI heads

``--sdhsi`` runs the SDHSI-Net rows instead (without / with self-distillation,
and with smaller auxiliary weights) and prints each head's inner-validation
accuracy (``head_scores``). ``--ensemble K`` predicts every network row as the
mean of K initialisations. ``--prior-shift TAU ...`` also scores each network row's
predictions moved towards the frequent classes (``log p + TAU log prior``, from the
same fits). ``--class-similarity`` prints, instead of fitting, how
close the language head's class prototypes are: the cosine similarities of the
scene's class-name embeddings (packaged offline text model, default prompts).
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial

import numpy as np
import torch
from sklearn.model_selection import GroupShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from skorch.callbacks import Callback, EarlyStopping
from skorch.dataset import ValidSplit

from sklearn_mmlgnet import (
    BandStandardScaler,
    CenterPixel,
    SDHSIClassifier,
    SpectralNormalizer,
    SpectralPCA,
)
from sklearn_mmlgnet._validation import center_crop
from sklearn_mmlgnet.baselines import inner_cv, tuned_logistic_regression, tuned_svm
from sklearn_mmlgnet.benchmark import (
    IDTREES_FOLDS,
    SEARCH_SAMPLES,
    network_pipeline,
    patch_size_for,
)
from sklearn_mmlgnet.datasets import load_jasper_ridge
from sklearn_mmlgnet.metrics import average_accuracy, overall_accuracy
from sklearn_mmlgnet.model_selection import SpatialBlockKFold
from sklearn_mmlgnet.patches import labelled_patches

PATCH = 11
VALID_BLOCK = 16  # side of the Jasper Ridge blocks the early-stopping rows validate on
IDTREES_PATCH = patch_size_for([(20, 20)])  # the benchmark's patch on IDTReeS's 20 x 20 px plots

#: The settings of the releases before these defaults (the "old recipe").
EARLIER_DEFAULTS = dict(module__spectral_channels=(), optimizer="adam", weight_decay=0.0, lr_schedule=None,
                        augment=False, label_smoothing=0.0)
#: Today's defaults, then one lever set back to its earlier value at a time (row name ->
#: parameters); the first row is the one every paired difference is taken from.
MMLG_ROWS = {
    "defaults": {},
    "earlier defaults (all six levers off)": EARLIER_DEFAULTS,
    "spectral_channels=() (no spectral path)": dict(module__spectral_channels=()),
    "optimizer='adam', weight_decay=0": dict(optimizer="adam", weight_decay=0.0),
    "lr_schedule=None": dict(lr_schedule=None),
    "augment=False": dict(augment=False),
    "label_smoothing=0": dict(label_smoothing=0.0),
    "spectral_channels=(128,)": dict(module__spectral_channels=(128,)),
    "class_weight='balanced'": dict(class_weight="balanced"),
    "class_weight='balanced_sqrt'": dict(class_weight="balanced_sqrt"),
    # IDTReeS' flips row was measured while (128,) was the default spectral path
    "spectral_channels=(128,), augment=False": dict(module__spectral_channels=(128,),
                                                    augment=False),
    # not levers of the recipe but its scale: few hundred patches, 30 epochs
    "lr=1e-3": dict(lr=1e-3),
    "lr=2e-3": dict(lr=2e-3),
    "batch_size=32": dict(batch_size=32),
    # prediction only: the mean of the 8 symmetries of each patch
    "test_time_augment=True": dict(test_time_augment=True),
    "dropout=0.3": dict(module__dropout=0.3),
    # the language head's temperature, and the same encoders with a CE head
    "temperature=0.03": dict(temperature=0.03),
    "temperature=0.15": dict(temperature=0.15),
    "learn_temperature=True": dict(learn_temperature=True),
    "loss='cross_entropy' (no language)": dict(loss="cross_entropy"),
    # the epoch count, which the benchmark fixes per scene (--epochs)
    "max_epochs=3": dict(max_epochs=3),
    "max_epochs=5": dict(max_epochs=5),
    "max_epochs=10": dict(max_epochs=10),
    "max_epochs=15": dict(max_epochs=15),
    "max_epochs=40": dict(max_epochs=40),
    "max_epochs=60": dict(max_epochs=60),
    # the network's input on IDTReeS (not an estimator parameter: SpectralPCA's
    # n_components in front of it; 0 keeps every band)
    "PCA 60 (network input)": dict(pca=60),
    "PCA 100 (network input)": dict(pca=100),
    "no PCA (every band)": dict(pca=0),
    "PCA 60, test_time_augment=True": dict(pca=60, test_time_augment=True),
    # the patch the network sees: the centre of the loaded patches (PATCH / IDTREES_PATCH)
    **{f"patch {p}": dict(patch=p) for p in (3, 5, 7, 9, 11)},
    # Jasper Ridge, with the benchmark's square-root class weights
    "balanced_sqrt, weight_decay=0.1": dict(class_weight="balanced_sqrt", weight_decay=0.1),
    "balanced_sqrt, weight_decay=1": dict(class_weight="balanced_sqrt", weight_decay=1.0),
    **{f"balanced_sqrt, PCA {k} (network input)": dict(class_weight="balanced_sqrt", pca=k)
       for k in (10, 20, 40)},
    **{f"balanced_sqrt, patch {p}": dict(class_weight="balanced_sqrt", patch=p)
       for p in (1, 3, 5, 7, 9)},
    "balanced_sqrt, loss='image_to_text'": dict(class_weight="balanced_sqrt", loss="image_to_text"),
    "loss='image_to_text'": dict(loss="image_to_text"),
    "similarity='dot'": dict(module__similarity="dot"),
    "balanced_sqrt, similarity='dot'": dict(class_weight="balanced_sqrt",
                                            module__similarity="dot"),
    "balanced_sqrt, self_distillation=True": dict(class_weight="balanced_sqrt",
                                                  self_distillation=True),
    # what predicts with self-distillation: every head's mean (default: the final head)
    "balanced_sqrt, self_distillation=True, mean of heads": dict(
        class_weight="balanced_sqrt", self_distillation=True, predict_heads="mean"),
    "dot, self_distillation=True, mean of heads": dict(
        module__similarity="dot", self_distillation=True, predict_heads="mean"),
    "dot, temperature=0.03": dict(module__similarity="dot", temperature=0.03),
    "dot, temperature=0.15": dict(module__similarity="dot", temperature=0.15),
    "dot, loss='image_to_text'": dict(module__similarity="dot", loss="image_to_text"),
    # the optimisation's scale and regularisation, with the dot product (IDTReeS)
    "dot, lr=1e-3": dict(module__similarity="dot", lr=1e-3),
    "dot, lr=2.5e-4": dict(module__similarity="dot", lr=2.5e-4),
    "dot, batch_size=32": dict(module__similarity="dot", batch_size=32),
    "dot, batch_size=128": dict(module__similarity="dot", batch_size=128),
    "dot, weight_decay=0.1": dict(module__similarity="dot", weight_decay=0.1),
    "dot, label_smoothing=0": dict(module__similarity="dot", label_smoothing=0.0),
    "dot, label_smoothing=0.2": dict(module__similarity="dot", label_smoothing=0.2),
    "dot, fusion_dim=512": dict(module__similarity="dot", module__fusion_dim=512),
    "dot, self_distillation=True": dict(module__similarity="dot", self_distillation=True),
    "dot, PCA 60 (network input)": dict(module__similarity="dot", pca=60),
    "dot, no PCA (every band)": dict(module__similarity="dot", pca=0),
    # Gaussian noise on the (standardised) training batches, and class text embeddings
    # with their mean removed (not estimator parameters: see ``mmlg_pipeline``).
    "balanced_sqrt, input noise 0.1": dict(class_weight="balanced_sqrt", noise=0.1),
    "balanced_sqrt, input noise 0.2": dict(class_weight="balanced_sqrt", noise=0.2),
    "balanced_sqrt, input noise 0.4": dict(class_weight="balanced_sqrt", noise=0.4),
    # a wider / deeper spectral path (default (256, 128)), with the benchmark's weights
    "balanced_sqrt, spectral_channels=(512, 256)": dict(
        class_weight="balanced_sqrt", module__spectral_channels=(512, 256)),
    "balanced_sqrt, spectral_channels=(512, 256, 128)": dict(
        class_weight="balanced_sqrt", module__spectral_channels=(512, 256, 128)),
    # sharper class boundaries (no smoothing, no weights, longer): nearer a max-margin fit
    "balanced_sqrt, label_smoothing=0": dict(class_weight="balanced_sqrt", label_smoothing=0.0),
    "label_smoothing=0, max_epochs=60": dict(label_smoothing=0.0, max_epochs=60),
    # training patches mixed with others of the batch, keeping the dominant one's label
    "balanced_sqrt, patch mix 0.55": dict(class_weight="balanced_sqrt", mix=0.55),
    "balanced_sqrt, patch mix 0.7": dict(class_weight="balanced_sqrt", mix=0.7),
    "balanced_sqrt, unit-length spectra": dict(class_weight="balanced_sqrt", spectra="unit"),
    "balanced_sqrt, log reflectance": dict(class_weight="balanced_sqrt", spectra="log"),
    "dot, unit-length spectra": dict(module__similarity="dot", spectra="unit"),
    "unit-length spectra (no class weights)": dict(spectra="unit"),
    "unit-length spectra, loss='image_to_text'": dict(class_weight="balanced_sqrt",
                                                      spectra="unit", loss="image_to_text"),
    "dot, log reflectance": dict(module__similarity="dot", spectra="log"),
    # the unit-length spectra hide a dark surface's darkness: give it back as one band
    "balanced_sqrt, unit-length spectra + brightness": dict(class_weight="balanced_sqrt",
                                                            spectra="unit+brightness"),
    "dot, unit-length spectra + brightness": dict(module__similarity="dot",
                                                  spectra="unit+brightness"),
    # early stopping on a grouped validation part of each inner-training set (blocks on
    # Jasper Ridge, plots on IDTReeS), the best epoch's weights kept
    "balanced_sqrt, unit-length spectra, early stopping": dict(
        class_weight="balanced_sqrt", spectra="unit", early_stopping=5, max_epochs=60),
    "dot, unit-length spectra, early stopping": dict(module__similarity="dot", spectra="unit",
                                                     early_stopping=3, max_epochs=20),
    # a learnt bias per class on the language head's logits, as the CE head's
    "balanced_sqrt, unit-length spectra, class_bias=True": dict(
        class_weight="balanced_sqrt", spectra="unit", module__class_bias=True),
    "dot, unit-length spectra, class_bias=True": dict(module__similarity="dot", spectra="unit",
                                                      module__class_bias=True),
    "balanced_sqrt, unit-length spectra, class_bias=True, dot": dict(
        class_weight="balanced_sqrt", spectra="unit", module__class_bias=True,
        module__similarity="dot"),
    "balanced_sqrt, unit-length spectra, cross-entropy head": dict(
        class_weight="balanced_sqrt", spectra="unit", loss="cross_entropy"),
    "unit-length spectra, cross-entropy head": dict(spectra="unit", loss="cross_entropy"),
    "centred class embeddings": dict(centred_text=True),
    "dot, centred class embeddings": dict(module__similarity="dot", centred_text=True),
}
#: SpectralPCA components in front of the network per dataset, unless a row sets ``pca``
#: (0: every band). IDTReeS' rows keep 30, the benchmark's setting when they were first
#: measured; the benchmark itself chooses its network input on inner validation
#: (``sklearn_mmlgnet.benchmark.INPUT_CANDIDATES``).
BASE_PCA = {"jasper_ridge": 0, "idtrees": 30}
SDHSI_ROWS = {
    "SDHSI, no SD": dict(self_distillation=False),
    "SDHSI + SD (defaults: a=0.8, b=0.1)": dict(self_distillation=True),
    # what predicts: the final head alone (the default is the mean of every head)
    "SDHSI + SD, final head only": dict(self_distillation=True, predict_heads="final"),
    "SDHSI + SD, a=0.1": dict(self_distillation=True, criterion__aux_ce_weight=0.1),
    "SDHSI + SD, a=0.1, b=0.01": dict(self_distillation=True, criterion__aux_ce_weight=0.1,
                                      criterion__distill_weight=0.01),
    # which term hurts: the students' CE alone, or neither (student heads built, no loss)
    "SDHSI + SD, a=0.8, b=0": dict(self_distillation=True, criterion__distill_weight=0.0),
    "SDHSI + SD, a=0, b=0": dict(self_distillation=True, criterion__aux_ce_weight=0.0,
                                 criterion__distill_weight=0.0),
}


def inner_folds(data_home, seed):
    """The scene's training patches and their 3 spatial inner folds (test pixels never
    read); the last item holds each pixel's :data:`VALID_BLOCK` block ``{"blocks"}``,
    the groups of the early-stopping rows' validation part."""
    scene = load_jasper_ridge(data_home, random_state=seed)
    X, y, r, c = labelled_patches(scene, scene.train_mask, PATCH)
    cv = SpatialBlockKFold(r, c, n_splits=3, block_size=32, patch_size=PATCH, min_train=0,
                           random_state=seed)
    blocks = (r // VALID_BLOCK) * (scene.labels.shape[1] // VALID_BLOCK + 1) + c // VALID_BLOCK
    return scene, X, y, list(cv.split(X, y)), {"blocks": blocks}


def idtrees_inner_folds(data, seed):
    """Seed s: the TRAINING pixels of the benchmark's plot-grouped outer fold s % 3, cut
    into 3 plot-grouped inner folds (the outer fold's test pixels are never read), and
    the pixels' plot groups ``{"groups"}``."""
    from sklearn.model_selection import StratifiedGroupKFold

    from sklearn_mmlgnet.datasets import idtrees_splits

    outer_train, _ = idtrees_splits(data, kind="plot", n_splits=IDTREES_FOLDS,
                                    random_state=0)[seed % IDTREES_FOLDS]
    X, y, groups = data.X[outer_train], data.y[outer_train], data.plot_group[outer_train]
    cv = StratifiedGroupKFold(n_splits=3, shuffle=True, random_state=seed)
    return data, X, y, list(cv.split(X, y, groups)), {"groups": groups}


def classic_search(where, tr, seed, factory=tuned_svm):
    """The tuned classic baseline ``factory`` (default: the SVM) to fit on inner-training
    pixels ``tr``, and the keywords of its fit.

    On IDTReeS (``where`` holds plot ``groups``) its own hyperparameter search runs on
    plot-grouped folds of ``tr`` with the benchmark's sample cap, as the benchmark's
    does, so that pixels of one crown never score each other. On Jasper Ridge it uses
    shuffled stratified folds: an inner-training region of a few hundred pixels holds
    too few 32 x 32 blocks for the benchmark's spatial folds.
    """
    if "groups" in where:
        return (factory(cv=inner_cv(grouped=True, random_state=seed), random_state=seed,
                        max_search_samples=SEARCH_SAMPLES),
                {"groups": where["groups"][tr]})
    return factory(random_state=seed), {}


class InputNoise(Callback):
    """Add Gaussian noise of standard deviation ``std`` to every training batch's patches.

    The bands are standardised before the network, so ``std`` is in units of each
    band's spread. Validation batches and prediction are left alone.
    """

    def __init__(self, std):
        self.std = std

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if training:  # the collated batch is a new tensor: the data set is not touched
            batch[0].add_(self.std * torch.randn_like(batch[0]))


class PatchMix(Callback):
    """Mix half of every training batch's patches with other patches of the batch.

    Jasper Ridge's pixels are linear mixtures of four endmembers, labelled by the most
    abundant one. A chosen patch becomes ``lam * x + (1 - lam) * x'`` with ``lam``
    drawn uniformly in ``[low, 1)`` and ``x'`` a patch of the batch drawn at random,
    and keeps its own label, the dominant one (``low >= 0.5``): more mixed pixels,
    labelled as the scene's are. (The bands are standardised per band, an affine map, so the mix
    is the standardised mix of the raw spectra.) Validation batches and prediction
    are left alone.
    """

    def __init__(self, low):
        self.low = low

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if not training:
            return
        X = batch[0]
        n = len(X)
        lam = self.low + (1 - self.low) * torch.rand(n)
        lam = torch.where(torch.rand(n) < 0.5, lam, torch.ones(n)).to(X.dtype)
        other = X[torch.randperm(n)]  # a copy: the mix below reads the unmixed batch
        lam = lam.view(-1, *([1] * (X.dim() - 1)))
        X.mul_(lam).add_((1 - lam) * other)


#: How the rows name each kind of :func:`spectra_step`.
SPECTRA_NAMES = {"unit": "unit-length spectra", "log": "log reflectance",
                 "unit+brightness": "unit-length spectra + brightness"}

#: Reflectance below this is taken as this before a log (both scenes' bands are reflectance
#: in [0, ~1]; 0.02 % of Jasper Ridge's and 0.1 % of IDTReeS's values are 0).
REFLECTANCE_FLOOR = 1e-3


def log_reflectance(X, n_lidar=0):
    """Patches ``(n, bands, p, p)`` with the log of each HSI band's reflectance (at least
    :data:`REFLECTANCE_FLOOR`): a multiplicative change of illumination becomes an offset
    shared by the bands. The last ``n_lidar`` bands are left alone."""
    X = np.array(X, dtype=np.float32)  # a copy: the caller's patches are not touched
    hsi = X[:, :X.shape[1] - n_lidar]
    hsi[...] = np.log(np.maximum(hsi, REFLECTANCE_FLOOR))
    return X


def unit_and_brightness(X, n_lidar=0):
    """Patches ``(n, bands, p, p)`` with each pixel's HSI bands at unit length, then one more
    HSI band, the log of their length (at least :data:`REFLECTANCE_FLOOR`): the spectrum's
    shape and its brightness apart. The last ``n_lidar`` bands follow, unchanged."""
    X = np.asarray(X, dtype=np.float32)
    n_hsi = X.shape[1] - n_lidar
    norm = np.linalg.norm(X[:, :n_hsi], axis=1, keepdims=True)
    unit = X[:, :n_hsi] / np.maximum(norm, np.finfo(np.float32).tiny)
    return np.concatenate([unit, np.log(np.maximum(norm, REFLECTANCE_FLOOR)), X[:, n_hsi:]],
                          axis=1)


def spectra_step(kind, n_lidar):
    """The step that re-expresses each pixel's HSI bands before the per-band standardisation:
    ``"unit"`` the package's :class:`~sklearn_mmlgnet.SpectralNormalizer` (unit length,
    brightness drops out), ``"log"`` :func:`log_reflectance`, ``"unit+brightness"``
    :func:`unit_and_brightness`."""
    if kind == "unit":
        return SpectralNormalizer("l2", n_lidar_bands=n_lidar)
    if kind == "log":
        return FunctionTransformer(log_reflectance, kw_args=dict(n_lidar=n_lidar))
    if kind == "unit+brightness":
        return FunctionTransformer(unit_and_brightness, kw_args=dict(n_lidar=n_lidar))
    raise ValueError(f"kind must be 'unit' or 'log'; got {kind!r}")


def centred_class_embeddings(class_names):
    """``{label: unit vector}``: the unit class-name embeddings (packaged offline model,
    default prompts) less their mean, renormalised. The direction all classes share is
    taken out, so that near names (IDTReeS's oaks) lie further apart."""
    from sklearn_mmlgnet.text import encode_class_names, make_text_encoder

    labels = sorted(class_names)
    E = np.asarray(encode_class_names([class_names[k] for k in labels],
                                      encoder=make_text_encoder("sentence-transformers")))
    E = E / np.linalg.norm(E, axis=1, keepdims=True)
    E = E - E.mean(axis=0)
    return dict(zip(labels, E / np.linalg.norm(E, axis=1, keepdims=True)))


def mmlg_pipeline(dataset, class_names, epochs, seed, pca=None, patch=None, noise=0.0,
                  mix=0.0, centred_text=False, spectra=None, early_stopping=0, **params):
    """The benchmark's :func:`~sklearn_mmlgnet.benchmark.network_pipeline` for one row.

    ``pca`` components of the HSI bands (default :data:`BASE_PCA` of the dataset; 0
    keeps every band); ``patch``: the network sees the centre ``patch`` x ``patch`` of
    each patch (default: the scene's base patch, :data:`PATCH` or :data:`IDTREES_PATCH`);
    ``noise``: :class:`InputNoise` of that std on training batches; ``mix``:
    :class:`PatchMix` with that ``low``;
    ``centred_text``: :func:`centred_class_embeddings` as the class prototypes;
    ``spectra``: each pixel's HSI bands re-expressed first (:func:`spectra_step`);
    ``early_stopping``: that patience of skorch's ``EarlyStopping`` on the validation
    loss of a fifth of the groups given to ``fit`` (``GroupShuffleSplit``), keeping the
    best epoch's weights; ``params`` go to the estimator (a row's ``max_epochs``
    overrides ``epochs``, its ``module__class_bias`` the rows' ``False``).
    """
    n_lidar = 1 if dataset == "idtrees" else 0
    pca = BASE_PCA[dataset] if pca is None else pca
    patch = patch or (IDTREES_PATCH if dataset == "idtrees" else PATCH)
    params = dict(dict(n_lidar_bands=n_lidar, text_encoder="sentence-transformers",
                       class_names=class_names, max_epochs=epochs, random_state=seed,
                       module__class_bias=False), **params)
    callbacks = ([("input_noise", InputNoise(noise))] if noise else []) + (
        [("patch_mix", PatchMix(mix))] if mix else [])
    if early_stopping:
        callbacks.append(("early_stopping", EarlyStopping(patience=early_stopping,
                                                          load_best=True)))
        params["train_split"] = ValidSplit(GroupShuffleSplit(1, test_size=0.2,
                                                             random_state=seed))
    if callbacks:
        params["callbacks"] = callbacks
    if centred_text:
        params["text_embeddings"] = centred_class_embeddings(class_names)
    pipe = network_pipeline(params, pca=pca)
    # A no-op where the loaded patches are already this size.
    crop = FunctionTransformer(center_crop, kw_args=dict(patch_size=patch))
    pipe.steps.insert(0, ("center_crop", crop))
    if spectra:
        pipe.steps.insert(1, ("spectra", spectra_step(spectra, n_lidar)))
    return pipe


def head_hits(est, X, y):
    """Correct predictions of every head of a fitted SDHSI pipeline on (X, y).

    A class the fold never trained on counts as missed by every head, as in the
    pipeline's own predictions.
    """
    seen = np.isin(y, est[-1].classes_)
    h = est[-1].head_scores(est[:-1].transform(X[seen]), y[seen])
    return {k: v * seen.sum() for k, v in h.items()}


def class_similarity(class_names, temperature=0.07):
    """Print the pairwise cosines of the class-name embeddings the language head scores against.

    The head's logit for class c is cos(v, t_c) / temperature, so two classes whose
    unit embeddings lie ||t_a - t_b|| apart can differ by at most that / temperature in
    logit, whatever the image features v.
    """
    from sklearn_mmlgnet.text import encode_class_names, make_text_encoder

    names = list(class_names.values())
    E = np.asarray(encode_class_names(names, encoder=make_text_encoder("sentence-transformers")))
    E = E / np.linalg.norm(E, axis=1, keepdims=True)
    C = E @ E.T
    off = C[~np.eye(len(C), dtype=bool)]
    i, j = np.unravel_index(np.argmax(C - 2 * np.eye(len(C))), C.shape)
    dist = float(np.linalg.norm(E[i] - E[j]))
    print(f"{len(names)} classes; off-diagonal cosine min {off.min():.3f}, mean {off.mean():.3f}, "
          f"max {off.max():.3f}")
    print(f"closest pair: {names[i]!r} and {names[j]!r}: cosine {C[i, j]:.3f}, distance "
          f"{dist:.3f}, largest logit gap at temperature {temperature}: {dist / temperature:.1f}")


def prior_shift(proba, y_train, classes, tau):
    """``log proba + tau * log prior``: class scores moved by the training class frequencies.

    The post-hoc logit adjustment of Menon et al. (ICLR 2021): ``tau > 0`` favours the
    frequent classes (the argmax of ``proba`` times ``prior ** tau``), ``tau < 0`` the rare
    ones. A class absent from ``y_train`` keeps probability 0 whatever ``tau``.
    """
    prior = np.array([np.mean(y_train == c) for c in classes])
    with np.errstate(divide="ignore"):
        return np.log(proba) + tau * np.log(np.where(prior > 0, prior, 1.0))


def ensemble_name(row, ensemble):
    """A row's name, marked when its prediction is the mean of several initialisations."""
    return row if ensemble == 1 else f"{row} (mean of {ensemble} inits)"


def score(y_true, y_pred):
    return 100 * overall_accuracy(y_true, y_pred), 100 * average_accuracy(y_true, y_pred)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default="../shared/data")
    parser.add_argument("--dataset", choices=("jasper_ridge", "idtrees"), default="jasper_ridge")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--rows", nargs="*", help="row names to run (default: all)")
    parser.add_argument("--sdhsi", action="store_true", help="the SDHSI-Net rows instead")
    parser.add_argument("--sdhsi-pca", type=int, default=30,
                        help="PCA components in front of SDHSI-Net (default: 30, as the Jasper "
                             "rows of docs/self_distillation; the benchmark gives it 15)")
    parser.add_argument("--no-svm", action="store_true",
                        help="leave out the classic rows (tuned SVM, tuned logistic regression)")
    parser.add_argument("--classic-spectra", choices=tuple(SPECTRA_NAMES),
                        help="also run the classic rows on each pixel's spectra re-expressed "
                             "thus (spectra_step)")
    parser.add_argument("--out", help="JSON file of per-fit results (appended as they come)")
    parser.add_argument("--ensemble", type=int, default=1,
                        help="average the probabilities of this many network initialisations "
                             "(random_state = seed + 1000 i) per fold (default: 1)")
    parser.add_argument("--prior-shift", type=float, nargs="+", default=(), metavar="TAU",
                        help="also score each network row's predictions moved by TAU times the "
                             "log of the inner-training class frequencies (extra rows from the "
                             "same fits)")
    parser.add_argument("--class-similarity", action="store_true",
                        help="print how close the class-name embeddings are, and stop")
    args = parser.parse_args(argv)
    if args.ensemble < 1 or (args.ensemble > 1 and args.sdhsi):
        parser.error("--ensemble takes an int >= 1, and 1 with --sdhsi")
    if args.class_similarity:
        if args.dataset == "idtrees":
            from sklearn_mmlgnet.datasets import load_idtrees

            names = load_idtrees(args.data_home, patch_size=1).class_names
        else:
            names = load_jasper_ridge(args.data_home, random_state=0).class_names
        return class_similarity(names)

    rows = SDHSI_ROWS if args.sdhsi else MMLG_ROWS
    names = [n for n in rows if not args.rows or n in args.rows]
    too_big = [n for n in names if rows[n].get("patch", 0) > PATCH]
    if args.dataset == "jasper_ridge" and too_big:
        # The inner folds' buffer keeps PATCH x PATCH patches off the validation pixels.
        parser.error(f"--rows {too_big} need patches over {PATCH} px, which Jasper Ridge's "
                     f"inner folds do not keep apart")
    results = []  # dicts: row, seed, oa, aa, seconds (per fit), heads (SDHSI)
    if args.dataset == "idtrees":
        from sklearn_mmlgnet.datasets import load_idtrees

        # Large enough for every row's patch; each pipeline crops its own centre.
        patch = max([IDTREES_PATCH] + [rows[n].get("patch", 0) for n in names])
        idt = load_idtrees(args.data_home, patch_size=patch)
        data = {seed: idtrees_inner_folds(idt, seed) for seed in args.seeds}
        if args.sdhsi:  # HSI only, as the benchmark's SDHSI-Net rows: drop the CHM band
            data = {seed: (scene, X[:, :-1], y, folds, where)
                    for seed, (scene, X, y, folds, where) in data.items()}
    else:
        data = {seed: inner_folds(args.data_home, seed) for seed in args.seeds}
    for seed, (scene, X, y, folds, _) in data.items():
        print(f"[seed {seed}] {len(y)} training px; inner folds (train / validation px): "
              + ", ".join(f"{len(tr)} / {len(va)}" for tr, va in folds), flush=True)

    def run(row, seed, build, heads=False, ensemble=args.ensemble, shifts=args.prior_shift):
        scene, X, y, folds, where = data[seed]
        pred = np.empty_like(y)
        shifted = {tau: np.empty_like(y) for tau in shifts}
        seconds, hits = [], None
        classes = np.unique(y)
        for tr, va in folds:
            proba = np.zeros((len(va), len(classes)))
            for i in range(ensemble):
                est, fit_kw = build(scene, where, tr)
                if i:  # the first member is the single model of the other rows
                    est[-1].set_params(random_state=seed + 1000 * i)
                t0 = time.perf_counter()
                est.fit(X[tr], y[tr], **fit_kw)
                seconds.append(time.perf_counter() - t0)
                if ensemble == 1 and not shifts:
                    pred[va] = est.predict(X[va])
                else:  # a class the fold never trained on gets probability 0
                    proba[:, np.searchsorted(classes, est[-1].classes_)] += est.predict_proba(X[va])
            if ensemble > 1 or shifts:
                pred[va] = classes[proba.argmax(axis=1)]
                for tau, p in shifted.items():
                    p[va] = classes[prior_shift(proba, y[tr], classes, tau).argmax(axis=1)]
            if heads:  # correct counts per head, pooled over folds
                counts = head_hits(est, X[va], y[va])
                hits = counts if hits is None else {k: hits[k] + counts[k] for k in hits}
        held = np.concatenate([va for _, va in folds])
        row = ensemble_name(row, ensemble)
        record(row, seed, y[held], pred[held], seconds, hits)
        for tau, p in shifted.items():
            record(f"{row}, log-prior shift {tau:+g}", seed, y[held], p[held], seconds)

    def record(row, seed, y_true, y_pred, seconds, hits=None):
        oa, aa = score(y_true, y_pred)
        res = dict(row=row, seed=seed, oa=oa, aa=aa, seconds=float(np.mean(seconds)))
        if hits is not None:
            res["heads"] = {k: round(100 * float(v) / len(y_true), 2) for k, v in hits.items()}
        results.append(res)
        print(f"  {row:40s} seed {seed}: OA {oa:6.2f}  AA {aa:6.2f}  fit {res['seconds']:6.1f} s"
              + (f"  heads {res['heads']}" if hits else ""), flush=True)
        if args.out:
            with open(args.out, "w") as fh:
                json.dump(results, fh, indent=1)

    classic = {} if args.no_svm else {"tuned SVM (centre pixel)": tuned_svm,
                                      "tuned logistic regression (centre pixel)":
                                          tuned_logistic_regression}
    if classic and args.classic_spectra:
        n_lidar = 1 if args.dataset == "idtrees" else 0
        classic.update({
            f"{name[:-1]}, {SPECTRA_NAMES[args.classic_spectra]})": partial(
                factory, features=make_pipeline(spectra_step(args.classic_spectra, n_lidar),
                                                CenterPixel()))
            for name, factory in list(classic.items())})
    for name, factory in classic.items():
        for seed in args.seeds:
            run(name, seed,
                lambda scene, where, tr, seed=seed, factory=factory:
                    classic_search(where, tr, seed, factory),
                ensemble=1, shifts=())
    for name in names:
        for seed in args.seeds:
            if args.sdhsi:
                def build(scene, where, tr, seed=seed, name=name):
                    return make_pipeline(
                        BandStandardScaler(),
                        SpectralPCA(n_components=args.sdhsi_pca, n_lidar_bands=0,
                                    random_state=seed),
                        SDHSIClassifier(max_epochs=args.epochs, random_state=seed,
                                        **rows[name])), {}
            else:  # as the benchmark's MMLGNet row (IDTReeS: PCA 30 + CHM)
                def build(scene, where, tr, seed=seed, name=name):
                    pipe = mmlg_pipeline(args.dataset, scene.class_names, args.epochs, seed,
                                         **rows[name])
                    if not rows[name].get("early_stopping"):
                        return pipe, {}
                    groups = where["groups"] if "groups" in where else where["blocks"]
                    return pipe, {f"{pipe.steps[-1][0]}__groups": groups[tr]}
            run(name, seed, build, heads=args.sdhsi)

    if args.dataset == "idtrees":
        print(f"\nIDTReeS, inner validation: seed s takes the training pixels of the benchmark's "
              f"plot-grouped outer fold s % 3 (its test pixels unused), pooled out-of-fold "
              f"predictions of 3 plot-grouped inner folds; patch {IDTREES_PATCH}, "
              + (f"HSI only, PCA {args.sdhsi_pca}. Seeds {args.seeds}, SDHSI-Net"
                 if args.sdhsi else f"PCA {BASE_PCA['idtrees']} + CHM. Seeds {args.seeds}, MMLGNet")
              + f" {args.epochs} epochs\n")
    else:
        print(f"\nJasper Ridge, inner validation: pooled out-of-fold predictions of "
              f"SpatialBlockKFold(3 folds, block 32, patch {PATCH}) over the training pixels; "
              f"test split unused. Seeds {args.seeds}, "
              f"{'SDHSI-Net' if args.sdhsi else 'MMLGNet'} {args.epochs} epochs\n")
    base = ([r for r in results if r["row"] == ensemble_name(names[0], args.ensemble)]
            if names else [])
    base = {r["seed"]: r for r in base}
    header = (f"| {'row':40s} | {'OA %':>14s} | {'AA %':>14s} | {'dOA (paired)':>13s} | "
              f"{'dAA (paired)':>13s} | {'fit s':>11s} |")
    print(header)
    print("|" + "|".join("-" * (len(p)) for p in header.split("|")[1:-1]) + "|")
    for row in dict.fromkeys(r["row"] for r in results):
        rs = [r for r in results if r["row"] == row]
        cell = [np.array([r[k] for r in rs]) for k in ("oa", "aa", "seconds")]
        # Seeds differ a lot (each seed is another split of the scene): the difference
        # from the first network row on the same seed is the sharper comparison.
        delta = ["", ""]
        if base and all(r["seed"] in base for r in rs):
            for j, k in enumerate(("oa", "aa")):
                d = np.array([r[k] - base[r["seed"]][k] for r in rs])
                delta[j] = f"{d.mean():+5.2f} ± {d.std():4.2f}"
        print(f"| {row:40s} | {cell[0].mean():6.2f} ± {cell[0].std():5.2f} | "
              f"{cell[1].mean():6.2f} ± {cell[1].std():5.2f} | {delta[0]:>13s} | {delta[1]:>13s} | "
              f"{cell[2].mean():5.1f} ± {cell[2].std():3.1f} |")
        if args.sdhsi and "heads" in rs[0]:
            heads = {k: np.mean([r["heads"][k] for r in rs]) for k in rs[0]["heads"]}
            print("|   per-head OA (mean): " + ", ".join(f"{k} {v:.1f}" for k, v in heads.items()))


if __name__ == "__main__":
    main()
