"""SDHSI-Net self-distillation and speed levers on inner validation of Jasper Ridge's training pixels.

The test split is never read. The protocol is bench_recipe.py's ``--sdhsi`` mode: for
each seed the scene's TRAINING pixels are split by spatial blocks (SpatialBlockKFold,
3 folds of 32 x 32 blocks, a buffer so no inner-training patch overlaps an
inner-validation pixel); every training pixel is predicted once, by the model of the
fold that held it out, and OA / AA are taken over these pooled out-of-fold predictions.
Each row fits ``BandStandardScaler -> SpectralPCA(n) -> SDHSIClassifier(max_epochs=30,
...)`` with the row's parameters. Prints OA / AA (%) mean +/- std over seeds, the paired
difference from the first row on the same seed (mean +/- std over seeds), seconds per
fit (mean over folds and seeds, one thread), and each head's pooled out-of-fold OA
(``head_scores``; a class the fold never trained on counts as missed).

    OMP_NUM_THREADS=1 python benchmarks/bench_self_distillation.py --seeds 0 1 2 --rows \
        "no SD" "SD, mean, bottleneck students" "SD, mean, bottleneck, stages 3-4"
    OMP_NUM_THREADS=1 python benchmarks/bench_self_distillation.py --seeds 0 1 2 3 4 \
        --inits 0 100 200 --rows "no SD, PCA 15" "SD, mean, bottleneck, PCA 15"

The rows of the removed self-distillation options (students' terms summed, linear
students, a warm-up of the students' terms) are gone with the options.

``--inits`` fits every row once per network initialisation (``random_state = seed +
init``; the split and the PCA keep ``seed``) and averages the scores per seed before the
mean, std and paired differences over seeds: on Jasper the initialisation alone moves a
row by up to 10 OA points on one seed. ``--list`` prints the row names. The rows before
"SD, new defaults" give every parameter they use (the training recipe as it was before it
became the default, ``OLD_RECIPE``, unless the row names a lever), so they measure the
same thing whatever the defaults become; the "new defaults" rows take the estimator's
defaults of the day. ``--out`` keeps per-seed results; ``--load`` reads them back and runs only what
is missing.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from sklearn.pipeline import make_pipeline

import bench_recipe  # the same inner folds, scores and head counts (benchmarks/ is on sys.path)
from bench_recipe import head_hits, score
from sklearn_mmlgnet import BandStandardScaler, SDHSIClassifier, SpectralPCA

PATCH = bench_recipe.PATCH
# The self-distillation loss measured here: a = 0.8, b = 0.1, T = 5, averaged over the
# students, each with its own 64-unit bottleneck, on every stage.
SD = dict(self_distillation=True, criterion__aux_ce_weight=0.8, criterion__distill_weight=0.1,
          criterion__distill_temperature=5.0, module__student_hidden=64,
          module__student_stages=None)
# The training recipe of the earlier defaults: every row but the "new defaults" ones
# starts from it (a row's own parameters override it).
OLD_RECIPE = dict(augment=False, optimizer="adam", weight_decay=0.0, lr_schedule=None,
                  label_smoothing=0.0, predict_heads="final")
OLD_NET = dict(module__conv3d_channels=(8, 16, 32), module__spectral_kernels=(7, 5, 3))
TWO_STAGES = dict(module__conv3d_channels=(8, 16), module__spectral_kernels=(7, 5))

#: Row name -> (SDHSIClassifier parameters, PCA components).
ROWS = {
    "no SD": (dict(self_distillation=False, **OLD_NET), 30),
    # students with their own bottleneck (BYOT); students on the deeper stages only
    "SD, mean, bottleneck students": (dict(SD, **OLD_NET), 30),
    "SD, mean, bottleneck, stages 3-4": (dict(SD, module__student_stages=(3, 4), **OLD_NET), 30),
    # speed: fewer / narrower 3-D stages, fewer bands in (no SD, then SD)
    "no SD, 2 3-D stages (8, 16)": (dict(self_distillation=False, **TWO_STAGES), 30),
    "no SD, 3-D (8, 16, 16)": (dict(self_distillation=False, module__conv3d_channels=(8, 16, 16),
                                    module__spectral_kernels=(7, 5, 3)), 30),
    "no SD, PCA 15": (dict(self_distillation=False, **OLD_NET), 15),
    "no SD, PCA 15, 2 3-D stages": (dict(self_distillation=False, **TWO_STAGES), 15),
    # the SD levers again on 15 PCA components (3.7x cheaper, as accurate)
    "SD, mean, bottleneck, PCA 15": (dict(SD, **OLD_NET), 15),
    "SD, mean, bottleneck, b=0, PCA 15": (dict(SD, criterion__distill_weight=0.0, **OLD_NET), 15),
    "SD, mean, bottleneck, T=2, PCA 15": (dict(SD, criterion__distill_temperature=2.0,
                                               **OLD_NET), 15),
    # the noise floor of a paired difference: the same row, another network initialisation
    "no SD, PCA 15, other init": (dict(self_distillation=False, _init=100, **OLD_NET), 15),
    "SD, mean, bottleneck, PCA 15, other init": (dict(SD, _init=100, **OLD_NET), 15),
    # the shared training-recipe levers, on SDHSI-Net with self-distillation
    "SD new, PCA 15, augment": (dict(SD, augment=True, **OLD_NET), 15),
    "SD new, PCA 15, adamw 1e-2": (dict(SD, optimizer="adamw", weight_decay=1e-2, **OLD_NET), 15),
    "SD new, PCA 15, cosine": (dict(SD, lr_schedule="cosine", **OLD_NET), 15),
    "SD new, PCA 15, label smoothing 0.1": (dict(SD, label_smoothing=0.1, **OLD_NET), 15),
    "no SD, PCA 15, all four": (dict(self_distillation=False, augment=True, optimizer="adamw",
                                     weight_decay=1e-2, lr_schedule="cosine",
                                     label_smoothing=0.1, **OLD_NET), 15),
    "no SD, PCA 15, augment": (dict(self_distillation=False, augment=True, **OLD_NET), 15),
    "SD new, PCA 15, all four": (dict(SD, augment=True, optimizer="adamw", weight_decay=1e-2,
                                      lr_schedule="cosine", label_smoothing=0.1, **OLD_NET), 15),
    "SD, new defaults": (dict(self_distillation=True, _defaults=True), 30),
    "no SD, new defaults": (dict(self_distillation=False, _defaults=True), 30),
    "SD, new defaults, PCA 15": (dict(self_distillation=True, _defaults=True), 15),
    "no SD, new defaults, PCA 15": (dict(self_distillation=False, _defaults=True), 15),
}


def inner_folds(data_home, seed):
    """The scene's training patches and their 3 spatial inner folds (test pixels never read)."""
    _, X, y, folds, _ = bench_recipe.inner_folds(data_home, seed)
    return X, y, folds


