"""warm_start: the next fit starts from the fitted weights, and every parameter takes effect.

A warm fit builds a new network from the current parameters (as a cold fit does) and
loads the previous fit's weights into it when they fit it; otherwise it warns and trains
from scratch.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
import torch
from skorch.callbacks import EpochScoring, LRScheduler
from skorch.dataset import ValidSplit

from sklearn_mmlgnet import MMLGNetClassifier, SDHSIClassifier
from sklearn_mmlgnet.augment import DihedralCollate, dihedral

from .conftest import make_patches


EMB = np.random.RandomState(1).normal(size=(3, 8)).astype(np.float32)
MML_TINY = dict(module__hsi_channels=(8,), module__lidar_channels=(4,), module__fusion_dim=16,
                module__spectral_channels=(8,), text_embeddings=EMB, lr=5e-3, batch_size=32,
                random_state=0)
SD_TINY = dict(module__conv3d_channels=(4,), module__spectral_kernels=(3,),
               module__conv2d_channels=8, module__hidden=8, module__student_hidden=4,
               lr=5e-3, batch_size=32, random_state=0)

both_estimators = pytest.mark.parametrize("make", [
    lambda **kw: MMLGNetClassifier(**{**MML_TINY, **kw}),
    lambda **kw: SDHSIClassifier(**{**SD_TINY, **kw}),
], ids=["MMLGNet", "SDHSI"])


@pytest.fixture(scope="module")
def problem():
    return make_patches(n_per_class=40)  # 120 samples of (7, 5, 5): 3 batches of 32


def _weights(clf):
    return {k: v.detach().clone() for k, v in clf.net_.module_.state_dict().items()}


def _same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@contextlib.contextmanager
def no_warning():
    """A block in which any warning is an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ---------------------------------------------------------------- the fitted weights
@both_estimators
def test_a_warm_fit_starts_from_the_fitted_weights(problem, make):
    X, y = problem
    clf = make(max_epochs=6, lr=2e-2).fit(X, y)
    fitted, proba = _weights(clf), clf.predict_proba(X)
    cold_first, cold_last = clf.history_[0, "train_loss"], clf.history_[-1, "train_loss"]
    # zero epochs: the new network holds exactly the fitted weights
    with no_warning():
        clf.set_params(warm_start=True, max_epochs=0).fit(X, y)
    assert _same_weights(_weights(clf), fitted)
    np.testing.assert_array_equal(clf.predict_proba(X), proba)
    assert not clf.net_.module_.training
    # one epoch on: its train loss is where the fitted model ended, not where a cold fit
    # (of the same seed) starts
    clf.set_params(max_epochs=1).fit(X, y)
    assert len(clf.history_) == 1  # the history of the last fit
    assert clf.history_[0, "train_loss"] < cold_last + 0.1 * (cold_first - cold_last)
    # without warm_start a refit starts afresh: exactly a new estimator's fit
    clf.set_params(warm_start=False, max_epochs=2).fit(X, y)
    fresh = make(max_epochs=2, lr=2e-2).fit(X, y)
    assert _same_weights(_weights(clf), _weights(fresh))


def test_warm_start_before_any_fit_is_a_cold_fit(problem):
    X, y = problem
    with no_warning():
        warm = MMLGNetClassifier(max_epochs=1, warm_start=True, **MML_TINY).fit(X, y)
    cold = MMLGNetClassifier(max_epochs=1, **MML_TINY).fit(X, y)
    assert _same_weights(_weights(warm), _weights(cold))


# ------------------------------------------------------------ every parameter applies
def _dropouts(clf):
    return {m.p for m in clf.net_.module_.modules() if isinstance(m, torch.nn.Dropout)}


def _loader(clf, X):
    dataset = clf.net_.get_dataset(X, np.zeros(len(X), np.int64))
    return clf.net_.get_iterator(dataset, training=True)


CHANGES = [
    # (changed parameters, what the warm fit must show)
    (dict(lr=1e-4), lambda c, X: c.net_.optimizer_.param_groups[0]["initial_lr"] == 1e-4
     and c.history_[0, "event_lr"] == 1e-4),
    (dict(weight_decay=0.03), lambda c, X: c.net_.optimizer_.param_groups[0]["weight_decay"]
     == 0.03),
    (dict(optimizer="adam"), lambda c, X: type(c.net_.optimizer_) is torch.optim.Adam),
    (dict(lr_schedule=None), lambda c, X: "event_lr" not in c.history_[-1]
     and c.net_.optimizer_.param_groups[0]["lr"] == 5e-3
     and not any(isinstance(cb, LRScheduler) for _, cb in c.net_.callbacks_)),
    (dict(max_epochs=3), lambda c, X: len(c.history_) == 3),
    (dict(batch_size=16), lambda c, X: [b["train_batch_size"] for b in c.history_[-1, "batches"]]
     == [16] * 7),
    (dict(augment=False), lambda c, X: not isinstance(_loader(c, X).collate_fn, DihedralCollate)),
    (dict(label_smoothing=0.0), lambda c, X: c.net_.criterion_.label_smoothing == 0.0),
    (dict(class_weight={0: 3.0}), lambda c, X: c.net_.criterion_.class_weight.tolist()
     == [3.0, 1.0, 1.0]),
    (dict(train_split=ValidSplit(4, stratified=True)),
     lambda c, X: "valid_loss" in c.history_[-1]
     and sum(b.get("valid_batch_size", 0) for b in c.history_[-1, "batches"]) == 30),
    (dict(callbacks=[EpochScoring("accuracy", on_train=True, name="train_acc")]),
     lambda c, X: "train_acc" in c.history_[-1]),
    (dict(criterion__distill_weight=0.7, criterion__aux_ce_weight=0.2,
          criterion__distill_temperature=2.0, self_distillation=True),
     lambda c, X: (c.net_.criterion_.distill_weight, c.net_.criterion_.aux_ce_weight,
                   c.net_.criterion_.distill_temperature, c.net_.criterion_.distill)
     == (0.7, 0.2, 2.0, True)),
    (dict(module__dropout=0.3), lambda c, X: _dropouts(c) == {0.3}),
]


