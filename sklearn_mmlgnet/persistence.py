"""Model files that cannot run code when loaded: :func:`save_model` and :func:`load_model`.

**The format.** One `safetensors <https://huggingface.co/docs/safetensors>`_ file.
Its tensors are the model's arrays (network weights, the transformers' fitted
arrays, class embeddings); its metadata holds a JSON description of the model:
each object by class name from an allow-list (``Pipeline``, the transformers of
:mod:`sklearn_mmlgnet.preprocessing` and the PCA inside them, ``MMLGNetClassifier``,
``SDHSIClassifier``), its parameters and fitted attributes, the scene information of
a :class:`~sklearn_mmlgnet.scene.SceneModel` (band counts, patch size, class names,
wavelengths, CRS and transform of the training scene) and the versions of the
packages that wrote it. Loading reads JSON and raw arrays: nothing in the file is
executed, and a class outside the allow-list is refused.

**Pickles.** A pickle (or joblib) file runs whatever code it names when it is
loaded: a model file from an untrusted source could take over the machine. Such a
file is loaded only with ``load_model(path, trust=True)`` (``mmlgnet predict
--trust-pickle``), and only a file you made yourself or got from someone you trust
should be.

Parameters an estimator holds as Python objects (``callbacks``, ``train_split``, a
``TextEncoder`` instance, a ``RandomState``) are not stored: the loaded estimator
has their defaults, and the description lists them under ``not_restored``.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import numbers
import re
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from . import MMLGNetClassifier, SDHSIClassifier, __version__
from ._io import atomic_path, check_outputs, check_readable
from .preprocessing import (
    BandStandardScaler,
    CenterPixel,
    ExtendedMorphologicalProfile,
    SpectralNormalizer,
    SpectralPCA,
)
from .scene import SceneModel

__all__ = ["save_model", "load_model", "ALLOWED_CLASSES", "FORMAT"]

#: Written in the file's metadata; a file without it is not a model of this package.
FORMAT = "sklearn-mmlgnet-model"
FORMAT_VERSION = 1
#: The only classes a model file may name.
ALLOWED_CLASSES = {
    f"{cls.__module__.split('.')[0]}.{cls.__name__}": cls
    for cls in (Pipeline, PCA, BandStandardScaler, CenterPixel, ExtendedMorphologicalProfile,
                SpectralNormalizer, SpectralPCA, MMLGNetClassifier, SDHSIClassifier)
}
_NAME_OF = {cls: name for name, cls in ALLOWED_CLASSES.items()}
_ATTRIBUTE = re.compile(r"^_?[A-Za-z][A-Za-z0-9_]*$")
_STORED_DTYPES = "biuf"


def _versions():
    out = {"sklearn_mmlgnet": __version__}
    for dist in ("numpy", "scikit-learn", "torch", "skorch", "safetensors"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover
            out[dist] = None
    return out


# ------------------------------------------------------------------- writing
class _Encoder:
    """JSON-able description of a value; arrays go to ``tensors`` and are referenced by key."""

    def __init__(self):
        self.tensors = {}

    def array(self, value, where):
        value = np.asarray(value)
        if value.dtype.kind in _STORED_DTYPES:
            key = f"t{len(self.tensors)}"
            fortran = value.ndim > 1 and value.flags.f_contiguous and not value.flags.c_contiguous
            # Stored in C order; a Fortran-ordered array (an SVD's components) comes back so,
            # since the memory order decides BLAS's summation order.
            self.tensors[key] = np.ascontiguousarray(value.T if fortran else value)
            return {"ndarray_f" if fortran else "ndarray": key}
        if value.dtype.kind == "U":
            return {"ndarray_str": {"dtype": value.dtype.str, "shape": list(value.shape),
                                    "items": value.ravel().tolist()}}
        if value.dtype.kind == "O":
            return {"ndarray_object": {"shape": list(value.shape),
                                       "items": [self(v, where) for v in value.ravel()]}}
        raise TypeError(f"{where} is an array of {value.dtype}, which the model format does not "
                        "store.")

    def __call__(self, value, where):
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, numbers.Real):
            value = float(value)
            return value if math.isfinite(value) else {"float": repr(value)}
        if isinstance(value, torch.Tensor):
            return self.array(value.detach().cpu().numpy(), where)
        if isinstance(value, np.ndarray):
            return self.array(value, where)
        if isinstance(value, (tuple, list)):
            return {type(value).__name__: [self(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, dict):
            return {"dict": [[self(k, where), self(v, f"{where}[{k!r}]")]
                             for k, v in value.items()]}
        if type(value) in _NAME_OF:
            return {"estimator": self.estimator(value, where)}
        raise TypeError(f"{where} holds a {type(value).__name__}, which the model format does "
                        "not store (only sklearn-mmlgnet's estimators and transformers, a "
                        "Pipeline of them, numbers, strings, arrays and containers of these).")

    def estimator(self, est, where):
        name = _NAME_OF[type(est)]
        params, not_restored = {}, []
        for key, value in est.get_params(deep=False).items():
            try:
                params[key] = self(value, f"{where}.{key}")
            except TypeError:
                if isinstance(est, Pipeline) or not hasattr(est, "_from_fitted_state"):
                    raise
                not_restored.append(key)  # callbacks, train_split, encoder objects
        out = {"class": name, "params": params, "not_restored": not_restored}
        if hasattr(est, "_from_fitted_state"):
            state = est._fitted_state()
            out["attributes"] = {k: self(v, f"{where}.{k}") for k, v in state["attributes"].items()}
            out["weights"] = {k: self.array(v.detach().cpu().numpy(), f"{where} weight {k}")
                              for k, v in state["weights"].items()}
        elif not isinstance(est, Pipeline):
            out["attributes"] = {k: self(v, f"{where}.{k}") for k, v in vars(est).items()
                                 if k not in params and _ATTRIBUTE.match(k)}
        return out


def save_model(model, path):
    """Write a fitted model to ``path`` in the safe model format, whole or not at all.

    Parameters
    ----------
    model : SceneModel, Pipeline or estimator
        Fitted; every object in it of an allowed class (see :data:`ALLOWED_CLASSES`).
    path : str or Path
        The file to write (for example ``model.safetensors``).

    Returns
    -------
    path : Path

    Raises
    ------
    TypeError
        The model holds an object the format does not store (name and where).
    """
    enc = _Encoder()
    if isinstance(model, SceneModel):
        _check_fitted(model.estimator)
        body = {"scene_model": {"estimator": enc(model.estimator, "model.estimator"),
                                "info": enc(model.info, "model.info")}}
    else:
        _check_fitted(model)
        body = enc(model, "model")
    description = {"format": FORMAT, "format_version": FORMAT_VERSION, "versions": _versions(),
                   "model": body}
    check_outputs({"path": path}, {})
    data = save(enc.tensors, metadata={"format": FORMAT, "description": json.dumps(description)})
    try:
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(data)  # Python's own write: a full disk is an OSError
    except OSError as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError)) or exc.errno is None:
            raise
        raise OSError(exc.errno, f"could not write {path} ({exc.strerror}); is the disk full?") \
            from None
    return Path(path)


def _check_fitted(estimator):
    if type(estimator) not in _NAME_OF:
        raise TypeError(f"model is a {type(estimator).__name__}; the model format stores "
                        f"{', '.join(sorted(ALLOWED_CLASSES))} (and Pipelines of them).")
    check_is_fitted(estimator[-1] if isinstance(estimator, Pipeline) else estimator)


# ------------------------------------------------------------------- reading
class _Decoder:
    def __init__(self, path, reader):
        self.path, self.reader = path, reader

    def bad(self, what):
        return ValueError(f"model: {self.path} is not a valid sklearn-mmlgnet model file "
                          f"({what}).")

    def array(self, key):
        if not isinstance(key, str) or key not in self.reader.keys():
            raise self.bad(f"it refers to a missing array {str(key)[:40]!r}")
        return self.reader.get_tensor(key)

    def __call__(self, value):
        if value is None or isinstance(value, (bool, str, int, float)):
            return value
        if not (isinstance(value, dict) and len(value) == 1):
            raise self.bad(f"unexpected {type(value).__name__} in its description")
        (tag, body), = value.items()
        if tag == "ndarray":
            return self.array(body)
        if tag == "ndarray_f":
            return self.array(body).T
        if tag in ("list", "tuple") and isinstance(body, list):
            items = [self(v) for v in body]
            return items if tag == "list" else tuple(items)
        if tag == "dict" and isinstance(body, list) and all(
                isinstance(kv, list) and len(kv) == 2 for kv in body):
            return {self._key(k): self(v) for k, v in body}
        if tag == "float" and body in ("nan", "inf", "-inf"):
            return float(body)
        if tag in ("ndarray_str", "ndarray_object") and isinstance(body, dict):
            try:
                items = body["items"] if tag == "ndarray_str" else [self(v) for v in body["items"]]
                return np.array(items, dtype=body.get("dtype", object)).reshape(body["shape"])
            except (KeyError, TypeError, ValueError) as exc:
                raise self.bad(f"a malformed array ({exc})") from None
        if tag == "estimator" and isinstance(body, dict):
            return self.estimator(body)
        raise self.bad(f"unexpected entry {tag!r}")

    def _key(self, key):
        key = self(key)
        if isinstance(key, (list, dict, np.ndarray)):
            raise self.bad("a dict key that is not a scalar")
        return key

    def estimator(self, body):
        name = body.get("class")
        cls = ALLOWED_CLASSES.get(name) if isinstance(name, str) else None
        if cls is None:
            raise ValueError(
                f"model: {self.path} names the class {str(name)[:80]!r}, which is not one "
                f"sklearn-mmlgnet loads (allowed: {', '.join(sorted(ALLOWED_CLASSES))}).")
        params, attributes = body.get("params"), body.get("attributes") or {}
        for what, names in (("parameter", params), ("attribute", attributes)):
            if not isinstance(names, dict) or not all(
                    isinstance(k, str) and _ATTRIBUTE.match(k) for k in names):
                raise self.bad(f"bad {what} names for {name}")
        params = {k: self(v) for k, v in params.items()}
        attributes = {k: self(v) for k, v in attributes.items()}
        try:
            if hasattr(cls, "_from_fitted_state"):
                weights = body.get("weights")
                if not isinstance(weights, dict):
                    raise self.bad(f"no weights for {name}")
                weights = {k: torch.from_numpy(np.array(self(v))) for k, v in weights.items()}
                return cls._from_fitted_state(params, {"attributes": attributes,
                                                       "weights": weights})
            if cls is Pipeline:
                steps = params.get("steps")
                if not (isinstance(steps, list) and all(isinstance(s, tuple) and len(s) == 2
                                                        for s in steps)):
                    raise self.bad("a Pipeline without a list of steps")
                return Pipeline(**{**params, "steps": list(steps)})
            est = cls(**params)
            for key, value in attributes.items():
                setattr(est, key, value)
            return est
        except (TypeError, RuntimeError, KeyError) as exc:
            raise ValueError(f"model: {self.path}: its {name} could not be rebuilt by this "
                             f"version of sklearn-mmlgnet ({__version__}): "
                             f"{type(exc).__name__}: {exc}") from None


def _is_safetensors(path):
    """Whether ``path`` starts like a safetensors file (a length, then a JSON header)."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return False
        n = int.from_bytes(head, "little")
        size = Path(path).stat().st_size
        if not 2 <= n <= min(size - 8, 100_000_000):
            return False
        first = f.read(1)
    return first == b"{"


