"""MMLGNetClassifier: learning, labels, scikit-learn integration, persistence, errors."""

from __future__ import annotations

import io
import pickle
import warnings

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from skorch.callbacks import EpochScoring

from sklearn_mmlgnet import BandStandardScaler, MMLGNetClassifier

from .conftest import make_patches

FAST = dict(hsi_channels=(16, 32), lidar_channels=(8,), fusion_dim=32, max_epochs=15, lr=5e-3,
            batch_size=32, random_state=0)
NAMES = ["Woods", "Roads", "Vineyard"]
EMB = np.random.RandomState(1).normal(size=(3, 16)).astype(np.float32)


def fast_clf(**kw):
    params = dict(FAST, text_embeddings=EMB)
    params.update(kw)
    return MMLGNetClassifier(**params)


def test_learns_separable_problem_well_above_chance():
    X, y = make_patches(n_per_class=60, seed=0)
    X_test, y_test = make_patches(n_per_class=30, seed=1)
    clf = fast_clf().fit(X, y)
    assert clf.score(X_test, y_test) > 0.9  # chance is 1/3
    assert clf.history_[-1, "train_loss"] < clf.history_[0, "train_loss"]


def test_string_labels_are_the_class_names():
    X, y = make_patches(labels=NAMES)
    emb = {name: EMB[i] for i, name in enumerate(NAMES)}
    clf = fast_clf(text_embeddings=emb).fit(X, y)
    assert list(clf.classes_) == sorted(NAMES)
    assert clf.class_names_ == sorted(NAMES)
    assert set(clf.predict(X)) <= set(NAMES)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-12)
    # columns follow classes_
    np.testing.assert_array_equal(clf.classes_[proba.argmax(1)], clf.predict(X))


