"""Self-distillation: the MMLGNet training option and the HSI-only SDHSIClassifier."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from sklearn_mmlgnet import MMLGNetClassifier, SDHSIClassifier
from sklearn_mmlgnet.nn import MMLGNetModule, SDHSINet

from .conftest import make_patches

SD_FAST = dict(conv3d_channels=(4, 8), spectral_kernels=(3, 3), conv2d_channels=16, hidden=32,
               max_epochs=15, lr=5e-3, batch_size=32, random_state=0)


def test_mmlgnet_with_self_distillation_trains_aux_heads_and_reports_them():
    X, y = make_patches(n_per_class=50)
    clf = MMLGNetClassifier(text_embeddings=np.eye(3, 8), self_distillation=True,
                            hsi_channels=(8, 16, 32), lidar_channels=(4, 8), fusion_dim=32,
                            max_epochs=15, lr=5e-3, random_state=0).fit(X, y)
    scores = clf.head_scores(X, y)
    assert list(scores) == ["stage_1", "stage_2", "final"]
    assert scores["final"] > 0.9
    assert all(v > 0.5 for v in scores.values())  # the students learned too
    assert scores["final"] == pytest.approx(clf.set_params(predict_heads="final").score(X, y))


def test_aux_heads_are_skipped_at_inference():
    module = MMLGNetModule(6, 1, torch.eye(3, 8), hsi_channels=(8, 16, 32), aux_heads=True)
    x = torch.randn(4, 7, 5, 5)
    module.train()
    final, aux = module(x)
    assert len(aux) == 2 and all(a.shape == (4, 3) for a in aux)
    module.eval()
    out = module(x)
    assert isinstance(out, torch.Tensor) and out.shape == (4, 3)
    calls = []
    for head in module.aux:
        head.register_forward_hook(lambda *a: calls.append(1))
    module(x)
    assert not calls  # no student head runs at predict time


def test_sdhsi_learns_and_reports_per_head_accuracy():
    X, y = make_patches(n_per_class=50, n_hsi=12, n_lidar=0, P=7)
    clf = SDHSIClassifier(**SD_FAST).fit(X, y)
    X_test, y_test = make_patches(n_per_class=20, n_hsi=12, n_lidar=0, P=7, seed=5)
    assert clf.score(X_test, y_test) > 0.9
    scores = clf.head_scores(X_test, y_test)
    assert list(scores) == ["stage_1", "stage_2", "stage_3", "final"]


def test_sdhsi_self_distillation_changes_training():
    X, y = make_patches(n_hsi=12, n_lidar=0)
    with_sd = SDHSIClassifier(**SD_FAST).fit(X, y)
    without = SDHSIClassifier(self_distillation=False, **SD_FAST).fit(X, y)
    # same seed, same data: only the loss differs
    assert with_sd.history_[-1, "train_loss"] != without.history_[-1, "train_loss"]


def test_sdhsi_sklearn_contract():
    X, y = make_patches(n_hsi=12, n_lidar=0, labels=["Tree", "Water", "Dirt"])
    clf = SDHSIClassifier(**SD_FAST)
    with pytest.raises(NotFittedError):
        clf.predict(X)
    clf.fit(X, y)
    assert set(clf.predict(X)) <= {"Tree", "Water", "Dirt"}
    p = clf.predict_proba(X)
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-12)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(X), p)
    np.testing.assert_array_equal(SDHSIClassifier(**SD_FAST).fit(X, y).predict_proba(X), p)
    with pytest.raises(ValueError, match="X has 11 features, but SDHSIClassifier is expecting 12"):
        clf.predict(X[:, :11])
    with pytest.raises(ValueError, match="spectral_kernels has 1 entries"):
        SDHSIClassifier(**dict(SD_FAST, spectral_kernels=(3,))).fit(X, y)


def test_sdhsi_backbone_handles_few_bands_and_single_pixels():
    net = SDHSINet(n_bands=3, n_classes=2).eval()
    assert net(torch.zeros(2, 3, 1, 1)).shape == (2, 2)


def test_self_distillation_adds_only_the_student_heads():
    X, y = make_patches(n_per_class=30)
    kw = dict(text_embeddings=np.eye(3, 8), hsi_channels=(16, 32, 64), max_epochs=1, random_state=0)
    a = MMLGNetClassifier(self_distillation=True, **kw).fit(X, y)
    b = MMLGNetClassifier(self_distillation=False, **kw).fit(X, y)
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
    clf = Estimator(**{name: value}, max_epochs=1, self_distillation=True)
    if Estimator is MMLGNetClassifier:
        clf.set_params(text_embeddings=np.eye(3, 4))
    with pytest.raises(ValueError, match=f"{name} must be a finite float {expected}; got"):
        clf.fit(X, y)


def test_sdhsi_without_self_distillation_has_no_student_heads():
    X, y = make_patches(n_hsi=12, n_lidar=0)
    clf = SDHSIClassifier(self_distillation=False, **dict(SD_FAST, max_epochs=2)).fit(X, y)
    module = clf.net_.module_
    assert len(module.aux) == 0
    assert not any(name.startswith("aux") for name, _ in module.named_parameters())
    module.train()
    out = module(torch.as_tensor(X[:4]))
    assert isinstance(out, torch.Tensor)  # no student logits computed while training
    assert list(clf.head_scores(X, y)) == ["final"]
    with_sd = SDHSIClassifier(**dict(SD_FAST, max_epochs=1)).fit(X, y)
    assert len(with_sd.net_.module_.aux) == 3


# ---------------------------------------------------------------- loss scale, warm-up, students
def test_averaged_student_terms_weigh_as_one_student_whatever_their_number():
    from sklearn_mmlgnet.losses import self_distillation_loss

    torch.manual_seed(0)
    final, y = torch.randn(8, 3), torch.randint(0, 3, (8,))
    student = torch.randn(8, 3)
    one = self_distillation_loss(final, [student], y)
    four = [student] * 4
    assert float(self_distillation_loss(final, four, y, reduction="mean")) == pytest.approx(float(one))
    assert float(self_distillation_loss(final, four, y)) == pytest.approx(4 * float(one))  # "sum"
    with pytest.raises(ValueError, match="reduction must be 'sum' or 'mean'; got 'max'"):
        self_distillation_loss(final, four, y, reduction="max")


def test_distill_warmup_ramps_the_student_terms_from_zero():
    from skorch.callbacks import Callback

    class Record(Callback):
        def initialize(self):
            self.scales = []
            return self

        def on_batch_end(self, net, **kwargs):
            self.scales.append(net.criterion_.student_scale)

    X, y = make_patches(n_hsi=12, n_lidar=0, n_per_class=10)
    kw = dict(SD_FAST, max_epochs=4, batch_size=64)  # one batch per epoch
    record = Record()
    warm = SDHSIClassifier(distill_warmup=0.5, callbacks=[record], **kw).fit(X, y)
    assert record.scales == [0.0, 0.5, 1.0, 1.0]  # ramp over 0.5 * 4 epochs
    assert warm.net_.criterion_.student_scale == 1.0  # the full loss again after fit
    # epoch 0 trains with the students' terms off: as students given no loss at all
    off = SDHSIClassifier(aux_ce_weight=0.0, distill_weight=0.0, **kw).fit(X, y)
    assert warm.history_[0, "train_loss"] == pytest.approx(off.history_[0, "train_loss"], rel=1e-6)
    assert warm.history_[1, "train_loss"] != pytest.approx(off.history_[1, "train_loss"], rel=1e-3)
    # the student heads exist either way; without warm-up no callback is added
    plain = SDHSIClassifier(**dict(kw, max_epochs=1)).fit(X, y)
    assert "distill_warmup" not in dict(plain.net_.callbacks_)


def test_bottleneck_students_on_chosen_stages():
    net = SDHSINet(n_bands=12, n_classes=3, conv3d_channels=(4, 8), spectral_kernels=(3, 3),
                   conv2d_channels=16, student_stages=(2, 3), student_hidden=8).train()
    # stage 2 (8 channels x 8 bands left) read whole, mean and centre; the 2-D stage as is
    assert [head[0].in_features for head in net.aux] == [2 * 8 * 8, 2 * 16]
    assert all(head[-1].out_features == 3 for head in net.aux)
    final, aux = net(torch.randn(5, 12, 7, 7))
    assert final.shape == (5, 3) and [a.shape for a in aux] == [(5, 3), (5, 3)]
    X, y = make_patches(n_hsi=12, n_lidar=0, n_per_class=10)
    clf = SDHSIClassifier(student_stages=(3, 2), student_hidden=8, **dict(SD_FAST, max_epochs=2))
    clf.fit(X, y)
    assert list(clf.head_scores(X, y)) == ["stage_2", "stage_3", "final"]  # named by stage


@pytest.mark.parametrize("name, value, match", [
    ("student_reduction", "avg", "student_reduction must be 'sum' or 'mean'; got 'avg'"),
    ("distill_warmup", 1.5, "distill_warmup must be a finite float"),
    ("student_hidden", -1, "student_hidden must be an int >= 0; got -1"),
    ("student_stages", (0, 3), r"student_stages must be None or distinct stage numbers in 1\.\.3"),
    ("student_stages", (3, 3), "student_stages must be None or distinct"),
    ("student_stages", (), "student_stages must be None or distinct"),
])
def test_student_parameters_are_validated_by_name(name, value, match):
    X, y = make_patches(n_per_class=5, n_hsi=12, n_lidar=0)
    with pytest.raises(ValueError, match=match):
        SDHSIClassifier(**{name: value}, **dict(SD_FAST, max_epochs=1)).fit(X, y)


def _head_probas(clf, X):
    """Every head's class probabilities (students first, the final head last)."""
    module = clf.net_.module_.eval()
    with torch.no_grad():
        final, aux = module(torch.as_tensor(X), return_aux=True)
    return [torch.softmax(h, dim=1).numpy().astype(np.float64) for h in list(aux) + [final]]


