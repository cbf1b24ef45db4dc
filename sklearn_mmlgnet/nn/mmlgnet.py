"""MMLGNet's visual network, its patch forward and its dense (whole-tile) forward."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_channels, check_positive_int, check_real
from ._ops import (
    HEAD_CHUNK,
    box_and_centre,
    centres,
    check_choice,
    check_dense_input,
    check_flag,
    check_heads,
    conv_stage,
    eval_forward,
    head_on_parts,
    logit_map,
)
from .layers import ConvEncoder, SpectralMLP, TextSimilarityHead, mean_of_heads

__all__ = ["MMLGNetModule"]


def _check_text_embeddings(text_embeddings):
    name = "module__text_embeddings"
    try:
        text = torch.as_tensor(text_embeddings, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{name} must be a real array of shape (n_classes, dim); "
                         f"got {type(text_embeddings).__name__}: {exc}") from exc
    if text.dim() != 2 or 0 in text.shape:
        raise ValueError(f"{name} must be a real array of shape (n_classes, dim) with at least "
                         f"one class and one dimension; got shape {tuple(text.shape)}.")
    if not torch.isfinite(text).all():
        raise ValueError(f"{name} holds NaN or infinite values.")
    return text


def _check_optional_channels(value, name):
    """Widths of a stack that may be empty (``()`` builds none)."""
    if value is None or (not isinstance(value, (str, bytes)) and hasattr(value, "__len__")
                         and len(value) == 0):
        return ()
    return check_channels(value, name)


class MMLGNetModule(nn.Module):
    """MMLGNet's visual network: HSI and LiDAR CNN encoders, fusion, projection, head.

    The defaults are the estimators' recipe. Arguments are checked here; errors name
    them as :class:`~sklearn_mmlgnet.MMLGNetClassifier` routes them
    (``module__<name>``).

    Parameters
    ----------
    n_hsi_bands, n_lidar_bands : int
        Bands of each modality, HSI first on the channel axis. ``n_lidar_bands=0``
        builds an HSI-only network.
    text_embeddings : array-like or Tensor of shape (n_classes, dim)
        Class text embeddings (frozen). With ``head="linear"`` only their count is used.
    hsi_channels, lidar_channels : tuple of int, default=(64, 128), (32, 64)
        Widths of the encoder stages.
    fusion_dim : int, default=256
        Width of the fused representation.
    temperature : float, default=0.07
        Initial softmax temperature; logits are similarities / temperature.
    learn_temperature : bool, default=False
        Whether the temperature is trained (as CLIP's log logit scale).
    head : {"text", "linear"}, default="text"
        ``"text"`` scores against the class text embeddings (MMLGNet); ``"linear"`` is
        the no-language ablation, a plain linear classifier on the fused features.
    aux_heads : bool, default=False
        Add a (student) head after each encoder stage but the last, for
        self-distillation.
    dropout : float, default=0.1
        Dropout before the projection.
    spectral_channels : tuple of int, default=(256, 128)
        Widths of the :class:`~sklearn_mmlgnet.nn.SpectralMLP` on the centre pixel's
        bands (HSI and LiDAR), fused next to the CNN features; ``()`` builds no
        spectral path.
    similarity : {"cosine", "dot"}, default="cosine"
        How every :class:`~sklearn_mmlgnet.nn.TextSimilarityHead` scores:
        ``"cosine"`` normalises the image embedding, ``"dot"`` does not.
    class_bias : bool, default=True
        A learnt per-class bias in every head.

    Attributes
    ----------
    in_channels : int
        ``n_hsi_bands + n_lidar_bands``.
    receptive_field : int
        Smallest patch side the encoders read without padding
        (``2 * n_stages + 1`` of the deeper encoder): the dense forward
        (:meth:`dense_logits`) equals the patch forward for patches at least this wide.

    Examples
    --------
    >>> import torch
    >>> net = MMLGNetModule(4, 1, torch.eye(3, 8), hsi_channels=(4, 8), lidar_channels=(2,),
    ...                     fusion_dim=8, spectral_channels=(8,)).eval()
    >>> net(torch.randn(2, 5, 7, 7)).shape
    torch.Size([2, 3])
    >>> net.dense_logits(torch.randn(1, 5, 10, 12), patch_size=7).shape  # a 4 x 6 map
    torch.Size([1, 3, 4, 6])
    """

    def __init__(self, n_hsi_bands, n_lidar_bands, text_embeddings, hsi_channels=(64, 128),
                 lidar_channels=(32, 64), fusion_dim=256, temperature=0.07,
                 learn_temperature=False, head="text", aux_heads=False, dropout=0.1,
                 spectral_channels=(256, 128), similarity="cosine", class_bias=True):
        super().__init__()
        n_hsi_bands = check_positive_int(n_hsi_bands, "module__n_hsi_bands")
        n_lidar_bands = check_positive_int(n_lidar_bands, "module__n_lidar_bands", minimum=0)
        text_embeddings = _check_text_embeddings(text_embeddings)
        hsi_channels = check_channels(hsi_channels, "module__hsi_channels")
        lidar_channels = check_channels(lidar_channels, "module__lidar_channels")
        fusion_dim = check_positive_int(fusion_dim, "module__fusion_dim")
        temperature = check_real(temperature, "module__temperature", low=0, low_inclusive=False)
        learn_temperature = check_flag(learn_temperature, "module__learn_temperature")
        head = check_choice(head, ("text", "linear"), "module__head")
        aux_heads = check_flag(aux_heads, "module__aux_heads")
        dropout = check_real(dropout, "module__dropout", low=0, high=1)
        spectral_channels = _check_optional_channels(spectral_channels,
                                                     "module__spectral_channels")
        similarity = check_choice(similarity, ("cosine", "dot"), "module__similarity")
        class_bias = check_flag(class_bias, "module__class_bias")

        self.n_hsi_bands = n_hsi_bands
        self.n_lidar_bands = n_lidar_bands
        self.in_channels = n_hsi_bands + n_lidar_bands
        self.hsi = ConvEncoder(n_hsi_bands, hsi_channels)
        self.lidar = ConvEncoder(n_lidar_bands, lidar_channels) if n_lidar_bands else None
        self.receptive_field = max(e.receptive_field for e in (self.hsi, self.lidar) if e)
        self.spectral = (SpectralMLP(self.in_channels, spectral_channels)
                         if spectral_channels else None)
        fused_in = (self.hsi.out_features + (self.lidar.out_features if self.lidar else 0)
                    + (self.spectral.out_features if self.spectral else 0))
        self.fusion = nn.Sequential(
            nn.Linear(fused_in, fusion_dim), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.logit_scale = nn.Parameter(
            torch.tensor(math.log(1.0 / temperature)), requires_grad=learn_temperature)
        n_classes = text_embeddings.shape[0]

        def make_head(in_features):
            if head == "text":
                return TextSimilarityHead(in_features, text_embeddings, self.logit_scale,
                                          normalize=similarity == "cosine", bias=class_bias)
            return nn.Linear(in_features, n_classes)

        self.head = make_head(fusion_dim)
        self.aux = nn.ModuleList()
        if aux_heads:
            n_stages = max(len(hsi_channels), len(lidar_channels) if self.lidar else 0)
            for k in range(n_stages - 1):
                width = 2 * (hsi_channels[k] if k < len(hsi_channels) else 0)
                if self.lidar is not None and k < len(lidar_channels):
                    width += 2 * lidar_channels[k]
                self.aux.append(make_head(width))

    def forward(self, X, heads="final"):
        """Logits of a batch of patches.

        Parameters
        ----------
        X : Tensor of shape (n, n_hsi_bands + n_lidar_bands, P, P)
            Patches, HSI bands first. Patches narrower than :attr:`receptive_field`
            are replicate-padded to it.
        heads : {"final", "mean", "all"}, default="final"
            In training mode with student heads the answer is always
            ``(final_logits, [student_logits, ...])`` (the criterion's input).
            Otherwise ``"final"``: the final head's logits (no student runs);
            ``"mean"``: :func:`~sklearn_mmlgnet.nn.mean_of_heads` of the final head
            and the students; ``"all"``: ``(final_logits, [student_logits, ...])``
            (an empty list without students).

        Returns
        -------
        Tensor of shape (n, n_classes), or a (final, list of students) pair
        """
        heads = check_heads(heads)
        students = bool(self.aux) and (self.training or heads != "final")
        feats_h = self.hsi(X[:, : self.n_hsi_bands])
        feats_l = self.lidar(X[:, self.n_hsi_bands:]) if self.lidar is not None else []
        spectral = [self.spectral(X)] if self.spectral is not None else []
        fused = torch.cat([feats_h[-1]] + feats_l[-1:] + spectral, dim=1)
        logits = self.head(self.fusion(fused))
        aux = []
        if students:
            for k, head in enumerate(self.aux):
                parts = [f[k] for f in (feats_h, feats_l) if k < len(f)]
                aux.append(head(torch.cat(parts, dim=1)))
            if self.training:
                return logits, aux
        if heads == "final":
            return logits
        return mean_of_heads([logits] + aux) if heads == "mean" else (logits, aux)

    def dense_floats_per_pixel(self):
        """Rough float32 values one tile pixel costs in :meth:`dense_logits`, input excluded.

        Sizes the tiles of dense prediction (:mod:`sklearn_mmlgnet.dense`).
        """
        total = 0
        for enc in (self.hsi, self.lidar):
            if enc is not None:  # each stage's map (and its channels-last copy), pooled parts
                total += sum(2 * s[0].out_channels for s in enc.stages) + 2 * enc.out_features
        if self.spectral is not None:  # the pixels' copy and the path's output
            total += self.in_channels + self.spectral.out_features
        return total

    @torch.inference_mode()
    def dense_logits(self, x, patch_size, heads="final"):
        """Eval-mode logits of every P x P patch of a tile, the convolutions run once.

        The encoders' convolutions are valid (no zero padding), so a patch's stage-k
        map is the crop of the tile's stage-k map around its centre, and what the
        head reads from a patch's last map is a function of the tile's map: its
        global average is a box filter (two separable stride-1 average poolings),
        its centre-pixel features are the tile's features at that pixel, batch norm
        (folded into the convolutions) is a per-channel affine map and ReLU acts
        pixel-wise. The spectral path, fusion and heads then act on each pixel's
        pooled features. So this equals ``forward(patches, heads)`` in eval mode on
        the tile's patches, up to float rounding, at about ``P^2`` times less
        convolution work. The module is not changed (nor set to eval mode).

        Parameters
        ----------
        x : Tensor of shape (N, n_hsi_bands + n_lidar_bands, R + P - 1, W + P - 1)
            Tiles with their halo of ``P // 2`` pixels on every side.
        patch_size : int
            The patch side P: odd, at least :attr:`receptive_field`.
        heads : {"final", "mean", "all"}, default="final"
            As in :meth:`forward` (eval mode).

        Returns
        -------
        Tensor of shape (N, n_classes, R, W), or a (final, list of students) pair
            Logits of the patch centred on each output pixel.
        """
        heads = check_heads(heads)
        P = check_dense_input(x, patch_size, self)
        students = list(self.aux) if heads != "final" else []
        parts, student_parts = [], [[] for _ in students]
        n = self.n_hsi_bands
        for enc, xe in ((self.hsi, x[:, :n]), (self.lidar, x[:, n:])):
            if enc is None:
                continue
            xe = xe.contiguous(memory_format=torch.channels_last)
            for k, stage in enumerate(enc.stages):
                xe = conv_stage(stage)(xe)
                if k < len(students):  # student k reads stage k of every encoder that has one
                    student_parts[k] += box_and_centre(xe, P - 2 * (k + 1))
            parts += box_and_centre(xe, P - 2 * len(enc.stages))  # as forward's pool
            del xe
        if self.spectral is not None:  # per pixel: the centre pixel of its patch is itself
            px = centres(x, P).float()
            parts.append(torch.cat([eval_forward(self.spectral.mlp, px[i:i + HEAD_CHUNK])
                                    for i in range(0, len(px), HEAD_CHUNK)]))
            del px
        head = self.head.factorized() if isinstance(self.head, TextSimilarityHead) else self.head
        # fusion = (Linear, ReLU, Dropout): the dropout is the identity in eval mode
        logits = head_on_parts(self.fusion[0], lambda z: head(F.relu(z)), parts)
        del parts
        aux = [torch.cat([student(torch.cat([p[i:i + HEAD_CHUNK] for p in sp], dim=1))
                          for i in range(0, len(sp[0]), HEAD_CHUNK)])
               for student, sp in zip(students, student_parts)]
        if heads == "final":
            return logit_map(logits, x, P)
        if heads == "mean":
            return logit_map(mean_of_heads([logits] + aux), x, P)
        return logit_map(logits, x, P), [logit_map(a, x, P) for a in aux]
