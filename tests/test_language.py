"""Language that earns its place (issue 26): class descriptions in the prompt ensemble,
open-vocabulary scores of a fitted model, and zero-shot classes never seen in training."""

from __future__ import annotations

import hashlib
import inspect
import warnings

import numpy as np
import pytest
import torch
from sklearn.utils import Bunch
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_mmlgnet import MMLGNetClassifier, text
from sklearn_mmlgnet.datasets import (HOUSTON2013_CLASSES, IDTREES_COMMON_NAMES,
                                      JASPER_RIDGE_CLASSES, MUUFL_CLASSES, SYNTHETIC_CLASSES,
                                      TRENTO_CLASSES)
from sklearn_mmlgnet.descriptions import CLASS_DESCRIPTIONS, DATASETS, class_descriptions
from sklearn_mmlgnet.patches import extract_patches
from sklearn_mmlgnet.persistence import load_model, save_model
from sklearn_mmlgnet.prediction import predict_scene
from sklearn_mmlgnet.text import DEFAULT_TEMPLATES, build_prompts, encode_class_names

from .conftest import make_patches, requires_st

TINY = dict(module__hsi_channels=(4,), module__lidar_channels=(2,), module__fusion_dim=8,
            module__spectral_channels=(8,), batch_size=32, random_state=0)


class _HashEncoder(text.TextEncoder):
    """A deterministic stand-in for a language model that records what it encodes."""

    def __init__(self, salt="v1"):
        self.salt = salt
        self.seen = []

    @property
    def identity(self):  # no fingerprint: never cached, so every fit encodes
        return {"backend": "test", "model": "hash", "weights": self.salt, "fingerprint": None}

    def encode(self, texts):
        self.seen.extend(texts)
        return np.array([np.frombuffer(hashlib.sha256((self.salt + t).encode()).digest()[:16],
                                       np.uint8) for t in texts], dtype=np.float32) - 127.5


@pytest.fixture(scope="module")
def problem():
    return make_patches(n_per_class=8, labels=["Woods", "Roads", "Vineyard"])  # 24 samples


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


# ------------------------------------------------------------------ descriptions at fit
def test_the_estimator_stays_within_31_parameters():
    # 30 after the architecture review, + prompt_context (learnt prompts).
    params = [p for p in inspect.signature(MMLGNetClassifier).parameters.values()
              if p.kind is not p.VAR_KEYWORD]
    assert {"class_descriptions", "prompt_context"} <= set(MMLGNetClassifier().get_params())
    assert len(params) <= 31


def test_descriptions_reach_the_prompts_and_the_class_embeddings(problem):
    X, y = problem
    enc = _HashEncoder()
    descr = {"Woods": ["Tall broadleaf crowns.", "A strong red edge."], "Roads": "Dark asphalt."}
    clf = MMLGNetClassifier(text_encoder=enc, class_descriptions=descr, max_epochs=0,
                            **TINY).fit(X, y)
    for sentence in ("Tall broadleaf crowns.", "A strong red edge.", "Dark asphalt."):
        assert enc.seen.count(sentence) == 1  # as written, outside the templates
    # classes_ = Roads, Vineyard, Woods; Vineyard has no description: its name prompts alone
    assert len(enc.seen) == 3 * len(DEFAULT_TEMPLATES) + 3
    info = clf.text_encoder_info_
    assert info["templates"] == list(DEFAULT_TEMPLATES)
    assert info["descriptions"] == {"Roads": ["Dark asphalt."],
                                    "Woods": ["Tall broadleaf crowns.", "A strong red edge."]}
    # Each class: the normalised mean of its unit prompt embeddings, every prompt alike.
    for c, name in enumerate(clf.classes_):
        prompts = build_prompts([name], DEFAULT_TEMPLATES)[0] + info["descriptions"].get(name, [])
        expected = _unit(_unit(_HashEncoder().encode(prompts)).mean(axis=0))
        np.testing.assert_allclose(clf.text_embeddings_[c], expected, rtol=1e-5, atol=1e-6)
    # Other descriptions, other embeddings; the undescribed class keeps its own.
    other = MMLGNetClassifier(text_encoder=_HashEncoder(), max_epochs=0, **TINY,
                              class_descriptions={"Woods": "Short grass."}).fit(X, y)
    assert not np.allclose(other.text_embeddings_[2], clf.text_embeddings_[2])
    np.testing.assert_array_equal(other.text_embeddings_[1], clf.text_embeddings_[1])
    plain = MMLGNetClassifier(text_encoder=_HashEncoder(), max_epochs=0, **TINY).fit(X, y)
    assert plain.text_encoder_info_["descriptions"] == {}
    np.testing.assert_array_equal(plain.text_embeddings_[1], clf.text_embeddings_[1])


