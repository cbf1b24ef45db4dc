"""The on-disk cache of class text embeddings: ``.npy`` files keyed by encoder and prompts."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np

from ._io import atomic_path


def default_cache_dir():
    """``$MMLGNET_CACHE`` or ``~/.cache/sklearn_mmlgnet``."""
    return os.environ.get("MMLGNET_CACHE", str(Path.home() / ".cache" / "sklearn_mmlgnet"))


def cache_file(cache_dir, identity, prompts):
    """The ``.npy`` file of one (encoder identity, prompts) pair."""
    key = json.dumps({"identity": identity, "prompts": prompts}, sort_keys=True, default=str)
    return Path(cache_dir) / "text_embeddings" / (hashlib.sha256(key.encode()).hexdigest() + ".npy")


def read_cached(path, n_classes):
    """Cached embeddings, or None when the entry is absent, unreadable or malformed.

    Read with ``allow_pickle=False``: a cache entry can hold numbers only, never code.
    """
    try:
        emb = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if not isinstance(emb, np.ndarray):  # an .npz archive under the entry's name
        emb.close()
        return None
    ok = (emb.ndim == 2 and emb.shape[0] == n_classes and emb.shape[1] > 0
          and emb.dtype == np.float32 and np.isfinite(emb).all())
    return emb if ok else None


def write_cached(path, emb):
    """Store ``emb`` whole or not at all; a cache that cannot be written only warns."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, emb, allow_pickle=False)
    except OSError as exc:
        warnings.warn(f"text embedding cache {path.parent} could not be written ({exc}); the "
                      "embeddings were computed without caching.", UserWarning, stacklevel=3)
