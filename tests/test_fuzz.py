"""Property-based fuzz of the input validation (hypothesis).

Random shapes, dtypes, NaN/inf, empty arrays and wrong band counts go to both
estimators, the transformers, ``extract_patches`` and ``predict_scene``. Every input
is either accepted, with a result that keeps the contract (finite probabilities
that sum to 1, patches of the promised shape), or rejected with a ValueError or
TypeError whose message names the argument at fault (or, from the estimators and
transformers, is one of scikit-learn's own validation messages). Any other
exception fails. The second half fuzzes files: ``read_scene``, ``predict_raster``
and the command over corrupt and odd rasters and label files. The number of cases
run is printed at the end of the module (``pytest -s``).

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
from sklearn_mmlgnet.patches import PAD_MODES, extract_patches
from sklearn_mmlgnet.prediction import predict_scene, predict_scene_proba

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


#: scikit-learn's own input validation (``check_array`` / ``validate_data``, which the
#: estimators and transformers use) says what is wrong in these words, whatever the
#: argument's name; they are accepted from the estimators and transformers.
SKLEARN_VALIDATION = re.compile(
    r"Found array with 0 (sample|feature)\(s\)|Expected 2D array, got|Complex data not "
    r"supported|could not convert string to float|Found input variables with inconsistent "
    r"numbers of samples|Unknown label type")


def _rejected(exc, *names, sklearn_messages=False):
    assert isinstance(exc, (ValueError, TypeError)), f"{type(exc).__name__}: {exc}"
    if sklearn_messages and SKLEARN_VALIDATION.search(str(exc)):
        return
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
            return MMLGNetClassifier(n_lidar_bands=n_lidar, text_embeddings=EMB,
                                     module__hsi_channels=(4,), module__lidar_channels=(2,),
                                     module__fusion_dim=4, max_epochs=1, batch_size=4,
                                     random_state=0)
        return SDHSIClassifier(module__conv3d_channels=(2,), module__spectral_kernels=(3,),
                               module__conv2d_channels=4, module__hidden=4, max_epochs=1,
                               batch_size=4, random_state=0)


def _check_proba(proba, n, n_classes):
    assert proba.shape == (n, n_classes)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("kind", ["mmlgnet", "sdhsi"])
@fuzz(25)
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
        _rejected(exc, "X", "y", "n_lidar_bands", sklearn_messages=True)
        return
    CASES[f"{kind} fitted"] += 1
    _check_proba(clf.predict_proba(X), len(X), len(clf.classes_))
    # Predict on other arrays: more samples, other bands, other sizes.
    bands = data.draw(st.sampled_from([clf.n_features_in_] * 3 + [clf.n_features_in_ + 1, 1]))
    X2 = data.draw(any_patches(bands, clf.patch_size_), label="X2")
    try:
        proba = clf.predict_proba(X2)
    except Exception as exc:  # noqa: BLE001
        _rejected(exc, "X", sklearn_messages=True)
        return
    CASES[f"{kind} predicted"] += 1
    _check_proba(proba, len(X2), len(clf.classes_))
    assert set(clf.predict(X2)) <= set(clf.classes_)


@pytest.mark.parametrize("Transformer", [BandStandardScaler, SpectralPCA, CenterPixel])
@fuzz(40)
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
        _rejected(exc, "X", "n_lidar_bands", "n_components", sklearn_messages=True)
        return
    bands = data.draw(st.sampled_from([est.n_features_in_] * 3 + [est.n_features_in_ + 1]))
    X2 = data.draw(any_patches(bands), label="X2")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Xt = est.transform(X2)
    except Exception as exc:  # noqa: BLE001
        _rejected(exc, "X", sklearn_messages=True)
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
        return MMLGNetClassifier(text_embeddings=EMB, module__hsi_channels=(4,),
                                 module__lidar_channels=(2,), module__fusion_dim=4, max_epochs=1,
                                 random_state=0).fit(X, y)


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


# =========================================================================
# Files: read_scene, predict_raster and the command over corrupt and odd
# rasters and label files. Every case ends in a result that keeps the contract
# or in a clear error: an exception of a documented type whose message names
# the argument or the file at fault (library), or one line on stderr and an
# exit status of the documented table, never 1 "unexpected" (command).
# =========================================================================
import contextlib  # noqa: E402
import io as _stdio  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

rasterio = pytest.importorskip("rasterio", reason="the 'geo' extra (rasterio) is not installed")
from rasterio.crs import CRS  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402

from sklearn_mmlgnet.io import read_scene  # noqa: E402

from .conftest import HAS_ST  # noqa: E402

FILE_ERRORS = (ValueError, TypeError, FileNotFoundError, PermissionError, OSError)
ROLES = ("hsi", "lidar", "labels", "out", "bands", "window", "block_size", "batch_size",
         "patch_size", "class_field", "model", "like", "path")
UTM = CRS.from_epsg(32617)
GRID = from_origin(542055.0, 4134999.0, 1.0, 1.0)
CLI_EXIT = {0, 2, 3, 5}  # done, bad input, missing file, file-system error

RASTER_DTYPES = ["uint8", "int16", "uint16", "int32", "float32", "float32", "float64"]
HSI_FAULTS = ["none"] * 8 + ["truncated", "garbage", "empty", "envi_size", "envi_ok",
                             "vrt_network", "folder"]
LIDAR_KINDS = ["none", "ok", "ok", "ok", "shape", "crs", "transform", "truncated"]
LABEL_KINDS = ["none", "raster", "raster", "fractional", "huge", "negative", "one_class",
               "nonfinite", "bad_names", "other_grid", "geojson", "geojson_lonlat",
               "geojson_utm_no_crs", "geojson_deep", "geojson_nonobject", "geojson_bad_crs",
               "geojson_bad_geom", "geojson_list_class", "geojson_empty", "json_garbage",
               "shp_garbage"]


def _raster(path, cube, dtype, nodata=None, crs=UTM, transform=GRID, **kw):
    with np.errstate(invalid="ignore", over="ignore"), rasterio.open(
            path, "w", driver="GTiff", width=cube.shape[2], height=cube.shape[1],
            count=cube.shape[0], dtype=dtype, crs=crs, transform=transform, nodata=nodata,
            **kw) as dst:
        dst.write(cube.astype(dtype))
    return path


def _values(draw, shape, dtype):
    kind = np.dtype(dtype).kind
    if kind == "f":
        elements = st.one_of(st.floats(-1e4, 1e4, width=32),
                             st.sampled_from([np.nan, np.inf, -np.inf, 0.0]))
    else:
        info = np.iinfo(dtype)
        elements = st.integers(max(info.min, -10_000), min(info.max, 10_000))
    return draw(arrays(np.float64 if kind == "f" else np.int64, shape, elements=elements))


@st.composite
def file_cases(draw, sound=False):
    """A dict describing the files of one case (built by _build in a fresh folder).

    ``sound``: half of the cases are well-formed 2-band scenes with a LiDAR raster,
    so that the accepted path (the one the model fits) gets its share.
    """
    if sound and draw(st.booleans()):
        case = draw(file_cases())
        return case | dict(B=2, cube=_values(draw, (2, case["H"], case["W"]), case["dtype"]),
                           hsi_fault="none", lidar="ok", bands=None, window=None)
    H, W = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    B = draw(st.sampled_from([2, 2, 1, 3]))
    dtype = draw(st.sampled_from(RASTER_DTYPES))
    cube = _values(draw, (B, H, W), dtype)
    nodata = draw(st.sampled_from([None, None, "value", "nan"] if np.dtype(dtype).kind == "f"
                                  else [None, None, "value"]))
    if draw(st.booleans()) and H > 2 and W > 2:  # a block of nodata (a flight line's corner)
        nodata = "value"
        cube[:, : H // 2, : W // 2] = -9999 if np.dtype(dtype).kind in "if" else 0
    labels = draw(arrays(np.int64, (H, W), elements=st.integers(0, 3)))
    return dict(H=H, W=W, B=B, dtype=dtype, cube=cube, nodata=nodata, labels=labels,
                hsi_fault=draw(st.sampled_from(HSI_FAULTS)),
                lidar=draw(st.sampled_from(LIDAR_KINDS)),
                label_kind=draw(st.sampled_from(LABEL_KINDS)),
                cut=draw(st.floats(0.05, 0.95)),
                bands=draw(st.sampled_from([None] * 6 + [[0], [B], slice(0, 1), "x", [-1]])),
                window=draw(st.sampled_from([None] * 6 + [((0, H), (0, W)), ((0, H + 1), (0, W)),
                                                          ((1, 1), (0, W)), "bad"])))


def _truncate(path, fraction):
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(max(1, int(size * fraction)))


def _polygon(x0, y0, x1, y1):
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x0, y1], [x1, y1], [x1, y0], [x0, y0]]]}


def _geojson(case, folder):
    kind = case["label_kind"]
    x0, y0 = GRID.c, GRID.f
    feats = [{"type": "Feature", "properties": {"class": name},
              "geometry": _polygon(x0 + i, y0 - case["H"], x0 + i + 1, y0)}
             for i, name in zip(range(case["W"]), ["Oak", "Pine"] * 9)]
    data = {"type": "FeatureCollection", "features": feats,
            "crs": {"type": "name", "properties": {"name": "EPSG:32617"}}}
    if kind == "geojson_lonlat":
        from rasterio.warp import transform_geom

        for f in feats:
            f["geometry"] = transform_geom(UTM, CRS.from_epsg(4326), f["geometry"])
        del data["crs"]
    elif kind == "geojson_utm_no_crs":
        del data["crs"]
    elif kind == "geojson_deep":
        return '{"features": ' + "[" * 20_000 + "]" * 20_000 + "}"
    elif kind == "geojson_nonobject":
        data["features"] = [1, "a", None, []]
    elif kind == "geojson_bad_crs":
        data["crs"] = {"type": "name", "properties": {"name": "EPSG:0"}}
    elif kind == "geojson_bad_geom":
        feats[0]["geometry"] = {"type": "Polygon", "coordinates": [[["a", 1]]]}
    elif kind == "geojson_list_class":
        feats[0]["properties"]["class"] = {"nested": [1]}
    elif kind == "geojson_empty":
        data["features"] = []
    return json.dumps(data)


def _build(case, folder):
    """Write the case's files; returns (hsi, lidar, labels) paths (or None)."""
    folder = Path(folder)
    nodata = {None: None, "nan": float("nan"), "value": -9999 if np.dtype(case["dtype"]).kind
              in "if" else 0}[case["nodata"]]
    hsi = _raster(folder / "hsi.tif", case["cube"], case["dtype"], nodata)
    fault = case["hsi_fault"]
    if fault == "truncated":
        _truncate(hsi, case["cut"])
    elif fault == "garbage":
        hsi.write_bytes(b"II*\x00" + bytes(range(256)) * 3)
    elif fault == "empty":
        hsi.write_bytes(b"")
    elif fault in ("envi_size", "envi_ok"):
        B, H, W = case["cube"].shape
        with np.errstate(invalid="ignore", over="ignore"):
            case["cube"].astype("<i2").tofile(folder / "flight.img")
        bands = B + (1 if fault == "envi_size" else 0)
        (folder / "flight.hdr").write_text(
            f"ENVI\nsamples = {W}\nlines = {H}\nbands = {bands}\nheader offset = 0\n"
            "file type = ENVI Standard\ndata type = 2\ninterleave = bsq\nbyte order = 0\n"
            "map info = {UTM, 1, 1, 542055.0, 4134999.0, 1.0, 1.0, 17, North, WGS-84}\n")
        hsi = folder / "flight.hdr"
    elif fault == "vrt_network":
        hsi = folder / "remote.vrt"
        hsi.write_text(f'<VRTDataset rasterXSize="{case["W"]}" rasterYSize="{case["H"]}">'
                       '<VRTRasterBand dataType="Byte" band="1"><SimpleSource><SourceFilename>'
                       "/vsicurl/http://127.0.0.1:9/x.tif</SourceFilename></SimpleSource>"
                       "</VRTRasterBand></VRTDataset>")
    elif fault == "folder":
        hsi = folder / "a_folder"
        hsi.mkdir()
    lidar = None
    kind = case["lidar"]
    if kind != "none":
        H, W = case["H"] + (kind == "shape"), case["W"]
        lidar = _raster(folder / "chm.tif", np.ones((1, H, W)), "float32",
                        crs=CRS.from_epsg(32618) if kind == "crs" else UTM,
                        transform=from_origin(1.0, 2.0, 1.0, 1.0) if kind == "transform" else GRID)
        if kind == "truncated":
            _truncate(lidar, case["cut"])
    labels, kind = None, case["label_kind"]
    lab = case["labels"]
    if kind in ("raster", "negative", "one_class", "bad_names", "other_grid"):
        lab = {"negative": lab - 2, "one_class": (lab > 0).astype(np.int64)}.get(kind, lab)
        labels = _raster(folder / "gt.tif", lab[None], "int16",
                         transform=from_origin(10, 10, 1, 1) if kind == "other_grid" else GRID)
        if kind == "bad_names":
            with rasterio.open(labels, "r+") as dst:
                dst.update_tags(CLASS_NAMES='{"one": "Oak", "2": 7}')
    elif kind in ("fractional", "nonfinite"):
        lab = lab.astype(np.float64)
        lab.flat[0] = 1.5 if kind == "fractional" else np.inf
        labels = _raster(folder / "gt.tif", lab[None], "float32")
    elif kind == "huge":
        labels = _raster(folder / "gt.tif", (lab * 40_000)[None], "uint32")
    elif kind.startswith("geojson"):
        labels = folder / "gt.geojson"
        labels.write_text(_geojson(case, folder))
    elif kind == "json_garbage":
        labels = folder / "gt.json"
        labels.write_text('{"type": "FeatureCollection", "features": [')
    elif kind == "shp_garbage":
        labels = folder / "gt.shp"
        labels.write_bytes(b"\x00\x00\x27\x0a" + bytes(96))
    return str(hsi), None if lidar is None else str(lidar), labels and str(labels)


