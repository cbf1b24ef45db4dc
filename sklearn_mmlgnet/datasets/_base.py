"""Where dataset files live, how they are found, read and (optionally) downloaded."""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from .._io import atomic_path

DATA_HOME_ENV = "MMLGNET_DATA"


def get_data_home(data_home=None):
    """The folder holding the benchmark files.

    ``data_home`` if given, else ``$MMLGNET_DATA``, else ``~/sklearn_mmlgnet_data``.
    Each dataset is looked for in a sub-folder of its name (``trento/``, ``muufl/``,
    ``houston2013/``, ``jasper_ridge/``) or directly in this folder.

    Examples
    --------
    >>> get_data_home("/tmp/rs").as_posix()
    '/tmp/rs'
    """
    if data_home is None:
        data_home = os.environ.get(DATA_HOME_ENV, Path.home() / "sklearn_mmlgnet_data")
    return Path(data_home).expanduser()


def find_file(folder, names):
    """First file under ``folder`` (searched recursively) named like one of ``names``."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    lower = {n.lower() for n in names}
    for name in names:  # fast path: directly in the folder
        if (folder / name).is_file():
            return folder / name
    for path in sorted(folder.rglob("*")):
        if path.name.lower() in lower and path.is_file():
            return path
    return None


def locate(dataset, data_home, layouts):
    """Find the files of one of several layouts; raise a clear error if none is complete.

    Parameters
    ----------
    dataset : str
        Sub-folder name, e.g. ``"trento"``.
    data_home : str, Path or None
    layouts : dict
        ``{layout_name: {role: [file names]}}``; the first layout whose every role
        is found wins.

    Returns
    -------
    layout_name, {role: Path}
    """
    home = get_data_home(data_home)
    roots = [home / dataset, home]
    missing_report = []
    for layout, roles in layouts.items():
        found, missing = {}, []
        for role, names in roles.items():
            path = next((p for r in roots if (p := find_file(r, names))), None)
            if path is None:
                missing.append(" or ".join(names))
            else:
                found[role] = path
        if not missing:
            return layout, found
        missing_report.append(f"  - {layout}: missing {', '.join(missing)}")
    raise FileNotFoundError(
        f"The {dataset} files were not found under {home / dataset} (data_home, else "
        f"${DATA_HOME_ENV}, else ~/sklearn_mmlgnet_data). Put the files of one of these layouts "
        f"in {home / dataset}/:\n" + "\n".join(missing_report)
        + "\nor pass download=True where the dataset has a public source.")


def read_mat(path, key=None):
    """An array from a MATLAB file: ``key``, or the single/largest array in it.

    MATLAB v7.3 files (HDF5) are read with h5py when it is installed.
    """
    import scipy.io

    try:
        data = scipy.io.loadmat(path)
        arrays = {k: v for k, v in data.items() if not k.startswith("__") and isinstance(v, np.ndarray)}
    except NotImplementedError:  # v7.3 MAT file
        try:
            import h5py
        except ImportError as exc:
            raise ImportError(f"{path} is a MATLAB v7.3 file; pip install h5py to read it.") from exc
        with h5py.File(path, "r") as f:
            arrays = {k: np.asarray(f[k]).T for k in f.keys() if isinstance(f[k], h5py.Dataset)}
    if key is not None:
        if key not in arrays:
            raise KeyError(f"{path} has no variable {key!r}; it holds {sorted(arrays)}.")
        return arrays[key]
    if not arrays:
        raise ValueError(f"{path} holds no array.")
    return max(arrays.values(), key=lambda a: a.size)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url, dest, expected_sha256, timeout=30):
    """Download ``url`` to ``dest`` (atomically) and check its SHA-256."""
    dest = Path(dest)
    if dest.is_file() and sha256(dest) == expected_sha256:
        return dest
    try:
        with atomic_path(dest) as tmp:
            with urllib.request.urlopen(url, timeout=timeout) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, length=1 << 20)
            got = sha256(tmp)
            if got != expected_sha256:
                raise OSError(f"{url}: SHA-256 {got} does not match the expected {expected_sha256}.")
    except OSError as exc:
        raise OSError(
            f"Could not download {url} to {dest}: {exc}. Without network access, download the "
            f"file elsewhere and put it in {dest.parent}.") from exc
    return dest


def download_and_extract(dataset, data_home, url, archive_name, archive_sha256):
    """Fetch a zip archive into ``data_home/dataset`` and extract it there."""
    folder = get_data_home(data_home) / dataset
    archive = download(url, folder / archive_name, archive_sha256)
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(folder)
    return folder


def make_scene_bunch(hsi, lidar, labels, class_names, train_mask, test_mask, name, description,
                     **extra):
    """The Bunch every loader and the generator return."""
    return Bunch(hsi=np.ascontiguousarray(hsi, dtype=np.float32),
                 lidar=np.ascontiguousarray(lidar, dtype=np.float32),
                 labels=np.asarray(labels, dtype=np.int64), class_names=dict(class_names),
                 train_mask=np.asarray(train_mask, bool), test_mask=np.asarray(test_mask, bool),
                 name=name, DESCR=description, **extra)
