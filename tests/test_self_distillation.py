"""Self-distillation: the MMLGNet training option and the HSI-only SDHSIClassifier."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from sklearn_mmlgnet import MMLGNetClassifier, SDHSIClassifier
from sklearn_mmlgnet.losses import self_distillation_loss
from sklearn_mmlgnet.nn import MMLGNetModule, SDHSINet

from .conftest import make_patches

SD_FAST = dict(module__conv3d_channels=(4, 8), module__spectral_kernels=(3, 3),
               module__conv2d_channels=16, module__hidden=32, module__student_hidden=16,
               max_epochs=15, lr=5e-3, batch_size=32, random_state=0)
MML_SD = dict(text_embeddings=np.eye(3, 8), self_distillation=True,
              module__hsi_channels=(8, 16, 32), module__lidar_channels=(4, 8),
              module__fusion_dim=32, module__spectral_channels=(16,), lr=5e-3, random_state=0)


def _params(clf, prefix=""):
    return {n: p.detach().clone() for n, p in clf.net_.module_.named_parameters()
            if n.startswith(prefix)}


def test_mmlgnet_with_self_distillation_trains_aux_heads_and_reports_them():
    X, y = make_patches(n_per_class=50)
    clf = MMLGNetClassifier(max_epochs=15, **MML_SD).fit(X, y)
    scores = clf.head_scores(X, y)
    assert list(scores) == ["stage_1", "stage_2", "final"]
    assert scores["final"] > 0.9
    assert all(v > 0.6 for v in scores.values())  # the students learned too (chance: 1/3)
    assert clf.predict_heads == "final"
    assert scores["final"] == pytest.approx(clf.score(X, y))


def test_aux_heads_are_skipped_at_inference():
    module = MMLGNetModule(6, 1, torch.eye(3, 8), hsi_channels=(8, 16, 32), aux_heads=True)
    x = torch.randn(4, 7, 5, 5)
    module.train()
    final, aux = module(x)
    assert len(aux) == 2 and all(a.shape == (4, 3) for a in aux)
    module.eval()
    calls = []
    for head in module.aux:
        head.register_forward_hook(lambda *a: calls.append(1))
    out = module(x)
    assert isinstance(out, torch.Tensor) and out.shape == (4, 3)
    assert not calls  # no student head runs at predict time
    final, aux = module(x, heads="all")
    assert len(calls) == 2 and torch.equal(final, out)
    module(x, heads="mean")
    assert len(calls) == 4  # the students run when asked for


def test_sdhsi_learns_and_reports_per_head_accuracy():
    X, y = make_patches(n_per_class=30, n_hsi=12, n_lidar=0, P=7)
    clf = SDHSIClassifier(**dict(SD_FAST, max_epochs=10)).fit(X, y)
    X_test, y_test = make_patches(n_per_class=20, n_hsi=12, n_lidar=0, P=7, seed=5)
    assert clf.score(X_test, y_test) > 0.9
    scores = clf.head_scores(X_test, y_test)
    assert list(scores) == ["stage_1", "stage_2", "stage_3", "final"]
    assert all(v > 0.6 for v in scores.values())  # every student learned (chance: 1/3)


@pytest.mark.parametrize("make, data, prefix", [
    (lambda **kw: SDHSIClassifier(**{**SD_FAST, "max_epochs": 3, **kw}),
     dict(n_hsi=12, n_lidar=0, P=7), "stages3d."),
    (lambda **kw: MMLGNetClassifier(**{**MML_SD, "max_epochs": 3, "weight_decay": 0.0, **kw}),
     {}, "hsi."),
], ids=["SDHSI", "MMLGNet"])
def test_the_students_terms_train_the_students_and_the_shared_encoder(make, data, prefix):
    # Same network, seed and data; the students' loss weights zero or not. With zero
    # weights the students get no gradient (no weight decay either: they keep their
    # initial weights); with the default weights they learn, and their gradients reach
    # the shared encoder, which then ends elsewhere.
    X, y = make_patches(n_per_class=20, **data)
    initial = _params(make(max_epochs=0).fit(X, y))
    silent = _params(make(criterion__aux_ce_weight=0.0, criterion__distill_weight=0.0).fit(X, y))
    taught = _params(make().fit(X, y))
    students = [n for n in initial if n.startswith("aux.")]
    assert students
    for name in students:
        assert torch.equal(silent[name], initial[name]), name
        assert not torch.equal(taught[name], initial[name]), name
    encoder = [n for n in initial if n.startswith(prefix)]
    assert encoder and all(not torch.equal(taught[n], silent[n]) for n in encoder)


def test_sdhsi_sklearn_contract():
    X, y = make_patches(n_hsi=12, n_lidar=0, labels=["Tree", "Water", "Dirt"])
    clf = SDHSIClassifier(**dict(SD_FAST, max_epochs=3))
    with pytest.raises(NotFittedError):
        clf.predict_proba(X)
    clf.fit(X, y)
    assert set(clf.predict(X)) <= {"Tree", "Water", "Dirt"}
    p = clf.predict_proba(X)
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-12)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(X), p)
    np.testing.assert_array_equal(
        SDHSIClassifier(**dict(SD_FAST, max_epochs=3)).fit(X, y).predict_proba(X), p)
    with pytest.raises(ValueError, match="X has 11 features, but SDHSIClassifier is expecting 12"):
        clf.predict(X[:, :11])
    with pytest.raises(ValueError, match="module__spectral_kernels has 1 entries"):
        SDHSIClassifier(**dict(SD_FAST, module__spectral_kernels=(3,))).fit(X, y)


def test_sdhsi_backbone_handles_few_bands_and_single_pixels():
    net = SDHSINet(n_bands=3, n_classes=2).eval()
    assert net(torch.zeros(2, 3, 1, 1)).shape == (2, 2)


def test_self_distillation_adds_only_the_student_heads():
    X, y = make_patches(n_per_class=10)
    kw = dict(MML_SD, module__hsi_channels=(16, 32, 64), max_epochs=0)
    a = MMLGNetClassifier(**kw).fit(X, y)
    b = MMLGNetClassifier(**dict(kw, self_distillation=False)).fit(X, y)
    main_a = sum(p.numel() for n, p in a.net_.module_.named_parameters() if not n.startswith("aux."))
    assert main_a == sum(p.numel() for p in b.net_.module_.parameters())
    assert len(a.net_.module_.aux) == 2 and len(b.net_.module_.aux) == 0


@pytest.mark.parametrize("Estimator", [MMLGNetClassifier, SDHSIClassifier])
@pytest.mark.parametrize("name, value, expected", [
    ("distill_temperature", 0, "> 0"), ("distill_temperature", -2.0, "> 0"),
    ("distill_temperature", float("nan"), "> 0"), ("distill_weight", -0.1, ">= 0"),
    ("aux_ce_weight", -1, ">= 0"), ("aux_ce_weight", float("inf"), ">= 0"),
    ("distill_weight", "0.1", ">= 0")])
def test_distillation_parameters_are_validated_by_name(Estimator, name, value, expected):
    X, y = make_patches(n_per_class=5, n_hsi=4)
    clf = Estimator(**{f"criterion__{name}": value}, max_epochs=1, self_distillation=True)
    if Estimator is MMLGNetClassifier:
        clf.set_params(text_embeddings=np.eye(3, 4))
    with pytest.raises(ValueError, match=f"criterion__{name} must be a finite float {expected}; "
                                         "got"):
        clf.fit(X, y)


def test_sdhsi_without_self_distillation_has_no_student_heads():
    X, y = make_patches(n_hsi=12, n_lidar=0, n_per_class=10)
    clf = SDHSIClassifier(self_distillation=False, **dict(SD_FAST, max_epochs=1)).fit(X, y)
    module = clf.net_.module_
    assert len(module.aux) == 0
    assert not any(name.startswith("aux") for name, _ in module.named_parameters())
    module.train()
    out = module(torch.as_tensor(X[:4]))
    assert isinstance(out, torch.Tensor)  # no student logits computed while training
    module.eval()
    assert list(clf.head_scores(X, y)) == ["final"]
    with_sd = SDHSIClassifier(**dict(SD_FAST, max_epochs=0)).fit(X, y)
    assert len(with_sd.net_.module_.aux) == 3


# ---------------------------------------------------------------- loss scale, students
def test_averaged_student_terms_weigh_as_one_student_whatever_their_number():
    torch.manual_seed(0)
    final, y = torch.randn(8, 3), torch.randint(0, 3, (8,))
    students = [torch.randn(8, 3) for _ in range(3)]
    one = self_distillation_loss(final, students[:1], y)
    assert float(self_distillation_loss(final, students[:1] * 4, y)) == pytest.approx(float(one))
    each = [float(self_distillation_loss(final, [s], y)) for s in students]
    assert float(self_distillation_loss(final, students, y)) == pytest.approx(np.mean(each))
    assert float(self_distillation_loss(final, [], y)) == 0.0


def test_bottleneck_students_on_chosen_stages():
    net = SDHSINet(n_bands=12, n_classes=3, conv3d_channels=(4, 8), spectral_kernels=(3, 3),
                   conv2d_channels=16, student_stages=(2, 3), student_hidden=8).train()
    # stage 2 (8 channels x 8 bands left) read whole, mean and centre; the 2-D stage as is
    assert [head[0].in_features for head in net.aux] == [2 * 8 * 8, 2 * 16]
    assert [head[0].out_features for head in net.aux] == [8, 8]
    assert all(head[-1].out_features == 3 for head in net.aux)
    final, aux = net(torch.randn(5, 12, 7, 7))
    assert final.shape == (5, 3) and [a.shape for a in aux] == [(5, 3), (5, 3)]
    X, y = make_patches(n_hsi=12, n_lidar=0, n_per_class=10)
    clf = SDHSIClassifier(**dict(SD_FAST, max_epochs=1, module__student_stages=(3, 2),
                                 module__student_hidden=8))
    clf.fit(X, y)
    scores = list(clf.head_scores(X, y))
    assert sorted(scores[:-1]) == ["stage_2", "stage_3"] and scores[-1] == "final"  # by stage


@pytest.mark.parametrize("name, value, match", [
    ("student_hidden", 0, "module__student_hidden must be an int >= 1; got 0"),
    ("student_hidden", -1, "module__student_hidden must be an int >= 1; got -1"),
    ("student_stages", (0, 3), r"module__student_stages must be None or distinct stage numbers "
                               r"in 1\.\.3"),
    ("student_stages", (3, 3), "module__student_stages must be None or distinct"),
    ("student_stages", (), "module__student_stages must be None or distinct"),
])
def test_student_parameters_are_validated_by_name(name, value, match):
    X, y = make_patches(n_per_class=5, n_hsi=12, n_lidar=0)
    with pytest.raises(ValueError, match=match):
        SDHSIClassifier(**{**SD_FAST, "max_epochs": 1, f"module__{name}": value}).fit(X, y)


# ------------------------------------------------------------- which heads predict
def _head_probas(clf, X):
    """Every head's class probabilities (students first, the final head last)."""
    with torch.no_grad():
        final, aux = clf.net_.module_(torch.as_tensor(X), heads="all")
    return [torch.softmax(h, dim=1).numpy().astype(np.float64) for h in list(aux) + [final]]


