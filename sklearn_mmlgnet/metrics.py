"""Remote-sensing accuracy measures: OA, AA, kappa, per-class accuracy, and scorers.

* OA (overall accuracy): the fraction of correctly labelled pixels.
* AA (average accuracy): the mean of the per-class accuracies (recall of every
  class present in ``y_true``), so small classes weigh as much as large ones.
* kappa: Cohen's kappa, agreement corrected for chance.

The scorers (``oa_scorer``, ``aa_scorer``, ``kappa_scorer``, or the names in
:data:`SCORERS`) plug into ``scoring=`` of GridSearchCV and cross_val_score.

The measures are scikit-learn's (``accuracy_score``, ``recall_score``,
``balanced_accuracy_score``, ``cohen_kappa_score``), under the names and
conventions of the remote-sensing literature. A sample predicted as a class absent
from ``y_true`` is an error of its true class (it stays in that class's support).
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    f1_score,
    make_scorer,
    recall_score,
)


def _check_pair(y_true, y_pred):
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(
            f"y_true and y_pred must be 1-D of the same length; got {y_true.shape} and {y_pred.shape}.")
    if y_true.size == 0:
        raise ValueError("y_true is empty.")
    return y_true, y_pred


@contextlib.contextmanager
def _expected_cases():
    """Silence scikit-learn's notes on cases these measures define on purpose.

    A test set rarely holds every class a model can predict (AA then averages over
    the classes of ``y_true``), and a one-class set in perfect agreement has kappa 1.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true", UserWarning)
        warnings.filterwarnings("ignore", "A single label was found", UserWarning)
        warnings.filterwarnings("ignore", category=UndefinedMetricWarning)
        yield


def overall_accuracy(y_true, y_pred):
    """Fraction of samples labelled correctly.

    Examples
    --------
    >>> overall_accuracy([1, 1, 2, 2], [1, 2, 2, 2])
    0.75
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    return float(accuracy_score(y_true, y_pred))


def per_class_accuracy(y_true, y_pred, labels=None):
    """Accuracy (recall) of every class of ``y_true``.

    Returns
    -------
    acc : dict
        ``{label: accuracy}`` in label order.

    Examples
    --------
    >>> per_class_accuracy([1, 1, 2, 2], [1, 2, 2, 2])
    {1: 0.5, 2: 1.0}
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    labels = np.unique(y_true) if labels is None else np.asarray(labels)
    # A label absent from y_true has no recall: NaN, not 0.
    acc = recall_score(y_true, y_pred, labels=labels, average=None, zero_division=np.nan)
    return {lab: float(a) for lab, a in zip(labels.tolist(), acc)}


def average_accuracy(y_true, y_pred):
    """Mean of the per-class accuracies over the classes in ``y_true``.

    Examples
    --------
    >>> average_accuracy([1, 1, 2, 2], [1, 2, 2, 2])
    0.75
    >>> average_accuracy([1, 1, 1, 2], [1, 1, 1, 1])
    0.5
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    with _expected_cases():
        return float(balanced_accuracy_score(y_true, y_pred))


def kappa(y_true, y_pred):
    """Cohen's kappa: ``(p_o - p_e) / (1 - p_e)``.

    Examples
    --------
    >>> round(kappa([1, 1, 2, 2], [1, 2, 2, 2]), 4)
    0.5
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    # Undefined only when both hold one same class (p_e = 1), i.e. perfect agreement.
    with _expected_cases():
        return float(cohen_kappa_score(y_true, y_pred, replace_undefined_by=1.0))


def evaluate(y_true, y_pred):
    """OA, AA, kappa and per-class accuracy in one dict.

    Examples
    --------
    >>> r = evaluate([1, 1, 2, 2], [1, 2, 2, 2])
    >>> r["OA"], r["AA"], r["kappa"]
    (0.75, 0.75, 0.5)
    """
    return {"OA": overall_accuracy(y_true, y_pred), "AA": average_accuracy(y_true, y_pred),
            "kappa": kappa(y_true, y_pred), "per_class": per_class_accuracy(y_true, y_pred)}


