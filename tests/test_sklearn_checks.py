"""scikit-learn's estimator checks on every estimator and transformer of the package."""

from __future__ import annotations

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_mmlgnet import (
    BandStandardScaler,
    CenterPixel,
    MMLGNetClassifier,
    SDHSIClassifier,
    SpectralNormalizer,
    SpectralPCA,
)

from .conftest import HAS_ST

# The checks feed 2-D arrays (n_samples, n_features); the estimators read them as
# single-pixel patches (padded to the network's receptive field). One convolutional
# stage, a few epochs and a high learning rate keep them fast; the checks assert the
# same (check_classifiers_train still needs > 83% training accuracy).
_SMALL = dict(max_epochs=8, lr=0.05, batch_size=32, random_state=0)
ESTIMATORS = [
    SDHSIClassifier(conv3d_channels=(4,), spectral_kernels=(3,), conv2d_channels=8, hidden=16,
                    dropout=0.0, **_SMALL),
    BandStandardScaler(),
    SpectralNormalizer(n_lidar_bands=0),
    SpectralNormalizer(norm="l1", n_lidar_bands=0),
    SpectralPCA(n_components=2, n_lidar_bands=0, random_state=0),
    CenterPixel(),
]
if HAS_ST:
    # The packaged offline text model gives real embeddings for the checks' labels
    # without CLIP weights or network.
    ESTIMATORS.insert(0, MMLGNetClassifier(
        n_lidar_bands=0, text_encoder="sentence-transformers", hsi_channels=(8,),
        fusion_dim=16, dropout=0.0, **_SMALL))

# Checks an estimator cannot pass, with the reason (parametrize_with_checks marks them xfail).
# float32 convolutions and matrix products in torch pick their kernels by batch shape, so a
# sample's probabilities move by ~1e-6 relative with the batch it is predicted in: above the
# check's 1e-7 tolerance on some machines (CI), within it on others, hence non-strict xfail.
_FLOAT32_BATCH = ("float32 kernels in torch depend on the batch's shape: probabilities differ "
                  "by ~1e-6 relative between a subset and the full set; predicted labels agree")
EXPECTED_FAILED = {
    "MMLGNetClassifier": {"check_methods_subset_invariance": _FLOAT32_BATCH},
    "SDHSIClassifier": {"check_methods_subset_invariance": _FLOAT32_BATCH},
}


def _expected_failed(estimator):
    return EXPECTED_FAILED.get(type(estimator).__name__, {})


@pytest.mark.filterwarnings("ignore:y holds non-string labels")
@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed)
def test_sklearn_compatible(estimator, check):
    check(estimator)
