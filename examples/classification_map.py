"""A full-scene classification map, predicted in bounded memory.

:func:`~sklearn_mmlgnet.patches.predict_scene` walks the scene in blocks of rows
and never holds every patch at once. The map and the ground truth are written
side by side to ``classification_map.png``.

Set ``MMLGNET_EXAMPLE_QUICK=1`` for a small, fast run (as in CI).
"""

import os

from sklearn.pipeline import make_pipeline

from sklearn_mmlgnet import BandStandardScaler, MMLGNetClassifier
from sklearn_mmlgnet.benchmark import resolve_text_encoder
from sklearn_mmlgnet.datasets import make_hsi_lidar_scene
from sklearn_mmlgnet.metrics import overall_accuracy
from sklearn_mmlgnet.patches import labelled_patches, predict_scene
from sklearn_mmlgnet.plotting import plot_classification_map

QUICK = os.environ.get("MMLGNET_EXAMPLE_QUICK") == "1"
P = 5 if QUICK else 11  # patch size; the split keeps training patches off test patches
size = dict(n_rows=80, n_cols=160, n_bands=16) if QUICK else {}
out = os.environ.get("MMLGNET_EXAMPLE_OUT", ".")
scene = make_hsi_lidar_scene(patch_size=P, random_state=0, **size)
X, y, _, _ = labelled_patches(scene, scene.train_mask, patch_size=P)
model = make_pipeline(BandStandardScaler(), MMLGNetClassifier(
    n_lidar_bands=1, class_names=scene.class_names, max_epochs=3 if QUICK else 40, random_state=0,
    **resolve_text_encoder("auto"))).fit(X, y)

pred_map = predict_scene(model, scene.hsi, scene.lidar, patch_size=P, batch_size=2048)
test = scene.test_mask
print(f"OA on the test pixels: {100 * overall_accuracy(scene.labels[test], pred_map[test]):.2f} %")
path = os.path.join(out, "classification_map.png")
plot_classification_map(pred_map, scene.labels, scene.class_names, path=path, title="MMLGNet")
print("wrote", path)