@pytest.mark.parametrize("make, data, n_heads", [
    (lambda: SDHSIClassifier(**dict(SD_FAST, max_epochs=3)), dict(n_hsi=12, n_lidar=0, P=7), 4),
    (lambda: MMLGNetClassifier(max_epochs=3, predict_heads="mean", **MML_SD), {}, 3),
], ids=["SDHSI", "MMLGNet"])
def test_predicts_with_the_mean_of_its_heads_or_the_final_head(make, data, n_heads):
    X, y = make_patches(n_per_class=20, **data)
    clf = make().fit(X, y)
    assert clf.predict_heads == "mean"
    heads = _head_probas(clf, X)
    assert len(heads) == n_heads
    mean = clf.predict_proba(X)
    np.testing.assert_allclose(mean, np.mean(heads, axis=0), atol=1e-5)
    # read at prediction: no refit
    clf.set_params(predict_heads="final")
    final = clf.predict_proba(X)
    np.testing.assert_allclose(final, heads[-1], atol=1e-5)
    assert np.abs(mean - final).max() > 1e-3  # the two answers really differ
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[heads[-1].argmax(1)])
    # and back: the choice is per call, nothing of it stays on the model
    np.testing.assert_array_equal(clf.set_params(predict_heads="mean").predict_proba(X), mean)
    np.testing.assert_array_equal(clf.set_params(predict_heads="final").predict_proba(X), final)
    # head_scores reports each head, whatever predict_heads is
    scores = clf.head_scores(X, y)
    assert scores == clf.set_params(predict_heads="mean").head_scores(X, y)
    assert scores["final"] == np.mean(clf.classes_[heads[-1].argmax(1)] == y)


