"""Fit a classifier on the rasters of one or more scenes: :func:`fit_scene` and the
:class:`SceneModel` it returns.

``mmlgnet fit`` is this function on the command line: it reads co-registered HSI
rasters, LiDAR raster(s) and labels (label rasters or polygons) of one scene or of
several, fits ``Pipeline([SpectralNormalizer,] BandStandardScaler, [SpectralPCA,]
estimator)`` once on the patches of the labelled pixels of every scene, and keeps
what the model was trained on beside it, in :attr:`SceneModel.info`.
:func:`sklearn_mmlgnet.io.predict_raster` reads that information back (patch size,
band counts, nodata fill values, class names, band statistics);
:func:`sklearn_mmlgnet.persistence.save_model` stores both.
"""

from __future__ import annotations

import contextlib
import datetime
import numbers
import os
import warnings
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import make_pipeline

from . import MMLGNetClassifier, __version__
from ._io import gdal_env, open_raster
from ._raster import check_same_grid
from ._warp import check_resample_to, check_resampling
from .io import VECTOR_SUFFIXES, read_scene
from .patches import extract_patches
from .preprocessing import BandStandardScaler, SpectralNormalizer, SpectralPCA

__all__ = ["SceneModel", "fit_scene"]

SPECTRAL_NORMS = (None, "l2", "l1", "max")
_PATH = (str, os.PathLike)


class SceneModel:
    """A classifier fitted on one or more scenes, with what it was trained on.

    Parameters
    ----------
    estimator : fitted classifier
        Takes patch arrays of shape (n, B + L, P, P) (HSI bands, then LiDAR bands),
        e.g. the ``Pipeline`` :func:`fit_scene` fits.
    info : dict, optional
        What the estimator was trained on. :func:`fit_scene` writes these keys;
        :func:`~sklearn_mmlgnet.io.predict_raster` reads those it finds:

        ``n_hsi_bands``, ``n_lidar_bands`` : int
            Bands of the training rasters; the rasters to classify must match.
        ``patch_size`` : int
            Side of the patches the model takes.
        ``class_names`` : dict
            ``{code: name}`` of the classes (the codes are the labels).
        ``fill_values`` : list of float
            Per band (HSI, then LiDAR) mean over the valid pixels of every training
            scene: stands in for nodata inside a patch.
        ``band_std`` : list of float
            Per band standard deviation over the same pixels: with ``fill_values``,
            the training range a scene to classify is checked against.
        ``wavelengths`` : list of float or None
            Of the HSI bands, from the (first) raster's metadata.
        ``trained_on`` : list of dict
            One per scene, in the order given: ``hsi``, ``lidar``, ``labels``
            (absolute paths), ``class_field``, ``crs``, ``transform``, ``shape``,
            ``n_labelled``, ``pixels_per_class`` and ``resampled`` (the rasters
            resampled onto the grid, with ``resample_to``).
        ``n_labelled``, ``pixels_per_class`` : int, dict
            Labelled pixels trained on, in all and ``{code: count}``, over every scene.
        ``resampling`` : dict or None
            ``{"resample_to", "method", "labels"}`` when the rasters were read onto
            one grid (``resample_to``); :func:`~sklearn_mmlgnet.io.predict_raster` then
            does the same.
        ``date`` : str
            When it was fitted (ISO 8601, UTC).
        ``sklearn_mmlgnet_version`` : str
            The package version that fitted it.

    Attributes
    ----------
    classes_ : ndarray
        The estimator's classes.
    """

    def __init__(self, estimator, info=None):
        self.estimator = estimator
        self.info = {} if info is None else dict(info)

    @property
    def classes_(self):
        return self.estimator.classes_

    def __repr__(self):
        names = self.info.get("class_names")
        what = f", classes={names}" if names else ""
        return f"SceneModel({type(self.estimator).__name__}{what})"


