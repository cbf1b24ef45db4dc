"""Where dataset files live, how they are found, read and (optionally) downloaded."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from sklearn.utils import Bunch

DATA_HOME_ENV = "MMLGNET_DATA"

#: Extra attempts after a failed or corrupt transfer (pooch waits 1 s, 2 s, ... between).
DOWNLOAD_RETRIES = 2


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
            raise ImportError(f"{path} is a MATLAB v7.3 file; reading it needs h5py: "
                              "pip install 'sklearn-mmlgnet[datasets]'.") from exc
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
    """SHA-256 hex digest of a file (:func:`pooch.file_hash`)."""
    import pooch

    return pooch.file_hash(str(path), alg="sha256")


def _reachable(url, timeout):
    """Whether a TCP connection to ``url``'s host opens; True when a proxy is configured."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
                                       "ALL_PROXY", "all_proxy")):
        return True  # the proxy, not this machine, resolves and reaches the host
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def download(url, dest, expected_sha256, timeout=30, retries=None, progressbar=True):
    """Fetch ``url`` to ``dest`` with pooch: SHA-256 checked, retried, with a progress bar.

    The file is written to a temporary name beside ``dest`` and renamed only once
    its SHA-256 matches, so ``dest`` is whole or absent, never partial. A host that
    cannot be reached fails at once (no retries), with the URL and the folder to
    put the file in by hand.

    Parameters
    ----------
    url : str
    dest : str or Path
        Where the file goes; an existing file with the right SHA-256 is kept.
    expected_sha256 : str
        Hex digest of the file.
    timeout : float, default=30
        Seconds to wait for the server at each step.
    retries : int, optional
        Extra attempts after a failed or corrupt transfer; default
        :data:`DOWNLOAD_RETRIES`.
    progressbar : bool, default=True
        tqdm progress bar on stderr.

    Returns
    -------
    dest : Path
    """
    import pooch

    dest = Path(dest)
    if dest.is_file() and sha256(dest) == expected_sha256:
        return dest
    hint = (f"Without network access, download {url} elsewhere and put it in {dest.parent} "
            f"(data_home {dest.parent.parent}).")
    if not _reachable(url, timeout=min(timeout, 5)):
        raise OSError(f"Could not download {url}: {urlparse(url).hostname} cannot be reached "
                      f"(offline?). {hint}")
    # A one-file registry: pooch fetches into a temporary file, checks the hash,
    # then moves it into place (and removes the temporary on any failure).
    fetcher = pooch.create(path=dest.parent, base_url="", registry={dest.name: f"sha256:{expected_sha256}"},
                           urls={dest.name: url},
                           retry_if_failed=DOWNLOAD_RETRIES if retries is None else retries)
    try:
        fetcher.fetch(dest.name, downloader=pooch.HTTPDownloader(progressbar=progressbar,
                                                                 timeout=timeout))
    except (OSError, ValueError) as exc:  # requests' errors are OSErrors; a bad hash a ValueError
        raise OSError(f"Could not download {url} to {dest}: {' '.join(str(exc).split())} "
                      f"{hint}") from exc
    return dest


def download_and_extract(dataset, data_home, url, archive_name, archive_sha256):
    """Fetch a zip archive into ``data_home/dataset`` and extract it there.

    :class:`pooch.Unzip` extracts the members into a temporary folder beside them;
    they are then renamed into place one by one, so an interrupted extraction
    leaves no truncated file for the loaders to find.

    Parameters
    ----------
    dataset : str
        Sub-folder of the data home, e.g. ``"trento"``.
    data_home : str, Path or None
        See :func:`get_data_home`.
    url : str
        Where the archive is downloaded from.
    archive_name : str
        File name of the archive in ``data_home/dataset``.
    archive_sha256 : str
        Hex digest the archive must have.

    Returns
    -------
    folder : Path
        ``data_home/dataset``.
    """
    import pooch

    folder = get_data_home(data_home) / dataset
    archive = download(url, folder / archive_name, archive_sha256)
    with tempfile.TemporaryDirectory(prefix=".extract-", dir=folder) as tmp:
        # An absolute extract_dir is used as it is; "download" always extracts.
        members = pooch.Unzip(extract_dir=tmp)(str(archive), "download", None)
        for src in sorted(Path(m) for m in members):
            dst = folder / src.relative_to(tmp)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
    return folder


def make_scene_bunch(hsi, lidar, labels, class_names, train_mask, test_mask, name, description,
                     **extra):
    """The Bunch every loader and the generator return."""
    return Bunch(hsi=np.ascontiguousarray(hsi, dtype=np.float32),
                 lidar=np.ascontiguousarray(lidar, dtype=np.float32),
                 labels=np.asarray(labels, dtype=np.int64), class_names=dict(class_names),
                 train_mask=np.asarray(train_mask, bool), test_mask=np.asarray(test_mask, bool),
                 name=name, DESCR=description, **extra)
