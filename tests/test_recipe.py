"""Training-recipe levers: spectral path, augmentation, AdamW, cosine schedule, label smoothing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback, EpochScoring, LRScheduler
from skorch.dataset import ValidSplit

from sklearn_mmlgnet import MMLGNetClassifier, SDHSIClassifier
from sklearn_mmlgnet.augment import N_SYMMETRIES, DihedralCollate, dihedral, random_dihedral
from sklearn_mmlgnet.losses import ContrastiveCriterion, self_distillation_loss
from sklearn_mmlgnet.nn import MMLGNetModule, SpectralMLP

from .conftest import make_patches

EMB = np.random.RandomState(1).normal(size=(3, 16)).astype(np.float32)
TINY = dict(module__hsi_channels=(8,), module__lidar_channels=(4,), module__fusion_dim=16,
            lr=5e-3, batch_size=32, random_state=0, text_embeddings=EMB)
SDHSI_TINY = dict(module__conv3d_channels=(4,), module__spectral_kernels=(3,),
                  module__conv2d_channels=8, module__hidden=8, module__student_hidden=4,
                  batch_size=32, random_state=0)


#: Runs a test on both estimators: ``make(**params)`` builds a tiny one.
both_estimators = pytest.mark.parametrize("make", [
    lambda **kw: MMLGNetClassifier(**TINY, **kw),
    lambda **kw: SDHSIClassifier(**SDHSI_TINY, **kw),
], ids=["MMLGNet", "SDHSI"])


@pytest.fixture(scope="module")
def problem():
    return make_patches(n_per_class=40)  # 120 samples of (7, 5, 5)


def _symmetries(x):
    return [dihedral(x, k) for k in range(N_SYMMETRIES)]


def _is_symmetry_of(a, b):
    return any(torch.equal(a, s) for s in _symmetries(b))


# ------------------------------------------------------------------ the transform
def test_dihedral_is_the_symmetry_group_of_the_square():
    x = torch.arange(2 * 5 * 5, dtype=torch.float32).reshape(2, 5, 5)  # no symmetry of its own
    images = _symmetries(x)
    assert dihedral(x, 0) is x or torch.equal(dihedral(x, 0), x)
    # 8 distinct images, all of them the numpy rotations / flips of x
    ref = [np.rot90(np.flip(x.numpy(), -1) if k >= 4 else x.numpy(), k % 4, axes=(-2, -1))
           for k in range(8)]
    for img, r in zip(images, ref):
        np.testing.assert_array_equal(img.numpy(), r)
    assert len({tuple(i.flatten().tolist()) for i in images}) == 8
    # closed under composition (a group), every band moved alike, centre pixel fixed
    for a in range(8):
        for b in range(8):
            assert _is_symmetry_of(dihedral(dihedral(x, a), b), x)
    for img in images:
        assert torch.equal(img[:, 2, 2], x[:, 2, 2])
        assert torch.equal(img[1] - img[0], torch.full((5, 5), 25.0))
    with pytest.raises(ValueError, match="k must be"):
        dihedral(x, 8)


def test_random_dihedral_draws_every_symmetry_per_patch():
    x = torch.arange(25, dtype=torch.float32).reshape(1, 1, 5, 5).repeat(400, 1, 1, 1)
    out = random_dihedral(x, generator=torch.Generator().manual_seed(0))
    images = _symmetries(x[0])
    drawn = {next(k for k, s in enumerate(images) if torch.equal(o, s)) for o in out}
    assert drawn == set(range(8))
    with pytest.raises(ValueError, match="square"):
        random_dihedral(torch.zeros(2, 1, 3, 5))


def test_collate_keeps_each_label_with_its_own_patch():
    rng = np.random.RandomState(0)
    items = [(torch.as_tensor(rng.normal(size=(3, 5, 5)).astype("float32")), torch.tensor(i % 3))
             for i in range(50)]
    torch.manual_seed(0)
    X, y = DihedralCollate()(items)
    assert y.tolist() == [i % 3 for i in range(50)]
    assert all(_is_symmetry_of(X[i], items[i][0]) for i in range(50))
    assert any(not torch.equal(X[i], items[i][0]) for i in range(50))


# ------------------------------------------------------------- augment in the estimators
class _RecordBatches(Callback):
    def initialize(self):
        self.train, self.valid = [], []
        return self

    def on_batch_begin(self, net, batch=None, training=None, **kwargs):
        (self.train if training else self.valid).append(batch[0].clone())


def test_augment_changes_training_batches_only(problem):
    X, y = problem
    rec = _RecordBatches()
    clf = MMLGNetClassifier(max_epochs=2, augment=True, callbacks=[rec],
                            train_split=ValidSplit(4, stratified=True), **TINY).fit(X, y)
    inputs = torch.as_tensor(X)
    train = torch.cat(rec.train)
    # every training patch is a symmetry of an input patch, and many are not the input itself
    unchanged = sum(bool((inputs == t).flatten(1).all(1).any()) for t in train)
    assert all(any(_is_symmetry_of(t, x) for x in inputs) for t in train[:40])
    assert unchanged < 0.5 * len(train)  # 1/8 expected
    # validation batches are the inputs as given
    valid = torch.cat(rec.valid)
    assert all(bool((inputs == v).flatten(1).all(1).any()) for v in valid)
    assert len(clf.history_) == 2


@both_estimators
def test_predict_with_augment_is_that_of_the_same_weights_without(problem, make):
    X, y = problem
    aug = make(max_epochs=2, augment=True).fit(X, y)
    plain = make(max_epochs=1, augment=False).fit(X, y)
    plain.net_.module_.load_state_dict(aug.net_.module_.state_dict())
    p = aug.predict_proba(X)
    np.testing.assert_array_equal(p, aug.predict_proba(X))  # deterministic
    np.testing.assert_array_equal(p, plain.predict_proba(X))  # no augmentation at predict
    # and training did see other batches than without augmentation, from the same seed
    same_seed = make(max_epochs=2, augment=False).fit(X, y)
    assert not np.allclose(same_seed.predict_proba(X), p)


@pytest.mark.parametrize("make", [
    lambda **kw: MMLGNetClassifier(**TINY, **kw),
    # the final head predicts, so that head_scores' "final" is what predict scores
    lambda **kw: SDHSIClassifier(**dict(SDHSI_TINY, self_distillation=True),
                                 predict_heads="final", **kw),
], ids=["MMLGNet", "SDHSI"])
def test_test_time_augment_averages_the_eight_symmetries(problem, make):
    X, y = problem
    clf = make(max_epochs=2).fit(X, y)
    plain = clf.predict_proba(X)
    images = [dihedral(torch.as_tensor(X), k).numpy() for k in range(N_SYMMETRIES)]
    by_hand = np.mean([clf.predict_proba(img) for img in images], axis=0)
    heads_plain = clf.head_scores(X, y)
    clf.set_params(test_time_augment=True)  # read at predict: no refit needed
    tta = clf.predict_proba(X)
    np.testing.assert_allclose(tta, by_hand, rtol=0, atol=1e-6)
    assert np.abs(tta - plain).max() > 1e-3
    np.testing.assert_allclose(tta.sum(1), 1)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[by_hand.argmax(1)])
    # every symmetry of a patch gets the same prediction
    np.testing.assert_allclose(clf.predict_proba(images[5]), tta, rtol=0, atol=1e-6)
    # head_scores follows predict: its final head scores what predict scores
    heads = clf.head_scores(X, y)
    assert heads["final"] == np.mean(clf.predict(X) == y)
    assert set(heads) == set(heads_plain)


def test_test_time_augment_leaves_training_alone(problem):
    X, y = problem
    a = MMLGNetClassifier(max_epochs=2, **TINY).fit(X, y)
    b = MMLGNetClassifier(max_epochs=2, test_time_augment=True, **TINY).fit(X, y)
    for pa, pb in zip(a.net_.module_.parameters(), b.net_.module_.parameters()):
        assert torch.equal(pa, pb)


# ------------------------------------------------------------------- optimizer, schedule
def test_adamw_is_the_default_optimizer_and_adam_is_used_when_asked(problem):
    X, y = problem
    default = MMLGNetClassifier(max_epochs=1, **TINY).fit(X, y)
    assert type(default.net_.optimizer_) is torch.optim.AdamW
    assert default.net_.optimizer_.param_groups[0]["weight_decay"] == 1e-2
    clf = MMLGNetClassifier(max_epochs=1, optimizer="adam", weight_decay=0.0, **TINY).fit(X, y)
    assert type(clf.net_.optimizer_) is torch.optim.Adam
    assert clf.net_.optimizer_.param_groups[0]["weight_decay"] == 0.0


def test_cosine_schedule_anneals_lr_to_zero_over_max_epochs(problem):
    X, y = problem
    lr, epochs = 0.01, 4
    user_callbacks = [EpochScoring("accuracy", on_train=True, name="train_acc")]
    clf = MMLGNetClassifier(max_epochs=epochs, lr_schedule="cosine", callbacks=user_callbacks,
                            **dict(TINY, lr=lr)).fit(X, y)
    expected = [lr * 0.5 * (1 + math.cos(math.pi * e / epochs)) for e in range(epochs)]
    np.testing.assert_allclose(clf.history_[:, "event_lr"], expected, rtol=1e-12)
    assert clf.net_.optimizer_.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert len(user_callbacks) == 1 and clf.callbacks is user_callbacks  # the user's list untouched
    assert "train_acc" in clf.history_[-1]
    # a warm start anneals anew from lr over its own max_epochs ...
    clf.set_params(warm_start=True, max_epochs=2)
    clf.fit(X, y)
    np.testing.assert_allclose(clf.history_[:, "event_lr"], [lr, lr / 2], rtol=1e-12)
    # ... and without the schedule trains at lr again, not at the annealed ~0
    clf.set_params(lr_schedule=None, max_epochs=1)
    clf.fit(X, y)
    assert clf.net_.optimizer_.param_groups[0]["lr"] == lr
    assert "event_lr" not in clf.history_[-1]


def test_cosine_by_default_and_a_constant_lr_without_schedule(problem):
    X, y = problem
    default = MMLGNetClassifier(max_epochs=2, **TINY).fit(X, y)
    np.testing.assert_allclose(default.history_[:, "event_lr"], [TINY["lr"], TINY["lr"] / 2])
    clf = MMLGNetClassifier(max_epochs=2, lr_schedule=None, **TINY).fit(X, y)
    assert "event_lr" not in clf.history_[-1]
    assert clf.net_.optimizer_.param_groups[0]["lr"] == TINY["lr"]
    assert not any(isinstance(cb, LRScheduler) for _, cb in clf.net_.callbacks_)


# ----------------------------------------------------------------------- label smoothing
def _hand_ce(logits, target, eps):
    """-sum_c q_c log p_c with q = (1 - eps) onehot + eps / C, computed by hand."""
    z = [float(v) for v in logits]
    log_norm = math.log(sum(math.exp(v) for v in z))
    q = [(1 - eps) * (c == target) + eps / len(z) for c in range(len(z))]
    return -sum(qc * (zc - log_norm) for qc, zc in zip(q, z))


def test_label_smoothing_follows_the_formula():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    y = torch.tensor([0, 2])
    eps = 0.1
    hand = np.mean([_hand_ce(logits[i], int(y[i]), eps) for i in range(2)])
    hand_plain = np.mean([_hand_ce(logits[i], int(y[i]), 0.0) for i in range(2)])
    for loss in ("cross_entropy", "image_to_text"):
        got = ContrastiveCriterion(loss=loss, label_smoothing=eps)(logits, y)
        assert float(got) == pytest.approx(hand, rel=1e-6)
    # symmetric: only the image->text half changes (the other half is averaged in at 0.5)
    sym = ContrastiveCriterion(loss="symmetric", label_smoothing=eps)(logits, y)
    sym0 = ContrastiveCriterion(loss="symmetric")(logits, y)
    assert float(sym - sym0) == pytest.approx(0.5 * (hand - hand_plain), rel=1e-5)
    # the students' CE terms too: identical student and teacher leave a * CE_smoothed
    aux = self_distillation_loss(logits, [logits.clone()], y, aux_ce_weight=0.8,
                                 label_smoothing=eps)
    assert float(aux) == pytest.approx(0.8 * hand, rel=1e-5)


def test_label_smoothing_reaches_the_criterion(problem):
    X, y = problem
    clf = SDHSIClassifier(max_epochs=1, label_smoothing=0.2, **SDHSI_TINY).fit(X, y)
    assert clf.net_.criterion_.label_smoothing == 0.2
    assert MMLGNetClassifier(max_epochs=0, **TINY).fit(X, y).net_.criterion_.label_smoothing == 0.1


def test_optimizer_and_augment_reach_the_net(problem):
    X, y = problem
    clf = MMLGNetClassifier(max_epochs=1, optimizer="adam", augment=False, **TINY).fit(X, y)
    assert type(clf.net_.optimizer_) is torch.optim.Adam
    dataset = clf.net_.get_dataset(X, np.zeros(len(X), int))
    assert not isinstance(clf.net_.get_iterator(dataset, training=True).collate_fn,
                          DihedralCollate)
    clf = MMLGNetClassifier(max_epochs=1, **TINY).fit(X, y)  # AdamW and flips by default
    assert type(clf.net_.optimizer_) is torch.optim.AdamW
    assert isinstance(clf.net_.get_iterator(dataset, training=True).collate_fn, DihedralCollate)
    assert not isinstance(clf.net_.get_iterator(dataset, training=False).collate_fn,
                          DihedralCollate)


def test_a_model_with_every_lever_pickles_and_goes_on_training(problem):
    import pickle

    X, y = problem
    clf = MMLGNetClassifier(max_epochs=2, augment=True, optimizer="adamw", weight_decay=1e-2,
                            lr_schedule="cosine", label_smoothing=0.1, **TINY).fit(X, y)
    copy = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(copy.predict_proba(X), clf.predict_proba(X))
    copy.set_params(warm_start=True)
    copy.fit(X, y)
    np.testing.assert_allclose(copy.history_[:, "event_lr"], [TINY["lr"], TINY["lr"] / 2])
    assert copy.history_[0, "train_loss"] < clf.history_[0, "train_loss"]  # went on


# ---------------------------------------------------------------------- similarity
def test_dot_similarity_keeps_the_image_embeddings_length(problem):
    X, y = problem
    kw = dict(TINY, max_epochs=1, module__class_bias=False)
    cosine = MMLGNetClassifier(**kw).fit(X, y).net_.module_.head
    dot = MMLGNetClassifier(module__similarity="dot", **kw).fit(X, y).net_.module_.head
    assert cosine.normalize and not dot.normalize
    text = torch.nn.functional.normalize(torch.as_tensor(EMB), dim=1)
    z = torch.randn(4, dot.proj.in_features)
    with torch.no_grad():
        v = dot.proj(z)
        torch.testing.assert_close(dot(z), dot.logit_scale.exp() * v @ text.t() / v.shape[1] ** 0.5)
        # a longer image embedding: larger logits under "dot", the same under "cosine"
        for head, grows in ((dot, True), (cosine, False)):
            head.proj.bias.zero_()
            torch.testing.assert_close(head(3 * z), (3.0 if grows else 1.0) * head(z))


def test_class_bias_is_a_learnt_offset_of_the_language_heads_logits(problem):
    X, y = problem
    plain = MMLGNetClassifier(max_epochs=0, module__class_bias=False, **TINY).fit(X, y).net_.module_
    start = MMLGNetClassifier(max_epochs=0, **TINY).fit(X, y).net_.module_  # the default
    assert plain.head.bias is None
    assert torch.equal(start.head.bias, torch.zeros(3)) and start.head.bias.requires_grad
    z = torch.randn(4, start.head.proj.in_features)
    with torch.no_grad():
        start.head.bias.copy_(torch.tensor([1.0, -2.0, 0.5]))
        without = start.head.logit_scale.exp() * torch.nn.functional.normalize(
            start.head.proj(z), dim=1) @ start.head.text.t()
        torch.testing.assert_close(start.head(z), without + torch.tensor([1.0, -2.0, 0.5]))
    trained = MMLGNetClassifier(max_epochs=3, self_distillation=True,
                                **dict(TINY, module__hsi_channels=(4, 8))).fit(X, y).net_.module_
    assert trained.head.bias.abs().sum() > 0
    assert len(trained.aux) == 1
    assert all(head.bias.abs().sum() > 0 for head in trained.aux)  # the students' heads too


# ------------------------------------------------------------------- spectral path
def test_spectral_path_reads_the_centre_pixel_only():
    torch.manual_seed(0)
    path = SpectralMLP(6, (8, 4)).eval()
    x = torch.randn(5, 6, 7, 7)
    out = path(x)
    context = x.clone()
    context[:, :, 0] += 10.0  # every pixel but the centre's row, ...
    context[:, :, :, 2] -= 3.0  # ... and column, changed
    torch.testing.assert_close(path(context), out)
    centre = x.clone()
    centre[:, 2, 3, 3] += 1.0
    assert not torch.allclose(path(centre), out)
    torch.testing.assert_close(path(x[:, :, 3, 3]), out)  # pixels (n, C) read as themselves


def test_the_spectral_path_is_fused_next_to_the_encoders(problem):
    X, y = problem  # 6 HSI + 1 LiDAR band
    clf = MMLGNetClassifier(max_epochs=1, **TINY).fit(X, y)
    module = clf.net_.module_
    assert isinstance(module.spectral, SpectralMLP)
    assert module.spectral.mlp[0].in_features == X.shape[1]  # HSI and LiDAR bands
    assert module.spectral.out_features == 128  # the default spectral_channels=(256, 128)
    assert module.spectral.mlp[0].out_features == 256
    # the fusion layer reads both encoders' pooled features and the spectral path's
    assert module.fusion[0].in_features == module.hsi.out_features + module.lidar.out_features + 128


@pytest.mark.parametrize("off", [(), None])
def test_no_spectral_path_when_asked(problem, off):
    X, y = problem
    clf = MMLGNetClassifier(max_epochs=1, module__spectral_channels=off, **TINY).fit(X, y)
    module = clf.net_.module_
    assert module.spectral is None
    assert module.fusion[0].in_features == module.hsi.out_features + module.lidar.out_features


def test_spectral_path_changes_predictions_when_context_is_unchanged():
    """A module whose CNN sees identical context everywhere still tells centre pixels apart."""
    torch.manual_seed(0)
    module = MMLGNetModule(3, 0, torch.eye(2, 4), hsi_channels=(4,), fusion_dim=8,
                           spectral_channels=(4,)).eval()
    x = torch.zeros(2, 3, 5, 5)
    x[1, :, 2, 2] = 5.0  # only the centre pixel differs, and it is also in the CNN's view
    without = MMLGNetModule(3, 0, torch.eye(2, 4), hsi_channels=(4,), fusion_dim=8,
                            spectral_channels=None).eval()
    assert not torch.allclose(module(x)[0], module(x)[1])
    assert module.fusion[0].in_features == without.fusion[0].in_features + 4


@pytest.mark.parametrize("name, bad", [
    ("spectral_channels", (0,)), ("spectral_channels", (8, -1)), ("spectral_channels", "wide"),
    ("spectral_channels", 2.5), ("similarity", "euclidean"), ("similarity", None),
    ("class_bias", "yes"), ("class_bias", 1), ("fusion_dim", 0), ("dropout", 1.0),
    ("hsi_channels", (8, 0)), ("lidar_channels", "wide")])
def test_bad_network_parameters_are_named(problem, name, bad):
    X, y = problem
    with pytest.raises(ValueError, match=f"module__{name} must be"):
        MMLGNetClassifier(max_epochs=1, **{**TINY, f"module__{name}": bad}).fit(X, y)


# ------------------------------------------------------------------- class weights
def test_balanced_class_weight_reaches_the_criterion_from_each_fits_y(problem):
    X, y = problem
    keep = np.r_[np.flatnonzero(y == y[0]), np.flatnonzero(y != y[0])[::4]]  # one class common
    Xi, yi = X[keep], y[keep]
    clf = MMLGNetClassifier(max_epochs=1, class_weight="balanced", **TINY).fit(Xi, yi)
    counts = np.unique(yi, return_counts=True)[1]
    expected = len(yi) / (len(counts) * counts)
    np.testing.assert_allclose(clf.net_.criterion_.class_weight.numpy(), expected, rtol=1e-6)
    # a warm start on other class counts re-weights from the new y
    clf.set_params(warm_start=True)
    clf.fit(X, y)
    np.testing.assert_allclose(clf.net_.criterion_.class_weight.numpy(), 1.0, rtol=1e-6)
    assert MMLGNetClassifier(max_epochs=1, **TINY).fit(X, y).net_.criterion_.class_weight is None
    # the gentler form: the square root of the same weights, for both estimators
    for cls, kw in ((MMLGNetClassifier, TINY), (SDHSIClassifier, SDHSI_TINY)):
        gentle = cls(max_epochs=1, class_weight="balanced_sqrt", **kw).fit(Xi, yi)
        np.testing.assert_allclose(gentle.net_.criterion_.class_weight.numpy(),
                                   np.sqrt(expected), rtol=1e-6)


def test_class_weight_weighs_the_image_to_text_term():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.5, 0.0]])
    y = torch.tensor([0, 1, 0])
    w = torch.tensor([0.25, 3.0])
    weighted = ContrastiveCriterion("image_to_text", class_weight=w)(logits, y)
    expected = torch.nn.functional.cross_entropy(logits, y, weight=w)
    torch.testing.assert_close(weighted, expected)
    plain = ContrastiveCriterion("image_to_text")(logits, y)
    assert not torch.isclose(weighted, plain)
    # the symmetric loss weighs its image->text half only (text->image is per class already)
    sym_w = ContrastiveCriterion("symmetric", class_weight=w)(logits, y)
    sym = ContrastiveCriterion("symmetric")(logits, y)
    torch.testing.assert_close(sym_w - sym, 0.5 * (expected - plain))


def test_class_weight_dict_follows_the_users_labels(problem):
    X, y = problem
    labels = np.unique(y)
    clf = MMLGNetClassifier(max_epochs=1, class_weight={labels[1]: 5.0}, **TINY).fit(X, y)
    np.testing.assert_allclose(clf.net_.criterion_.class_weight.numpy(), [1.0, 5.0, 1.0])


@pytest.mark.parametrize("bad", ["auto", {"not a label": 1.0}, True])
def test_bad_class_weight_is_named(problem, bad):
    X, y = problem
    with pytest.raises(ValueError, match="class_weight"):
        MMLGNetClassifier(max_epochs=1, class_weight=bad, **TINY).fit(X, y)
