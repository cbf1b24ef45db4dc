"""One fitted model serves several threads: prediction only reads it (issue 25, item 3)."""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from sklearn_mmlgnet import MMLGNetClassifier, SDHSIClassifier

from .conftest import make_patches

EMB = np.random.RandomState(1).normal(size=(3, 8)).astype(np.float32)
N_THREADS, N_ROUNDS = 4, 2


@pytest.fixture(scope="module", params=["MMLGNet", "SDHSI"])
def fitted(request):
    """A model with students, predicting with the mean of its heads over the 8 symmetries."""
    X, y = make_patches(n_per_class=24)
    common = dict(self_distillation=True, predict_heads="mean", test_time_augment=True,
                  max_epochs=2, batch_size=16, random_state=0)
    if request.param == "MMLGNet":
        clf = MMLGNetClassifier(text_embeddings=EMB, module__hsi_channels=(4, 8),
                                module__lidar_channels=(4,), module__fusion_dim=8,
                                module__spectral_channels=(8,), **common)
    else:
        clf = SDHSIClassifier(module__conv3d_channels=(4,), module__spectral_kernels=(3,),
                              module__conv2d_channels=8, module__hidden=8,
                              module__student_hidden=4, **common)
    return clf.fit(X, y), X


@contextlib.contextmanager
def spy_on(module):
    """Record every attribute set on the module or a submodule (``train()`` and ``eval()`` set
    ``training``) and the mode of every submodule's forward, from any thread."""
    record = {"set": [], "training": []}
    hooks, classes = [], []
    for sub in module.modules():
        hooks.append(sub.register_forward_pre_hook(
            lambda mod, args: record["training"].append(mod.training)))
        cls = type(sub)

        def __setattr__(self, name, value, _cls=cls):
            record["set"].append((_cls.__name__, name))
            _cls.__setattr__(self, name, value)

        classes.append((sub, cls))
        sub.__class__ = type(cls.__name__, (cls,), {"__setattr__": __setattr__})
    try:
        yield record
    finally:
        for sub, cls in classes:
            object.__setattr__(sub, "__class__", cls)  # not recorded
        for hook in hooks:
            hook.remove()


def test_threads_sharing_one_model_get_the_sequential_results(fitted):
    clf, X = fitted
    module = clf.net_.module_
    assert len(module.aux) > 0 and not module.training
    slices = [slice(start, start + 9) for start in range(0, len(X), 9)]  # 8 slices, one short
    expected = [clf.predict_proba(X[s]) for s in slices]
    expected_scores = clf.head_scores(X, clf.predict(X))
    # the mean of the heads over the symmetries is not the final head's plain answer
    plain = clf.set_params(predict_heads="final", test_time_augment=False).predict_proba(X)
    clf.set_params(predict_heads="mean", test_time_augment=True)
    assert np.abs(np.concatenate(expected) - plain).max() > 1e-4
    y = clf.predict(X)
    with spy_on(module) as record, ThreadPoolExecutor(max_workers=N_THREADS) as pool:
        for _ in range(N_ROUNDS):
            # predict_proba, predict and head_scores side by side, on different slices
            probas = [pool.submit(clf.predict_proba, X[s]) for s in slices]
            labels = [pool.submit(clf.predict, X[s]) for s in slices]
            scores = pool.submit(clf.head_scores, X, y)
            for s, proba, lab, want in zip(slices, probas, labels, expected):
                np.testing.assert_array_equal(proba.result(), want, err_msg=f"rows {s}")
                np.testing.assert_array_equal(lab.result(), clf.classes_[want.argmax(1)])
            assert scores.result() == expected_scores
    # the module was never switched to training mode, nor changed in any way
    assert record["set"] == []
    assert record["training"] and not any(record["training"])
    assert not any(m.training for m in module.modules())


def test_prediction_leaves_the_weights_and_the_batch_norm_statistics_alone(fitted):
    clf, X = fitted
    before = {k: v.clone() for k, v in clf.net_.module_.state_dict().items()}
    grad_mode = torch.is_grad_enabled()
    clf.predict_proba(X)
    clf.head_scores(X, clf.predict(X))
    after = clf.net_.module_.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.is_grad_enabled() == grad_mode