def test_descriptions_with_integer_labels_and_class_names():
    X, y = make_patches(n_per_class=8)  # labels 0, 1, 2
    enc = _HashEncoder()
    MMLGNetClassifier(text_encoder=enc, class_names={0: "Woods", 1: "Roads", 2: "Water"},
                      class_descriptions={2: ("Dark in the near infrared.",)}, max_epochs=0,
                      **TINY).fit(X, y)
    assert "Dark in the near infrared." in enc.seen


@pytest.mark.parametrize("descr, error, match", [
    ({"Woods": "x", "Pines": "y", "Oaks": "z"}, ValueError,
     r"class_descriptions has descriptions for label\(s\) \['Pines', 'Oaks'\], which y does "
     r"not hold \(its classes are \['Roads', 'Vineyard', 'Woods'\]\)"),
    ({"Woods": ""}, ValueError, r"class_descriptions\['Woods'\] must be a non-empty str"),
    ({"Woods": ["ok", 3]}, ValueError, r"class_descriptions\['Woods'\] .* got \['ok', 3\]"),
    ({"Woods": 3}, ValueError, r"class_descriptions\['Woods'\] .* got 3"),
    (["Tall crowns."], InvalidParameterError, "'class_descriptions' parameter"),
], ids=["unknown-labels", "empty", "not-str", "number", "not-a-dict"])
def test_bad_descriptions_are_refused_naming_them(problem, descr, error, match):
    X, y = problem
    clf = MMLGNetClassifier(text_encoder=_HashEncoder(), class_descriptions=descr,
                            max_epochs=0, **TINY)
    with pytest.raises(error, match=match):
        clf.fit(X, y)
    assert not hasattr(clf, "net_")


def test_descriptions_are_part_of_the_cache_key(tmp_path):
    class Cached(_HashEncoder):
        identity = {"backend": "test", "model": "hash", "fingerprint": "fixed"}

    enc = Cached()
    a = encode_class_names(["Woods"], ["a photo of {}."], enc, str(tmp_path))
    b = encode_class_names(["Woods"], ["a photo of {}."], enc, str(tmp_path),
                           descriptions=[["Tall crowns."]])
    again = encode_class_names(["Woods"], ["a photo of {}."], enc, str(tmp_path),
                               descriptions=[["Tall crowns."]])
    assert not np.allclose(a, b) and np.array_equal(b, again)
    assert enc.seen == ["a photo of woods.", "a photo of woods.", "Tall crowns."]  # one miss each


# ------------------------------------------------------------------ shipped descriptions
@pytest.mark.parametrize("dataset, table", [
    ("trento", TRENTO_CLASSES), ("muufl", MUUFL_CLASSES), ("houston2013", HOUSTON2013_CLASSES),
    ("jasper_ridge", JASPER_RIDGE_CLASSES), ("synthetic", SYNTHETIC_CLASSES),
    ("idtrees", {k: k for k in IDTREES_COMMON_NAMES}),  # keyed by taxonID
])
def test_every_class_of_every_loader_has_a_description(dataset, table):
    descr = class_descriptions(dataset)
    assert set(descr) == set(table.values())
    for name, sentences in descr.items():
        assert 2 <= len(sentences) <= 4, name
        assert all(s.strip() and s.endswith(".") and len(s) < 160 for s in sentences), name
        assert len(set(sentences)) == len(sentences), name
    assert set(DATASETS) == {*CLASS_DESCRIPTIONS, "synthetic"}


