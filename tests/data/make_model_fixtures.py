"""Write the model files kept as test fixtures (run once per model-format version).

``python tests/data/make_model_fixtures.py`` writes ``model_0.1.0.safetensors`` (a
SceneModel: SpectralNormalizer + BandStandardScaler + MMLGNetClassifier, fitted by
``fit_scene`` on a small synthetic scene), ``sdhsi_0.1.0.safetensors`` (a bare
SDHSIClassifier) and ``expected_0.1.0.json`` (their predictions on fixed patches).
tests/test_persistence.py loads the files this release wrote: a later release that
cannot read them fails there. Do not regenerate them to make that test pass.
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from sklearn_mmlgnet import MMLGNetClassifier, SDHSIClassifier, __version__  # noqa: E402
from sklearn_mmlgnet.persistence import save_model  # noqa: E402
from sklearn_mmlgnet.scene import fit_scene  # noqa: E402
from tests.test_io import write_scene  # noqa: E402


def fixture_patches():
    """The patches the fixtures' predictions are recorded on."""
    return np.random.RandomState(0).normal(size=(8, 7, 5, 5)).astype(np.float32)


def main():
    folder = Path(tempfile.mkdtemp())
    h, l, gt, _ = write_scene(folder)
    net = MMLGNetClassifier(text_embeddings=np.eye(3, 8, dtype=np.float32),
                            module__hsi_channels=(8,), module__lidar_channels=(4,),
                            module__fusion_dim=8, max_epochs=2, random_state=0)
    model = fit_scene(h, l, gt, estimator=net, patch_size=5, spectral_norm="l2",
                      log=lambda m: None)
    X = fixture_patches()
    rng = np.random.RandomState(1)
    y = np.array(["Woods", "Roads", "Vineyard"])[np.arange(24) % 3]
    sdhsi = SDHSIClassifier(module__conv3d_channels=(2,), module__spectral_kernels=(3,),
                            module__conv2d_channels=4, module__hidden=8,
                            module__student_hidden=4, max_epochs=2, random_state=0).fit(
        rng.normal(size=(24, 6, 5, 5)).astype(np.float32), y)
    save_model(model, HERE / f"model_{__version__}.safetensors")
    save_model(sdhsi, HERE / f"sdhsi_{__version__}.safetensors")
    expected = {
        "model": {"classes": model.classes_.tolist(),
                  "proba": model.estimator.predict_proba(X).tolist()},
        "sdhsi": {"classes": sdhsi.classes_.tolist(),
                  "proba": sdhsi.predict_proba(X[:, :6]).tolist()},
    }
    (HERE / f"expected_{__version__}.json").write_text(json.dumps(expected, indent=1))


if __name__ == "__main__":
    main()