def load_model(path, trust=False):
    """Load a model written by :func:`save_model` (or, with ``trust=True``, a pickle).

    Parameters
    ----------
    path : str or Path
    trust : bool, default=False
        Also load pickle / joblib files. **Unpickling runs whatever code the file
        names**: a model file from an untrusted source could take over the machine.
        Pass True only for files you made yourself or got from someone you trust.

    Returns
    -------
    model : SceneModel or estimator
        What was saved: a :class:`~sklearn_mmlgnet.scene.SceneModel` for models of
        ``mmlgnet fit`` / :func:`~sklearn_mmlgnet.scene.fit_scene`.

    Raises
    ------
    FileNotFoundError, PermissionError
        The file is missing or cannot be read.
    ValueError
        The file is not a model of this format (nor a trusted pickle), names a
        class outside the allow-list, or is corrupt.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"model: no such file: {path}")
    check_readable(path, "model")
    if _is_safetensors(path):
        return _load_safe(path)
    if not trust:
        raise ValueError(
            f"model: {path} is not a sklearn-mmlgnet model file (the safe format save_model "
            "and `mmlgnet fit` write). If it is a pickle / joblib file: loading one runs any code "
            "it contains, so load it only if you trust where it came from, with "
            "load_model(path, trust=True) or `mmlgnet predict --trust-pickle`.")
    import joblib

    try:
        model = joblib.load(path)
    except Exception as exc:  # noqa: BLE001 - unpickling raises anything on a wrong file
        raise ValueError(f"model: {path} could not be loaded as a pickle "
                         f"({type(exc).__name__}: {exc}).") from None
    est = model.estimator if isinstance(model, SceneModel) else model
    if not (hasattr(est, "predict") and hasattr(est, "classes_")):
        raise ValueError(f"model: {path} holds a {type(model).__name__}, not a fitted classifier.")
    return model


def _load_safe(path):
    try:
        with safe_open(str(path), framework="np") as reader:
            meta = reader.metadata() or {}
            if meta.get("format") != FORMAT:
                raise ValueError(f"model: {path} is a safetensors file but not a sklearn-mmlgnet "
                                 "model (its metadata has no format "
                                 f"{FORMAT!r}).")
            try:
                description = json.loads(meta.get("description", ""))
            except (ValueError, RecursionError):
                raise ValueError(f"model: {path} has a corrupt description.") from None
            if not isinstance(description, dict):
                raise ValueError(f"model: {path} has a corrupt description.")
            version = description.get("format_version")
            if not isinstance(version, int) or version > FORMAT_VERSION:
                raise ValueError(
                    f"model: {path} is in model format version {version!r}; this version of "
                    f"sklearn-mmlgnet ({__version__}) reads versions up to {FORMAT_VERSION}. "
                    "Upgrade sklearn-mmlgnet.")
            decode = _Decoder(path, reader)
            body = description.get("model")
            if isinstance(body, dict) and set(body) == {"scene_model"} and \
                    isinstance(body["scene_model"], dict):
                info = decode(body["scene_model"].get("info"))
                if not isinstance(info, dict):
                    raise decode.bad("scene information that is not a dict")
                return SceneModel(decode(body["scene_model"].get("estimator")), info)
            return decode(body)
    except SafetensorError as exc:
        raise ValueError(f"model: {path} is a corrupt safetensors file ({exc}).") from None
    except RecursionError:
        raise ValueError(f"model: {path} has a description nested too deeply.") from None
