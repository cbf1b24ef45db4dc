"""Build the results tables of the README and the docs from ``docs/results/results_*.json``.

The benchmark command (``mmlgnet benchmark``) writes one ``results.json`` per scene; the
copies kept in ``docs/results/`` are the only source of every figure shown in the README's
headline table and on the docs' benchmark page. Run this script after they change::

    python docs/make_tables.py            # rewrite the README's table, write docs/_generated/
    python docs/make_tables.py --check    # exit 1 if the README's table is out of date

The docs build (``docs/conf.py``) writes ``docs/_generated/`` itself, and
``tests/test_readme.py`` checks that the README's table is the one this script prints.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

DOCS = Path(__file__).resolve().parent
RESULTS = DOCS / "results"
README = DOCS.parent / "README.md"
GENERATED = DOCS / "_generated"

#: Scenes in column order: (name of the results file, column title).
SCENES = [
    ("synthetic", "synthetic scene"),
    ("trento", "Trento"),
    ("muufl", "MUUFL"),
    ("houston2013", "Houston 2013"),
    ("jasper_ridge", "Jasper Ridge, HSI only"),
    ("idtrees", "IDTReeS 2020"),
]

#: Method families of the headline table: (row title, patterns of the benchmark's method
#: names, pick). ``pick="best"`` shows the member with the highest mean OA on each scene
#: and names it; otherwise the first method that matches a pattern is shown.
FAMILIES = [
    ("MMLGNet (language head)", [r"^MMLGNet \(symmetric loss\)$", r"^MMLGNet$"], "first"),
    ("MMLGNet + self-distillation", [r"^MMLGNet \+ self-distillation"], "first"),
    ("same encoders, cross-entropy head (no language)", [r"cross-entropy head"], "first"),
    ("SDHSI-Net (HSI only, self-distillation)", [r"^SDHSI-Net(?!.*without)"], "first"),
    ("best tuned classic classifier on the centre pixel", [r"\(tuned\), centre pixel"], "best"),
    ("tuned SVM on morphological profiles (spectral-spatial)", [r"morphological profiles"],
     "first"),
]

#: Short names of the classic rows, for the "best" family.
SHORT = [(r"^SVM", "SVM"), (r"^Logistic regression", "LR"), (r"^RandomForest", "RF"),
         (r"^KNN", "KNN")]

START = "<!-- results-table: start (python docs/make_tables.py) -->"
END = "<!-- results-table: end -->"


def load_results(results_dir=RESULTS):
    """``{scene: results.json content}`` for the scenes whose results file exists."""
    out = {}
    for name, _ in SCENES:
        path = Path(results_dir) / f"results_{name}.json"
        if path.exists():
            out[name] = json.loads(path.read_text())
    return out


def summarise(runs):
    """``{method: {metric: (mean, std), "n": seeds, "group": ...}}`` in % (std over seeds)."""
    by_method = {}
    for run in runs:
        by_method.setdefault(run["method"], []).append(run)
    out = {}
    for method, rows in by_method.items():
        stats = {"n": len(rows), "group": rows[0].get("group", "")}
        for key in ("OA", "AA", "kappa", "crown_accuracy", "crown_macro_f1"):
            values = [r[key] for r in rows if r.get(key) is not None]
            if values:
                v = 100 * np.asarray(values, dtype=float)
                stats[key] = (float(v.mean()), float(v.std(ddof=0)))
        choices = {}
        for r in rows:
            for choice in (r.get("network_input") or {}).values():
                name = _describe_input(choice)
                choices[name] = choices.get(name, 0) + 1
        if choices:
            stats["input"] = choices
        for key in ("fit_s", "predict_s"):
            values = [r[key] for r in rows if r.get(key) is not None]
            if values:
                stats[key] = (float(np.mean(values)), float(np.std(values, ddof=0)))
        out[method] = stats
    return out


def _describe_input(choice):
    """``"unit-length, PCA 30"``-style name of a network input the benchmark chose."""
    if not isinstance(choice, dict):
        return str(choice)
    norm = "unit-length" if choice.get("spectral_norm") else "as is"
    return norm + (f", PCA {choice['pca']}" if choice.get("pca") else "")


def _short(method):
    name = next((s for p, s in SHORT if re.search(p, method)), method.split(" (")[0])
    if "normalised" in method or "unit-length" in method:
        name += ", unit-length spectra"
    if "crown" in method:
        name += ", crown means"
    return name


def family_cells(summary):
    """``[(family title, method or None, cell stats or None, note)]`` for one scene."""
    cells = []
    for title, patterns, pick in FAMILIES:
        members = [m for m in summary if any(re.search(p, m) for p in patterns)]
        members = [m for m in members if "OA" in summary[m]]
        if not members:
            cells.append((title, None, None, ""))
            continue
        if pick == "best":
            method = max(members, key=lambda m: summary[m]["OA"][0])
            note = _short(method)
        else:
            method = min(members, key=lambda m: min(i for i, p in enumerate(patterns)
                                                      if re.search(p, m)))
            note = ""
        cells.append((title, method, summary[method], note))
    return cells


def _scene_title(name, data):
    return f"{dict(SCENES)[name]} ({data['meta'].get('seeds', '?')} seeds)"


def headline(results=None):
    """The headline table's rows: a header and one row per family, as lists of cells."""
    results = load_results() if results is None else results
    scenes = list(results)
    summaries = {s: summarise(results[s]["runs"]) for s in scenes}
    cells = {s: family_cells(summaries[s]) for s in scenes}
    best = {s: max((c[2]["OA"][0] for c in cells[s] if c[2]), default=None) for s in scenes}
    header = ["method family"] + [_scene_title(s, results[s]) for s in scenes]
    rows = []
    for i, (title, _, _) in enumerate((f[0], None, None) for f in FAMILIES):
        row = [title]
        for s in scenes:
            _, method, stats, note = cells[s][i]
            if stats is None:
                row.append("—")
                continue
            oa, sd = stats["OA"]
            text = f"{oa:.2f} ± {sd:.2f}"
            if best[s] is not None and round(oa, 2) == round(best[s], 2):
                text = f"**{text}**"
            text += f" / {stats['AA'][0]:.2f}" if "AA" in stats else ""
            row.append(text + (f" ({note})" if note else ""))
        if any(c != "—" for c in row[1:]):
            rows.append(row)
    return header, rows