def run_row(name, seed, data, epochs, init=0):
    """Pooled out-of-fold OA / AA, per-head OA and mean seconds per fit of one row and seed.

    The network's ``random_state`` is ``seed + init`` (plus the row's own ``_init``);
    the split and the PCA keep ``seed``.
    """
    params, n_components = ROWS[name]
    params = dict(params)
    if not params.pop("_defaults", False):
        params = {**OLD_RECIPE, **params}
    net_seed = seed + init + params.pop("_init", 0)
    X, y, folds = data
    pred = np.empty_like(y)
    seconds, hits = [], None
    for tr, va in folds:
        est = make_pipeline(
            BandStandardScaler(),
            SpectralPCA(n_components=n_components, n_lidar_bands=0, random_state=seed),
            SDHSIClassifier(max_epochs=epochs, random_state=net_seed, **params))
        t0 = time.perf_counter()
        est.fit(X[tr], y[tr])
        seconds.append(time.perf_counter() - t0)
        pred[va] = est.predict(X[va])
        counts = head_hits(est, X[va], y[va])  # correct counts per head, pooled over folds
        hits = counts if hits is None else {k: hits[k] + counts[k] for k in hits}
    held = np.concatenate([va for _, va in folds])
    oa, aa = score(y[held], pred[held])
    return dict(row=name, seed=seed, init=init, oa=oa, aa=aa, seconds=float(np.mean(seconds)),
                heads={k: round(100 * float(v) / len(held), 2) for k, v in hits.items()})


