"""The command's front door (issue 24): its help, options shared by every command, the
exit-status table of the docs, and what it prints besides its results."""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

import pytest

from sklearn_mmlgnet import _cli_scene, cli
from sklearn_mmlgnet.cli import build_parser, main

from .conftest import HAS_ST, requires_st

ROOT = Path(__file__).resolve().parents[1]
NETWORK_COMMANDS = ("demo", "benchmark", "fit", "predict")
#: reST that has no place in a terminal.
MARKUP = ("``", "`", ":func:", ":class:", ":mod:", ":meth:", ":data:", ":doc:", ":ref:")


def _commands():
    """``{name: parser}`` of every subcommand."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def _help(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def _error_line(capsys):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmlgnet: error: "), err
    assert "Traceback" not in err
    return lines[0]


def _failing_demo(monkeypatch, exc):
    def fail(args):
        raise exc

    monkeypatch.setattr(cli, "demo", fail)  # the parser looks the demo up by name


# ------------------------------------------------------------------ 1: every option's help
def test_every_subcommand_is_listed():
    assert set(_commands()) == set(NETWORK_COMMANDS)


@pytest.mark.parametrize("command", [None, *NETWORK_COMMANDS])
def test_every_option_has_a_help_and_shows_its_default(command):
    parser = build_parser() if command is None else _commands()[command]
    formatter = parser._get_formatter()
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help and action.help.strip() and action.help != argparse.SUPPRESS, \
            f"mmlgnet {command or ''} {name} has no help"
        default = action.default
        if default is None or default is False or default == argparse.SUPPRESS:
            continue
        text = formatter._expand_help(action)
        assert "(default: " in text, f"mmlgnet {command or ''} {name}: {text!r}"


@pytest.mark.parametrize("command", [None, *NETWORK_COMMANDS])
def test_help_is_plain_text(command, capsys):
    text = _help([] if command is None else [command], capsys)
    assert "usage: mmlgnet" in text
    found = [m for m in MARKUP if m in text]
    assert not found, f"reST markup {found} in `mmlgnet {command or ''} --help`:\n{text}"
    assert max(map(len, text.splitlines())) <= 100


# ------------------------------------------------------------------ 2: examples
def test_main_help_ends_with_examples_of_each_command_that_parse(capsys):
    text = _help([], capsys)
    block = text.split("\nexamples:\n")[1].split("\n\n\n")[0]
    commands = []
    for example in block.replace("\\\n", " ").splitlines():
        example = example.strip()
        if not example.startswith("mmlgnet "):
            continue
        args = build_parser().parse_args(shlex.split(example)[1:])  # exits 2 if it is wrong
        commands.append(args.command)
    assert 3 <= len(commands) <= 5
    assert set(commands) == {"demo", "fit", "predict", "benchmark"}


# ------------------------------------------------------------------ 3: --traceback anywhere
@pytest.mark.parametrize("argv, expected", [
    (["demo"], False),
    (["--traceback", "demo"], True),
    (["demo", "--traceback"], True),
    (["demo", "--epochs", "3", "--traceback"], True),
    (["predict", "m.safetensors", "--hsi", "h.tif", "--out", "o.tif", "--traceback"], True),
    (["--traceback", "fit", "--hsi", "h.tif", "--labels", "l.tif", "--out", "m"], True),
])
def test_traceback_parses_before_or_after_the_command(argv, expected):
    assert build_parser().parse_args(argv).traceback is expected


@pytest.mark.parametrize("where", ["before", "after"])
def test_traceback_reraises_an_unexpected_error(where, monkeypatch, tmp_path):
    _failing_demo(monkeypatch, RuntimeError("boom"))
    argv = ["demo", "--out", str(tmp_path)]
    argv = ["--traceback", *argv] if where == "before" else [*argv, "--traceback"]
    with pytest.raises(RuntimeError, match="boom"):
        main(argv)


def test_without_traceback_an_unexpected_error_is_one_line(monkeypatch, tmp_path, capsys):
    _failing_demo(monkeypatch, RuntimeError("boom"))
    assert main(["demo", "--out", str(tmp_path)]) == cli.UNEXPECTED
    assert "unexpected RuntimeError" in _error_line(capsys)


# ------------------------------------------------------------------ 4: --device everywhere
@pytest.mark.parametrize("command", NETWORK_COMMANDS)
def test_every_command_running_a_network_takes_device(command):
    options = {s for a in _commands()[command]._actions for s in a.option_strings}
    assert "--device" in options


def test_predict_device_parses():
    args = build_parser().parse_args(["predict", "m.safetensors", "--hsi", "h.tif", "--out",
                                      "o.tif", "--device", "cpu"])
    assert args.device == "cpu"


def test_predict_bad_device_is_one_line_exit_2_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(_cli_scene, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    for name in ("m.safetensors", "h.tif"):
        (tmp_path / name).write_bytes(b"x")
    code = main(["predict", str(tmp_path / "m.safetensors"), "--hsi", str(tmp_path / "h.tif"),
                 "--out", str(tmp_path / "o.tif"), "--device", "gpu0"])
    assert code == cli.BAD_INPUT == 2
    line = _error_line(capsys)
    assert "--device 'gpu0' is not a torch device" in line and "cuda:N" in line


def test_predict_runs_the_model_on_the_device_asked(tmp_path, monkeypatch):
    pytest.importorskip("rasterio", reason="the 'geo' extra (rasterio) is not installed")
    from sklearn_mmlgnet.persistence import save_model
    from sklearn_mmlgnet.scene import fit_scene

    from .test_io import write_scene
    from .test_scene import tiny_estimator

    h, l, gt, _ = write_scene(tmp_path)
    model = fit_scene(h, l, gt, estimator=tiny_estimator(), patch_size=3,
                      log=lambda m: None)  # given class embeddings: no text model
    path = save_model(model, tmp_path / "model.safetensors")
    seen = {}

    def fake_predict_raster(model, *args, **kwargs):
        seen["model"] = model
        return Path(kwargs.get("out") or args[2])

    # "meta" is a torch device every machine has (tensors without data): it shows that
    # the option reaches the network without a GPU; check_device would refuse it.
    monkeypatch.setattr(cli, "check_device", lambda device: device)
    monkeypatch.setattr(_cli_scene, "predict_raster", fake_predict_raster)
    assert main(["predict", str(path), "--hsi", h, "--lidar", l, "--out",
                 str(tmp_path / "map.tif"), "--device", "meta", "--quiet"]) == 0
    clf = seen["model"].estimator[-1]
    assert clf.device == "meta" and clf.net_.device == "meta"
    assert {p.device.type for p in clf.net_.module_.parameters()} == {"meta"}


# ------------------------------------------------------------------ 5: exit statuses
def _docs_exit_table():
    """``{status: meaning}`` of the table under "Failures and exit status" in docs/cli.rst."""
    text = (ROOT / "docs" / "cli.rst").read_text(encoding="utf-8")
    section = text.split("Failures and exit status\n")[1]
    lines = section.splitlines()
    borders = [i for i, line in enumerate(lines) if re.fullmatch(r"=+( +=+)+", line)]
    assert len(borders) >= 3, "no simple table under 'Failures and exit status'"
    top, _, bottom = borders[:3]
    starts = [m.start() for m in re.finditer(r"=+", lines[top])]
    table = {}
    for line in lines[borders[1] + 1:bottom]:
        first = line[:starts[1]].strip()
        if first:  # a blank first column continues the row above
            table[int(first)] = line[starts[1]:starts[2]].strip()
    return table


def test_docs_exit_status_table_is_the_codes():
    assert _docs_exit_table() == cli.EXIT_STATUS
    codes = {code for _, code in cli.EXIT_CODES}
    assert codes <= set(cli.EXIT_STATUS)
    assert {cli.DONE, cli.UNEXPECTED, cli.INTERRUPTED, cli.TERMINATED} <= set(cli.EXIT_STATUS)


def test_argparse_errors_are_the_bad_input_status(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--no-such-option"])
    assert exit_.value.code == cli.BAD_INPUT
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


def test_the_exit_status_table_is_in_one_place_of_the_docs():
    row = re.compile(r"^[\s|]*143\b.*terminated", re.MULTILINE | re.IGNORECASE)
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.rst"))]
    holding = [p.relative_to(ROOT).as_posix() for p in pages if row.search(p.read_text("utf-8"))]
    assert holding == ["docs/cli.rst"]


# ------------------------------------------------------------------ 6: the text-model notice
@pytest.fixture
def no_clip_weights(monkeypatch, tmp_path):
    """CLIP's weights are not on disk (and the tests are offline); a fresh text cache."""
    from sklearn_mmlgnet import text

    monkeypatch.setattr(text, "_cached_clip_file", lambda cfg, cache_dir: None)
    monkeypatch.setenv("MMLGNET_CACHE", str(tmp_path / "text_cache"))


