"""``mmlgnet fit`` and ``mmlgnet predict``: a user's own rasters to a model, and to a map.

``fit`` reads a co-registered HSI raster, LiDAR raster(s) and labels (a label
raster or polygons), fits ``Pipeline([SpectralNormalizer,] BandStandardScaler,
MMLGNetClassifier)`` on the patches of the labelled pixels and saves it with joblib,
recording what it was trained on in the pipeline's ``scene_info_``. ``predict``
classifies a whole scene tile by tile (on one machine or a dask cluster) into a
GeoTIFF map.
Errors are raised as ``FileNotFoundError`` / ``ValueError`` with a clear message;
:func:`sklearn_mmlgnet.cli.main` turns them into one line and an exit status.
"""

from __future__ import annotations

import contextlib
import datetime
import warnings
from pathlib import Path

import numpy as np


def _log(msg):
    print(msg, flush=True)


def fit_scene(hsi, lidar, labels, *, class_field=None, patch_size=11, estimator=None,
              spectral_norm=None, log=_log):
    """Fit ``Pipeline([SpectralNormalizer,] BandStandardScaler, estimator)`` on the labelled
    pixels of a scene's rasters.

    Parameters
    ----------
    hsi, lidar, labels, class_field
        As in :func:`sklearn_mmlgnet.io.read_scene`; ``labels`` is required.
    patch_size : int, default=11
    estimator : MMLGNetClassifier, optional
        Its ``n_lidar_bands`` and ``class_names`` are set from the rasters.
    spectral_norm : {"l2", "l1", "max"}, optional
        Scale each pixel's HSI spectrum to unit norm first
        (:class:`~sklearn_mmlgnet.preprocessing.SpectralNormalizer`); none by default.

    Returns
    -------
    model : Pipeline
        Fitted, with ``scene_info_``: band counts, patch size, class names, the
        per-band fill values standing in for nodata, and what it was trained on
        (files, CRS, transform, pixel counts, date).
    """
    from sklearn.pipeline import make_pipeline

    from . import BandStandardScaler, MMLGNetClassifier, SpectralNormalizer, __version__
    from .io import read_scene
    from .patches import _check_patch_size, extract_patches

    scene = read_scene(hsi, lidar, labels, class_field=class_field)
    P = _check_patch_size(patch_size, scene.hsi.shape[:2])
    labelled = (scene.labels > 0) & scene.valid_mask
    codes, counts = np.unique(scene.labels[labelled], return_counts=True)
    if len(codes) < 2:
        raise ValueError(
            f"labels {labels} give {int(labelled.sum())} labelled pixel(s) of {len(codes)} class(es) "
            f"on the scene {hsi} (0 = unlabelled; nodata pixels are skipped); at least 2 classes "
            "are needed. Check that the labels cover the scene.")
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
    # valid pixels: after the scaler that is a neutral 0 (after a SpectralNormalizer, the
    # scene's mean spectrum, near 0). predict uses the same values.
    cube = np.concatenate([scene.hsi, scene.lidar], axis=-1)
    fill = np.zeros(cube.shape[2], np.float32)
    if scene.valid_mask.any():
        fill = cube[scene.valid_mask].mean(axis=0, dtype=np.float64).astype(np.float32)
    del cube
    n_hsi, n_lidar = scene.hsi.shape[2], scene.lidar.shape[2]
    for arr, f in ((scene.hsi, fill[:n_hsi]), (scene.lidar, fill[n_hsi:])):
        bad = np.isnan(arr)
        if bad.any():
            arr[bad] = np.broadcast_to(f, arr.shape)[bad]
    rows, cols = np.nonzero(labelled)
    X = extract_patches(scene.hsi, scene.lidar, rows, cols, P)
    y = scene.labels[rows, cols]
    clf = MMLGNetClassifier() if estimator is None else estimator
    clf.set_params(n_lidar_bands=n_lidar, class_names=names)
    first = [SpectralNormalizer(spectral_norm, n_lidar_bands=n_lidar)] if spectral_norm else []
    model = make_pipeline(*first, BandStandardScaler(), clf)
    log(f"Fitting on {len(y)} labelled pixels ({P} x {P} patches, {n_hsi} HSI + {n_lidar} LiDAR "
        f"bands) of {len(codes)} classes: "
        + ", ".join(f"{names[int(c)]} ({n})" for c, n in zip(codes, counts)))
    model.fit(X, y)
    crs = scene.crs
    model.scene_info_ = dict(
        n_hsi_bands=n_hsi, n_lidar_bands=n_lidar, patch_size=P,
        class_names={int(c): names[int(c)] for c in codes},
        fill_values=fill.tolist(),
        trained_on=dict(
            hsi=str(Path(scene.files["hsi"]).resolve()),
            lidar=[str(Path(p).resolve()) for p in scene.files["lidar"]],
            labels=str(Path(labels).resolve()), class_field=class_field,
            crs=None if crs is None else (f"EPSG:{crs.to_epsg()}" if crs.to_epsg() else crs.to_wkt()),
            transform=tuple(scene.transform)[:6], shape=tuple(scene.hsi.shape[:2]),
            n_labelled=int(len(y)), pixels_per_class={int(c): int(n) for c, n in zip(codes, counts)}),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        sklearn_mmlgnet_version=__version__)
    return model


def save_model(model, path):
    """joblib-dump ``model`` to ``path``, whole or not at all."""
    import joblib

    from ._io import atomic_path

    with atomic_path(path) as tmp:
        joblib.dump(model, tmp)
    return Path(path)


