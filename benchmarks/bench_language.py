"""What the language side is worth: text variants, zero-shot classes, learning curves.

Every network is ``[BandStandardScaler -> [SpectralPCA(30)] -> MMLGNetClassifier]`` with the
estimator's defaults and the packaged offline text model (all-MiniLM-L6-v2); the epoch
count is fixed in advance, the last epoch is scored, and nothing is chosen on the test
pixels. Splits: the scene's own train / test masks (synthetic, Jasper Ridge); on IDTReeS
the first of the benchmark's three plot-grouped folds (27 test plots, no plot or crown on
both sides) with the input the benchmark's inner validation chose most often there (PCA 30
of the spectra as they are; 7 x 7 patches).

Subcommands (each prints its rows and writes them as JSON to ``--out``, by default
``docs/results/language_<what>_<dataset>.json``, where the docs' tables are made from):

``cosines``
    Pairwise cosine similarity of the class text embeddings (mean and largest over class
    pairs, and the closest pair) for names alone ("{}"), the default templates, and the
    templates with the shipped descriptions, on IDTReeS's taxa and the synthetic scene's
    (Trento's) classes.
``variants``
    OA / AA / kappa (mean +/- std over seeds) of the same network with the cross-entropy
    head (no language), and with the language head on names alone, the templates, the
    templates + descriptions, learnt prompts (``prompt_context=4``) and learnt prompts +
    descriptions; with the fitted text embeddings' pairwise cosines and seconds per fit.
``zero-shot`` (IDTReeS)
    Leave one taxon out: fit on the fold's training pixels of the other taxa, then score
    the held-out taxon's test pixels against all the taxa's names (``text_scores``): top-1
    (share of its pixels whose best text is its own name) and the mean rank of its name
    (1 = best), against chance (1 / n and (n + 1) / 2), with the names' templates and with
    the descriptions added. Then site transfer: fit on MLBS, score OSBS's pixels against
    every name; seen and unseen taxa reported apart.
``curve``
    OA / AA against the epoch count (each a full fit with that ``max_epochs``, cosine
    schedule over it) for the language head, the language head with the dot product and a
    4x learning rate, and the cross-entropy head, with the training pixels' accuracy (does
    the head underfit?).
``precision``
    The same for the language head trained in float32 and in bfloat16
    (``precision="bf16"``), with the seconds per fit.
``recipe``
    Settings of the language head (temperature fixed or learnt, dot similarity, class
    weights, learning rate, batch size with the learning rate scaled alike, bfloat16
    training) and the cross-entropy head, with seconds per fit, scored on one inner split
    of the training pixels (plot groups on IDTReeS, spatial blocks on a scene): the test
    pixels are not read.
``geometry``
    Why a language head can lag: a synthetic problem of three classes, two of them told
    apart by a small spectral difference, with given text embeddings whose two vectors
    have cosine 0.5 to 0.99. Training pixels' accuracy on those two classes after
    ``--epochs`` epochs, per head (cosine or dot similarity, the image->text loss, the
    learning rate and batch size, the cross-entropy head).
``report``
    Prints the tables of every ``language_*.json`` in ``--results`` (the tables of
    docs/language_results.rst).

``--only WORD ...`` runs only the rows whose name holds one of the words.

    OMP_NUM_THREADS=1 python benchmarks/bench_language.py cosines --data-home ../shared/data
    OMP_NUM_THREADS=1 python benchmarks/bench_language.py variants --dataset idtrees --epochs 5
    OMP_NUM_THREADS=1 python benchmarks/bench_language.py variants --dataset synthetic --epochs 10
    OMP_NUM_THREADS=1 python benchmarks/bench_language.py zero-shot --dataset idtrees --epochs 5
    OMP_NUM_THREADS=1 python benchmarks/bench_language.py curve --dataset jasper_ridge \\
        --epochs 10 20 30 60
    OMP_NUM_THREADS=1 python benchmarks/bench_language.py curve --dataset idtrees --epochs 5 10 20 30
    OMP_NUM_THREADS=1 python benchmarks/bench_language.py precision --dataset jasper_ridge \\
        --epochs 30
    OMP_NUM_THREADS=1 python benchmarks/bench_language.py recipe --dataset idtrees --epochs 5
    OMP_NUM_THREADS=1 python benchmarks/bench_language.py geometry --epochs 10
    python benchmarks/bench_language.py report
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from sklearn_mmlgnet import MMLGNetClassifier
from sklearn_mmlgnet.benchmark import inner_split, load_dataset, network_pipeline
from sklearn_mmlgnet.datasets import idtrees_splits
from sklearn_mmlgnet.descriptions import class_descriptions
from sklearn_mmlgnet.metrics import evaluate
from sklearn_mmlgnet.patches import labelled_patches
from sklearn_mmlgnet.text import DEFAULT_TEMPLATES, SentenceTransformerTextEncoder, \
    encode_class_names

TEXT = dict(text_encoder="sentence-transformers")
IDTREES_PCA = 30
VARIANTS = {
    "cross-entropy head (no language)": dict(loss="cross_entropy"),
    "names alone": dict(prompt_templates=["{}"]),
    "templates (default)": {},
    "templates + descriptions": dict(descriptions=True),
    "learnt prompts (4 context vectors)": dict(prompt_context=4),
    "learnt prompts + descriptions": dict(prompt_context=4, descriptions=True),
}


def load(dataset, data_home, seed):
    """(X train, y train, X test, y test, class_names, descriptions, n_lidar, pca, extra);
    ``extra["inner"]`` is the inner (train, validation) split of the training pixels."""
    if dataset == "idtrees":
        data = load_dataset("idtrees", data_home, patch_size=7)
        tr, te = idtrees_splits(data, kind="plot", n_splits=3, random_state=0)[0]
        n_lidar = data.X.shape[1] - data.scenes[0].hsi.shape[2]
        inner = inner_split(data.y[tr], seed, groups=data.plot_group[tr])
        return (data.X[tr], data.y[tr], data.X[te], data.y[te], data.class_names,
                class_descriptions(data), n_lidar, IDTREES_PCA,
                dict(data=data, tr=tr, te=te, inner=inner))
    scene = load_dataset(dataset, data_home, seed=seed)
    Xtr, ytr, rows, cols = labelled_patches(scene, scene.train_mask, patch_size=11)
    Xte, yte = labelled_patches(scene, scene.test_mask, patch_size=11)[:2]
    n_lidar = scene.lidar.shape[2] if scene.get("lidar") is not None else 0
    inner = inner_split(ytr, seed, rows=rows, cols=cols, patch_size=11)
    return (Xtr, ytr, Xte, yte, scene.class_names, class_descriptions(scene), n_lidar, None,
            dict(inner=inner))


def pipeline(seed, epochs, n_lidar, pca, class_names, descriptions=None, **params):
    params = dict(TEXT, n_lidar_bands=n_lidar, max_epochs=epochs, random_state=seed,
                  class_names=class_names, class_descriptions=descriptions, **params)
    return network_pipeline(params, pca=pca)


def cosines(emb):
    sim = emb @ emb.T
    iu = np.triu_indices(len(emb), 1)
    k = int(np.argmax(sim[iu]))
    return dict(mean=float(sim[iu].mean()), max=float(sim[iu].max()),
                closest=[int(iu[0][k]), int(iu[1][k])])


def mean_std(values):
    return f"{100 * np.mean(values):.2f} +/- {100 * np.std(values):.2f}"


def run_cosines(args):
    encoder = SentenceTransformerTextEncoder()
    rows = []
    for dataset in ("idtrees", "synthetic"):
        if dataset == "idtrees":
            data = load_dataset("idtrees", args.data_home, patch_size=None)
            labels = sorted(data.class_names)
        else:
            data = load_dataset("synthetic")
            labels = sorted(data.class_names)
        names = [data.class_names[c] for c in labels]
        descr = class_descriptions(data)
        for text, templates, d in (("names alone", ["{}"], None),
                                   ("templates", DEFAULT_TEMPLATES, None),
                                   ("templates + descriptions", DEFAULT_TEMPLATES,
                                    [descr[c] for c in labels])):
            emb = encode_class_names(names, templates, encoder=encoder, descriptions=d)
            c = cosines(emb)
            rows.append(dict(dataset=dataset, text=text, mean=c["mean"], max=c["max"],
                             closest=[names[i] for i in c["closest"]]))
            print(f"{dataset:9s} {text:26s} mean {c['mean']:.3f} max {c['max']:.3f} "
                  f"({' / '.join(rows[-1]['closest'])})", flush=True)
    return rows


def run_variants(args):
    rows = []
    for seed in range(args.seeds):
        Xtr, ytr, Xte, yte, names, descr, n_lidar, pca, _ = load(args.dataset, args.data_home,
                                                                  seed)
        for name, params in VARIANTS.items():
            if args.only and not any(w in name for w in args.only):
                continue
            params = dict(params)
            d = descr if params.pop("descriptions", False) else None
            est = pipeline(seed, args.epochs, n_lidar, pca, names, d, **params)
            t0 = time.perf_counter()
            est.fit(Xtr, ytr)
            fit_s = time.perf_counter() - t0
            res = evaluate(yte, np.concatenate([est.predict(Xte[i:i + 4096])
                                                for i in range(0, len(Xte), 4096)]))
            clf = est[-1]
            row = dict(dataset=args.dataset, seed=seed, variant=name, epochs=args.epochs,
                       fit_s=fit_s, **{k: float(res[k]) for k in ("OA", "AA", "kappa")})
            if clf.loss != "cross_entropy":
                row["text_cosine"] = cosines(clf.text_embeddings_)
            rows.append(row)
            print(f"[seed {seed}] {name:36s} OA {100 * row['OA']:.2f} AA {100 * row['AA']:.2f} "
                  f"fit {fit_s:.0f} s", flush=True)
            save(args, rows)
    print()
    for name in VARIANTS:
        sel = [r for r in rows if r["variant"] == name]
        if sel:
            print(f"{name:36s} OA {mean_std([r['OA'] for r in sel])}  AA "
                  f"{mean_std([r['AA'] for r in sel])}  fit {np.mean([r['fit_s'] for r in sel]):.0f} s")
    return rows


def rank_of(scores, k):
    """1-based rank of column ``k`` in every row of ``scores`` (1 = highest)."""
    return 1 + (scores > scores[:, [k]]).sum(axis=1)


def run_zero_shot(args):
    Xtr, ytr, Xte, yte, names, descr, n_lidar, pca, extra = load("idtrees", args.data_home, 0)
    labels = sorted(names)
    texts = [names[c] for c in labels]
    descr_by_text = {names[c]: descr[c] for c in labels}
    rows = []
    for seed in range(args.seeds):
        for k, held in enumerate(labels):
            if args.only and held not in args.only:
                continue
            keep = ytr != held
            est = pipeline(seed, args.epochs, n_lidar, pca, {c: names[c] for c in labels
                                                             if c != held})
            est.fit(Xtr[keep], ytr[keep])
            Xh = Xte[yte == held]
            row = dict(part="leave one taxon out", seed=seed, held_out=held, name=names[held],
                       n_pixels=int(len(Xh)), n_texts=len(texts))
            for how, kw in (("templates", {}), ("templates + descriptions",
                                                dict(class_descriptions=descr_by_text))):
                scores = scores_of(est, Xh, texts, **kw)
                ranks = rank_of(scores, k)
                row[how] = dict(top1=float(np.mean(ranks == 1)), mean_rank=float(ranks.mean()))
            rows.append(row)
            print(f"[seed {seed}] held out {names[held]:45s} " + "  ".join(
                f"{h}: top-1 {100 * row[h]['top1']:.1f} % rank {row[h]['mean_rank']:.2f}"
                for h in ("templates", "templates + descriptions")), flush=True)
            save(args, rows)
    # Site transfer: every MLBS pixel trains, every OSBS pixel is scored.
    data = extra["data"]
    mlbs, osbs = data.site == "MLBS", data.site == "OSBS"
    seen = sorted(set(data.y[mlbs].tolist()))
    for seed in range(args.seeds):
        est = pipeline(seed, args.epochs, n_lidar, pca, {c: names[c] for c in seen})
        est.fit(data.X[mlbs], data.y[mlbs])
        for how, kw in (("templates", {}), ("templates + descriptions",
                                            dict(class_descriptions=descr_by_text))):
            scores = scores_of(est, data.X[osbs], texts, **kw)
            y = data.y[osbs]
            for c in sorted(set(y.tolist())):
                ranks = rank_of(scores[y == c], labels.index(c))
                rows.append(dict(part="MLBS -> OSBS", seed=seed, text=how, taxon=c,
                                 name=names[c], seen_in_training=c in seen,
                                 n_pixels=int((y == c).sum()), top1=float(np.mean(ranks == 1)),
                                 mean_rank=float(ranks.mean())))
                print(f"[seed {seed}] MLBS -> OSBS {how:26s} {names[c]:45s} "
                      f"{'seen  ' if c in seen else 'unseen'} top-1 {100 * rows[-1]['top1']:.1f} "
                      f"% rank {rows[-1]['mean_rank']:.2f}", flush=True)
            save(args, rows)
    return rows


def scores_of(est, X, texts, **kw):
    """``text_scores`` of the pipeline's classifier on X run through the pipeline's steps."""
    out = []
    for i in range(0, len(X), 4096):
        Xb = X[i:i + 4096]
        for _, step in est.steps[:-1]:
            Xb = step.transform(Xb)
        out.append(est[-1].text_scores(Xb, texts, **kw))
    return np.concatenate(out)


def run_curve(args, settings=(("language (templates)", {}),
                               ("language, dot similarity, lr 2e-3",
                                dict(module__similarity="dot", lr=2e-3)),
                               ("cross-entropy head", dict(loss="cross_entropy")))):
    settings = [(h, p) for h, p in settings if not args.only or any(w in h for w in args.only)]
    rows = []
    for seed in range(args.seeds):
        Xtr, ytr, Xte, yte, names, _, n_lidar, pca, _ = load(args.dataset, args.data_home, seed)
        for epochs in args.epochs_list:
            for head, params in settings:
                est = pipeline(seed, epochs, n_lidar, pca, names, **params)
                t0 = time.perf_counter()
                est.fit(Xtr, ytr)
                fit_s = time.perf_counter() - t0
                res = evaluate(yte, np.concatenate([est.predict(Xte[i:i + 4096])
                                                    for i in range(0, len(Xte), 4096)]))
                train_acc = float(np.mean(est.predict(Xtr) == ytr))
                rows.append(dict(dataset=args.dataset, seed=seed, epochs=epochs, head=head,
                                 fit_s=fit_s, train_accuracy=train_acc,
                                 **{k: float(res[k]) for k in ("OA", "AA", "kappa")}))
                print(f"[seed {seed}] {epochs:3d} epochs {head:34s} OA {100 * res['OA']:.2f} "
                      f"AA {100 * res['AA']:.2f} train {100 * train_acc:.1f} fit {fit_s:.0f} s",
                      flush=True)
                save(args, rows)
    return rows


RECIPES = {
    "default (temperature 0.07, fixed)": {},
    "learnt temperature (from 0.07)": dict(learn_temperature=True),
    "temperature 0.03": dict(temperature=0.03),
    "dot similarity": dict(module__similarity="dot"),
    "class_weight balanced_sqrt": dict(class_weight="balanced_sqrt"),
    "lr 2e-3 (x4)": dict(lr=2e-3),
    "dot similarity, lr 2e-3": dict(module__similarity="dot", lr=2e-3),
    "cross-entropy head, lr 2e-3": dict(loss="cross_entropy", lr=2e-3),
    "image->text loss only": dict(loss="image_to_text"),
    "batch 128, lr 1e-3 (x2)": dict(batch_size=128, lr=1e-3),
    "batch 256, lr 2e-3 (x4)": dict(batch_size=256, lr=2e-3),
    "bf16 training": dict(precision="bf16"),
    "cross-entropy head": dict(loss="cross_entropy"),
}


def run_recipe(args):
    """Language-head settings scored on the inner split of the training pixels only."""
    rows = []
    for seed in range(args.seeds):
        X, y, _, _, names, _, n_lidar, pca, extra = load(args.dataset, args.data_home, seed)
        a, b = extra["inner"]
        for name, params in RECIPES.items():
            if args.only and not any(w in name for w in args.only):
                continue
            est = pipeline(seed, args.epochs, n_lidar, pca, names, **params)
            t0 = time.perf_counter()
            est.fit(X[a], y[a])
            fit_s = time.perf_counter() - t0
            res = evaluate(y[b], est.predict(X[b]))
            rows.append(dict(dataset=args.dataset, seed=seed, variant=name, epochs=args.epochs,
                             fit_s=fit_s, inner=[int(len(a)), int(len(b))],
                             train_accuracy=float(np.mean(est.predict(X[a]) == y[a])),
                             **{k: float(res[k]) for k in ("OA", "AA", "kappa")}))
            print(f"[seed {seed}] {name:36s} inner OA {100 * res['OA']:.2f} AA "
                  f"{100 * res['AA']:.2f} train {100 * rows[-1]['train_accuracy']:.1f} "
                  f"fit {fit_s:.0f} s", flush=True)
            save(args, rows)
    return rows


def report_recipe(rows):
    base = {r["seed"]: r for r in rows if r["variant"].startswith("default")}
    out = []
    for name in RECIPES:
        sel = [r for r in rows if r["variant"] == name]
        if sel:
            out.append([name, _ms([r["OA"] for r in sel]), _ms([r["AA"] for r in sel]),
                        _ms([r["OA"] - base[r["seed"]]["OA"] for r in sel if r["seed"] in base]),
                        _ms([r["train_accuracy"] for r in sel]),
                        f"{np.mean([r['fit_s'] for r in sel]):.0f}", len(sel)])
    return _table(["setting", "inner OA", "inner AA", "OA - default (paired)",
                   "inner-training accuracy", "fit s", "seeds"], out)


GEOMETRY = {
    "cosine (default)": {},
    "dot": dict(module__similarity="dot"),
    "image->text loss only": dict(loss="image_to_text"),
    "cosine, lr 2e-3": dict(lr=2e-3),
    "dot, lr 2e-3": dict(module__similarity="dot", lr=2e-3),
    "cosine, batch 256, lr 2e-3": dict(batch_size=256, lr=2e-3),
    "cross-entropy head": dict(loss="cross_entropy"),
    "cross-entropy head, lr 2e-3": dict(loss="cross_entropy", lr=2e-3),
}


def run_geometry(args):
    """Two classes whose text embeddings are close, and a third: how well each head learns
    to tell the two apart, in ``--epochs`` epochs (training pixels' accuracy on them)."""
    rows = []
    for seed in range(args.seeds):
        rng = np.random.RandomState(seed)
        y = np.repeat([0, 1, 2], 300)
        X = rng.normal(size=(len(y), 6, 5, 5)).astype(np.float32)
        X[y < 2, 0] += 1.0  # classes 0 and 1 share a band; class 1 lifts a second one a little
        X[y == 1, 1] += 0.8
        X[y == 2, 2] += 1.0
        close = y < 2
        for cos in (0.5, 0.9, 0.97, 0.99):
            e = np.eye(8)
            text = np.stack([e[0], cos * e[0] + np.sqrt(1 - cos ** 2) * e[1], e[2]])
            for name, params in GEOMETRY.items():
                clf = MMLGNetClassifier(n_lidar_bands=0, text_embeddings=text,
                                        max_epochs=args.epochs, random_state=seed,
                                        module__hsi_channels=(16, 32), module__fusion_dim=32,
                                        **params).fit(X, y)
                acc = float(np.mean(clf.predict(X[close]) == y[close]))
                rows.append(dict(seed=seed, cosine=cos, setting=name, epochs=args.epochs,
                                 train_accuracy=acc))
                print(f"[seed {seed}] text cosine {cos:.2f} {name:28s} training accuracy on the "
                      f"two close classes {100 * acc:.1f} %", flush=True)
            save(args, rows)
    return rows


def report_geometry(rows):
    cosines_ = sorted({r["cosine"] for r in rows})
    out = [[name] + [_ms([r["train_accuracy"] for r in rows
                          if r["setting"] == name and r["cosine"] == c], digits=1)
                     for c in cosines_]
           for name in GEOMETRY if any(r["setting"] == name for r in rows)]
    return _table(["head"] + [f"text cosine {c}" for c in cosines_], out)


def run_precision(args):
    """The curve's rows for the language head trained in float32 and in bfloat16."""
    return run_curve(args, (("language, fp32", dict(precision="fp32")),
                            ("language, bf16", dict(precision="bf16"))))


def _ms(values, scale=100.0, digits=2):
    return f"{scale * np.mean(values):.{digits}f} +/- {scale * np.std(values):.{digits}f}"


def _table(header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def report_variants(rows):
    base = {r["seed"]: r for r in rows if r["variant"].startswith("cross-entropy")}
    out = []
    for name in VARIANTS:
        sel = [r for r in rows if r["variant"] == name]
        if not sel:
            continue
        diff = [r["OA"] - base[r["seed"]]["OA"] for r in sel if r["seed"] in base]
        diff_aa = [r["AA"] - base[r["seed"]]["AA"] for r in sel if r["seed"] in base]
        cos = [r["text_cosine"] for r in sel if "text_cosine" in r]
        out.append([name, _ms([r["OA"] for r in sel]), _ms([r["AA"] for r in sel]),
                    _ms([r["kappa"] for r in sel]), _ms(diff), _ms(diff_aa),
                    f"{np.mean([c['mean'] for c in cos]):.3f} / {np.mean([c['max'] for c in cos]):.3f}"
                    if cos else "-", f"{np.mean([r['fit_s'] for r in sel]):.0f}", len(sel)])
    return _table(["text", "OA", "AA", "kappa", "OA - CE head (paired)", "AA - CE head (paired)",
                   "text cosine mean / max", "fit s", "seeds"], out)


def report_curve(rows):
    out = []
    for head in dict.fromkeys(r["head"] for r in rows):
        for epochs in sorted({r["epochs"] for r in rows}):
            sel = [r for r in rows if r["head"] == head and r["epochs"] == epochs]
            if sel:
                out.append([head, epochs, _ms([r["OA"] for r in sel]), _ms([r["AA"] for r in sel]),
                            _ms([r["train_accuracy"] for r in sel]),
                            f"{np.mean([r['fit_s'] for r in sel]):.0f}", len(sel)])
    return _table(["head", "epochs", "OA", "AA", "training pixels' accuracy", "fit s", "seeds"],
                  out)


def report_precision(rows):
    """The curve's table, then bfloat16 against float32 paired by seed and epoch count."""
    fp32 = {(r["seed"], r["epochs"]): r for r in rows if r["head"].endswith("fp32")}
    pairs = [(r, fp32[(r["seed"], r["epochs"])]) for r in rows
             if r["head"].endswith("bf16") and (r["seed"], r["epochs"]) in fp32]
    if not pairs:
        return report_curve(rows)
    return report_curve(rows) + (
        f"\nbf16 - fp32, paired by seed: OA {_ms([a['OA'] - b['OA'] for a, b in pairs])}, "
        f"AA {_ms([a['AA'] - b['AA'] for a, b in pairs])}; fit seconds bf16 / fp32: "
        f"{np.mean([a['fit_s'] / b['fit_s'] for a, b in pairs]):.2f} ({len(pairs)} pairs)")


def report_zero_shot(rows):
    loto = [r for r in rows if r["part"] == "leave one taxon out"]
    out = []
    for name in dict.fromkeys(r["name"] for r in loto):
        sel = [r for r in loto if r["name"] == name]
        out.append([name, sel[0]["n_pixels"]] + [
            f"{_ms([r[h]['top1'] for r in sel], digits=1)} / {_ms([r[h]['mean_rank'] for r in sel], 1, 2)}"
            for h in ("templates", "templates + descriptions")] + [len(sel)])
    if loto:
        n = loto[0]["n_texts"]
        out.append([f"mean over taxa (chance: {100 / n:.1f} / {(n + 1) / 2:.1f})", ""] + [
            f"{100 * np.mean([r[h]['top1'] for r in loto]):.1f} / "
            f"{np.mean([r[h]['mean_rank'] for r in loto]):.2f}"
            for h in ("templates", "templates + descriptions")] + [""])
    text = _table(["held-out taxon", "test pixels", "top-1 % / rank: templates",
                   "top-1 % / rank: + descriptions", "seeds"], out)
    site = [r for r in rows if r["part"] == "MLBS -> OSBS"]
    out = []
    for name in dict.fromkeys(r["name"] for r in site):
        sel = {h: [r for r in site if r["name"] == name and r["text"] == h]
               for h in ("templates", "templates + descriptions")}
        first = sel["templates"][0]
        out.append([name, "seen" if first["seen_in_training"] else "unseen", first["n_pixels"]] + [
            f"{_ms([r['top1'] for r in v], digits=1)} / {_ms([r['mean_rank'] for r in v], 1, 2)}"
            for v in sel.values()])
    if site:
        text += "\n\nMLBS -> OSBS (trained on every MLBS pixel, OSBS scored against every name):\n"
        text += _table(["OSBS taxon", "at MLBS", "pixels", "top-1 % / rank: templates",
                        "top-1 % / rank: + descriptions"], out)
    return text


def report_cosines(rows):
    return _table(["dataset", "text", "cosine mean", "cosine max", "closest pair"],
                  [[r["dataset"], r["text"], f"{r['mean']:.3f}", f"{r['max']:.3f}",
                    " / ".join(r["closest"])] for r in rows])


def run_report(args):
    for path in sorted(Path(args.results).glob("language_*.json")):
        body = json.loads(path.read_text())
        what, rows = body["command"]["what"], body["rows"]
        if what == "report" or not rows:
            continue
        report = dict(cosines=report_cosines, variants=report_variants, curve=report_curve,
                      precision=report_precision, recipe=report_recipe,
                      geometry=report_geometry)
        report["zero-shot"] = report_zero_shot
        cmd = body["command"]
        dataset = f" --dataset {cmd['dataset']}" if what not in ("cosines", "geometry") else ""
        print(f"{path.name}: bench_language.py {what}{dataset} --epochs "
              f"{' '.join(map(str, cmd['epochs_list']))} --seeds {cmd['seeds']}")
        for extra in body.get("merged", []):
            print(f"  + the rows of: bench_language.py {extra['what']} --only "
                  f"{' '.join(repr(w) for w in extra['only'])} ({extra['note']})")
        print(report[what](rows), end="\n\n")
    return []


def save(args, rows):
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(command=vars(args), rows=rows), indent=1, default=str))
    tmp.replace(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["cosines", "variants", "zero-shot", "curve", "precision",
                                         "recipe", "geometry", "report"])
    parser.add_argument("--results", default="docs/results",
                        help="the folder of the language_*.json files (report reads them)")
    parser.add_argument("--dataset", default="idtrees",
                        choices=["idtrees", "synthetic", "jasper_ridge"])
    parser.add_argument("--data-home", default="../shared/data")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, nargs="+", default=[5])
    parser.add_argument("--only", nargs="*", help="only the rows whose name holds one of these")
    parser.add_argument("--out", help="JSON file (default: <--results>/language_<what>_<dataset>"
                                      ".json; cosines and geometry: language_<what>.json)")
    args = parser.parse_args(argv)
    args.epochs_list, args.epochs = args.epochs, args.epochs[0]
    per_dataset = args.what in ("variants", "curve", "precision", "recipe", "zero-shot")
    args.out = args.out or str(Path(args.results) / (
        f"language_{args.what}_{args.dataset}.json" if per_dataset else
        f"language_{args.what}.json"))
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning)
    run = dict(cosines=run_cosines, variants=run_variants, curve=run_curve,
               precision=run_precision, recipe=run_recipe, geometry=run_geometry)
    run["zero-shot"] = run_zero_shot
    if args.what == "report":
        return run_report(args)
    save(args, run[args.what](args))


if __name__ == "__main__":
    main()
