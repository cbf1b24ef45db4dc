"""Tensor helpers shared by the networks of :mod:`sklearn_mmlgnet.nn`.

A private module of public names (as :mod:`sklearn_mmlgnet._validation`): the
argument checks of the modules' constructors and ``forward``, the pooling both
networks read a patch with, and the pieces their dense (whole-tile) forwards are
built from. Every dense helper computes the eval-mode function of the layers it
is given (batch norm with its running statistics, no dropout) without changing
them, so a fitted module can be shared by threads.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: What ``forward(X, heads=...)`` returns outside training: the final head's
#: logits, the mean of every head's probabilities as logits, or every head.
HEADS = ("final", "mean", "all")

#: Pixels per pass through the layers that read pooled features (fusion, heads).
HEAD_CHUNK = 16384


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
def pixels(x):
    """A (N, C, R, W) map as (N * R * W, C) rows, pixels in raster order."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def centres(x, k):
    """Per pixel: the features at the centre of its k x k window, as (N * R * W, C) rows."""
    h = k // 2
    return pixels(x[:, :, h:x.shape[2] - h, h:x.shape[3] - h])


def box_and_centre(x, k):
    """Per pixel: the mean of the k x k window around it and its own features.

    ``x`` is (N, C, R + k - 1, W + k - 1); returns two (N * R * W, C) arrays, pixels
    in raster order: what :func:`pool` gives on every pixel's k x k patch of ``x``.
    """
    # Box sums in float32 even under autocast; channels-last so the pooling is fast
    # and the pixel-major views need no transpose copy.
    x = x.float().contiguous(memory_format=torch.channels_last)
    mean = F.avg_pool2d(F.avg_pool2d(x, (k, 1), stride=1), (1, k), stride=1)
    return [pixels(mean), centres(x, k)]


def eval_batch_norm(x, bn):
    """``bn`` in eval mode (its running statistics), whatever the module's mode."""
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                        training=False, momentum=0.0, eps=bn.eps)


def eval_forward(layers, x):
    """``layers`` (a module or a Sequential of them) as in eval mode, without setting it.

    Batch norm uses its running statistics and dropout is the identity; any other
    layer must not depend on the mode (linear, convolution, activations).
    """
    if isinstance(layers, nn.Sequential):
        for layer in layers:
            x = eval_forward(layer, x)
        return x
    if isinstance(layers, nn.modules.batchnorm._BatchNorm):
        return eval_batch_norm(x, layers)
    if isinstance(layers, nn.Dropout):
        return x
    return layers(x)


def conv_stage(stage):
    """A (conv, batch norm, ReLU) stage as one convolution with the batch norm folded in.

    In eval mode batch norm is a per-channel affine map, so it folds into the
    convolution's weights and bias (one pass over the feature map fewer). Returns
    a function of the stage's input; the stage itself is left as it is.
    """
    conv, bn, relu = stage
    if not (isinstance(conv, (nn.Conv2d, nn.Conv3d))
            and isinstance(bn, nn.modules.batchnorm._BatchNorm) and isinstance(relu, nn.ReLU)):
        raise TypeError(f"a stage must be (Conv2d or Conv3d, BatchNorm, ReLU); got {stage}.")
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    shape = (-1,) + (1,) * (conv.weight.dim() - 1)
    weight = conv.weight * scale.reshape(shape)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    bias = (bias - bn.running_mean) * scale + bn.bias
    op = F.conv2d if isinstance(conv, nn.Conv2d) else F.conv3d

    def forward(x):
        return F.relu_(op(x, weight, bias, conv.stride, conv.padding, conv.dilation,
                          conv.groups))

    return forward


def head_on_parts(first, rest, parts):
    """``rest(first(cat(parts, dim=1)))`` in chunks of pixels, without the concatenation.

    ``first`` is the Linear layer that reads the pooled features: its weight is
    split by columns, one block per part, so no (pixels, features) copy is made.
    ``rest`` maps each chunk of ``first``'s output.
    """
    sizes = [p.shape[1] for p in parts]
    weights = [w.t().contiguous() for w in first.weight.split(sizes, dim=1)]
    bias = first.bias if first.bias is not None else torch.zeros(
        first.out_features, dtype=weights[0].dtype, device=weights[0].device)
    out = []
    for i in range(0, len(parts[0]), HEAD_CHUNK):
        z = torch.addmm(bias, parts[0][i:i + HEAD_CHUNK], weights[0])
        for p, w in zip(parts[1:], weights[1:]):
            # Accumulate in place (no temporaries); in the dtype autocast chose.
            z.addmm_(p[i:i + HEAD_CHUNK].to(z.dtype), w.to(z.dtype))
        out.append(rest(z))
    return torch.cat(out)


def logit_map(logits, x, patch_size):
    """(N * R * W, K) pixel rows of a tile ``x`` as an (N, K, R, W) map (a view)."""
    R, W = x.shape[2] - patch_size + 1, x.shape[3] - patch_size + 1
    return logits.reshape(x.shape[0], R, W, -1).permute(0, 3, 1, 2)
