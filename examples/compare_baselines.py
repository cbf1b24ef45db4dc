"""cross_val_score of MMLGNet against classic baselines on the same patch array.

SVM, RandomForest and KNN see the centre pixel's bands (:class:`CenterPixel`);
MMLGNet sees the whole patch. All run through the same spatially blocked CV.

Set ``MMLGNET_EXAMPLE_QUICK=1`` for a small, fast run (as in CI).
"""

import os

from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from sklearn_mmlgnet import BandStandardScaler, CenterPixel, MMLGNetClassifier
from sklearn_mmlgnet.benchmark import resolve_text_encoder
from sklearn_mmlgnet.datasets import make_hsi_lidar_scene
from sklearn_mmlgnet.metrics import SCORERS
from sklearn_mmlgnet.model_selection import SpatialBlockKFold
from sklearn_mmlgnet.patches import labelled_patches

QUICK = os.environ.get("MMLGNET_EXAMPLE_QUICK") == "1"
P = 5 if QUICK else 11  # patch size; the split keeps training patches off test patches
size = dict(n_rows=80, n_cols=160, n_bands=16) if QUICK else {}
scene = make_hsi_lidar_scene(patch_size=P, random_state=0, **size)
X, y, rows, cols = labelled_patches(scene, scene.train_mask, patch_size=P)
cv = SpatialBlockKFold(rows, cols, n_splits=3, block_size=12 if QUICK else 30, patch_size=P,
                       random_state=0)

models = {
    "MMLGNet": make_pipeline(BandStandardScaler(), MMLGNetClassifier(
        n_lidar_bands=1, class_names=scene.class_names, max_epochs=3 if QUICK else 30,
        random_state=0, **resolve_text_encoder("auto"))),
    "SVM (RBF)": make_pipeline(CenterPixel(), StandardScaler(), SVC(C=100)),
    "RandomForest": make_pipeline(CenterPixel(), RandomForestClassifier(200, random_state=0)),
    "KNN": make_pipeline(CenterPixel(), StandardScaler(), KNeighborsClassifier(5)),
}
for name, model in models.items():
    scores = cross_val_score(model, X, y, cv=cv, scoring=SCORERS["AA"])
    print(f"{name:>14}: AA {100 * scores.mean():.2f} ± {100 * scores.std():.2f} %")
