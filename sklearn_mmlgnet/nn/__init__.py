"""Torch modules: convolutional encoders, fusion, projection and heads.

:class:`MMLGNetModule` is MMLGNet's visual side (HSI and LiDAR encoders, fusion,
projection into the text space, similarity logits). :class:`SDHSINet` is the
HybridSN-like spectral-spatial backbone of the HSI-only SDHSI-Net. Both take
``forward(X, heads="final")``: the final logits outside training (no student head
runs), ``heads="mean"`` for the mean of every head's probabilities, ``heads="all"``
for every head, and ``(final, [students])`` while training with student heads, so
self-distillation costs nothing at predict time.

Each network also has a dense forward, ``dense_logits(x, patch_size, heads)``: the
logits of every patch of a whole tile with the convolutions run once, equal to the
patch forward (:mod:`sklearn_mmlgnet.dense` walks a scene with it). Neither forward
changes the module, so a fitted network in eval mode can serve several threads.

Layout: :mod:`~sklearn_mmlgnet.nn.layers` (the blocks),
:mod:`~sklearn_mmlgnet.nn.mmlgnet` and :mod:`~sklearn_mmlgnet.nn.sdhsi` (each
network with its dense forward).
"""

from ._ops import HEADS
from .layers import ConvEncoder, SpectralMLP, TextSimilarityHead, mean_of_heads
from .mmlgnet import MMLGNetModule
from .sdhsi import SDHSINet

__all__ = [
    "HEADS",
    "ConvEncoder",
    "MMLGNetModule",
    "SDHSINet",
    "SpectralMLP",
    "TextSimilarityHead",
    "mean_of_heads",
]
