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
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    path = tmp_path / "cm.png"
    fig = plot_confusion_matrix([1, 1, 2, 2], [1, 2, 2, 2], {1: "Woods", 2: "Roads"}, path=path,
                                title="test")
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in tmp_path.iterdir()] == ["cm.png"]  # no temporary left
    assert plt.get_fignums() == before  # the caller's pyplot figures are left alone
    ax = fig.axes[0]
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == ("test", "predicted", "true")
    assert len(fig.axes) == 2  # the matrix and its colour bar


def _rgb_at(fig, ax, row, col):
    """RGB (0..1) the figure draws at map cell (row, col) of an image axes."""
    fig.canvas.draw()
    buf = np.asarray(fig.canvas.buffer_rgba())
    x, y = ax.transData.transform((col, row))
    return buf[int(buf.shape[0] - y), int(x), :3] / 255.0


def _thirds():
    """20 x 60 map: Woods (1) left, Roads (2) middle, Ground (3) right; GT unlabelled in rows 0-4."""
    pred = np.repeat([1, 2, 3], 20)[None, :].repeat(20, axis=0)
    gt = pred.copy()
    gt[:5] = 0
    gt[15:, 20:40] = 3  # the prediction is wrong there
    return pred, gt


def test_classification_map_draws_each_class_in_its_colour_where_it_is():
    from sklearn_mmlgnet.plotting import class_colors

    pred, gt = _thirds()
    names = {1: "Woods", 2: "Roads", 3: "Ground"}
    colors = class_colors(3)
    fig = plot_classification_map(pred, gt, names)
    ax_pred, ax_gt = fig.axes  # wide scene: prediction above the ground truth
    assert ax_pred.get_title() == "prediction" and ax_gt.get_title() == "ground truth"
    for (r, c), k in {(10, 10): 0, (10, 30): 1, (10, 50): 2, (2, 10): 0}.items():
        np.testing.assert_allclose(_rgb_at(fig, ax_pred, r, c), colors[k], atol=1.5 / 255)
    np.testing.assert_allclose(_rgb_at(fig, ax_gt, 2, 10), [0, 0, 0], atol=1.5 / 255)  # unlabelled
    np.testing.assert_allclose(_rgb_at(fig, ax_gt, 17, 30), colors[2], atol=1.5 / 255)
    np.testing.assert_allclose(_rgb_at(fig, ax_gt, 10, 30), colors[1], atol=1.5 / 255)
    # mask_unlabelled blacks out the prediction where the ground truth is unlabelled
    fig = plot_classification_map(pred, gt, names, mask_unlabelled=True)
    np.testing.assert_allclose(_rgb_at(fig, fig.axes[0], 2, 10), [0, 0, 0], atol=1.5 / 255)
    np.testing.assert_allclose(_rgb_at(fig, fig.axes[0], 10, 10), colors[0], atol=1.5 / 255)
    # the order of class_names fixes the colours: Ground first gets the first colour
    fig = plot_classification_map(pred, gt, {3: "Ground", 1: "Woods", 2: "Roads"})
    np.testing.assert_allclose(_rgb_at(fig, fig.axes[0], 10, 50), colors[0], atol=1.5 / 255)
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["Ground", "Woods", "Roads"]
    np.testing.assert_allclose(legend.get_patches()[0].get_facecolor()[:3], colors[0])


def test_classification_map_png_holds_the_classes_in_their_proportions(tmp_path):
    import matplotlib.image
    from sklearn_mmlgnet.plotting import class_colors

    pred, gt = _thirds()
    path = tmp_path / "map.png"
    plot_classification_map(pred, gt, {1: "Woods", 2: "Roads", 3: "Ground"}, path=path)
    img = matplotlib.image.imread(path)[..., :3]
    share = lambda color: np.all(np.abs(img - color) < 1.5 / 255, axis=-1).sum()  # noqa: E731
    woods, roads, ground = (share(c) for c in class_colors(3))
    black = share(np.zeros(3))
    # map cells of each colour over both panels: Woods 400 + 300, Roads 400 + 200,
    # Ground 400 + 400, black (unlabelled) 300; each cell is the same number of pixels
    cells = np.array([700, 600, 800, 300])
    drawn = np.array([woods, roads, ground, black])
    np.testing.assert_allclose(drawn / drawn.sum(), cells / cells.sum(), atol=0.02)


def test_confusion_matrix_cells_are_shaded_by_row_share():
    from matplotlib import colormaps

    fig = plot_confusion_matrix([1, 1, 2, 2], [1, 2, 2, 2], {1: "Woods", 2: "Roads"})
    ax = fig.axes[0]
    blues = colormaps["Blues"]
    # rows: true Woods half right, true Roads all right (read off-centre, beside the numbers)
    for (i, j), share in {(0, 0): 0.5, (0, 1): 0.5, (1, 0): 0.0, (1, 1): 1.0}.items():
        np.testing.assert_allclose(_rgb_at(fig, ax, i - 0.35, j - 0.35), blues(share)[:3],
                                   atol=1.5 / 255)
    assert [t.get_text() for t in ax.texts] == ["0.50", "0.50", "0.00", "1.00"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Woods", "Roads"]
    counts = plot_confusion_matrix([1, 1, 2, 2], [1, 2, 2, 2], normalize=False).axes[0]
    assert [t.get_text() for t in counts.texts] == ["1", "1", "0", "2"]
