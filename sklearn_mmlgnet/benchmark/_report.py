"""The benchmark's outputs: the Markdown table and the CSV of the finished runs."""

from __future__ import annotations

import csv
import io

import numpy as np

from ._choice import describe_input
from ._methods import default_methods

#: Test pixels whose per-head accuracies the self-distilled rows report.
N_HEAD_PIXELS = 5000
_SCORES = ("OA", "AA", "kappa", "crown_accuracy", "crown_macro_f1")


def results_csv(rows):
    """One line per run: method, group, seed, scores, seconds and per-class accuracy."""
    buf = io.StringIO()
    classes = sorted({c for r in rows for c in r["per_class"]})
    scores = [s for s in _SCORES if any(s in r for r in rows)]
    w = csv.writer(buf)
    w.writerow(["method", "group", "seed"] + scores + ["fit_s", "predict_s"]
               + [f"class_{c}" for c in classes])
    for r in rows:
        w.writerow([r["method"], r["group"], r["seed"]] + [r.get(s, "") for s in scores]
                   + [r["fit_s"], r["predict_s"]] + [r["per_class"].get(c, "") for c in classes])
    return buf.getvalue()


def _ms(values, scale=100.0):
    v = scale * np.asarray(values, float)
    if len(v) == 1:
        return f"{v[0]:.2f}"
    return f"{v.mean():.2f} ± {v.std(ddof=0):.2f}"


def text_description(text_kwargs):
    """The text encoder of the run, in words."""
    encoder = text_kwargs.get("text_encoder")
    if encoder == "open_clip":
        weights = text_kwargs.get("clip_pretrained") or "random weights"
        return f"open_clip ViT-B-32 ({weights})"
    if encoder == "sentence-transformers":
        return "sentence-transformers (packaged all-MiniLM-L6-v2)"
    return str(encoder)


def _input_lines(rows):
    """What the network input chosen on inner validation was, fit by fit."""
    chosen, seconds = {}, {}
    for r in rows:
        for key, choice in (r.get("network_input") or {}).items():
            chosen[(r["seed"], key)] = describe_input(choice)
            seconds[(r["seed"], key)] = choice.get("seconds", np.nan)
    if not chosen:
        return []
    counts = {}
    for name in chosen.values():
        counts[name] = counts.get(name, 0) + 1
    fits = "; ".join(f"{name}: {n} of {len(chosen)} fits" for name, n in
                     sorted(counts.items(), key=lambda kv: -kv[1]))
    per_fit = ", ".join(f"seed {s}" + (f" fold {k}" if k != "all" else "") + f": {name}"
                        for (s, k), name in sorted(chosen.items()))
    return [f"Network input chosen on inner validation ({fits}; "
            f"{np.mean(list(seconds.values())):.0f} s per choice); per fit: {per_fit}."]


