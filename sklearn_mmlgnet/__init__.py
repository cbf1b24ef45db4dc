"""sklearn-mmlgnet: language-guided HSI + LiDAR classification for scikit-learn.

The estimators are :class:`MMLGNetClassifier` (MMLGNet: CNN encoders per modality,
fusion, projection into a frozen CLIP text space, symmetric contrastive loss) and
:class:`SDHSIClassifier` (SDHSI-Net: HSI-only CNN with self-distillation). The
modules hold what surrounds them: ``datasets``, ``patches``, ``prediction``
(full-scene prediction), ``io`` (a user's rasters in, GeoTIFF maps out),
``model_selection``, ``preprocessing``, ``baselines`` (tuned classic rows),
``metrics``, ``plotting`` and ``text``.
"""

from ._mmlgnet import MMLGNetClassifier
from ._sdhsi import SDHSIClassifier
from .preprocessing import (
    BandStandardScaler,
    CenterPixel,
    ExtendedMorphologicalProfile,
    SpectralNormalizer,
    SpectralPCA,
)

__version__ = "0.1.0"

__all__ = [
    "MMLGNetClassifier",
    "SDHSIClassifier",
    "BandStandardScaler",
    "CenterPixel",
    "ExtendedMorphologicalProfile",
    "SpectralNormalizer",
    "SpectralPCA",
    "__version__",
]
