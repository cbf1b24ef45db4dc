"""Classes whose names give identical prompts are refused, naming them (issue 25, item 5).

Two such classes would get the same text embedding: the model could never tell them
apart, and one of them would never be predicted.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from sklearn_mmlgnet import MMLGNetClassifier, text

from .conftest import make_patches


class _HashEncoder(text.TextEncoder):
    """A deterministic stand-in for a language model: a vector per distinct prompt."""

    identity = {"backend": "test", "model": "hash", "fingerprint": "hash-v1"}

    def encode(self, texts):
        return np.array([np.frombuffer(hashlib.sha256(t.encode()).digest()[:16], np.uint8)
                         for t in texts], dtype=np.float32) - 127.5


def _clf(**kw):
    return MMLGNetClassifier(text_encoder=_HashEncoder(), max_epochs=0,
                             module__hsi_channels=(4,), module__lidar_channels=(2,),
                             module__fusion_dim=4, module__spectral_channels=(4,), **kw)


@pytest.fixture(scope="module")
def X():
    return make_patches(n_per_class=4)[0]  # 12 samples, classes in blocks of 4


def _y(labels, dtype=None):
    return np.array([labels[i // 4] for i in range(12)], dtype=dtype)


def test_distinct_names_are_accepted(X):
    clf = _clf(class_names={0: "Oak", 1: "Pine", 2: "Oak tree"}).fit(X, _y([0, 1, 2]))
    assert clf.class_names_ == ["Oak", "Pine", "Oak tree"]
    assert len({tuple(e) for e in clf.text_embeddings_}) == 3


@pytest.mark.parametrize("labels, class_names, named", [
    # duplicate names in class_names (a dict, a sequence)
    ([0, 1, 2], {0: "Oak", 1: "Pine", 2: "Oak"}, "classes 0 and 2 give the same prompt name 'oak'"),
    ([0, 1, 2], ["Pine", "Oak", "Oak"], "classes 1 and 2 give the same prompt name 'oak'"),
    # names that differ in case, spaces or underscores only
    (["Oak", "oak_", "Pine"], None, "classes 'Oak' and 'oak_' give the same prompt name 'oak'"),
    (["Oak", "oak", "Pine"], None, "classes 'Oak' and 'oak' give the same prompt name 'oak'"),
    (["Red  oak", "red_oak", "Pine"], None, "classes 'Red  oak' and 'red_oak' give the same"),
    ([0, 1, 2], {0: "Grass healthy", 1: "grass_healthy ", 2: "Soil"},
     "classes 0 and 1 give the same prompt name 'grass healthy'"),
], ids=["dict", "sequence", "underscore", "case", "spaces", "dict-spaces"])
def test_classes_with_identical_prompts_are_refused_naming_them(X, labels, class_names, named):
    clf = _clf(class_names=class_names)
    with pytest.raises(ValueError) as err:
        clf.fit(X, _y(labels))
    assert named in str(err.value)
    assert not hasattr(clf, "net_")


@pytest.mark.parametrize("labels, class_names, named", [
    ([0, 1, 2], {0: "Oak", 1: "", 2: "Pine"}, "class 1 has an empty name"),
    ([0, 1, 2], {0: "Oak", 1: " _ ", 2: "Pine"}, "class 1 has an empty name"),
    (["", "Oak", "Pine"], None, "class '' has an empty name"),
    (["Oak", "__", "Pine"], None, "class '__' has an empty name"),
])
def test_an_empty_name_is_refused_naming_its_class(X, labels, class_names, named):
    with pytest.raises(ValueError, match=named):
        _clf(class_names=class_names).fit(X, _y(labels))


def test_labels_equal_as_text_only_are_refused_naming_them(X):
    # 1 and "1" are two classes to numpy, one prompt name to the text encoder
    y = _y([1, "1", "Pine"], dtype=object)
    with pytest.raises(ValueError, match=r"1 and '1'|'1' and 1"):
        _clf().fit(X, y)


def test_names_only_matter_when_a_text_encoder_writes_prompts(X):
    # precomputed embeddings or the linear head: the labels need not make distinct prompts
    y = _y(["Oak", "oak", "Pine"])
    emb = {"Oak": [1.0, 0.0, 0.0], "oak": [0.0, 1.0, 0.0], "Pine": [0.0, 0.0, 1.0]}
    assert _clf(text_embeddings=emb).fit(X, y).class_names_ == ["Oak", "Pine", "oak"]
    assert list(_clf(loss="cross_entropy").fit(X, y).classes_) == ["Oak", "Pine", "oak"]
