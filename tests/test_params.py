"""Parameters of both estimators: skorch-style routing to the module and the criterion, and
scikit-learn's parameter constraints."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_mmlgnet import MMLGNetClassifier, SDHSIClassifier

from .conftest import make_patches

EMB = np.random.RandomState(1).normal(size=(3, 8)).astype(np.float32)
MML_TINY = dict(module__hsi_channels=(8,), module__lidar_channels=(4,), module__fusion_dim=16,
                module__spectral_channels=(8,), text_embeddings=EMB, batch_size=32,
                random_state=0)
SD_TINY = dict(module__conv3d_channels=(4,), module__spectral_kernels=(3,),
               module__conv2d_channels=8, module__hidden=8, module__student_hidden=4,
               batch_size=32, random_state=0)

#: Runs a test on both estimators: ``make(**params)`` builds a tiny one.
both_estimators = pytest.mark.parametrize("make", [
    lambda **kw: MMLGNetClassifier(**{**MML_TINY, **kw}),
    lambda **kw: SDHSIClassifier(**{**SD_TINY, **kw}),
], ids=["MMLGNet", "SDHSI"])


@pytest.fixture(scope="module")
def problem():
    return make_patches(n_per_class=20)  # 60 samples of (7, 5, 5)


# ------------------------------------------------------------------------------ routing
@both_estimators
def test_routed_parameters_are_parameters(make):
    clf = make(module__dropout=0.25, criterion__distill_weight=0.3)
    params = clf.get_params()
    assert params["module__dropout"] == 0.25 and params["criterion__distill_weight"] == 0.3
    assert clf.get_params(deep=False)["module__dropout"] == 0.25
    # clone rebuilds the estimator from get_params: the routed values come along
    copy = clone(clf)
    assert copy.get_params()["module__dropout"] == 0.25
    assert copy.get_params()["criterion__distill_weight"] == 0.3
    assert type(copy) is type(clf) and copy is not clf
    # set_params changes them, adds new ones, and leaves the others alone
    assert clf.set_params(module__dropout=0.5, criterion__aux_ce_weight=0.4) is clf
    params = clf.get_params()
    assert params["module__dropout"] == 0.5 and params["criterion__aux_ce_weight"] == 0.4
    assert params["criterion__distill_weight"] == 0.3
    assert copy.get_params()["module__dropout"] == 0.25  # the clone is independent
    assert "module__dropout" not in make().get_params()  # never set: not a parameter


@both_estimators
def test_routed_parameters_reach_the_module_and_the_criterion(problem, make):
    X, y = problem
    clf = make(max_epochs=1, self_distillation=True, module__dropout=0.3,
               criterion__distill_temperature=2.0, criterion__distill_weight=0.7,
               criterion__aux_ce_weight=0.2).fit(X, y)
    module, crit = clf.net_.module_, clf.net_.criterion_
    dropouts = {m.p for m in module.modules() if isinstance(m, torch_dropout())}
    assert dropouts == {0.3}
    assert (crit.distill_temperature, crit.distill_weight, crit.aux_ce_weight) == (2.0, 0.7, 0.2)
    # after a set_params the next fit builds the network they describe
    clf.set_params(module__dropout=0.1, criterion__distill_weight=0.05).fit(X, y)
    assert {m.p for m in clf.net_.module_.modules() if isinstance(m, torch_dropout())} == {0.1}
    assert clf.net_.criterion_.distill_weight == 0.05


def torch_dropout():
    import torch

    return torch.nn.Dropout


def test_grid_search_over_a_routed_module_parameter(problem):
    X, y = problem
    clf = MMLGNetClassifier(max_epochs=1, **MML_TINY)
    grid = GridSearchCV(clf, {"module__fusion_dim": [4, 12]}, cv=2, refit=True).fit(X, y)
    assert sorted(grid.cv_results_["param_module__fusion_dim"]) == [4, 12]
    assert all(np.isfinite(grid.cv_results_["mean_test_score"]))
    best = grid.best_estimator_
    assert best.get_params()["module__fusion_dim"] == grid.best_params_["module__fusion_dim"]
    # the refitted network has the searched width
    assert best.net_.module_.fusion[0].out_features == grid.best_params_["module__fusion_dim"]
    assert clf.get_params()["module__fusion_dim"] == 16  # the searched estimator untouched


def test_grid_search_over_a_routed_criterion_parameter(problem):
    X, y = problem
    clf = SDHSIClassifier(max_epochs=1, **SD_TINY)
    grid = GridSearchCV(clf, {"criterion__distill_weight": [0.0, 0.5]}, cv=2).fit(X, y)
    assert sorted(grid.cv_results_["param_criterion__distill_weight"]) == [0.0, 0.5]
    assert (grid.best_estimator_.net_.criterion_.distill_weight
            == grid.best_params_["criterion__distill_weight"])


@both_estimators
@pytest.mark.parametrize("name", ["module__no_such_width", "criterion__no_such_weight",
                                  "module__hiden", "criterion__lr"])
def test_an_unknown_routed_name_is_a_value_error_naming_it(problem, make, name):
    X, y = problem
    clf = make(max_epochs=1, **{name: 3})
    with pytest.raises(ValueError, match=f"{name} is not a parameter of "):
        clf.fit(X, y)
    assert not hasattr(clf, "net_")


@pytest.mark.parametrize("make, name", [
    (lambda **kw: MMLGNetClassifier(**{**MML_TINY, **kw}), "module__n_hsi_bands"),
    (lambda **kw: MMLGNetClassifier(**{**MML_TINY, **kw}), "module__text_embeddings"),
    (lambda **kw: MMLGNetClassifier(**{**MML_TINY, **kw}), "module__temperature"),
    (lambda **kw: MMLGNetClassifier(**{**MML_TINY, **kw}), "module__aux_heads"),
    (lambda **kw: MMLGNetClassifier(**{**MML_TINY, **kw}), "criterion__loss"),
    (lambda **kw: MMLGNetClassifier(**{**MML_TINY, **kw}), "criterion__label_smoothing"),
    (lambda **kw: SDHSIClassifier(**{**SD_TINY, **kw}), "module__n_classes"),
    (lambda **kw: SDHSIClassifier(**{**SD_TINY, **kw}), "module__n_bands"),
    (lambda **kw: SDHSIClassifier(**{**SD_TINY, **kw}), "criterion__class_weight"),
    (lambda **kw: SDHSIClassifier(**{**SD_TINY, **kw}), "criterion__distill"),
])
def test_a_routed_name_the_estimator_sets_itself_is_a_value_error_naming_it(problem, make, name):
    X, y = problem
    with pytest.raises(ValueError, match=f"{name} is set by the estimator itself"):
        make(max_epochs=1, **{name: 1}).fit(X, y)


@pytest.mark.parametrize("cls", [MMLGNetClassifier, SDHSIClassifier])
def test_an_unprefixed_unknown_keyword_is_a_type_error_naming_it(cls):
    with pytest.raises(TypeError, match="unexpected keyword argument 'hidden'.*'module__'"):
        cls(hidden=8)
    with pytest.raises(ValueError, match="Invalid parameter 'hidden'"):
        cls().set_params(hidden=8)


# ---------------------------------------------------------------------- constraints
BAD_PARAMS = [
    ("lr", float("nan")), ("lr", 0.0), ("lr", -1e-3), ("lr", "fast"),
    ("batch_size", 1), ("batch_size", 0), ("batch_size", 2.5),
    ("optimizer", "sgd"), ("optimizer", None),
    ("predict_heads", "x"), ("predict_heads", "all"), ("predict_heads", None),
    ("test_time_augment", "yes"), ("test_time_augment", 1),
    ("augment", "yes"), ("self_distillation", "no"),
    ("lr_schedule", "step"), ("weight_decay", -0.1),
    ("label_smoothing", 1.0), ("label_smoothing", -0.1),
    ("class_weight", "auto"), ("max_epochs", -1), ("max_epochs", 1.5),
    ("callbacks", "disable"), ("train_split", 0.2), ("warm_start", "yes"),
    ("patch_size", 0), ("random_state", "seed"),
]


@both_estimators
@pytest.mark.parametrize("name, value", BAD_PARAMS)
def test_bad_parameters_are_invalid_parameter_errors_naming_them(problem, make, name, value):
    X, y = problem
    clf = make(max_epochs=1).set_params(**{name: value})
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of {type(clf).__name__}"):
        clf.fit(X, y)
    assert not hasattr(clf, "net_")


@pytest.mark.parametrize("name, value", [
    ("loss", "hinge"), ("temperature", 0.0), ("temperature", float("inf")),
    ("n_lidar_bands", -1), ("learn_temperature", "yes"),
    ("text_encoder", "word2vec"),
    ("text_encoder", 3), ("clip_pretrained", 3), ("prompt_templates", "a photo of {}")])
def test_bad_mmlgnet_parameters_are_invalid_parameter_errors_naming_them(problem, name, value):
    X, y = problem
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of MMLGNetClassifier"):
        MMLGNetClassifier(max_epochs=1, **{**MML_TINY, name: value}).fit(X, y)


@both_estimators
@pytest.mark.parametrize("name, value, match", [
    ("module__dropout", 1.5, "module__dropout must be a finite float"),
    ("module__dropout", "high", "module__dropout must be a finite float"),
    ("criterion__distill_temperature", 0, "criterion__distill_temperature must be a finite "
                                          "float > 0; got 0"),
    ("criterion__distill_weight", float("nan"), "criterion__distill_weight must be a finite "
                                                "float >= 0"),
    ("criterion__aux_ce_weight", -1, "criterion__aux_ce_weight must be a finite float >= 0"),
])
def test_bad_routed_values_are_value_errors_naming_them(problem, make, name, value, match):
    X, y = problem
    with pytest.raises(ValueError, match=match):
        make(max_epochs=1, **{name: value}).fit(X, y)
