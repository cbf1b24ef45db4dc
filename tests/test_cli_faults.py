"""The command's faults (issue 25): one line, a documented exit status, no input destroyed.

The library's side of the same faults is in test_io_faults.py.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import joblib
import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio", reason="the 'geo' extra (rasterio) is not installed")

from sklearn_mmlgnet import _cli_scene, _io  # noqa: E402
from sklearn_mmlgnet.cli import main  # noqa: E402

from .test_io import _write_envi, write_scene  # noqa: E402
from .test_io_faults import fast_estimator, _sparse_giant  # noqa: E402
from .test_persistence import _RunsCode  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _error(capsys):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmlgnet: error: "), err
    assert "unexpected" not in lines[0] and "Traceback" not in err
    return lines[0]


def _digest(*paths):
    return [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]


@pytest.fixture
def files(tmp_path):
    """A scene, its labels and a (pickled, trusted) quick model of it."""
    h, l, gt, labels = write_scene(tmp_path)
    from sklearn_mmlgnet.scene import fit_scene

    with pytest.warns(UserWarning):
        model = fit_scene(h, l, gt, estimator=fast_estimator(), patch_size=3, log=lambda m: None)
    joblib.dump(model, tmp_path / "model.joblib")
    return dict(hsi=h, lidar=l, labels=gt, model=str(tmp_path / "model.joblib"), folder=tmp_path)


def _no_work(monkeypatch):
    monkeypatch.setattr(_cli_scene, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    monkeypatch.setattr(_cli_scene, "fit_scene", lambda *a, **k: pytest.fail("fit started"))


# ------------------------------------------------------------ 1: out is an input
@pytest.mark.parametrize("out", ["hsi", "lidar", "model", "link to hsi"])
def test_predict_refuses_an_out_that_is_an_input_before_any_work(files, out, capsys,
                                                                  monkeypatch):
    _no_work(monkeypatch)
    if out == "link to hsi":
        os.symlink(files["hsi"], files["folder"] / "link.tif")
        target = str(files["folder"] / "link.tif")
    else:
        target = files[out]
    before = _digest(files["hsi"], files["lidar"], files["model"])
    code = main(["predict", files["model"], "--hsi", files["hsi"], "--lidar", files["lidar"],
                 "--out", target, "--quiet"])
    line = _error(capsys)
    assert code == 2 and f"--out {target} is the input" in line and "destroy" in line
    assert _digest(files["hsi"], files["lidar"], files["model"]) == before


@pytest.mark.parametrize("out", ["labels", "hsi", "envi data file"])
def test_fit_refuses_an_out_that_is_an_input_before_any_work(files, out, capsys, monkeypatch):
    _no_work(monkeypatch)
    hsi = files["hsi"]
    if out == "envi data file":  # --hsi names the header; the data file beside it is an input
        hdr, img = _write_envi(files["folder"], np.zeros((2, 30, 36), "int16"), "flight")
        hsi, target = str(hdr), str(img)
    else:
        target = files[out]
    before = _digest(target)
    code = main(["fit", "--hsi", hsi, "--labels", files["labels"], "--out", target])
    line = _error(capsys)
    assert code == 2 and "is the input" in line and target in line
    assert _digest(target) == before


# ---------------------------------------------------------- 2: pickles run code
def test_predict_runs_no_code_from_a_pickled_model_unless_trusted(files, capsys):
    marker = files["folder"] / "pwned"
    evil = files["folder"] / "evil.joblib"
    evil.write_bytes(pickle.dumps(_RunsCode(marker)))
    args = ["--hsi", files["hsi"], "--out", str(files["folder"] / "map.tif"), "--quiet"]
    assert main(["predict", str(evil), *args]) == 2
    assert "--trust-pickle" in _error(capsys) and not marker.exists()
    # the user's own pickle, trusted explicitly, still works
    assert main(["predict", files["model"], "--trust-pickle", "--lidar", files["lidar"],
                 *args]) == 0


# ------------------------------------------------- 9: disk full and truncation
_DISK_FULL = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
from sklearn_mmlgnet.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_full_disk_is_exit_5_naming_the_output(tmp_path):
    h, l, gt, _ = write_scene(tmp_path, H=200, W=200)
    from sklearn_mmlgnet.scene import fit_scene

    with pytest.warns(UserWarning):
        model = fit_scene(h, l, gt, estimator=fast_estimator(), patch_size=3, log=lambda m: None)
    joblib.dump(model, tmp_path / "model.joblib")
    out = tmp_path / "maps" / "map.tif"
    res = subprocess.run([sys.executable, "-c", _DISK_FULL, "predict",
                          str(tmp_path / "model.joblib"), "--trust-pickle", "--hsi", h, "--lidar",
                          l, "--out", str(out), "--proba", "--quiet"],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 5, res.stderr
    assert lines[-1].startswith("mmlgnet: error: could not write") and str(out) in lines[-1]
    assert "disk full" in lines[-1]
    assert not out.parent.exists() or not list(out.parent.iterdir())  # nothing left behind


def test_a_truncated_lidar_raster_is_named_in_predict(files, capsys):
    with rasterio.open(files["lidar"]) as src:
        cube, profile = src.read(), src.profile
    profile.update(compress=None, tiled=False)
    cut = files["folder"] / "chm_cut.tif"
    with rasterio.open(cut, "w", **profile) as dst:
        dst.write(cube)
    with open(cut, "r+b") as f:
        f.truncate(os.path.getsize(cut) // 2)
    code = main(["predict", files["model"], "--trust-pickle", "--hsi", files["hsi"], "--lidar",
                 str(cut), "--out", str(files["folder"] / "map.tif"), "--quiet"])
    line = _error(capsys)
    assert code == 2 and "lidar: " in line and "chm_cut.tif could not be read" in line


# ------------------------------- 10: odd GeoJSON, huge rasters, benchmark --seeds 0
@pytest.mark.parametrize("text, message", [
    ('{"type": "FeatureCollection", "features": ' + "[" * 50_000 + "]" * 50_000 + "}",
     "nested too deeply"),
    ('{"type": "FeatureCollection", "features": [1, 2]}', "feature 0 is not a GeoJSON Feature"),
])
def test_fit_on_odd_geojson_is_one_line_exit_2(files, text, message, capsys):
    gj = files["folder"] / "odd.geojson"
    gj.write_text(text)
    code = main(["fit", "--hsi", files["hsi"], "--labels", str(gj), "--out",
                 str(files["folder"] / "m.safetensors"), "--text-encoder", "random-clip"])
    assert code == 2 and message in _error(capsys)


def test_fit_on_a_huge_sparse_raster_is_one_line_exit_2(tmp_path, capsys):
    giant = _sparse_giant(tmp_path / "giant.tif")
    code = main(["fit", "--hsi", str(giant), "--labels", str(giant), "--out",
                 str(tmp_path / "m.safetensors"), "--text-encoder", "random-clip"])
    line = _error(capsys)
    assert code == 2 and "giant.tif" in line and "GiB of memory" in line


def _benchmark_must_not_run(monkeypatch):
    import sklearn_mmlgnet.benchmark as bench

    monkeypatch.setattr(bench, "BenchmarkRun", lambda *a, **k: pytest.fail("benchmark started"))


def test_benchmark_with_no_seeds_is_refused(tmp_path, capsys, monkeypatch):
    _benchmark_must_not_run(monkeypatch)
    code = main(["benchmark", "--dataset", "synthetic", "--seeds", "0", "--out", str(tmp_path)])
    assert code == 2 and "--seeds must be an int >= 1; got 0" in _error(capsys)


@pytest.mark.parametrize("content", ['{"meta": {"dataset": ', '[1, 2]'])
def test_resume_from_a_corrupt_results_file_names_it(tmp_path, content, capsys, monkeypatch):
    _benchmark_must_not_run(monkeypatch)
    (tmp_path / "results.json").write_text(content)
    code = main(["benchmark", "--dataset", "synthetic", "--resume", "--out", str(tmp_path)])
    line = _error(capsys)
    assert code == 2 and f"--resume: {tmp_path / 'results.json'}" in line


# -------------------------------------------- 11: outputs checked before the work
def test_an_existing_folder_as_out_fails_before_loading_the_model(files, capsys, monkeypatch):
    _no_work(monkeypatch)
    (files["folder"] / "maps").mkdir()
    code = main(["predict", files["model"], "--hsi", files["hsi"], "--lidar", files["lidar"],
                 "--out", str(files["folder"] / "maps")])
    assert code == 2 and "is an existing folder" in _error(capsys)
    assert not (files["folder"] / "maps.aux.xml").exists()


# ---------------------------------------------------------------- 13: SIGTERM
_SLOW = """
import sys, time
import sklearn_mmlgnet._tiles as tiles
from sklearn_mmlgnet.cli import main
real = tiles.predict_tile

