"""
Grid search over MMLGNet's temperature and patch size
=====================================================

``GridSearchCV`` over two of MMLGNet's parameters, on spatially blocked folds of the
training pixels, then one look at the test pixels with the refitted best model.

One patch array serves every patch size (``patch_size`` crops the centre of each patch),
and the class names' text embeddings are encoded once for the whole search (they are
cached on disk). The test split is touched once, at the end.

Set ``MMLGNET_EXAMPLE_QUICK=1`` for a small, fast run (as the tests do).
"""

import os

import numpy as np
from matplotlib.figure import Figure
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from sklearn_mmlgnet import BandStandardScaler, MMLGNetClassifier
from sklearn_mmlgnet.datasets import make_hsi_lidar_scene
from sklearn_mmlgnet.metrics import SCORERS, classification_table
from sklearn_mmlgnet.model_selection import SpatialBlockKFold
from sklearn_mmlgnet.patches import labelled_patches
from sklearn_mmlgnet.prediction import predict_scene
from sklearn_mmlgnet.text import resolve_text_encoder

QUICK = os.environ.get("MMLGNET_EXAMPLE_QUICK") == "1"

# %%
# Training patches and spatial folds
# ----------------------------------
# The patches are cut at the largest size searched.
# A 120 x 300 px scene with 32 bands keeps the example near a minute on two CPU cores;
# ``make_hsi_lidar_scene()`` without size arguments gives the full 166 x 600 px, 63 bands.
P = 5 if QUICK else 7
size = (dict(n_rows=80, n_cols=160, n_bands=16) if QUICK
        else dict(n_rows=120, n_cols=300, n_bands=32))
scene = make_hsi_lidar_scene(patch_size=P, random_state=0, **size)
X_train, y_train, rows, cols = labelled_patches(scene, scene.train_mask, patch_size=P)
cv = SpatialBlockKFold(rows, cols, n_splits=3, block_size=12 if QUICK else 20, patch_size=P,
                       random_state=0)

# %%
# The search
# ----------
# Scored by average accuracy (AA), so that rare classes count as much as common ones.
clf = MMLGNetClassifier(n_lidar_bands=1, class_names=scene.class_names,
                        max_epochs=3 if QUICK else 6, random_state=0,
                        **resolve_text_encoder("auto"))
pipe = make_pipeline(BandStandardScaler(), clf)
temperatures, patch_sizes = ([0.07, 0.2], [3, 5]) if QUICK else ([0.03, 0.1], [5, 7])
grid = {"mmlgnetclassifier__temperature": temperatures,
        "mmlgnetclassifier__patch_size": patch_sizes}
search = GridSearchCV(pipe, grid, cv=cv, scoring=SCORERS["AA"]).fit(X_train, y_train)

print("best parameters (chosen on training pixels only):", search.best_params_)
print(f"best cross-validated AA: {100 * search.best_score_:.2f} %")

# %%
# Mean cross-validated AA of every candidate
# ------------------------------------------
results = search.cv_results_
table = np.empty((len(temperatures), len(patch_sizes)))
for params, score in zip(results["params"], results["mean_test_score"]):
    i = temperatures.index(params["mmlgnetclassifier__temperature"])
    j = patch_sizes.index(params["mmlgnetclassifier__patch_size"])
    table[i, j] = 100 * score
fig = Figure(figsize=(4.5, 3.2), layout="constrained")
ax = fig.add_subplot()
image = ax.imshow(table, cmap="viridis")
for (i, j), value in np.ndenumerate(table):
    ax.text(j, i, f"{value:.1f}", ha="center", va="center",
            color="black" if value > table.mean() else "white")
ax.set_xticks(range(len(patch_sizes)), [f"{p} x {p}" for p in patch_sizes])
ax.set_yticks(range(len(temperatures)), temperatures)
ax.set_xlabel("patch size")
ax.set_ylabel("temperature")
fig.colorbar(image, label="mean CV AA (%)")

# %%
# The test pixels, once
# ---------------------
# ``predict_scene`` classifies the masked pixels batch by batch, never as one patch array.
test = scene.test_mask & (scene.labels > 0)
pred = predict_scene(search, scene.hsi, scene.lidar, patch_size=P, mask=test)
print(classification_table(scene.labels[test], pred[test], scene.class_names))
