"""Whole-or-nothing file writes and output checks shared by ``io``, ``persistence`` and the CLI.

A file is written under a hidden temporary name in its own folder
(``.<name>.mmlgnet-tmp-<host>-<pid>-<token><suffix>``), flushed to disk
(``fsync``) and renamed over the target only when it is complete. The
temporary file is created with mode ``0o666`` so the kernel applies the
process umask itself: the umask is never read or changed here. A temporary
file left by a process that was killed (SIGKILL, power loss) is removed on the
next write to the same path, once its process is known to be gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
from pathlib import Path

import numpy as np

#: Marks the temporary files this package writes (see the module docstring).
TMP_MARK = ".mmlgnet-tmp-"


class Terminated(BaseException):  # noqa: N818 - named for what happened, like KeyboardInterrupt
    """Raised by the command line's SIGTERM handler, so that temporary files are cleaned up.

    A ``BaseException`` like ``KeyboardInterrupt``: ``except Exception`` does not catch it.
    """


def _host():
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process (or an odd pid): not ours to judge
    return True


def remove_stale_temporaries(path):
    """Remove temporary files of ``path`` left by processes of this host that are gone.

    Only names of this package's pattern are touched, and only when the process
    that created them (host and pid are in the name) no longer runs.
    Returns the list of files removed.
    """
    path = Path(path)
    prefix = f".{path.name}{TMP_MARK}"
    pattern = re.compile(re.escape(prefix) + r"([A-Za-z0-9]+)-(\d+)-")
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    host = _host()
    for entry in entries:
        m = pattern.match(entry.name)
        if not m or m.group(1) != host or _pid_alive(int(m.group(2))):
            continue
        with contextlib.suppress(OSError):
            os.remove(entry.path)
            removed.append(Path(entry.path))
    return removed


def _new_temporary(path):
    """Create an empty temporary file for ``path`` (mode 0o666 less the umask); its path."""
    for _ in range(100):
        tmp = path.parent / (f".{path.name}{TMP_MARK}{_host()}-{os.getpid()}-"
                             f"{secrets.token_hex(4)}{path.suffix}")
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"could not create a temporary file beside {path}")  # pragma: no cover


def _fsync(path):
    """Flush a file's (or folder's) data to disk; a no-op where the OS cannot."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_paths(paths):
    """Yield temporary paths for ``paths``; publish them all only if the body succeeds.

    On success each temporary file is flushed to disk (``fsync``) and renamed over
    its target, the side files first and the first path (the main file) last, so
    the main file never appears before its side files. If the body raises
    (including ``KeyboardInterrupt`` and :class:`Terminated`), every temporary file
    is removed and the targets are untouched.
    """
    paths = [Path(p) for p in paths]
    tmps, modes = [], []
    try:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(path)
            tmps.append(_new_temporary(path))
            modes.append(os.stat(tmps[-1]).st_mode & 0o7777)  # 0o666 less the umask
        yield [str(t) for t in tmps]
        for tmp, mode in zip(tmps, modes):
            if os.stat(tmp).st_mode & 0o7777 != mode:  # a writer that made its own file
                os.chmod(tmp, mode)
            _fsync(tmp)
        for tmp, path in list(zip(tmps, paths))[::-1]:
            os.replace(tmp, path)
        for folder in {p.parent for p in paths}:
            _fsync(folder)
    except BaseException:
        for tmp in tmps:
            for t in (tmp, Path(str(tmp) + ".aux.xml")):  # GDAL may add a PAM file
                with contextlib.suppress(FileNotFoundError):
                    os.remove(t)
        raise


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path in ``path``'s folder; rename it to ``path`` on success.

    If the body raises, the temporary file is removed and ``path`` is untouched, so
    a crash or Ctrl-C never leaves a half-written file behind (see :func:`atomic_paths`).
    """
    with atomic_paths([path]) as (tmp,):
        yield tmp


def write_text(path, text):
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return Path(path)


# --------------------------------------------------------------- output checks
def _same_file(a, b):
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False


def check_outputs(outputs, inputs):
    """Refuse, before any work, outputs that would destroy an input or cannot be written.

    Parameters
    ----------
    outputs : dict
        ``{name: path}`` of the files to be written; the first is the main output.
        The names are how errors call them (``"--out"``, ``"out"``).
    inputs : dict
        ``{name: path or list of paths}`` of the files read. Each input's companion
        files are inputs too (an ENVI header's data file and back, a shapefile's
        ``.dbf`` / ``.shx`` / ``.prj``).

    Raises
    ------
    ValueError
        An output is (or resolves to, through links) an input, or is an existing folder.
    PermissionError
        An output's folder cannot be written.
    """
    read = []
    for name, paths in inputs.items():
        if paths is None:
            continue
        for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths):
            for q in companion_files(p):
                read.append((name, p, q))
    for out_name, out in outputs.items():
        out = Path(out).expanduser()
        for in_name, given, q in read:
            if _same_file(out, q):
                what = "" if Path(q) == Path(given) else f" (a companion file of {given})"
                raise ValueError(
                    f"{out_name} {out} is the input {in_name} {q}{what}: writing it would destroy "
                    "the input. Choose another output path.")
        if out.is_dir():
            raise ValueError(f"{out_name} {out} is an existing folder; give the file to write.")
        folder = out.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            raise ValueError(f"{out_name} {out}: {folder} is not a folder.")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(f"{out_name} {out}: the folder {folder} is not writable.")


def companion_files(path):
    """``path`` and the existing files read with it: an ENVI header's data file (and the
    header of a data file), a shapefile's parts, GDAL's ``.aux.xml``."""
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix == ".hdr":
        others = [path.with_suffix(s) for s in ("", ".img", ".dat", ".bsq", ".bil", ".bip",
                                                ".raw", ".bin")]
    elif suffix == ".shp":
        others = [path.with_suffix(s) for s in (".dbf", ".shx", ".prj", ".cpg")]
    else:
        others = [path.with_suffix(".hdr"), Path(str(path) + ".hdr")]
    others.append(Path(str(path) + ".aux.xml"))
    return [path] + [p for p in others if p != path and p.exists()]


# ------------------------------------------------------------- opening rasters
ENVI_DATA_SUFFIXES = ("", ".img", ".dat", ".bsq", ".bil", ".bip", ".raw", ".bin")
#: Set to 1 to let GDAL reach the network (a VRT's ``/vsicurl/``, ``/vsis3/`` sources...).
REMOTE_OPT_IN = "MMLGNET_ALLOW_NETWORK"
_REMOTE_SOURCE = re.compile(
    rb"/vsi(curl|s3|gs|az|adls|oss|swift|webhdfs|hdfs)(_streaming)?/|(https?|ftps?)://", re.I)


def network_allowed():
    """Whether the user opted in to GDAL network access (``MMLGNET_ALLOW_NETWORK=1``)."""
    return os.environ.get(REMOTE_OPT_IN, "").strip().lower() in ("1", "yes", "true", "on")


def gdal_env(**options):
    """A ``rasterio.Env`` for reading a user's files: no network unless opted in.

    ``CPL_VSIL_CURL_ALLOWED_EXTENSIONS`` set to an extension no file has makes GDAL's
    network file systems (``/vsicurl/``, ``/vsis3/``, ...) treat every remote file as
    missing without sending a request.
    """
    import rasterio

    if not network_allowed():
        options.setdefault("CPL_VSIL_CURL_ALLOWED_EXTENSIONS", ".mmlgnet-network-is-off")
    return rasterio.Env(**options)


def _data_path(path, role):
    """The file GDAL should open: an ENVI ``.hdr`` is swapped for its data file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{role}: no such file: {path}")
    if path.is_dir():
        raise ValueError(f"{role}: {path} is a folder, not a raster file.")
    if path.suffix.lower() == ".hdr":
        for suffix in ENVI_DATA_SUFFIXES:
            for cand in (path.with_suffix(suffix), path.with_suffix(suffix.upper())):
                if cand.is_file() and cand != path:
                    return cand
        raise FileNotFoundError(
            f"{role}: {path} is an ENVI header but no data file beside it was found "
            f"(looked for {', '.join(path.stem + s for s in ENVI_DATA_SUFFIXES if s)} "
            f"and {path.stem}).")
    return path


