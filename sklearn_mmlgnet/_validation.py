"""Input checks shared by the estimators and transformers.

Every error names the argument, what was given and what was expected, so a user
who passes a 3-D cube where a 4-D patch array belongs learns that at once.
"""

from __future__ import annotations

import numbers

import numpy as np


def check_patches(X, *, name="X", allow_2d=True, dtype=np.float32):
    """Validate a patch array and return it as a float array of rank 4.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_bands, P, P) or (n_samples, n_bands)
        Stacked patches, HSI bands first, then LiDAR bands. A 2-D array is read as
        single-pixel patches (``P = 1``), which is what :class:`CenterPixel` yields.
    name : str, default="X"
        Name of the argument, used in error messages.
    allow_2d : bool, default=True
        Whether a 2-D array is accepted as ``P = 1`` patches.
    dtype : numpy dtype, default=np.float32
        dtype of the returned array.

    Returns
    -------
    X : ndarray of shape (n_samples, n_bands, P, P)
    """
    if hasattr(X, "toarray") or hasattr(X, "tocsr"):
        raise TypeError(
            f"{name} is a sparse matrix; dense patch arrays of shape "
            "(n_samples, n_bands, P, P) are expected."
        )
    try:
        X = np.asarray(X)
    except (TypeError, ValueError) as exc:  # ragged lists and the like
        raise ValueError(f"{name} could not be converted to a numeric array: {exc}") from exc
    if X.dtype.kind == "c":
        raise ValueError(f"Complex data not supported: {name} has dtype {X.dtype}; real values are expected.")
    if X.dtype.kind not in "biuf":
        try:
            X = X.astype(np.float64)
        except TypeError as exc:  # e.g. a dict inside an object array
            raise TypeError(f"{name} holds a non-numeric value: {exc}") from exc
        except ValueError as exc:
            raise ValueError(
                f"{name} has dtype {X.dtype} that cannot be converted to float: {exc}") from exc
    if X.ndim == 2 and allow_2d:
        if X.shape[1] == 0:
            raise ValueError(
                f"{name} has 0 feature(s) (shape={X.shape}) while a minimum of 1 is required.")
        X = X[:, :, None, None]
    if X.ndim == 1:
        raise ValueError(
            f"{name} is 1-D with shape {X.shape}; patch arrays (n_samples, n_bands, P, P) are "
            "expected. Reshape your data, e.g. with X.reshape(1, -1) for a single pixel's bands.")
    if X.ndim != 4:
        expected = "(n_samples, n_bands, P, P)"
        if allow_2d:
            expected += " or (n_samples, n_bands)"
        raise ValueError(
            f"{name} must be a patch array of shape {expected}; got an array of rank "
            f"{X.ndim} with shape {X.shape}."
        )
    if X.shape[2] != X.shape[3]:
        raise ValueError(f"{name} patches must be square (P x P); got spatial shape {X.shape[2:]}.")
    if X.shape[0] == 0:
        raise ValueError(f"{name} has 0 samples; at least 1 is required. Got shape {X.shape}.")
    if X.shape[1] == 0:
        raise ValueError(f"{name} has 0 bands (features); at least 1 is required. Got shape {X.shape}.")
    if X.shape[2] == 0:
        raise ValueError(f"{name} patches are 0 x 0 pixels; at least 1 x 1 is required. "
                         f"Got shape {X.shape}.")
    X = X.astype(dtype, copy=False)
    # A float64 sum is NaN/inf iff X holds one (or overflows): no X-sized temporary.
    if not np.isfinite(np.sum(X, dtype=np.float64)) and not np.isfinite(X).all():
        n_bad = int(np.size(X) - np.isfinite(X).sum())
        raise ValueError(
            f"{name} contains NaN or infinity ({n_bad} values); fill or mask them before fitting, "
            "e.g. with np.nan_to_num or by dropping those samples."
        )
    return X