def slow(*args, **kwargs):
    print("tile", flush=True)
    time.sleep(0.3)
    return real(*args, **kwargs)

tiles.predict_tile = slow
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_leaves_no_temporary_file(files):
    out = files["folder"] / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW, "predict", files["model"], "--trust-pickle", "--hsi",
         files["hsi"], "--lidar", files["lidar"], "--out", str(out / "map.tif"), "--proba",
         "--block-size", "4", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stdout.readline().strip() == "tile"  # temporary files are open now
        assert any(p.name.startswith(".map") for p in out.iterdir())
        time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143 and err.strip().splitlines()[-1] == "mmlgnet: terminated"
    assert list(out.iterdir()) == []


# ----------------------------------------------------------------- 14: options
@pytest.mark.parametrize("option, value, message", [
    ("--patch-size", "0", "--patch-size must be an odd int >= 1; got 0"),
    ("--patch-size", "4", "--patch-size must be an odd int >= 1; got 4"),
    ("--epochs", "-1", "--epochs must be an int >= 1; got -1"),
    ("--lr", "nan", "--lr must be a finite number > 0; got nan"),
    ("--lr", "-1", "--lr must be a finite number > 0; got -1.0"),
    ("--batch-size", "0", "--batch-size must be an int >= 1; got 0"),
    ("--fusion-dim", "0", "--fusion-dim must be an int >= 1; got 0"),
    ("--hsi-channels", "0", "--hsi-channels must be an int >= 1; got 0"),
])
def test_fit_options_are_checked_before_the_scene_is_read(option, value, message, capsys,
                                                          monkeypatch):
    _no_work(monkeypatch)
    # the files do not even exist: the options fail first
    code = main(["fit", "--hsi", "nope.tif", "--labels", "nope.shp", "--out", "m.safetensors",
                 option, value])
    assert code == 2 and message in _error(capsys)