def check_readable(path, role):
    """A PermissionError naming ``role`` when ``path`` cannot be read."""
    if not os.access(path, os.R_OK):
        raise PermissionError(f"{role}: {path} cannot be read (permission denied).")


def _check_network_refs(path, role):
    """Refuse a VRT (XML) that points at network files while network access is off."""
    if network_allowed():
        return
    with open(path, "rb") as f:
        head = f.read(10_000_000)
    if not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return
    found = _REMOTE_SOURCE.search(head)
    if found:
        ref = found.group(0).decode(errors="replace")
        raise ValueError(
            f"{role}: {path} refers to a network resource ({ref}...); network access is off. "
            f"Set {REMOTE_OPT_IN}=1 to let GDAL fetch it.")


def _envi_header(src):
    return next((Path(f) for f in src.files if f.lower().endswith(".hdr")), None)


def _check_envi_size(src, role):
    """Refuse an ENVI header whose size disagrees with its data file."""
    hdr = _envi_header(src)
    if src.driver != "ENVI" or hdr is None:
        return
    text = hdr.read_text(errors="replace")
    if re.search(r"^\s*file compression\s*=\s*1", text, re.I | re.M):
        return  # gzip-compressed data: the size says nothing
    m = re.search(r"^\s*header offset\s*=\s*(\d+)", text, re.I | re.M)
    offset = int(m.group(1)) if m else 0
    itemsize = np.dtype(src.dtypes[0]).itemsize
    expected = offset + src.width * src.height * src.count * itemsize
    actual = os.path.getsize(src.name)
    if actual != expected:
        raise ValueError(
            f"{role}: the ENVI header {hdr} describes {src.width} samples x {src.height} lines x "
            f"{src.count} bands of {src.dtypes[0]} ({expected} bytes with a {offset}-byte header "
            f"offset) but its data file {src.name} has {actual} bytes: the file is truncated or "
            "the header's samples / lines / bands / data type are wrong.")