def test_descriptions_of_a_loader_bunch_are_keyed_by_its_labels():
    scene = Bunch(name="muufl", class_names={k: v.lower() for k, v in MUUFL_CLASSES.items()})
    descr = class_descriptions(scene)  # a file's own spelling of the names: matched by label
    assert sorted(descr) == sorted(MUUFL_CLASSES)
    assert descr[6] == list(CLASS_DESCRIPTIONS["muufl"]["Water"])
    trees = Bunch(class_names={1: "Pinus palustris, longleaf pine", 2: "Quercus laevis, "
                               "turkey oak"}, taxon_ids={1: "PIPA2", 2: "QULA2"})
    assert class_descriptions(trees) == {1: list(CLASS_DESCRIPTIONS["idtrees"]["PIPA2"]),
                                         2: list(CLASS_DESCRIPTIONS["idtrees"]["QULA2"])}
    fresh = class_descriptions("trento")
    fresh["Roads"].append("edited")  # a copy: the shipped table is unchanged
    assert "edited" not in CLASS_DESCRIPTIONS["trento"]["Roads"]
    with pytest.raises(ValueError, match="dataset must be one of .* got 'indian_pines'"):
        class_descriptions("indian_pines")
    with pytest.raises(ValueError, match="named 'mine'"):
        class_descriptions(Bunch(name="mine", class_names={1: "a"}))


def test_nearly_identical_class_texts_draw_a_warning_naming_them(problem):
    X, y = problem
    close = {"Woods": [1.0, 0.0, 0.0], "Roads": [0.0, 0.0, 1.0], "Vineyard": [0.99, 0.141, 0.0]}
    with pytest.warns(UserWarning, match=r"'Vineyard' and 'Woods' have cosine 0\.990") as record:
        MMLGNetClassifier(text_embeddings=close, max_epochs=1, **TINY).fit(X, y)
    assert record[0].filename == __file__  # points at the caller's fit
    apart = dict(close, Vineyard=[0.9, 0.436, 0.0])  # cosine 0.9: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MMLGNetClassifier(text_embeddings=apart, max_epochs=1, **TINY).fit(X, y)
        # The cross-entropy head does not score against the texts.
        MMLGNetClassifier(text_embeddings=close, loss="cross_entropy", max_epochs=1,
                          **TINY).fit(X, y)


# ------------------------------------------------------------------ open vocabulary
@pytest.fixture(scope="module")
def fitted(problem):
    X, y = problem
    clf = MMLGNetClassifier(text_encoder=_HashEncoder(), max_epochs=2, module__class_bias=False,
                            class_descriptions={"Woods": "Tall crowns."}, **TINY).fit(X, y)
    return clf, X


def test_text_scores_are_probabilities_over_the_given_texts(fitted):
    clf, X = fitted
    texts = ["Woods", "Water", "Roads", "Pine forest"]
    p = clf.text_scores(X, texts)
    assert p.shape == (len(X), 4) and p.dtype == np.float64
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    logits = clf.text_scores(X, texts, return_logits=True)
    np.testing.assert_allclose(p, torch.softmax(torch.as_tensor(logits), 1).numpy(), rtol=1e-6)
    assert np.abs(logits).max() <= 1 / clf.temperature_ + 1e-4  # cosine / temperature
    # The fitted classes, described as at fit: the model's own probabilities (no class bias).
    names = list(clf.classes_)
    np.testing.assert_allclose(
        clf.text_scores(X, names, class_descriptions={"Woods": "Tall crowns."}),
        clf.predict_proba(X), rtol=1e-5, atol=1e-7)
    assert clf.zero_shot_predict(X[:5], names, class_descriptions={"Woods": "Tall crowns."}
                                 ).tolist() == clf.predict(X[:5]).tolist()


