"""Torch modules: convolutional encoders, fusion, projection and heads.

:class:`MMLGNetModule` is MMLGNet's visual side (HSI and LiDAR encoders, fusion,
projection into the text space, cosine-similarity logits). :class:`SDHSINet` is the
HybridSN-like spectral-spatial backbone of the HSI-only SDHSI-Net. Both return the
final logits at inference and ``(final, [aux, ...])`` while training with
auxiliary heads, so self-distillation costs nothing at predict time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# CLIP clamps its learnable logit scale at 100 (temperature >= 0.01) for stability.
_MAX_LOGIT_SCALE = math.log(100.0)


def _pool(x):
    """Global average of a feature map joined with its centre pixel's features.

    The label belongs to the centre pixel: the average alone would weigh it 1/P^2
    and blur class borders; the centre alone would waste the context.
    """
    c = x.shape[-1] // 2
    return torch.cat([x.mean(dim=(-2, -1)), x[..., c, c]], dim=1)


def _pad_to_receptive_field(x, size):
    """Replicate-pad the patch's own border until it is at least ``size`` wide.

    The convolutions are "valid" (no zero padding), so a patch smaller than the
    receptive field would leave no output pixel. Such patches (single pixels read
    as P = 1, tiny test patches) are grown by repeating their edge pixels, a
    patch-local padding that :mod:`sklearn_mmlgnet.dense` cannot reproduce on a
    scene: dense prediction is exact only for patches at least ``size`` wide.
    """
    P = x.shape[-1]
    if P >= size:
        return x
    p = (size - P + 1) // 2
    return F.pad(x, (p, p, p, p), mode="replicate")


class ConvEncoder(nn.Module):
    """A light 2-D convolutional stack: (valid conv 3x3, batch norm, ReLU) per stage.

    ``forward`` returns the pooled features of every stage (global average and
    centre pixel, ``2 * width`` each), so auxiliary heads can read the intermediate
    ones.

    The convolutions do not zero-pad: each stage trims one pixel per side, so a
    P x P patch's stage-k map is the crop of the whole scene's stage-k map around
    the patch centre, and the patch network is the dense (full-scene) network read
    at one pixel (see :mod:`sklearn_mmlgnet.dense`). Patches narrower than
    :attr:`receptive_field` (``2 * n_stages + 1``) are first replicate-padded to it.

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
        x = _pad_to_receptive_field(x, self.receptive_field)
        pooled = []
        for stage in self.stages:
            x = stage(x)
            pooled.append(_pool(x))
        return pooled


class SpectralMLP(nn.Module):
    """The centre pixel's spectrum through (linear, batch norm, ReLU) stages.

    The label belongs to the centre pixel, and a centre-pixel classifier (an SVM
    on its spectrum) is a strong baseline on small labelled sets: this path gives
    the network that same view, unblurred by convolutions trained on few patches.
    It reads every band (HSI and LiDAR) of the centre pixel only, so on a scene it
    is a 1 x 1 convolution (see :mod:`sklearn_mmlgnet.dense`).

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

    ``logits = scale * cos(proj(features), t_c)`` with ``scale = 1 / temperature``.
    The text embeddings are a buffer: frozen, saved with the module, never trained.
    With ``normalize=False`` the image embedding is not set to unit length but divided
    by ``sqrt(dim)`` (the length of one with unit-variance coordinates): ``logits =
    scale * proj(features) . t_c / sqrt(dim)``, a dot product whose length can carry
    the network's confidence (the unit text embeddings still fix the class directions).
    With ``adapter > 0`` the class prototypes are ``t_c = normalize(text_c + adapter *
    r_c)``, with a learnt residual ``r`` that starts at 0 (a task residual, as in
    TaskRes, Yu et al., CVPR 2023): training starts from the language embeddings and
    may move classes the text places too close together apart. With ``bias=True`` a
    learnt bias per class, starting at 0, is added to the logits, as the linear head
    of the cross-entropy ablation has one.
    """

    def __init__(self, in_features, text_embeddings, logit_scale, adapter=0.0, normalize=True,
                 bias=False):
        super().__init__()
        self.proj = nn.Linear(in_features, text_embeddings.shape[1])
        self.logit_scale = logit_scale  # shared nn.Parameter
        self.register_buffer("text", F.normalize(text_embeddings.float(), dim=1))
        self.adapter = float(adapter)
        self.residual = nn.Parameter(torch.zeros_like(self.text)) if adapter else None
        self.normalize = bool(normalize)
        self.bias = nn.Parameter(torch.zeros(len(self.text))) if bias else None

    def __setstate__(self, state):
        super().__setstate__(state)
        # Pickled by an earlier release: no adapter, or always the cosine.
        if not hasattr(self, "residual"):
            self.adapter, self.residual = 0.0, None
        if not hasattr(self, "normalize"):
            self.normalize = True
        if "bias" not in self._parameters:
            self.bias = None

    def class_embeddings(self):
        """The unit class prototypes ``t_c`` the features are scored against."""
        if self.residual is None:
            return self.text
        return F.normalize(self.text + self.adapter * self.residual, dim=1)

    def forward(self, features):
        v = self.proj(features)
        v = F.normalize(v, dim=1) if self.normalize else v / math.sqrt(v.shape[1])
        # No clamp here: a clamp in forward kills the gradient once the scale passes
        # the bound. As CLIP, the estimator clamps a learnt scale's data after each
        # optimizer step instead, and a fixed one may exceed the bound.
        logits = self.logit_scale.exp() * v @ self.class_embeddings().t()
        return logits if self.bias is None else logits + self.bias