# ------------------------------------------------------------------ arguments
def _scene_inputs(hsi, lidar, labels):
    """``[(hsi, [lidar, ...], labels)]``, one per scene, from paths or lists of them."""
    if isinstance(hsi, _PATH):
        if labels is not None and not isinstance(labels, _PATH):
            raise TypeError(f"labels must be a path with one hsi path; got {labels!r:.80}.")
        lidar = [] if lidar is None else [lidar] if isinstance(lidar, _PATH) else list(lidar)
        return [(hsi, lidar, labels)]
    if isinstance(hsi, (list, tuple)) and hsi and all(isinstance(h, _PATH) for h in hsi):
        n = len(hsi)
    else:
        raise TypeError(f"hsi must be a path, or a non-empty list of paths (one per scene); got "
                        f"{hsi!r:.80}.")
    if lidar is None:
        lidar = [None] * n
    if not isinstance(lidar, (list, tuple)) or len(lidar) != n:
        raise ValueError(
            f"lidar must be None or a list with one entry per scene (a path, a list of paths or "
            f"None), as hsi; got {lidar!r:.80} for {n} scene(s).")
    if isinstance(labels, _PATH):  # one label file for every scene: polygons covering them all
        labels = [labels] * n
    if not isinstance(labels, (list, tuple)) or len(labels) != n:
        raise ValueError(f"labels must be a path (for every scene) or a list of {n} paths, one "
                         f"per scene; got {labels!r:.80}.")
    out = []
    for k, (h, l, y) in enumerate(zip(hsi, lidar, labels)):
        l = [] if l is None else [l] if isinstance(l, _PATH) else list(l)
        if not all(isinstance(p, _PATH) for p in l) or (y is not None and not isinstance(y, _PATH)):
            raise TypeError(f"scene {k + 1} of {n} ({h}): lidar must be a path, a list of paths "
                            f"or None, and labels a path; got {l!r:.60} and {y!r:.60}.")
        out.append((h, l, y))
    return out


def _check_args(scenes, patch_size, spectral_norm, pca):
    if any(y is None for _, _, y in scenes):
        raise ValueError("labels are required: a label raster on the scene's grid or polygons "
                         "(.shp / .geojson) with a class attribute.")
    if not isinstance(patch_size, numbers.Integral) or isinstance(patch_size, bool) \
            or patch_size < 1 or patch_size % 2 == 0:
        raise ValueError(f"patch_size must be an odd int >= 1 (the patch has a centre pixel); "
                         f"got {patch_size!r}.")
    if spectral_norm not in SPECTRAL_NORMS:
        raise ValueError(f"spectral_norm must be one of {SPECTRAL_NORMS}; got {spectral_norm!r}.")
    if pca is not None and (not isinstance(pca, numbers.Integral) or isinstance(pca, bool)
                            or pca < 1):
        raise ValueError(f"pca must be None or an int >= 1 (HSI components kept); got {pca!r}.")


@contextlib.contextmanager
def _about_scene(k, n, hsi):
    """Errors raised inside say which scene they are about (when there are several)."""
    if n == 1:
        yield
        return
    try:
        yield
    except Exception as exc:
        try:
            named = type(exc)(f"scene {k + 1} of {n} ({hsi}): {exc}")
        except Exception:  # an exception type that takes other arguments: as it is
            raise exc from None
        raise named from exc


def _check_headers(scenes, resample_to):
    """Every scene's band counts (those of the first) and grids, from the headers only.

    Returns
    -------
    n_hsi, n_lidar : int
    """
    counts = []
    with gdal_env():
        for k, (hsi, lidar, labels) in enumerate(scenes):
            with _about_scene(k, len(scenes), hsi), contextlib.ExitStack() as stack:
                ref = stack.enter_context(open_raster(hsi, "hsi"))
                n_lidar = 0
                for j, p in enumerate(lidar):
                    role = "lidar" if len(lidar) == 1 else f"lidar[{j}]"
                    src = stack.enter_context(open_raster(p, role))
                    n_lidar += src.count
                    if resample_to is None:
                        check_same_grid(ref, "hsi", src, role)
                if resample_to is None and Path(labels).suffix.lower() not in VECTOR_SUFFIXES:
                    check_same_grid(ref, "hsi", stack.enter_context(open_raster(labels, "labels")),
                                    "labels")
                counts.append((ref.count, n_lidar))
            if counts[-1] != counts[0]:
                raise ValueError(
                    f"scene {k + 1} of {len(scenes)} ({hsi}) has {counts[-1][0]} HSI + "
                    f"{counts[-1][1]} LiDAR band(s) but scene 1 ({scenes[0][0]}) has "
                    f"{counts[0][0]} + {counts[0][1]}: every scene needs the same bands, in the "
                    "same order.")
    return counts[0]


