"""Untuned vs tuned classic baselines, and the spectral-spatial SVM, on one split.

For each scene (Jasper Ridge from ``--data-home``, skipped when absent; the
synthetic HSI + LiDAR scene) and seed: the centre-pixel SVM with the benchmark's
old fixed setting (C=100, gamma="scale"), the same SVM with C and gamma tuned by
inner CV on the training pixels (random stratified folds, and spatially blocked
folds built from the training pixels' coordinates), and the spectral-spatial SVM
(extended morphological profiles, tuned with the spatial folds). Test pixels are
only predicted, batch by batch, after each fit. Prints OA / AA (%), fit seconds
and the chosen parameters.

    python benchmarks/bench_baselines.py --data-home ../shared/data --seeds 0 1 2
    python benchmarks/bench_baselines.py --datasets synthetic --extra   # + tuned KNN, RF
    python benchmarks/bench_baselines.py --emp-speed   # profile: vectorised vs skimage
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from sklearn_mmlgnet import datasets
from sklearn_mmlgnet.baselines import (
    inner_cv,
    spectral_spatial_svm,
    tuned_knn,
    tuned_random_forest,
    tuned_svm,
)
from sklearn_mmlgnet.metrics import evaluate
from sklearn_mmlgnet.patches import labelled_patches
from sklearn_mmlgnet.prediction import predict_scene
from sklearn_mmlgnet.preprocessing import CenterPixel


def methods(n_lidar, rows, cols, seed, patch_size, extra):
    def spatial():
        return inner_cv(rows=rows, cols=cols, patch_size=patch_size, random_state=seed)

    out = {
        "SVM C=100 (untuned), centre": lambda: make_pipeline(CenterPixel(), StandardScaler(),
                                                            SVC(C=100, gamma="scale")),
        "SVM tuned, random folds, centre": lambda: tuned_svm(random_state=seed),
        "SVM tuned, spatial folds, centre": lambda: tuned_svm(cv=spatial(), random_state=seed),
        "EMP SVM tuned, spatial folds": lambda: spectral_spatial_svm(
            n_lidar, cv=spatial(), random_state=seed),
        "EMP SVM tuned, random folds": lambda: spectral_spatial_svm(n_lidar, random_state=seed),
    }
    if extra:
        out["KNN tuned, spatial folds, centre"] = lambda: tuned_knn(cv=spatial(), random_state=seed)
        out["RF tuned, spatial folds, centre"] = lambda: tuned_random_forest(
            cv=spatial(), random_state=seed)
    return out


def run(name, scene, seed, patch_size, extra):
    Xtr, ytr, rows, cols = labelled_patches(scene, scene.train_mask, patch_size)
    test = scene.test_mask & (scene.labels > 0)
    print(f"\n{name}, seed {seed}: {len(ytr)} training / {int(test.sum())} test pixels, "
          f"{Xtr.shape[1]} bands, {patch_size} x {patch_size} patches")
    print(f"{'method':36s} {'OA':>6s} {'AA':>6s} {'fit s':>7s} {'pred s':>7s}  chosen")
    for label, build in methods(scene.lidar.shape[2], rows, cols, seed, patch_size, extra).items():
        est = build()
        t0 = time.perf_counter()
        est.fit(Xtr, ytr)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        pred = predict_scene(est, scene.hsi, scene.lidar, patch_size, mask=test)[test]
        pred_s = time.perf_counter() - t0
        res = evaluate(scene.labels[test], pred)
        chosen = getattr(est, "best_params_", "")
        print(f"{label:36s} {100 * res['OA']:6.2f} {100 * res['AA']:6.2f} {fit_s:7.1f} "
              f"{pred_s:7.1f}  {chosen}", flush=True)


def emp_speed(n=2000, P=11, radii=(1, 2, 3), seed=0):
    """The vectorised profile against skimage image by image, on the same images."""
    from scipy.ndimage import uniform_filter
    from skimage import morphology

    from sklearn_mmlgnet.preprocessing import _profile_centres

    rng = np.random.RandomState(seed)
    images = uniform_filter(rng.rand(n, P, P), size=(1, 3, 3)).astype(np.float32)
    t0 = time.perf_counter()
    fast = _profile_centres(images, radii, "disk")
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    ops = ((morphology.erosion, "dilation"), (morphology.dilation, "erosion"))
    slow = np.array([[morphology.reconstruction(op(img, morphology.disk(r)), img, method=m)[P // 2,
                                                                                          P // 2]
                      for op, m in ops for r in radii] for img in images])
    t_slow = time.perf_counter() - t0
    assert np.array_equal(fast, slow)
    print(f"\nprofile of {n} {P}x{P} images, radii {radii}: vectorised {t_fast:.2f} s, skimage per "
          f"image {t_slow:.2f} s ({t_slow / t_fast:.1f}x); identical values")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-home", default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--patch-size", type=int, default=11)
    p.add_argument("--datasets", nargs="+", default=["jasper_ridge", "synthetic"])
    p.add_argument("--extra", action="store_true", help="also the tuned KNN and random forest")
    p.add_argument("--emp-speed", action="store_true",
                   help="only time the vectorised profile against skimage per image")
    args = p.parse_args(argv)
    if args.emp_speed:
        emp_speed()
        return
    for seed in args.seeds:
        for name in args.datasets:
            if name == "synthetic":
                scene = datasets.make_hsi_lidar_scene(random_state=0)
            else:
                try:
                    scene = datasets.load_jasper_ridge(data_home=args.data_home, random_state=seed,
                                                       patch_size=args.patch_size)
                except (OSError, FileNotFoundError) as exc:
                    print(f"[skip] {name}: {exc}")
                    continue
            run(name, scene, seed, args.patch_size, args.extra)


if __name__ == "__main__":
    main()
