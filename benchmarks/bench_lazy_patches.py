"""Training on lazy patches (``ScenePatches``) against materialised patches: memory and speed.

A synthetic scene of ``--size`` x ``--size`` pixels and ``--bands`` bands (2000 x 2000 x 64
float32 by default: 1.0 GB) and 10^4, 10^5 and 10^6 labelled pixels drawn from it. For each
count, in a fresh process each (so each peak belongs to one measurement):

* lazy: ``MMLGNetClassifier.fit(ScenePatches(hsi, lidar, rows, cols, P), y)``, one epoch;
* materialised: ``fit(extract_patches(...), y)``, one epoch, where the patches fit in memory
  (``--max-materialised-gb``; 10^6 patches of 65 x 11 x 11 float32 are 31 GB).

Printed side by side: the peak resident memory of the process (Linux VmHWM) above the
memory once the scene is built, and training samples per second. A small network keeps the
10^6 epoch short; memory, not the network, is what this measures.

    python benchmarks/bench_lazy_patches.py [--size 2000] [--bands 64] [--patch-size 11]
    python benchmarks/bench_lazy_patches.py --quick     # 500 x 500 x 16, 10^3 / 10^4 / 10^5
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time


def _vm(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 2**20  # kB -> GB
    return float("nan")


def _reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS


def worker(args):
    """One measurement, in this process: prints a JSON line."""
    import numpy as np
    import torch

    from sklearn_mmlgnet import MMLGNetClassifier
    from sklearn_mmlgnet.patches import ScenePatches, extract_patches

    torch.set_num_threads(1)
    S, B, P = args.size, args.bands, args.patch_size
    gen = np.random.default_rng(0)
    hsi = gen.standard_normal((S, S, B), dtype=np.float32)
    lidar = gen.standard_normal((S, S), dtype=np.float32)
    rng = np.random.RandomState(0)
    idx = rng.choice(S * S, args.n, replace=False)
    rows, cols = np.divmod(idx, S)
    y = rng.randint(0, 4, args.n)
    emb = rng.normal(size=(4, 16)).astype(np.float32)
    clf = MMLGNetClassifier(text_embeddings=emb, module__hsi_channels=(8,),
                            module__lidar_channels=(4,), module__spectral_channels=(16,),
                            module__fusion_dim=16, max_epochs=1, batch_size=256,
                            augment=False, random_state=0)
    _reset_peak()
    base = _vm("VmRSS")
    t0 = time.perf_counter()
    if args.kind == "lazy":
        X = ScenePatches(hsi, lidar, rows, cols, patch_size=P)
    else:
        X = extract_patches(hsi, lidar, rows, cols, patch_size=P)
    t1 = time.perf_counter()
    clf.fit(X, y)
    t2 = time.perf_counter()
    print(json.dumps({"peak_gb": _vm("VmHWM") - base, "scene_gb": hsi.nbytes / 2**30,
                      "prepare_s": t1 - t0, "samples_per_s": args.n / (t2 - t1)}))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=2000)
    p.add_argument("--bands", type=int, default=64)
    p.add_argument("--patch-size", type=int, default=11)
    p.add_argument("--counts", type=int, nargs="+", default=[10**4, 10**5, 10**6])
    p.add_argument("--max-materialised-gb", type=float, default=8.0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--worker", choices=("lazy", "materialised"), help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        args.kind = args.worker
        return worker(args)
    if args.quick:
        args.size, args.bands, args.counts = 500, 16, [10**3, 10**4, 10**5]
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    B, P = args.bands + 1, args.patch_size
    print(f"command: python benchmarks/bench_lazy_patches.py"
          f"{' --quick' if args.quick else ''}\nCPU: {cpu}; one torch thread; scene "
          f"{args.size} x {args.size} x {args.bands} + 1 LiDAR band, float32 "
          f"({args.size**2 * B * 4 / 2**30:.2f} GB); {P} x {P} patches; one epoch, batch 256\n")
    print("| labelled pixels | patches as an array | lazy: peak above the scene | lazy samples/s "
          "| materialised: peak | materialised samples/s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in args.counts:
        row = {}
        array_gb = n * B * P * P * 4 / 2**30
        for kind in ("lazy", "materialised"):
            if kind == "materialised" and array_gb > args.max_materialised_gb:
                continue
            cmd = [sys.executable, __file__, "--worker", kind, "--n", str(n), "--size",
                   str(args.size), "--bands", str(args.bands), "--patch-size", str(P)]
            out = subprocess.run(cmd, capture_output=True, text=True,
                                 env=dict(os.environ, OMP_NUM_THREADS="1"))
            if out.returncode:
                sys.exit(f"{kind} n={n} failed:\n{out.stderr[-2000:]}")
            row[kind] = json.loads(out.stdout.strip().splitlines()[-1])
        lazy, mat = row["lazy"], row.get("materialised")
        mat_cells = (f"{mat['peak_gb']:.2f} GB | {mat['samples_per_s']:,.0f}" if mat else
                     f"not run (> {args.max_materialised_gb:g} GB) | -")
        print(f"| {n:,} | {array_gb:.2f} GB | {lazy['peak_gb']:.2f} GB | "
              f"{lazy['samples_per_s']:,.0f} | {mat_cells} |", flush=True)


if __name__ == "__main__":
    main()
