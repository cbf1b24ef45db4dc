"""Text side without network: how fast the missing-CLIP-weights error comes, and
how much random CLIP weights say about class names.

1. ``MMLGNetClassifier(clip_pretrained="openai").fit`` with an empty weight cache
   and no network: seconds until ``TextEncoderUnavailableError`` (the real
   reachability probe runs; ``HF_HUB_OFFLINE`` is unset for it), then the same with
   ``HF_HUB_OFFLINE=1``, which skips the probe.
2. ``clip_pretrained=None``: the pairwise cosine similarities of the six Trento
   class embeddings from the ViT-B-32 text tower with seeded random weights.

    python benchmarks/bench_text_offline.py
"""

import logging
import os
import tempfile
import time
import warnings

import numpy as np

t_import = time.perf_counter()
import open_clip  # noqa: E402,F401  (imported up front: timed separately from the failure)

from sklearn_mmlgnet import MMLGNetClassifier  # noqa: E402
from sklearn_mmlgnet.text import (  # noqa: E402
    OpenCLIPTextEncoder,
    TextEncoderUnavailableError,
    encode_class_names,
)

t_import = time.perf_counter() - t_import
NAMES = ["Apple trees", "Buildings", "Ground", "Woods", "Vineyard", "Roads"]


def time_failure():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(12, 65, 5, 5)).astype(np.float32)
    y = np.array(NAMES)[np.arange(12) % 6]
    clf = MMLGNetClassifier(clip_pretrained="openai", max_epochs=1)
    start = time.perf_counter()
    try:
        clf.fit(X, y)
    except TextEncoderUnavailableError:
        return time.perf_counter() - start
    return None  # the weights were found (cached or reachable): nothing to time


def main():
    with tempfile.TemporaryDirectory() as hf_home:
        # Empty weight and text caches: nothing is found on disk.
        os.environ.update(HF_HOME=hf_home, HF_HUB_CACHE=os.path.join(hf_home, "hub"),
                          MMLGNET_CACHE=os.path.join(hf_home, "text"))
        os.environ.pop("HF_HUB_OFFLINE", None)
        probe = time_failure()
        os.environ["HF_HUB_OFFLINE"] = "1"
        flag = time_failure()
    print(f"import of open_clip + sklearn_mmlgnet: {t_import:.1f} s")
    for label, s in (("network probe", probe), ("HF_HUB_OFFLINE=1", flag)):
        print(f"fit -> TextEncoderUnavailableError, {label}: "
              + ("weights available, no error" if s is None else f"{s:.2f} s"))
    logging.disable(logging.WARNING)  # open_clip logs "initialized randomly": expected here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        emb = encode_class_names(NAMES, encoder=OpenCLIPTextEncoder("ViT-B-32", pretrained=None),
                                 cache_dir=False)  # unit rows
    cos = (emb @ emb.T)[np.triu_indices(len(NAMES), 1)]
    print(f"random-weight ViT-B-32, cosine between the 6 class embeddings: "
          f"min {cos.min():.3f}, median {np.median(cos):.3f}, max {cos.max():.3f}")


if __name__ == "__main__":
    main()
