"""Classification maps and confusion matrices, written to PNG.

Uses matplotlib's non-interactive Agg canvas directly, so it works on headless
machines and never touches the pyplot state of the caller. Files are written
whole or not at all.
"""

from __future__ import annotations

import numpy as np

from ._io import atomic_path


def _figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    if path is None:
        return fig
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    return fig


def class_colors(n_classes):
    """``n_classes`` distinct RGB colours (tab10/tab20), background excluded.

    Parameters
    ----------
    n_classes : int
        Number of colours.

    Returns
    -------
    colors : ndarray of shape (n_classes, 3)
        RGB values in [0, 1]; tab20 repeats after 20 classes.

    Examples
    --------
    >>> class_colors(3).shape
    (3, 3)
    """
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n_classes <= 10 else "tab20"]
    return np.array([cmap(i % cmap.N)[:3] for i in range(n_classes)])


def _to_index_map(label_map, labels, background):
    """Map labels to 1..K (0 for background or unknown)."""
    idx = np.zeros(label_map.shape, dtype=np.int32)
    for k, lab in enumerate(labels, start=1):
        idx[label_map == lab] = k
    if background is not None:
        idx[label_map == background] = 0
    return idx


def plot_classification_map(pred_map, gt_map=None, class_names=None, path=None, title=None,
                            background=0, mask_unlabelled=False):
    """Predicted map, and the ground truth beside it, with a legend of class names.

    Parameters
    ----------
    pred_map : array of shape (H, W)
        Predicted labels.
    gt_map : array of shape (H, W), optional
        Ground truth with ``background`` for unlabelled pixels.
    class_names : dict, optional
        ``{label: name}``; also fixes the colour order. Defaults to the labels.
    path : str or Path, optional
        PNG to write; the figure is returned either way.
    title : str, optional
        Title above the panels.
    background : scalar or None, default=0
        Label drawn black (unlabelled).
    mask_unlabelled : bool, default=False
        Draw the prediction only where ``gt_map`` is labelled.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    pred_map = np.asarray(pred_map)
    if pred_map.ndim != 2:
        raise ValueError(f"pred_map must be 2-D (H, W); got shape {pred_map.shape}.")
    if gt_map is not None:
        gt_map = np.asarray(gt_map)
        if gt_map.shape != pred_map.shape:
            raise ValueError(f"gt_map has shape {gt_map.shape}; pred_map has {pred_map.shape}.")
    if class_names is None:
        labels = [v for v in np.unique(pred_map).tolist() if v != background]
        class_names = {lab: str(lab) for lab in labels}
    labels = list(class_names)
    colors = np.vstack([[0, 0, 0], class_colors(len(labels))])
    cmap = ListedColormap(colors)
    panels = [("prediction", pred_map)] + ([("ground truth", gt_map)] if gt_map is not None else [])
    H, W = pred_map.shape
    # Wide scenes (Trento, Houston) stack the panels; tall or square ones sit side by side.
    stacked = W > 1.5 * H
    n = len(panels)
    if stacked:
        fig = _figure((12, min(20, 12 * H / W * n + 1.5)))
    else:
        fig = _figure((min(20, 6 * n * W / H), 6.5))
    for k, (name, m) in enumerate(panels):
        ax = fig.add_subplot(n, 1, k + 1) if stacked else fig.add_subplot(1, n, k + 1)
        idx = _to_index_map(m, labels, background)
        if mask_unlabelled and gt_map is not None and name == "prediction":
            idx[gt_map == background] = 0
        ax.imshow(idx, cmap=cmap, vmin=0, vmax=len(labels), interpolation="nearest")
        ax.set_title(name)
        ax.set_axis_off()
    handles = [Patch(color=colors[k + 1], label=str(class_names[lab])) for k, lab in enumerate(labels)]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(labels), 6), frameon=False)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_confusion_matrix(y_true, y_pred, class_names=None, path=None, normalize=True, title=None):
    """Confusion matrix as a heat map (rows: true class; normalised per row by default).

    Drawn by :meth:`sklearn.metrics.ConfusionMatrixDisplay.from_predictions` on a
    figure of its own (the caller's pyplot figures are left alone).

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        True and predicted labels.
    class_names : dict, optional
        ``{label: name}``; fixes the order and the tick labels. Defaults to the labels
        found in ``y_true`` and ``y_pred``, sorted.
    path : str or Path, optional
        PNG to write (whole or not at all); the figure is returned either way.
    normalize : bool, default=True
        Show each row's shares (a true class without samples gives a row of 0)
        instead of counts.
    title : str, optional
        Title above the matrix.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    from sklearn.metrics import ConfusionMatrixDisplay

    labels = list(class_names) if class_names else np.unique(np.concatenate(
        [np.asarray(y_true), np.asarray(y_pred)])).tolist()
    names = [str((class_names or {}).get(lab, lab)) for lab in labels]
    n = len(labels)
    fig = _figure((1.5 + 0.6 * n, 1.2 + 0.6 * n))
    ax = fig.add_subplot(1, 1, 1)
    ConfusionMatrixDisplay.from_predictions(
        y_true, y_pred, labels=labels, normalize="true" if normalize else None,
        display_labels=names, cmap="Blues", ax=ax, xticks_rotation=45,
        values_format=".2f" if normalize else "d",
        im_kw={"vmin": 0, "vmax": 1} if normalize else None, text_kw={"fontsize": 8})
    for tick in ax.get_xticklabels():
        tick.set_horizontalalignment("right")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    return _save(fig, path)