def _file_error(exc):
    """The exception is a documented type and names the argument or a file of the case."""
    assert isinstance(exc, FILE_ERRORS), f"{type(exc).__name__}: {exc}"
    msg = str(exc)
    assert _names(exc, *ROLES) or ".tif" in msg or ".geojson" in msg or ".shp" in msg \
        or ".hdr" in msg or ".vrt" in msg or ".json" in msg, f"names nothing: {msg}"


@fuzz(100)
@given(case=file_cases())
def test_read_scene_reads_or_names_the_fault(case):
    CASES["read_scene"] += 1
    with tempfile.TemporaryDirectory() as folder:
        hsi, lidar, labels = _build(case, folder)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scene = read_scene(hsi, lidar, labels, bands=case["bands"],
                                   window=case["window"])
        except Exception as exc:  # noqa: BLE001 - the property is about which exceptions
            _file_error(exc)
            return
    CASES["read_scene accepted"] += 1
    H, W = scene.hsi.shape[:2]
    assert scene.hsi.dtype == np.float32 and scene.lidar.shape[:2] == (H, W)
    finite = np.isfinite(scene.hsi).all(-1) & np.isfinite(scene.lidar).all(-1)
    np.testing.assert_array_equal(scene.valid_mask, finite)  # no inf left: NaN or a value
    assert not np.isinf(scene.hsi).any() and not np.isinf(scene.lidar).any()
    if scene.labels is not None:
        assert scene.labels.shape == (H, W) and scene.labels.dtype == np.int64
        assert scene.labels.min(initial=0) >= 0
        assert all(0 < k < 2**31 for k in scene.class_names)