def check_patch_size(patch_size, available, *, name="patch_size"):
    """Return the patch size to use, checking it is odd and fits in the data.

    ``None`` means "use the full patch of the data".
    """
    if patch_size is None:
        return available
    if not isinstance(patch_size, numbers.Integral) or isinstance(patch_size, bool):
        raise TypeError(f"{name} must be an odd positive int or None; got {patch_size!r}.")
    if patch_size < 1 or patch_size % 2 == 0:
        raise ValueError(
            f"{name} must be an odd positive int so the patch has a centre pixel; got {patch_size}."
        )
    if patch_size > available:
        raise ValueError(
            f"{name}={patch_size} is larger than the patches in X ({available} x {available}); "
            f"extract larger patches or choose {name} <= {available}."
        )
    return int(patch_size)


def center_crop(X, patch_size):
    """Centre-crop a (n, C, P, P) array to (n, C, p, p); a view, no copy."""
    P = X.shape[-1]
    if patch_size == P:
        return X
    off = (P - patch_size) // 2
    return X[..., off : off + patch_size, off : off + patch_size]


def check_band_split(n_bands, n_lidar_bands, *, name="X"):
    """Check that ``n_lidar_bands`` leaves at least one HSI band."""
    if not isinstance(n_lidar_bands, numbers.Integral) or n_lidar_bands < 0:
        raise ValueError(f"n_lidar_bands must be a non-negative int; got {n_lidar_bands!r}.")
    if n_bands <= n_lidar_bands:
        raise ValueError(
            f"{name} has {n_bands} bands but n_lidar_bands={n_lidar_bands}; X must hold the HSI "
            f"bands first and then {n_lidar_bands} LiDAR band(s), so at least "
            f"{n_lidar_bands + 1} bands are expected."
        )
    return n_bands - n_lidar_bands, n_lidar_bands


def check_positive_int(value, name, minimum=1):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}.")
    return int(value)


def check_channels(value, name):
    """Widths of a convolutional stack: a non-empty sequence of positive ints."""
    if isinstance(value, numbers.Integral):
        value = (value,)
    try:
        if isinstance(value, (str, bytes)):
            raise TypeError
        value = tuple(int(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a sequence of positive ints; got {value!r}.") from exc
    if not value or any(v < 1 for v in value):
        raise ValueError(f"{name} must be a non-empty sequence of positive ints; got {value!r}.")
    return value


def check_real(value, name, *, low=None, low_inclusive=True, high=None, high_inclusive=False):
    """A finite real number (not a bool) within the given bounds, else a ValueError naming it.

    Examples
    --------
    >>> check_real(0.5, "dropout", low=0, high=1)
    0.5
    >>> check_real(0, "distill_temperature", low=0, low_inclusive=False)
    Traceback (most recent call last):
    ...
    ValueError: distill_temperature must be a finite float > 0; got 0.
    """
    bounds = []
    if low is not None:
        bounds.append(f"{'>=' if low_inclusive else '>'} {low}")
    if high is not None:
        bounds.append(f"{'<=' if high_inclusive else '<'} {high}")
    expected = "a finite float" + (" " + " and ".join(bounds) if bounds else "")
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if ok and low is not None:
        ok = value >= low if low_inclusive else value > low
    if ok and high is not None:
        ok = value <= high if high_inclusive else value < high
    if not ok:
        raise ValueError(f"{name} must be {expected}; got {value!r}.")
    return float(value)


def check_device(device, name="device"):
    """``device`` if torch can use it on this machine, else a ValueError saying why.

    ``name`` is how the message calls the argument (``"device"`` for an estimator's
    parameter, ``"--device"`` for the command line).

    Examples
    --------
    >>> check_device("cpu")
    'cpu'
    >>> check_device("foo")
    Traceback (most recent call last):
    ...
    ValueError: device 'foo' is not a torch device; use cpu, cuda or cuda:N.
    """
    import torch

    given = f"{name} {device!r}"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{given} is not a torch device; use cpu, cuda or cuda:N.") from None
    if dev.type == "cpu":
        return device
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{given}: CUDA is not available here (torch {torch.__version__}, "
                             f"built for CUDA {torch.version.cuda}); use cpu.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{given}: this machine has {torch.cuda.device_count()} CUDA "
                             f"device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}.")
        return device
    backend = torch.backends.mps if dev.type == "mps" else getattr(torch, dev.type, None)
    if not getattr(backend, "is_available", lambda: False)():
        raise ValueError(f"{given}: no {dev.type} device is available here; use cpu.")
    return device
