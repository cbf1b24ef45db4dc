"""Remote-sensing accuracy measures: OA, AA, kappa, per-class accuracy, and scorers.

* OA (overall accuracy): the fraction of correctly labelled pixels.
* AA (average accuracy): the mean of the per-class accuracies (recall of every
  class present in ``y_true``), so small classes weigh as much as large ones.
* kappa: Cohen's kappa, agreement corrected for chance.

The scorers (``oa_scorer``, ``aa_scorer``, ``kappa_scorer``, or the names in
:data:`SCORERS`) plug into ``scoring=`` of GridSearchCV and cross_val_score.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, make_scorer


def _check_pair(y_true, y_pred):
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(
            f"y_true and y_pred must be 1-D of the same length; got {y_true.shape} and {y_pred.shape}.")
    if y_true.size == 0:
        raise ValueError("y_true is empty.")
    return y_true, y_pred


def _confusion(y_true, y_pred, labels=None):
    y_true, y_pred = _check_pair(y_true, y_pred)
    if labels is None:
        labels = np.unique(y_true)
    return confusion_matrix(y_true, y_pred, labels=labels), np.asarray(labels)


def overall_accuracy(y_true, y_pred):
    """Fraction of samples labelled correctly.

    Examples
    --------
    >>> overall_accuracy([1, 1, 2, 2], [1, 2, 2, 2])
    0.75
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    return float(np.mean(y_true == y_pred))


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
    cm, labels = _confusion(y_true, y_pred, labels)
    support = cm.sum(axis=1)
    acc = np.divide(np.diag(cm), support, out=np.full(len(labels), np.nan), where=support > 0)
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
    return float(np.nanmean(list(per_class_accuracy(y_true, y_pred).values())))


def kappa(y_true, y_pred):
    """Cohen's kappa: ``(p_o - p_e) / (1 - p_e)``.

    Examples
    --------
    >>> round(kappa([1, 1, 2, 2], [1, 2, 2, 2]), 4)
    0.5
    """
    labels = np.unique(np.concatenate([np.asarray(y_true), np.asarray(y_pred)]))
    cm, _ = _confusion(y_true, y_pred, labels)
    n = cm.sum()
    p_o = np.trace(cm) / n
    p_e = float((cm.sum(0) * cm.sum(1)).sum()) / n**2
    if p_e == 1:
        return 1.0 if p_o == 1 else 0.0
    return float((p_o - p_e) / (1 - p_e))


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
    cm, labels = _confusion(y_true, y_pred)
    res = evaluate(y_true, y_pred)
    names = class_names or {}
    fmt = f"{{:.{digits}f}}"
    lines = ["| class | support | accuracy (%) |", "| --- | ---: | ---: |"]
    for lab, support in zip(labels.tolist(), cm.sum(1)):
        lines.append(f"| {names.get(lab, lab)} | {support} | {fmt.format(100 * res['per_class'][lab])} |")
    lines.append(f"| **OA** | {cm.sum()} | {fmt.format(100 * res['OA'])} |")
    lines.append(f"| **AA** |  | {fmt.format(100 * res['AA'])} |")
    lines.append(f"| **kappa** |  | {fmt.format(100 * res['kappa'])} |")
    return "\n".join(lines)


oa_scorer = make_scorer(overall_accuracy)
aa_scorer = make_scorer(average_accuracy)
kappa_scorer = make_scorer(kappa)

#: Scorers by name, for ``scoring=SCORERS`` (multi-metric) or ``scoring=SCORERS["AA"]``.
SCORERS = {"OA": oa_scorer, "AA": aa_scorer, "kappa": kappa_scorer}
