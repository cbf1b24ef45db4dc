"""MMLGNetClassifier: learning, labels, scikit-learn integration, persistence, errors."""

from __future__ import annotations

import io
import pickle

import joblib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import (
    GridSearchCV,
    GroupShuffleSplit,
    StratifiedKFold,
    cross_val_score,
)
from sklearn.pipeline import make_pipeline
from skorch.callbacks import EpochScoring
from skorch.dataset import ValidSplit

from sklearn_mmlgnet import BandStandardScaler, MMLGNetClassifier, SDHSIClassifier
from sklearn_mmlgnet.text import (
    DEFAULT_TEMPLATES,
    SentenceTransformerTextEncoder,
    encode_class_names,
)

from .conftest import make_patches

FAST = dict(module__hsi_channels=(16, 32), module__lidar_channels=(8,), module__fusion_dim=32,
            module__spectral_channels=(16,), max_epochs=15, lr=5e-3, batch_size=32,
            random_state=0)
NAMES = ["Woods", "Roads", "Vineyard"]
EMB = np.random.RandomState(1).normal(size=(3, 16)).astype(np.float32)


def fast_clf(**kw):
    params = dict(FAST, text_embeddings=EMB)
    params.update(kw)
    return MMLGNetClassifier(**params)


def test_learns_separable_problem_well_above_chance():
    X, y = make_patches(n_per_class=40, seed=0)
    X_test, y_test = make_patches(n_per_class=30, seed=1)
    clf = fast_clf(max_epochs=10).fit(X, y)
    assert clf.score(X_test, y_test) > 0.9  # chance is 1/3
    assert clf.history_[-1, "train_loss"] < clf.history_[0, "train_loss"]


def test_string_labels_are_the_class_names():
    X, y = make_patches(labels=NAMES)
    emb = {name: EMB[i] for i, name in enumerate(NAMES)}
    clf = fast_clf(text_embeddings=emb, max_epochs=2).fit(X, y)
    assert list(clf.classes_) == sorted(NAMES)
    assert clf.class_names_ == sorted(NAMES)
    # the dict's vectors are put in classes_ order
    np.testing.assert_array_equal(clf.text_embeddings_, [emb[c] for c in sorted(NAMES)])
    assert set(clf.predict(X)) <= set(NAMES)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-12)
    # columns follow classes_
    np.testing.assert_array_equal(clf.classes_[proba.argmax(1)], clf.predict(X))


@pytest.fixture(scope="module")
def encoder_fitted(tmp_path_factory):
    """One model on a real text encoder (the packaged offline one), shared by the tests that
    only read it."""
    X, y = make_patches()
    y = y + 10  # labels 10, 11, 12
    mapping = {10: "Woods", 11: "Roads", 12: "Vineyard"}
    with pytest.MonkeyPatch.context() as mp:
        # as the conftest's function-scoped fixture does, for this module-scoped one
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("MMLGNET_CACHE", str(tmp_path_factory.getbasetemp() / "text_cache"))
        clf = MMLGNetClassifier(class_names=mapping, text_encoder="sentence-transformers",
                                **dict(FAST, max_epochs=3)).fit(X, y)
    return clf, X, y


def test_integer_labels_with_class_names_mapping(encoder_fitted):
    clf, X, y = encoder_fitted
    assert list(clf.classes_) == [10, 11, 12]
    assert clf.class_names_ == ["Woods", "Roads", "Vineyard"]
    assert set(np.unique(clf.predict(X))) <= {10, 11, 12}
    assert clf.text_embeddings_.shape == (3, 384)  # all-MiniLM-L6-v2
    np.testing.assert_allclose(np.linalg.norm(clf.text_embeddings_, axis=1), 1.0, rtol=1e-5)
    assert clf.text_encoder_info_["backend"] == "sentence-transformers"
    # the names, not the labels, were encoded with the default prompts
    expected = encode_class_names(["Woods", "Roads", "Vineyard"], DEFAULT_TEMPLATES,
                                  encoder=SentenceTransformerTextEncoder())
    np.testing.assert_allclose(clf.text_embeddings_, expected, rtol=1e-6)


def test_class_names_missing_a_label_is_an_error():
    X, y = make_patches()
    with pytest.raises(ValueError, match=r"class_names has no name for label\(s\) \[2\]"):
        fast_clf(class_names={0: "a", 1: "b"}, text_embeddings=None).fit(X, y)
    with pytest.raises(ValueError, match="class_names has 2 names but y holds 3 classes"):
        fast_clf(class_names=["a", "b"], text_embeddings=None).fit(X, y)


