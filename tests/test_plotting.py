"""Maps and confusion matrices are written whole to PNG."""

from __future__ import annotations

import numpy as np
import pytest

from sklearn_mmlgnet.plotting import plot_classification_map, plot_confusion_matrix

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_classification_map_png(tmp_path):
    rng = np.random.RandomState(0)
    gt = rng.randint(0, 4, size=(20, 60))
    pred = np.where(gt > 0, gt, rng.randint(1, 4, size=gt.shape))
    path = tmp_path / "maps" / "map.png"
    fig = plot_classification_map(pred, gt, {1: "Woods", 2: "Roads", 3: "Ground"}, path=path,
                                  title="test")
    assert path.read_bytes()[:8] == PNG_MAGIC
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts == ["Woods", "Roads", "Ground"]
    assert [p.name for p in path.parent.iterdir()] == ["map.png"]  # no temporary left
    assert path.stat().st_mode & 0o044  # readable by others, as files written by hand


def test_map_shape_mismatch_and_failed_write_leave_nothing(tmp_path):
    with pytest.raises(ValueError, match="gt_map has shape"):
        plot_classification_map(np.zeros((4, 4)), np.zeros((4, 5)))
    target = tmp_path / "bad.png"
    fig = plot_classification_map(np.ones((4, 4), int), class_names={1: "a"})
    fig.savefig = None  # simulate a crash while writing
    from sklearn_mmlgnet.plotting import _save

    with pytest.raises(TypeError):
        _save(fig, target)
    assert list(tmp_path.iterdir()) == []


def test_confusion_matrix_png(tmp_path):
    path = tmp_path / "cm.png"
    plot_confusion_matrix([1, 1, 2, 2], [1, 2, 2, 2], {1: "Woods", 2: "Roads"}, path=path)
    assert path.read_bytes()[:8] == PNG_MAGIC