class MMLGNetModule(nn.Module):
    """MMLGNet's visual network: HSI and LiDAR CNN encoders, fusion, projection, head.

    Parameters
    ----------
    n_hsi_bands, n_lidar_bands : int
        Bands of each modality, HSI first on the channel axis. ``n_lidar_bands=0``
        builds an HSI-only network.
    text_embeddings : Tensor of shape (n_classes, dim)
        Class text embeddings (frozen). With ``head="linear"`` only their count is used.
    hsi_channels, lidar_channels : tuple of int
        Widths of the encoder stages.
    fusion_dim : int
        Width of the fused representation.
    temperature : float
        Initial softmax temperature; logits are cosine similarities / temperature.
    learn_temperature : bool
        Whether the temperature is trained (as CLIP's log logit scale).
    head : {"text", "linear"}
        ``"text"`` scores against the class text embeddings (MMLGNet); ``"linear"`` is
        the no-language ablation, a plain linear classifier on the fused features.
    aux_heads : bool
        Add a head after each encoder stage but the last (for self-distillation).
    dropout : float
        Dropout before the projection.
    spectral_channels : tuple of int
        Widths of the :class:`SpectralMLP` on the centre pixel's bands (HSI and
        LiDAR), fused next to the CNN features; ``()`` builds no spectral path.
    text_adapter : float
        ``adapter`` of every :class:`TextSimilarityHead`; 0 keeps the class text
        embeddings frozen.
    similarity : {"cosine", "dot"}
        How every :class:`TextSimilarityHead` scores: ``"cosine"`` normalises the image
        embedding (``normalize=True``), ``"dot"`` does not.
    class_bias : bool
        ``bias`` of every :class:`TextSimilarityHead`.
    """

    def __init__(self, n_hsi_bands, n_lidar_bands, text_embeddings, hsi_channels=(64, 128),
                 lidar_channels=(32, 64), fusion_dim=256, temperature=0.07,
                 learn_temperature=False, head="text", aux_heads=False, dropout=0.1,
                 spectral_channels=(), text_adapter=0.0, similarity="cosine", class_bias=False):
        super().__init__()
        self.n_hsi_bands = n_hsi_bands
        self.hsi = ConvEncoder(n_hsi_bands, hsi_channels)
        self.lidar = ConvEncoder(n_lidar_bands, lidar_channels) if n_lidar_bands else None
        # Smallest patch side for which dense (full-scene) prediction is exact.
        self.receptive_field = max(e.receptive_field for e in (self.hsi, self.lidar) if e)
        self.spectral = (SpectralMLP(n_hsi_bands + n_lidar_bands, spectral_channels)
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
                                          adapter=text_adapter,
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

    def __setstate__(self, state):
        super().__setstate__(state)
        # Networks pickled by releases before the spectral path existed have none.
        if not hasattr(self, "spectral"):
            self.spectral = None

    #: What an eval-mode ``forward`` returns: ``"final"``, the final head's logits, or
    #: ``"mean"``, :func:`mean_of_heads` of the final head and the students. Set by the
    #: estimators from their ``predict_heads``.
    predict_heads = "final"

    def forward(self, X, return_aux=False):
        feats_h = self.hsi(X[:, : self.n_hsi_bands])
        feats_l = self.lidar(X[:, self.n_hsi_bands:]) if self.lidar is not None else []
        spectral = [self.spectral(X)] if self.spectral is not None else []
        fused = torch.cat([feats_h[-1]] + feats_l[-1:] + spectral, dim=1)
        logits = self.head(self.fusion(fused))
        mean_heads = not (self.training or return_aux) and self.predict_heads == "mean"
        if not (self.aux and (self.training or return_aux or mean_heads)):
            return logits
        aux = []
        for k, head in enumerate(self.aux):
            parts = [f[k] for f in (feats_h, feats_l) if k < len(f)]
            aux.append(head(torch.cat(parts, dim=1)))
        return mean_of_heads([logits] + aux) if mean_heads else (logits, aux)


class SDHSINet(nn.Module):
    """HybridSN-like spectral-spatial CNN with auxiliary heads (SDHSI-Net).

    3-D convolutions over (band, row, col), then a 2-D convolution over the stacked
    spectral feature maps, then a fully connected head. A student head reads the pooled
    output of every convolutional stage (or of the ``student_stages``); they are the
    students of self-distillation. A linear student reads a 3-D stage averaged over its
    spectral axis; with ``student_hidden > 0`` each student has a bottleneck of its own
    (as in "Be Your Own Teacher", Zhang et al. 2019): it reads the stage's whole
    (channel x band) map, pooled, through a hidden layer, so the shared stage is not
    pushed to make its features linearly separable. Students run while training, for
    :meth:`~sklearn_mmlgnet.SDHSIClassifier.head_scores`, and in an eval-mode forward
    when :attr:`predict_heads` is ``"mean"``.
    The convolutions are valid in space (no zero padding), as in
    :class:`ConvEncoder`, so dense full-scene prediction is exact for patches of at
    least :attr:`receptive_field` pixels (``2 * (n_3d_stages + 1) + 1``, 9 by default).

    Examples
    --------
    >>> import torch
    >>> net = SDHSINet(n_bands=30, n_classes=4).eval()
    >>> net(torch.zeros(2, 30, 9, 9)).shape
    torch.Size([2, 4])
    """

    def __init__(self, n_bands, n_classes, conv3d_channels=(8, 16, 32), spectral_kernels=(7, 5, 3),
                 conv2d_channels=64, hidden=256, dropout=0.4, aux_heads=True,
                 student_stages=None, student_hidden=0):
        super().__init__()
        stages3d, prev, depth, depths = [], 1, n_bands, []
        for width, k in zip(conv3d_channels, spectral_kernels):
            k = max(1, min(k, depth))  # few bands: shrink the spectral kernel, never fail
            stages3d.append(nn.Sequential(
                nn.Conv3d(prev, width, kernel_size=(k, 3, 3), padding=0, bias=False),
                nn.BatchNorm3d(width), nn.ReLU(inplace=True)))
            prev, depth = width, depth - k + 1
            depths.append(depth)
        self.stages3d = nn.ModuleList(stages3d)
        self.conv2d = nn.Sequential(
            nn.Conv2d(prev * depth, conv2d_channels, kernel_size=3, padding=0, bias=False),
            nn.BatchNorm2d(conv2d_channels), nn.ReLU(inplace=True))
        # Valid 3 x 3 convolutions in space (as HybridSN): see ConvEncoder.
        self.receptive_field = 2 * (len(stages3d) + 1) + 1
        self.fc = nn.Sequential(nn.Linear(2 * conv2d_channels, hidden), nn.ReLU(inplace=True),
                                nn.Dropout(dropout), nn.Linear(hidden, n_classes))
        # Student heads exist only for self-distillation (aux_heads=False: none built or run).
        n_stages = len(stages3d) + 1
        self.student_stages = (tuple(range(1, n_stages + 1)) if student_stages is None
                               else tuple(int(k) for k in student_stages))
        if not all(1 <= k <= n_stages for k in self.student_stages):
            raise ValueError(f"student_stages must be stage numbers in 1..{n_stages}; "
                             f"got {student_stages!r}.")
        self.student_hidden = int(student_hidden)
        # Features a student of each stage reads: spectral mean (linear students) or the
        # whole flattened (channel x band) map (bottleneck students), mean and centre.
        widths = [w * (d if self.student_hidden else 1)
                  for w, d in zip(conv3d_channels, depths)] + [conv2d_channels]
        self.aux = nn.ModuleList(
            [self._student(2 * widths[k - 1], n_classes) for k in self.student_stages]
            if aux_heads else [])

    def _student(self, in_features, n_classes):
        if not self.student_hidden:
            return nn.Linear(in_features, n_classes)
        return nn.Sequential(nn.Linear(in_features, self.student_hidden),
                             nn.BatchNorm1d(self.student_hidden), nn.ReLU(inplace=True),
                             nn.Linear(self.student_hidden, n_classes))

    #: As :attr:`MMLGNetModule.predict_heads`.
    predict_heads = "final"

    def forward(self, X, return_aux=False):
        x = _pad_to_receptive_field(X, self.receptive_field).unsqueeze(1)
        mean_heads = (bool(self.aux) and self.predict_heads == "mean"
                      and not (self.training or return_aux))
        students = bool(self.aux) and (self.training or return_aux or mean_heads)
        pooled = {}
        for k, stage in enumerate(self.stages3d, start=1):
            x = stage(x)
            if students and k in self.student_stages:
                # linear students: average over the spectral axis first
                pooled[k] = _pool(x.flatten(1, 2) if self.student_hidden else x.mean(dim=2))
        x = self.conv2d(x.flatten(1, 2))
        feats = _pool(x)
        logits = self.fc(feats)
        if not students:
            return logits
        pooled[len(self.stages3d) + 1] = feats
        aux = [head(pooled[k]) for head, k in zip(self.aux, self.student_stages)]
        if mean_heads:
            return mean_of_heads([logits] + aux)
        return logits, aux


def mean_of_heads(logits):
    """``log(mean_k softmax(logits_k))``: logits whose softmax is the heads' mean probability.

    Examples
    --------
    >>> import torch
    >>> a, b = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    >>> torch.softmax(mean_of_heads([a, b]), dim=1)
    tensor([[0.5000, 0.5000]])
    """
    proba = torch.stack([torch.softmax(h.float(), dim=1) for h in logits]).mean(dim=0)
    return torch.log(proba.clamp_min(torch.finfo(proba.dtype).tiny))
