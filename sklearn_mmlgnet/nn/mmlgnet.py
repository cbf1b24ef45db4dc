"""MMLGNet's visual network, its patch forward and its dense (whole-tile) forward."""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_channels, check_positive_int, check_real
from ._ops import (
    box_and_centre,
    check_choice,
    check_dense_input,
    check_flag,
    check_heads,
    compute_dtype,
    crop,
    dense_plan,
    fold_conv,
    logit_rows,
    mlp_rows,
    per_pixel,
    rows_to_map,
)
from .layers import ConvEncoder, SpectralMLP, TextSimilarityHead, mean_of_heads, select_heads

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
        #: A module giving the class embeddings at every forward (learnt prompts, set by
        #: the estimator while it trains them), else None: the stored ``text`` is used.
        self.text_source = None
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
        text = () if self.text_source is None else (self.text_source(),)
        logits = self.head(self.fusion(fused), *text)
        aux = []
        if students:
            for k, head in enumerate(self.aux):
                parts = [f[k] for f in (feats_h, feats_l) if k < len(f)]
                aux.append(head(torch.cat(parts, dim=1), *text))
        return select_heads(logits, aux, heads, self.training)

    @torch.no_grad()
    def store_text(self, text):
        """Make ``text`` (n_classes, dim) the class embeddings every head stores, and drop
        :attr:`text_source`: what a fit with learnt prompts ends with."""
        text = F.normalize(torch.as_tensor(text, dtype=torch.float32), dim=1)
        for head in [self.head, *self.aux]:
            head.text.copy_(text.to(head.text.device))
        self.text_source = None

    def dense_floats_per_pixel(self):
        """Rough float32 values one tile pixel costs in :meth:`dense_logits`, input excluded.

        Sizes the tiles of dense prediction (:mod:`sklearn_mmlgnet.dense`).
        """
        total = 0
        for enc in (self.hsi, self.lidar):
            if enc is not None:  # each stage's map, its box means (two passes), pooled parts
                total += sum(2 * s[0].out_channels for s in enc.stages) + 2 * enc.out_features
        if self.spectral is not None:  # the pixels' copy and the path's output
            total += self.in_channels + self.spectral.out_features
        return total

    @torch.inference_mode()
    def dense_logits(self, x, patch_size, heads="final", *, dtype=None):
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
        dtype : torch.dtype, optional
            The compute dtype of the convolutions and the per-pixel layers:
            float32, or torch.bfloat16 (about twice as fast on CPUs with AVX-512
            BF16 or AMX, and on GPUs; logits within about 1e-2). By default that
            of an enabled :func:`torch.autocast` for ``x``'s device, else float32.
            Box means accumulate, and logits come out, in float32.

        Returns
        -------
        Tensor of shape (N, n_classes, R, W), or a (final, list of students) pair
            Logits of the patch centred on each output pixel.
        """
        heads = check_heads(heads)
        P = check_dense_input(x, patch_size, self)
        dtype = compute_dtype(dtype, x.device)
        with torch.autocast(x.device.type, enabled=False):  # the dtypes are chosen here
            w = dense_plan(self, dtype, lambda: self._dense_weights(dtype))
            N, R, W = x.shape[0], x.shape[2] - P + 1, x.shape[3] - P + 1
            x = x.to(dtype).contiguous(memory_format=torch.channels_last)
            students = w.students if heads != "final" else []
            maps, student_maps = [], [[] for _ in students]
            # The HSI encoder's first convolution reads the whole tile (zero weights on the
            # LiDAR bands): no copy of the tile's HSI bands.
            for stages, xe in ((w.hsi, x), (w.lidar, x[:, self.n_hsi_bands:])):
                for k, (weight, bias) in enumerate(stages):
                    xe = F.relu_(F.conv2d(xe, weight, bias))
                    if k < len(students):  # student k reads stage k of every encoder
                        student_maps[k] += box_and_centre(xe, P - 2 * (k + 1))
                if stages:
                    maps += box_and_centre(xe, P - 2 * len(stages))  # as forward's pool
                del xe
            if w.spectral is not None:  # per pixel: the centre pixel of its patch is itself
                maps.append(rows_to_map(per_pixel(w.spectral, [crop(x, P)], dtype), N, R, W))
            del x
            logits = per_pixel(w.fusion, maps, dtype)
            del maps
            aux = [per_pixel(f, m, dtype) for f, m in zip(students, student_maps)]
        if heads == "final":
            return rows_to_map(logits, N, R, W)
        if heads == "mean":
            return rows_to_map(mean_of_heads([logits] + aux), N, R, W)
        return rows_to_map(logits, N, R, W), [rows_to_map(a, N, R, W) for a in aux]

    def _dense_weights(self, dtype):
        """The weights :meth:`dense_logits` runs, in ``dtype``: batch norm folded into the
        convolutions and linear layers, the text head factorized."""
        hsi = [fold_conv(stage, dtype) for stage in self.hsi.stages]
        if self.lidar is not None:  # stage 1 reads the whole tile, LiDAR bands weighted 0
            weight, bias = hsi[0]
            weight = F.pad(weight, (0, 0, 0, 0, 0, self.n_lidar_bands))
            hsi[0] = weight.contiguous(memory_format=torch.channels_last), bias
        lidar = [fold_conv(s, dtype) for s in self.lidar.stages] if self.lidar else []
        spectral = mlp_rows(self.spectral.mlp, dtype) if self.spectral is not None else None
        # fusion = (Linear, ReLU, Dropout): the dropout is the identity in eval mode
        fusion = mlp_rows(self.fusion, dtype, then=logit_rows(self.head, dtype))
        students = [logit_rows(head, dtype) for head in self.aux]
        return SimpleNamespace(hsi=hsi, lidar=lidar, spectral=spectral, fusion=fusion,
                               students=students)