def per_seed(results):
    """One result per (row, seed): the mean over network initialisations."""
    groups = {}
    for r in results:
        groups.setdefault((r["row"], r["seed"]), []).append(r)
    out = []
    for (row, seed), rs in groups.items():
        mean = {k: float(np.mean([r[k] for r in rs])) for k in ("oa", "aa", "seconds")}
        heads = {k: float(np.mean([r["heads"][k] for r in rs])) for k in rs[0]["heads"]}
        out.append(dict(row=row, seed=seed, heads=heads, n_inits=len(rs), **mean))
    return out


def table(results, seeds, epochs, inits):
    """Markdown table: OA / AA mean +/- std, paired differences from the first row, fit s, heads."""
    lines = [f"Jasper Ridge, inner validation: pooled out-of-fold predictions of SpatialBlockKFold("
             f"3 folds, block 32, patch {PATCH}) over the training pixels; test split unused. "
             f"Seeds {seeds} (network random_state = seed + {inits}, averaged per seed), "
             f"SDHSI-Net {epochs} epochs, 1 thread. Mean ± std over seeds; paired = difference "
             f"from the first row on the same seed.", ""]
    results = per_seed(results)
    rows = list(dict.fromkeys(r["row"] for r in results))
    base = {r["seed"]: r for r in results if r["row"] == rows[0]}
    header = (f"| {'row':36s} | {'OA %':>14s} | {'AA %':>14s} | {'dOA (paired)':>14s} | "
              f"{'dAA (paired)':>14s} | {'fit s':>6s} | per-head OA (students..., final) |")
    lines += [header, "|" + "|".join("-" * len(p) for p in header.split("|")[1:-1]) + "|"]
    for row in rows:
        rs = [r for r in results if r["row"] == row]
        oa, aa, sec = (np.array([r[k] for r in rs]) for k in ("oa", "aa", "seconds"))
        delta = []
        for k in ("oa", "aa"):
            d = np.array([r[k] - base[r["seed"]][k] for r in rs if r["seed"] in base])
            delta.append(f"{d.mean():+6.2f} ± {d.std():5.2f}" if len(d) == len(rs) else "")
        heads = ", ".join(f"{np.mean([r['heads'][k] for r in rs]):.1f}" for k in rs[0]["heads"])
        lines.append(f"| {row:36s} | {oa.mean():6.2f} ± {oa.std():5.2f} | "
                     f"{aa.mean():6.2f} ± {aa.std():5.2f} | {delta[0]:>14s} | {delta[1]:>14s} | "
                     f"{sec.mean():6.1f} | {heads} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default="../shared/data")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--inits", type=int, nargs="+", default=[0],
                        help="network random_state offsets: each row is fitted once per offset "
                        "and its scores averaged per seed (the split does not change)")
    parser.add_argument("--rows", nargs="*", help="row names to run, first is the paired base "
                        "(default: all)")
    parser.add_argument("--list", action="store_true", help="print the row names and exit")
    parser.add_argument("--out", help="JSON file of per-seed results (rewritten as they come)")
    parser.add_argument("--load", nargs="*", default=[],
                        help="JSON files of earlier results to print in the table (not rerun)")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(ROWS))
        return
    names = args.rows or list(ROWS)
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; --list prints them")
    results = []
    for path in args.load:
        with open(path) as fh:
            results += [dict({"init": 0}, **r) for r in json.load(fh)
                        if r["seed"] in args.seeds and r.get("init", 0) in args.inits]
    done = {(r["row"], r["seed"], r["init"]) for r in results}
    data = {seed: inner_folds(args.data_home, seed) for seed in args.seeds}
    for name in names:
        for seed, init in ((s, i) for i in args.inits for s in args.seeds):
            if (name, seed, init) in done:
                continue
            res = run_row(name, seed, data[seed], args.epochs, init)
            results.append(res)
            print(f"  {name:36s} seed {seed} init +{init}: OA {res['oa']:6.2f}  AA {res['aa']:6.2f}  "
                  f"fit {res['seconds']:5.1f} s  heads {res['heads']}", flush=True)
            if args.out:
                with open(args.out, "w") as fh:
                    json.dump(results, fh, indent=1)
    order = {n: i for i, n in enumerate(names)}
    results.sort(key=lambda r: order.get(r["row"], len(order)))
    print()
    print(table([r for r in results if r["row"] in order], args.seeds, args.epochs, args.inits))


if __name__ == "__main__":
    main()