@pytest.mark.parametrize("changed, check", CHANGES,
                         ids=["-".join(sorted(c)) for c, _ in CHANGES])
def test_a_warm_fit_applies_every_changed_parameter(problem, changed, check):
    X, y = problem
    base = dict(max_epochs=1, self_distillation=False)
    clf = MMLGNetClassifier(**{**MML_TINY, **base}).fit(X, y)
    fitted = _weights(clf)
    with no_warning():  # none of these changes the shape of the network
        # zero epochs: the fitted weights, in the network the new parameters build
        clf.set_params(warm_start=True, **{**changed, "max_epochs": 0}).fit(X, y)
        assert _same_weights(_weights(clf), fitted)
        clf.set_params(max_epochs=changed.get("max_epochs", 1)).fit(X, y)
    assert check(clf, X)


def test_a_warm_fit_applies_a_changed_random_state(problem):
    X, y = problem
    runs = []
    for seed in (0, 1):
        clf = MMLGNetClassifier(max_epochs=1, **MML_TINY).fit(X, y)
        clf.set_params(warm_start=True, random_state=seed).fit(X, y)
        runs.append(_weights(clf))
    assert not _same_weights(*runs)


def test_a_warm_fit_applies_changed_verbose(problem, capsys):
    X, y = problem
    clf = MMLGNetClassifier(max_epochs=1, **MML_TINY).fit(X, y)
    assert capsys.readouterr().out == ""
    clf.set_params(warm_start=True, verbose=1).fit(X, y)
    assert "train_loss" in capsys.readouterr().out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_a_warm_fit_applies_a_changed_device(problem):
    X, y = problem
    clf = MMLGNetClassifier(max_epochs=1, **MML_TINY).fit(X, y)
    fitted = _weights(clf)
    clf.set_params(warm_start=True, device="cuda", max_epochs=0).fit(X, y)
    assert next(clf.net_.module_.parameters()).is_cuda
    assert _same_weights({k: v.cpu() for k, v in _weights(clf).items()}, fitted)
    clf.set_params(max_epochs=1).fit(X, y)
    assert all(t.is_cuda for s in clf.net_.optimizer_.state.values() for t in s.values()
               if torch.is_tensor(t) and t.dim())
    assert clf.predict_proba(X).shape == (len(X), 3)


@both_estimators
def test_a_warm_fit_applies_changed_prediction_parameters(problem, make):
    X, y = problem
    clf = make(max_epochs=1, self_distillation=True, predict_heads="final").fit(X, y)
    with no_warning():
        clf.set_params(warm_start=True, max_epochs=0, predict_heads="mean",
                       test_time_augment=True).fit(X, y)
    module, Xt = clf.net_.module_, torch.as_tensor(X)
    with torch.no_grad():
        by_hand = np.mean([torch.softmax(module(dihedral(Xt, k), heads="mean"), 1).numpy()
                           for k in range(8)], axis=0)
    np.testing.assert_allclose(clf.predict_proba(X), by_hand, atol=1e-5)


def test_a_warm_fit_applies_a_changed_similarity_and_keeps_the_weights(problem):
    X, y = problem
    clf = MMLGNetClassifier(max_epochs=1, **MML_TINY).fit(X, y)
    fitted = _weights(clf)
    with no_warning():  # not a shape: the weights fit
        clf.set_params(warm_start=True, module__similarity="dot", max_epochs=0).fit(X, y)
    assert not clf.net_.module_.head.normalize
    assert _same_weights(_weights(clf), fitted)


def test_a_warm_fit_applies_a_changed_fixed_temperature(problem):
    X, y = problem
    clf = MMLGNetClassifier(max_epochs=1, temperature=0.07, **MML_TINY).fit(X, y)
    clf.set_params(warm_start=True, temperature=0.5, max_epochs=0).fit(X, y)
    assert clf.temperature_ == pytest.approx(0.5, rel=1e-6)