def _notices(captured):
    return [line for line in (captured.out + captured.err).splitlines()
            if "text model" in line or "CLIP" in line or line.startswith("[text]")]


def test_a_missing_input_is_said_before_any_text_model_notice(no_clip_weights, tmp_path, capsys):
    pytest.importorskip("rasterio", reason="the 'geo' extra (rasterio) is not installed")
    from .test_io import write_scene

    h, l, _, _ = write_scene(tmp_path)
    code = main(["fit", "--hsi", h, "--lidar", l, "--labels", str(tmp_path / "missing.tif"),
                 "--out", str(tmp_path / "m.safetensors")])
    captured = capsys.readouterr()
    assert code == cli.NOT_FOUND
    assert not _notices(captured), captured
    assert "--labels: no such file" in captured.err


def test_demo_checks_its_out_folder_before_the_notice_and_the_fit(no_clip_weights, tmp_path,
                                                                   monkeypatch, capsys):
    from sklearn_mmlgnet import datasets

    monkeypatch.setattr(datasets, "make_hsi_lidar_scene",
                        lambda **k: pytest.fail("the demo started"))
    (tmp_path / "a_file").write_text("")
    assert main(["demo", "--out", str(tmp_path / "a_file")]) == cli.BAD_INPUT
    captured = capsys.readouterr()
    assert not _notices(captured)
    assert "is not a folder" in _error_line_of(captured)


