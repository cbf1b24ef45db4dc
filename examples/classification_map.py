"""
A full-scene classification map and its confusion matrix
========================================================

Fit MMLGNet on the training pixels of the embedded synthetic HSI + LiDAR scene, classify
every pixel of the scene with :func:`~sklearn_mmlgnet.prediction.predict_scene` (tile by
tile, in bounded memory), and look at the map, the ground truth and the confusion matrix
of the test pixels.

Set ``MMLGNET_EXAMPLE_QUICK=1`` for a small, fast run (as the tests do) and
``MMLGNET_EXAMPLE_OUT`` for the folder the PNG files go to.
"""

import os

from sklearn.pipeline import make_pipeline

from sklearn_mmlgnet import BandStandardScaler, MMLGNetClassifier
from sklearn_mmlgnet.datasets import make_hsi_lidar_scene
from sklearn_mmlgnet.metrics import overall_accuracy
from sklearn_mmlgnet.patches import labelled_patches
from sklearn_mmlgnet.plotting import plot_classification_map, plot_confusion_matrix
from sklearn_mmlgnet.prediction import predict_scene
from sklearn_mmlgnet.text import resolve_text_encoder

QUICK = os.environ.get("MMLGNET_EXAMPLE_QUICK") == "1"
out = os.environ.get("MMLGNET_EXAMPLE_OUT", ".")

# %%
# The scene and its training patches
# ----------------------------------
# The scene's split is spatially disjoint: no training patch overlaps a test pixel.
# ``labelled_patches`` cuts a ``P x P`` patch around every training pixel, HSI bands
# first, then the LiDAR band.
# A 120 x 300 px scene with 32 bands keeps the example near a minute on two CPU cores;
# ``make_hsi_lidar_scene()`` without size arguments gives the full 166 x 600 px, 63 bands.
P = 5 if QUICK else 7
size = (dict(n_rows=80, n_cols=160, n_bands=16) if QUICK
        else dict(n_rows=120, n_cols=300, n_bands=32))
scene = make_hsi_lidar_scene(patch_size=P, random_state=0, **size)
X, y, _, _ = labelled_patches(scene, scene.train_mask, patch_size=P)
print(f"{scene.hsi.shape[0]} x {scene.hsi.shape[1]} px, {scene.hsi.shape[2]} HSI bands; "
      f"{len(y)} training patches of shape {X.shape[1:]}")

# %%
# Fit
# ---
# The text encoder is CLIP when its weights are on disk or can be downloaded, else the
# packaged offline model (``resolve_text_encoder`` says which).
model = make_pipeline(BandStandardScaler(), MMLGNetClassifier(
    n_lidar_bands=1, class_names=scene.class_names, max_epochs=3 if QUICK else 20,
    random_state=0, **resolve_text_encoder("auto"))).fit(X, y)

# %%
# Every pixel of the scene
# ------------------------
# For MMLGNet (and for a Pipeline of per-pixel steps in front of it) ``predict_scene``
# computes each pixel's convolution features once, tile by tile; any other classifier is
# fed patches batch by batch.
pred_map = predict_scene(model, scene.hsi, scene.lidar, patch_size=P, batch_size=2048)
test = scene.test_mask
print(f"OA on the test pixels: {100 * overall_accuracy(scene.labels[test], pred_map[test]):.2f} %")
path = os.path.join(out, "classification_map.png")
fig = plot_classification_map(pred_map, scene.labels, scene.class_names, path=path,
                              title="MMLGNet")
print("wrote", path)

# %%
# Where the errors are
# --------------------
# Rows are the true classes of the test pixels, normalised to 1.
fig = plot_confusion_matrix(scene.labels[test], pred_map[test], scene.class_names,
                            path=os.path.join(out, "confusion_matrix.png"),
                            title="MMLGNet, test pixels")