@pytest.mark.parametrize("make, data, n_heads", [
    (lambda: SDHSIClassifier(**dict(SD_FAST, max_epochs=3)), dict(n_hsi=12, n_lidar=0, P=7), 4),
    (lambda: MMLGNetClassifier(text_embeddings=np.eye(3, 8), self_distillation=True,
                               hsi_channels=(8, 16, 32), lidar_channels=(4, 8), fusion_dim=32,
                               max_epochs=3, lr=5e-3, random_state=0, predict_heads="mean"),
     {}, 3),
], ids=["SDHSI", "MMLGNet"])
def test_predicts_with_the_mean_of_its_heads_or_the_final_head(make, data, n_heads):
    X, y = make_patches(n_per_class=30, **data)
    clf = make().fit(X, y)
    heads = _head_probas(clf, X)
    assert len(heads) == n_heads
    np.testing.assert_allclose(clf.predict_proba(X), np.mean(heads, axis=0), atol=1e-5)
    # read at prediction: no refit
    clf.set_params(predict_heads="final")
    np.testing.assert_allclose(clf.predict_proba(X), heads[-1], atol=1e-5)
    assert not np.allclose(np.mean(heads, axis=0), heads[-1], atol=1e-3)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[heads[-1].argmax(1)])
    # the module predicts with the mean for that call only (skorch's validation loss of a
    # later warm-start fit scores the final head)
    clf.set_params(predict_heads="mean").predict_proba(X)
    module = clf.net_.module_.eval()
    with torch.no_grad():
        np.testing.assert_allclose(torch.softmax(module(torch.as_tensor(X)), 1).numpy(),
                                   heads[-1], atol=1e-5)
    # a model pickled before the parameter existed predicts with its final head
    old = pickle.loads(pickle.dumps(clf.set_params(predict_heads="mean")))
    del old.predict_heads
    np.testing.assert_allclose(old.predict_proba(X), heads[-1], atol=1e-5)