@pytest.mark.parametrize("option", ["--block-size", "--batch-size"])
def test_predict_options_are_checked_before_the_model_is_loaded(option, capsys, monkeypatch):
    _no_work(monkeypatch)
    code = main(["predict", "m.safetensors", "--hsi", "nope.tif", "--out", "map.tif", option,
                 "0"])
    assert code == 2 and f"{option} must be an int >= 1; got 0" in _error(capsys)


def test_an_unreadable_input_is_exit_5(files, capsys, monkeypatch):
    hsi = files["hsi"]
    if os.geteuid() == 0:  # root reads a chmod 000 file: stand in for the kernel's refusal
        real = _io.os.access
        monkeypatch.setattr(_io.os, "access",
                            lambda p, mode: False if str(p) == hsi else real(p, mode))
    os.chmod(hsi, 0)
    try:
        code = main(["predict", files["model"], "--trust-pickle", "--hsi", hsi, "--lidar",
                     files["lidar"], "--out", str(files["folder"] / "map.tif")])
    finally:
        os.chmod(hsi, 0o644)
    line = _error(capsys)
    assert code == 5 and "hsi.tif cannot be read (permission denied)" in line


def test_exit_statuses_are_documented():
    from sklearn_mmlgnet import cli

    for code in ("0", "1", "2", "3", "4", "5", "130", "143"):
        assert f"\n{code} " in cli.__doc__
