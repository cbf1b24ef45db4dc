"""Speed against the machine's own peak: training and dense prediction, before and after.

One run measures, on this machine and in interleaved rounds (the median of each):

* the **peaks** it compares against (the best of several rounds), at 1 and 2
  threads: a large float32 (and bfloat16) matrix product, the better of torch's
  ``mm`` (MKL) and oneDNN's linear kernel, and a 3 x 3 convolution of the HSI
  encoder's shapes (144 -> 64 channels, channels-last), on training batches
  (256 x 11 x 11) and on a dense tile, the better of the two;
* the **work**: FLOPs of one training sample of the default MMLGNet (144 HSI + 1
  LiDAR bands, 11 x 11 patches, forward and backward) and of one pixel of dense
  prediction, counted by :class:`torch.utils.flop_counter.FlopCounterMode`,
  convolutions apart;
* **fit**: samples/s of ``MMLGNetClassifier.fit`` (the second epoch's duration in
  skorch's history), "before" with today's defaults (batch 64, float32), "after"
  with ``precision="bf16"``, and batch 256 in bf16 for reference; GFLOP/s and the
  fraction of the float32 convolution peak (and of the peak in the run's own
  precision);
* **dense** ``predict_scene`` on the synthetic scene (166 x 600 px, 144 + 1
  bands) with a model fitted on it: "before" is the earlier dense forward, frozen
  in ``_dense_before.py``; "after" the package's, in float32 and in bfloat16
  (``autocast=True``); px/s, GFLOP/s, the fraction of the peak (the time the
  pixel's convolutions and matrix products would take at the measured peaks, over
  the time taken), and how many labels agree with "before";
* **threads**: fit and dense px/s at 1 and 2 threads, with GNU OpenMP's default
  wait policy and with ``OMP_WAIT_POLICY=PASSIVE`` (each in its own process, as
  OpenMP reads it once; the processes alternate);
* **accuracy** (not with ``--quick``): the validation accuracy of fits in float32
  and in bfloat16 (and at batch 256) on the synthetic scene's training pixels
  (an inner split), and the test OA of their dense maps.

Every figure is a ratio to one measured in the same run: the machine is shared and
its load moves; the load average is printed at the start and the end.

    python benchmarks/bench_speed.py [--quick] [--json results.json]

The default run takes about 5 minutes on 2 busy cores, ``--quick`` under one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
N_HSI, PATCH, N_CLASSES = 144, 11, 15


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def n_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def load():
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


# ---------------------------------------------------------------------- child side
def _median_times(fns, rounds, best=False):
    """{name: median seconds} (or the least, ``best``): each round calls every function
    once, in turn."""
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            times[k].append(fn())
    pick = min if best else statistics.median
    return {k: pick(v) for k, v in times.items()}


def _timed(fn):
    def run():
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    return run


def _with_threads(n, fn):
    import torch

    def run():
        torch.set_num_threads(n)
        return fn()
    return run


def _random_patches(n, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    X = rng.random((n, N_HSI + 1, PATCH, PATCH), dtype=np.float32)
    y = np.arange(n) % N_CLASSES
    X[np.arange(n), y] += 0.5  # class c lifts band c
    return X, y, rng.normal(size=(N_CLASSES, 512)).astype(np.float32)


def _classifier(precision="fp32", **params):
    from sklearn_mmlgnet import MMLGNetClassifier

    return MMLGNetClassifier(**params, precision=precision)


def fit_epoch_seconds(X, y, emb, batch_size, precision):
    """The second epoch's seconds of a 2-epoch fit (the first warms up)."""
    clf = _classifier(precision, text_embeddings=emb, max_epochs=2, batch_size=batch_size,
                      random_state=0)
    clf.fit(X, y)
    return clf.history_[-1, "dur"]


