"""sklearn-mmlgnet: language-guided HSI + LiDAR classification for scikit-learn.

The estimators are :class:`MMLGNetClassifier` (MMLGNet: CNN encoders per modality,
fusion, projection into a frozen CLIP text space, symmetric contrastive loss) and
:class:`SDHSIClassifier` (SDHSI-Net: HSI-only CNN with self-distillation). The
subpackages hold what surrounds them: ``datasets``, ``patches``,
``model_selection``, ``preprocessing``, ``metrics``, ``plotting`` and ``text``.
"""

from ._estimator import MMLGNetClassifier, SDHSIClassifier
from .preprocessing import BandStandardScaler, CenterPixel, SpectralPCA

__version__ = "0.1.0"

__all__ = [
    "MMLGNetClassifier",
    "SDHSIClassifier",
    "BandStandardScaler",
    "CenterPixel",
    "SpectralPCA",
    "__version__",
]
