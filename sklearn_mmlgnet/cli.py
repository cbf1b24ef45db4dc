"""The ``mmlgnet`` command: ``demo``, ``benchmark``, ``fit`` and ``predict``.

``mmlgnet demo`` fits MMLGNet on the embedded synthetic scene and writes its map;
``mmlgnet benchmark`` runs MMLGNet, its ablations, SDHSI-Net and tuned classic
baselines over seeds and writes Markdown/CSV/JSON tables and maps; ``mmlgnet fit``
and ``mmlgnet predict`` train on a user's own rasters and write a GeoTIFF map
(:mod:`sklearn_mmlgnet._cli_scene`).

A failure is one line on stderr (``mmlgnet: error: ...``) and an exit status that
says what kind it was: :data:`EXIT_STATUS`, tabulated in docs/cli.rst (a test keeps
the two the same). ``--traceback``, before or after the command, shows the Python
traceback instead.

Options are checked, and outputs against inputs (an output that is an input is
refused), before any file is read. Files are written whole or not at all.
GDAL does not reach the network unless ``MMLGNET_ALLOW_NETWORK=1``. The progress
bars and notes of the libraries that load the text model are off unless ``--verbose``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from rasterio.errors import RasterioError
from sklearn.pipeline import make_pipeline

from . import MMLGNetClassifier, _validation, datasets
from ._cli_scene import (
    add_scene_commands,
    check_option,
    patch_size_option,
    resolve_text,
    text_notice,
)
from ._io import Terminated, check_outputs, write_text
from ._threads import set_threads
from .metrics import classification_table, evaluate
from .patches import labelled_patches
from .plotting import plot_classification_map
from .prediction import predict_scene
from .preprocessing import BandStandardScaler
from .text import TextEncoderUnavailableError, make_text_encoder

# Exit statuses. 130 and 143 are 128 + the signal's number, as shells report them.
DONE, UNEXPECTED, BAD_INPUT, NOT_FOUND, UNAVAILABLE, FILE_SYSTEM = 0, 1, 2, 3, 4, 5
INTERRUPTED, TERMINATED = 130, 143

#: Every exit status of the command and what it means (docs/cli.rst's table says the
#: same, with examples). argparse exits with 2 itself on an unknown option or value.
EXIT_STATUS = {
    DONE: "done",
    UNEXPECTED: "unexpected error",
    BAD_INPUT: "bad input",
    NOT_FOUND: "file not found",
    UNAVAILABLE: "component unavailable",
    FILE_SYSTEM: "file-system error",
    INTERRUPTED: "interrupted",
    TERMINATED: "terminated",
}
if __doc__:  # help(cli) lists them too, written from the dict (no docstring under -OO)
    _rule = "==== " + "=" * max(map(len, EXIT_STATUS.values()))
    __doc__ += "\n".join(
        ["\nExit statuses (:data:`EXIT_STATUS`; docs/cli.rst says when each occurs):\n", _rule,
         *(f"{code:<4} {meaning}" for code, meaning in EXIT_STATUS.items()), _rule, ""])

#: Known failures and their exit status; the first matching type answers.
EXIT_CODES = (
    (TextEncoderUnavailableError, UNAVAILABLE),
    (ImportError, UNAVAILABLE),
    (FileNotFoundError, NOT_FOUND),
    (RasterioError, BAD_INPUT),  # a raster that cannot be read as one (wrong format, bad band)
    (OSError, FILE_SYSTEM),
    (ValueError, BAD_INPUT),
    (TypeError, BAD_INPUT),
)

#: Environment of the libraries that load the text model, without --verbose: no
#: progress bars ("Loading weights: 100%|...") and no notes below errors. Read when
#: they are imported, here or in a process the command starts.
QUIET_LIBRARIES = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error"}


def _log(msg):
    print(msg, flush=True)


def demo(args):
    out = Path(args.out)
    args.patch_size = patch_size_option(args)
    check_option(args.epochs, "--epochs")
    # The map is written after the fit: a --out that cannot hold it fails now.
    check_outputs({"--out": out / "demo_map.png"}, {})
    t_start = time.perf_counter()
    scene = datasets.make_hsi_lidar_scene(random_state=args.seed)
    _log(f"Synthetic Trento-like scene: {scene.hsi.shape[0]} x {scene.hsi.shape[1]} px, "
         f"{scene.hsi.shape[2]} HSI bands + {scene.lidar.shape[2]} LiDAR band; "
         f"{int(scene.train_mask.sum())} training / {int(scene.test_mask.sum())} test pixels "
         "(spatially disjoint split).")
    text_kwargs = resolve_text(args.text_encoder)
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
               f"{encoder['backend']} {encoder['model']} ({encoder['weights']}); "
               f"{args.epochs} epochs; "
               f"{len(Xtr)} training / {len(yte)} test pixels, spatially disjoint.\n\n{table}\n")
    _log(f"Wrote {map_path} and {out / 'demo_results.md'} "
         f"({time.perf_counter() - t_start:.0f} s in all).")
    return DONE


def _check_resumable(out):
    """``--resume``: the earlier ``results.json`` must be readable (named when it is not)."""
    path = Path(out) / "results.json"
    if not path.exists():
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"--resume: {path} is not valid JSON ({exc}); move it away or run "
                         "without --resume.") from None
    if not (isinstance(data, dict) and isinstance(data.get("meta"), dict)
            and isinstance(data.get("runs"), list)):
        raise ValueError(f"--resume: {path} is not the results.json of a benchmark (no 'meta' "
                         "and 'runs'); move it away or run without --resume.")


def benchmark(args):
    from .benchmark import BenchmarkRun  # the benchmark is a client of the library

    check_option(args.seeds, "--seeds")
    if args.epochs is not None:
        check_option(args.epochs, "--epochs")
    if args.patch_size is not None:
        patch_size_option(args)
    if args.resume:
        _check_resumable(args.out)
    epochs = args.epochs if args.epochs is not None else (10 if args.quick else 50)
    run = BenchmarkRun(args.dataset, args.out, seeds=args.seeds, epochs=epochs, device=args.device,
                       quick=args.quick, data_home=args.data_home, text_encoder=args.text_encoder,
                       methods=args.methods, patch_size=args.patch_size, maps=not args.no_maps,
                       resume=args.resume, verbose=0 if args.quiet else 1, log=_benchmark_log)
    try:
        run.run()
    except KeyboardInterrupt:
        _log(f"\nInterrupted: the {len(run.results)} finished runs are in {args.out}.")
        return INTERRUPTED
    _log(f"Wrote {args.out}/results_{args.dataset}.md, results.csv, results.json and the maps.")
    return DONE


def _benchmark_log(msg):
    """The benchmark's lines, its text-model note (``[text] ...``: what ``--text-encoder
    auto`` took, said once the dataset is read) replaced by the command's one line."""
    if msg.startswith("[text]"):
        text_notice(chose_random="random weights" in msg)
    else:
        _log(msg)


