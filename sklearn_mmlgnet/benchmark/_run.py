"""The benchmark run: every row over seeds, on a scene's split or IDTReeS's plot folds."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .. import baselines
from .._io import write_text
from ..datasets import idtrees_splits
from ..metrics import crown_scores, evaluate
from ..patches import iter_scene_patches, labelled_patches
from ..plotting import plot_classification_map
from ..prediction import predict_scene
from ..text import resolve_text_encoder
from ._choice import INPUT_CANDIDATES, choose_network_input, inner_split
from ._data import DATASETS, IDTREES_FOLDS, image_shapes, load_dataset, patch_size_for
from ._methods import (
    band_slice,
    crown_means,
    default_methods,
    n_lidar_for,
    proba_columns,
    search_of,
    select_bands,
    select_methods,
)
from ._report import N_HEAD_PIXELS, markdown_table, results_csv


class BenchmarkRun:
    """Runs the methods over seeds and keeps results, table and maps up to date on disk.

    Parameters
    ----------
    dataset : str
        One of :data:`DATASETS`.
    out : str or Path
        Folder of ``results.json``, ``results.csv``, ``results_<dataset>.md`` and the maps.
    seeds : int, default=3
    epochs : int, default=50
        ``max_epochs`` of every network row.
    device : str, default="cpu"
    quick : bool, default=False
        Narrower networks and at most 5,000 test pixels: a smoke run.
    data_home : str or Path, optional
    text_encoder : str, default="auto"
        :func:`sklearn_mmlgnet.text.resolve_text_encoder`'s ``choice``.
    methods : list of str, optional
        Only the rows whose name contains one of these (:func:`select_methods`).
    patch_size : int, optional
        The patch side; None: :func:`patch_size_for` of the dataset's images.
    maps : bool, default=True
        Write the classification maps of seed 0.
    verbose : int, default=1
        1: skorch's line per epoch of the networks.
    resume : bool, default=False
        Keep the finished runs of ``out/results.json`` (same dataset, quick mode and patch
        side) and run only the others.
    log : callable, default=print
    on_predict : callable, optional
        Called after each fit on a scene (not IDTReeS's plot folds) as
        ``on_predict(method_name, seed, scene, test_mask, pred)``, with ``pred`` the
        predicted labels of the pixels of ``test_mask`` in row-major order: what an
        analysis of the test predictions beyond OA / AA / kappa needs.
    """

    def __init__(self, dataset, out, seeds=3, epochs=50, device="cpu", quick=False,
                 data_home=None, text_encoder="auto", methods=None, patch_size=None, maps=True,
                 verbose=1, resume=False, log=print, on_predict=None):
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
        self.patch_rule = "given" if patch_size is not None else "rule"
        self.maps = maps
        self.verbose = verbose
        self.log = log
        self.resume = resume
        self.on_predict = on_predict
        self.results = []
        self.searches = {}
        self.resumed = 0

    def run(self):
        """Run every row on every seed; returns the list of result rows."""
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}; got {self.dataset!r}.")
        # The method names do not depend on the data: check the filter before loading anything.
        select_methods(default_methods(1, 1, {}, crowns=self.dataset == "idtrees"),
                       self.method_filter)
        self.out.mkdir(parents=True, exist_ok=True)
        if self.dataset == "idtrees":
            return self._run_grouped()
        for seed in range(self.seeds):
            scene = load_dataset(self.dataset, self.data_home, seed)  # a missing file fails first
            if seed == 0:
                self._start(scene.DESCR, scene.class_names, image_shapes(scene))
            test_mask = scene.test_mask & (scene.labels > 0)
            self.scene_info["per_seed"][seed] = [int(scene.train_mask.sum()), int(test_mask.sum())]
            if self.quick:
                test_mask = _subsample_mask(test_mask, 5000, seed)
            n_hsi, n_lidar = scene.hsi.shape[2], scene.lidar.shape[2]
            Xtr, ytr, rtr, ctr = labelled_patches(scene, scene.train_mask, self.patch_size)
            # Spatially blocked inner folds of the training pixels for the tuned rows.
            inner = baselines.inner_cv(rows=rtr, cols=ctr, patch_size=self.patch_size,
                                       random_state=seed)
            todo = [m for m in self._methods(n_lidar) if not self._done(m, seed)]
            choice = None
            if any(m.chooses_input for m in todo):
                split = inner_split(ytr, seed, rows=rtr, cols=ctr, patch_size=self.patch_size)
                choice = self._choose(seed, Xtr, ytr, split, n_lidar, scene.class_names)
            for method in todo:
                self._run_one(method, seed, scene, Xtr, ytr, inner, test_mask, n_hsi, n_lidar,
                              choice)
        self.save()  # also when --resume found every run done: the table in today's format
        return self.results

    # ------------------------------------------------------------------ set-up
    def _start(self, description, class_names, shapes):
        """Settle the patch side, keep earlier runs (``resume``) and the run's description."""
        if self.patch_size is None:
            self.patch_size = patch_size_for(shapes)
        previous = self._load_finished() if self.resume else None
        self.text_kwargs = resolve_text_encoder(self.text_choice, log=self.log)
        self.scene_info = {"dataset": self.dataset, "split": description, "per_seed": {},
                           "class_names": {int(k): v for k, v in class_names.items()}}
        if previous:  # seeds finished earlier keep their split sizes
            self.scene_info["per_seed"].update({int(k): v for k, v in previous["per_seed"].items()})

    def _load_finished(self):
        """Keep the runs of an earlier benchmark in ``out`` made with the same settings;
        returns its scene description (None when there is none)."""
        path = self.out / "results.json"
        if not path.exists():
            return None
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
            meta = old["meta"]
            meta["scene"]["dataset"], meta["quick"], meta["patch_size"], old["runs"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"--resume: {path} is not a results file of this command "
                             f"({type(exc).__name__}: {exc}); remove it or use another --out."
                             ) from exc
        # Each network row records its own epoch count, so rows of another --epochs may
        # be added; the data, the split and the patches must be the same.
        same = (meta["scene"]["dataset"] == self.dataset and meta["quick"] == self.quick
                and meta["patch_size"] == self.patch_size)
        if not same:
            raise ValueError(
                f"--resume: {path} holds a benchmark of {meta['scene']['dataset']} with "
                f"quick={meta['quick']}, patch_size={meta['patch_size']}; this run asks for "
                f"{self.dataset}, quick={self.quick}, patch_size={self.patch_size}. Use another "
                "--out or the same settings.")
        self.results = old["runs"]
        for r in self.results:  # JSON keys are strings; labels are ints
            r["per_class"] = {int(k): v for k, v in r["per_class"].items()}
        self.searches = dict(meta.get("searches") or {})
        self.resumed = len(self.results)
        self.log(f"[resume] {len(self.results)} finished runs kept from {path}.")
        return meta["scene"]

    def _done(self, method, seed):
        return any(r["method"] == method.name and r["seed"] == seed for r in self.results)

    def _methods(self, n_lidar, verbose=None):
        methods = default_methods(n_lidar, self.epochs, self.text_kwargs, self.device, self.quick,
                                  self.verbose if verbose is None else verbose,
                                  crowns=self.dataset == "idtrees")
        return select_methods(methods, self.method_filter)

    def _choose(self, seed, X, y, split, n_lidar, class_names):
        """The network input of this fit's MMLGNet rows (:mod:`._choice`)."""
        chooser = default_methods(n_lidar, self.epochs, self.text_kwargs, self.device,
                                  self.quick, verbose=0)[0]
        return choose_network_input(chooser, seed, X, y, split, n_lidar,
                                    class_names=class_names, log=self.log)

    # ------------------------------------------------------------------ fitting
    def _fit(self, method, seed, n_lidar, X, y, cv, groups=None, class_names=None,
             network_input=None):
        """Build and fit one row's estimator; returns it and the fit seconds."""
        est = method.build(seed, n_lidar_for(method.bands, n_lidar), cv,
                           network_input=_input_params(network_input)
                           if method.chooses_input else None)
        if class_names is not None and "class_names" in est[-1].get_params():
            est[-1].set_params(class_names=class_names)  # the prompts name the classes
        self.log(f"[seed {seed}] {method.name}: fitting on {len(X)} "
                 + (f"patches ({X.shape[1]} bands, {X.shape[-1]}x{X.shape[-1]}) ..."
                    if X.ndim == 4 else f"crown means ({X.shape[1]} bands) ..."))
        t0 = time.perf_counter()
        if search_of(est) is not None and groups is not None:
            est.fit(X, y, groups=groups)
        else:
            est.fit(X, y)
        fit_s = time.perf_counter() - t0
        if search_of(est) is not None:
            self.searches[method.name] = baselines.describe_search(est)
        return est, fit_s

    def _run_one(self, method, seed, scene, Xtr, ytr, inner, test_mask, n_hsi, n_lidar, choice):
        est, fit_s = self._fit(method, seed, n_lidar, select_bands(Xtr, method.bands, n_hsi), ytr,
                               inner, class_names=scene.class_names, network_input=choice)
        # The test patches are cut batch by batch, never all at once (a Trento-sized
        # test set would take about 1 GB of patches).
        t0 = time.perf_counter()
        pred = self._predict(est, method, scene, n_hsi, test_mask)[test_mask]
        predict_s = time.perf_counter() - t0
        if self.on_predict is not None:
            self.on_predict(method.name, seed, scene, test_mask, pred)
        yte = scene.labels[test_mask]
        row = self._row(method, seed, evaluate(yte, pred), fit_s, predict_s, len(yte), est)
        if method.chooses_input:
            row["network_input"] = {"all": choice}
        if getattr(est[-1], "self_distillation", False) and hasattr(est[-1], "head_scores"):
            row["head_scores_test"] = self._head_scores(est, method, scene, n_hsi, test_mask)
        self._record(row)
        if self.maps and seed == 0 and method.name.startswith(("MMLGNet (symmetric",
                                                                "RandomForest")):
            pred_map = self._predict(est, method, scene, n_hsi,
                                     scene.labels > 0 if self.quick else None)
            self._write_map(method, pred_map, scene.labels, scene.class_names)

    def _row(self, method, seed, res, fit_s, predict_s, n_test, est):
        row = {"method": method.name, "group": method.group, "seed": seed, "OA": res["OA"],
               "AA": res["AA"], "kappa": res["kappa"],
               "per_class": {int(k): v for k, v in res["per_class"].items()},
               "fit_s": fit_s, "predict_s": predict_s, "n_test": int(n_test)}
        search = search_of(est)
        if search is not None:
            row["best_params"] = {k: _jsonable(v) for k, v in search.best_params_.items()}
        if method.group != "baseline":
            row["epochs"] = self.epochs
        return row

    def _record(self, row):
        self.results.append(row)
        extra = ""
        if "crown_accuracy" in row:
            extra = (f"  crown acc {100 * row['crown_accuracy']:.2f}  "
                     f"macro F1 {100 * row['crown_macro_f1']:.2f}")
        self.log(f"[seed {row['seed']}] {row['method']}: OA {100 * row['OA']:.2f}  "
                 f"AA {100 * row['AA']:.2f}  kappa {100 * row['kappa']:.2f}{extra}  "
                 f"(fit {row['fit_s']:.1f} s, predict {row['predict_s']:.1f} s)")
        self.save()

    def _head_scores(self, est, method, scene, n_hsi, test_mask):
        """Every head's accuracy on the first N_HEAD_PIXELS test pixels, batch by batch."""
        r, c = (idx[:N_HEAD_PIXELS] for idx in np.nonzero(test_mask))
        mask = np.zeros_like(test_mask)
        mask[r, c] = True
        totals, n = {}, 0
        for rb, cb, patches in iter_scene_patches(scene.hsi, scene.lidar, self.patch_size,
                                                  mask=mask):
            Xb = est[:-1].transform(select_bands(patches, method.bands, n_hsi))
            for head, acc in est[-1].head_scores(Xb, scene.labels[rb, cb]).items():
                totals[head] = totals.get(head, 0.0) + acc * len(rb)
            n += len(rb)
        return {head: total / n for head, total in totals.items()}

    def _predict(self, est, method, scene, n_hsi, mask=None):
        """Label map of the ``mask`` pixels (all if None), with the bands the method sees."""
        return predict_scene(est, scene.hsi, scene.lidar, self.patch_size, mask=mask, fill_value=0,
                             bands=band_slice(method.bands, n_hsi))

    def _write_map(self, method, pred_map, labels, class_names, title=None):
        slug = "".join(ch if ch.isalnum() else "_" for ch in method.name.split(",")[0]).strip("_")
        path = self.out / f"map_{self.dataset}_{slug}.png"
        plot_classification_map(pred_map, labels, class_names, path=path,
                                title=title or f"{method.name} on {self.dataset} (seed 0)")
        self.log(f"[map] {path}")

    # ------------------------------------------------------------ IDTReeS
    def _run_grouped(self):
        """Plot-grouped cross-validation: every pixel predicted once, out of fold, per seed."""
        if self.patch_size is None:  # the plots' sides set it; their patches are cut after
            plots = load_dataset(self.dataset, self.data_home, patch_size=None)
            self.patch_size = patch_size_for(image_shapes(plots))
            del plots
        data = load_dataset(self.dataset, self.data_home, patch_size=self.patch_size)
        folds = idtrees_splits(data, kind="plot", n_splits=IDTREES_FOLDS, random_state=0)
        self._start(
            f"{IDTREES_FOLDS} plot-grouped folds (StratifiedGroupKFold over groups of connected "
            "plots, random_state=0, the same folds for every seed): no crown and no plot on both "
            "sides; every labelled pixel is predicted once, by the fold that held it out (fit and "
            "predict seconds are summed over the folds).",
            data.class_names, image_shapes(data))
        X, y = data.X, data.y
        self.scene_info["counts"] = (
            f"{len(y)} labelled pixels in {len(np.unique(data.crown_id))} crowns of "
            f"{len(data.scenes)} plots; test folds of {', '.join(str(len(te)) for _, te in folds)} "
            "pixels")
        classes = np.unique(y)
        n_lidar = X.shape[1] - data.scenes[0].hsi.shape[2]
        n_hsi = X.shape[1] - n_lidar
        for seed in range(self.seeds):
            todo = [m for m in self._methods(n_lidar) if not self._done(m, seed)]
            choices = {}
            if any(m.chooses_input for m in todo):
                for k, (tr, _) in enumerate(folds):  # on each fit's training pixels
                    a, b = inner_split(y[tr], seed, groups=data.plot_group[tr])
                    choices[k] = self._choose(seed, X, y, (tr[a], tr[b]), n_lidar,
                                              data.class_names)
            for method in todo:
                proba = np.zeros((len(y), len(classes)))
                fit_s = predict_s = 0.0
                params = []
                for k, (tr, te) in enumerate(folds):
                    est, s, p = self._fit_fold(method, seed, data, tr, te, classes, n_hsi, n_lidar,
                                               choices.get(k))
                    fit_s += s
                    predict_s += p[1]
                    proba[te] = p[0]
                    if search_of(est) is not None:
                        params.append({k2: _jsonable(v) for k2, v in est.best_params_.items()})
                    if self.maps and seed == 0 and k == 0 and method.name.startswith(
                            ("MMLGNet (symmetric", "RandomForest (tuned), centre")):
                        self._write_plot_maps(method, est, data, te, n_hsi)
                pred = classes[proba.argmax(1)]
                row = self._row(method, seed, evaluate(y, pred), fit_s, predict_s, len(y), None)
                crowns = crown_scores(y, proba, data.crown_id, classes=classes)
                row.update(crown_accuracy=crowns["accuracy"], crown_macro_f1=crowns["macro_f1"],
                           n_crowns=int(crowns["n_crowns"]))
                if params:
                    row["best_params"] = params  # one entry per fold
                if method.chooses_input:
                    row["network_input"] = {str(k): c for k, c in choices.items()}
                self._record(row)
        self.save()
        return self.results

    def _fit_fold(self, method, seed, data, tr, te, classes, n_hsi, n_lidar, choice):
        """Fit one row on fold ``tr`` and return (estimator, fit s, (proba of te, predict s))."""
        inner = baselines.inner_cv(grouped=True, random_state=seed)
        if method.features == "crown_mean":
            Xc, inv = crown_means(data.X, tr, data.crown_id)
            yc = np.zeros(len(Xc), data.y.dtype)
            yc[inv] = data.y[tr]  # every pixel of a crown carries the crown's label
            gc = np.zeros(len(Xc), data.plot_group.dtype)
            gc[inv] = data.plot_group[tr]
            est, fit_s = self._fit(method, seed, n_lidar, Xc, yc, inner, groups=gc)
            t0 = time.perf_counter()
            Xt, inv_te = crown_means(data.X, te, data.crown_id)
            proba = proba_columns(est, Xt, classes)[inv_te]  # each pixel gets its crown's
            return est, fit_s, (proba, time.perf_counter() - t0)
        Xtr = select_bands(data.X[tr], method.bands, n_hsi)
        est, fit_s = self._fit(method, seed, n_lidar, Xtr, data.y[tr], inner,
                               groups=data.plot_group[tr], class_names=data.class_names,
                               network_input=choice)
        del Xtr
        t0 = time.perf_counter()
        proba = np.concatenate([
            proba_columns(est, select_bands(data.X[te[i:i + 4096]], method.bands, n_hsi), classes)
            for i in range(0, len(te), 4096)])
        return est, fit_s, (proba, time.perf_counter() - t0)

    def _write_plot_maps(self, method, est, data, test_idx, n_hsi, n_plots=4):
        """Prediction vs crowns on the held-out plots of fold 0 with most labelled pixels."""
        plots, counts = np.unique(data.plot_id[test_idx], return_counts=True)
        chosen = plots[np.argsort(-counts)[:n_plots]]
        gap = lambda a: np.zeros((a.shape[0], 1) + a.shape[2:], a.dtype)  # noqa: E731
        preds, labels = [], []
        for p in sorted(chosen):
            scene = data.scenes[p]
            preds += [predict_scene(est, scene.hsi, scene.lidar, self.patch_size,
                                    bands=band_slice(method.bands, n_hsi)),
                      gap(scene.labels)]
            labels += [scene.labels, gap(scene.labels)]
        names = ", ".join(data.scenes[p].name for p in sorted(chosen))
        self._write_map(method, np.concatenate(preds[:-1], axis=1),
                        np.concatenate(labels[:-1], axis=1), data.class_names,
                        title=f"{method.name}, held-out plots {names} (fold 0, seed 0)")

    # ------------------------------------------------------------------ output
    def save(self):
        """Write ``results.json``, ``results.csv`` and ``results_<dataset>.md``."""
        meta = {"scene": self.scene_info, "epochs": self.epochs, "seeds": self.seeds,
                "quick": self.quick, "patch_size": self.patch_size,
                "patch_rule": self.patch_rule, "text": self.text_kwargs,
                "searches": self.searches, "resumed": self.resumed,
                "network_input_candidates": [dict(c) for c in INPUT_CANDIDATES]}
        write_text(self.out / "results.json", json.dumps({"meta": meta, "runs": self.results},
                                                          indent=1))
        write_text(self.out / "results.csv", results_csv(self.results))
        write_text(self.out / f"results_{self.dataset}.md", markdown_table(self.results, meta))


def _input_params(choice):
    """The ``network_input`` of a row's ``build`` from a choice record."""
    if choice is None:
        return None
    return {"spectral_norm": choice.get("spectral_norm"), "pca": choice.get("pca"),
            "test_time_augment": bool(choice.get("test_time_augment"))}


def _jsonable(v):
    return v.item() if isinstance(v, np.generic) else v


def _subsample_mask(mask, n, seed):
    idx = np.flatnonzero(mask)
    if len(idx) <= n:
        return mask
    keep = np.random.RandomState(seed).choice(idx, n, replace=False)
    out = np.zeros_like(mask)
    out.ravel()[keep] = True
    return out