def test_text_scores_leave_the_fitted_model_unchanged(fitted):
    clf, X = fitted
    module = clf.net_.module_
    before = {k: v.clone() for k, v in module.state_dict().items()}
    head, attrs = module.head, set(vars(clf))
    expected = clf.predict_proba(X)
    clf.set_params(test_time_augment=True)
    try:
        clf.text_scores(X, ["Pine forest", "Water"])
        clf.text_scores(X, ["Pine forest", "Water"], return_logits=True)
    finally:
        clf.set_params(test_time_augment=False)
    after = module.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert module.head is head and set(vars(clf)) == attrs
    assert not any(m.training for m in module.modules())
    np.testing.assert_array_equal(clf.predict_proba(X), expected)


def test_a_copy_classifies_among_new_texts_over_a_scene(fitted, tmp_path):
    clf, X = fitted
    texts = ["Woods", "Water", "Pine forest"]
    before = clf.predict_proba(X)
    new = clf.with_texts(texts)
    assert new.classes_.tolist() == texts and clf.classes_.tolist() == sorted(clf.classes_)
    np.testing.assert_allclose(new.predict_proba(X), clf.text_scores(X, texts), rtol=1e-6)
    np.testing.assert_array_equal(clf.predict_proba(X), before)  # the model is not changed
    # A whole scene, by the dense path, gives the patch path's texts.
    rng = np.random.RandomState(1)
    hsi, lidar = rng.normal(size=(9, 8, X.shape[1] - 1)), rng.normal(size=(9, 8, 1))
    rows, cols = np.indices((9, 8)).reshape(2, -1)
    patches = extract_patches(hsi, lidar, rows, cols, patch_size=X.shape[-1])
    dense = predict_scene(new, hsi, lidar, patch_size=X.shape[-1], method="dense")
    assert dense.ravel().tolist() == new.predict(patches).tolist()
    # Saved and loaded, it still scores the texts.
    got = load_model(save_model(new, tmp_path / "texts.safetensors"))
    np.testing.assert_allclose(got.predict_proba(X), new.predict_proba(X), rtol=1e-6)


def test_text_scores_with_student_heads_and_mean_prediction(problem):
    X, y = problem
    clf = MMLGNetClassifier(text_encoder=_HashEncoder(), max_epochs=1, self_distillation=True,
                            predict_heads="mean", module__class_bias=False,
                            **{**TINY, "module__hsi_channels": (4, 4)}).fit(X, y)
    np.testing.assert_allclose(clf.text_scores(X, list(clf.classes_)), clf.predict_proba(X),
                               rtol=1e-5, atol=1e-7)


def test_precomputed_embeddings_need_embeddings_for_new_texts(problem):
    X, y = problem
    emb = np.eye(3, 4, dtype=np.float32)
    clf = MMLGNetClassifier(text_embeddings=emb, max_epochs=1, **TINY).fit(X, y)
    with pytest.raises(ValueError, match=r"fitted with precomputed text_embeddings.*pass "
                                         r"text_embeddings= of shape \(2, 4\)"):
        clf.text_scores(X, ["Pine forest", "Water"])
    p = clf.text_scores(X, ["Pine forest", "Water"], text_embeddings=[[0, 0, 0, 1], [1, 1, 0, 0]])
    assert p.shape == (len(X), 2)
    with pytest.raises(ValueError, match=r"text_embeddings must have shape \(len\(texts\)=2, "
                                         r"dim=4\), the fitted text space; got \(2, 3\)"):
        clf.text_scores(X, ["Pine forest", "Water"], text_embeddings=np.eye(2, 3))
    with pytest.raises(ValueError, match="class_descriptions cannot be used with text_embed"):
        clf.text_scores(X, ["a"], text_embeddings=[[1, 0, 0, 0]], class_descriptions={"a": "b"})
    with pytest.raises(ValueError, match="texts must be a non-empty sequence of non-empty str"):
        clf.text_scores(X, "Water")


def test_new_texts_need_the_fit_s_encoder(fitted):
    clf, X = fitted
    with pytest.raises(ValueError, match="class_descriptions has descriptions for label"
                                         r"\(s\) \['Oak'\], which texts does not hold"):
        clf.text_scores(X, ["Water"], class_descriptions={"Oak": "Lobed leaves."})
    clf.set_params(text_encoder=_HashEncoder("other weights"))
    try:
        with pytest.raises(ValueError, match="new texts must be embedded by the same encoder"):
            clf.text_scores(X, ["Water"])
    finally:
        clf.set_params(text_encoder=_HashEncoder())