def test_random_state_makes_fit_repeatable():
    X, y = make_patches()
    p1 = fast_clf(random_state=3, max_epochs=2).fit(X, y).predict_proba(X)
    p2 = fast_clf(random_state=3, max_epochs=2).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(p1, p2)
    p3 = fast_clf(random_state=4, max_epochs=2).fit(X, y).predict_proba(X)
    assert not np.array_equal(p1, p3)


def test_fit_does_not_change_the_global_torch_rng():
    X, y = make_patches()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fast_clf(max_epochs=1).fit(X, y)
    np.testing.assert_array_equal(torch.rand(3), expected)


def test_patch_size_center_crops_and_predict_needs_large_enough_patches():
    X, y = make_patches(P=7)
    clf = fast_clf(patch_size=3, max_epochs=2).fit(X, y)
    assert clf.patch_size_ == 3
    # cropping at fit == cropping by hand
    ref = fast_clf(patch_size=None, max_epochs=2).fit(X[:, :, 2:5, 2:5], y)
    np.testing.assert_allclose(clf.predict_proba(X), ref.predict_proba(X[:, :, 2:5, 2:5]), rtol=1e-5)
    # larger patches at predict are cropped too; smaller ones are an error
    assert clf.predict(X[:, :, 1:6, 1:6]).shape == (len(X),)
    with pytest.raises(ValueError, match="patch_size=3"):
        clf.predict(X[:, :, :1, :1])


def test_clone_pipeline_gridsearch_and_cross_val_score():
    X, y = make_patches(n_per_class=30, P=5, labels=NAMES)
    emb = {name: EMB[i] for i, name in enumerate(NAMES)}
    clf = fast_clf(text_embeddings=emb, max_epochs=5, lr=2e-2)
    c2 = clone(clf)
    assert c2.get_params()["temperature"] == clf.temperature and not hasattr(c2, "net_")
    pipe = make_pipeline(BandStandardScaler(), clf).fit(X, y)
    assert pipe.score(X, y) > 0.5
    grid = GridSearchCV(clf, {"patch_size": [3, 5]}, cv=2).fit(X, y)
    assert set(grid.cv_results_["param_patch_size"]) == {3, 5}
    assert grid.best_estimator_.patch_size_ in (3, 5)
    scores = cross_val_score(clf, X, y, cv=StratifiedKFold(3, shuffle=True, random_state=0))
    assert scores.shape == (3,) and scores.mean() > 0.6


