"""Where Jasper Ridge's test errors lie: on pixels whose label is a near-tie, or on clear ones.

Jasper Ridge's label of a pixel is its most abundant endmember (the argmax of the
abundances ``A`` distributed with the scene), and the scene is mixed: on some pixels two
endmembers have nearly the same abundance, and the label says which one is ahead by a
hair. This script fits the benchmark's tuned centre-pixel SVM and MMLGNet rows exactly
as ``mmlgnet benchmark --dataset jasper_ridge`` does (same code path, same splits, same
settings; their test OA is that of ``docs/results/results_jasper_ridge.md``) and splits
each one's test accuracy by the pixel's abundance *margin*, its largest abundance less
its second largest: near-tie pixels (margin < ``--tie``), clear pixels (margin >=
``--clear``), with each row's confusion matrix on near-tie pixels summed over seeds
(which class wins a tie). It then prints what the tuned SVM and logistic regression score
when training pixels lie everywhere in the scene (stratified random 5-fold CV over all
labelled pixels, the spatially disjoint split dropped): not a protocol, an estimate of how
far a centre-pixel classifier of this scene can go with the labels as they are; and how
nearly one linear rule reproduces the labels (a logistic regression's accuracy on the
pixels it was fit to).

    OMP_NUM_THREADS=1 python benchmarks/bench_jasper_labels.py --data-home ../shared/data

``--rows`` picks other rows of the benchmark by name (default: the SVM and MMLGNet;
``--rows "SVM (RBF, tuned), centre"`` alone takes a minute instead of five).
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import scipy.io
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_mmlgnet import baselines
from sklearn_mmlgnet.benchmark import BenchmarkRun

#: The benchmark rows fitted by default (``--rows``: any of ``mmlgnet benchmark --methods``).
ROWS = ("SVM (RBF, tuned), centre pixel", "MMLGNet (symmetric loss)")

#: The centre-pixel classifiers scored with training pixels everywhere (a bound, not a protocol).
EVERYWHERE = {"Tuned SVM": baselines.tuned_svm,
              "Tuned logistic regression": baselines.tuned_logistic_regression}


def abundance_margin(scene):
    """Per pixel (rows x cols), the largest endmember abundance less the second largest."""
    A = scipy.io.loadmat(scene.files["endmembers"])["A"].astype(float)
    top = np.sort(A, axis=0)
    rows, cols = scene.labels.shape
    return (top[-1] - top[-2]).reshape(rows, cols, order="F")  # column-major, as the loader


def split_scores(y_true, y_pred, margin, tie, clear):
    """OA (%) overall, on near-tie and on clear pixels, and the near-tie share of the errors."""
    hit = y_true == y_pred
    near, sure = margin < tie, margin >= clear
    err = ~hit
    return dict(oa=100 * hit.mean(), oa_tie=100 * hit[near].mean(), oa_clear=100 * hit[sure].mean(),
                err_tie=100 * near[err].mean() if err.any() else 0.0,
                clear_errors=int((err & sure).sum()), n=len(hit))


def linear_separability(X, y, C=None):
    """Training accuracy (%) of a multinomial logistic regression fit to every pixel.

    How nearly one linear rule (the argmax of one affine function per class) reproduces the
    labels: 100 when the classes are linearly separable. ``C`` defaults to the largest of
    :data:`~sklearn_mmlgnet.baselines.LOGREG_GRID` (the weakest penalty searched).
    """
    C = max(baselines.LOGREG_GRID["C"]) if C is None else C
    clf = make_pipeline(StandardScaler(),
                        LogisticRegression(C=C, max_iter=baselines.LOGREG_MAX_ITER)).fit(X, y)
    return 100 * np.mean(clf.predict(X) == y)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default="../shared/data")
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0 .. N-1 (default: 10)")
    parser.add_argument("--epochs", type=int, default=30, help="MMLGNet's epochs (benchmark: 30)")
    parser.add_argument("--tie", type=float, default=0.1, help="near-tie: margin below this")
    parser.add_argument("--clear", type=float, default=0.2, help="clear: margin at least this")
    parser.add_argument("--rows", nargs="+", default=list(ROWS),
                        help="benchmark rows, by name or part of it (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds takes a count of at least 1; got {args.seeds}")

    results, confusion, seen = {}, {}, {}  # confusion: near-tie pixels, summed over seeds

    def on_predict(name, seed, scene, test_mask, pred):
        if "margin" not in seen:  # the scene's, the same whatever the seed's split
            seen["margin"] = abundance_margin(scene)
        seen.update(scene=scene, test_mask=test_mask)
        y, m = scene.labels[test_mask], seen["margin"][test_mask]
        s = split_scores(y, pred, m, args.tie, args.clear)
        results.setdefault(name, []).append(s)
        confusion[name] = confusion.get(name, 0) + confusion_matrix(
            y[m < args.tie], pred[m < args.tie], labels=sorted(scene.class_names))
        print(f"[seed {seed}] {name:32s} OA {s['oa']:6.2f}  near-tie px {s['oa_tie']:6.2f}  "
              f"clear px {s['oa_clear']:6.2f}  errors on near-tie px {s['err_tie']:5.1f} %  "
              f"errors on clear px {s['clear_errors']}", flush=True)

    with tempfile.TemporaryDirectory() as out:  # the run's own tables are not kept
        BenchmarkRun("jasper_ridge", out, seeds=args.seeds, epochs=args.epochs,
                     data_home=args.data_home, methods=args.rows, maps=False, verbose=0,
                     log=lambda msg: None, on_predict=on_predict).run()
    scene, margin, test_mask = seen["scene"], seen["margin"], seen["test_mask"]
    share = np.mean(margin[test_mask] < args.tie)
    print(f"\nJasper Ridge test splits, seeds 0..{args.seeds - 1}: near-tie = abundance margin < "
          f"{args.tie} ({100 * share:.1f} % of seed {args.seeds - 1}'s test px), clear = margin >= "
          f"{args.clear}. Mean +/- std over seeds.\n")
    header = ("| row | OA % | OA on near-tie px | OA on clear px | errors on near-tie px (%) "
              "| errors on clear px (count) |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name, rs in results.items():
        cells = [np.array([r[k] for r in rs]) for k in ("oa", "oa_tie", "oa_clear", "err_tie",
                                                         "clear_errors")]
        print(f"| {name} | " + " | ".join(f"{c.mean():.2f} ± {c.std():.2f}" for c in cells) + " |")
    names = [scene.class_names[k] for k in sorted(scene.class_names)]
    for name, cm in confusion.items():
        print(f"\n{name}: near-tie test px of all seeds, true class (rows) by predicted (columns)")
        print(f"{'':>8s}" + "".join(f"{n:>8s}" for n in names))
        for n, counts in zip(names, cm):
            print(f"{n:>8s}" + "".join(f"{v:8d}" for v in counts))

    # Training pixels everywhere: each tuned centre-pixel classifier under stratified random
    # 5-fold CV of every labelled pixel (its own search inside each fold, as the benchmark's).
    # The pixels and labels are the scene's, whichever seed's split the last scene came with.
    mask = scene.labels > 0
    X = scene.hsi[mask]
    y = scene.labels[mask]
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    for name, factory in EVERYWHERE.items():
        pred = cross_val_predict(factory(random_state=0), X[:, :, None, None], y, cv=cv)
        s = split_scores(y, pred, margin[mask], args.tie, args.clear)
        print(f"\n{name}, training pixels everywhere (stratified random 5-fold CV of all "
              f"{len(y)} px, not spatially disjoint): OA {s['oa']:.2f}, near-tie px "
              f"{s['oa_tie']:.2f}, clear px {s['oa_clear']:.2f}, errors on near-tie px "
              f"{s['err_tie']:.1f} %.")
    print(f"\nLinear separability of the labels: a logistic regression fit to all {len(y)} px "
          f"(C = {max(baselines.LOGREG_GRID['C']):g}) reproduces {linear_separability(X, y):.2f} "
          f"% of them.")


if __name__ == "__main__":
    main()
