"""Full-scene prediction, dense path against patch path: pixels per second and peak memory.

One fitted MMLGNet (default widths, 15 classes, 512-d text embeddings, 11 x 11
patches) and one Houston-sized scene (349 x 1905 px, 144 HSI + 1 LiDAR bands),
measured side by side:

* the dense path (``predict_scene(method="dense")``) on the full scene and on
  its top half: seconds, pixels/s, and the peak resident memory above the
  memory before predicting (which must not grow with the scene);
* the patch path (``method="patches"``) on a band of full-width rows (the whole
  scene would take minutes): pixels/s and peak memory;
* on those same pixels, the largest difference between the two paths'
  probabilities and whether every label agrees.

Each measurement runs in a fresh process that loads the same pickled model, so
its peak (Linux VmHWM, reset through /proc/self/clear_refs after a small
warm-up prediction) belongs to that measurement alone.

    python benchmarks/bench_predict_scene.py [--rows 349] [--cols 1905] [--patch-rows 2] [--threads N]

``--test-time-augment`` measures the model with ``test_time_augment=True`` (each pixel
the mean of its patch's 8 symmetries) on both paths.
"""

import argparse
import json
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time

N_HSI, PATCH = 144, 11


def _proc_status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB -> MiB
    return float("nan")


def _scene(rows, cols):
    import numpy as np

    rng = np.random.default_rng(1)  # the same scene in every process; float32 from the start
    hsi = rng.random((rows, cols, N_HSI), dtype=np.float32)
    lidar = rng.random((rows, cols, 1), dtype=np.float32)
    return hsi, lidar


def fit_model(path, test_time_augment=False):
    import numpy as np

    from sklearn_mmlgnet import MMLGNetClassifier

    rng = np.random.default_rng(0)
    X = rng.random((512, N_HSI + 1, PATCH, PATCH), dtype=np.float32)
    y = np.arange(512) % 15
    X[np.arange(512), y] += 0.5  # a learnable signal: class c lifts band c
    clf = MMLGNetClassifier(text_embeddings=rng.normal(size=(15, 512)), max_epochs=5, lr=1e-3,
                            random_state=0).fit(X, y)
    clf.set_params(test_time_augment=test_time_augment)  # read at prediction only
    with open(path, "wb") as f:
        pickle.dump(clf, f)


def child(model_path, method, rows, cols, patch_rows):
    import numpy as np

    from sklearn_mmlgnet.prediction import predict_scene, predict_scene_proba

    with open(model_path, "rb") as f:
        clf = pickle.load(f)
    hsi, lidar = _scene(rows, cols)
    mask = None
    if method == "patches":
        mask = np.zeros((rows, cols), bool)
        r0 = rows // 2
        mask[r0:r0 + patch_rows] = True
    # Warm-up on a corner (thread pools, oneDNN kernels), then reset the peak.
    predict_scene(clf, hsi[:16, :64], lidar[:16, :64], PATCH, method=method)
    with open("/proc/self/clear_refs", "w") as f:  # VmHWM := current RSS
        f.write("5")
    before = _proc_status("VmRSS")
    t0, c0 = time.perf_counter(), time.process_time()
    out = predict_scene(clf, hsi, lidar, PATCH, mask=mask, method=method)  # the label map
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _proc_status("VmHWM")
    n = int(mask.sum()) if mask is not None else int(out.size)
    res = {"method": method, "rows": rows, "cols": cols, "pixels": n, "seconds": dt,
           "cpu_seconds": cpu, "pixels_per_s": n / dt, "peak_above_mib": peak - before,
           "rss_before_mib": before}
    if method == "patches":  # both paths' probabilities on these pixels, after the measurement
        p_patch = predict_scene_proba(clf, hsi, lidar, PATCH, mask=mask, method="patches")[mask]
        p_dense = predict_scene_proba(clf, hsi, lidar, PATCH, mask=mask, method="dense")[mask]
        res["max_proba_diff"] = float(np.abs(p_dense - p_patch).max())
        res["labels_agree"] = float((p_dense.argmax(1) == p_patch.argmax(1)).mean())
        res["max_proba"] = float(p_patch.max(1).mean())
    print(json.dumps(res))


def _run(*args):
    res = subprocess.run([sys.executable, __file__, "--child", *map(str, args)],
                         capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"measurement {args} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=349)
    p.add_argument("--cols", type=int, default=1905)
    p.add_argument("--patch-rows", type=int, default=2,
                   help="full-width rows predicted by the patch path (default: 2)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads in every measurement (default: torch's own choice)")
    p.add_argument("--test-time-augment", action="store_true",
                   help="predict with test_time_augment=True (8 network passes)")
    p.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    a = p.parse_args()
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
        os.environ["OMP_NUM_THREADS"] = str(a.threads)  # for the child processes
    if a.child:
        model, method, rows, cols, patch_rows = a.child
        return child(model, method, int(rows), int(cols), int(patch_rows))
    t_start, load0 = time.perf_counter(), os.getloadavg()[0]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads); "
          f"scene {a.rows} x {a.cols}, "
          f"{N_HSI} + 1 bands, {PATCH} x {PATCH} patches"
          + (", test_time_augment=True" if a.test_time_augment else ""), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "model.pkl")
        fit_model(model, a.test_time_augment)
        half = (a.rows + 1) // 2
        full = _run(model, "dense", a.rows, a.cols, a.patch_rows)
        halfr = _run(model, "dense", half, a.cols, a.patch_rows)
        patches = _run(model, "patches", a.rows, a.cols, a.patch_rows)
    print("| path | scene | pixels predicted | seconds | CPU seconds | pixels/s | "
          "peak above RSS before (MiB) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in (full, halfr, patches):
        what = f"{r['rows']} x {r['cols']}" + (
            f", {a.patch_rows} full rows" if r["method"] == "patches" else "")
        print(f"| {r['method']} | {what} | {r['pixels']} | {r['seconds']:.1f} | "
              f"{r['cpu_seconds']:.1f} | "
              f"{r['pixels_per_s']:.0f} | {r['peak_above_mib']:.0f} |")
    print()
    print(f"dense / patch speed: {full['pixels_per_s'] / patches['pixels_per_s']:.0f}x "
          f"(target >= 30x); full scene dense map in {full['seconds']:.1f} s (target < 15 s)")
    grow = full["peak_above_mib"] / halfr["peak_above_mib"] - 1
    print(f"dense peak memory above baseline, full vs half scene: {full['peak_above_mib']:.0f} vs "
          f"{halfr['peak_above_mib']:.0f} MiB ({100 * grow:+.1f} %, target within 10 %)")
    print(f"on the patch path's {patches['pixels']} pixels: max |p_dense - p_patches| = "
          f"{patches['max_proba_diff']:.1e}, labels agree on {100 * patches['labels_agree']:.2f} % "
          f"(mean top probability {patches['max_proba']:.2f})")
    print(f"benchmark wall time: {time.perf_counter() - t_start:.0f} s; load average (1 min) "
          f"{load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (other processes "
          "sharing the CPUs slow the wall-clock figures, not the CPU seconds)")


if __name__ == "__main__":
    main()