def network_settings(meta):
    """What a results file's networks set apart from the estimators' defaults, in words."""
    out = []
    if meta.get("test_time_augment"):
        out.append("test-time augmentation")
    if meta.get("spectral_norm"):
        out.append("unit-length spectra")
    if meta.get("network_pca"):
        out.append(f"PCA {meta['network_pca']}")
    if meta.get("class_weight"):
        out.append(f"class_weight={meta['class_weight']!r}")
    if meta.get("similarity") not in (None, "cosine"):
        out.append(f"similarity={meta['similarity']!r}")
    if (meta.get("ensemble") or 1) > 1:
        out.append(f"mean of {meta['ensemble']} networks")
    if meta.get("predict_heads") not in (None, "final"):
        out.append(f"predict_heads={meta['predict_heads']!r}")
    return out


def protocol_sentence(results=None):
    """The benchmark protocol in one sentence, with the epoch counts read from the files."""
    results = load_results() if results is None else results
    epochs = {s: results[s]["meta"].get("epochs", "?") for s in results}
    counts = list(epochs.values())
    base = max(set(counts), key=counts.count) if counts else "?"
    others = "".join(f"; {e} on {dict(SCENES)[s]}" for s, e in epochs.items() if e != base)
    settings = {dict(SCENES)[s]: network_settings(results[s]["meta"]) for s in results}
    settings = "; ".join(f"{scene}: {', '.join(v)}" for scene, v in settings.items() if v)
    chosen = ("the MMLGNet rows' input (unit-length spectra or not, every band or PCA 30) and "
              "test-time augmentation chosen per fit on inner validation of the training "
              "pixels")
    networks = (f"networks with their defaults, {chosen}" if not settings else
                f"networks with their defaults, {chosen}, except ({settings})")
    return ("Test OA ± std over seeds / AA, in %: every method on the same training and test "
            "pixels of each seed (spatially disjoint splits; plot-grouped 3-fold "
            f"cross-validation on IDTReeS); {networks}, for a fixed number of "
            f"epochs ({base}{others}), the last epoch scored; classic rows (LR: logistic "
            "regression, RF: random forest) tuned by inner cross-validation on the training "
            "pixels only; the packaged offline text model; bold: the best OA of a column.")