DESCRIPTION = """\
MMLGNet on hyperspectral + LiDAR rasters: a demo on a synthetic scene, a
benchmark on public datasets, and fit / predict on your own rasters."""

EXAMPLES = """\
examples:
  # fit on the built-in synthetic scene; print the scores, write the map
  mmlgnet demo --out demo_out

  # fit on your own rasters and labelled polygons; save the model
  mmlgnet fit --hsi flight.tif --lidar chm.tif --labels fields.shp \\
      --class-field crop --out model.safetensors

  # classify the whole scene into a GeoTIFF map (and class probabilities)
  mmlgnet predict model.safetensors --hsi flight.tif --lidar chm.tif \\
      --out map.tif --proba

  # MMLGNet against the baselines on Trento, 3 seeds
  mmlgnet benchmark --dataset trento --data-home ~/sklearn_mmlgnet_data \\
      --out trento_results

Each command's options: mmlgnet COMMAND --help. A failure prints one line,
"mmlgnet: error: ...", and exits with a status saying what kind it was (the
table is on the Command line page of the documentation); --traceback shows
the Python traceback instead."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written; each option's default after its help.

    Unlike ``ArgumentDefaultsHelpFormatter``, no default is added to a help that
    already says it, nor for a flag (False) or an option without one (None).
    """

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (not action.option_strings or "(default" in text or default is None
                or default is False or default == argparse.SUPPRESS):
            return text
        return text + " (default: %(default)s)"


