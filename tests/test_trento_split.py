"""Trento's published split (TRLabel.mat / TSLabel.mat) is what ``split="standard"`` returns."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import scipy.io

from sklearn_mmlgnet.datasets import load_trento
from sklearn_mmlgnet.datasets._base import read_mat

from .conftest import SHARED_DATA, requires_shared

TRENTO = SHARED_DATA / "trento_partial"


def _trento_folder(tmp_path, names):
    folder = tmp_path / "trento"
    folder.mkdir()
    for name in names:
        shutil.copy(TRENTO / name, folder / name)
    # The real 63-band cube is too large to carry here: stand in a generated one.
    hsi = np.random.RandomState(0).rand(166, 600, 4).astype(np.float32)
    scipy.io.savemat(folder / "Italy_hsi.mat", {"data": hsi})
    return folder


@requires_shared
def test_standard_split_is_the_published_files_pixel_for_pixel(tmp_path):
    _trento_folder(tmp_path, ["Italy_lidar.mat", "allgrd.mat", "TRLabel.mat", "TSLabel.mat"])
    tr = read_mat(TRENTO / "TRLabel.mat", "TRLabel").astype(np.int64)
    ts = read_mat(TRENTO / "TSLabel.mat", "TSLabel").astype(np.int64)
    for seed in (0, 1):  # the files fix the split: random_state plays no part
        s = load_trento(data_home=tmp_path, random_state=seed)
        np.testing.assert_array_equal(s.train_mask, tr > 0)
        np.testing.assert_array_equal(s.test_mask, ts > 0)
    np.testing.assert_array_equal(s.labels[s.train_mask], tr[tr > 0])
    np.testing.assert_array_equal(s.labels[s.test_mask], ts[ts > 0])
    assert s.train_mask.sum() == 819 and s.test_mask.sum() == 29395
    assert np.bincount(s.labels[s.train_mask]).tolist() == [0, 129, 125, 105, 154, 184, 122]
    assert "TRLabel" in s.DESCR and s.files["train"].endswith("TRLabel.mat")
    # Other splits still come from the ground truth, not from the files.
    d = load_trento(data_home=tmp_path, split=0.1, random_state=0)
    assert not np.array_equal(d.train_mask, tr > 0)


@requires_shared
def test_without_the_split_files_the_standard_counts_are_drawn(tmp_path):
    _trento_folder(tmp_path, ["Italy_lidar.mat", "allgrd.mat"])
    tr = read_mat(TRENTO / "TRLabel.mat", "TRLabel")
    s = load_trento(data_home=tmp_path, random_state=0)
    assert np.bincount(s.labels[s.train_mask]).tolist() == [0, 129, 125, 105, 154, 184, 122]
    assert not np.array_equal(s.train_mask, tr > 0)


@requires_shared
def test_split_files_that_disagree_with_the_ground_truth_are_refused(tmp_path):
    folder = _trento_folder(tmp_path, ["Italy_lidar.mat", "allgrd.mat", "TSLabel.mat"])
    tr = read_mat(TRENTO / "TRLabel.mat", "TRLabel").copy()
    r, c = np.argwhere(tr > 0)[0]
    tr[r, c] = tr[r, c] % 6 + 1  # one training pixel relabelled
    scipy.io.savemat(folder / "TRLabel.mat", {"TRLabel": tr})
    with pytest.raises(ValueError, match="do not add up to the ground truth"):
        load_trento(data_home=tmp_path)
