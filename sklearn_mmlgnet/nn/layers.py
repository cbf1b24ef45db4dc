"""Building blocks of the networks: encoders, the spectral path, the text head.

Each block works on patches; the networks of :mod:`sklearn_mmlgnet.nn` combine them
and evaluate them densely over whole tiles as well.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._ops import linear_rows, pad_to_receptive_field, pool

__all__ = ["ConvEncoder", "SpectralMLP", "TextSimilarityHead", "mean_of_heads"]


class ConvEncoder(nn.Module):
    """A light 2-D convolutional stack: (valid conv 3x3, batch norm, ReLU) per stage.

    ``forward`` returns the pooled features of every stage (global average and
    centre pixel, ``2 * width`` each), so auxiliary heads can read the intermediate
    ones.

    The convolutions do not zero-pad: each stage trims one pixel per side, so a
    P x P patch's stage-k map is the crop of the whole scene's stage-k map around
    the patch centre, and the patch network is the dense (full-scene) network read
    at one pixel (see :meth:`MMLGNetModule.dense_logits
    <sklearn_mmlgnet.nn.MMLGNetModule.dense_logits>`). Patches narrower than
    :attr:`receptive_field` (``2 * n_stages + 1``) are first replicate-padded to it.

    Parameters
    ----------
    in_channels : int
        Bands of the input patches.
    channels : tuple of int
        Width of each stage.

    Examples
    --------
    >>> import torch
    >>> enc = ConvEncoder(4, (8, 16))
    >>> [f.shape for f in enc(torch.zeros(2, 4, 5, 5))]
    [torch.Size([2, 16]), torch.Size([2, 32])]
    """

    def __init__(self, in_channels, channels):
        super().__init__()
        stages, prev = [], in_channels
        for width in channels:
            stages.append(nn.Sequential(
                nn.Conv2d(prev, width, kernel_size=3, padding=0, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ))
            prev = width
        self.stages = nn.ModuleList(stages)
        self.out_features = 2 * prev
        self.receptive_field = 2 * len(stages) + 1

    def forward(self, x):
        x = pad_to_receptive_field(x, self.receptive_field)
        pooled = []
        for stage in self.stages:
            x = stage(x)
            pooled.append(pool(x))
        return pooled


class SpectralMLP(nn.Module):
    """The centre pixel's spectrum through (linear, batch norm, ReLU) stages.

    The label belongs to the centre pixel, and a centre-pixel classifier (an SVM
    on its spectrum) is a strong baseline on small labelled sets: this path gives
    the network that same view, unblurred by convolutions trained on few patches.
    It reads every band (HSI and LiDAR) of the centre pixel only, so on a scene it
    is a 1 x 1 convolution.

    Parameters
    ----------
    in_features : int
        Bands of a pixel.
    channels : tuple of int
        Width of each stage.

    Examples
    --------
    >>> import torch
    >>> SpectralMLP(5, (16, 8))(torch.zeros(2, 5, 7, 7)).shape
    torch.Size([2, 8])
    """

    def __init__(self, in_features, channels):
        super().__init__()
        layers, prev = [], in_features
        for width in channels:
            layers += [nn.Linear(prev, width, bias=False), nn.BatchNorm1d(width),
                       nn.ReLU(inplace=True)]
            prev = width
        self.mlp = nn.Sequential(*layers)
        self.out_features = prev

    def forward(self, x):
        """``x``: patches (n, C, P, P), read at their centre pixel, or pixels (n, C)."""
        if x.dim() == 4:
            c = x.shape[-1] // 2
            x = x[:, :, c, c]
        return self.mlp(x)


class TextSimilarityHead(nn.Module):
    """Project features to the text space and score them against class embeddings.

    ``logits = scale * cos(proj(features), t_c)`` with ``scale = exp(logit_scale)
    = 1 / temperature``. The text embeddings ``t_c`` are a buffer: frozen, saved
    with the module, never trained. With ``normalize=False`` the image embedding is
    not set to unit length but divided by ``sqrt(dim)`` (the length of one with
    unit-variance coordinates): ``logits = scale * proj(features) . t_c / sqrt(dim)``,
    a dot product whose length can carry the network's confidence (the unit text
    embeddings still fix the class directions). With ``bias=True`` a learnt bias
    per class, starting at 0, is added to the logits, as the linear head of the
    cross-entropy ablation has one.

    Parameters
    ----------
    in_features : int
        Width of the features.
    text_embeddings : Tensor of shape (n_classes, dim)
        Class text embeddings; stored at unit length.
    logit_scale : nn.Parameter
        Log of the scale (shared by every head of a network).
    normalize : bool, default=True
        Cosine (True) or scaled dot product (False).
    bias : bool, default=False
        Whether a learnt per-class bias is added.

    Examples
    --------
    >>> import math, torch
    >>> scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)), requires_grad=False)
    >>> head = TextSimilarityHead(8, torch.eye(3, 16), scale)
    >>> head(torch.randn(5, 8)).shape
    torch.Size([5, 3])
    """

    def __init__(self, in_features, text_embeddings, logit_scale, normalize=True, bias=False):
        super().__init__()
        self.proj = nn.Linear(in_features, text_embeddings.shape[1])
        self.logit_scale = logit_scale  # shared nn.Parameter
        self.register_buffer("text", F.normalize(text_embeddings.float(), dim=1))
        self.normalize = bool(normalize)
        self.bias = nn.Parameter(torch.zeros(len(self.text))) if bias else None

    def forward(self, features, text=None):
        """Logits of ``features`` against the stored class embeddings, or against
        ``text`` (unit rows of shape (n_classes, dim)) when given."""
        v = self.proj(features)
        v = F.normalize(v, dim=1) if self.normalize else v / math.sqrt(v.shape[1])
        # No clamp here: a clamp in forward kills the gradient once the scale passes
        # the bound. As CLIP, the estimator clamps a learnt scale's data after each
        # optimizer step instead, and a fixed one may exceed the bound.
        logits = self.logit_scale.exp() * v @ (self.text if text is None else text).t()
        return logits if self.bias is None else logits + self.bias

    def factorized(self, dtype=torch.float32):
        """A function of the features equal to :meth:`forward`, in fewer operations.

        ``forward(z) = scale * normalize(W z + b) @ T.T`` with W of shape (D, F).
        When the text dimension D exceeds F (512 against 256 by default), ``W z + b``
        lies in an (F + 1)-dimensional affine subspace: with the reduced QR
        factorisation W = Q R, ``W z + b = Q u + b_perp`` where ``u = R z + Q.T b``
        and ``b_perp`` is orthogonal to Q's columns, so ``|W z + b|^2 = |u|^2 +
        |b_perp|^2`` and ``(W z + b) . t = u . (Q.T t) + b_perp . t``: the same
        cosines (or dot products over ``sqrt(D)``) from F-wide instead of D-wide
        arrays. An orthogonal change of basis: no cancellation. Dense prediction
        scores every pixel of a scene with it. When D <= F, ``u = W z + b`` itself.

        Parameters
        ----------
        dtype : torch.dtype, default=torch.float32
            The dtype of the one matrix product over the features (``R z``); the
            norms and the logits are float32 whatever it is.

        Examples
        --------
        >>> import math, torch
        >>> scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)), requires_grad=False)
        >>> head = TextSimilarityHead(4, torch.randn(3, 16), scale, bias=True)
        >>> z = torch.randn(5, 4)
        >>> with torch.no_grad():
        ...     bool(torch.allclose(head.factorized()(z), head(z), atol=1e-4))
        True
        """
        with torch.no_grad():  # in float64, then kept in float32 (the product in dtype)
            W, b = self.proj.weight.double(), self.proj.bias.double()
            T = self.text.double()
            if W.shape[0] > W.shape[1]:
                Q, R = torch.linalg.qr(W)  # (D, F), (F, F)
                c = Q.t() @ b
                b_perp = b - Q @ c
                A, beta = Q.t() @ T.t(), T @ b_perp  # (F, n_classes), (n_classes,)
                norm2_perp = float(b_perp @ b_perp)
            else:
                R, c, A, beta, norm2_perp = W, b, T.t(), torch.zeros_like(T[:, 0]), 0.0
            product = linear_rows(R.contiguous().to(dtype), c.to(dtype))  # R z + c
            # (u @ A + beta): by the same kernel, A.T as a (n_classes, F) weight
            scores = linear_rows(A.t().contiguous().float(), beta.float())
            scale = self.logit_scale.detach().exp().float()
            bias = None if self.bias is None else self.bias.detach().float()
        dim, normalize = W.shape[0], self.normalize

        def logits(z):
            u = product(z.to(dtype)).float()
            if not normalize:
                norm = math.sqrt(dim)
            else:  # |W z + b| = sqrt(|u|^2 + |b_perp|^2), one pass over u
                norm = torch.linalg.vector_norm(u, dim=1, keepdim=True)
                if norm2_perp:
                    norm = norm.square_().add_(norm2_perp).sqrt_()
                norm = norm.clamp_min_(1e-12)
            out = scores(u).div_(norm).mul_(scale)
            return out if bias is None else out.add_(bias)

        return logits


def mean_of_heads(logits):
    """``log(mean_k softmax(logits_k))``: logits whose softmax is the heads' mean probability.

    Parameters
    ----------
    logits : sequence of Tensor of shape (n, n_classes) (or (n, n_classes, ...))
        Each head's logits, classes on axis 1.

    Returns
    -------
    Tensor
        Float logits of the same shape.

    Examples
    --------
    >>> import torch
    >>> a, b = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    >>> torch.softmax(mean_of_heads([a, b]), dim=1)
    tensor([[0.5000, 0.5000]])
    """
    proba = torch.stack([torch.softmax(h.float(), dim=1) for h in logits]).mean(dim=0)
    return torch.log(proba.clamp_min(torch.finfo(proba.dtype).tiny))


def select_heads(logits, aux, heads, training):
    """What a network's ``forward`` returns for ``heads``, shared by both networks.

    Training returns ``(logits, aux)`` when there are students, for the loss;
    otherwise ``"final"`` gives the final head's logits, ``"mean"``
    :func:`mean_of_heads` of all heads, ``"all"`` the pair.
    """
    if aux and training:
        return logits, aux
    if heads == "final":
        return logits
    return mean_of_heads([logits] + aux) if heads == "mean" else (logits, aux)