def build_parser():
    """The ``mmlgnet`` parser, its commands and every option."""
    parser = argparse.ArgumentParser(prog="mmlgnet", description=DESCRIPTION, epilog=EXAMPLES,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--traceback", action="store_true",
                        help="on error, show the Python traceback instead of one line")
    sub = parser.add_subparsers(dest="command", required=True, title="commands",
                                metavar="COMMAND")

    # Options every command takes. --traceback is also the main parser's: SUPPRESS keeps
    # a command's default from overwriting "mmlgnet --traceback COMMAND".
    device = argparse.ArgumentParser(add_help=False)
    device.add_argument("--traceback", action="store_true", default=argparse.SUPPRESS,
                        help="on error, show the Python traceback instead of one line")
    device.add_argument("--device", default="cpu",
                        help="torch device the network runs on: cpu, cuda or cuda:N")
    device.add_argument("--threads", type=int, default=None,
                        help="CPU threads torch runs on (default: the cores free, i.e. the "
                             "cores this process may use less the load average, at least 1); "
                             "OpenMP threads wait passively (OMP_WAIT_POLICY=PASSIVE) unless "
                             "the environment says otherwise")
    # ... and those of the commands that fit a network (and so load a text model).
    network = argparse.ArgumentParser(add_help=False, parents=[device])
    network.add_argument("--patch-size", type=int, default=None,
                         help="side of the square patch around each pixel, odd (default: 11; "
                              "benchmark: the odd side nearest to a third of the smallest "
                              "image side, at most 11)")
    network.add_argument("--text-encoder", default="auto",
                         choices=["auto", "open_clip", "sentence-transformers", "random-clip"],
                         help="model writing the class names into embeddings; auto: CLIP "
                              "ViT-B-32 when its weights are on disk or can be downloaded, "
                              "else the packaged offline model (sentence-transformers)")
    network.add_argument("--verbose", action="store_true",
                         help="also show the progress bars and notes of the libraries that "
                              "load the text model (transformers, huggingface_hub)")

    p = sub.add_parser("demo", parents=[network], formatter_class=HelpFormatter,
                       help="fit MMLGNet on the synthetic scene",
                       description="Fit MMLGNet on the built-in synthetic scene (no files "
                                   "needed), print\nOA / AA / kappa on its spatially "
                                   "disjoint test pixels and write the map.")
    p.add_argument("--out", default="mmlgnet_out",
                   help="folder of the map (demo_map.png) and the scores (demo_results.md)")
    p.add_argument("--epochs", type=int, default=40, help="training epochs")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed of the synthetic scene and of the network")
    p.set_defaults(func=demo)

    b = sub.add_parser("benchmark", parents=[network], formatter_class=HelpFormatter,
                       help="MMLGNet, ablations and baselines over seeds",
                       description="Run MMLGNet, its ablations, SDHSI-Net and tuned classic "
                                   "baselines over seeds\non a dataset; write Markdown, CSV "
                                   "and JSON tables and the maps to --out.")
    b.add_argument("--dataset", required=True,
                   choices=["synthetic", "trento", "muufl", "houston2013", "jasper_ridge",
                            "idtrees"],
                   help="dataset to run on; synthetic needs no files, the others are read "
                        "from --data-home")
    b.add_argument("--seeds", type=int, default=3,
                   help="number of seeds (0 to N-1): training splits and network weights")
    b.add_argument("--out", default="benchmark_out",
                   help="folder of the tables (results_<dataset>.md, results.csv, "
                        "results.json) and the maps")
    b.add_argument("--epochs", type=int, default=None,
                   help="training epochs of every network (default: 50; with --quick: 10)")
    b.add_argument("--quick", action="store_true",
                   help="smaller networks, 10 epochs, test on at most 5,000 pixels: a smoke run")
    b.add_argument("--data-home", default=None,
                   help="folder holding the dataset files (default: $MMLGNET_DATA, else "
                        "~/sklearn_mmlgnet_data)")
    b.add_argument("--methods", nargs="*", default=None,
                   help="only the methods whose name contains one of these words (default: "
                        "every method)")
    b.add_argument("--no-maps", action="store_true", help="skip the classification maps")
    b.add_argument("--quiet", action="store_true", help="no per-epoch lines, one line per run")
    b.add_argument("--resume", action="store_true",
                   help="keep the finished runs in --out (same dataset, epochs, patch size) and "
                        "run only the others")
    b.set_defaults(func=benchmark)

    # fit / predict on a user's own rasters
    add_scene_commands(sub, network, device, formatter_class=HelpFormatter)
    return parser


