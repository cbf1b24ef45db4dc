"""The dense forward of MMLGNet as it was before the speed work: the "before" column of
``bench_speed.py``, frozen here so that both columns are measured in one run.

A copy of the package's earlier code (sklearn_mmlgnet 0.1.0, ``dense.py`` and
``nn/_ops.py``), reduced to what the benchmark runs: an MMLGNetModule, the final head,
reflect padding, no mask, no test-time augmentation. Per tile: the tile gathered by
fancy indexing then concatenated (two copies), the identity symmetry applied as a
copy, the HSI bands sliced off (a copy), batch norm folded into the convolutions,
the spectral path as Linear + batch norm on a copy of the centre pixels, the fusion
as one ``addmm`` per pooled part in chunks of 16384 pixels, the text head
factorized afresh (a QR) on every tile; optional bfloat16 autocast around it all.
"""

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sklearn_mmlgnet.augment import dihedral
from sklearn_mmlgnet.dense import _tile_shape
from sklearn_mmlgnet.patches import border_index

HEAD_CHUNK = 16384


def _pixels(x):
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def _centres(x, k):
    h = k // 2
    return _pixels(x[:, :, h:x.shape[2] - h, h:x.shape[3] - h])


def _box_and_centre(x, k):
    x = x.float().contiguous(memory_format=torch.channels_last)
    mean = F.avg_pool2d(F.avg_pool2d(x, (k, 1), stride=1), (1, k), stride=1)
    return [_pixels(mean), _centres(x, k)]


def _eval_forward(layers, x):
    if isinstance(layers, nn.Sequential):
        for layer in layers:
            x = _eval_forward(layer, x)
        return x
    if isinstance(layers, nn.modules.batchnorm._BatchNorm):
        return F.batch_norm(x, layers.running_mean, layers.running_var, layers.weight,
                            layers.bias, training=False, momentum=0.0, eps=layers.eps)
    if isinstance(layers, nn.Dropout):
        return x
    return layers(x)


def _conv_stage(stage):
    conv, bn, _ = stage
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    weight = conv.weight * scale.reshape((-1,) + (1,) * (conv.weight.dim() - 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    bias = (bias - bn.running_mean) * scale + bn.bias
    return lambda x: F.relu_(F.conv2d(x, weight, bias))


def _head_on_parts(first, rest, parts):
    sizes = [p.shape[1] for p in parts]
    weights = [w.t().contiguous() for w in first.weight.split(sizes, dim=1)]
    out = []
    for i in range(0, len(parts[0]), HEAD_CHUNK):
        z = torch.addmm(first.bias, parts[0][i:i + HEAD_CHUNK], weights[0])
        for p, w in zip(parts[1:], weights[1:]):
            z.addmm_(p[i:i + HEAD_CHUNK].to(z.dtype), w.to(z.dtype))
        out.append(rest(z))
    return torch.cat(out)


def _factorized(head):
    import math

    with torch.no_grad():
        W, b = head.proj.weight.double(), head.proj.bias.double()
        T = head.text.double()
        Q, R = torch.linalg.qr(W)
        b_par = Q.t() @ b
        b_perp = b - Q @ b_par
        A = (Q.t() @ T.t()).float()
        beta = (T @ b_perp).float()
        norm2_perp = float(b_perp @ b_perp)
        Rt, b_par = R.t().contiguous().float(), b_par.float()
    dim, normalize, logit_scale, bias = W.shape[0], head.normalize, head.logit_scale, head.bias

    def logits(z):
        u = torch.addmm(b_par, z, Rt.to(z.dtype)).float()
        if normalize:
            norm = (u.square().sum(dim=1, keepdim=True) + norm2_perp).sqrt().clamp_min(1e-12)
        else:
            norm = math.sqrt(dim)
        out = logit_scale.exp() * ((u @ A + beta) / norm)
        return out if bias is None else out + bias

    return logits


@torch.inference_mode()
def dense_logits_before(net, x, P):
    """The earlier ``MMLGNetModule.dense_logits(x, P)`` (final head only)."""
    parts, n = [], net.n_hsi_bands
    for enc, xe in ((net.hsi, x[:, :n]), (net.lidar, x[:, n:])):
        if enc is None:
            continue
        xe = xe.contiguous(memory_format=torch.channels_last)
        for stage in enc.stages:
            xe = _conv_stage(stage)(xe)
        parts += _box_and_centre(xe, P - 2 * len(enc.stages))
        del xe
    if net.spectral is not None:
        px = _centres(x, P).float()
        parts.append(torch.cat([_eval_forward(net.spectral.mlp, px[i:i + HEAD_CHUNK])
                                for i in range(0, len(px), HEAD_CHUNK)]))
        del px
    head = _factorized(net.head)
    logits = _head_on_parts(net.fusion[0], lambda z: head(F.relu(z)), parts)
    R, W = x.shape[2] - P + 1, x.shape[3] - P + 1
    return logits.reshape(x.shape[0], R, W, -1).permute(0, 3, 1, 2)


def predict_labels_before(net, hsi, lidar, P, bf16=False):
    """The earlier dense ``predict_scene`` labels (class indices) of a whole scene."""
    H, W = hsi.shape[:2]
    h = P // 2
    rows, cols = _tile_shape(None, net, H, W, P)
    out = np.empty((H, W), dtype=np.int64)
    amp = (torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext())
    for r0 in range(0, H, rows):
        for c0 in range(0, W, cols):
            r1, c1 = min(H, r0 + rows), min(W, c0 + cols)
            ri, _ = border_index(np.arange(r0 - h, r1 + h), H, "reflect")
            ci, _ = border_index(np.arange(c0 - h, c1 + h), W, "reflect")
            parts = [c[np.ix_(ri, ci)] for c in (hsi, lidar)]
            slab = np.concatenate(parts, axis=-1).astype(np.float32, copy=False)
            x = torch.from_numpy(np.ascontiguousarray(slab)).permute(2, 0, 1)[None]
            with torch.inference_mode(), amp:
                logits = dense_logits_before(net, dihedral(x, 0), P)
                proba = torch.softmax(logits.float(), dim=1)[0].permute(1, 2, 0)
            p = proba.numpy().astype(np.float64)
            p /= p.sum(axis=-1, keepdims=True)
            out[r0:r1, c0:c1] = p.argmax(axis=-1)
    return out
