"""The ``mmlgnet`` command: ``demo`` and ``benchmark``.

``mmlgnet demo`` fits MMLGNet on the embedded synthetic scene and writes its map;
``mmlgnet benchmark`` runs MMLGNet, its ablations, SDHSI-Net and classic
baselines over seeds and writes Markdown/CSV/JSON tables and maps.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


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
                       verbose=0 if args.quiet else 1, log=_log)
    try:
        run.run()
    except KeyboardInterrupt:
        _log(f"\nInterrupted: the {len(run.results)} finished runs are in {args.out}.")
        return 130
    except FileNotFoundError as exc:
        _log(f"error: {exc}")
        return 2
    _log(f"Wrote {args.out}/results_{args.dataset}.md, results.csv, results.json and the maps.")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="mmlgnet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--device", default="cpu", help="torch device, e.g. cuda (default: cpu)")
    common.add_argument("--patch-size", type=int, default=11, help="patch side (default: 11)")
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
                   choices=["synthetic", "trento", "muufl", "houston2013", "jasper_ridge"])
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
    b.set_defaults(func=benchmark)

    from ._cli_scene import add_scene_commands  # fit / predict on a user's own rasters

    add_scene_commands(sub, common)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
