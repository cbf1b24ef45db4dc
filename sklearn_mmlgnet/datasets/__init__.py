"""Benchmark scenes: loaders of the public files, the synthetic scene, and helpers.

Every function returns a :class:`sklearn.utils.Bunch` with ``hsi`` (H, W, B),
``lidar`` (H, W, L), ``labels`` (H, W; 0 = unlabelled), ``class_names``
({label: name}), ``train_mask`` and ``test_mask``; :func:`load_idtrees` returns
many small plots instead (``scenes``), with labelled patches and their groups
(crown, plot, site) ready for grouped cross-validation (:func:`idtrees_splits`).
"""

from ._base import get_data_home
from ._idtrees import IDTREES_COMMON_NAMES, idtrees_splits, load_idtrees
from ._loaders import (
    HOUSTON2013_CLASSES,
    JASPER_RIDGE_CLASSES,
    MUUFL_CLASSES,
    TRENTO_CLASSES,
    load_houston2013,
    load_jasper_ridge,
    load_muufl,
    load_trento,
    read_envi_roi,
)
from ._synthetic import SYNTHETIC_CLASSES, make_hsi_lidar_scene

__all__ = [
    "get_data_home",
    "load_trento",
    "load_muufl",
    "load_houston2013",
    "load_jasper_ridge",
    "load_idtrees",
    "idtrees_splits",
    "IDTREES_COMMON_NAMES",
    "make_hsi_lidar_scene",
    "read_envi_roi",
    "TRENTO_CLASSES",
    "MUUFL_CLASSES",
    "HOUSTON2013_CLASSES",
    "JASPER_RIDGE_CLASSES",
    "SYNTHETIC_CLASSES",
]
