"""Peak memory and speed of ``predict_raster`` on scenes written larger than the memory it may use.

Writes synthetic float32 GeoTIFF scenes (``--sizes`` px square, ``--bands`` HSI
bands + a 1-band CHM), then in a fresh subprocess per run predicts each whole
scene into a GeoTIFF map and reports the peak resident memory above the
process's baseline (after imports and loading the model): flat memory means
the same figure at every scene size. Speed is measured single-process and on a
``LocalCluster`` of 2 worker processes (1 thread each), where the driver's and
each worker's peak memory (above its baseline after imports) is reported too.

Two models: a cheap one (``BandStandardScaler + CenterPixel + LogisticRegression``
on 3 x 3 patches) for the whole scenes, since the MMLGNet patch path runs at
about 1,600 px/s on 2 cores (hours for 16 M px); and a tiny MMLGNet
(5 x 5 patches) on a smaller scene (``--mmlgnet-size``) for px/s.

Usage::

    python benchmarks/bench_predict_raster.py --sizes 2000 4000 --bands 64 --workdir /tmp/bench

The scene files are deleted at the end unless ``--keep``. Figures go to stdout
(a Markdown table) and ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _rss_mib(field="VmRSS"):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak():
    """Restart the kernel's peak-RSS count (VmHWM) from the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def write_scene(folder, size, bands, seed=0, rows_per_block=128):
    """A size x size x bands float32 GeoTIFF and a CHM, written block by block (bounded memory)."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    folder.mkdir(parents=True, exist_ok=True)
    hsi, chm = folder / f"hsi_{size}.tif", folder / f"chm_{size}.tif"
    profile = dict(driver="GTiff", width=size, height=size, crs="EPSG:32617", dtype="float32",
                   transform=from_origin(500000.0, 4100000.0, 1.0, 1.0), tiled=True,
                   blockxsize=256, blockysize=256, BIGTIFF="YES")
    rng = np.random.default_rng(seed)
    stripe = (np.arange(size) * 4) // size  # 4 classes in vertical stripes
    lift = np.zeros((bands, size), np.float32)
    for c in range(4):
        lift[c, stripe == c] = 1.0
    with rasterio.open(hsi, "w", count=bands, **profile) as h, \
            rasterio.open(chm, "w", count=1, **profile) as l:
        for r0 in range(0, size, rows_per_block):
            n = min(rows_per_block, size - r0)
            win = Window(0, r0, size, n)
            block = rng.standard_normal((bands, n, size), dtype=np.float32)
            block += lift[:, None, :]
            h.write(block, window=win)
            l.write((5.0 * stripe[None, :] + rng.standard_normal((n, size), dtype=np.float32))[None],
                    window=win)
    return hsi, chm


def fit_models(bands, path):
    """The cheap model and a tiny MMLGNet, fitted on random labelled pixels; pickled to ``path``."""
    import joblib
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from sklearn_mmlgnet import BandStandardScaler, CenterPixel, MMLGNetClassifier
    from sklearn_mmlgnet.scene import SceneModel

    rng = np.random.default_rng(1)
    y = rng.integers(1, 5, 400)
    X = rng.standard_normal((400, bands + 1, 5, 5)).astype(np.float32)
    for c in range(1, 5):
        X[y == c, c - 1] += 1.0
    cheap = make_pipeline(BandStandardScaler(), CenterPixel(), LogisticRegression(max_iter=200))
    cheap.fit(X[:, :, 1:4, 1:4], y)
    net = make_pipeline(BandStandardScaler(), MMLGNetClassifier(
        n_lidar_bands=1, text_embeddings=np.eye(4, 8), module__hsi_channels=(16,),
        module__lidar_channels=(8,), module__fusion_dim=16, max_epochs=2,
        random_state=0)).fit(X, y)
    info = dict(n_hsi_bands=bands, n_lidar_bands=1)
    joblib.dump({"cheap": SceneModel(cheap, dict(info, patch_size=3)),
                 "mmlgnet": SceneModel(net, dict(info, patch_size=5))}, path)


def child(spec):
    """One run in a fresh process: baseline RSS, predict, peak RSS."""
    import joblib
    import torch

    torch.set_num_threads(1)
    from sklearn_mmlgnet.io import predict_raster

    model = joblib.load(spec["models"])[spec["model"]]
    client = cluster = None
    if spec["workers"]:
        import distributed

        cluster = distributed.LocalCluster(n_workers=spec["workers"], threads_per_worker=1,
                                           processes=True, dashboard_address=None)
        client = distributed.Client(cluster)
        client.run(lambda: __import__("torch").set_num_threads(1))
        client.run(lambda: __import__("sklearn_mmlgnet.io"))  # imports out of the timing
        worker_base = client.run(_rss_mib)
        client.run(_reset_peak)
    base = _rss_mib()
    _reset_peak()
    t0 = time.perf_counter()
    predict_raster(model, spec["hsi"], spec["chm"], spec["out"], block_size=spec["block"],
                   client=client, progress=False)
    seconds = time.perf_counter() - t0
    res = dict(spec, seconds=seconds, baseline_mib=base, peak_mib=_rss_mib("VmHWM"))
    if client is not None:
        peaks = client.run(_rss_mib, "VmHWM")
        res["worker_peak_mib"] = [peaks[w] - worker_base[w] for w in sorted(peaks)]
        client.close()
        cluster.close()
    os.remove(spec["out"])
    os.remove(spec["out"] + ".aux.xml")
    print("RESULT " + json.dumps(res), flush=True)


def run_child(spec):
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                          capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 4000])
    ap.add_argument("--bands", type=int, default=64)
    ap.add_argument("--mmlgnet-size", type=int, default=512)
    ap.add_argument("--block", type=int, default=256)
    ap.add_argument("--workdir", default="/tmp/bench_predict_raster")
    ap.add_argument("--out", default=None, help="JSON file for the figures")
    ap.add_argument("--keep", action="store_true", help="keep the scene files")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(json.loads(args.child))

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    models = work / "models.joblib"
    fit_models(args.bands, models)
    rows, files = [], []
    try:
        plan = [(s, "cheap", w) for s in args.sizes for w in ((0, 2) if s == min(args.sizes) else (0,))]
        plan += [(args.mmlgnet_size, "mmlgnet", w) for w in (0, 2)]
        written = {}
        for size, model, workers in plan:
            if size not in written:
                t0 = time.perf_counter()
                written[size] = write_scene(work, size, args.bands)
                files += list(written[size])
                gb = written[size][0].stat().st_size / 1e9
                print(f"wrote {size} x {size} x {args.bands} float32 ({gb:.2f} GB) in "
                      f"{time.perf_counter() - t0:.0f} s", flush=True)
            hsi, chm = written[size]
            res = run_child(dict(hsi=str(hsi), chm=str(chm), out=str(work / "map.tif"),
                                 models=str(models), model=model, workers=workers,
                                 block=args.block, size=size, bands=args.bands,
                                 scene_gb=hsi.stat().st_size / 1e9))
            res["px_per_s"] = size * size / res["seconds"]
            rows.append(res)
            print(f"  {size}^2 {model:8s} workers={workers}: {res['seconds']:.1f} s, "
                  f"{res['px_per_s']:,.0f} px/s, peak {res['peak_mib'] - res['baseline_mib']:.0f} "
                  f"MiB above baseline" + (f", workers' peaks {[round(m) for m in res['worker_peak_mib']]} MiB above baseline"
                                           if workers else ""), flush=True)
    finally:
        if not args.keep:
            for f in files:
                f.unlink(missing_ok=True)
            models.unlink(missing_ok=True)
    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
          f"{time.perf_counter() - t_all:.0f} s in all\n")
    print("| scene | GB on disk | model | processes | s | px/s | driver peak above baseline (MiB) "
          "| each worker's peak above baseline (MiB) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        procs = f"{r['workers']} dask workers" if r["workers"] else "1"
        peaks = ", ".join(f"{m:.0f}" for m in r.get("worker_peak_mib", [])) or "-"
        print(f"| {r['size']} x {r['size']} x {r['bands']} | {r['scene_gb']:.2f} | {r['model']} | "
              f"{procs} | {r['seconds']:.1f} | "
              f"{r['px_per_s']:,.0f} | {r['peak_mib'] - r['baseline_mib']:.0f} | "
              f"{peaks} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
