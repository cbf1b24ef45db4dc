"""OA, AA, kappa and per-class accuracy against hand-computed values; scorers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.metrics import cohen_kappa_score
from sklearn.model_selection import cross_val_score

from sklearn_mmlgnet.metrics import (
    SCORERS,
    aa_scorer,
    average_accuracy,
    classification_table,
    evaluate,
    kappa,
    overall_accuracy,
    per_class_accuracy,
)

# 3 classes; confusion matrix rows=true: [[3,1,0],[0,2,0],[1,0,1]]
Y_TRUE = np.array([1, 1, 1, 1, 2, 2, 3, 3])
Y_PRED = np.array([1, 1, 1, 2, 2, 2, 1, 3])


def test_hand_computed_values():
    assert overall_accuracy(Y_TRUE, Y_PRED) == pytest.approx(6 / 8)
    assert per_class_accuracy(Y_TRUE, Y_PRED) == {1: 0.75, 2: 1.0, 3: 0.5}
    assert average_accuracy(Y_TRUE, Y_PRED) == pytest.approx((0.75 + 1 + 0.5) / 3)
    # kappa: p_o = 6/8; p_e = sum(row_i * col_i) / n^2 = (4*4 + 2*3 + 2*1) / 64
    p_o, p_e = 6 / 8, (4 * 4 + 2 * 3 + 2 * 1) / 64
    assert kappa(Y_TRUE, Y_PRED) == pytest.approx((p_o - p_e) / (1 - p_e))
    assert kappa(Y_TRUE, Y_PRED) == pytest.approx(cohen_kappa_score(Y_TRUE, Y_PRED))


def test_string_labels_and_perfect_prediction():
    y = np.array(["Woods", "Roads", "Woods"])
    r = evaluate(y, y)
    assert r["OA"] == r["AA"] == r["kappa"] == 1.0


def test_input_errors():
    with pytest.raises(ValueError, match="same length"):
        overall_accuracy([1, 2], [1])
    with pytest.raises(ValueError, match="empty"):
        average_accuracy([], [])


def test_table_holds_per_class_rows_and_summary():
    table = classification_table(Y_TRUE, Y_PRED, {1: "Woods", 2: "Roads", 3: "Ground"})
    assert "| Woods | 4 | 75.00 |" in table
    assert "| Ground | 2 | 50.00 |" in table
    assert "| **AA** |  | 75.00 |" in table


def test_scorers_in_cross_val_score():
    X = np.zeros((30, 2))
    y = np.array([0] * 21 + [1] * 9)
    # predicting the majority class: OA 0.7 but AA 1/2 and kappa 0
    clf = DummyClassifier(strategy="most_frequent")
    from sklearn.model_selection import StratifiedKFold

    cv = StratifiedKFold(3)
    np.testing.assert_allclose(cross_val_score(clf, X, y, cv=cv, scoring=aa_scorer), 0.5)
    np.testing.assert_allclose(cross_val_score(clf, X, y, cv=cv, scoring=SCORERS["OA"]), 0.7)
    np.testing.assert_allclose(cross_val_score(clf, X, y, cv=cv, scoring=SCORERS["kappa"]), 0.0)


def test_measures_are_scikit_learns_on_random_label_sets():
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score
    import warnings

    rng = np.random.RandomState(0)
    names = np.array(["Woods", "Roads", "Ground", "Water"])
    for _ in range(50):
        n = rng.randint(1, 30)
        y_true = names[rng.randint(0, rng.randint(1, 4), n)]
        y_pred = names[rng.randint(0, 4, n)]  # may predict classes absent from y_true
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the cases AA and kappa define raise no warning
            r = evaluate(y_true, y_pred)
        assert r["OA"] == accuracy_score(y_true, y_pred)
        labels = np.unique(y_true)
        assert list(r["per_class"].values()) == list(recall_score(y_true, y_pred, labels=labels,
                                                                 average=None, zero_division=0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert r["AA"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
            expected_kappa = cohen_kappa_score(y_true, y_pred)
        assert r["kappa"] == pytest.approx(1.0 if np.isnan(expected_kappa) else expected_kappa)
    # one class in both, all agreeing: kappa 1 (scikit-learn leaves it undefined)
    assert kappa([3, 3, 3], [3, 3, 3]) == 1.0
    # a label absent from y_true has no accuracy
    assert np.isnan(per_class_accuracy([1, 1], [1, 2], labels=[1, 2])[2])


def test_predictions_of_classes_absent_from_y_true_count_as_errors():
    # Class 3 is predicted but not in y_true: that sample of class 1 is wrong, and
    # stays in class 1's support (it used to vanish, inflating AA to 100 %).
    y_true, y_pred = [1, 1, 2], [1, 3, 2]
    assert per_class_accuracy(y_true, y_pred) == {1: 0.5, 2: 1.0}
    assert average_accuracy(y_true, y_pred) == 0.75
    table = classification_table(y_true, y_pred)
    assert "| 1 | 2 | 50.00 |" in table and "| **OA** | 3 | 66.67 |" in table
    assert "| **AA** |  | 75.00 |" in table