def test_pickle_and_joblib_round_trip_without_the_text_model(tmp_path, encoder_fitted):
    clf, X, y = encoder_fitted
    expected = clf.predict_proba(X)
    blob = pickle.dumps(clf)
    # The text model (tens of millions of parameters) is never kept: only the network.
    n_params = sum(p.numel() for p in clf.net_.module_.parameters())
    assert len(blob) < 4 * n_params + 2_000_000
    assert b"sentence_transformers." not in blob and b"transformers.models" not in blob
    np.testing.assert_array_equal(pickle.loads(blob).predict_proba(X), expected)
    joblib.dump(clf, tmp_path / "clf.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "clf.joblib").predict_proba(X), expected)


def test_unpickled_model_predicts_without_any_text_encoder(monkeypatch, encoder_fitted):
    clf, X, _ = encoder_fitted  # fitted with a text encoder
    expected = clf.predict_proba(X)
    blob = pickle.dumps(clf)
    import sklearn_mmlgnet.text as text

    def boom(*a, **k):
        raise AssertionError("the text encoder must not run at predict time")

    monkeypatch.setattr(text.OpenCLIPTextEncoder, "encode", boom)
    monkeypatch.setattr(text.SentenceTransformerTextEncoder, "encode", boom)
    monkeypatch.setattr(text, "encode_class_names", boom)
    np.testing.assert_array_equal(pickle.loads(blob).predict_proba(X), expected)


@pytest.mark.parametrize("loss", ["symmetric", "image_to_text", "cross_entropy"])
def test_losses_train(loss):
    X, y = make_patches()
    clf = fast_clf(loss=loss, max_epochs=8).fit(X, y)
    assert clf.net_.criterion_.loss == loss
    assert clf.score(X, y) > 0.8
    if loss == "cross_entropy":
        assert clf.text_encoder_info_["backend"] is None
        assert isinstance(clf.net_.module_.head, torch.nn.Linear)  # no language side


def test_learnable_temperature_moves_and_fixed_one_does_not():
    X, y = make_patches()
    fixed = fast_clf(temperature=0.1, max_epochs=5).fit(X, y)
    assert fixed.temperature_ == pytest.approx(0.1, rel=1e-5)
    learnt = fast_clf(temperature=0.1, learn_temperature=True, lr=2e-2, max_epochs=5).fit(X, y)
    assert learnt.temperature_ != pytest.approx(0.1, rel=1e-3)


def test_hsi_only_and_lidar_band_split():
    X, y = make_patches(n_lidar=0)
    clf = fast_clf(n_lidar_bands=0, max_epochs=2).fit(X, y)
    assert clf.n_hsi_bands_ == X.shape[1] and clf.net_.module_.lidar is None
    X2, y2 = make_patches(n_lidar=2)
    clf2 = fast_clf(n_lidar_bands=2, max_epochs=2).fit(X2, y2)
    assert clf2.n_hsi_bands_ == X2.shape[1] - 2
    assert clf2.net_.module_.lidar.stages[0][0].in_channels == 2


def test_skorch_callbacks_and_verbose(capsys):
    X, y = make_patches()
    clf = fast_clf(max_epochs=2, verbose=1,
                   callbacks=[EpochScoring("accuracy", on_train=True, name="train_acc")])
    clf.fit(X, y)
    out = capsys.readouterr().out
    assert "train_loss" in out and "train_acc" in out  # skorch's per-epoch table
    assert len(clf.history_) == 2 and "train_acc" in clf.history_[-1]
    clf.set_params(verbose=0).fit(X, y)
    assert capsys.readouterr().out == ""


def test_fit_predict_on_cuda_when_available():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    X, y = make_patches()
    clf = fast_clf(device="cuda").fit(X, y)
    assert next(clf.net_.module_.parameters()).is_cuda
    buf = io.BytesIO()
    pickle.dump(clf, buf)
    assert clf.score(X, y) > 0.8


def test_model_saved_with_a_cuda_device_loads_on_a_cpu_only_machine():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the test is for CPU-only machines")
    X, y = make_patches()
    clf = fast_clf(self_distillation=True, max_epochs=2).fit(X, y)
    expected = clf.predict_proba(X)
    clf.net_.device = "cuda"  # as saved by a GPU machine: skorch must map it back to the CPU
    with pytest.warns(Warning, match="CUDA"):
        loaded = pickle.loads(pickle.dumps(clf))
    assert str(loaded.net_.device) == "cpu"
    np.testing.assert_array_equal(loaded.predict_proba(X), expected)
    assert set(loaded.head_scores(X, y)) == {"stage_1", "final"}


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize("X_shape, match", [
    ((10, 4, 5), "rank 3"),
    ((10, 4, 5, 5, 1), "rank 5"),
    ((10, 4, 5, 3), "square"),
])
def test_wrong_rank_or_shape(X_shape, match):
    X = np.zeros(X_shape, np.float32)
    with pytest.raises(ValueError, match=match):
        fast_clf().fit(X, np.arange(10) % 2)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_rejected_at_fit_and_predict(bad):
    X, y = make_patches()
    X_bad = X.copy()
    X_bad[3, 0, 0, 0] = bad
    with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
        fast_clf().fit(X_bad, y)
    clf = fast_clf(max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
        clf.predict(X_bad)


@pytest.mark.parametrize("patch_size, match", [
    (4, "odd positive int"), (7, "larger than the patches in X"),
    (0, "'patch_size' parameter"), (2.5, "'patch_size' parameter")])
def test_bad_patch_size(patch_size, match):
    X, y = make_patches(P=5)
    with pytest.raises((ValueError, TypeError), match=match):
        fast_clf(patch_size=patch_size).fit(X, y)


def test_band_count_must_leave_hsi_bands():
    X, y = make_patches(n_hsi=1, n_lidar=1)
    with pytest.raises(ValueError, match="n_lidar_bands=2"):
        fast_clf(n_lidar_bands=2).fit(X, y)


def test_predict_with_other_band_count():
    X, y = make_patches()
    clf = fast_clf(max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="X has 6 features, but MMLGNetClassifier is expecting 7 "
                                         "features as input"):
        clf.predict(X[:, :6])


def test_fewer_than_two_classes():
    X, _ = make_patches()
    with pytest.raises(ValueError, match="at least 2 classes"):
        fast_clf().fit(X, np.zeros(len(X), int))


def test_predict_before_fit():
    X, y = make_patches()
    with pytest.raises(NotFittedError):
        fast_clf().predict_proba(X)
    with pytest.raises(NotFittedError):
        fast_clf().head_scores(X, y)


@pytest.mark.parametrize("cls", [MMLGNetClassifier, SDHSIClassifier])
def test_predict_before_fit_is_a_not_fitted_error(cls):
    X, _ = make_patches()
    with pytest.raises(NotFittedError, match="not fitted yet"):
        cls().predict(X)


@pytest.mark.parametrize("params, match", [
    ({"loss": "hinge"}, "'loss' parameter of MMLGNetClassifier must be a str among"),
    ({"temperature": 0}, "'temperature' parameter of MMLGNetClassifier"),
    ({"text_embeddings": np.ones((2, 4))}, r"shape \(n_classes=3, dim\)"),
    ({"text_embeddings": np.zeros((3, 4))}, "no all-zero row"),
    ({"text_embeddings": {0: [1.0, 0.0], 1: [0.0, 1.0]}}, r"no vector for label\(s\) \[2\]"),
    ({"text_encoder": "word2vec", "text_embeddings": None},
     "text_encoder'?( parameter of MMLGNetClassifier)? must be"),
    ({"module__hsi_channels": ()}, "module__hsi_channels must be a non-empty"),
    ({"device": "gpu0"}, "device 'gpu0' is not a torch device; use cpu, cuda or cuda:N"),
])
def test_bad_parameters(params, match):
    X, y = make_patches()
    with pytest.raises(ValueError, match=match):
        fast_clf(**params).fit(X, y)


def test_unavailable_device_is_named_before_training(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    X, y = make_patches()
    with pytest.raises(ValueError, match=r"device 'cuda:2': this machine has 1 CUDA device"):
        fast_clf(device="cuda:2").fit(X, y)


def test_x_y_length_mismatch():
    X, y = make_patches()
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        fast_clf().fit(X, y[:-1])


# ------------------------------------------------------------------ skorch params
TINY = dict(module__hsi_channels=(8,), module__lidar_channels=(4,), module__fusion_dim=16,
            module__spectral_channels=(8,), lr=5e-3, batch_size=32, random_state=0,
            text_embeddings=EMB)


@pytest.fixture(scope="module")
def tiny_problem():
    return make_patches(n_per_class=40)  # 120 samples: 3 full batches of 32, remainder dropped


def test_the_last_batch_is_dropped_only_when_the_training_part_exceeds_a_batch():
    # 40 samples, a quarter held out: the 30 training samples are one batch of 30,
    # not a dropped remainder of an (empty) full batch.
    X, y = make_patches(n_per_class=20, n_classes=2)
    clf = MMLGNetClassifier(max_epochs=2, train_split=ValidSplit(4, stratified=True),
                            **dict(TINY, text_embeddings=EMB[:2])).fit(X, y)
    for epoch in clf.history_:
        train = [b["train_batch_size"] for b in epoch["batches"] if "train_batch_size" in b]
        assert train == [30]
        assert np.isfinite(epoch["train_loss"])
    # 120 training samples in batches of 32: 3 batches, the remainder of 24 dropped
    X, y = make_patches(n_per_class=40)
    clf = MMLGNetClassifier(max_epochs=1, **TINY).fit(X, y)
    assert [b["train_batch_size"] for b in clf.history_[-1, "batches"]] == [32, 32, 32]


# ----------------------------------------------------------- groups for train_split
class _RecordSplit:
    """A train_split that holds out group 0 and records what it was given."""

    def __call__(self, dataset, y=None, groups=None):
        self.groups = groups
        valid = np.flatnonzero(np.asarray(groups) == 0)
        train = np.setdiff1d(np.arange(len(dataset)), valid)
        return (torch.utils.data.Subset(dataset, train), torch.utils.data.Subset(dataset, valid))


class _SidesOfValidSplit(ValidSplit):
    """skorch's ValidSplit, recording the groups on each side."""

    def __call__(self, dataset, y=None, groups=None):
        train, valid = super().__call__(dataset, y, groups)
        self.sides = set(groups[train.indices]), set(groups[valid.indices])
        return train, valid


@pytest.mark.parametrize("cls, kw", [
    (MMLGNetClassifier, TINY),
    (SDHSIClassifier, dict(module__conv3d_channels=(4,), module__spectral_kernels=(3,),
                           module__hidden=8, module__student_hidden=4)),
])
def test_groups_reach_train_split_alone_and_validate_on_whole_groups(tiny_problem, cls, kw):
    X, y = tiny_problem
    groups = np.arange(len(X)) % 6
    split = _RecordSplit()
    clf = cls(max_epochs=1, train_split=split, **kw)
    step = cls.__name__.lower()  # make_pipeline's name for it
    make_pipeline(BandStandardScaler(), clf).fit(X, y, **{f"{step}__groups": groups})
    np.testing.assert_array_equal(split.groups, groups)
    assert clf.history_[-1, "batches"][-1]["valid_batch_size"] == 20  # group 0: 20 samples
    assert clf.net_.split_groups is None  # this fit's only: not kept with the model
    # with skorch's ValidSplit and a group splitter, no group is on both sides
    split = _SidesOfValidSplit(GroupShuffleSplit(1, test_size=0.5, random_state=0))
    cls(max_epochs=1, train_split=split, **kw).fit(X, y, groups=groups)
    train_groups, valid_groups = split.sides
    assert valid_groups and not train_groups & valid_groups


def test_bad_groups_are_named(tiny_problem):
    X, y = tiny_problem
    with pytest.raises(ValueError, match="groups are passed to train_split.*train_split is None"):
        MMLGNetClassifier(max_epochs=1, **TINY).fit(X, y, groups=np.zeros(len(X)))
    with pytest.raises(ValueError, match=r"groups must be 1-D with one group per sample of X "
                                         r"\(120\); got shape \(7,\)"):
        MMLGNetClassifier(max_epochs=1, train_split=_RecordSplit(), **TINY).fit(
            X, y, groups=np.zeros(7))


# ------------------------------------------------------------------ temperature
def test_a_fixed_temperature_below_clips_bound_is_used_as_given():
    X, y = make_patches()
    clf = fast_clf(temperature=0.005, max_epochs=2, module__class_bias=False).fit(X, y)
    assert clf.temperature_ == pytest.approx(0.005, rel=1e-6)
    module = clf.net_.module_
    assert not module.training  # left in eval mode by fit
    projected = []
    module.head.proj.register_forward_hook(lambda mod, inp, out: projected.append(out))
    with torch.no_grad():
        logits = module(torch.as_tensor(X))
    cosines = F.normalize(projected[0], dim=1) @ F.normalize(module.head.text, dim=1).t()
    # cosines scaled by 200, not by CLIP's cap of 100
    torch.testing.assert_close(logits, 200 * cosines, rtol=1e-5, atol=1e-4)


def test_a_learnt_temperature_below_clips_bound_is_rejected():
    X, y = make_patches()
    with pytest.raises(ValueError, match=r"temperature=0.005 is below 0.01.*learn_temperature"):
        fast_clf(temperature=0.005, learn_temperature=True).fit(X, y)


def test_a_learnt_temperature_starting_at_clips_bound_moves_off_it():
    # temperature=0.01 puts the float32 log scale a hair above log(100): a clamp in
    # forward gave it no gradient and the temperature never moved. Clamped after
    # each step instead (as CLIP), it trains; this problem wants a softer softmax.
    X, y = make_patches()
    clf = fast_clf(temperature=0.01, learn_temperature=True, lr=0.03, max_epochs=3).fit(X, y)
    assert clf.temperature_ > 0.0105


def test_a_learnt_temperature_is_clamped_to_clips_bound_after_every_step():
    X, y = make_patches()
    clf = fast_clf(temperature=0.05, learn_temperature=True, max_epochs=1).fit(X, y)
    net = clf.net_
    scale = net.module_.logit_scale
    with torch.no_grad():
        scale.fill_(np.log(100.0) + 1.0)  # as if a step had overshot the bound
    net.module_.train()
    y_idx = np.unique(y, return_inverse=True)[1]
    net.train_step((torch.as_tensor(X[:32]), torch.as_tensor(y_idx[:32])))
    assert float(scale.detach()) == pytest.approx(np.log(100.0), abs=1e-6)
    assert scale.requires_grad


def test_temperature_is_undefined_without_a_text_head():
    X, y = make_patches()
    clf = fast_clf(loss="cross_entropy", max_epochs=1).fit(X, y)
    with pytest.raises(AttributeError, match="loss='cross_entropy'"):
        clf.temperature_
    assert not hasattr(clf, "temperature_")


# ------------------------------------------------------------------ fitted state
def test_a_failed_fit_sets_no_fitted_attribute():
    X, y = make_patches()
    clf = fast_clf(text_embeddings=np.ones((2, 4)))
    with pytest.raises(ValueError, match="text_embeddings"):
        clf.fit(X, y)
    assert [k for k in vars(clf) if k.endswith("_")] == []
    with pytest.raises(NotFittedError):
        clf.predict(X)
    # a failed refit leaves the fitted model as it was: not other classes_ on its network
    clf = fast_clf(max_epochs=1).fit(X, y)
    expected = clf.predict_proba(X)
    with pytest.raises(ValueError, match="text_embeddings"):
        clf.set_params(text_embeddings=np.ones((2, 4))).fit(X, np.array(NAMES)[y])
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    np.testing.assert_array_equal(clf.predict_proba(X), expected)