def peaks(threads, quick):
    """{name: GFLOP/s} of the reference kernels at each thread count."""
    import torch
    import torch.nn.functional as F

    M, K, N = 4096, 1024, 1024
    gemm_flops = 2 * M * K * N
    tile = 160
    shapes = {"train": (256, PATCH + 2), "tile": (1, tile + 2)}
    fns, flops = {}, {}
    for dtype, tag in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        a, w = torch.randn(M, K, dtype=dtype), torch.randn(N, K, dtype=dtype)
        b = torch.zeros(N, dtype=dtype)
        kernels = {"mm": lambda a=a, w=w: torch.mm(a, w.t())}
        try:
            op = torch.ops.mkldnn._linear_pointwise
            op(a[:8], w, b, "none", [], "")
            kernels["onednn"] = lambda a=a, w=w, b=b, op=op: op(a, w, b, "none", [], "")
        except (AttributeError, RuntimeError):
            pass
        for kname, fn in kernels.items():
            for t in threads:
                fns[f"sgemm {tag} {kname} {t}"] = _with_threads(t, _timed(fn))
                flops[f"sgemm {tag} {kname} {t}"] = gemm_flops
        for sname, (n, side) in shapes.items():
            x = torch.randn(n, N_HSI, side, side, dtype=dtype).contiguous(
                memory_format=torch.channels_last)
            cw = torch.randn(64, N_HSI, 3, 3, dtype=dtype).contiguous(
                memory_format=torch.channels_last)
            for t in threads:
                key = f"conv {tag} {sname} {t}"
                fns[key] = _with_threads(t, _timed(lambda x=x, cw=cw: F.conv2d(x, cw)))
                flops[key] = 2 * n * (side - 2) ** 2 * 64 * N_HSI * 9
    for fn in fns.values():  # warm-up
        fn()
    best = _median_times(fns, 4 if quick else 7, best=True)  # a peak: the best round
    rates = {k: flops[k] / best[k] / 1e9 for k in fns}
    out = {}
    for t in threads:
        for tag in ("fp32", "bf16"):
            out[f"sgemm {tag} {t}"] = max(v for k, v in rates.items()
                                          if k.startswith(f"sgemm {tag} ") and k.endswith(f" {t}"))
            out[f"conv {tag} {t}"] = max(v for k, v in rates.items()
                                         if k.startswith(f"conv {tag} ") and k.endswith(f" {t}"))
    out["detail"] = rates
    return out


def _split(counts):
    """(convolution FLOPs, other FLOPs) of a FlopCounterMode's global counts."""
    conv = sum(v for k, v in counts.items() if "convolution" in str(k))
    return conv, sum(counts.values()) - conv