def test_a_warm_fit_continues_a_learnt_temperature(problem):
    X, y = problem
    clf = MMLGNetClassifier(max_epochs=2, learn_temperature=True, temperature=0.1,
                            **dict(MML_TINY, lr=2e-2)).fit(X, y)
    learnt = clf.temperature_
    assert learnt != pytest.approx(0.1, rel=1e-3)
    clf.set_params(warm_start=True, max_epochs=0).fit(X, y)
    assert clf.temperature_ == learnt  # a trained parameter: loaded


def test_a_warm_fit_with_other_text_embeddings_records_them(problem):
    X, y = problem
    clf = MMLGNetClassifier(max_epochs=1, **MML_TINY).fit(X, y)
    other = np.random.RandomState(7).normal(size=EMB.shape).astype(np.float32)
    with no_warning():  # same classes, same dimension: the weights fit
        clf.set_params(warm_start=True, text_embeddings=other, max_epochs=0).fit(X, y)
    np.testing.assert_array_equal(clf.text_embeddings_, other)


def test_a_warm_fit_scores_against_the_changed_text_embeddings(problem):
    X, y = problem
    clf = MMLGNetClassifier(max_epochs=1, **MML_TINY).fit(X, y)
    other = np.random.RandomState(7).normal(size=EMB.shape).astype(np.float32)
    clf.set_params(warm_start=True, text_embeddings=other, max_epochs=0).fit(X, y)
    np.testing.assert_allclose(clf.net_.module_.head.text.numpy(),
                               other / np.linalg.norm(other, axis=1, keepdims=True), rtol=1e-6)


# ------------------------------------------------------------- a network of another shape
ANOTHER_SHAPE = pytest.mark.parametrize("make, changed", [
    (lambda **kw: MMLGNetClassifier(**{**MML_TINY, **kw}), dict(module__fusion_dim=12)),
    (lambda **kw: MMLGNetClassifier(**{**MML_TINY, **kw}), dict(module__hsi_channels=(4, 4))),
    (lambda **kw: MMLGNetClassifier(**{**MML_TINY, **kw}), dict(loss="cross_entropy")),
    (lambda **kw: SDHSIClassifier(**{**SD_TINY, **kw}), dict(module__hidden=12)),
    (lambda **kw: SDHSIClassifier(**{**SD_TINY, **kw}), dict(self_distillation=False)),
], ids=["fusion_dim", "hsi_channels", "linear_head", "SDHSI-hidden", "SDHSI-no-students"])


def _warm_fit_of_another_shape(X, y, make, changed):
    clf = make(max_epochs=2).fit(X, y)
    clf.set_params(warm_start=True, max_epochs=1, **changed)
    with pytest.warns(UserWarning, match="warm_start=True but the parameters that shape the "
                                         "network changed since the last fit: training a new "
                                         "network from scratch"):
        clf.fit(X, y)
    return clf


@ANOTHER_SHAPE
def test_a_warm_fit_of_another_shape_warns_and_builds_it(problem, make, changed):
    X, y = problem
    clf = _warm_fit_of_another_shape(X, y, make, changed)
    cold = make(max_epochs=0, **changed).fit(X, y)
    assert {k: v.shape for k, v in _weights(clf).items()} == {
        k: v.shape for k, v in _weights(cold).items()}
    assert len(clf.history_) == 1 and clf.predict_proba(X).shape == (len(X), 3)


@ANOTHER_SHAPE
def test_a_warm_fit_of_another_shape_trains_from_scratch(problem, make, changed):
    X, y = problem
    clf = _warm_fit_of_another_shape(X, y, make, changed)
    cold = make(max_epochs=1, **changed).fit(X, y)
    assert _same_weights(_weights(clf), _weights(cold))  # nothing of the old network kept
    np.testing.assert_array_equal(clf.predict_proba(X), cold.predict_proba(X))


@both_estimators
def test_a_warm_fit_on_other_classes_or_bands_warns_and_trains_from_scratch(problem, make):
    X, y = problem
    clf = make(max_epochs=2, warm_start=True).fit(X, y)
    labels = np.array(["a", "b", "c"])[y]  # the same partition, other labels
    emb = {"a": EMB[0], "b": EMB[1], "c": EMB[2]}
    extra = dict(text_embeddings=emb) if isinstance(clf, MMLGNetClassifier) else {}
    with pytest.warns(UserWarning, match=r"y holds other classes than at the last fit \(\[0, 1, 2\]"
                                         r"\): training a new network from scratch"):
        clf.set_params(**extra).fit(X, labels)
    cold = make(max_epochs=2, **extra).fit(X, labels)
    assert _same_weights(_weights(clf), _weights(cold))
    assert list(clf.classes_) == ["a", "b", "c"]
    # a band fewer
    X2 = np.delete(X, 3, axis=1)
    with pytest.warns(UserWarning, match="X has 6 bands, the fitted network 7: training a new "
                                         "network from scratch"):
        clf.fit(X2, labels)
    assert _same_weights(_weights(clf), _weights(make(max_epochs=2, **extra).fit(X2, labels)))
