"""Tensor helpers shared by the networks of :mod:`sklearn_mmlgnet.nn`.

A private module of public names (as :mod:`sklearn_mmlgnet._validation`): the
argument checks of the modules' constructors and ``forward``, the pooling both
networks read a patch with, and the pieces their dense (whole-tile) forwards are
built from. Every dense helper computes the eval-mode function of the layers it
is given (batch norm with its running statistics, no dropout) without changing
them, so a fitted module can be shared by threads.
"""

from __future__ import annotations

import contextlib
import functools
import numbers
import threading

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: What ``forward(X, heads=...)`` returns outside training: the final head's
#: logits, the mean of every head's probabilities as logits, or every head.
HEADS = ("final", "mean", "all")

#: Output pixels per pass through the per-pixel layers (spectral path, fusion, heads):
#: their input rows (a few hundred features each) stay within a few MiB, in cache.
HEAD_CHUNK = 4096

#: The dtypes a dense forward computes in (float32 accumulation throughout).
DENSE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


# ----------------------------------------------------------------------- checks
def check_heads(heads):
    """``heads`` of a ``forward``: one of :data:`HEADS`, else a ValueError naming it.

    Examples
    --------
    >>> check_heads("mean")
    'mean'
    """
    if not (isinstance(heads, str) and heads in HEADS):
        raise ValueError(f"heads must be one of {HEADS}; got {heads!r}.")
    return heads


