"""skorch's tools used with the estimators as a user would: each test asserts what the tool does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from skorch.callbacks import Checkpoint, EarlyStopping, LRScheduler, ProgressBar
from skorch.dataset import ValidSplit

from sklearn_mmlgnet import MMLGNetClassifier

from .conftest import make_patches

EMB = np.random.RandomState(1).normal(size=(3, 16)).astype(np.float32)
TINY = dict(module__hsi_channels=(8,), module__lidar_channels=(4,), module__fusion_dim=16,
            module__spectral_channels=(8,), batch_size=32, random_state=0, text_embeddings=EMB)


def _valid_indices(split, X, y_idx):
    """The samples skorch holds out: the very split the net makes (a fixed random_state)."""
    from skorch.dataset import Dataset

    _, valid = split(Dataset(X, y_idx), y_idx)
    return np.asarray(valid.indices)


def test_early_stopping_on_a_stratified_validation_part_restores_the_best_weights():
    # Few noisy samples and a high learning rate: the validation loss soon stops improving.
    X, y = make_patches(n_per_class=30, seed=2)
    X += np.random.RandomState(0).normal(scale=2.0, size=X.shape).astype(np.float32)
    split = ValidSplit(0.2, stratified=True, random_state=0)
    stopper = EarlyStopping(monitor="valid_loss", patience=3, load_best=True)
    # No label smoothing: the validation loss is then the plain NLL recomputed below.
    clf = MMLGNetClassifier(loss="image_to_text", lr=0.2, lr_schedule=None, max_epochs=60,
                            train_split=split, callbacks=[stopper], label_smoothing=0.0,
                            **TINY).fit(X, y)
    history = clf.history_
    n_epochs = len(history)
    assert n_epochs < 60  # stopped early
    valid_loss = np.array(history[:, "valid_loss"])
    best = int(np.argmin(valid_loss))
    assert best + 1 < n_epochs <= best + 1 + 3  # at most `patience` epochs after the best
    assert valid_loss[-1] > valid_loss[best]
    # The stratified validation part: 20% of each class.
    y_idx = np.unique(y, return_inverse=True)[1]
    valid = _valid_indices(split, X, y_idx)
    assert len(valid) == 18 and np.bincount(y_idx[valid]).tolist() == [6, 6, 6]
    # The model now holds the best epoch's weights: its loss on the validation part is
    # that epoch's, not the last one's.
    proba = clf.predict_proba(X[valid])
    loss = -np.mean(np.log(proba[np.arange(len(valid)), y_idx[valid]]))
    # (EarlyStopping counts gains above 1e-4 relative, so allow that much.)
    assert loss == pytest.approx(valid_loss[best], rel=2e-4)
    assert loss < valid_loss[-1]


def test_cosine_lr_scheduler_ends_at_its_minimum():
    X, y = make_patches(n_per_class=20)
    sched = LRScheduler(policy=torch.optim.lr_scheduler.CosineAnnealingLR, T_max=6, eta_min=1e-4)
    # The user's own schedule instead of the built-in one (lr_schedule=None).
    clf = MMLGNetClassifier(lr=1e-2, max_epochs=6, callbacks=[sched], lr_schedule=None,
                            **TINY).fit(X, y)
    lrs = np.array(clf.history_[:, "event_lr"])
    expected = 1e-4 + (1e-2 - 1e-4) * (1 + np.cos(np.pi * np.arange(6) / 6)) / 2
    np.testing.assert_allclose(lrs, expected, rtol=1e-6)  # the lr each epoch trained with
    assert clf.net_.optimizer_.param_groups[0]["lr"] == pytest.approx(1e-4)  # after the last


def test_checkpoint_writes_files_that_load_back_into_a_new_estimator(tmp_path):
    X, y = make_patches(n_per_class=20)
    cp = Checkpoint(dirname=str(tmp_path), monitor=None)  # every epoch: the last one stays
    clf = MMLGNetClassifier(lr=1e-2, max_epochs=3, callbacks=[cp], **TINY).fit(X, y)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["criterion.pt", "history.json", "optimizer.pt", "params.pt"]
    assert all((tmp_path / name).stat().st_size > 0 for name in written)
    # A new estimator (built, not trained: max_epochs=0) loads the checkpoint.
    other = clone(clf).set_params(max_epochs=0, callbacks=None, random_state=1).fit(X, y)
    assert not np.array_equal(other.predict_proba(X), clf.predict_proba(X))
    other.net_.load_params(checkpoint=cp)
    np.testing.assert_array_equal(other.predict_proba(X), clf.predict_proba(X))
    assert len(other.net_.history) == 3


class _RecordingBar(ProgressBar):
    """skorch's ProgressBar, noting what each epoch's bar showed when it closed."""

    def on_epoch_end(self, net, **kwargs):
        self.shown = getattr(self, "shown", []) + [
            (self.pbar_.n, self.pbar_.total, self.pbar_.postfix)]
        super().on_epoch_end(net, **kwargs)


def test_progress_bar_counts_each_epochs_training_batches(capsys):
    X, y = make_patches(n_per_class=40)  # 120 samples: 3 batches of 32 (remainder dropped)
    bar = _RecordingBar(batches_per_epoch="count")
    MMLGNetClassifier(lr=1e-2, max_epochs=2, callbacks=[bar], **TINY).fit(X, y)
    assert [(n, total) for n, total, _ in bar.shown] == [(3, None), (3, 3)]
    assert all("train_loss=" in postfix for _, _, postfix in bar.shown)  # the running loss
    assert "it/s" in capsys.readouterr().err  # tqdm drew it on stderr