def open_raster(path, role):
    """Open a raster for reading, every failure a clear error naming ``role`` and the file.

    FileNotFoundError (missing), PermissionError (unreadable), ValueError (not a
    raster, a VRT reaching the network while that is off, an ENVI header that does
    not match its data file).
    """
    import rasterio

    data = _data_path(path, role)
    check_readable(data, role)
    _check_network_refs(data, role)
    try:
        src = rasterio.open(data)
    except rasterio.errors.RasterioIOError as exc:
        if "permission denied" in str(exc).lower():
            raise PermissionError(f"{role}: {data} cannot be read (permission denied).") from None
        raise ValueError(f"{role}: {data} could not be read as a raster ({exc}).") from None
    try:
        if src.count < 1 or src.width < 1 or src.height < 1:
            raise ValueError(f"{role}: {data} has {src.count} band(s) of {src.height} x "
                             f"{src.width} px; an empty raster cannot be used.")
        if any(str(d).startswith("complex") for d in src.dtypes):
            raise ValueError(f"{role}: {data} holds complex values ({src.dtypes[0]}); "
                             "real-valued bands are expected.")
        _check_envi_size(src, role)
    except BaseException:
        src.close()
        raise
    return src


def available_memory():
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits_in_memory(nbytes, what):
    """A MemoryError-free refusal: ValueError when ``nbytes`` exceed the memory available."""
    avail = available_memory()
    if avail is not None and nbytes > avail:
        raise ValueError(
            f"{what} needs {nbytes / 2**30:.1f} GiB of memory; {avail / 2**30:.1f} GiB are "
            "available. Read part of the scene (window=, a cropped raster) or classify it with "
            "predict_raster / `mmlgnet predict`, which read it tile by tile.")
