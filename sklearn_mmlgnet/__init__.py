"""sklearn-mmlgnet: language-guided HSI + LiDAR classification for scikit-learn.

The estimators are :class:`MMLGNetClassifier` (MMLGNet: CNN encoders per modality,
fusion, projection into a frozen CLIP text space, symmetric contrastive loss) and
:class:`SDHSIClassifier` (SDHSI-Net: HSI-only CNN with self-distillation). The
modules hold what surrounds them: ``datasets``, ``patches``, ``prediction``
(full-scene prediction), ``io`` (a user's rasters in, GeoTIFF maps out),
``model_selection``, ``preprocessing``, ``baselines`` (tuned classic rows),
``metrics``, ``plotting`` and ``text``.
"""

# First, before anything imports torch: the command line's OpenMP wait policy. OpenMP
# reads OMP_WAIT_POLICY once, when torch loads it, and the ``mmlgnet`` command's first
# code is this file (its module, sklearn_mmlgnet.cli, is imported through the package),
# so the command's main() would be too late. Only for the command line and only when
# the user has not set it: a program importing the library keeps its environment.
from ._threads import command_line_wait_policy

command_line_wait_policy()

from ._mmlgnet import MMLGNetClassifier  # noqa: E402
from ._sdhsi import SDHSIClassifier  # noqa: E402
from .preprocessing import (  # noqa: E402
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