def work():
    """FLOPs of one training sample and of one dense pixel (convolutions, other)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from _dense_before import dense_logits_before
    from sklearn_mmlgnet.nn import MMLGNetModule

    torch.manual_seed(0)
    net = MMLGNetModule(N_HSI, 1, torch.randn(N_CLASSES, 512))
    n = 32
    x = torch.randn(n, N_HSI + 1, PATCH, PATCH)
    counter = FlopCounterMode(display=False)
    with counter:
        net.train()(x).logsumexp(1).sum().backward()
    train = [v / n for v in _split(counter.get_flop_counts()["Global"])]
    net.eval()
    R = 96  # a tile about as the dense path cuts them (halo included)
    tile = torch.randn(1, N_HSI + 1, R + PATCH - 1, R + PATCH - 1)
    counter = FlopCounterMode(display=False)
    with counter:
        dense_logits_before(net, tile, PATCH)
    pixel = [v / R ** 2 for v in _split(counter.get_flop_counts()["Global"])]
    return {"train": train, "pixel": pixel}


def _scene(quick):
    import numpy as np

    from sklearn_mmlgnet.datasets import make_hsi_lidar_scene
    from sklearn_mmlgnet.patches import labelled_patches

    # --quick: a quarter of the scene's area, with its own training pixels
    size = dict(n_rows=83, n_cols=300) if quick else {}
    scene = make_hsi_lidar_scene(n_bands=N_HSI, random_state=0, **size)
    X, y, _, _ = labelled_patches(scene, scene.train_mask, PATCH)
    # standardised bands, as a BandStandardScaler in a Pipeline would give
    flat = np.concatenate([scene.hsi, scene.lidar], axis=-1).reshape(-1, N_HSI + 1)
    mean, std = flat.mean(0), flat.std(0) + 1e-6
    Xs = ((X - mean[None, :, None, None]) / std[None, :, None, None]).astype(np.float32)
    hsi = ((scene.hsi - mean[:N_HSI]) / std[:N_HSI]).astype(np.float32)
    lidar = ((scene.lidar - mean[N_HSI:]) / std[N_HSI:]).astype(np.float32)
    return scene, Xs, y, hsi, lidar


def accuracy(scene, X, y, hsi, lidar, epochs, rng_seed=0):
    """Inner-validation accuracy and dense test OA of fits in each precision."""
    import numpy as np
    from skorch.dataset import ValidSplit

    from sklearn_mmlgnet.prediction import predict_scene

    emb = np.random.default_rng(rng_seed).normal(size=(len(np.unique(y)), 512))
    test = scene.test_mask & (scene.labels > 0)
    out, models = {}, {}
    for name, bs, prec, lr in (("fp32, batch 64", 64, "fp32", 5e-4),
                               ("bf16, batch 64", 64, "bf16", 5e-4),
                               ("bf16, batch 256, lr x4", 256, "bf16", 2e-3)):
        clf = _classifier(prec, text_embeddings=emb, max_epochs=epochs, batch_size=bs, lr=lr,
                          train_split=ValidSplit(0.2, stratified=True, random_state=0),
                          random_state=0)
        t0 = time.perf_counter()
        clf.fit(X, y)
        seconds = time.perf_counter() - t0
        valid = [clf.history_[-k, "valid_acc"] for k in (1, 2, 3)]
        pred = predict_scene(clf, hsi, lidar, PATCH)
        out[name] = {"valid_acc_last3": float(np.mean(valid)),
                     "test_OA": float(np.mean(pred[test] == scene.labels[test])),
                     "fit_seconds": seconds}
        models[name] = clf
    return out, models


def dense_speed(clf, hsi, lidar, threads, rounds, with_before=True):
    import numpy as np

    from _dense_before import predict_labels_before
    from sklearn_mmlgnet.prediction import predict_scene

    net = clf.net_.module_
    labels = {}

    def keep(name, fn):
        def run():
            labels[name] = fn()
        return _timed(run)

    variants = {}
    if with_before:
        variants["before fp32"] = lambda: clf.classes_[predict_labels_before(net, hsi, lidar,
                                                                             PATCH)]
        variants["before bf16"] = lambda: clf.classes_[predict_labels_before(net, hsi, lidar,
                                                                             PATCH, bf16=True)]
    variants["after fp32"] = lambda: predict_scene(clf, hsi, lidar, PATCH, method="dense")
    variants["after bf16"] = lambda: predict_scene(clf, hsi, lidar, PATCH, method="dense",
                                                   autocast=True)
    fns = {f"{name} {t}": _with_threads(t, keep(name, fn))
           for t in threads for name, fn in variants.items()}
    for name, fn in variants.items():
        labels[name] = fn()  # warm-up
    med = _median_times(fns, rounds)
    n_px = hsi.shape[0] * hsi.shape[1]
    ref = labels["before fp32" if with_before else "after fp32"]
    return {"px_per_s": {k: n_px / v for k, v in med.items()},
            "agree": {name: float(np.mean(labels[name] == ref)) for name in variants}}


def child_main(args):
    import numpy as np
    import torch

    quick = args.quick
    threads = [1, 2] if n_cores() >= 2 else [1]
    res = {"threads": threads}
    if args.part == "threads":
        X, y, emb = _random_patches(256 if quick else 768)
        fns = {f"fit {t}": _with_threads(t, lambda: fit_epoch_seconds(X, y, emb, 64, "fp32"))
               for t in threads}
        med = _median_times(fns, 1 if quick else 2)
        res["fit"] = {k: len(X) / v for k, v in med.items()}
        from sklearn_mmlgnet._threads import free_cores

        res["free_cores"] = free_cores()  # what `mmlgnet --threads` (default) takes now
        print("RESULT " + json.dumps(res), flush=True)
        return
    t0 = time.perf_counter()
    res["peaks"] = peaks(threads, quick)
    res["work"] = work()
    print(f"[peaks and work: {time.perf_counter() - t0:.0f} s]", file=sys.stderr, flush=True)
    X, y, emb = _random_patches(512 if quick else 1024)
    settings = {"before: batch 64, fp32": (64, "fp32"), "after: batch 64, bf16": (64, "bf16"),
                "batch 256, bf16": (256, "bf16")}
    fns = {f"{name} | {t}": _with_threads(t, lambda s=s: fit_epoch_seconds(X, y, emb, *s))
           for t in threads for name, s in settings.items()}
    med = _median_times(fns, 1 if quick else 3)
    res["fit"] = {k: len(X) / v for k, v in med.items()}
    print(f"[fit: {time.perf_counter() - t0:.0f} s]", file=sys.stderr, flush=True)
    scene, Xs, ys, hsi, lidar = _scene(quick)
    torch.set_num_threads(max(threads))
    if quick:
        clf = _classifier("fp32", text_embeddings=np.random.default_rng(0).normal(
            size=(len(np.unique(ys)), 512)), max_epochs=3, random_state=0).fit(Xs, ys)
    else:
        res["accuracy"], models = accuracy(scene, Xs, ys, hsi, lidar, args.epochs)
        clf = models["fp32, batch 64"]
    print(f"[accuracy: {time.perf_counter() - t0:.0f} s]", file=sys.stderr, flush=True)
    res["scene"] = list(hsi.shape[:2])
    res["dense"] = dense_speed(clf, hsi, lidar, threads, 2 if quick else 5)
    print(f"[dense: {time.perf_counter() - t0:.0f} s]", file=sys.stderr, flush=True)
    print("RESULT " + json.dumps(res), flush=True)


# --------------------------------------------------------------------- parent side
def run_child(part, quick, policy, epochs):
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    env.pop("OMP_NUM_THREADS", None)
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--part", part,
           "--epochs", str(epochs)] + (["--quick"] if quick else [])
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, cwd=HERE)
    if proc.returncode:
        raise SystemExit(f"the {part} measurement failed (exit {proc.returncode})")
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def report(main, thread_runs, quick, load0, load1, command):
    lines = []
    say = lines.append
    import torch  # only for its version, after the children ran

    say(f"command: {command}")
    say(f"CPU: {cpu_name()} ({n_cores()} cores available to the process), torch "
        f"{torch.__version__}; load average {load0:.1f} at the start, {load1:.1f} at the end")
    threads = main["threads"]
    pk = main["peaks"]
    say("")
    say("Peaks measured in this run (GFLOP/s, the best of interleaved rounds):")
    heads = " | ".join(f"{f'{t} thread' + ('s' if t > 1 else ''):>9s}" for t in threads)
    say(f"| {'kernel':42s} | {heads} |")
    for tag in ("fp32", "bf16"):
        for kind, label in (("sgemm", f"sgemm {tag} (best of torch.mm, oneDNN)"),
                            ("conv", f"conv 3x3 144->64 {tag} (best of 2 shapes)")):
            say(f"| {label:42s} | " + " | ".join(f"{pk[f'{kind} {tag} {t}']:9.1f}"
                                                 for t in threads) + " |")
    (tc, to), (pc, po) = main["work"]["train"], main["work"]["pixel"]
    say("")
    say(f"Work: a training sample {(tc + to) / 1e6:.1f} MFLOP forward + backward "
        f"({100 * tc / (tc + to):.1f} % convolutions); a dense pixel {(pc + po) / 1e6:.2f} MFLOP "
        f"({100 * pc / (pc + po):.0f} % convolutions, the rest per-pixel matrix products)")

    say("")
    say("fit (MMLGNetClassifier, 144 + 1 bands, 11 x 11; samples/s of the 2nd epoch):")
    say("| threads | setting                | samples/s | GFLOP/s | of fp32 conv peak "
        "| of own-precision peak | x before |")
    fit = main["fit"]
    for t in threads:
        base = fit[f"before: batch 64, fp32 | {t}"]
        for name in ("before: batch 64, fp32", "after: batch 64, bf16", "batch 256, bf16"):
            v = fit[f"{name} | {t}"]
            gf = v * (tc + to) / 1e9
            prec = "bf16" if "bf16" in name else "fp32"
            ideal = 1 / (tc / (pk[f"conv {prec} {t}"] * 1e9) + to / (pk[f"sgemm {prec} {t}"] * 1e9))
            own = v / ideal
            say(f"| {t:7d} | {name:22s} | {v:9.0f} | {gf:7.1f} | "
                f"{gf / pk[f'conv fp32 {t}']:17.2f} | {own:21.2f} | {v / base:8.2f} |")

    dense = main["dense"]
    H, W = main["scene"]
    say("")
    say(f"dense predict_scene (synthetic scene {H} x {W} px, fitted model; labels compared "
        "with before fp32):")
    say("| threads | path        | px/s    | GFLOP/s | of peak | x before fp32 | labels agree |")
    for t in threads:
        base = dense["px_per_s"][f"before fp32 {t}"]
        for name in ("before fp32", "before bf16", "after fp32", "after bf16"):
            v = dense["px_per_s"][f"{name} {t}"]
            prec = "bf16" if "bf16" in name else "fp32"
            ideal = 1 / (pc / (pk[f"conv {prec} {t}"] * 1e9) + po / (pk[f"sgemm {prec} {t}"] * 1e9))
            say(f"| {t:7d} | {name:11s} | {v:7.0f} | {v * (pc + po) / 1e9:7.1f} | "
                f"{v / ideal:7.2f} | {v / base:13.2f} | {100 * dense['agree'][name]:10.2f} % |")
    say("(of peak: the time the pixel's convolutions and matrix products take at the peaks of "
        "the path's precision, over the time taken)")

    say("")
    say("Threads and OpenMP's wait policy (fit, batch 64 fp32, samples/s; each policy in its own "
        "processes, alternating):")
    say(f"| OMP_WAIT_POLICY | {heads} | 2 threads / 1 |")
    for policy, runs in thread_runs.items():
        vals = {t: statistics.median(r["fit"][f"fit {t}"] for r in runs) for t in threads}
        ratio = f"{vals[2] / vals[1]:13.2f}" if 2 in vals else "            -"
        say(f"| {policy:15s} | " + " | ".join(f"{vals[t]:9.0f}" for t in threads)
            + f" | {ratio} |")
    picks = [r["free_cores"] for runs in thread_runs.values() for r in runs]
    passive = {t: statistics.median(r["fit"][f"fit {t}"] for r in thread_runs["PASSIVE"])
               for t in threads}
    pick = statistics.median_low(picks)
    say(f"The command line's policy (PASSIVE, --threads = the cores free: {picks} in these "
        f"processes) runs {pick} thread(s): {passive.get(pick, float('nan')):.0f} samples/s, "
        f"{passive.get(pick, float('nan')) / max(passive.values()):.2f} of the best measured.")
    if "accuracy" in main:
        say("")
        say("Accuracy (synthetic scene; an inner stratified 20 % validation split of the training "
            "pixels; mean valid accuracy of the last 3 epochs; OA of the dense map on the test "
            "pixels):")
        say("| fit                    |  valid acc |  test OA | fit seconds |")
        for name, r in main["accuracy"].items():
            say(f"| {name:22s} | {100 * r['valid_acc_last3']:8.2f} % | "
                f"{100 * r['test_OA']:6.2f} % | {r['fit_seconds']:11.1f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer rounds")
    parser.add_argument("--epochs", type=int, default=15,
                        help="epochs of the accuracy fits (not with --quick)")
    parser.add_argument("--json", default=None, help="also write the raw figures here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--part", default="main", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        sys.path.insert(0, HERE)
        return child_main(args)
    t0, load0 = time.perf_counter(), load()
    thread_runs = {"(default)": [], "PASSIVE": []}
    for _ in range(1 if args.quick else 2):
        for policy in thread_runs:
            thread_runs[policy].append(run_child("threads", args.quick,
                                                 None if policy == "(default)" else policy,
                                                 args.epochs))
    main_res = run_child("main", args.quick, "PASSIVE", args.epochs)
    command = "python benchmarks/bench_speed.py" + (" --quick" if args.quick else "")
    text = report(main_res, thread_runs, args.quick, load0, load(), command)
    print(text)
    print(f"\n({time.perf_counter() - t0:.0f} s in all)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"main": main_res, "threads": thread_runs}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
