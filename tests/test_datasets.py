"""The synthetic scene and the loaders, on the real shared files where present."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import scipy.io
from sklearn.ensemble import RandomForestClassifier

from sklearn_mmlgnet.datasets import (
    HOUSTON2013_CLASSES,
    get_data_home,
    load_houston2013,
    load_jasper_ridge,
    load_muufl,
    load_trento,
    make_hsi_lidar_scene,
    read_envi_roi,
)
from sklearn_mmlgnet.metrics import overall_accuracy
from sklearn_mmlgnet.patches import labelled_patches

from .conftest import SHARED_DATA, requires_shared


@pytest.fixture(scope="module")
def default_scene():
    return make_hsi_lidar_scene(random_state=0)


# the determinism check uses a scene too small for a training pixel of every class
@pytest.mark.filterwarnings("ignore:the 40 x 60 scene has no training pixel")
def test_synthetic_scene_fields_and_determinism(default_scene):
    s = default_scene
    assert s.hsi.shape == (166, 600, 63) and s.hsi.dtype == np.float32
    assert s.lidar.shape == (166, 600, 1) and s.labels.shape == (166, 600)
    assert set(np.unique(s.labels)) == {0, 1, 2, 3, 4, 5, 6}
    assert s.class_names[1] == "Apple trees" and len(s.class_names) == 6
    assert not (s.train_mask & s.test_mask).any()
    assert (s.labels[s.train_mask] > 0).all() and (s.labels[s.test_mask] > 0).all()
    # Trento's training counts per class
    assert [int((s.labels[s.train_mask] == c).sum()) for c in range(1, 7)] == [129, 125, 105, 154, 184, 122]
    again = make_hsi_lidar_scene(n_rows=40, n_cols=60, n_bands=8, random_state=3)
    np.testing.assert_array_equal(again.hsi, make_hsi_lidar_scene(n_rows=40, n_cols=60, n_bands=8,
                                                                  random_state=3).hsi)
    assert not np.array_equal(again.hsi, make_hsi_lidar_scene(n_rows=40, n_cols=60, n_bands=8,
                                                              random_state=4).hsi)


def test_synthetic_spectra_are_smooth_with_borders_mixed(default_scene):
    s = default_scene
    pixel = s.hsi[s.labels == 4][:200].mean(0)
    # smooth: second differences small relative to the spectrum's range
    assert np.abs(np.diff(pixel, 2)).max() < 0.15 * np.ptp(pixel)
    # vegetation red edge: NIR (>750 nm) well above red (~670 nm)
    wl = s.wavelengths
    assert pixel[wl > 750].mean() > 2 * pixel[np.abs(wl - 670) < 20].mean()
    assert (s.lidar[..., 0][s.labels == 4].mean() > s.lidar[..., 0][s.labels == 1].mean() + 3)


def test_each_modality_alone_falls_short_of_both(default_scene):
    s = default_scene
    Xtr, ytr, _, _ = labelled_patches(s, s.train_mask, patch_size=1)
    Xte, yte, _, _ = labelled_patches(s, s.test_mask, patch_size=1)
    Xtr, Xte = Xtr[:, :, 0, 0], Xte[:, :, 0, 0]
    oa = {}
    for name, sl in {"hsi": slice(0, 63), "lidar": slice(63, 64), "both": slice(0, 64)}.items():
        rf = RandomForestClassifier(100, random_state=0, n_jobs=2).fit(Xtr[:, sl], ytr)
        oa[name] = overall_accuracy(yte, rf.predict(Xte[:, sl]))
    assert oa["both"] > 0.9
    assert oa["hsi"] < oa["both"] - 0.15 and oa["lidar"] < oa["both"] - 0.15


def test_data_home_resolution(monkeypatch, tmp_path):
    assert get_data_home(tmp_path) == tmp_path
    monkeypatch.setenv("MMLGNET_DATA", str(tmp_path / "env"))
    assert get_data_home() == tmp_path / "env"
    monkeypatch.delenv("MMLGNET_DATA")
    assert get_data_home().name == "sklearn_mmlgnet_data"


def test_missing_files_say_which_file_goes_where(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_trento(data_home=tmp_path)
    msg = str(err.value)
    assert "Italy_hsi.mat" in msg and str(tmp_path / "trento") in msg and "TRLabel.mat" in msg
    with pytest.raises(FileNotFoundError, match="muufl_gulfport_campus_1_hsi_220_label.mat"):
        load_muufl(data_home=tmp_path)
    with pytest.raises(FileNotFoundError, match="2013_IEEE_GRSS_DF_Contest_CASI.tif"):
        load_houston2013(data_home=tmp_path)


def test_download_fails_fast_and_clearly_offline(tmp_path, monkeypatch):
    import socket

    import pooch

    def offline(*a, **k):
        raise OSError("[Errno 101] Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", offline)
    monkeypatch.setattr(pooch.Pooch, "fetch", lambda *a, **k: pytest.fail("tried to download"))
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(OSError) as err:
        load_trento(data_home=tmp_path, download=True)
    msg = str(err.value)
    assert "https://github.com/tyust-dayu/Trento/archive/" in msg and "cannot be reached" in msg
    assert f"put it in {tmp_path / 'trento'}" in msg and f"(data_home {tmp_path})" in msg
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # nothing half written


class _Server:
    """A local HTTP server whose answers the test scripts: (status, body, declared length)."""

    def __init__(self, answers):
        import http.server
        import threading

        self.answers, self.requests = list(answers), 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the stdlib's name
                server.requests += 1
                status, body, length = server.answers[min(server.requests, len(server.answers)) - 1]
                self.send_response(status)
                self.send_header("Content-Length", str(length if length is not None else len(body)))
                self.end_headers()
                self.wfile.write(body)  # shorter than declared: the connection drops mid-file

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/scene.mat"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def no_wait(monkeypatch):
    import pooch.core

    monkeypatch.setattr(pooch.core.time, "sleep", lambda s: None)  # pooch's pause between attempts


def _files(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_download_retries_a_broken_transfer_and_checks_the_sha256(tmp_path, no_wait, capfd):
    import hashlib

    from sklearn_mmlgnet.datasets._base import download

    body = np.random.RandomState(0).bytes(300_000)
    digest = hashlib.sha256(body).hexdigest()
    # First answer: the connection drops after a third of the file; second: the whole file.
    server = _Server([(200, body[:100_000], len(body)), (200, body, None)])
    try:
        dest = download(server.url, tmp_path / "trento" / "scene.mat", digest, timeout=5)
    finally:
        server.close()
    assert server.requests == 2
    assert dest.read_bytes() == body and _files(tmp_path) == ["scene.mat"]
    assert "300k/300k" in capfd.readouterr().err  # the progress bar reached the end
    # A file already there with the right SHA-256 is not fetched again.
    assert download("http://127.0.0.1:9/never", dest, digest) == dest


def test_download_of_a_wrong_file_leaves_nothing_behind(tmp_path, no_wait):
    from sklearn_mmlgnet.datasets._base import download

    server = _Server([(200, b"<html>moved</html>", None)])
    try:
        with pytest.raises(OSError) as err:
            download(server.url, tmp_path / "scene.mat", "0" * 64, timeout=5, retries=1)
    finally:
        server.close()
    assert server.requests == 2  # tried again once, then gave up
    msg = str(err.value)
    assert server.url in msg and "hash" in msg.lower() and f"put it in {tmp_path}" in msg
    assert _files(tmp_path) == []
    server = _Server([(404, b"not found", None)])
    try:
        with pytest.raises(OSError, match="404"):
            download(server.url, tmp_path / "scene.mat", "0" * 64, timeout=5, retries=0)
    finally:
        server.close()
    assert _files(tmp_path) == []


@requires_shared
def test_load_trento_parses_the_real_lidar_and_ground_truth(tmp_path):
    folder = tmp_path / "trento"
    folder.mkdir()
    for name in ("Italy_lidar.mat", "allgrd.mat"):
        shutil.copy(SHARED_DATA / "trento_partial" / name, folder / name)
    # The real 63-band cube is too large to carry here: stand in a generated one.
    hsi = np.random.RandomState(0).rand(166, 600, 63).astype(np.float32)
    scipy.io.savemat(folder / "Italy_hsi.mat", {"data": hsi})
    s = load_trento(data_home=tmp_path, random_state=0)
    assert s.hsi.shape == (166, 600, 63) and s.lidar.shape == (166, 600, 1)
    assert np.bincount(s.labels.ravel()).tolist() == [69386, 4034, 2903, 479, 9123, 10501, 3174]
    assert s.train_mask.sum() == 819 and s.test_mask.sum() == 29395
    assert 0 <= s.lidar.min() and s.lidar.max() < 25  # elevation in metres
    assert load_trento(data_home=tmp_path, all_lidar_rasters=True).lidar.shape == (166, 600, 2)
    d = load_trento(data_home=tmp_path, split="disjoint")
    assert not (d.train_mask & d.test_mask).any()


@requires_shared
def test_houston_envi_roi_parser_matches_the_gt_mat():
    lab, names = read_envi_roi(
        SHARED_DATA / "houston2013_labels" / "2013_IEEE_GRSS_DF_Contest_Samples_VA.txt", (349, 1905))
    gt = scipy.io.loadmat(SHARED_DATA / "houston2013_labels" / "houston_gt.mat")["houston_gt_te"]
    np.testing.assert_array_equal(lab, gt)
    assert len(names) == 15 and names[0] == "grass_healthy" and (lab > 0).sum() == 12197


@requires_shared
def test_load_houston2013_mat_layout_uses_the_fixed_grss_split(tmp_path):
    folder = tmp_path / "houston2013"
    folder.mkdir()
    shutil.copy(SHARED_DATA / "houston2013_labels" / "houston_gt.mat", folder)
    rng = np.random.RandomState(0)
    scipy.io.savemat(folder / "houston.mat", {"houston": rng.rand(349, 1905, 4).astype(np.float32)})
    scipy.io.savemat(folder / "houston_lidar.mat", {"lidar": rng.rand(349, 1905).astype(np.float32)})
    s = load_houston2013(data_home=tmp_path)
    assert s.train_mask.sum() == 2832 and s.test_mask.sum() == 12197
    assert not (s.train_mask & s.test_mask).any()
    assert s.class_names == HOUSTON2013_CLASSES and s.lidar.shape == (349, 1905, 1)


@requires_shared
def test_load_jasper_ridge_real_scene():
    s = load_jasper_ridge(data_home=SHARED_DATA, random_state=0)
    assert s.hsi.shape == (100, 100, 198) and s.lidar.shape == (100, 100, 0)
    assert np.bincount(s.labels.ravel()).tolist() == [0, 3493, 3326, 2428, 753]
    assert 0 <= s.hsi.min() and s.hsi.max() < 1.5
    assert not (s.train_mask & s.test_mask).any()
    # pixels are column-major in the file: pixel (row 0, col 1) is column 100 of Y
    Y = scipy.io.loadmat(SHARED_DATA / "jasper_ridge" / "JasperRidge2_R198.mat")["Y"]
    np.testing.assert_allclose(s.hsi[0, 1], Y[:, 100] / 5000, rtol=1e-6)


def test_load_muufl_gatorsense_struct_layout(tmp_path):
    folder = tmp_path / "muufl"
    folder.mkdir()
    rng = np.random.RandomState(0)
    labels = rng.randint(1, 12, size=(30, 20)).astype(float)
    labels[:5] = -1
    scene = {"Data": rng.rand(30, 20, 64), "Lidar": np.array([{"z": rng.rand(30, 20, 2)}], dtype=object),
             "sceneLabels": {"labels": labels,
                             "Materials_Type": np.array([f"m{i}" for i in range(1, 12)], dtype=object)}}
    scipy.io.savemat(folder / "muufl_gulfport_campus_1_hsi_220_label.mat", {"hsi": scene})
    s = load_muufl(data_home=tmp_path, split=0.2, random_state=0)
    assert s.hsi.shape == (30, 20, 64) and s.lidar.shape == (30, 20, 2)
    assert (s.labels[:5] == 0).all() and s.labels.max() == 11
    assert s.class_names[1] == "m1"
    with pytest.raises(ValueError, match="split must be"):
        load_muufl(data_home=tmp_path, split="random")


def _zip_bytes(members):
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_download_and_extract_renames_whole_members_into_place(tmp_path, no_wait, monkeypatch):
    import hashlib
    import zipfile

    from sklearn_mmlgnet.datasets._base import download_and_extract

    members = {"Trento/Italy_hsi.mat": b"h" * 5000, "Trento/allgrd.mat": b"g" * 3000}
    archive = _zip_bytes(members)
    digest = hashlib.sha256(archive).hexdigest()
    server = _Server([(200, archive, None)])
    real_extract = zipfile.ZipFile._extract_member
    calls = []

    def crash_on_second(self, member, *a, **k):  # Ctrl-C while the second member is written
        calls.append(member)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_extract(self, member, *a, **k)

    try:
        monkeypatch.setattr(zipfile.ZipFile, "_extract_member", crash_on_second)
        with pytest.raises(KeyboardInterrupt):
            download_and_extract("trento", tmp_path, server.url, "trento.zip", digest)
        assert _files(tmp_path) == ["trento.zip"]  # the archive, whole; no member, no temporary
        monkeypatch.setattr(zipfile.ZipFile, "_extract_member", real_extract)
        folder = download_and_extract("trento", tmp_path, server.url, "trento.zip", digest)
    finally:
        server.close()
    assert server.requests == 1  # the archive already there is not fetched again
    for name, data in members.items():
        assert (folder / name).read_bytes() == data
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []
