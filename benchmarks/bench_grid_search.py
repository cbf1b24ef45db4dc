"""Grid search cost: text encodings and time against one fit times the number of fits.

GridSearchCV over temperature x patch size with the CLIP ViT-B-32 text tower
(random weights, so it runs offline; encoding costs the same as with real ones),
starting from an empty text cache (``$MMLGNET_CACHE`` set to a new folder). Every fit
re-uses the cached class embeddings:
the number of encodings should be one per distinct prompt set.

    python benchmarks/bench_grid_search.py [--cv 3] [--epochs 3]
"""

import argparse
import os
import tempfile
import time
import warnings

import numpy as np
from sklearn.model_selection import GridSearchCV

from sklearn_mmlgnet import MMLGNetClassifier, text


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cv", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--n", type=int, default=300)
    a = p.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    rng = np.random.RandomState(0)
    names = np.array(["Apple trees", "Buildings", "Ground", "Woods", "Vineyard", "Roads"])
    y = names[rng.randint(0, 6, a.n)]
    X = rng.normal(size=(a.n, 64, 11, 11)).astype(np.float32)
    grid = {"temperature": [0.03, 0.07, 0.2], "patch_size": [7, 9, 11]}
    n_fits = a.cv * 9 + 1  # + the refit
    with tempfile.TemporaryDirectory() as cache:
        os.environ["MMLGNET_CACHE"] = cache  # the estimators' text cache: empty at the start
        clf = MMLGNetClassifier(clip_pretrained=None, max_epochs=a.epochs, random_state=0)
        before = text.ENCODE_CALLS
        t0 = time.perf_counter()
        clf.fit(X, y)  # first fit: encodes the prompts (cache miss)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        clf.fit(X, y)  # one fit with a warm cache
        one_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        GridSearchCV(clf, grid, cv=a.cv).fit(X, y)
        search = time.perf_counter() - t0
        encodes = text.ENCODE_CALLS - before
    print(f"grid: temperature x patch_size = 3 x 3, cv={a.cv}: {n_fits} fits on {a.n} samples, "
          f"{a.epochs} epochs each")
    print(f"text encodings in all ({2 + n_fits} fits, cold cache): {encodes}")
    print(f"first fit (encodes the prompts): {first:.1f} s; a fit with the cache warm: {one_fit:.1f} s")
    print(f"grid search: {search:.1f} s; one warm fit x {n_fits} fits = {one_fit * n_fits:.1f} s "
          f"(ratio {search / (one_fit * n_fits):.2f}; fits on smaller patches are cheaper)")


if __name__ == "__main__":
    main()