# ------------------------------------------------------------------ statistics
def _band_moments(arrays, valid, rows=256):
    """Per band sum and sum of squares over the valid pixels, and their number (float64),
    in chunks of rows."""
    n_bands = sum(a.shape[2] for a in arrays)
    total, sq, n = np.zeros(n_bands), np.zeros(n_bands), 0
    for r in range(0, valid.shape[0], rows):
        keep = valid[r:r + rows]
        block = np.concatenate([a[r:r + rows][keep] for a in arrays], axis=1).astype(np.float64)
        total += block.sum(axis=0)
        sq += np.square(block).sum(axis=0)
        n += len(block)
    return total, sq, n


def _mean_std(total, sq, n):
    if n == 0:
        return np.zeros(len(total), np.float32), np.ones(len(total), np.float32)
    mean = total / n
    std = np.sqrt(np.maximum(sq / n - mean**2, 0))
    return mean.astype(np.float32), std.astype(np.float32)


def _merge_classes(found):
    """One set of class codes over the scenes' labels.

    Parameters
    ----------
    found : list of dict
        Per scene, ``{code: name or None}`` of the codes among its labelled pixels.

    Returns
    -------
    recode : list of dict
        Per scene, ``{its code: the model's code}``.
    names : dict
        ``{the model's code: name or None}``.

    Notes
    -----
    A name takes the code it has in the first scene that names it; there, a code
    another name took first (two label files numbering their classes differently)
    is replaced by the smallest code no scene uses. An unnamed code stays as it is
    (and joins a class named with that code elsewhere).
    """
    every = set().union(*found)
    by_name, named = {}, {}  # name -> code, code -> name
    for codes in found:
        for c, n in sorted(codes.items()):
            if n and n not in by_name:
                if c in named:  # the code is another class's: a code no scene uses
                    c = min(set(range(1, len(every) + len(named) + 2)) - every - set(named))
                by_name[n], named[c] = c, n
    recode = [{c: by_name[n] if n else c for c, n in codes.items()} for codes in found]
    names = {c: named.get(c) for m in recode for c in m.values()}
    return recode, dict(sorted(names.items()))


def _crs_text(crs):
    if crs is None:
        return None
    return f"EPSG:{crs.to_epsg()}" if crs.to_epsg() else crs.to_wkt()


def _fill_nan(X, fill):
    """Nodata (NaN) in the patches becomes the band's mean over the valid training pixels:
    after the scaler a neutral 0. predict_raster does the same."""
    for b in range(X.shape[1]):
        band = X[:, b]
        bad = np.isnan(band)
        if bad.any():
            band[bad] = fill[b]