def test_a_model_without_text_head_has_no_text_scores(problem):
    X, y = problem
    clf = MMLGNetClassifier(loss="cross_entropy", max_epochs=1, **TINY).fit(X, y)
    for method in (clf.text_scores, clf.zero_shot_predict):
        with pytest.raises(AttributeError, match="loss='cross_entropy'.*no text space"):
            method(X, ["Water"], text_embeddings=[[1.0, 0.0, 0.0]])


# ------------------------------------------------------------------ zero shot
# Class texts lie in a plane of an 8-d text space: A, B, C at 0, 120 and 240 degrees (seen),
# D at 60 degrees, between A and B (never seen). Each class lifts HSI bands 0 and 1 by its
# text coordinates, so the network has to learn a map from bands to text directions, and
# D's patches, a combination it never saw, land between A and B: on D's text, if the map
# generalises. (Orthonormal class texts could not test this: a held-out basis vector is a
# direction no training label ever rewarded. Here the seen texts sum to zero, so no shift
# that the seen classes cannot see can move D's score either.)
ZS_NAMES = np.array(["A", "B", "C", "D"])
ZS_ANGLES = np.deg2rad([0.0, 120.0, 240.0, 60.0])
ZS_TEXT = np.zeros((4, 8), np.float32)
ZS_TEXT[:, 0], ZS_TEXT[:, 1] = np.cos(ZS_ANGLES), np.sin(ZS_ANGLES)


def _plane_problem(n_per_class, seed, lift=4.0):
    rng = np.random.RandomState(seed)
    y = np.repeat(np.arange(4), n_per_class)
    X = rng.normal(size=(len(y), 4, 3, 3)).astype(np.float32)  # 3 HSI bands + 1 LiDAR
    X[:, :2] += lift * ZS_TEXT[y, :2, None, None]
    return X, y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_zero_shot_predicts_a_class_never_seen_in_training(seed):
    X, y = _plane_problem(30, seed)
    seen = y < 3
    # Wider than TINY: a map from bands to text that interpolates needs some width.
    clf = MMLGNetClassifier(text_embeddings=ZS_TEXT[:3], max_epochs=20, lr=1e-2, batch_size=32,
                            module__hsi_channels=(16,), module__lidar_channels=(2,),
                            module__fusion_dim=64, module__spectral_channels=(64,),
                            random_state=seed).fit(X[seen], ZS_NAMES[y[seen]])
    Xt, yt = _plane_problem(40, 100 + seed)
    pred = clf.zero_shot_predict(Xt, ZS_NAMES, text_embeddings=ZS_TEXT)
    held_out = np.mean(pred[yt == 3] == "D")
    assert held_out >= 0.7, held_out  # chance: 0.25
    assert np.mean(pred[yt < 3] == ZS_NAMES[yt[yt < 3]]) >= 0.9
    # The answer is where D's text is: moved to 180 degrees, it is (almost) never chosen.
    moved = ZS_TEXT.copy()
    moved[3, :2] = [-1.0, 0.0]
    assert np.mean(clf.zero_shot_predict(Xt[yt == 3], ZS_NAMES, text_embeddings=moved)
                   == "D") <= 0.1


# ------------------------------------------------------------------ the packaged model
@requires_st
def test_shipped_descriptions_with_the_packaged_text_model():
    X, y = make_patches(n_per_class=6, labels=["Woods", "Roads", "Vineyard"])
    descr = class_descriptions("trento")
    clf = MMLGNetClassifier(text_encoder="sentence-transformers", max_epochs=1,
                            class_descriptions={k: descr[k] for k in ("Woods", "Roads")},
                            **TINY).fit(X, y)
    assert set(clf.text_encoder_info_["descriptions"]) == {"Woods", "Roads"}
    p = clf.text_scores(X, ["Apple trees", "Woods", "Water"],
                        class_descriptions={"Apple trees": descr["Apple trees"]})
    assert p.shape == (len(X), 3) and np.allclose(p.sum(axis=1), 1)