def check_device(device):
    """:func:`sklearn_mmlgnet._validation.check_device`, its errors naming ``--device``."""
    return _validation.check_device(device, name="--device")


def _check_text_encoder(choice):
    """Fail before any data is read when the CLIP weights asked for cannot be had."""
    if choice == "open_clip":
        make_text_encoder("open_clip").resolve_weights()


def _one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__


def _exit_code(exc):
    code = next((c for t, c in EXIT_CODES if isinstance(exc, t)), UNEXPECTED)
    if code == UNEXPECTED and type(exc).__module__.startswith("rasterio"):
        code = BAD_INPUT  # a raster GDAL cannot read or write as asked
    return code


def _terminate(signum, frame):
    raise Terminated(signum)


@contextlib.contextmanager
def quiet_libraries(verbose=False):
    """Without ``verbose``, the libraries that load the text model show no progress bar
    and no notes (:data:`QUIET_LIBRARIES`); as they were again on the way out.

    ``main`` also runs inside other programs (tests, notebooks), hence the restoring.
    huggingface_hub is imported first (it is light) so that the environment set here is
    not frozen into it; transformers (heavy) is left to be imported by the text model,
    and given its defaults afterwards if it was.
    """
    if verbose:
        yield
        return
    saved_env = {k: os.environ.get(k) for k in QUIET_LIBRARIES}
    undo = []
    try:
        from huggingface_hub import utils as hub
    except ImportError:
        hub = None
    if hub is not None and not hub.are_progress_bars_disabled():
        hub.disable_progress_bars()
        undo.append(hub.enable_progress_bars)
    tf_logging = sys.modules.get("transformers.utils.logging")
    if tf_logging is not None:
        if tf_logging.is_progress_bar_enabled():
            tf_logging.disable_progress_bar()
            undo.append(tf_logging.enable_progress_bar)
        level = tf_logging.get_verbosity()
        tf_logging.set_verbosity_error()
        undo.append(lambda: tf_logging.set_verbosity(level))
    os.environ.update(QUIET_LIBRARIES)
    try:
        yield
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for restore in reversed(undo):
            restore()
        loaded = sys.modules.get("transformers.utils.logging")
        if tf_logging is None and loaded is not None:  # imported quiet by the command
            if hub is None or not hub.are_progress_bars_disabled():
                loaded.enable_progress_bar()
            level = saved_env["TRANSFORMERS_VERBOSITY"]
            loaded.set_verbosity(loaded.log_levels.get(level or "", logging.WARNING))


def main(argv=None):
    """Run the command.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after ``mmlgnet``; default: the process's (``sys.argv[1:]``).

    Returns
    -------
    status : int
        The exit status, one of :data:`EXIT_STATUS`.
    """
    args = build_parser().parse_args(argv)  # argparse itself exits 2 on unknown options
    # SIGTERM unwinds like Ctrl-C, so that temporary files are removed on the way out.
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if on_main else None
    try:
        return _run(args)
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, previous)


def _run(args):
    try:
        # Checks every subcommand with these options shares, before any work.
        if getattr(args, "device", None) is not None:
            check_device(args.device)
        if hasattr(args, "threads"):  # before torch does any work (see _threads)
            if args.threads is not None:
                check_option(args.threads, "--threads")
            set_threads(args.threads)
        _check_text_encoder(getattr(args, "text_encoder", None))
        with quiet_libraries(getattr(args, "verbose", False)):
            return args.func(args)
    except KeyboardInterrupt:
        if args.traceback:
            raise
        print("mmlgnet: interrupted", file=sys.stderr)
        return INTERRUPTED
    except Terminated:
        if args.traceback:
            raise
        print("mmlgnet: terminated", file=sys.stderr)
        return TERMINATED
    except Exception as exc:
        if args.traceback:
            raise
        code = _exit_code(exc)
        what = "" if code != UNEXPECTED else (f"unexpected {type(exc).__name__} (rerun with "
                                              "--traceback and report it): ")
        print(f"mmlgnet: error: {what}{_one_line(exc)}", file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
