"""GPU check: every path on ``device="cuda"``, its throughput in float32 and bfloat16, and
its agreement with the CPU. Runs in about 2 minutes on one recent GPU (under 5).

1. **paths**: each way the package runs a network, on cuda, must run and give finite
   probabilities: MMLGNet fit (fp32 and ``precision="bf16"``), predict_proba,
   head_scores with self-distillation, test-time augmentation, ``predict_scene``
   dense (fp32 and ``autocast=True``) and patch by patch, ``predict_scene_proba``;
   learnt prompts (``prompt_context``) and their ``text_scores``, ``with_texts`` on the
   dense path; SDHSI-Net the same; a Pipeline with a band-wise scaler.
2. **fit throughput**: samples/s of ``MMLGNetClassifier.fit`` (144 + 1 bands,
   11 x 11, the second epoch), batch 64 and 256, fp32 and bf16.
3. **dense throughput**: px/s of ``predict_scene(method="dense")`` on a
   Houston-sized scene (349 x 1905 px, 144 + 1 bands), fp32 and bf16.
4. **agreement with the CPU**: a model fitted on cuda on the synthetic scene,
   its dense map computed on cuda (fp32, bf16) and on the CPU (fp32): labels that
   agree, largest probability difference, test OA of each.

    python benchmarks/gpu_check.py [--device cuda] [--out DIR] [--quick]

Exits with status 2 and one line saying so when no CUDA device is present; with
status 1 when a path fails (the table says which). ``--out`` writes
``gpu_check.json`` there.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import traceback

N_HSI, PATCH = 144, 11


def _sync(device):
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(fn, device, rounds=3):
    times = []
    for _ in range(rounds):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def _classifier(precision="fp32", **params):
    from sklearn_mmlgnet import MMLGNetClassifier

    return MMLGNetClassifier(**params, precision=precision)


def check_paths(device):
    """{path: "ok" or the error}: every way a network runs, on ``device``."""
    import numpy as np
    from sklearn.pipeline import make_pipeline

    from sklearn_mmlgnet import BandStandardScaler, SDHSIClassifier
    from sklearn_mmlgnet.prediction import predict_scene, predict_scene_proba

    rng = np.random.default_rng(0)
    H, W, n_hsi = 24, 30, 8
    hsi = rng.normal(size=(H, W, n_hsi)).astype(np.float32)
    lidar = rng.normal(size=(H, W, 1)).astype(np.float32)
    rows, cols = np.indices((H, W)).reshape(2, -1)
    from sklearn_mmlgnet.patches import extract_patches

    X = extract_patches(hsi, lidar, rows, cols, 9)
    y = (rows // 8) % 3
    emb = rng.normal(size=(3, 64)).astype(np.float32)
    out = {}

    def check(name, fn):
        try:
            value = fn()
            arr = np.asarray(value if not isinstance(value, dict) else list(value.values()))
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise ValueError("non-finite values")
            out[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - the check reports every failure
            out[name] = f"FAILED: {type(exc).__name__}: {exc}"
            traceback.print_exc(file=sys.stderr)

    small = dict(module__hsi_channels=(8, 16), module__lidar_channels=(4, 8),
                 module__fusion_dim=16, module__spectral_channels=(16,))
    models = {}

    def fit(name, clf):
        models[name] = clf.fit(X, y)
        return clf.predict_proba(X[:50])

    for prec in ("fp32", "bf16"):
        check(f"MMLGNet fit + predict_proba, {prec}", lambda p=prec: fit(
            f"mmlgnet {p}", _classifier(p, text_embeddings=emb, max_epochs=2, device=device,
                                        random_state=0, **small)))
    check("MMLGNet self-distillation fit", lambda: fit(
        "mmlgnet sd", _classifier(text_embeddings=emb, max_epochs=2, device=device,
                                  self_distillation=True, random_state=0, **small)))
    check("MMLGNet head_scores", lambda: models["mmlgnet sd"].head_scores(X[:50], y[:50]))
    for prec in ("fp32", "bf16"):
        check(f"SDHSI fit + predict_proba, {prec}", lambda p=prec: fit(
            f"sdhsi {p}", SDHSIClassifier(max_epochs=2, device=device, random_state=0,
                                          precision=p, module__conv3d_channels=(4, 8),
                                          module__spectral_kernels=(3, 3))))
    check("SDHSI head_scores", lambda: models["sdhsi fp32"].head_scores(X[:50], y[:50]))
    for name in ("mmlgnet fp32", "mmlgnet sd", "sdhsi fp32"):
        if name not in models:
            continue
        clf = models[name]
        for autocast in (False, True):
            check(f"{name}: predict_scene dense, autocast={autocast}", lambda c=clf, a=autocast:
                  predict_scene_proba(c, hsi, lidar, 9, method="dense", autocast=a))
        check(f"{name}: predict_scene patches", lambda c=clf: predict_scene(
            c, hsi, lidar, 9, method="patches").astype(float))
        check(f"{name}: test-time augmentation, dense", lambda c=clf: predict_scene_proba(
            copy.deepcopy(c).set_params(test_time_augment=True), hsi, lidar, 9,
            method="dense"))
    check("MMLGNet learnt prompts (prompt_context=2, packaged MiniLM) fit", lambda: fit(
        "mmlgnet coop", _classifier(text_encoder="sentence-transformers", prompt_context=2,
                                    class_names=["woods", "roads", "water"], max_epochs=2,
                                    device=device, random_state=0, **small)))
    if "mmlgnet coop" in models:
        check("MMLGNet learnt prompts: text_scores of new texts", lambda: models[
            "mmlgnet coop"].text_scores(X[:50], ["woods", "grass", "roads"]))
    if "mmlgnet fp32" in models:
        check("MMLGNet with_texts: predict_scene dense", lambda: predict_scene_proba(
            models["mmlgnet fp32"].with_texts(["a", "b", "c", "d"], text_embeddings=np.vstack(
                [emb, emb[:1] + emb[1:2]])), hsi, lidar, 9, method="dense"))
    check("Pipeline(BandStandardScaler, MMLGNet): dense", lambda: predict_scene_proba(
        make_pipeline(BandStandardScaler(), _classifier(
            text_embeddings=emb, max_epochs=2, device=device, random_state=0, **small)
        ).fit(X, y), hsi, lidar, 9, method="dense"))
    return out


def fit_throughput(device, quick):
    import numpy as np

    rng = np.random.default_rng(0)
    n = 1024 if quick else 4096
    X = rng.random((n, N_HSI + 1, PATCH, PATCH), dtype=np.float32)
    y = np.arange(n) % 15
    X[np.arange(n), y] += 0.5
    emb = rng.normal(size=(15, 512)).astype(np.float32)
    out = {}
    for bs in (64, 256):
        for prec in ("fp32", "bf16"):
            clf = _classifier(prec, text_embeddings=emb, max_epochs=3, batch_size=bs,
                              device=device, random_state=0).fit(X, y)
            out[f"batch {bs}, {prec}"] = n / min(clf.history_[-1, "dur"], clf.history_[-2, "dur"])
    return out


def dense_throughput(device, quick):
    import numpy as np

    rng = np.random.default_rng(0)
    n = 512
    X = rng.random((n, N_HSI + 1, PATCH, PATCH), dtype=np.float32)
    y = np.arange(n) % 15
    X[np.arange(n), y] += 0.5
    clf = _classifier(text_embeddings=rng.normal(size=(15, 512)), max_epochs=2, device=device,
                      random_state=0).fit(X, y)
    from sklearn_mmlgnet.prediction import predict_scene

    H, W = (175, 1905) if quick else (349, 1905)
    hsi = rng.random((H, W, N_HSI), dtype=np.float32)
    lidar = rng.random((H, W, 1), dtype=np.float32)
    out = {}
    for autocast in (False, True):
        fn = lambda a=autocast: predict_scene(clf, hsi, lidar, PATCH, method="dense", autocast=a)
        fn()  # warm-up
        out["bf16" if autocast else "fp32"] = H * W / _median_seconds(fn, device)
    return out


def cpu_agreement(device, quick, epochs):
    import numpy as np

    from sklearn_mmlgnet.datasets import make_hsi_lidar_scene
    from sklearn_mmlgnet.patches import labelled_patches
    from sklearn_mmlgnet.prediction import predict_scene_proba

    scene = make_hsi_lidar_scene(n_bands=N_HSI, random_state=0)
    X, y, _, _ = labelled_patches(scene, scene.train_mask, PATCH)
    flat = np.concatenate([scene.hsi, scene.lidar], axis=-1).reshape(-1, N_HSI + 1)
    mean, std = flat.mean(0), flat.std(0) + 1e-6
    X = ((X - mean[None, :, None, None]) / std[None, :, None, None]).astype(np.float32)
    hsi = ((scene.hsi - mean[:N_HSI]) / std[:N_HSI]).astype(np.float32)
    lidar = ((scene.lidar - mean[N_HSI:]) / std[N_HSI:]).astype(np.float32)
    emb = np.random.default_rng(0).normal(size=(len(np.unique(y)), 512))
    test = scene.test_mask & (scene.labels > 0)
    out = {}
    for prec in ("fp32", "bf16"):
        clf = _classifier(prec, text_embeddings=emb, max_epochs=epochs, device=device,
                          random_state=0).fit(X, y)
        cpu = copy.deepcopy(clf)
        cpu.net_.module_.to("cpu")
        maps = {"cpu fp32": predict_scene_proba(cpu, hsi, lidar, PATCH, method="dense"),
                f"{device} fp32": predict_scene_proba(clf, hsi, lidar, PATCH, method="dense"),
                f"{device} bf16": predict_scene_proba(clf, hsi, lidar, PATCH, method="dense",
                                                      autocast=True)}
        ref = maps["cpu fp32"]
        for name, p in maps.items():
            labels = clf.classes_[p.argmax(-1)]
            out[f"fit {prec} -> dense {name}"] = {
                "labels agree with cpu fp32": float(np.mean(p.argmax(-1) == ref.argmax(-1))),
                "max |p - p_cpu|": float(np.abs(p - ref).max()),
                "test OA": float(np.mean(labels[test] == scene.labels[test]))}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="the CUDA device (default: cuda)")
    parser.add_argument("--out", default=os.environ.get("OUT"),
                        help="folder for gpu_check.json (default: $OUT if set)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--epochs", type=int, default=15, help="epochs of the agreement fits")
    parser.add_argument("--allow-cpu", action="store_true",
                        help="run on --device cpu too (to test this script without a GPU)")
    args = parser.parse_args(argv)
    import torch

    if args.allow_cpu and torch.device(args.device).type == "cpu":
        print(f"CPU run of the check (--allow-cpu), torch {torch.__version__}", flush=True)
        return _run(args, "cpu", {"device": "cpu"})
    if not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device here (torch {torch.__version__}, built for CUDA "
              f"{torch.version.cuda}; torch.cuda.is_available() is False): nothing to check. "
              "Run it on a machine with a GPU.", file=sys.stderr)
        return 2
    device = args.device
    props = torch.cuda.get_device_properties(torch.device(device))
    res = {"device": f"{props.name}, {props.total_memory / 2**30:.0f} GiB, capability "
                     f"{props.major}.{props.minor}; torch {torch.__version__}, CUDA "
                     f"{torch.version.cuda}, bf16 supported: {torch.cuda.is_bf16_supported()}"}
    print(res["device"], flush=True)
    return _run(args, device, res)


def _run(args, device, res):
    t0 = time.perf_counter()
    steps = (("paths", lambda: check_paths(device)),
             ("fit samples/s", lambda: fit_throughput(device, args.quick)),
             ("dense px/s", lambda: dense_throughput(device, args.quick)),
             ("agreement with the CPU", lambda: cpu_agreement(device, args.quick, args.epochs)))
    failed = False
    for name, step in steps:
        t = time.perf_counter()
        try:
            res[name] = step()
        except Exception as exc:  # noqa: BLE001 - report it, go on with the next step
            traceback.print_exc()
            res[name] = f"FAILED: {type(exc).__name__}: {exc}"
            failed = True
        print(f"\n== {name} ({time.perf_counter() - t:.0f} s)", flush=True)
        value = res[name]
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, dict):
                    v = ", ".join(f"{a}: {b:.4f}" for a, b in v.items())
                elif isinstance(v, float):
                    v = f"{v:,.0f}"
                print(f"  {k:55s} {v}", flush=True)
                failed |= isinstance(v, str) and v.startswith("FAILED")
        else:
            print(f"  {value}")
    print(f"\n({time.perf_counter() - t0:.0f} s in all)")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "gpu_check.json"), "w") as f:
            json.dump(res, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