def load_model(path):
    """A model saved by ``mmlgnet fit`` (or any joblib-saved patch classifier)."""
    import joblib

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model: no such file: {path}")
    try:
        model = joblib.load(path)
    except Exception as exc:  # noqa: BLE001 - pickle raises anything on a wrong file
        raise ValueError(f"model: {path} is not a model saved by `mmlgnet fit` "
                         f"({type(exc).__name__}: {exc}).") from None
    if not (hasattr(model, "predict") and hasattr(model, "classes_")):
        raise ValueError(f"model: {path} holds a {type(model).__name__}, not a fitted classifier.")
    return model


def fit_command(args):
    """``mmlgnet fit``."""
    from . import MMLGNetClassifier
    from .benchmark import resolve_text_encoder

    for role, p in [("hsi", args.hsi), ("labels", args.labels)] + [("lidar", p) for p in args.lidar]:
        if not Path(p).exists():
            raise FileNotFoundError(f"{role}: no such file: {p}")
    text_kwargs = resolve_text_encoder(args.text_encoder, log=_log)
    clf = MMLGNetClassifier(
        max_epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=args.device,
        random_state=args.seed, hsi_channels=tuple(args.hsi_channels),
        lidar_channels=tuple(args.lidar_channels), fusion_dim=args.fusion_dim,
        verbose=0 if args.quiet else 1, **text_kwargs)
    model = fit_scene(args.hsi, args.lidar, args.labels, class_field=args.class_field,
                      patch_size=args.patch_size or 11, estimator=clf,
                      spectral_norm=args.spectral_norm, log=_log)
    out = save_model(model, args.out)
    _log(f"Saved the model to {out} (fitted on {args.hsi}; classes "
         f"{model.scene_info_['class_names']}).")
    return 0


def predict_command(args):
    """``mmlgnet predict``."""
    from .io import predict_raster, proba_path_for

    model = load_model(args.model)
    if args.test_time_augment:
        _set_test_time_augment(model, args.model)
    client = None
    with contextlib.ExitStack() as stack:
        if args.scheduler:
            from distributed import Client

            try:
                client = stack.enter_context(Client(args.scheduler, timeout="20s"))
            except (OSError, TimeoutError) as exc:
                raise OSError(f"scheduler: could not connect to {args.scheduler} ({exc}).") from None
        out = predict_raster(model, args.hsi, args.lidar, args.out, proba=args.proba,
                             block_size=args.block_size, batch_size=args.batch_size,
                             client=client, progress=not args.quiet)
    _log(f"Wrote {out}" + (f" and {proba_path_for(out)}" if args.proba else "") + ".")
    return 0


def _set_test_time_augment(model, path):
    """Switch on ``test_time_augment`` of the network in ``model`` (a Pipeline or estimator)."""
    keys = [k for k in model.get_params()
            if k == "test_time_augment" or k.endswith("__test_time_augment")]
    if not keys:
        raise ValueError(f"--test-time-augment: the model in {path} ({type(model).__name__}) has "
                         "no test_time_augment parameter.")
    model.set_params(**dict.fromkeys(keys, True))


def add_scene_commands(sub, common):
    """Add ``fit`` and ``predict`` to the ``mmlgnet`` parser's subcommands."""
    f = sub.add_parser("fit", parents=[common],
                       help="fit MMLGNet on your own rasters and labels; save the model")
    f.add_argument("--hsi", required=True, help="hyperspectral raster (GeoTIFF, ENVI .hdr, ...)")
    f.add_argument("--lidar", nargs="+", action="extend", default=[],
                   help="LiDAR raster(s) on the same grid")
    f.add_argument("--labels", required=True,
                   help="label raster (0 = unlabelled) or polygons (.shp / .geojson)")
    f.add_argument("--class-field", default=None,
                   help="attribute of the polygons holding the class")
    f.add_argument("--out", required=True, help="model file to write (.joblib)")
    f.add_argument("--epochs", type=int, default=40, help="training epochs (default: 40)")
    f.add_argument("--batch-size", type=int, default=64, help="training batch size (default: 64)")
    f.add_argument("--lr", type=float, default=5e-4, help="AdamW learning rate (default: 5e-4)")
    f.add_argument("--hsi-channels", type=int, nargs="+", default=[64, 128],
                   help="HSI encoder widths (default: 64 128)")
    f.add_argument("--lidar-channels", type=int, nargs="+", default=[32, 64],
                   help="LiDAR encoder widths (default: 32 64)")
    f.add_argument("--fusion-dim", type=int, default=256, help="fused feature size (default: 256)")
    f.add_argument("--spectral-norm", choices=("l2", "l1", "max"), default=None,
                   help="scale each pixel's HSI spectrum to unit norm before the per-band "
                        "standardisation (SpectralNormalizer; l2 helped MMLGNet on the real "
                        "scenes' inner validation: docs/defaults)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--quiet", action="store_true", help="no per-epoch table")
    f.set_defaults(func=fit_command)

    p = sub.add_parser("predict", help="classify a whole scene into a GeoTIFF map")
    p.add_argument("model", help="model file saved by `mmlgnet fit`")
    p.add_argument("--hsi", required=True, help="hyperspectral raster")
    p.add_argument("--lidar", nargs="+", action="extend", default=[],
                   help="LiDAR raster(s), as at fit")
    p.add_argument("--out", required=True, help="map GeoTIFF to write")
    p.add_argument("--proba", action="store_true",
                   help="also write class probabilities to <out stem>_proba.tif")
    p.add_argument("--scheduler", default=None,
                   help="dask.distributed scheduler address: classify tiles on its workers")
    p.add_argument("--block-size", type=int, default=256, help="tile side in pixels (default: 256)")
    p.add_argument("--batch-size", type=int, default=1024, help="patches per predict call")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--test-time-augment", action="store_true",
                   help="average each pixel's prediction over the 8 flips / quarter turns of its "
                        "patch (8x the time; docs: defaults)")
    p.set_defaults(func=predict_command)