def check_flag(value, name):
    """A bool (or numpy bool), else a ValueError naming the argument.

    Examples
    --------
    >>> check_flag(True, "module__class_bias")
    True
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False; got {value!r}.")
    return bool(value)


def check_choice(value, choices, name):
    """One of ``choices`` (strings), else a ValueError naming the argument.

    Examples
    --------
    >>> check_choice("dot", ("cosine", "dot"), "module__similarity")
    'dot'
    """
    if not (isinstance(value, str) and value in choices):
        raise ValueError(f"{name} must be one of {tuple(choices)}; got {value!r}.")
    return value


def check_dense_input(x, patch_size, module):
    """Check a dense forward's input tile and patch side; returns the patch side.

    ``x`` must be (N, C, H, W) with the module's ``in_channels`` and H, W at least
    ``patch_size``, an odd int of at least the module's ``receptive_field``.
    """
    rf = module.receptive_field
    if not isinstance(patch_size, numbers.Integral) or isinstance(patch_size, bool) \
            or patch_size < rf or patch_size % 2 == 0:
        raise ValueError(
            f"patch_size must be an odd int of at least the network's receptive field ({rf}): "
            f"the dense forward is the patch forward only for such patches; got {patch_size!r}.")
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != module.in_channels:
        shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
        raise ValueError(f"x must be a tensor of shape (N, {module.in_channels}, H, W); "
                         f"got {shape}.")
    if min(x.shape[2:]) < patch_size:
        raise ValueError(f"x must be at least patch_size={patch_size} pixels in both spatial "
                         f"axes (a tile and its halo); got {tuple(x.shape[2:])}.")
    return int(patch_size)


# --------------------------------------------------------------------- patches
def pool(x):
    """Global average of a feature map joined with its centre pixel's features.

    The label belongs to the centre pixel: the average alone would weigh it 1/P^2
    and blur class borders; the centre alone would waste the context.

    Examples
    --------
    >>> import torch
    >>> pool(torch.ones(2, 3, 5, 5)).shape
    torch.Size([2, 6])
    """
    c = x.shape[-1] // 2
    return torch.cat([x.mean(dim=(-2, -1)), x[..., c, c]], dim=1)


def pad_to_receptive_field(x, size):
    """Replicate-pad the patch's own border until it is at least ``size`` wide.

    The convolutions are "valid" (no zero padding), so a patch smaller than the
    receptive field would leave no output pixel. Such patches (single pixels read
    as P = 1, tiny test patches) are grown by repeating their edge pixels, a
    patch-local padding that has no scene-level equivalent: the dense forward is
    the patch forward only for patches at least ``size`` wide.
    """
    P = x.shape[-1]
    if P >= size:
        return x
    p = (size - P + 1) // 2
    return F.pad(x, (p, p, p, p), mode="replicate")


# ----------------------------------------------------------------------- dense
def compute_dtype(dtype, device):
    """The dtype a dense forward computes in.

    ``dtype`` if given (one of :data:`DENSE_DTYPES`), else the dtype of an enabled
    :func:`torch.autocast` for ``device``'s type, else float32.

    Examples
    --------
    >>> import torch
    >>> compute_dtype(None, torch.device("cpu"))
    torch.float32
    >>> with torch.autocast("cpu", dtype=torch.bfloat16):
    ...     compute_dtype(None, torch.device("cpu"))
    torch.bfloat16
    """
    if dtype is None:
        if torch.is_autocast_enabled(device.type):
            return torch.get_autocast_dtype(device.type)
        return torch.float32
    if dtype not in DENSE_DTYPES:
        raise ValueError(f"dtype must be one of {DENSE_DTYPES} or None; got {dtype!r}.")
    return dtype


_LOCAL = threading.local()


@contextlib.contextmanager
def reuse_plans(store):
    """Within the block, dense forwards in this thread keep the weights they prepare.

    A dense forward first prepares its weights (batch norm folded in, the text head
    factorized, cast to the compute dtype). Inside this block it keeps them in
    ``store`` (a dict the caller holds across blocks) and reuses them: for a caller
    that runs one unchanged module over many tiles (:mod:`sklearn_mmlgnet.dense`).
    Outside such a block every call prepares them afresh, so a module changed
    between calls is always read as it is.
    """
    previous = getattr(_LOCAL, "store", None)
    _LOCAL.store = store
    try:
        yield
    finally:
        _LOCAL.store = previous


def dense_plan(module, dtype, build):
    """``build()``: the prepared weights of ``module`` in ``dtype``, reused inside
    :func:`reuse_plans`."""
    store = getattr(_LOCAL, "store", None)
    if store is None:
        return build()
    key = (id(module), dtype)
    if key not in store:
        store[key] = (module, build())  # the module is kept so that its id stays its own
    return store[key][1]


def crop(x, k):
    """The (N, C, R, W) centre view of a (N, C, R + k - 1, W + k - 1) map: each pixel's
    own features, as the centre of its k x k window (no copy)."""
    h = k // 2
    return x[:, :, h:x.shape[2] - h, h:x.shape[3] - h]


def box_and_centre(x, k):
    """Per pixel: the mean of the k x k window around it and its own features.

    ``x`` is (N, C, R + k - 1, W + k - 1); returns two (N, C, R, W) maps (the mean,
    then a view of ``x``'s centre): what :func:`pool` gives on every pixel's k x k
    patch of ``x``. In ``x``'s dtype (the sums accumulate in float32).
    """
    x = x.contiguous(memory_format=torch.channels_last)  # pooling runs fastest on it
    mean = F.avg_pool2d(F.avg_pool2d(x, (k, 1), stride=1), (1, k), stride=1)
    return [mean, crop(x, k)]


def rows_to_map(rows, N, R, W):
    """(N * R * W, K) pixel rows, in raster order, as an (N, K, R, W) map (a view)."""
    return rows.reshape(N, R, W, -1).permute(0, 3, 1, 2)


def per_pixel(fn, maps, dtype, chunk=HEAD_CHUNK):
    """``fn`` on every pixel's features: the ``maps``' channels side by side.

    ``maps`` are (N, C_j, R, W) maps (views are fine); each chunk of about ``chunk``
    pixels is gathered once into a (pixels, sum C_j) block of ``dtype`` rows, so
    the first layer of ``fn`` runs as one matrix product over all its inputs.
    Returns ``fn``'s (N * R * W, K) rows, pixels in raster order.
    """
    N, _, R, W = maps[0].shape
    C = sum(m.shape[1] for m in maps)
    if maps[0].device.type != "cpu":  # a GPU: fewer, larger launches
        chunk *= 16
    step = max(1, chunk // max(1, N * W))
    out = None
    for r0 in range(0, R, step):
        r1 = min(R, r0 + step)
        block = torch.empty((N, r1 - r0, W, C), dtype=dtype, device=maps[0].device)
        c = 0
        for m in maps:
            block[..., c:c + m.shape[1]].copy_(m[:, :, r0:r1].permute(0, 2, 3, 1))
            c += m.shape[1]
        y = fn(block.view(-1, C))
        if out is None:
            out = torch.empty((N, R, W, y.shape[1]), dtype=y.dtype, device=y.device)
        out[:, r0:r1].copy_(y.view(N, r1 - r0, W, -1))
    return out.view(N * R * W, -1)


def _bn_scale_shift(bn):
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def fold_conv(stage, dtype=torch.float32):
    """A (conv, batch norm, ReLU) stage's convolution with the batch norm folded in.

    In eval mode batch norm is a per-channel affine map, so it folds into the
    convolution's weights and bias (one pass over the feature map fewer). Returns
    (weight, bias) in ``dtype``, 2-D weights channels-last; the stage is unchanged.
    """
    conv, bn, relu = stage
    if not (isinstance(conv, (nn.Conv2d, nn.Conv3d))
            and isinstance(bn, nn.modules.batchnorm._BatchNorm) and isinstance(relu, nn.ReLU)):
        raise TypeError(f"a stage must be (Conv2d or Conv3d, BatchNorm, ReLU); got {stage}.")
    scale, shift = _bn_scale_shift(bn)
    weight = conv.weight * scale.reshape((-1,) + (1,) * (conv.weight.dim() - 1))
    bias = shift if conv.bias is None else conv.bias * scale + shift
    if weight.dim() == 4:
        weight = weight.contiguous(memory_format=torch.channels_last)
    return weight.to(dtype), bias.to(dtype)


def conv_stage(stage, dtype=torch.float32):
    """A (conv, batch norm, ReLU) stage in eval mode as one convolution and an in-place ReLU.

    Returns a function of the stage's input (in ``dtype``); see :func:`fold_conv`.
    """
    conv = stage[0]
    weight, bias = fold_conv(stage, dtype)
    op = F.conv2d if isinstance(conv, nn.Conv2d) else F.conv3d

    def forward(x):
        return F.relu_(op(x, weight, bias, conv.stride, conv.padding, conv.dilation,
                          conv.groups))

    return forward


def fold_linear(linear, bn=None, dtype=torch.float32):
    """A Linear layer (and the batch norm after it, folded in) as ``(weight, bias)`` in
    ``dtype``: ``rows @ weight.T + bias`` is the eval-mode output."""
    weight = linear.weight
    bias = linear.bias if linear.bias is not None else torch.zeros(
        linear.out_features, dtype=weight.dtype, device=weight.device)
    if bn is not None:
        scale, shift = _bn_scale_shift(bn)
        weight, bias = weight * scale[:, None], bias * scale + shift
    return weight.contiguous().to(dtype), bias.to(dtype)


@functools.lru_cache(maxsize=None)
def _onednn_linear():
    """torch's oneDNN linear kernel (what ``torch.compile`` runs on CPUs), or None.

    On some CPUs it runs float32 rows much faster than the BLAS behind ``addmm``
    (1.5 times on an AMD EPYC with MKL) and it fuses the ReLU; it is checked once
    against ``addmm`` before it is used.
    """
    try:
        op = torch.ops.mkldnn._linear_pointwise
        z, w, b = torch.randn(5, 3), torch.randn(4, 3), torch.randn(4)
        ok = torch.allclose(op(z, w, b, "relu", [], ""), torch.relu(torch.addmm(b, z, w.t())),
                            atol=1e-5)
    except (AttributeError, RuntimeError, TypeError):
        return None
    return op if ok and torch.backends.mkldnn.is_available() else None


def linear_rows(weight, bias, relu=False):
    """``rows @ weight.T + bias`` (then ReLU) as a function of (n, in) rows.

    By oneDNN on CPU tensors of float32 or bfloat16 when torch has it (see
    :func:`_onednn_linear`), else by ``addmm``; float32 or bfloat16 products
    accumulate in float32 either way.
    """
    op = _onednn_linear()
    if op is not None and weight.device.type == "cpu" and weight.dtype in (
            torch.float32, torch.bfloat16):
        attr = "relu" if relu else "none"
        return lambda z: op(z.contiguous(), weight, bias, attr, [], "")
    wt = weight.t()

    def forward(z):
        y = torch.addmm(bias, z, wt)
        return F.relu_(y) if relu else y

    return forward


def mlp_rows(layers, dtype=torch.float32, then=None):
    """A Sequential of Linear (each maybe followed by batch norm), ReLU and Dropout layers,
    as the eval-mode function of (n, features) rows in ``dtype`` (then ``then``).

    Batch norm is folded into the Linear before it, dropout is the identity, a ReLU
    after a Linear is fused into it; the layers are unchanged.
    """
    layers, steps, i = [m for m in layers if not isinstance(m, nn.Dropout)], [], 0
    while i < len(layers):
        layer = layers[i]
        if not isinstance(layer, nn.Linear):
            raise TypeError("mlp_rows reads Linear layers, each followed by batch norm, ReLU "
                            f"and dropout or not; got {layer}.")
        i += 1
        bn = None
        if i < len(layers) and isinstance(layers[i], nn.modules.batchnorm._BatchNorm):
            bn, i = layers[i], i + 1
        relu = i < len(layers) and isinstance(layers[i], nn.ReLU)
        i += relu
        steps.append(linear_rows(*fold_linear(layer, bn, dtype), relu=relu))

    def forward(z):
        z = z.to(dtype)
        for step in steps:
            z = step(z)
        return z if then is None else then(z)

    return forward


def logit_rows(head, dtype=torch.float32):
    """A classifier head as a function of (n, features) rows giving float32 logits.

    A :class:`~sklearn_mmlgnet.nn.TextSimilarityHead` runs factorized (its
    ``factorized(dtype)``); a Linear (or a Sequential :func:`mlp_rows` reads) as
    a matrix product in ``dtype``.
    """
    if hasattr(head, "factorized"):
        return head.factorized(dtype)
    layers = head if isinstance(head, nn.Sequential) else nn.Sequential(head)
    rows = mlp_rows(layers, dtype)
    return lambda z: rows(z).float()