def markdown_table(rows, meta):
    """Per-class accuracy, OA, AA, kappa (mean ± std over seeds) and timings, as Markdown."""
    if not rows:
        return "(no finished runs yet)\n"
    scene = meta["scene"]
    names = scene["class_names"]
    # The rows in the benchmark's order, whatever order they ran in (--resume).
    order = [m.name for m in default_methods(1, 1, {}, crowns=True)]
    methods = sorted(dict.fromkeys(r["method"] for r in rows),
                     key=lambda m: order.index(m) if m in order else len(order))
    epoch_counts = sorted({r.get("epochs", meta["epochs"]) for r in rows
                           if r["group"] != "baseline"})
    epochs = " / ".join(map(str, epoch_counts)) or meta["epochs"]
    classes = sorted({c for r in rows for c in r["per_class"]})
    header = ["class"] + methods
    counts = sorted({tuple(v) for v in scene["per_seed"].values()})
    counts = "; ".join(f"{tr} training / {te} test pixels" for tr, te in counts)
    if len(scene["per_seed"]) > 1 and counts.count(";"):
        counts = "training / test pixels per seed: " + ", ".join(
            f"seed {k}: {tr} / {te}" for k, (tr, te) in scene["per_seed"].items())
    counts = scene.get("counts", counts)
    patch = meta["patch_size"]
    patch_rule = (" (--patch-size)" if meta.get("patch_rule") == "given" else
                  " (the odd side nearest to a third of the smallest image side, at most 11)")
    lines = [
        f"# Benchmark: {scene['dataset']}",
        "",
        f"Split: {scene['split']} {counts}"
        + (" (quick mode: test subsampled to 5,000)." if meta["quick"] else "."),
        f"Seeds: {sorted({r['seed'] for r in rows})}; networks: {epochs} epochs"
        + (" (row 'epochs')" if len(epoch_counts) > 1 else "")
        + " fixed in advance, the last epoch is scored, the estimators' defaults otherwise; "
        "no checkpoint, epoch or hyperparameter is chosen on the test split."
        f" Patches {patch} x {patch}{patch_rule}. Text encoder: "
        f"{text_description(meta['text'])}."
        " The MMLGNet rows that see HSI bands put in front of the network the input chosen "
        "for each fit on one inner split of its training pixels (spatial blocks on a scene, "
        "plot groups on IDTReeS), by the mean of OA and AA of the symmetric-loss row, among: "
        "each pixel's spectrum as it is or scaled to unit l2 norm (SpectralNormalizer), then "
        "every HSI band or 30 PCA components (where there are more bands); each of those "
        "fits scored with and without averaging the 8 symmetries of a patch "
        "(test_time_augment)."
        + (f" {meta['resumed']} runs were kept from an earlier run in the output folder "
           "(--resume)." if meta.get("resumed") else ""),
    ]
    lines += _input_lines(rows)
    searches = meta.get("searches") or {}
    if searches:
        lines += ["Tuned rows (hyperparameters chosen by inner CV on the training pixels only; the "
                  "choices per seed are in results.json):"]
        lines += [f"- {m}: {d}" for m, d in searches.items()]
    lines += ["", "Values: accuracy in % as mean ± std over seeds.", "",
              "| " + " | ".join(header) + " |",
              "| --- |" + " ---: |" * len(methods)]
    by = {m: [r for r in rows if r["method"] == m] for m in methods}
    for c in classes:
        cells = [_ms([r["per_class"].get(c, np.nan) for r in by[m]]) for m in methods]
        lines.append(f"| {names.get(c, names.get(str(c), c))} | " + " | ".join(cells) + " |")
    labels = {"crown_accuracy": "crown accuracy", "crown_macro_f1": "crown macro F1"}
    for key in _SCORES:
        if any(key in r for r in rows):
            lines.append(f"| **{labels.get(key, key)}** | " + " | ".join(
                _ms([r.get(key, np.nan) for r in by[m]]) for m in methods) + " |")
    lines.append("| seeds | " + " | ".join(str(len(by[m])) for m in methods) + " |")
    if len(epoch_counts) > 1:  # rows of several --epochs: say which has which
        cells = [" / ".join(map(str, sorted({r["epochs"] for r in by[m] if "epochs" in r})))
                 or "—" for m in methods]
        lines.append("| epochs | " + " | ".join(cells) + " |")
    lines.append("| fit (s) | " + " | ".join(_ms([r["fit_s"] for r in by[m]], 1)
                                             for m in methods) + " |")
    lines.append("| predict (s) | " + " | ".join(_ms([r["predict_s"] for r in by[m]], 1)
                                                 for m in methods) + " |")
    heads = [r for r in rows if "head_scores_test" in r]
    if heads:
        lines += ["", f"Per-head test accuracy (%) of the self-distilled models (first "
                  f"{N_HEAD_PIXELS:,} test pixels), mean over seeds:", "", "| method | heads |",
                  "| --- | --- |"]
        for m in dict.fromkeys(r["method"] for r in heads):
            hs = [r["head_scores_test"] for r in heads if r["method"] == m]
            cells = ", ".join(f"{k} {100 * np.mean([h[k] for h in hs]):.2f}" for k in hs[0])
            lines.append(f"| {m} | {cells} |")
    return "\n".join(lines) + "\n"
