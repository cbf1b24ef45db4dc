"""Input checks shared by the estimators and transformers.

Every error names the argument, what was given and what was expected, so a user
who passes a 3-D cube where a 4-D patch array belongs learns that at once.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.utils import check_array


def check_patches(X, *, name="X", allow_2d=True, dtype=np.float32):
    """Validate a patch array and return it as a float array of rank 4.

    scikit-learn's :func:`~sklearn.utils.check_array` (``allow_nd=True``) does the
    conversion and refuses sparse, complex, empty and non-finite input; then
    :func:`as_patches` checks the patch shape.

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

    Examples
    --------
    >>> check_patches(np.zeros((2, 3))).shape
    (2, 3, 1, 1)
    """
    X = check_array(X, allow_nd=True, dtype=dtype, input_name=name)
    return as_patches(X, name=name, allow_2d=allow_2d)


def as_patches(X, *, name="X", allow_2d=True):
    """A checked array (``check_array`` or ``validate_data``) as patches of rank 4.

    A 2-D array becomes single-pixel patches; anything but square patches of rank 4
    is refused with a message naming ``name``.
    """
    if X.ndim == 2 and allow_2d:
        return X[:, :, None, None]
    if X.ndim != 4:
        expected = "(n_samples, n_bands, P, P)" + (" or (n_samples, n_bands)" if allow_2d else "")
        raise ValueError(f"{name} must be a patch array of shape {expected}; got an array of rank "
                         f"{X.ndim} with shape {X.shape}.")
    if X.shape[2] != X.shape[3]:
        raise ValueError(f"{name} patches must be square (P x P); got spatial shape {X.shape[2:]}.")
    if 0 in X.shape[1:]:
        raise ValueError(f"{name} has an empty axis (shape {X.shape}); at least 1 band and "
                         "1 x 1 pixel are required.")
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