def test_sdhsi_predicts_with_every_head_by_default_mmlgnet_with_its_final_head():
    # chosen on inner validation: the mean helped SDHSI-Net on both real scenes, MMLGNet on
    # one only (docs/self_distillation.rst)
    assert SDHSIClassifier().predict_heads == "mean"
    assert MMLGNetClassifier().predict_heads == "final"


def test_without_students_the_mean_of_heads_is_the_final_head():
    X, y = make_patches(n_per_class=20, n_hsi=12, n_lidar=0, P=7)
    clf = SDHSIClassifier(self_distillation=False, **dict(SD_FAST, max_epochs=2)).fit(X, y)
    (final,) = [torch.softmax(clf.net_.module_.eval()(torch.as_tensor(X)), 1).detach().numpy()]
    np.testing.assert_allclose(clf.predict_proba(X), final, atol=1e-5)


@pytest.mark.parametrize("value", ["students", None, 1])
def test_predict_heads_is_validated_by_name(value):
    X, y = make_patches(n_per_class=10, n_hsi=12, n_lidar=0, P=7)
    with pytest.raises(ValueError, match=r"predict_heads must be 'final' or 'mean'"):
        SDHSIClassifier(predict_heads=value, **dict(SD_FAST, max_epochs=1)).fit(X, y)
    clf = SDHSIClassifier(**dict(SD_FAST, max_epochs=1)).fit(X, y)
    with pytest.raises(ValueError, match=r"predict_heads must be 'final' or 'mean'; got"):
        clf.set_params(predict_heads=value).predict(X)
