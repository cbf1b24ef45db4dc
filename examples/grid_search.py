"""GridSearchCV over MMLGNet's temperature and patch size.

One patch array serves every patch size (``patch_size`` centre-crops), and the
class text embeddings are encoded once for the whole search (joblib cache). The
search uses a spatially blocked CV on the training pixels, so validation patches
never overlap training patches; the test split is touched once, at the end.

Set ``MMLGNET_EXAMPLE_QUICK=1`` for a small, fast run (as in CI).
"""

import os

from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from sklearn_mmlgnet import BandStandardScaler, MMLGNetClassifier
from sklearn_mmlgnet.benchmark import resolve_text_encoder
from sklearn_mmlgnet.datasets import make_hsi_lidar_scene
from sklearn_mmlgnet.metrics import SCORERS, classification_table
from sklearn_mmlgnet.model_selection import SpatialBlockKFold
from sklearn_mmlgnet.patches import labelled_patches, predict_scene

QUICK = os.environ.get("MMLGNET_EXAMPLE_QUICK") == "1"
P = 5 if QUICK else 11  # patch size; the split keeps training patches off test patches
size = dict(n_rows=80, n_cols=160, n_bands=16) if QUICK else {}
scene = make_hsi_lidar_scene(patch_size=P, random_state=0, **size)
X_train, y_train, rows, cols = labelled_patches(scene, scene.train_mask, patch_size=P)

clf = MMLGNetClassifier(n_lidar_bands=1, class_names=scene.class_names,
                        max_epochs=3 if QUICK else 30, random_state=0,
                        **resolve_text_encoder("auto"))
pipe = make_pipeline(BandStandardScaler(), clf)
grid = {"mmlgnetclassifier__temperature": [0.03, 0.07, 0.2],
        "mmlgnetclassifier__patch_size": [7, 9, 11]}
if QUICK:
    grid = {"mmlgnetclassifier__temperature": [0.07, 0.2], "mmlgnetclassifier__patch_size": [3, 5]}
cv = SpatialBlockKFold(rows, cols, n_splits=3, block_size=12 if QUICK else 30, patch_size=P,
                       random_state=0)
search = GridSearchCV(pipe, grid, cv=cv, scoring=SCORERS["AA"]).fit(X_train, y_train)

print("best parameters (chosen on training pixels only):", search.best_params_)
print(f"best cross-validated AA: {100 * search.best_score_:.2f} %")
# Test pixels are classified batch by batch (predict_scene), never as one patch array.
test = scene.test_mask & (scene.labels > 0)
pred = predict_scene(search, scene.hsi, scene.lidar, patch_size=P, mask=test)
print(classification_table(scene.labels[test], pred[test], scene.class_names))
