"""Loaders of the public HSI (+ LiDAR) benchmark scenes, in the style of sklearn's ``fetch_*``.

Each reads the public files from ``data_home`` (see :func:`get_data_home`) in
any of the common layouts and returns a Bunch with ``hsi`` (H, W, B),
``lidar`` (H, W, L), ``labels`` (H, W; 0 = unlabelled), ``class_names``
({label: name}), ``train_mask`` and ``test_mask``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..model_selection import sample_per_class, spatially_disjoint_split, trento_standard_split
from ._base import download as _download_file
from ._base import download_and_extract, get_data_home, locate, make_scene_bunch, read_mat

TRENTO_CLASSES = {1: "Apple trees", 2: "Buildings", 3: "Ground", 4: "Woods", 5: "Vineyard",
                  6: "Roads"}
HOUSTON2013_CLASSES = {
    1: "Healthy grass", 2: "Stressed grass", 3: "Synthetic grass", 4: "Trees", 5: "Soil",
    6: "Water", 7: "Residential", 8: "Commercial", 9: "Road", 10: "Highway", 11: "Railway",
    12: "Parking lot 1", 13: "Parking lot 2", 14: "Tennis court", 15: "Running track"}
MUUFL_CLASSES = {
    1: "Trees", 2: "Mostly grass", 3: "Mixed ground surface", 4: "Dirt and sand", 5: "Road",
    6: "Water", 7: "Building shadow", 8: "Building", 9: "Sidewalk", 10: "Yellow curb",
    11: "Cloth panels"}
JASPER_RIDGE_CLASSES = {1: "Tree", 2: "Water", 3: "Dirt", 4: "Road"}

# Public sources and checksums (facts as listed by rs-fusion-datasets and the files here).
_TRENTO_URL = "https://github.com/tyust-dayu/Trento/archive/b4afc449ce5d6936ddc04fe267d86f9f35536afd.zip"
_TRENTO_SHA256 = "b203331b039d994015c4137753f15973cb638046532b8dced6064888bf970631"
_MUUFL_URL = "https://github.com/GatorSense/MUUFLGulfport/archive/refs/tags/v0.1.zip"
_MUUFL_SHA256 = "2219e6259e3ad80521a8a7ff879916624efa61eb6df1bfd80538f6f2d4befa2c"
_HOUSTON_URL = "https://machinelearning.ee.uh.edu/2egf4tg8hial13gt/2013_DFTC.zip"
_HOUSTON_SHA256 = "f4d619d5cbcb09d0301038f1b8fe83def6c2d484334b7b8127740a00ecf7e245"
_HOUSTON_VA_URL = ("https://github.com/songyz2019/rs-fusion-datasets-dist/releases/download/v1.0.0/"
                   "2013_IEEE_GRSS_DF_Contest_Samples_VA.txt")
_HOUSTON_VA_SHA256 = "768bb02193d04c8020b45f1f31a49926a5b914040f77f71a81df756d6e8b8dcb"
_JASPER_URLS = {
    "JasperRidge2_R198.mat": (
        "https://github.com/mhaut/HSI-datasets/raw/master/Unmixing/JasperRidge2_R198.mat",
        "0e4118a6452f6044978a8ca3762fb0f791115467904936d463c4e111e56e682e"),
    "_EndJasperRidge2_R198.mat": (
        "https://github.com/mhaut/HSI-datasets/raw/master/Unmixing/_EndJasperRidge2_R198.mat",
        "92f5697b43705802b904fd13ba99b6ce65a3d203682864abc3fbec922beec374"),
}


def _check_cube(name, arr, shape=None):
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or (shape is not None and arr.shape[:2] != shape):
        raise ValueError(f"{name} has shape {arr.shape}; expected (H, W[, bands]) matching {shape}.")
    return arr


def _split(labels, split, random_state, patch_size):
    """train/test masks for a scene without a fixed split."""
    if split == "disjoint":
        return spatially_disjoint_split(labels, patch_size=patch_size, random_state=random_state)
    if isinstance(split, float):
        return sample_per_class(labels, fraction=split, random_state=random_state)
    if isinstance(split, int):
        return sample_per_class(labels, n_per_class=split, random_state=random_state)
    raise ValueError(
        f"split must be 'disjoint', a fraction per class (float) or a count per class (int); "
        f"got {split!r}.")


# --------------------------------------------------------------------------- Trento
def load_trento(data_home=None, download=False, split="standard", all_lidar_rasters=False,
                random_state=0, patch_size=11):
    """Trento (166 x 600 px, 63 HSI bands + LiDAR, 6 classes).

    Layouts read from ``data_home/trento/``:

    * ``Italy_hsi.mat``, ``Italy_lidar.mat``, ``allgrd.mat`` (github.com/tyust-dayu/Trento;
      ``download=True`` fetches this one and checks its SHA-256);
    * ``HSI.mat``, ``LiDAR.mat``, ``TRLabel.mat``, ``TSLabel.mat`` (the MFT/GLT layout,
      which fixes the split).

    Parameters
    ----------
    data_home : str or Path, optional
    download : bool, default=False
    split : {"standard", "disjoint"} or float or int, default="standard"
        ``"standard"``: the published split, 129/125/105/154/184/122 training pixels
        per class (819), the other 29,395 for test: read from ``TRLabel.mat`` /
        ``TSLabel.mat`` when they are in the folder (either layout; with
        ``allgrd.mat`` they must agree with it), else drawn at random with these
        counts (``random_state``). ``"disjoint"``: spatial blocks with no patch
        overlap; a float or int: that fraction or count per class.
    all_lidar_rasters : bool, default=False
        ``Italy_lidar.mat`` holds two rasters; the benchmark uses the first (the
        elevation). ``True`` returns both.
    random_state : int, default=0
        Draws the split.
    patch_size : int, default=11
        Buffer of the ``"disjoint"`` split.
    """
    if download:
        download_and_extract("trento", data_home, _TRENTO_URL, "trento.zip", _TRENTO_SHA256)
    layout, files = locate("trento", data_home, {
        "tyust-dayu/Trento": {"hsi": ["Italy_hsi.mat"], "lidar": ["Italy_lidar.mat"],
                              "labels": ["allgrd.mat"]},
        "MFT": {"hsi": ["HSI.mat"], "lidar": ["LiDAR.mat"], "train": ["TRLabel.mat"],
                "test": ["TSLabel.mat"]},
    })
    hsi = _check_cube("Trento HSI", read_mat(files["hsi"]))
    lidar = _check_cube("Trento LiDAR", read_mat(files["lidar"]), hsi.shape[:2])
    if not all_lidar_rasters:
        lidar = lidar[:, :, :1]
    if layout == "MFT":
        train_lab = read_mat(files["train"]).astype(np.int64)
        test_lab = read_mat(files["test"]).astype(np.int64)
        labels = np.where(train_lab > 0, train_lab, test_lab)
    else:
        labels = read_mat(files["labels"]).astype(np.int64)
    if labels.shape != hsi.shape[:2]:
        raise ValueError(f"Trento labels have shape {labels.shape}; the HSI is {hsi.shape[:2]}.")
    published = layout == "MFT"
    tr_file, ts_file = (Path(files.get("labels", ".")).parent / n for n in ("TRLabel.mat",
                                                                            "TSLabel.mat"))
    if not published and split == "standard" and tr_file.is_file() and ts_file.is_file():
        # The published split files beside allgrd.mat (only there: a data_home may hold
        # another scene's TRLabel.mat in a sub-folder).
        train_lab = read_mat(tr_file).astype(np.int64)
        test_lab = read_mat(ts_file).astype(np.int64)
        if not np.array_equal(np.where(train_lab > 0, train_lab, test_lab), labels):
            raise ValueError(f"{tr_file} and {ts_file} do not add up to the ground truth in "
                             f"{files['labels']}.")
        published = True
        files.update(train=tr_file, test=ts_file)
    if split == "standard" and published:
        train, test = train_lab > 0, test_lab > 0
    elif split == "standard":
        train, test = trento_standard_split(labels, random_state=random_state)
    else:
        train, test = _split(labels, split, random_state, patch_size)
    return make_scene_bunch(hsi, lidar, labels, TRENTO_CLASSES, train, test, "trento",
                            f"Trento HSI + LiDAR ({layout} layout), split={split!r}"
                            + (" (TRLabel/TSLabel files)." if split == "standard" and published
                               else "."),
                            files={k: str(v) for k, v in files.items()})


# ---------------------------------------------------------------------------- MUUFL
def load_muufl(data_home=None, download=False, split=0.05, random_state=0, patch_size=11):
    """MUUFL Gulfport (325 x 220 px, 64 HSI bands + 2 LiDAR rasters, 11 classes).

    Reads ``muufl_gulfport_campus_1_hsi_220_label.mat`` (GatorSense/MUUFLGulfport; a
    struct ``hsi`` with ``Data``, ``Lidar(1).z`` and ``sceneLabels``) or the
    ``HSI.mat`` / ``LiDAR.mat`` (``Lidar.mat``) / ``labels.mat`` layout, from
    ``data_home/muufl/``. Unlabelled pixels (-1 in the source) become 0.

    Parameters
    ----------
    split : float, int or "disjoint", default=0.05
        5 % per class (the common protocol), a count per class (e.g. 20), or
        spatially disjoint blocks.
    """
    if download:
        download_and_extract("muufl", data_home, _MUUFL_URL, "muufl.zip", _MUUFL_SHA256)
    layout, files = locate("muufl", data_home, {
        "GatorSense": {"scene": ["muufl_gulfport_campus_1_hsi_220_label.mat"]},
        "mat": {"hsi": ["HSI.mat"], "lidar": ["LiDAR.mat", "Lidar.mat"], "labels": ["labels.mat"]},
    })
    names = MUUFL_CLASSES
    if layout == "GatorSense":
        import scipy.io

        d = scipy.io.loadmat(files["scene"], squeeze_me=True, struct_as_record=False)["hsi"]
        hsi = np.asarray(d.Data, dtype=np.float32)
        lidar_struct = d.Lidar[0] if np.ndim(d.Lidar) else d.Lidar
        lidar = np.asarray(lidar_struct.z, dtype=np.float32)
        labels = np.asarray(d.sceneLabels.labels).astype(np.int64)
        materials = getattr(d.sceneLabels, "Materials_Type", None)
        if materials is not None and np.size(materials) == len(MUUFL_CLASSES):
            names = {k + 1: str(m) for k, m in enumerate(np.atleast_1d(materials))}
    else:
        hsi = read_mat(files["hsi"])
        lidar = read_mat(files["lidar"])
        labels = read_mat(files["labels"]).astype(np.int64)
    hsi = _check_cube("MUUFL HSI", hsi)
    lidar = _check_cube("MUUFL LiDAR", lidar, hsi.shape[:2])
    labels[labels < 0] = 0
    train, test = _split(labels, split, random_state, patch_size)
    return make_scene_bunch(hsi, lidar, labels, names, train, test, "muufl",
                            f"MUUFL Gulfport HSI + LiDAR ({layout} layout), split={split!r}.",
                            files={k: str(v) for k, v in files.items()})


# ----------------------------------------------------------------------- Houston 2013
def read_envi_roi(path, shape):
    """Read an ENVI ROI text export into a label map (ROI k -> label k, 0 elsewhere).

    The header lists every ROI's name and point count (``; ROI npts: N``); the
    body lists ``ID X Y`` rows (1-based, X = column), ROI after ROI.

    Returns
    -------
    labels : ndarray of shape ``shape``, int64
    names : list of str
    """
    names, counts, points = [], [], []
    with open(path, encoding="latin-1") as f:
        for line in f:
            s = line.strip()
            if not s:
                continue
            if s.startswith(";"):
                if m := re.match(r";\s*ROI name:\s*(.*)", s):
                    names.append(m.group(1).strip())
                elif m := re.match(r";\s*ROI npts:\s*(\d+)", s):
                    counts.append(int(m.group(1)))
                continue
            parts = s.split()
            if len(parts) >= 3:
                points.append((int(parts[1]), int(parts[2])))
    if len(names) != len(counts) or sum(counts) != len(points):
        raise ValueError(
            f"{path}: malformed ENVI ROI file ({len(names)} ROI names, {len(counts)} point counts "
            f"summing to {sum(counts)}, {len(points)} points).")
    labels = np.zeros(shape, dtype=np.int64)
    pts = np.asarray(points, dtype=np.int64).reshape(-1, 2) - 1
    cols, rows = pts[:, 0], pts[:, 1]
    if len(pts) and (rows.max() >= shape[0] or cols.max() >= shape[1] or pts.min() < 0):
        raise ValueError(f"{path}: ROI points fall outside a {shape} scene.")
    labels[rows, cols] = np.repeat(np.arange(1, len(counts) + 1), counts)
    return labels, names


def _read_tif(path):
    try:
        import tifffile
    except ImportError as exc:
        raise ImportError(f"Reading {path} needs tifffile: pip install tifffile.") from exc
    arr = np.asarray(tifffile.imread(path))
    if arr.ndim == 3 and arr.shape[0] < arr.shape[-1]:  # band-first TIFF
        arr = np.moveaxis(arr, 0, -1)
    return arr


def load_houston2013(data_home=None, download=False):
    """Houston 2013 (349 x 1905 px, 144 HSI bands + LiDAR DSM, 15 classes), GRSS split.

    Layouts read from ``data_home/houston2013/``:

    * the GRSS DFC 2013 release: ``2013_IEEE_GRSS_DF_Contest_CASI.tif``,
      ``2013_IEEE_GRSS_DF_Contest_LiDAR.tif``, ``2013_IEEE_GRSS_DF_Contest_Samples_TR.txt``
      and ``..._VA.txt`` (ENVI ROI exports; reading the TIFFs needs ``tifffile``);
    * ``houston.mat`` (HSI), ``houston_lidar.mat`` (LiDAR) and ``houston_gt.mat``
      (``houston_gt_tr`` / ``houston_gt_te``), as in mhaut/HSI-datasets;
    * ``HSI.mat``, ``LiDAR.mat``, ``TRLabel.mat``, ``TSLabel.mat`` (MFT layout).

    ``download=True`` fetches the GRSS release (and the test ROIs) and checks SHA-256.
    The split is the fixed GRSS one: 2,832 training and 12,197 test pixels.
    """
    if download:
        folder = download_and_extract("houston2013", data_home, _HOUSTON_URL, "houston2013.zip",
                                      _HOUSTON_SHA256)
        _download_file(_HOUSTON_VA_URL, folder / "2013_IEEE_GRSS_DF_Contest_Samples_VA.txt",
                 _HOUSTON_VA_SHA256)
    layout, files = locate("houston2013", data_home, {
        "GRSS": {"hsi": ["2013_IEEE_GRSS_DF_Contest_CASI.tif"],
                 "lidar": ["2013_IEEE_GRSS_DF_Contest_LiDAR.tif"],
                 "train": ["2013_IEEE_GRSS_DF_Contest_Samples_TR.txt"],
                 "test": ["2013_IEEE_GRSS_DF_Contest_Samples_VA.txt"]},
        "mat": {"hsi": ["houston.mat", "Houston.mat"], "lidar": ["houston_lidar.mat", "Houston_LiDAR.mat"],
                "gt": ["houston_gt.mat"]},
        "MFT": {"hsi": ["HSI.mat"], "lidar": ["LiDAR.mat"], "train": ["TRLabel.mat"],
                "test": ["TSLabel.mat"]},
    })
    if layout == "GRSS":
        hsi, lidar = _read_tif(files["hsi"]), _read_tif(files["lidar"])
    else:
        hsi, lidar = read_mat(files["hsi"]), read_mat(files["lidar"])
    hsi = _check_cube("Houston HSI", hsi)
    lidar = _check_cube("Houston LiDAR", lidar, hsi.shape[:2])
    train_lab, test_lab = _houston_labels(layout, files, hsi.shape[:2])
    labels = np.where(train_lab > 0, train_lab, test_lab)
    return make_scene_bunch(hsi, lidar, labels, HOUSTON2013_CLASSES, train_lab > 0, test_lab > 0,
                            "houston2013", f"Houston 2013 GRSS DFC ({layout} layout), fixed split.",
                            files={k: str(v) for k, v in files.items()})


def _houston_labels(layout, files, shape):
    if layout == "GRSS":
        return read_envi_roi(files["train"], shape)[0], read_envi_roi(files["test"], shape)[0]
    if layout == "mat":
        return (read_mat(files["gt"], "houston_gt_tr").astype(np.int64),
                read_mat(files["gt"], "houston_gt_te").astype(np.int64))
    return read_mat(files["train"]).astype(np.int64), read_mat(files["test"]).astype(np.int64)


# ---------------------------------------------------------------------- Jasper Ridge
def load_jasper_ridge(data_home=None, download=False, split="disjoint", random_state=0,
                      patch_size=11):
    """Jasper Ridge (100 x 100 px, 198 AVIRIS bands, HSI only), classes by dominant endmember.

    Reads ``JasperRidge2_R198.mat`` (``Y``: 198 x 10000, column-major pixels, scaled
    by ``maxValue``) and ``_EndJasperRidge2_R198.mat`` (abundances ``A``) from
    ``data_home/jasper_ridge/``; each pixel's label is its most abundant endmember:
    Tree, Water, Dirt, Road. ``lidar`` has zero bands.

    Parameters
    ----------
    split : "disjoint", float or int, default="disjoint"
        Spatially disjoint blocks (no patch overlap), or a fraction / count per class.
    """
    folder = get_data_home(data_home) / "jasper_ridge"
    if download:
        for name, (url, digest) in _JASPER_URLS.items():
            _download_file(url, folder / name, digest)
    _, files = locate("jasper_ridge", data_home, {
        "mhaut/HSI-datasets": {"cube": ["JasperRidge2_R198.mat"],
                               "endmembers": ["_EndJasperRidge2_R198.mat"]}})
    import scipy.io

    d = scipy.io.loadmat(files["cube"])
    n_rows, n_cols = int(np.squeeze(d.get("nRow", 100))), int(np.squeeze(d.get("nCol", 100)))
    Y = d["Y"].astype(np.float32) / float(np.squeeze(d.get("maxValue", 1)))
    hsi = Y.T.reshape(n_cols, n_rows, -1).transpose(1, 0, 2)  # column-major pixel order
    A = read_mat(files["endmembers"], "A")
    labels = (np.argmax(A, axis=0) + 1).reshape(n_rows, n_cols, order="F")
    lidar = np.zeros((n_rows, n_cols, 0), np.float32)
    train, test = _split(labels, split, random_state, patch_size)
    return make_scene_bunch(hsi, lidar, labels, JASPER_RIDGE_CLASSES, train, test, "jasper_ridge",
                            f"Jasper Ridge AVIRIS crop, HSI only, split={split!r}.",
                            files={k: str(v) for k, v in files.items()})

