"""Learnt prompts (CoOp): context vectors trained through the frozen text encoder."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from sklearn_mmlgnet import MMLGNetClassifier, prompt_learning
from sklearn_mmlgnet.persistence import load_model, save_model
from sklearn_mmlgnet.prompt_learning import CONTEXT_INIT, make_prompt_learner
from sklearn_mmlgnet.text import OpenCLIPTextEncoder, SentenceTransformerTextEncoder

from .conftest import make_patches, requires_st
from .test_language import TINY, _HashEncoder

NAMES = ["Quercus rubra", "Acer rubrum", "Pinus palustris"]


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _small_clip():
    return OpenCLIPTextEncoder("ViT-S-32-alt", pretrained=None)  # a small random tower


@pytest.fixture(scope="module")
def problem():
    return make_patches(n_per_class=8, labels=["Woods", "Roads", "Vineyard"])


@pytest.mark.parametrize("backend", [pytest.param("bert", marks=requires_st), "clip"])
def test_the_untrained_prompt_is_the_template_it_starts_from(backend):
    # Context vectors started from "an aerial image of" give that template's embedding.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random CLIP weights
        enc = SentenceTransformerTextEncoder() if backend == "bert" else _small_clip()
        learner = make_prompt_learner(enc, NAMES, n_context=4)
        ref = enc.encode([f"{CONTEXT_INIT} {n.lower()}." for n in NAMES])
    with torch.no_grad():
        got = learner().numpy()
    np.testing.assert_allclose(got, _unit(ref), atol=1e-5)
    assert learner.context.shape[0] == 4 and learner.context.requires_grad


@requires_st
def test_only_the_context_vectors_train():
    learner = make_prompt_learner(SentenceTransformerTextEncoder(), NAMES, n_context=6)
    assert [n for n, p in learner.named_parameters() if p.requires_grad] == ["context"]
    learner.train()
    assert not learner.encoder.training  # frozen: no dropout either
    learner()[:, 0].sum().backward()
    assert learner.context.grad.abs().sum() > 0
    assert all(p.grad is None for p in learner.encoder.parameters())


@requires_st
def test_descriptions_join_the_learnt_prompt_in_the_class_mean():
    enc = SentenceTransformerTextEncoder()
    plain = make_prompt_learner(enc, NAMES, n_context=4)
    described = make_prompt_learner(enc, NAMES, context=plain.context,
                                    descriptions=[None, "A deciduous broadleaf tree.", None])
    with torch.no_grad():
        a, b = plain().numpy(), described().numpy()
    np.testing.assert_allclose(a[[0, 2]], b[[0, 2]], atol=1e-6)
    desc = _unit(enc.encode(["A deciduous broadleaf tree."]))[0]
    np.testing.assert_allclose(b[1], _unit(a[1] + desc), atol=1e-5)


@requires_st
def test_a_fit_trains_the_context_and_changes_the_text_embeddings_only(problem, monkeypatch):
    X, y = problem
    made = []

    def spy(*args, **kwargs):
        made.append(make_prompt_learner(*args, **kwargs))
        made.append({k: v.clone() for k, v in made[0].encoder.state_dict().items()})
        made.append(made[0].context.detach().clone())
        with torch.no_grad():
            made.append(made[0]().numpy())
        return made[0]

    monkeypatch.setattr("sklearn_mmlgnet._mmlgnet.make_prompt_learner", spy)
    clf = MMLGNetClassifier(text_encoder="sentence-transformers", prompt_context=4,
                            max_epochs=3, lr=1e-2, **TINY).fit(X, y)
    learner, encoder_before, context_before, text_before = made
    # The encoder is untouched; the context moved, and with it the class embeddings.
    after = learner.encoder.state_dict()
    assert all(torch.equal(encoder_before[k], after[k]) for k in after)
    assert not torch.allclose(learner.context.detach(), context_before)
    np.testing.assert_allclose(clf.prompt_context_, learner.context.detach().numpy())
    assert np.abs(clf.text_embeddings_ - text_before).max() > 1e-4
    with torch.no_grad():
        np.testing.assert_allclose(clf.text_embeddings_, learner().numpy(), atol=1e-6)
    # What the network scores against is the learnt embeddings, stored: no encoder kept.
    module = clf.net_.module_
    assert module.text_source is None
    np.testing.assert_allclose(module.head.text.numpy(), clf.text_embeddings_, atol=1e-6)
    assert not any("encoder" in k for k in module.state_dict())
    assert clf.text_encoder_info_["prompt_context"] == 4 and clf.text_encoder_info_[
        "templates"] == []


@requires_st
def test_new_texts_are_written_after_the_learnt_context(problem):
    X, y = problem
    clf = MMLGNetClassifier(text_encoder="sentence-transformers", prompt_context=4,
                            max_epochs=2, module__class_bias=False, **TINY).fit(X, y)
    # The fitted class names, encoded anew with the learnt context, score as predict does.
    np.testing.assert_allclose(clf.text_scores(X[:6], clf.class_names_), clf.predict_proba(X[:6]),
                               atol=1e-5)


@requires_st
def test_a_saved_model_keeps_its_learnt_prompts(problem, tmp_path):
    X, y = problem
    clf = MMLGNetClassifier(text_encoder="sentence-transformers", prompt_context=2,
                            max_epochs=1, **TINY).fit(X, y)
    got = load_model(save_model(clf, tmp_path / "coop.safetensors"))
    np.testing.assert_array_equal(got.prompt_context_, clf.prompt_context_)
    np.testing.assert_allclose(got.predict_proba(X), clf.predict_proba(X), atol=1e-6)


def test_prompt_learning_needs_a_built_in_backend(problem):
    X, y = problem
    clf = MMLGNetClassifier(text_encoder=_HashEncoder(), prompt_context=4, max_epochs=1, **TINY)
    with pytest.raises(ValueError, match="prompt learning needs the text encoder's network"):
        clf.fit(X, y)
    assert not hasattr(clf, "classes_")


@requires_st
def test_a_failed_fit_does_not_keep_the_text_model(problem):
    X, y = problem
    clf = MMLGNetClassifier(text_encoder="sentence-transformers", prompt_context=2,
                            module__fusion_dim=0, max_epochs=1)  # the network cannot be built
    with pytest.raises(ValueError, match="module__fusion_dim"):
        clf.fit(X, y)
    assert not hasattr(clf, "_prompt_learner") and not hasattr(clf, "classes_")
    clf.set_params(module__fusion_dim=8).fit(X, y)
    assert not hasattr(clf, "_prompt_learner") and clf.prompt_context_.shape[0] == 2


def test_without_a_text_encoder_the_context_is_not_learnt(problem):
    X, y = problem
    emb = {"Woods": [1.0, 0.0], "Roads": [0.0, 1.0], "Vineyard": [0.6, 0.8]}
    clf = MMLGNetClassifier(text_embeddings=emb, prompt_context=4, max_epochs=1, **TINY).fit(X, y)
    assert clf.prompt_context_ is None
    np.testing.assert_allclose(clf.text_embeddings_, [emb[c] for c in clf.classes_])


def test_a_context_of_the_wrong_width_is_refused():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="width 3"):
            make_prompt_learner(_small_clip(), NAMES, context=np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="n_context must be an int >= 1"):
        prompt_learning._check_context_size(0, None)
