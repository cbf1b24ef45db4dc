"""The safe model format (sklearn_mmlgnet.persistence): nothing in a model file runs on load."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from skorch.callbacks import Callback

from sklearn_mmlgnet import (
    BandStandardScaler,
    CenterPixel,
    MMLGNetClassifier,
    SDHSIClassifier,
    SpectralNormalizer,
    SpectralPCA,
    __version__,
)
from sklearn_mmlgnet.persistence import FORMAT, load_model, save_model
from sklearn_mmlgnet.scene import SceneModel

DATA = Path(__file__).resolve().parent / "data"


def _patches(n=24, bands=6, seed=0):
    rng = np.random.RandomState(seed)
    y = np.array(["Woods", "Roads", "Vineyard"])[np.arange(n) % 3]
    X = rng.normal(size=(n, bands, 5, 5)).astype(np.float32)
    for k, name in enumerate(["Woods", "Roads", "Vineyard"]):
        X[y == name, k] += 2
    return X, y


def _mmlgnet(**kw):
    return MMLGNetClassifier(n_lidar_bands=1, text_embeddings=np.eye(3, 8, dtype=np.float32),
                             module__hsi_channels=(8,), module__lidar_channels=(4,),
                             module__fusion_dim=8, max_epochs=2, random_state=0, **kw)


def _sdhsi():
    return SDHSIClassifier(module__conv3d_channels=(2,), module__spectral_kernels=(3,),
                           module__conv2d_channels=4, module__hidden=8, module__student_hidden=4,
                           max_epochs=1, random_state=0)


def test_a_scene_model_round_trips_exactly(tmp_path):
    X, y = _patches()
    pipe = make_pipeline(SpectralNormalizer("l2", n_lidar_bands=1),
                         SpectralPCA(3, n_lidar_bands=1, random_state=0), BandStandardScaler(),
                         _mmlgnet(callbacks=[("noop", Callback())],
                                  test_time_augment=True)).fit(X, y)
    info = {"n_hsi_bands": 5, "class_names": {1: "Woods", 70000: "Roads"}, "patch_size": 5,
            "transform": (1.0, 0.0, 5.0), "fill_values": [np.float32(0.5)] * 6,
            "band_std": [1.0] * 6, "wavelengths": None, "odd": float("nan")}
    path = save_model(SceneModel(pipe, info), tmp_path / "model.safetensors")
    assert (path.stat().st_mode & 0o777) == 0o666 & ~_umask()
    got = load_model(path)
    assert isinstance(got, SceneModel)
    assert [type(s) for _, s in got.estimator.steps] == [type(s) for _, s in pipe.steps]
    np.testing.assert_array_equal(got.estimator.predict_proba(X), pipe.predict_proba(X))
    np.testing.assert_array_equal(got.classes_, pipe.classes_)
    assert got.info["class_names"] == {1: "Woods", 70000: "Roads"}  # int keys stay ints
    assert got.info["transform"] == (1.0, 0.0, 5.0) and np.isnan(got.info["odd"])
    est = got.estimator[-1]
    assert est.test_time_augment is True and est.module__hsi_channels == (8,)
    assert est.callbacks is None  # objects are not stored: the default comes back
    assert est.text_encoder_info_ == pipe[-1].text_encoder_info_
    assert not est.net_.module_.training  # ready to predict, in eval mode


def _umask():
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("Umask:")).split()[1], 8)


def test_a_bare_sdhsi_classifier_round_trips(tmp_path):
    X, y = _patches()
    clf = _sdhsi().fit(X, y)
    got = load_model(save_model(clf, tmp_path / "sdhsi.safetensors"))
    assert type(got) is SDHSIClassifier
    np.testing.assert_array_equal(got.predict_proba(X), clf.predict_proba(X))


def test_objects_outside_the_format_are_refused_naming_where(tmp_path):
    X, y = _patches()
    pipe = make_pipeline(CenterPixel(), LogisticRegression()).fit(X, y)
    with pytest.raises(TypeError, match=r"model.steps\[1\]\[1\] holds a LogisticRegression"):
        save_model(pipe, tmp_path / "m.safetensors")
    with pytest.raises(TypeError, match="model is a LogisticRegression"):
        save_model(pipe[-1], tmp_path / "m.safetensors")
    assert not list(tmp_path.iterdir())  # nothing written, no temporary left


# ------------------------------------------------------------ files that attack
class _RunsCode:
    """Unpickling this calls os.system: what a crafted model file does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_malicious_pickle_runs_nothing_unless_trusted(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.joblib"
    path.write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(ValueError, match=r"model: .*model.joblib is not a sklearn-mmlgnet model "
                                         r"file .*runs any code.*trust=True"):
        load_model(path)
    assert not marker.exists()
    # trust=True is what it says: the pickle runs (and is then refused as no classifier)
    with pytest.raises(ValueError, match="holds a int, not a fitted classifier"):
        load_model(path, trust=True)
    assert marker.exists()


def _crafted(path, model, tensors=None, version=1, fmt=FORMAT):
    description = {"format": fmt, "format_version": version, "versions": {}, "model": model}
    save_file(tensors or {"t0": np.zeros(1, np.float32)}, str(path),
              metadata={"format": fmt, "description": json.dumps(description)})
    return path


@pytest.mark.parametrize("model, message", [
    ({"estimator": {"class": "posix.system", "params": {"command": "touch {marker}"}}},
     "names the class 'posix.system', which is not one sklearn-mmlgnet loads"),
    ({"estimator": {"class": "builtins.eval", "params": {}}}, "names the class 'builtins.eval'"),
    ({"estimator": {"class": "sklearn_mmlgnet.BandStandardScaler", "params": {},
                    "attributes": {"__class__": "x"}}}, "bad attribute names"),
    ({"estimator": {"class": "sklearn_mmlgnet.BandStandardScaler", "params": {},
                    "attributes": {"mean_": {"ndarray": "missing"}}}}, "a missing array"),
    ({"pickle": "gASV"}, "unexpected entry 'pickle'"),
    ([1, 2], "unexpected list"),
])
def test_crafted_safe_files_name_only_allowed_classes(tmp_path, model, message):
    marker = tmp_path / "pwned"
    text = json.dumps(model).replace("{marker}", str(marker))
    path = _crafted(tmp_path / "m.safetensors", json.loads(text))
    with pytest.raises(ValueError, match=r"model: .*m.safetensors .*" + message):
        load_model(path)
    assert not marker.exists()


def test_corrupt_or_foreign_files_are_clear_errors(tmp_path):
    X, y = _patches()
    good = save_model(make_pipeline(BandStandardScaler(), _sdhsi()).fit(X, y),
                      tmp_path / "good.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-500])
    with pytest.raises(ValueError, match=r"model: .*cut.safetensors is a corrupt safetensors"):
        load_model(cut)
    foreign = tmp_path / "weights.safetensors"
    save_file({"w": np.zeros(2, np.float32)}, str(foreign))
    with pytest.raises(ValueError, match="is a safetensors file but not a sklearn-mmlgnet model"):
        load_model(foreign)
    future = _crafted(tmp_path / "future.safetensors", None, version=99)
    with pytest.raises(ValueError, match=r"model format version 99; .* Upgrade sklearn-mmlgnet"):
        load_model(future)
    with pytest.raises(FileNotFoundError, match="model: no such file"):
        load_model(tmp_path / "nope.safetensors")


# ----------------------------------------------------- files of this release
@pytest.mark.parametrize("name", ["model", "sdhsi"])
def test_model_files_written_by_release_0_1_0_still_load_and_predict(name):
    """The files in tests/data were written by 0.1.0 (tests/data/make_model_fixtures.py).

    A release that cannot read them breaks its users' saved models: fix the reader,
    never the fixture.
    """
    expected = json.loads((DATA / "expected_0.1.0.json").read_text())[name]
    model = load_model(DATA / f"{name}_0.1.0.safetensors")
    X = np.random.RandomState(0).normal(size=(8, 7, 5, 5)).astype(np.float32)
    if name == "model":
        assert isinstance(model, SceneModel) and model.info["patch_size"] == 5
        assert model.info["sklearn_mmlgnet_version"] == "0.1.0"
        proba = model.estimator.predict_proba(X)
    else:
        proba = model.predict_proba(X[:, :6])
    assert model.classes_.tolist() == expected["classes"]
    np.testing.assert_allclose(proba, expected["proba"], rtol=1e-4, atol=1e-5)
    assert __version__  # the fixtures stay when the version moves on


_FULL = """
import resource, signal, sys
import numpy as np
from sklearn_mmlgnet import SDHSIClassifier
from sklearn_mmlgnet.persistence import save_model
X = np.random.RandomState(0).normal(size=(20, 6, 5, 5)).astype("float32")
clf = SDHSIClassifier(module__conv3d_channels=(2,), module__spectral_kernels=(3,),
                      module__conv2d_channels=4, module__hidden=8, max_epochs=1)
clf.fit(X, np.arange(20) % 2)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
try:
    save_model(clf, sys.argv[1])
except OSError as exc:
    print(type(exc).__name__, exc)
"""


def test_a_full_disk_while_saving_is_an_oserror_naming_the_file(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "m.safetensors"
    res = subprocess.run([sys.executable, "-c", _FULL, str(out)], capture_output=True, text=True,
                         timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert res.stdout.startswith("OSError") and f"could not write {out}" in res.stdout, res
    assert list(tmp_path.iterdir()) == []  # no half-written file, no temporary