def test_sdhsi_predicts_with_every_head_by_default_mmlgnet_with_its_final_head():
    # chosen on inner validation: the mean helped SDHSI-Net on both real scenes, MMLGNet on
    # one only (docs/self_distillation.rst)
    assert SDHSIClassifier().predict_heads == "mean"
    assert MMLGNetClassifier().predict_heads == "final"


def test_without_students_the_mean_of_heads_is_the_final_head():
    X, y = make_patches(n_per_class=10, n_hsi=12, n_lidar=0, P=7)
    clf = SDHSIClassifier(self_distillation=False, **dict(SD_FAST, max_epochs=2)).fit(X, y)
    assert clf.predict_heads == "mean"
    with torch.no_grad():
        final = torch.softmax(clf.net_.module_(torch.as_tensor(X)), 1).numpy()
    np.testing.assert_allclose(clf.predict_proba(X), final, atol=1e-6)
    np.testing.assert_allclose(clf.set_params(predict_heads="final").predict_proba(X),
                               clf.set_params(predict_heads="mean").predict_proba(X), atol=1e-6)


@pytest.mark.parametrize("value", ["students", "all", None, 1])
def test_predict_heads_is_validated_by_name_at_fit(value):
    X, y = make_patches(n_per_class=10, n_hsi=12, n_lidar=0, P=7)
    with pytest.raises(ValueError, match=r"'predict_heads' parameter of SDHSIClassifier must be "
                                         r"a str among"):
        SDHSIClassifier(predict_heads=value, **dict(SD_FAST, max_epochs=1)).fit(X, y)


@pytest.mark.parametrize("name, value", [("predict_heads", "students"), ("predict_heads", "all"),
                                         ("test_time_augment", "yes")])
def test_prediction_parameters_set_after_fit_are_validated_by_name_at_predict(name, value):
    X, y = make_patches(n_per_class=10, n_hsi=12, n_lidar=0, P=7)
    clf = SDHSIClassifier(**dict(SD_FAST, max_epochs=1)).fit(X, y)
    clf.set_params(**{name: value})
    for method in (clf.predict, clf.predict_proba):
        with pytest.raises(ValueError, match=f"'{name}' parameter of SDHSIClassifier"):
            method(X)
