"""Full-scene prediction: pixels per second and peak memory, at two scene sizes.

Predicts every pixel of a Houston-sized scene (349 x 1905 px, 144 HSI + 1 LiDAR
bands, 11 x 11 patches) and of a scene half as tall, each in a fresh process so
the peak resident memory belongs to that size alone. The scene itself
is the caller's array (349 x 1905 x 145 float32 = 368 MiB); the figure that must
stay bounded is the peak while predicting above the resident memory before it
(Linux: VmHWM reset through /proc/self/clear_refs), which predict_scene's
batches keep constant whatever the scene size.

    python benchmarks/bench_predict_scene.py [--rows 349 175] [--cols 1905] [--batch-size 1024]
"""

import argparse
import json
import platform
import subprocess
import sys
import time


def _proc_status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB -> MiB
    return float("nan")


def child(rows, cols, batch_size):
    import numpy as np

    from sklearn_mmlgnet import MMLGNetClassifier
    from sklearn_mmlgnet.patches import predict_scene

    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 145, 11, 11)).astype(np.float32)
    clf = MMLGNetClassifier(text_embeddings=rng.normal(size=(15, 512)), max_epochs=1,
                            random_state=0).fit(X, np.arange(64) % 15)
    hsi = rng.random((rows, cols, 144), dtype=np.float32)  # float32 from the start
    lidar = rng.random((rows, cols, 1), dtype=np.float32)
    with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS
        f.write("5")
    before = _proc_status("VmRSS")
    t0 = time.perf_counter()
    out = predict_scene(clf, hsi, lidar, patch_size=11, batch_size=batch_size)
    dt = time.perf_counter() - t0
    print(json.dumps({"rows": rows, "cols": cols, "pixels": int(out.size), "seconds": dt,
                      "pixels_per_s": out.size / dt, "peak_rss_mib": _proc_status("VmHWM"),
                      "rss_before_predict_mib": before,
                      "scene_mib": (hsi.nbytes + lidar.nbytes) / 2**20}))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[349, 175])
    p.add_argument("--cols", type=int, default=1905)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        return child(a.rows[0], a.cols, a.batch_size)
    print(f"machine: {platform.processor() or platform.machine()}; 144 + 1 bands, 11 x 11 patches, "
          f"batch {a.batch_size} pixels")
    print("| scene | pixels | pixels/s | seconds | scene array (MiB) | RSS before predict (MiB) | "
          "peak RSS while predicting (MiB) | peak above RSS before (MiB) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for rows in a.rows:
        res = subprocess.run([sys.executable, __file__, "--child", "--rows", str(rows), "--cols",
                              str(a.cols), "--batch-size", str(a.batch_size)],
                             capture_output=True, text=True, check=True)
        r = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"| {r['rows']} x {r['cols']} | {r['pixels']} | {r['pixels_per_s']:.0f} | "
              f"{r['seconds']:.0f} | {r['scene_mib']:.0f} | {r['rss_before_predict_mib']:.0f} | "
              f"{r['peak_rss_mib']:.0f} | {r['peak_rss_mib'] - r['rss_before_predict_mib']:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
