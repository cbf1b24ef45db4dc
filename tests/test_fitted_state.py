"""The persistence hooks: ``_fitted_state()`` and ``_from_fitted_state(params, state)``."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from sklearn_mmlgnet import MMLGNetClassifier, SDHSIClassifier, text

from .conftest import make_patches

EMB = np.random.RandomState(1).normal(size=(3, 8)).astype(np.float32)
MML_TINY = dict(module__hsi_channels=(4, 8), module__lidar_channels=(4,), module__fusion_dim=8,
                module__spectral_channels=(8,), batch_size=32, random_state=0)
SD_TINY = dict(module__conv3d_channels=(4,), module__spectral_kernels=(3,),
               module__conv2d_channels=8, module__hidden=8, module__student_hidden=4,
               batch_size=32, random_state=0)


def _copy_through_json(state):
    """The state as a file format would give it back: JSON for the attributes (arrays kept
    as arrays, with their dtype), fresh tensors for the weights."""
    attributes = {}
    for name, value in state["attributes"].items():
        if isinstance(value, np.ndarray):
            attributes[name] = np.array(value.tolist(), dtype=value.dtype)
        else:
            attributes[name] = json.loads(json.dumps(value))  # must be JSON-able
    return {"attributes": attributes,
            "weights": {k: v.detach().clone() for k, v in state["weights"].items()}}


@pytest.mark.parametrize("make, labels", [
    (lambda: MMLGNetClassifier(
        text_encoder="sentence-transformers", class_names={0: "Woods", 1: "Roads", 2: "Vineyard"},
        self_distillation=True, learn_temperature=True, temperature=0.1, **MML_TINY), None),
    (lambda: MMLGNetClassifier(text_embeddings={"a": EMB[0], "b": EMB[1], "c": EMB[2]},
                               patch_size=3, **MML_TINY), ["a", "b", "c"]),
    (lambda: MMLGNetClassifier(loss="cross_entropy", n_lidar_bands=0, **MML_TINY), None),
    (lambda: SDHSIClassifier(**SD_TINY), ["Tree", "Water", "Dirt"]),
    (lambda: SDHSIClassifier(self_distillation=False, predict_heads="final",
                             module__student_stages=None, **SD_TINY), None),
], ids=["MMLGNet-encoder", "MMLGNet-embeddings", "MMLGNet-linear", "SDHSI", "SDHSI-plain"])
def test_fitted_state_round_trip_predicts_identically(make, labels, monkeypatch):
    X, y = make_patches(n_per_class=20, labels=labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # integer labels as names
        clf = make().set_params(max_epochs=2).fit(X, y)
    proba, pred = clf.predict_proba(X), clf.predict(X)
    scores = clf.head_scores(X, y)
    state = clf._fitted_state()
    assert set(state["attributes"]) >= {"classes_", "n_features_in_", "patch_size_"}
    if isinstance(clf, MMLGNetClassifier):
        assert set(state["attributes"]) >= {"n_hsi_bands_", "class_names_", "text_embeddings_",
                                            "text_encoder_info_"}
    state = _copy_through_json(state)

    # restoring needs no text encoder and draws nothing from the global RNG
    def boom(*args, **kwargs):
        raise AssertionError("no text encoder runs when a fitted state is restored")

    monkeypatch.setattr(text, "encode_class_names", boom)
    monkeypatch.setattr(text.SentenceTransformerTextEncoder, "encode", boom)
    torch.manual_seed(5)
    expected_draw = torch.rand(2)
    torch.manual_seed(5)
    params = clf.get_params(deep=False)
    restored = type(clf)._from_fitted_state(params, state)
    np.testing.assert_array_equal(torch.rand(2), expected_draw)

    assert type(restored) is type(clf) and restored is not clf
    assert not any(m.training for m in restored.net_.module_.modules())
    np.testing.assert_array_equal(restored.predict_proba(X), proba)
    np.testing.assert_array_equal(restored.predict(X), pred)
    assert restored.predict(X).dtype == pred.dtype
    assert restored.head_scores(X, y) == scores
    for name, value in clf._fitted_state()["attributes"].items():
        np.testing.assert_equal(getattr(restored, name), value)
    assert restored.get_params(deep=False).keys() == params.keys()
    if isinstance(clf, MMLGNetClassifier) and clf.loss != "cross_entropy":
        assert restored.temperature_ == clf.temperature_
    # the restored model goes on training as a fitted one does
    monkeypatch.undo()
    restored.set_params(warm_start=True, max_epochs=0).fit(X, y)
    np.testing.assert_array_equal(restored.predict_proba(X), proba)


@pytest.mark.parametrize("cls", [MMLGNetClassifier, SDHSIClassifier])
def test_fitted_state_of_an_unfitted_estimator_is_an_error(cls):
    with pytest.raises(NotFittedError):
        cls()._fitted_state()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
@pytest.mark.parametrize("cls, params", [(MMLGNetClassifier, dict(text_embeddings=EMB, **MML_TINY)),
                                         (SDHSIClassifier, SD_TINY)], ids=["MMLGNet", "SDHSI"])
def test_a_model_fitted_on_a_gpu_loads_on_the_cpu(cls, params):
    X, y = make_patches(n_per_class=10)
    clf = cls(max_epochs=1, **params).fit(X, y)
    gpu_params = {**clf.get_params(deep=False), "device": "cuda"}  # as a GPU fit records them
    with pytest.warns(UserWarning, match="device='cuda' and no CUDA device is present"):
        loaded = cls._from_fitted_state(gpu_params, _copy_through_json(clf._fitted_state()))
    assert loaded.device == "cpu"
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
