"""The ``mmlgnet`` command: ``demo``, ``benchmark``, ``fit`` and ``predict``.

``mmlgnet demo`` fits MMLGNet on the embedded synthetic scene and writes its map;
``mmlgnet benchmark`` runs MMLGNet, its ablations, SDHSI-Net and tuned classic
baselines over seeds and writes Markdown/CSV/JSON tables and maps; ``mmlgnet fit``
and ``mmlgnet predict`` train on a user's own rasters and write a GeoTIFF map
(:mod:`sklearn_mmlgnet._cli_scene`).

A failure is one line on stderr (``mmlgnet: error: ...``) and an exit status
that says what kind it was (``--traceback`` shows the Python traceback instead):

===  ==================================================================
0    done
1    unexpected error (a bug: please report it with ``--traceback``)
2    bad arguments: an unknown option or value, ``--device`` not usable
     here, ``--methods`` matching no method, a value the estimators reject,
     a raster rasterio cannot read
3    a file was not found (dataset files missing from ``--data-home``)
4    a component is unavailable: the text encoder's weights or package,
     an optional dependency
5    another file-system error (permissions, disk full)
130  interrupted (Ctrl-C); the benchmark keeps the runs it finished
===  ==================================================================
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rasterio.errors import RasterioError

from . import _validation
from .text import TextEncoderUnavailableError

#: Known failures and their exit status; the first matching type answers.
EXIT_CODES = (
    (TextEncoderUnavailableError, 4),
    (ImportError, 4),
    (FileNotFoundError, 3),
    (RasterioError, 2),  # a raster that cannot be read as one (wrong format, bad band)
    (OSError, 5),
    (ValueError, 2),
    (TypeError, 2),
)


def _log(msg):
    print(msg, flush=True)


def demo(args):
    from sklearn.pipeline import make_pipeline

    from . import BandStandardScaler, MMLGNetClassifier
    from ._io import write_text
    from .benchmark import resolve_text_encoder
    from .datasets import make_hsi_lidar_scene
    from .metrics import classification_table, evaluate
    from .patches import labelled_patches, predict_scene
    from .plotting import plot_classification_map

    out = Path(args.out)
    args.patch_size = args.patch_size or 11
    t_start = time.perf_counter()
    scene = make_hsi_lidar_scene(random_state=args.seed)
    _log(f"Synthetic Trento-like scene: {scene.hsi.shape[0]} x {scene.hsi.shape[1]} px, "
         f"{scene.hsi.shape[2]} HSI bands + {scene.lidar.shape[2]} LiDAR band; "
         f"{int(scene.train_mask.sum())} training / {int(scene.test_mask.sum())} test pixels "
         "(spatially disjoint split).")
    text_kwargs = resolve_text_encoder(args.text_encoder, log=_log)
    Xtr, ytr, _, _ = labelled_patches(scene, scene.train_mask, args.patch_size)
    clf = MMLGNetClassifier(n_lidar_bands=scene.lidar.shape[2], class_names=scene.class_names,
                            max_epochs=args.epochs, device=args.device, random_state=args.seed,
                            verbose=1, **text_kwargs)
    model = make_pipeline(BandStandardScaler(), clf)
    _log(f"Fitting MMLGNet for {args.epochs} epochs on {len(Xtr)} patches "
         f"({args.patch_size} x {args.patch_size}) ...")
    t0 = time.perf_counter()
    model.fit(Xtr, ytr)
    fit_s = time.perf_counter() - t0
    _log("Classifying every pixel of the scene (batch by batch) for the map and the test set ...")
    pred_map = predict_scene(model, scene.hsi, scene.lidar, args.patch_size)
    test = scene.test_mask & (scene.labels > 0)
    yte, pred = scene.labels[test], pred_map[test]
    res = evaluate(yte, pred)
    table = classification_table(yte, pred, scene.class_names)
    _log("\nTest set (spatially disjoint from training):\n" + table)
    _log(f"\nOA {100 * res['OA']:.2f}  AA {100 * res['AA']:.2f}  kappa {100 * res['kappa']:.2f}  "
         f"(fit {fit_s:.1f} s)")
    map_path = out / "demo_map.png"
    plot_classification_map(pred_map, scene.labels, scene.class_names, path=map_path,
                            title=f"MMLGNet on the synthetic scene: OA {100 * res['OA']:.2f} %")
    encoder = clf.text_encoder_info_
    write_text(out / "demo_results.md",
               f"# MMLGNet demo (synthetic scene, seed {args.seed})\n\nText encoder: "
               f"{encoder['backend']} {encoder['model']} ({encoder['weights']}); {args.epochs} epochs; "
               f"{len(Xtr)} training / {len(yte)} test pixels, spatially disjoint.\n\n{table}\n")
    _log(f"Wrote {map_path} and {out / 'demo_results.md'} "
         f"({time.perf_counter() - t_start:.0f} s in all).")
    return 0


def benchmark(args):
    from .benchmark import BenchmarkRun

    epochs = args.epochs if args.epochs is not None else (10 if args.quick else 50)
    run = BenchmarkRun(args.dataset, args.out, seeds=args.seeds, epochs=epochs, device=args.device,
                       quick=args.quick, data_home=args.data_home, text_encoder=args.text_encoder,
                       methods=args.methods, patch_size=args.patch_size, maps=not args.no_maps,
                       resume=args.resume, verbose=0 if args.quiet else 1, log=_log)
    try:
        run.run()
    except KeyboardInterrupt:
        _log(f"\nInterrupted: the {len(run.results)} finished runs are in {args.out}.")
        return 130
    _log(f"Wrote {args.out}/results_{args.dataset}.md, results.csv, results.json and the maps.")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="mmlgnet", description=__doc__.splitlines()[0])
    parser.add_argument("--traceback", action="store_true",
                        help="on error, show the Python traceback instead of one line")
    sub = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--device", default="cpu", help="torch device, e.g. cuda (default: cpu)")
    common.add_argument("--patch-size", type=int, default=None,
                        help="patch side (default: 11; benchmark --dataset idtrees: 7)")
    common.add_argument("--text-encoder", default="auto",
                        choices=["auto", "open_clip", "sentence-transformers", "random-clip"],
                        help="auto: CLIP ViT-B-32 when its weights can be had, else the packaged "
                             "offline model")

    p = sub.add_parser("demo", parents=[common], help="fit MMLGNet on the synthetic scene")
    p.add_argument("--out", default="mmlgnet_out", help="output folder (default: mmlgnet_out)")
    p.add_argument("--epochs", type=int, default=40, help="training epochs (default: 40)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=demo)

    b = sub.add_parser("benchmark", parents=[common], help="MMLGNet, ablations and baselines")
    b.add_argument("--dataset", required=True,
                   choices=["synthetic", "trento", "muufl", "houston2013", "jasper_ridge", "idtrees"])
    b.add_argument("--seeds", type=int, default=3, help="number of seeds (default: 3)")
    b.add_argument("--out", default="benchmark_out", help="output folder")
    b.add_argument("--epochs", type=int, default=None, help="epochs (default: 50, quick: 10)")
    b.add_argument("--quick", action="store_true",
                   help="smaller networks, 10 epochs, test on <= 5,000 pixels: a smoke run")
    b.add_argument("--data-home", default=None, help="folder holding the dataset files")
    b.add_argument("--methods", nargs="*", default=None,
                   help="only methods whose name contains one of these words")
    b.add_argument("--no-maps", action="store_true", help="skip the classification maps")
    b.add_argument("--quiet", action="store_true", help="no per-epoch lines, one line per run")
    b.add_argument("--resume", action="store_true",
                   help="keep the finished runs in --out (same dataset, epochs, patch size) and "
                        "run only the others")
    b.set_defaults(func=benchmark)

    from ._cli_scene import add_scene_commands  # fit / predict on a user's own rasters

    add_scene_commands(sub, common)
    return parser


def check_device(device):
    """:func:`sklearn_mmlgnet._validation.check_device`, its errors naming ``--device``."""
    return _validation.check_device(device, name="--device")


def _check_text_encoder(choice):
    """Fail before any data is read when the CLIP weights asked for cannot be had."""
    if choice == "open_clip":
        from .text import make_text_encoder

        make_text_encoder("open_clip").resolve_weights()


def _one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__


def _exit_code(exc):
    code = next((c for t, c in EXIT_CODES if isinstance(exc, t)), 1)
    if code == 1 and type(exc).__module__.startswith("rasterio"):
        code = 2  # a raster GDAL cannot read or write as asked
    return code


def main(argv=None):
    """Run the command; returns the exit status (see the table in the module docstring)."""
    args = build_parser().parse_args(argv)  # argparse itself exits 2 on unknown options
    try:
        # Checks every subcommand with these options shares, before any work.
        if getattr(args, "device", None) is not None:
            check_device(args.device)
        _check_text_encoder(getattr(args, "text_encoder", None))
        return args.func(args)
    except KeyboardInterrupt:
        if args.traceback:
            raise
        print("mmlgnet: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.traceback:
            raise
        code = _exit_code(exc)
        what = "" if code != 1 else f"unexpected {type(exc).__name__} (rerun with --traceback and report it): "
        print(f"mmlgnet: error: {what}{_one_line(exc)}", file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