def classification_table(y_true, y_pred, class_names=None, digits=2):
    """A Markdown table of per-class accuracy with OA, AA and kappa (in %).

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
    class_names : dict, optional
        ``{label: name}`` for the rows; labels are shown otherwise.
    digits : int, default=2

    Returns
    -------
    table : str

    Examples
    --------
    >>> print(classification_table([1, 1, 2, 2], [1, 2, 2, 2], {1: "Woods", 2: "Roads"}))
    | class | support | accuracy (%) |
    | --- | ---: | ---: |
    | Woods | 2 | 50.00 |
    | Roads | 2 | 100.00 |
    | **OA** | 4 | 75.00 |
    | **AA** |  | 75.00 |
    | **kappa** |  | 50.00 |
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    # Support counts every sample of the class, whatever it was predicted as.
    labels, supports = np.unique(y_true, return_counts=True)
    res = evaluate(y_true, y_pred)
    names = class_names or {}
    fmt = f"{{:.{digits}f}}"
    lines = ["| class | support | accuracy (%) |", "| --- | ---: | ---: |"]
    for lab, support in zip(labels.tolist(), supports.tolist()):
        lines.append(f"| {names.get(lab, lab)} | {support} | {fmt.format(100 * res['per_class'][lab])} |")
    lines.append(f"| **OA** | {len(y_true)} | {fmt.format(100 * res['OA'])} |")
    lines.append(f"| **AA** |  | {fmt.format(100 * res['AA'])} |")
    lines.append(f"| **kappa** |  | {fmt.format(100 * res['kappa'])} |")
    return "\n".join(lines)


oa_scorer = make_scorer(overall_accuracy)
aa_scorer = make_scorer(average_accuracy)
kappa_scorer = make_scorer(kappa)

#: Scorers by name, for ``scoring=SCORERS`` (multi-metric) or ``scoring=SCORERS["AA"]``.
SCORERS = {"OA": oa_scorer, "AA": aa_scorer, "kappa": kappa_scorer}


# ------------------------------------------------------------------ crown-level scores
def aggregate_by_group(values, groups):
    """Mean of ``values`` over the samples of each group (e.g. pixel probabilities per crown).

    Parameters
    ----------
    values : array-like of shape (n_samples,) or (n_samples, n_columns)
    groups : array-like of shape (n_samples,)

    Returns
    -------
    group_ids : ndarray of shape (n_groups,)
        The distinct groups, sorted.
    means : ndarray of shape (n_groups,) or (n_groups, n_columns), float64

    Examples
    --------
    >>> ids, means = aggregate_by_group([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], [7, 7, 3])
    >>> ids.tolist(), means.tolist()
    ([3, 7], [[1.0, 0.0], [0.5, 0.5]])
    """
    values = np.asarray(values, dtype=np.float64)
    groups = np.asarray(groups)
    if groups.ndim != 1 or values.ndim not in (1, 2) or len(values) != len(groups):
        raise ValueError(f"values must be (n,) or (n, k) and groups (n,); got {values.shape} and "
                         f"{groups.shape}.")
    group_ids, inverse = np.unique(groups, return_inverse=True)
    sums = np.zeros((len(group_ids),) + values.shape[1:])
    np.add.at(sums, inverse, values)
    counts = np.bincount(inverse, minlength=len(group_ids)).astype(np.float64)
    return group_ids, sums / (counts[:, None] if values.ndim == 2 else counts)


def crown_scores(y_true, proba, groups, classes=None):
    """Crown-level accuracy and macro F1, as IDTReeS scored: mean pixel probabilities per crown.

    Each crown's prediction is the class of highest mean probability over its
    pixels; accuracy and macro F1 (:func:`sklearn.metrics.f1_score`, averaged over
    the classes present in the crowns' truth or predictions, 0 where undefined)
    are then computed over crowns, so a large crown weighs as much as a small one.

    Parameters
    ----------
    y_true : array-like of shape (n_pixels,)
        Pixel labels; every pixel of a crown must carry the crown's label.
    proba : array-like of shape (n_pixels, n_classes)
        ``predict_proba`` of the pixels.
    groups : array-like of shape (n_pixels,)
        Crown of each pixel (e.g. ``load_idtrees(...).crown_id``).
    classes : array-like of shape (n_classes,), optional
        The labels of ``proba``'s columns (the estimator's ``classes_``). By default
        the sorted labels of ``y_true``, which requires every class to be present.

    Returns
    -------
    scores : dict
        ``accuracy``, ``macro_f1``, ``n_crowns``, and the crown-level arrays
        ``crowns`` (the group ids, sorted), ``y_true`` and ``y_pred``.

    Examples
    --------
    >>> y = [1, 1, 2, 2, 2]
    >>> proba = [[.9, .1], [.2, .8], [.45, .55], [.6, .4], [.3, .7]]
    >>> s = crown_scores(y, proba, groups=[10, 10, 20, 20, 30], classes=[1, 2])
    >>> s["n_crowns"], round(s["accuracy"], 4), round(s["macro_f1"], 4), s["y_pred"].tolist()
    (3, 0.6667, 0.6667, [1, 1, 2])
    """
    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    groups = np.asarray(groups)
    if y_true.ndim != 1 or groups.shape != y_true.shape or proba.ndim != 2 \
            or len(proba) != len(y_true):
        raise ValueError(
            f"y_true and groups must be 1-D of length n and proba (n, n_classes); got y_true "
            f"{y_true.shape}, proba {proba.shape}, groups {groups.shape}.")
    if y_true.size == 0:
        raise ValueError("y_true is empty.")
    classes = np.unique(y_true) if classes is None else np.asarray(classes)
    if classes.shape != (proba.shape[1],):
        raise ValueError(
            f"proba has {proba.shape[1]} columns but classes has {classes.size} labels "
            f"{classes.tolist()[:10]}; pass classes=estimator.classes_.")
    crowns, inverse = np.unique(groups, return_inverse=True)
    truth = np.empty(len(crowns), dtype=y_true.dtype)
    truth[inverse] = y_true
    mixed = truth[inverse] != y_true
    if mixed.any():
        g = groups[mixed][0].item()
        raise ValueError(f"groups must hold one label each; group {g!r} holds labels "
                         f"{np.unique(y_true[groups == g]).tolist()}.")
    _, mean_proba = aggregate_by_group(proba, groups)
    y_pred = classes[np.argmax(mean_proba, axis=1)]
    return {"accuracy": float(accuracy_score(truth, y_pred)),
            "macro_f1": float(f1_score(truth, y_pred, average="macro", zero_division=0)),
            "n_crowns": int(len(crowns)), "crowns": crowns, "y_true": truth, "y_pred": y_pred}