def _error_line_of(captured):
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmlgnet: error: --out "), captured.err
    return lines[0]


def _fit_tiny(tmp_path, *options):
    from .test_cli_scene import _named_labels
    from .test_io import write_scene

    h, l, _, labels = write_scene(tmp_path)
    gt = _named_labels(tmp_path, labels, h)  # named classes: no warning on stderr
    return main(["fit", "--hsi", h, "--lidar", l, "--labels", gt, "--out",
                 str(tmp_path / "m.safetensors"), "--epochs", "1", "--patch-size", "3",
                 "--hsi-channels", "4", "--lidar-channels", "4", "--fusion-dim", "8", "--quiet",
                 *options])


@requires_st
def test_auto_says_in_one_line_which_text_model_and_no_progress_bars(no_clip_weights, tmp_path,
                                                                      capsys):
    pytest.importorskip("rasterio", reason="the 'geo' extra (rasterio) is not installed")
    from huggingface_hub.utils import are_progress_bars_disabled

    assert _fit_tiny(tmp_path) == 0  # --text-encoder auto: the packaged model is loaded
    captured = capsys.readouterr()
    assert _notices(captured) == [_cli_scene.TEXT_NOTICES["packaged"]]
    assert "--text-encoder" in _cli_scene.TEXT_NOTICES["packaged"]
    assert "Loading weights" not in captured.err and "%|" not in captured.err, captured.err
    assert not are_progress_bars_disabled()  # as it was before the command


@requires_st
def test_verbose_shows_the_libraries_progress(no_clip_weights, tmp_path, capsys):
    pytest.importorskip("rasterio", reason="the 'geo' extra (rasterio) is not installed")

    assert _fit_tiny(tmp_path, "--verbose", "--text-encoder", "sentence-transformers") == 0
    captured = capsys.readouterr()
    assert "Loading weights" in captured.err  # what the other test does not see
    assert not _notices(captured)  # asked for by name: nothing to say


@pytest.mark.parametrize("offline_model", [True, False])
@pytest.mark.parametrize("say", ["fit", "benchmark"])
def test_the_notice_names_what_auto_took(offline_model, say, no_clip_weights, monkeypatch,
                                         capsys):
    """The same line for each command: ``fit`` / ``demo`` from what the library chose, the
    benchmark (which resolves the encoder itself, once its data is read) from its note."""
    from sklearn_mmlgnet import text

    if not offline_model:
        monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import fails
    elif not HAS_ST:
        pytest.skip("the 'offline' extra is not installed")
    if say == "fit":
        kwargs = _cli_scene.resolve_text("auto")
    else:
        kwargs = text.resolve_text_encoder("auto", log=cli._benchmark_log)
    assert kwargs["text_encoder"] == ("sentence-transformers" if offline_model else "open_clip")
    expected = _cli_scene.TEXT_NOTICES["packaged" if offline_model else "random"]
    assert capsys.readouterr().out.splitlines() == [expected]


def test_the_benchmark_keeps_its_other_lines(capsys):
    cli._benchmark_log("[seed 0] MMLGNet: fitting on 10 patches ...")
    assert capsys.readouterr().out == "[seed 0] MMLGNet: fitting on 10 patches ...\n"
