"""
MMLGNet against classic classifiers, by spatial cross-validation
================================================================

``cross_val_score`` of MMLGNet and of three classic classifiers on the same patch array
and the same spatially blocked folds. SVM, random forest and KNN see the centre pixel's
bands (:class:`~sklearn_mmlgnet.CenterPixel`); MMLGNet sees the whole patch. The folds
are whole blocks of the scene, and training pixels whose patch would overlap a validation
patch are left out of that fold.

The classic classifiers keep fixed hyperparameters here; :mod:`sklearn_mmlgnet.baselines`
tunes them by inner cross-validation, as the benchmark does.

Set ``MMLGNET_EXAMPLE_QUICK=1`` for a small, fast run (as the tests do).
"""

import os

import numpy as np
from matplotlib.figure import Figure
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from sklearn_mmlgnet import BandStandardScaler, CenterPixel, MMLGNetClassifier
from sklearn_mmlgnet.datasets import make_hsi_lidar_scene
from sklearn_mmlgnet.metrics import SCORERS
from sklearn_mmlgnet.model_selection import SpatialBlockKFold
from sklearn_mmlgnet.patches import labelled_patches
from sklearn_mmlgnet.text import resolve_text_encoder

QUICK = os.environ.get("MMLGNET_EXAMPLE_QUICK") == "1"

# %%
# One patch array, spatial folds
# ------------------------------
# A 120 x 300 px scene with 32 bands keeps the example near a minute on two CPU cores;
# ``make_hsi_lidar_scene()`` without size arguments gives the full 166 x 600 px, 63 bands.
P = 5 if QUICK else 7
size = (dict(n_rows=80, n_cols=160, n_bands=16) if QUICK
        else dict(n_rows=120, n_cols=300, n_bands=32))
scene = make_hsi_lidar_scene(patch_size=P, random_state=0, **size)
X, y, rows, cols = labelled_patches(scene, scene.train_mask, patch_size=P)
cv = SpatialBlockKFold(rows, cols, n_splits=3, block_size=12 if QUICK else 20, patch_size=P,
                       random_state=0)

# %%
# Four models, scored by average accuracy (AA) on each fold
# ---------------------------------------------------------
models = {
    "MMLGNet": make_pipeline(BandStandardScaler(), MMLGNetClassifier(
        n_lidar_bands=1, class_names=scene.class_names, max_epochs=3 if QUICK else 12,
        random_state=0, **resolve_text_encoder("auto"))),
    "SVM (RBF)": make_pipeline(CenterPixel(), StandardScaler(), SVC(C=100)),
    "RandomForest": make_pipeline(CenterPixel(), RandomForestClassifier(200, random_state=0)),
    "KNN": make_pipeline(CenterPixel(), StandardScaler(), KNeighborsClassifier(5)),
}
scores = {}
for name, model in models.items():
    scores[name] = 100 * cross_val_score(model, X, y, cv=cv, scoring=SCORERS["AA"])
    print(f"{name:>14}: AA {scores[name].mean():.2f} ± {scores[name].std():.2f} %")

# %%
# The folds side by side
# ----------------------
# Each dot is one fold; the bar is their mean.
fig = Figure(figsize=(6, 3.2), layout="constrained")
ax = fig.add_subplot()
for k, (name, s) in enumerate(scores.items()):
    ax.barh(k, s.mean(), color="0.8")
    ax.plot(s, np.full(len(s), k), "o", color="C0")
ax.set_yticks(range(len(scores)), list(scores))
ax.set_xlabel("AA on the held-out blocks (%)")
ax.set_xlim(min(50.0, min(s.min() for s in scores.values()) - 5), 100)
