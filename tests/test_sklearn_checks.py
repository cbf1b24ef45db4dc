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


# The checks feed 2-D arrays (n_samples, n_features); the estimators read them as
# single-pixel patches (padded to the network's receptive field). One convolutional
# stage, narrow layers, a few epochs and a high learning rate keep them fast; the checks
# assert the same (check_classifiers_train still needs > 83% training accuracy).
_SMALL = dict(max_epochs=4, lr=0.2, batch_size=128, random_state=0)
ESTIMATORS = [
    # The packaged offline text model (a test dependency) gives real embeddings for the
    # checks' labels without CLIP weights or network.
    MMLGNetClassifier(n_lidar_bands=0, text_encoder="sentence-transformers",
                      module__hsi_channels=(8,), module__fusion_dim=16,
                      module__spectral_channels=(16,), module__dropout=0.0, **_SMALL),
    SDHSIClassifier(module__conv3d_channels=(4,), module__spectral_kernels=(3,),
                    module__conv2d_channels=8, module__hidden=16, module__student_hidden=8,
                    module__dropout=0.0, **_SMALL),
    BandStandardScaler(),
    SpectralNormalizer(n_lidar_bands=0),
    SpectralNormalizer(norm="l1", n_lidar_bands=0),
    SpectralPCA(n_components=2, n_lidar_bands=0, random_state=0),
    CenterPixel(),
]

# Checks an estimator cannot pass, with the reason (parametrize_with_checks marks them xfail).
# float32 convolutions and matrix products in torch pick their kernels by batch shape, so a
# sample's probabilities move by ~1e-6 relative with the batch it is predicted in: above the
# check's 1e-7 tolerance on some machines (CI), within it on others, hence non-strict xfail.
_FLOAT32_BATCH = ("float32 kernels in torch depend on the batch's shape: probabilities differ "
                  "by ~1e-6 relative between a subset and the full set; predicted labels agree")
# skorch-style routed parameters (module__*, criterion__*) come through **kwargs and are
# set as attributes in __init__; the check only knows __init__'s named arguments.
_ROUTED = ("module__* / criterion__* parameters are **kwargs of __init__, stored as attributes "
           "as skorch does; the check accepts only __init__'s named arguments")
# A keyword that is neither a named parameter nor module__* / criterion__* is refused at
# once (TypeError), as Python refuses an unexpected keyword; the check passes "kwargs=...".
_UNKNOWN_KEYWORD = ("__init__ refuses a keyword that is neither a parameter nor routed "
                    "(module__* / criterion__*) with a TypeError; the check passes 'kwargs'")
_EXPECTED_FAILED = {"check_methods_subset_invariance": _FLOAT32_BATCH,
                    "check_no_attributes_set_in_init": _ROUTED,
                    "check_do_not_raise_errors_in_init_or_set_params": _UNKNOWN_KEYWORD}
EXPECTED_FAILED = {"MMLGNetClassifier": _EXPECTED_FAILED, "SDHSIClassifier": _EXPECTED_FAILED}


def _expected_failed(estimator):
    return EXPECTED_FAILED.get(type(estimator).__name__, {})


@pytest.mark.filterwarnings("ignore:y holds non-string labels")
@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_both_estimators_are_checked():
    names = {type(e).__name__ for e in ESTIMATORS}
    assert {"MMLGNetClassifier", "SDHSIClassifier"} <= names
