"""Property-based fuzz of the input validation (hypothesis).

Random shapes, dtypes, NaN/inf, empty arrays and wrong band counts go to both
estimators, the transformers, ``extract_patches`` and ``predict_scene``. Every input
is either accepted, with a result that keeps the contract (finite probabilities
that sum to 1, patches of the promised shape), or rejected with a ValueError or
TypeError whose message names the argument at fault. Any other exception fails.

Values are kept within +-1e4 (plus NaN and infinities): larger finite values
overflow float32 inside the networks, which is the data's scale, not its validity.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sklearn_mmlgnet import (
    BandStandardScaler,
    CenterPixel,
    MMLGNetClassifier,
    SDHSIClassifier,
    SpectralPCA,
)
from sklearn_mmlgnet.patches import PAD_MODES, extract_patches, predict_scene, predict_scene_proba

#: Cases run per target (printed at the end of the module; see the -s output).
CASES = Counter()
_BASE = settings(deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                        HealthCheck.filter_too_much])


def fuzz(max_examples):
    """Repeatable (derandomized), no deadline, no example database left behind."""
    return settings(_BASE, max_examples=max_examples)

# Mostly the float arrays users pass, then every other kind.
DTYPES = [np.float32] * 6 + [np.float64] * 3 + [np.float16, np.int64, np.uint8, np.bool_,
                                                 np.complex64, object, "U4"]


@pytest.fixture(scope="module", autouse=True)
def _report_cases():
    yield
    total = sum(v for k, v in CASES.items() if " " not in k)  # "x fitted" etc. are subsets
    print(f"\nfuzz cases run: {total} in all; by target and how far they got: {dict(CASES)}")


def _elements(dtype, special_values=True):
    dtype = np.dtype(dtype)
    special = st.sampled_from([np.nan, np.inf, -np.inf])
    if dtype.kind == "f" and not special_values:
        return st.floats(-1e3, 1e3, width=max(32, 8 * dtype.itemsize))
    if dtype.kind == "f":
        width = 8 * dtype.itemsize
        return st.one_of(st.floats(-1e4, 1e4, width=width), special) if width > 16 else st.one_of(
            st.floats(-1e3, 1e3, width=16), special)
    if dtype.kind == "c":
        return st.complex_numbers(max_magnitude=10, allow_nan=False, allow_infinity=False)
    if dtype.kind == "O":
        return st.one_of(st.floats(-10, 10), st.none(), st.text(max_size=2), special)
    if dtype.kind == "U":
        return st.one_of(st.sampled_from(["1.5", "-2", "nan", "x", ""]))
    if dtype.kind == "b":
        return st.booleans()
    if dtype.kind == "u":
        return st.integers(0, 255)
    return st.integers(-1000, 1000)


@st.composite
def any_array(draw, shape):
    dtype = draw(st.sampled_from(DTYPES))
    special_values = draw(st.sampled_from([False, False, True]))  # NaN/inf in a third
    return draw(arrays(np.dtype(dtype), shape, elements=_elements(dtype, special_values)))


@st.composite
def patch_shapes(draw, bands=None):
    """Mostly (n, bands, P, P); sometimes empty, non-square or of another rank."""
    kind = draw(st.sampled_from(["patches"] * 5 + ["pixels", "empty", "nonsquare", "rank"]))
    n = draw(st.integers(1, 8))
    b = bands if bands is not None else draw(st.integers(1, 4))
    P = draw(st.integers(1, 4))
    if kind == "patches":
        return (n, b, P, P)
    if kind == "pixels":
        return (n, b)
    if kind == "empty":
        return draw(st.sampled_from([(0, b, P, P), (n, 0, P, P), (n, b, 0, 0), (0, b), (n, 0)]))
    if kind == "nonsquare":
        return (n, b, P, P + 1)
    return tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=5)))


@st.composite
def well_formed_patches(draw, bands=None, min_size=1):
    """Finite float patches of a sound shape: the accepted path gets its share of cases."""
    n, P = draw(st.integers(2, 8)), draw(st.integers(min_size, 4))
    b = bands if bands is not None else draw(st.integers(1, 4))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return draw(arrays(dtype, (n, b, P, P), elements=st.floats(-1e3, 1e3, width=32)))


def any_patches(bands=None, min_size=1):
    """Half well-formed, half anything (shapes, dtypes, NaN/inf, empty)."""
    return st.one_of(well_formed_patches(bands, min_size),
                     patch_shapes(bands=bands).flatmap(any_array))


def _names(exc, *names):
    msg = str(exc)
    return any(re.search(rf"(?<![A-Za-z_]){re.escape(n)}(?![A-Za-z_])", msg) for n in names)


def _rejected(exc, *names):
    assert isinstance(exc, (ValueError, TypeError)), f"{type(exc).__name__}: {exc}"
    assert _names(exc, *names), f"the error names none of {names}: {exc}"


@st.composite
def labels(draw, n):
    n_y = draw(st.sampled_from([n] * 6 + [max(n - 1, 0), n + 1]))
    kind = draw(st.sampled_from(["int"] * 4 + ["str"] * 2 + ["float", "single", "continuous",
                                                             "nan", "mixed", "column"]))
    k = draw(st.integers(2, 3))  # classes, each present when n_y >= k
    cyclic = np.array(draw(st.permutations([i % k for i in range(n_y)])), dtype=int)
    if kind == "int":
        return cyclic
    if kind == "str":
        return np.array(list("abc"))[cyclic]
    if kind == "float":
        return cyclic.astype(float)
    if kind == "single":
        return np.zeros(n_y, int)
    if kind == "continuous":
        return np.linspace(0, 1, n_y) + 0.123
    if kind == "nan":
        return np.r_[np.zeros(max(n_y - 1, 0)), np.nan]
    if kind == "mixed":
        return np.array([1, "a"] * n_y, dtype=object)[:n_y]
    return np.arange(n_y).reshape(-1, 1) % 2


EMB = {k: v for k, v in zip([0, 1, 2, "a", "b", "c"], np.eye(6, 6, dtype=np.float32))}


def _make(kind, n_lidar):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "mmlgnet":
            return MMLGNetClassifier(n_lidar_bands=n_lidar, text_embeddings=EMB, hsi_channels=(4,),
                                     lidar_channels=(2,), fusion_dim=4, max_epochs=1,
                                     batch_size=4, random_state=0)
        return SDHSIClassifier(conv3d_channels=(2,), spectral_kernels=(3,), conv2d_channels=4,
                               hidden=4, max_epochs=1, batch_size=4, random_state=0)


def _check_proba(proba, n, n_classes):
    assert proba.shape == (n, n_classes)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("kind", ["mmlgnet", "sdhsi"])
@fuzz(50)
@given(data=st.data())
def test_estimators_accept_or_name_the_bad_argument(kind, data):
    CASES[kind] += 1
    n_lidar = data.draw(st.integers(0, 2)) if kind == "mmlgnet" else 0
    X = data.draw(any_patches(), label="X")
    n = X.shape[0] if X.ndim else 0
    y = data.draw(labels(n), label="y")
    clf = _make(kind, n_lidar)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(X, y)
    except Exception as exc:  # noqa: BLE001 - the property is about which exceptions
        _rejected(exc, "X", "y", "n_lidar_bands")
        return
    CASES[f"{kind} fitted"] += 1
    _check_proba(clf.predict_proba(X), len(X), len(clf.classes_))
    # Predict on other arrays: more samples, other bands, other sizes.
    bands = data.draw(st.sampled_from([clf.n_features_in_] * 3 + [clf.n_features_in_ + 1, 1]))
    X2 = data.draw(any_patches(bands, clf.patch_size_), label="X2")
    try:
        proba = clf.predict_proba(X2)
    except Exception as exc:  # noqa: BLE001
        _rejected(exc, "X")
        return
    CASES[f"{kind} predicted"] += 1
    _check_proba(proba, len(X2), len(clf.classes_))
    assert set(clf.predict(X2)) <= set(clf.classes_)


@pytest.mark.parametrize("Transformer", [BandStandardScaler, SpectralPCA, CenterPixel])
@fuzz(50)
@given(data=st.data())
def test_transformers_accept_or_name_the_bad_argument(Transformer, data):
    CASES[Transformer.__name__] += 1
    params = {}
    if Transformer is SpectralPCA:
        params = dict(n_components=data.draw(st.integers(1, 3)),
                      n_lidar_bands=data.draw(st.integers(0, 2)), random_state=0)
    X = data.draw(any_patches(), label="X")
    est = Transformer(**params)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. PCA of a single pixel
            est.fit(X)
    except Exception as exc:  # noqa: BLE001
        _rejected(exc, "X", "n_lidar_bands", "n_components")
        return
    bands = data.draw(st.sampled_from([est.n_features_in_] * 3 + [est.n_features_in_ + 1]))
    X2 = data.draw(any_patches(bands), label="X2")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Xt = est.transform(X2)
    except Exception as exc:  # noqa: BLE001
        _rejected(exc, "X")
        return
    CASES[f"{Transformer.__name__} transformed"] += 1
    assert Xt.shape[0] == X2.shape[0]
    assert np.isfinite(Xt).all()
    if Transformer is CenterPixel:
        assert Xt.shape == X2.shape[:2]
    else:
        assert Xt.ndim == X2.ndim and Xt.shape[2:] == X2.shape[2:]


@st.composite
def scenes(draw, bands=None):
    H, W = draw(st.integers(0, 6)), draw(st.integers(0, 6))
    B = bands if bands is not None else draw(st.integers(0, 3))
    hsi_shape = draw(st.sampled_from([(H, W, B)] * 6 + [(H, W), (H, W, B, 1)]))
    if draw(st.booleans()):  # a well-formed float scene half of the time
        hsi_shape = (max(H, 1), max(W, 1), max(B, 1) if bands is None else B)
        H, W = hsi_shape[:2]
        hsi = draw(arrays(np.float32, hsi_shape, elements=st.floats(-1e3, 1e3, width=32)))
    else:
        hsi = draw(any_array(hsi_shape))
    lidar_kind = draw(st.sampled_from(["none", "2d", "2d", "2d", "3d", "mismatch"]))
    if lidar_kind == "none":
        lidar = None
    elif lidar_kind == "2d":
        lidar = draw(any_array((H, W)))
    elif lidar_kind == "3d":
        lidar = draw(any_array((H, W, draw(st.integers(0, 2)))))
    else:
        lidar = draw(any_array((H + 1, W)))
    return hsi, lidar


def _coords(draw, size, n):
    kind = draw(st.sampled_from(["ok"] * 6 + ["outside", "whole floats", "float", "nan", "str",
                                              "2d"]))
    if kind == "ok":
        return draw(st.lists(st.integers(0, max(size - 1, 0)), min_size=n, max_size=n))
    if kind == "outside":
        return draw(st.lists(st.sampled_from([-1, size]), min_size=n, max_size=n))
    if kind == "whole floats":
        return np.zeros(n)
    if kind == "float":
        return [0.5] * n
    if kind == "nan":
        return [np.nan] * n
    if kind == "str":
        return ["a"] * n
    return np.zeros((n, 2), int)


@fuzz(200)
@given(data=st.data())
def test_extract_patches_accepts_or_names_the_bad_argument(data):
    CASES["extract_patches"] += 1
    hsi, lidar = data.draw(scenes(), label="scene")
    H, W = (hsi.shape + (0, 0))[:2]
    n = data.draw(st.integers(0, 5))
    rows = _coords(data.draw, H, n)
    cols = _coords(data.draw, W, data.draw(st.sampled_from([n] * 5 + [n + 1])))
    patch_size = data.draw(st.sampled_from([1, 3, 3, 5, 5, 7, 9, 0, -1, 2, 2.0, "3", True, None]))
    pad_mode = data.draw(st.sampled_from(list(PAD_MODES) * 2 + ["wrap", None]))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = extract_patches(hsi, lidar, rows, cols, patch_size, pad_mode)
    except Exception as exc:  # noqa: BLE001
        _rejected(exc, "hsi", "lidar", "rows", "cols", "patch_size", "pad_mode")
        return
    CASES["extract_patches accepted"] += 1
    n_lidar = 0 if lidar is None else (1 if np.ndim(lidar) == 2 else lidar.shape[2])
    P = int(patch_size)
    assert out.dtype == np.float32
    r, c = np.ravel(rows).astype(int), np.ravel(cols).astype(int)  # any shape, read flat
    assert out.shape == (len(r), hsi.shape[2] + n_lidar, P, P)
    if len(r):  # the centre pixel is the scene's pixel, HSI bands first
        centre = out[:, : hsi.shape[2], P // 2, P // 2]
        expected = hsi[r, c].astype(np.float32)
        np.testing.assert_array_equal(centre, expected)


@pytest.fixture(scope="module")
def scene_model():
    """A tiny MMLGNet fitted on 3 HSI + 1 LiDAR bands, 3 x 3 patches."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(24, 4, 3, 3)).astype(np.float32)
    y = np.repeat(["a", "b", "c"], 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MMLGNetClassifier(text_embeddings=EMB, hsi_channels=(4,), lidar_channels=(2,),
                                 fusion_dim=4, max_epochs=1, random_state=0).fit(X, y)


@fuzz(100)
@given(data=st.data())
def test_predict_scene_accepts_or_names_the_bad_argument(scene_model, data):
    CASES["predict_scene"] += 1
    if data.draw(st.booleans()):  # sound arguments: the accepted path gets its share
        H, W = data.draw(st.integers(1, 7)), data.draw(st.integers(1, 7))
        hsi = data.draw(arrays(np.float32, (H, W, 3), elements=st.floats(-1e3, 1e3, width=32)))
        lidar = data.draw(arrays(np.float64, (H, W), elements=st.floats(-1e3, 1e3)))
        patch_size = data.draw(st.sampled_from([p for p in (3, 5, 7) if p <= 2 * min(H, W) - 1]
                                               or [1]))
        batch_size = data.draw(st.sampled_from([1, 7, 1024]))
        method = data.draw(st.sampled_from(["auto", "dense", "patches"]))
        mask = data.draw(st.sampled_from(["none", "random"]))
    else:
        bands = data.draw(st.sampled_from([3, 3, 3, 2, 4]))
        hsi, lidar = data.draw(scenes(bands=bands), label="scene")
        H, W = (hsi.shape + (0, 0))[:2]
        patch_size = data.draw(st.sampled_from([3, 3, 5, 1, 4, -1]))
        batch_size = data.draw(st.sampled_from([7, 1024, 1, 0, 2.5]))
        method = data.draw(st.sampled_from(["auto", "dense", "patches", "fast"]))
        mask = data.draw(st.sampled_from(["none", "random", "random", "wrong"]))
    if mask == "none":
        mask = None
    elif mask == "random":
        mask = data.draw(arrays(bool, (H, W)))
    else:
        mask = np.ones((H + 1, W), bool)
    proba_too = data.draw(st.booleans())
    kw = dict(patch_size=patch_size, batch_size=batch_size, mask=mask, method=method)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            labels_map = predict_scene(scene_model, hsi, lidar, fill_value="", **kw)
            proba = predict_scene_proba(scene_model, hsi, lidar, **kw) if proba_too else None
    except Exception as exc:  # noqa: BLE001
        _rejected(exc, "hsi", "lidar", "patch_size", "batch_size", "mask", "method", "bands")
        return
    CASES["predict_scene accepted"] += 1
    keep = np.ones((H, W), bool) if mask is None else mask
    assert labels_map.shape == (H, W)
    assert set(labels_map[keep].tolist()) <= {"a", "b", "c"}
    assert (labels_map[~keep] == "").all()
    if proba is not None:
        assert proba.shape == (H, W, 3)
        assert np.isfinite(proba[keep]).all()
        np.testing.assert_allclose(proba[keep].sum(axis=-1), 1.0, atol=1e-6)
        assert np.isnan(proba[~keep]).all()
