"""Fit a classifier on a scene's rasters: :func:`fit_scene` and the :class:`SceneModel` it returns.

``mmlgnet fit`` is this function on the command line: it reads a co-registered HSI
raster, LiDAR raster(s) and labels (a label raster or polygons), fits
``Pipeline([SpectralNormalizer,] BandStandardScaler, estimator)`` on the patches of
the labelled pixels, and keeps what the model was trained on beside it, in
:attr:`SceneModel.info`. :func:`sklearn_mmlgnet.io.predict_raster` reads that
information back (patch size, band counts, nodata fill values, class names, band
statistics); :func:`sklearn_mmlgnet.persistence.save_model` stores both.
"""

from __future__ import annotations

import datetime
import numbers
import warnings
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import make_pipeline

from . import MMLGNetClassifier, __version__
from .io import read_scene
from .patches import extract_patches
from .preprocessing import BandStandardScaler, SpectralNormalizer

__all__ = ["SceneModel", "fit_scene"]

SPECTRAL_NORMS = (None, "l2", "l1", "max")


class SceneModel:
    """A classifier fitted on a scene, with what it was trained on.

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
            Per band (HSI, then LiDAR) mean over the scene's valid pixels: stands
            in for nodata inside a patch.
        ``band_std`` : list of float
            Per band standard deviation over the valid pixels: with
            ``fill_values``, the training range a scene to classify is checked
            against.
        ``wavelengths`` : list of float or None
            Of the HSI bands, from the raster's metadata.
        ``trained_on`` : dict
            ``hsi``, ``lidar``, ``labels`` (absolute paths), ``class_field``,
            ``crs``, ``transform``, ``shape``, ``n_labelled`` and
            ``pixels_per_class``.
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


def _band_statistics(arrays, valid, rows=256):
    """Per band mean and std over the valid pixels, computed in chunks of rows (float64)."""
    n_bands = sum(a.shape[2] for a in arrays)
    total, sq, n = np.zeros(n_bands), np.zeros(n_bands), 0
    for r in range(0, valid.shape[0], rows):
        keep = valid[r:r + rows]
        block = np.concatenate([a[r:r + rows][keep] for a in arrays], axis=1).astype(np.float64)
        total += block.sum(axis=0)
        sq += np.square(block).sum(axis=0)
        n += len(block)
    if n == 0:
        return np.zeros(n_bands, np.float32), np.ones(n_bands, np.float32)
    mean = total / n
    std = np.sqrt(np.maximum(sq / n - mean**2, 0))
    return mean.astype(np.float32), std.astype(np.float32)


def _check_args(labels, patch_size, spectral_norm):
    if labels is None:
        raise ValueError("labels are required: a label raster on the scene's grid or polygons "
                         "(.shp / .geojson) with a class attribute.")
    if not isinstance(patch_size, numbers.Integral) or isinstance(patch_size, bool) \
            or patch_size < 1 or patch_size % 2 == 0:
        raise ValueError(f"patch_size must be an odd int >= 1 (the patch has a centre pixel); "
                         f"got {patch_size!r}.")
    if spectral_norm not in SPECTRAL_NORMS:
        raise ValueError(f"spectral_norm must be one of {SPECTRAL_NORMS}; got {spectral_norm!r}.")


def fit_scene(hsi, lidar, labels, *, estimator=None, class_field=None, patch_size=11,
              spectral_norm=None, log=print):
    """Fit ``Pipeline([SpectralNormalizer,] BandStandardScaler, estimator)`` on a scene's
    labelled pixels.

    Parameters
    ----------
    hsi, lidar, labels, class_field
        As in :func:`sklearn_mmlgnet.io.read_scene`; ``labels`` is required.
        Pixels that are nodata in any raster are not trained on; inside a
        training patch their values are the band's mean over the valid pixels.
    estimator : classifier, optional
        Cloned, never changed. Default: ``MMLGNetClassifier()``. When it has these
        parameters, the clone's ``n_lidar_bands`` is set from the LiDAR rasters and,
        unless given, its ``class_names`` from the label file.
    patch_size : int, default=11
        Odd side of the patches.
    spectral_norm : {"l2", "l1", "max"}, optional
        Scale each pixel's HSI spectrum to unit norm first
        (:class:`~sklearn_mmlgnet.preprocessing.SpectralNormalizer`); none by default.
    log : callable, default=print
        Receives a line saying what is fitted.

    Returns
    -------
    model : SceneModel
        ``model.estimator`` is the fitted Pipeline, ``model.info`` what it was
        trained on (see :class:`SceneModel`).

    Raises
    ------
    ValueError
        Bad arguments (checked before the rasters are read), unreadable or
        mismatched rasters, or fewer than two classes among the labelled pixels.
    """
    _check_args(labels, patch_size, spectral_norm)
    clf = MMLGNetClassifier() if estimator is None else clone(estimator)
    scene = read_scene(hsi, lidar, labels, class_field=class_field)
    H, W = scene.hsi.shape[:2]
    if patch_size > 2 * min(H, W) - 1:
        raise ValueError(f"patch_size={patch_size} is too large for the {H} x {W} px scene "
                         f"{hsi}; at most {2 * min(H, W) - 1}.")
    labelled = (scene.labels > 0) & scene.valid_mask
    codes, counts = np.unique(scene.labels[labelled], return_counts=True)
    if len(codes) < 2:
        raise ValueError(
            f"labels {labels} give {int(labelled.sum())} labelled pixel(s) of {len(codes)} "
            f"class(es) on the scene {hsi} (0 = unlabelled; nodata pixels are skipped); at least "
            "2 classes are needed. Check that the labels cover the scene.")
    names = {int(c): scene.class_names.get(int(c)) for c in codes}
    unnamed = [c for c, n in names.items() if not n]
    if unnamed:
        warnings.warn(
            f"labels {labels} name no class for code(s) {unnamed}: the codes themselves are used "
            "as class names, which carry no meaning for the text encoder. Give the names in the "
            "label raster's CLASS_NAMES tag (JSON {code: name}), its GDAL category names, or a "
            "vector attribute holding the names.", UserWarning, stacklevel=2)
        names.update({c: str(c) for c in unnamed})
    # Nodata inside a training patch is filled with the band's mean over the scene's
    # valid pixels: after the scaler that is a neutral 0. predict_raster does the same.
    n_hsi, n_lidar = scene.hsi.shape[2], scene.lidar.shape[2]
    fill, std = _band_statistics([scene.hsi, scene.lidar], scene.valid_mask)
    for arr, f in ((scene.hsi, fill[:n_hsi]), (scene.lidar, fill[n_hsi:])):
        bad = np.isnan(arr)
        if bad.any():
            arr[bad] = np.broadcast_to(f, arr.shape)[bad]
    rows, cols = np.nonzero(labelled)
    X = extract_patches(scene.hsi, scene.lidar, rows, cols, patch_size)
    y = scene.labels[rows, cols]
    params = clf.get_params(deep=False)
    if "n_lidar_bands" in params:
        clf.set_params(n_lidar_bands=n_lidar)
    if "class_names" in params and params["class_names"] is None:
        clf.set_params(class_names=names)
    first = [SpectralNormalizer(spectral_norm, n_lidar_bands=n_lidar)] if spectral_norm else []
    pipeline = make_pipeline(*first, BandStandardScaler(), clf)
    log(f"Fitting on {len(y)} labelled pixels ({patch_size} x {patch_size} patches, {n_hsi} HSI "
        f"+ {n_lidar} LiDAR bands) of {len(codes)} classes: "
        + ", ".join(f"{names[int(c)]} ({n})" for c, n in zip(codes, counts)))
    pipeline.fit(X, y)
    crs = scene.crs
    if crs is not None:
        crs = f"EPSG:{crs.to_epsg()}" if crs.to_epsg() else crs.to_wkt()
    info = dict(
        n_hsi_bands=n_hsi, n_lidar_bands=n_lidar, patch_size=int(patch_size),
        class_names={int(c): names[int(c)] for c in codes},
        fill_values=fill.tolist(), band_std=std.tolist(), wavelengths=scene.wavelengths,
        trained_on=dict(
            hsi=str(Path(scene.files["hsi"]).resolve()),
            lidar=[str(Path(p).resolve()) for p in scene.files["lidar"]],
            labels=str(Path(labels).resolve()), class_field=class_field,
            crs=crs, transform=tuple(scene.transform)[:6], shape=(H, W), n_labelled=int(len(y)),
            pixels_per_class={int(c): int(n) for c, n in zip(codes, counts)}),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        sklearn_mmlgnet_version=__version__)
    return SceneModel(pipeline, info)