def markdown_headline(results=None):
    """The README's table (Markdown), with its protocol sentence above it."""
    results = load_results() if results is None else results
    header, rows = headline(results)
    lines = [protocol_sentence(results), "",
             "| " + " | ".join(header) + " |",
             "| --- |" + " ---: |" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _rst_table(header, rows):
    """A reST list-table."""
    out = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header] + rows:
        out.append("   * - " + (row[0] or " "))
        out += [f"     - {cell}" for cell in row[1:]]
    return "\n".join(out) + "\n"


def rst_headline(results=None):
    """The headline table for the docs (reST)."""
    results = load_results() if results is None else results
    header, rows = headline(results)
    return protocol_sentence(results) + "\n\n" + _rst_table(header, rows)


def _fmt(stats, key, digits=2):
    if key not in stats:
        return "—"
    mean, sd = stats[key]
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def rst_scene(name, data):
    """Every method of one scene: OA, AA, kappa (and crown scores), seconds per fit."""
    summary = summarise(data["runs"])
    crowns = any("crown_accuracy" in s for s in summary.values())
    header = ["method", "OA %", "AA %", "kappa %"]
    header += ["crown accuracy %", "crown macro F1 %"] if crowns else []
    header += ["fit (s)", "predict (s)"]
    inputs = any("input" in s for s in summary.values())
    header += ["network input chosen (times)"] if inputs else []
    rows = []
    order = ["MMLGNet", "ablation", "self-distillation", "baseline"]
    ranked = sorted(summary.items(), key=lambda item: order.index(item[1]["group"])
                    if item[1]["group"] in order else len(order))
    for method, stats in ranked:
        row = [method, _fmt(stats, "OA"), _fmt(stats, "AA"), _fmt(stats, "kappa")]
        if crowns:
            row += [_fmt(stats, "crown_accuracy"), _fmt(stats, "crown_macro_f1")]
        row += [_fmt(stats, "fit_s", 1), _fmt(stats, "predict_s", 1)]
        if inputs:
            row.append(", ".join(f"{k} ({n})" for k, n in stats.get("input", {}).items()) or "—")
        rows.append(row)
    meta = data["meta"]
    n = {len([r for r in data["runs"] if r["method"] == m]) for m in summary}
    text = (f"{meta.get('seeds', '?')} seeds ({', '.join(map(str, sorted(n)))} runs per "
            f"method), {meta.get('epochs', '?')} epochs per network, "
            f"{meta.get('patch_size', '?')} x {meta.get('patch_size', '?')} patches. "
            "Mean ± std over seeds; seconds on the project's shared 2-core machine.\n\n")
    text += _rst_table(header, rows)
    maps = sorted((Path(RESULTS) / "").glob(f"map_{name}_*.png"))
    if maps:
        text += "\nClassification maps of seed 0 (ground truth beside):\n\n"
        for path in maps:
            what = path.stem[len(f"map_{name}_"):].replace("__", " (").replace("_", " ")
            text += (f".. figure:: /results/{path.name}\n   :width: 100%\n\n"
                     f"   {what.strip()}{')' if '(' in what else ''}\n\n")
    return text


def write_generated(results=None, out=GENERATED):
    """Write ``headline.rst`` and ``results_<scene>.rst`` into ``out``; return the paths."""
    results = load_results() if results is None else results
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "headline.rst"]
    paths[0].write_text(rst_headline(results))
    for name, data in results.items():
        path = out / f"results_{name}.rst"
        path.write_text(rst_scene(name, data))
        paths.append(path)
    return paths


def readme_with_table(text, table):
    """``text`` (the README) with the part between the markers replaced by ``table``."""
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"README.md lacks the markers {START!r} ... {END!r}")
    return pattern.sub(lambda _: f"{START}\n{table}\n{END}", text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the README's table differs from the results files")
    args = parser.parse_args(argv)
    text = README.read_text()
    new = readme_with_table(text, markdown_headline())
    if args.check:
        if new != text:
            print("README.md's results table is out of date: run python docs/make_tables.py",
                  file=sys.stderr)
            return 1
        return 0
    if new != text:
        README.write_text(new)
        print("rewrote the table in", README)
    for path in write_generated():
        print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
