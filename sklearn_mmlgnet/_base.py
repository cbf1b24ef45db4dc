"""The shared base of the patch classifiers: parameters, ``fit`` and prediction.

A subclass names its torch module (``_module_class``), the keyword arguments its
fitted state gives the module (``_module_kwargs``) and the fitted attributes of its
own (``_set_fitted_attributes``). Parameters prefixed ``module__`` or
``criterion__`` are routed to the module and the criterion, as in skorch.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import (Interval, StrOptions,
                                            validate_parameter_constraints)
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.validation import check_consistent_length, check_is_fitted, validate_data

from ._class_names import check_labels
from ._net import PRECISIONS, PatchNet, cosine_schedule, softmax, train_loader
from ._validation import as_patches, center_crop, check_device, check_patch_size
from .augment import N_SYMMETRIES, dihedral
from .losses import ContrastiveCriterion
from .patches import ScenePatches

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
ROUTED_PREFIXES = ("module__", "criterion__")
_PREDICT_PARAMETERS = ("predict_heads", "test_time_augment", "batch_size")


class PatchClassifierBase(ClassifierMixin, BaseEstimator):
    """Fit and prediction shared by the classifiers of (n, bands, P, P) patch arrays."""

    _parameter_constraints = {
        "patch_size": [Interval(Integral, 1, None, closed="left"), None],
        "self_distillation": ["boolean"],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "optimizer": [StrOptions(set(OPTIMIZERS))],
        "lr_schedule": [StrOptions({"cosine"}), None],
        "augment": ["boolean"],
        "test_time_augment": ["boolean"],
        "predict_heads": [StrOptions({"final", "mean"})],
        "label_smoothing": [Interval(Real, 0, 1, closed="left")],
        "class_weight": [StrOptions({"balanced", "balanced_sqrt"}), dict, None],
        "max_epochs": [Interval(Integral, 0, None, closed="left")],
        # Batch norm cannot train on a batch of one.
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "train_split": [callable, None],
        "callbacks": [list, None],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "device": [str, torch.device],
        "precision": [StrOptions(set(PRECISIONS))],
        "random_state": ["random_state"],
    }

    #: Fitted attributes that, with the module's weights, make up a fitted model.
    _state_attributes = ("classes_", "n_features_in_", "patch_size_")
    #: Private attributes a fit sets for its own use; gone when it ends, however it ends.
    _during_fit_attributes = ()

    def _store_routed(self, kwargs):
        """``__init__``'s ``**kwargs``: only ``module__*`` / ``criterion__*`` names."""
        for key, value in kwargs.items():
            if not key.startswith(ROUTED_PREFIXES):
                raise TypeError(
                    f"{type(self).__name__}.__init__() got an unexpected keyword argument {key!r}; "
                    "extra arguments must start with 'module__' or 'criterion__'.")
            setattr(self, key, value)

    def get_params(self, deep=True):
        params = super().get_params(deep=deep)
        params.update({k: v for k, v in vars(self).items() if k.startswith(ROUTED_PREFIXES)})
        return params

    def set_params(self, **params):
        for key in [k for k in params if k.startswith(ROUTED_PREFIXES)]:
            setattr(self, key, params.pop(key))
        return super().set_params(**params)

    def _routed(self, prefix):
        return {k[len(prefix):]: v for k, v in self.get_params(deep=False).items()
                if k.startswith(prefix)}

    # ------------------------------------------------------------------ fit
    def fit(self, X, y, groups=None, **fit_params):
        """Train on patches ``X`` of shape (n_samples, n_bands, P, P) and labels ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_bands, P, P) or (n_samples, n_bands)
            Patches, HSI bands first then LiDAR bands; a 2-D array is read as P = 1.
            A :class:`~sklearn_mmlgnet.patches.ScenePatches` is read batch by batch
            from its scene, never as a whole array.
        y : array-like of shape (n_samples,)
            Class labels: the class names themselves (str) or any labels with
            ``class_names`` mapping them to names.
        groups : array-like of shape (n_samples,), optional
            Group of each sample (a crown, a plot, a spatial block), passed to
            ``train_split`` so that its validation part holds whole groups, e.g.
            ``train_split=ValidSplit(GroupShuffleSplit(1, test_size=0.2))``. Needs a
            ``train_split``. In a Pipeline: ``pipe.fit(X, y, mmlgnetclassifier__groups=g)``.
        **fit_params
            Passed to :meth:`skorch.NeuralNet.partial_fit`.

        Returns
        -------
        self
        """
        fitted = {k: v for k, v in vars(self).items() if _is_fitted_name(k)}
        try:
            return self._fit(X, y, groups, fit_params)
        except BaseException:
            # A failed fit leaves the estimator as it was: unfitted, or the last fit whole.
            for name in [k for k in vars(self) if _is_fitted_name(k)]:
                delattr(self, name)
            vars(self).update(fitted)
            raise
        finally:
            for name in self._during_fit_attributes:
                vars(self).pop(name, None)

    def _fit(self, X, y, groups, fit_params):
        self._validate_params()
        check_device(self.device)
        previous = self._previous_fit()
        X = self._validate_X(X, reset=True)
        y = check_labels(y)
        check_consistent_length(X, y)
        groups = self._check_groups(groups, len(X))

        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"y holds {len(self.classes_)} class ({self.classes_.tolist()}); "
                             "at least 2 classes are needed to train a classifier.")
        self.patch_size_ = check_patch_size(self.patch_size, X.shape[-1])
        X = _crop(X, self.patch_size_)
        self._set_fitted_attributes(X)
        with _seeded(self.random_state, self.device):
            self.net_ = self._build_net(self._class_weight(y))
            self._continue_from(previous)
            self._prepare_training()
            self.net_.split_groups = groups
            try:
                self.net_.partial_fit(X, y_idx.astype(np.int64), **fit_params)
            finally:
                self.net_.split_groups = None
        self.net_.module_.eval()  # once, here: prediction never switches modes
        self._finish_training()
        self.history_ = self.net_.history
        return self

    def _set_fitted_attributes(self, X):
        """Set the fitted attributes a subclass's module needs (none by default)."""

    def _prepare_training(self):
        """Give the new network what trains next to its weights (nothing by default)."""

    def _finish_training(self):
        """Keep what trained next to the weights as fitted state (nothing by default)."""

    def _previous_fit(self):
        """With ``warm_start``, what the next fit may continue from: (net, classes, bands)."""
        if not (self.warm_start and hasattr(self, "net_")):
            return None
        return self.net_, self.classes_, self.n_features_in_

    def _continue_from(self, previous):
        """Load the previous fit's weights into the new network when they fit it."""
        if previous is None:
            return
        net, classes, n_features = previous
        reason = None
        if not np.array_equal(classes, self.classes_):
            reason = f"y holds other classes than at the last fit ({classes.tolist()})"
        elif n_features != self.n_features_in_:
            reason = f"X has {self.n_features_in_} bands, the fitted network {n_features}"
        else:
            old, new = net.module_.state_dict(), self.net_.module_.state_dict()
            if old.keys() != new.keys() or any(old[k].shape != new[k].shape for k in new):
                # Checked first: load_state_dict copies what fits before it raises.
                reason = "the parameters that shape the network changed since the last fit"
            else:
                keep = self._state_set_by_parameters(new.keys())
                self.net_.module_.load_state_dict(
                    {k: new[k] if k in keep else v for k, v in old.items()})
        if reason is not None:
            warnings.warn(f"warm_start=True but {reason}: training a new network from scratch.",
                          UserWarning, stacklevel=3)

    def _state_set_by_parameters(self, keys):
        """State-dict entries a warm start takes from the new network, not the last fit."""
        return set()

    def _check_groups(self, groups, n_samples):
        """``groups`` as a 1-D array of ``n_samples``, or None; errors name ``groups``."""
        if groups is None:
            return None
        if not self.train_split:
            raise ValueError(
                "groups are passed to train_split, to keep whole groups out of the "
                "validation part, but train_split is None; give a train_split, e.g. "
                "skorch.dataset.ValidSplit(sklearn.model_selection.GroupShuffleSplit(1)).")
        groups = np.asarray(groups)
        if groups.ndim != 1 or len(groups) != n_samples:
            raise ValueError(f"groups must be 1-D with one group per sample of X ({n_samples}); "
                             f"got shape {groups.shape}.")
        return groups

    def _class_weight(self, y):
        """Per-class loss weights in ``classes_`` order, or None."""
        if self.class_weight is None:
            return None
        sqrt = self.class_weight == "balanced_sqrt"
        try:
            weights = compute_class_weight("balanced" if sqrt else self.class_weight,
                                           classes=self.classes_, y=y)
        except ValueError as exc:
            raise ValueError(f"class_weight: {exc}") from exc
        return (np.sqrt(weights) if sqrt else weights).astype(np.float32)

    def _build_net(self, class_weight):
        """A new, initialized :class:`PatchNet` from the parameters and fitted attributes."""
        module_kwargs = self._module_kwargs()
        criterion_kwargs = dict(loss=self._loss(), distill=bool(self.self_distillation),
                                label_smoothing=float(self.label_smoothing),
                                class_weight=class_weight)
        for prefix, target, fixed in (("module__", self._module_class, module_kwargs),
                                      ("criterion__", ContrastiveCriterion, criterion_kwargs)):
            routed = self._routed(prefix)
            _check_routed(prefix, routed, target, fixed)
            fixed.update(routed)
        callbacks = list(self.callbacks or [])
        if self.lr_schedule == "cosine":
            callbacks.append(("lr_schedule", cosine_schedule(self.max_epochs)))
        net = PatchNet(
            module=self._module_class,
            criterion=ContrastiveCriterion,
            optimizer=OPTIMIZERS[self.optimizer],
            lr=self.lr,
            optimizer__weight_decay=float(self.weight_decay),
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            train_split=self.train_split,
            callbacks=callbacks,
            predict_nonlinearity=softmax,
            verbose=self.verbose,
            device=self.device,
            precision=self.precision,
            iterator_train=train_loader,
            iterator_train__shuffle=True,
            iterator_train__augment=bool(self.augment),
            **{f"module__{k}": v for k, v in module_kwargs.items()},
            **{f"criterion__{k}": v for k, v in criterion_kwargs.items()},
        )
        return net.initialize()

    def _loss(self):
        return "cross_entropy"

    # -------------------------------------------------------------- persistence
    def _fitted_state(self):
        """The fitted attributes and the module's weights (see ``_from_fitted_state``)."""
        check_is_fitted(self)
        return {"attributes": {name: getattr(self, name) for name in self._state_attributes},
                "weights": self.net_.module_.state_dict()}

    @classmethod
    def _from_fitted_state(cls, params, state):
        """A fitted estimator from its parameters and ``_fitted_state()``, in eval mode.

        A model fitted on a GPU loads on the CPU where no CUDA device is present.
        """
        device = params.get("device", "cpu")
        if torch.device(device).type == "cuda" and not torch.cuda.is_available():
            warnings.warn(f"the model was fitted with device={device!r} and no CUDA device is "
                          "present: it is loaded on the CPU (device='cpu').", UserWarning,
                          stacklevel=2)
            params = {**params, "device": "cpu"}
        est = cls(**params)
        for name, value in state["attributes"].items():
            setattr(est, name, value)
        with torch.random.fork_rng(devices=[]):  # the initial weights are replaced below
            est.net_ = est._build_net(None)
        est.net_.module_.load_state_dict(state["weights"])
        est.net_.module_.eval()
        est.history_ = est.net_.history
        return est

    # -------------------------------------------------------------- predict
    def _check_predict_X(self, X):
        check_is_fitted(self)
        # Read at prediction, so they may have been set after fit.
        validate_parameter_constraints(
            {k: self._parameter_constraints[k] for k in _PREDICT_PARAMETERS},
            {k: getattr(self, k) for k in _PREDICT_PARAMETERS}, caller_name=type(self).__name__)
        X = self._validate_X(X, reset=False)
        if X.shape[-1] < self.patch_size_:
            raise ValueError(
                f"X patches are {X.shape[-1]} x {X.shape[-1]} but the model was fitted with "
                f"patch_size={self.patch_size_}; extract patches of at least that size.")
        return _crop(X, self.patch_size_, copy=False)

    def _validate_X(self, X, reset):
        """``X`` as patches; :class:`~sklearn_mmlgnet.patches.ScenePatches` stay lazy."""
        if not isinstance(X, ScenePatches):
            return as_patches(validate_data(self, X, reset=reset, allow_nd=True,
                                            dtype=np.float32))
        if reset:
            self.n_features_in_ = X.shape[1]
        elif X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features (bands), but "
                             f"{type(self).__name__} is expecting {self.n_features_in_} "
                             "features as input.")
        return X

    def _batches(self, X):
        """Tensors of at most ``batch_size`` patches, on the network's device."""
        for start in range(0, len(X), self.batch_size):
            yield torch.as_tensor(np.ascontiguousarray(X[start:start + self.batch_size]),
                                  device=self.net_.device)

    def _symmetries(self):
        return range(N_SYMMETRIES) if self.test_time_augment else (0,)

    def predict_proba(self, X):
        """Class probabilities; columns follow ``classes_`` and rows sum to 1.

        With ``test_time_augment`` the mean over the 8 symmetries of each patch; with
        self-distillation and ``predict_heads="mean"``, the mean of the final head's
        and the students' probabilities. The fitted model is only read, so one model
        can serve several threads.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_bands, P, P)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        X = self._check_predict_X(X)
        module = self.net_.module_
        out = []
        with torch.inference_mode():
            for xb in self._batches(X):
                proba = sum(torch.softmax(module(dihedral(xb, k), heads=self.predict_heads)
                                          .double(), dim=1) for k in self._symmetries())
                out.append(proba.cpu().numpy())
        proba = np.concatenate(out)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict(self, X):
        """Predicted labels, as given in ``y`` at fit.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_bands, P, P)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def head_scores(self, X, y):
        """Accuracy of every classifier head on ``(X, y)``.

        With self-distillation the student heads are scored next to the final one,
        which shows what each encoder stage learned; without it only ``"final"`` is
        reported. With ``test_time_augment`` every head scores the mean of its
        probabilities over the 8 symmetries, as ``predict`` does.

        Returns
        -------
        scores : dict
            ``{"stage_1": acc, ..., "final": acc}``.
        """
        X = self._check_predict_X(X)
        y = check_labels(y)
        check_consistent_length(X, y)
        unknown = sorted(map(str, set(np.unique(y).tolist()) - set(self.classes_.tolist())))
        if unknown:
            raise ValueError(f"y holds labels unseen at fit: {unknown}.")
        y_idx = np.searchsorted(self.classes_, y)
        module = self.net_.module_
        correct, start = None, 0
        with torch.inference_mode():
            for xb in self._batches(X):
                proba = None  # per head, summed over the symmetries
                for k in self._symmetries():
                    final, aux = module(dihedral(xb, k), heads="all")
                    p = [torch.softmax(h.double(), dim=1) for h in [*aux, final]]
                    proba = p if proba is None else [a + b for a, b in zip(proba, p)]
                yb = y_idx[start:start + len(xb)]
                hits = np.array([(p.argmax(1).cpu().numpy() == yb).sum() for p in proba])
                correct = hits if correct is None else correct + hits
                start += len(xb)
        names = [*self._student_names(len(correct) - 1), "final"]
        return {name: float(c) / len(X) for name, c in zip(names, correct)}

    def _student_names(self, n_students):
        return [f"stage_{k + 1}" for k in range(n_students)]


def _is_fitted_name(name):
    return name.endswith("_") and not name.startswith("_")


def _crop(X, patch_size, copy=True):
    """The centre ``patch_size`` of every patch: an array (contiguous with ``copy``, else
    a view), or still lazy."""
    if isinstance(X, ScenePatches):
        return X.crop(patch_size) if patch_size != X.patch_size else X
    X = center_crop(X, patch_size)
    return np.ascontiguousarray(X) if copy else X


@contextlib.contextmanager
def _seeded(random_state, device):
    """Seed torch from ``random_state`` for a block, restoring the global RNG after.

    An int ``random_state`` gives the same seed every fit; None draws a fresh one.
    """
    seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def _check_routed(prefix, routed, target, fixed):
    """Refuse routed names the target does not take, or that the estimator sets itself."""
    accepted = set(inspect.signature(target).parameters)
    for name in routed:
        if name in fixed:
            raise ValueError(f"{prefix}{name} is set by the estimator itself (from its "
                             "parameters and the data); it cannot be routed.")
        if name not in accepted:
            raise ValueError(
                f"{prefix}{name} is not a parameter of {target.__name__}; {prefix}* takes "
                f"{sorted(accepted - set(fixed))}.")