# ------------------------------------------------------------------ fitting
def fit_scene(hsi, lidar, labels, *, estimator=None, class_field=None, patch_size=11,
              spectral_norm=None, pca=None, resample_to=None, resampling="bilinear",
              log=print):
    """Fit ``Pipeline([SpectralNormalizer,] BandStandardScaler, [SpectralPCA,] estimator)``
    on the labelled pixels of one scene or of several.

    Parameters
    ----------
    hsi : str, Path or list of them
        The HSI raster of the scene, or a list with one per scene. Every scene
        needs the same bands (HSI and LiDAR counts, in the same order); scenes may
        differ in grid, CRS and size: each is read on its own grid and cut into
        patches inside it (a patch never reads another scene).
    lidar : str, Path, list or None
        With one ``hsi`` path: the scene's LiDAR raster(s), as in
        :func:`sklearn_mmlgnet.io.read_scene`. With a list of ``hsi``: a list with
        one entry per scene (a path, a list of paths, or None), or None (no LiDAR).
    labels : str, Path or list of them
        A label raster on the scene's grid or polygons (see
        :func:`~sklearn_mmlgnet.io.read_scene`); with a list of ``hsi``, a list with
        one per scene, or one path for every scene (polygons covering them all).
        Classes are matched between scenes by name where the files name them (a
        code another file uses for another name is renumbered), else by code.
    class_field : str, optional
        Attribute of vector labels holding the class, for every scene.
    estimator : classifier, optional
        Cloned, never changed. Default: ``MMLGNetClassifier()``. When it has these
        parameters, the clone's ``n_lidar_bands`` is set from the LiDAR rasters and,
        unless given, its ``class_names`` from the label files.
    patch_size : int, default=11
        Odd side of the patches.
    spectral_norm : {"l2", "l1", "max"}, optional
        Scale each pixel's HSI spectrum to unit norm first
        (:class:`~sklearn_mmlgnet.preprocessing.SpectralNormalizer`); none by default.
    pca : int, optional
        Reduce the HSI bands to this many principal components after the scaler
        (:class:`~sklearn_mmlgnet.preprocessing.SpectralPCA`, fitted on the training
        pixels; LiDAR bands pass through): a network on hundreds of bands trains
        several times faster. Default: every band.
    resample_to : {None, "hsi", "lidar"} or float, default=None
        Read each scene's rasters onto one grid (:func:`~sklearn_mmlgnet.io.read_scene`);
        the model records it and :func:`~sklearn_mmlgnet.io.predict_raster` does
        the same. None: each scene's rasters must share its HSI's grid.
    resampling : {"bilinear", "cubic", "average", "nearest"}, default="bilinear"
        The kernel with ``resample_to``.
    log : callable, default=print
        Receives a line saying what is fitted (and any class renumbering).

    Returns
    -------
    model : SceneModel
        ``model.estimator`` is the fitted Pipeline, ``model.info`` what it was
        trained on, every scene listed in ``info["trained_on"]`` (see :class:`SceneModel`).

    Raises
    ------
    ValueError
        Bad arguments (checked before any raster is read), scenes with other band
        counts than the first or rasters off their HSI's grid (checked on the
        headers, before any pixel is read), unreadable rasters, or fewer than two
        classes among the labelled pixels. With several scenes the message starts
        with ``scene k of n (its HSI file)``.
    FileNotFoundError, PermissionError
        A file is missing or cannot be read.

    Warns
    -----
    UserWarning
        Class codes without a name; a scene without labelled pixels (it adds
        nothing); HSI wavelengths that differ between scenes.

    Examples
    --------
    >>> model = fit_scene(["plot_1.tif", "plot_2.tif"], [["chm_1.tif"], ["chm_2.tif"]],
    ...                   "crowns.geojson", class_field="taxon",
    ...                   patch_size=7)  # doctest: +SKIP
    >>> [s["hsi"] for s in model.info["trained_on"]]  # doctest: +SKIP
    ['/data/plot_1.tif', '/data/plot_2.tif']
    """
    scenes = _scene_inputs(hsi, lidar, labels)
    _check_args(scenes, patch_size, spectral_norm, pca)
    resample_to, resampling = check_resample_to(resample_to), check_resampling(resampling)
    clf = MMLGNetClassifier() if estimator is None else clone(estimator)
    n = len(scenes)
    n_hsi, n_lidar = _check_headers(scenes, resample_to)
    if pca is not None and pca > n_hsi:
        raise ValueError(f"pca={pca} is more than the {n_hsi} HSI bands of {scenes[0][0]}.")
    moments = [np.zeros(n_hsi + n_lidar), np.zeros(n_hsi + n_lidar), 0]
    Xs, ys, found, records, wavelengths = [], [], [], [], None
    for k, (h, l, lab) in enumerate(scenes):
        with _about_scene(k, n, h):
            scene = read_scene(h, l, lab, class_field=class_field, resample_to=resample_to,
                               resampling=resampling)
            H, W = scene.hsi.shape[:2]
            if patch_size > 2 * min(H, W) - 1:
                raise ValueError(f"patch_size={patch_size} is too large for the {H} x {W} px "
                                 f"scene {h}; at most {2 * min(H, W) - 1}.")
        if k == 0:
            wavelengths = scene.wavelengths
        elif scene.wavelengths and wavelengths and not np.allclose(
                scene.wavelengths, wavelengths, rtol=0, atol=1.0):
            warnings.warn(f"scene {k + 1} of {n} ({h}): its HSI band wavelengths differ from "
                          f"scene 1's ({scenes[0][0]}): are the scenes from the same sensor?",
                          UserWarning, stacklevel=2)
        total, sq, m = _band_moments([scene.hsi, scene.lidar], scene.valid_mask)
        moments = [moments[0] + total, moments[1] + sq, moments[2] + m]
        labelled = (scene.labels > 0) & scene.valid_mask
        rows, cols = np.nonzero(labelled)
        if len(rows) == 0 and n > 1:
            warnings.warn(f"scene {k + 1} of {n} ({h}): no labelled pixel (0 = unlabelled; nodata "
                          f"is skipped) in {lab}; it adds nothing to the fit.", UserWarning,
                          stacklevel=2)
        # nodata stays NaN in the patches until the statistics of every scene are known
        Xs.append(extract_patches(scene.hsi, scene.lidar, rows, cols, patch_size))
        ys.append(scene.labels[rows, cols])
        found.append({int(c): scene.class_names.get(int(c)) or None for c in np.unique(ys[-1])})
        records.append(dict(
            hsi=str(Path(scene.files["hsi"]).resolve()),
            lidar=[str(Path(p).resolve()) for p in scene.files["lidar"]],
            labels=str(Path(lab).resolve()), class_field=class_field, crs=_crs_text(scene.crs),
            transform=tuple(scene.transform)[:6], shape=(H, W), n_labelled=int(len(rows)),
            resampled=list((scene.resampling or {}).get("warped", []))))
        del scene
    recode, names = _merge_classes(found)
    for k, m in enumerate(recode):
        moved = {c: g for c, g in m.items() if c != g}
        if moved:
            log(f"scene {k + 1} of {n} ({scenes[k][0]}): classes matched by name, codes "
                + ", ".join(f"{c} -> {g} ({names[g]})" for c, g in moved.items()))
            lut = np.arange(max(m) + 1)
            lut[list(m)] = list(m.values())
            ys[k] = lut[ys[k]]
        codes_k, counts_k = np.unique(ys[k], return_counts=True)
        records[k]["pixels_per_class"] = {int(c): int(v) for c, v in zip(codes_k, counts_k)}
    y = np.concatenate(ys)
    codes, counts = np.unique(y, return_counts=True)
    if len(codes) < 2:
        where = f"labels {scenes[0][2]}" if n == 1 else f"the labels of the {n} scenes"
        raise ValueError(
            f"{where} give {len(y)} labelled pixel(s) of {len(codes)} class(es) on "
            f"{'the scene ' + str(scenes[0][0]) if n == 1 else 'their scenes'} (0 = unlabelled; "
            "nodata pixels are skipped); at least 2 classes are needed. Check that the labels "
            "cover the scene.")
    unnamed = [c for c in codes.tolist() if not names.get(c)]
    if unnamed:
        files = sorted({str(s[2]) for s in scenes})
        files = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        warnings.warn(
            f"labels {files} name no class for code(s) "
            f"{unnamed}: the codes themselves are used as class names, which carry no meaning "
            "for the text encoder. Give the names in the label raster's CLASS_NAMES tag (JSON "
            "{code: name}), its GDAL category names, or a vector attribute holding the names.",
            UserWarning, stacklevel=2)
    names = {int(c): names.get(int(c)) or str(int(c)) for c in codes}
    fill, std = _mean_std(*moments)
    X = Xs[0] if len(Xs) == 1 else np.concatenate(Xs)
    del Xs
    _fill_nan(X, fill)
    params = clf.get_params(deep=False)
    if "n_lidar_bands" in params:
        clf.set_params(n_lidar_bands=n_lidar)
    if "class_names" in params and params["class_names"] is None:
        clf.set_params(class_names=names)
    steps = [SpectralNormalizer(spectral_norm, n_lidar_bands=n_lidar)] if spectral_norm else []
    steps.append(BandStandardScaler())
    if pca:
        steps.append(SpectralPCA(n_components=pca, n_lidar_bands=n_lidar, random_state=0))
    pipeline = make_pipeline(*steps, clf)
    log(f"Fitting on {len(y)} labelled pixels" + (f" of {n} scenes" if n > 1 else "")
        + f" ({patch_size} x {patch_size} patches, {n_hsi} HSI + {n_lidar} LiDAR bands"
        + (f", HSI reduced to {pca} components" if pca else "") + f") of {len(codes)} classes: "
        + ", ".join(f"{names[int(c)]} ({v})" for c, v in zip(codes, counts)))
    pipeline.fit(X, y)
    info = dict(
        n_hsi_bands=n_hsi, n_lidar_bands=n_lidar, patch_size=int(patch_size), class_names=names,
        fill_values=fill.tolist(), band_std=std.tolist(), wavelengths=wavelengths,
        trained_on=records, n_labelled=int(len(y)),
        pixels_per_class={int(c): int(v) for c, v in zip(codes, counts)},
        resampling=None if resample_to is None else {
            "resample_to": resample_to, "method": resampling, "labels": "nearest"},
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        sklearn_mmlgnet_version=__version__)
    return SceneModel(pipeline, info)