@pytest.fixture(scope="module")
def file_model():
    """A quick SceneModel of 2 HSI + 1 LiDAR bands, 3 x 3 patches (centre pixel + LR)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from sklearn_mmlgnet.scene import SceneModel

    rng = np.random.RandomState(0)
    X = rng.normal(size=(30, 3, 3, 3)).astype(np.float32)
    y = np.arange(30) % 3 + 1
    est = make_pipeline(BandStandardScaler(), CenterPixel(), LogisticRegression()).fit(X, y)
    info = dict(n_hsi_bands=2, n_lidar_bands=1, patch_size=3, class_names={1: "Oak", 2: "Pine"},
                fill_values=[0.0] * 3, band_std=[1.0] * 3)
    return SceneModel(est, info)


@fuzz(60)
@given(case=file_cases(sound=True), data=st.data())
def test_predict_raster_writes_a_map_or_names_the_fault(file_model, case, data):
    from sklearn_mmlgnet.io import predict_raster, proba_path_for

    CASES["predict_raster"] += 1
    proba = data.draw(st.booleans())
    block = data.draw(st.sampled_from([256, 256, 256, 3, 1, 0, (2, 5), "x"]))
    out_kind = data.draw(st.sampled_from(["map"] * 6 + ["hsi", "folder"]))
    with tempfile.TemporaryDirectory() as folder:
        hsi, lidar, _ = _build(case, folder)
        out = {"map": str(Path(folder) / "out" / "map.tif"), "hsi": hsi, "folder": folder}[out_kind]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                path = predict_raster(file_model, hsi, lidar, out, bands=case["bands"],
                                      block_size=block, proba=proba, progress=False)
        except Exception as exc:  # noqa: BLE001
            _file_error(exc)
            assert not (Path(folder) / "out").exists() or not any(
                p.name.startswith(".") for p in (Path(folder) / "out").iterdir())
            return
        CASES["predict_raster accepted"] += 1
        with rasterio.open(path) as src:
            pred = src.read(1)
        assert pred.shape == (case["H"], case["W"]) and set(np.unique(pred)) <= {0, 1, 2, 3}
        if proba:
            with rasterio.open(proba_path_for(path)) as src:
                p = src.read()
            keep = pred > 0
            np.testing.assert_allclose(p[:, keep].sum(axis=0), 1, rtol=1e-4)
            assert np.isnan(p[:, ~keep]).all()
        assert not any(p.name.startswith(".") for p in Path(path).parent.iterdir())


def _run_cli(argv):
    """(exit status, stderr) of ``mmlgnet argv`` run in-process."""
    from sklearn_mmlgnet.cli import main

    err = _stdio.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(_stdio.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(argv)
    return code, err.getvalue()


def _cli_outcome(code, err, argv):
    assert code in CLI_EXIT, f"exit {code} for {argv}: {err}"
    if code:
        lines = err.strip().splitlines()
        assert lines and lines[-1].startswith("mmlgnet: error: "), err
        assert "Traceback" not in err


@pytest.fixture(scope="module")
def safe_model_path(tmp_path_factory):
    """A tiny MMLGNet of 2 HSI + 1 LiDAR bands in the safe model format."""
    from sklearn_mmlgnet.persistence import save_model
    from sklearn_mmlgnet.scene import SceneModel

    rng = np.random.RandomState(0)
    X = rng.normal(size=(24, 3, 3, 3)).astype(np.float32)
    y = np.arange(24) % 2 + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = MMLGNetClassifier(text_embeddings=np.eye(2, 4, dtype=np.float32),
                                module__hsi_channels=(2,), module__lidar_channels=(2,),
                                module__fusion_dim=2, max_epochs=1, random_state=0).fit(X, y)
    info = dict(n_hsi_bands=2, n_lidar_bands=1, patch_size=3, class_names={1: "Oak", 2: "Pine"},
                fill_values=[0.0] * 3, band_std=[1.0] * 3)
    path = tmp_path_factory.mktemp("fuzz_model") / "model.safetensors"
    return str(save_model(SceneModel(clf, info), path))


@fuzz(40)
@given(case=file_cases(sound=True), data=st.data())
def test_the_command_ends_in_a_documented_status(safe_model_path, case, data):
    CASES["cli_predict"] += 1
    extra = data.draw(st.sampled_from([[], [], ["--proba"], ["--block-size", "2"],
                                       ["--block-size", "0"], ["--batch-size", "-3"]]))
    model = data.draw(st.sampled_from([safe_model_path] * 5 + ["garbage", "missing"]))
    with tempfile.TemporaryDirectory() as folder:
        hsi, lidar, _ = _build(case, folder)
        if model == "garbage":
            model = str(Path(folder) / "model.safetensors")
            Path(model).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage}")
        elif model == "missing":
            model = str(Path(folder) / "missing.safetensors")
        argv = ["predict", model, "--hsi", hsi, "--out", str(Path(folder) / "map.tif"),
                "--quiet", *extra] + (["--lidar", lidar] if lidar else [])
        code, err = _run_cli(argv)
        _cli_outcome(code, err, argv)
        CASES[f"cli_predict exit {code}"] += 1


@fuzz(10)
@given(case=file_cases(sound=True), data=st.data())
def test_fit_on_odd_files_ends_in_a_documented_status(case, data):
    CASES["cli_fit"] += 1
    patch = data.draw(st.sampled_from(["1", "1", "3", "0", "4"]))
    encoder = "sentence-transformers" if HAS_ST else "random-clip"
    with tempfile.TemporaryDirectory() as folder:
        hsi, lidar, labels = _build(case, folder)
        argv = ["fit", "--hsi", hsi, "--labels", labels or hsi, "--out",
                str(Path(folder) / "m.safetensors"), "--patch-size", patch, "--epochs", "1",
                "--hsi-channels", "2", "--lidar-channels", "2", "--fusion-dim", "2", "--quiet",
                "--text-encoder", encoder] + (["--lidar", lidar] if lidar else [])
        code, err = _run_cli(argv)
        _cli_outcome(code, err, argv)
        CASES[f"cli_fit exit {code}"] += 1