def test_integer_labels_with_class_names_mapping(tmp_path):
    X, y = make_patches()
    y = y + 10  # labels 10, 11, 12
    mapping = {10: "Woods", 11: "Roads", 12: "Vineyard"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # random CLIP weights
        clf = MMLGNetClassifier(class_names=mapping, clip_pretrained=None, cache_dir=str(tmp_path),
                                **FAST).fit(X, y)
    assert list(clf.classes_) == [10, 11, 12]
    assert clf.class_names_ == ["Woods", "Roads", "Vineyard"]
    assert set(np.unique(clf.predict(X))) <= {10, 11, 12}
    assert clf.text_embeddings_.shape == (3, 512)
    assert clf.text_encoder_info_["backend"] == "open_clip"
    assert clf.text_encoder_info_["weights"].startswith("random")


def test_class_names_missing_a_label_is_an_error(tmp_path):
    X, y = make_patches()
    with pytest.raises(ValueError, match=r"class_names has no name for label\(s\) \[2\]"):
        MMLGNetClassifier(class_names={0: "a", 1: "b"}, clip_pretrained=None,
                          cache_dir=str(tmp_path), **FAST).fit(X, y)
    with pytest.raises(ValueError, match="class_names has 2 names but y holds 3 classes"):
        MMLGNetClassifier(class_names=["a", "b"], clip_pretrained=None,
                          cache_dir=str(tmp_path), **FAST).fit(X, y)


def test_random_state_makes_fit_repeatable():
    X, y = make_patches()
    p1 = fast_clf(random_state=3).fit(X, y).predict_proba(X)
    p2 = fast_clf(random_state=3).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(p1, p2)
    p3 = fast_clf(random_state=4).fit(X, y).predict_proba(X)
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
    clf = fast_clf(patch_size=3).fit(X, y)
    assert clf.patch_size_ == 3
    # cropping at fit == cropping by hand
    ref = fast_clf(patch_size=None).fit(X[:, :, 2:5, 2:5], y)
    np.testing.assert_allclose(clf.predict_proba(X), ref.predict_proba(X[:, :, 2:5, 2:5]), rtol=1e-5)
    # larger patches at predict are cropped too; smaller ones are an error
    assert clf.predict(X[:, :, 1:6, 1:6]).shape == (len(X),)
    with pytest.raises(ValueError, match="patch_size=3"):
        clf.predict(X[:, :, :1, :1])


def test_clone_pipeline_gridsearch_and_cross_val_score():
    X, y = make_patches(n_per_class=30, P=5, labels=NAMES)
    emb = {name: EMB[i] for i, name in enumerate(NAMES)}
    clf = fast_clf(text_embeddings=emb, max_epochs=5)
    c2 = clone(clf)
    assert c2.get_params()["temperature"] == clf.temperature and not hasattr(c2, "net_")
    pipe = make_pipeline(BandStandardScaler(), clf).fit(X, y)
    assert pipe.score(X, y) > 0.5
    grid = GridSearchCV(clf, {"temperature": [0.05, 0.2], "patch_size": [3, 5]}, cv=2).fit(X, y)
    assert set(grid.cv_results_["param_patch_size"]) == {3, 5}
    assert grid.best_estimator_.patch_size_ in (3, 5)
    scores = cross_val_score(clf, X, y, cv=StratifiedKFold(3, shuffle=True, random_state=0))
    assert scores.shape == (3,) and scores.mean() > 0.6


def test_pickle_and_joblib_round_trip_without_clip(tmp_path):
    X, y = make_patches()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        clf = MMLGNetClassifier(class_names=dict(enumerate(NAMES)), clip_pretrained=None,
                                cache_dir=str(tmp_path / "cache"), **FAST).fit(X, y)
    expected = clf.predict_proba(X)
    blob = pickle.dumps(clf)
    # The CLIP text tower (~63M parameters, ~250 MB) is never kept: only the encoders.
    n_params = sum(p.numel() for p in clf.net_.module_.parameters())
    assert len(blob) < 4 * n_params + 2_000_000
    assert b"open_clip.model" not in blob and b"open_clip.transformer" not in blob
    np.testing.assert_array_equal(pickle.loads(blob).predict_proba(X), expected)
    joblib.dump(clf, tmp_path / "clf.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "clf.joblib").predict_proba(X), expected)


def test_unpickled_model_predicts_without_any_text_encoder(monkeypatch):
    X, y = make_patches()
    blob = pickle.dumps(fast_clf().fit(X, y))
    import sklearn_mmlgnet.text as text

    def boom(*a, **k):
        raise AssertionError("the text encoder must not run at predict time")

    monkeypatch.setattr(text.OpenCLIPTextEncoder, "encode", boom)
    monkeypatch.setattr(text.SentenceTransformerTextEncoder, "encode", boom)
    assert pickle.loads(blob).predict(X).shape == (len(X),)


@pytest.mark.parametrize("loss", ["symmetric", "image_to_text", "cross_entropy"])
def test_losses_train(loss):
    X, y = make_patches()
    clf = fast_clf(loss=loss).fit(X, y)
    assert clf.score(X, y) > 0.8
    if loss == "cross_entropy":
        assert clf.text_encoder_info_["backend"] is None


def test_learnable_temperature_moves_and_fixed_one_does_not():
    X, y = make_patches()
    fixed = fast_clf(temperature=0.1).fit(X, y)
    assert fixed.temperature_ == pytest.approx(0.1, rel=1e-5)
    learnt = fast_clf(temperature=0.1, learn_temperature=True, lr=2e-2).fit(X, y)
    assert learnt.temperature_ != pytest.approx(0.1, rel=1e-3)


def test_hsi_only_and_lidar_band_split():
    X, y = make_patches(n_lidar=0)
    clf = fast_clf(n_lidar_bands=0).fit(X, y)
    assert clf.n_hsi_bands_ == X.shape[1] and clf.net_.module_.lidar is None
    X2, y2 = make_patches(n_lidar=2)
    clf2 = fast_clf(n_lidar_bands=2).fit(X2, y2)
    assert clf2.n_hsi_bands_ == X2.shape[1] - 2


def test_skorch_callbacks_verbose_and_warm_start(capsys):
    X, y = make_patches()
    clf = fast_clf(max_epochs=2, verbose=1,
                   callbacks=[EpochScoring("accuracy", on_train=True, name="train_acc")])
    clf.fit(X, y)
    out = capsys.readouterr().out
    assert "train_loss" in out and "train_acc" in out  # skorch's per-epoch table
    assert len(clf.history_) == 2
    clf.set_params(warm_start=True, verbose=0)
    net = clf.net_
    clf.fit(X, y)
    assert clf.net_ is net and len(clf.history_) == 4


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
    clf = fast_clf(self_distillation=True).fit(X, y)
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
    with pytest.raises(ValueError, match="NaN or infinity"):
        fast_clf().fit(X_bad, y)
    clf = fast_clf(max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="NaN or infinity"):
        clf.predict(X_bad)


@pytest.mark.parametrize("patch_size, match", [
    (4, "odd positive int"), (0, "odd positive int"), (7, "larger than the patches in X"),
    (2.5, "odd positive int or None")])
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
    with pytest.raises(ValueError, match=r"X has 6 features, but MMLGNetClassifier is expecting 7 "
                                         r"features as input \(6 HSI \+ 1 LiDAR bands\)"):
        clf.predict(X[:, :6])


def test_fewer_than_two_classes():
    X, _ = make_patches()
    with pytest.raises(ValueError, match="at least 2 classes"):
        fast_clf().fit(X, np.zeros(len(X), int))


def test_predict_before_fit():
    X, _ = make_patches()
    for method in ("predict", "predict_proba"):
        with pytest.raises(NotFittedError):
            getattr(fast_clf(), method)(X)


@pytest.mark.parametrize("params, match", [
    ({"loss": "hinge"}, "loss must be one of"),
    ({"temperature": 0}, "temperature must be a finite float > 0"),
    ({"text_embeddings": np.ones((2, 4))}, r"shape \(n_classes=3, dim\)"),
    ({"text_embeddings": np.zeros((3, 4))}, "no all-zero row"),
    ({"text_encoder": "word2vec", "text_embeddings": None}, "text_encoder must be"),
    ({"hsi_channels": ()}, "hsi_channels must be a non-empty"),
])
def test_bad_parameters(params, match):
    X, y = make_patches()
    with pytest.raises(ValueError, match=match):
        fast_clf(**params).fit(X, y)


def test_x_y_length_mismatch():
    X, y = make_patches()
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        fast_clf().fit(X, y[:-1])
