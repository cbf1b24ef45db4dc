"""The fitted text head's helpers: class embeddings checked, close texts flagged, and a
view of a fitted network that scores other texts (open vocabulary)."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch

from .nn import TextSimilarityHead


def check_text_embeddings(embeddings, classes):
    """``text_embeddings`` as a (n_classes, dim) float32 array; errors name it."""
    n_classes = len(classes)
    if isinstance(embeddings, dict):
        missing = [c for c in classes.tolist() if c not in embeddings]
        if missing:
            raise ValueError(f"text_embeddings has no vector for label(s) {missing}.")
        embeddings = [embeddings[c] for c in classes.tolist()]
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != n_classes or emb.shape[1] == 0:
        raise ValueError(
            f"text_embeddings must have shape (n_classes={n_classes}, dim); got {emb.shape}.")
    if not np.isfinite(emb).all() or (np.linalg.norm(emb, axis=1) == 0).any():
        raise ValueError("text_embeddings must be finite with no all-zero row.")
    return emb


#: Class text embeddings closer than this (cosine) draw a warning at fit.
CLOSE_TEXT_COSINE = 0.95


def warn_close_texts(embeddings, names):
    """Warn when two classes' text embeddings are nearly the same.

    The language head then has to learn large projection weights along the small
    difference of the two vectors, and with few epochs it can merge the classes
    (docs/language_results.rst, "Close class texts").
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = emb @ emb.T
    np.fill_diagonal(sim, -1.0)
    i, j = np.unravel_index(np.argmax(sim), sim.shape)
    if sim[i, j] > CLOSE_TEXT_COSINE:
        n_close = int((np.triu(sim, 1) > CLOSE_TEXT_COSINE).sum())
        warnings.warn(
            f"the text embeddings of classes {names[i]!r} and {names[j]!r} have cosine "
            f"{sim[i, j]:.3f} ({n_close} pair(s) above {CLOSE_TEXT_COSINE}): the language head "
            "tells such classes apart slowly and may merge them. Give class_descriptions that "
            "say how they differ, or check the fit on held-out pixels against "
            "module__similarity='dot' with a larger lr, or loss='cross_entropy'.",
            UserWarning, stacklevel=5)  # the caller of fit


def check_text_head(clf):
    """Open-vocabulary scoring needs the fitted network's text head."""
    if not isinstance(clf.net_.module_.head, TextSimilarityHead):
        raise AttributeError(
            "text_scores and zero_shot_predict need a text head, but this model has "
            "loss='cross_entropy' (a linear head on the fused features, no text space); fit "
            "with loss='symmetric' or 'image_to_text' to score texts.")
    return True


def check_same_encoder(identity, info):
    """Refuse a text encoder other than the fit's: its vectors live in another space."""
    keys = ("backend", "model", "weights")
    now, then = {k: identity.get(k) for k in keys}, {k: info.get(k) for k in keys}
    fingerprints = identity.get("fingerprint"), info.get("fingerprint")
    if now != then or (None not in fingerprints and fingerprints[0] != fingerprints[1]):
        raise ValueError(
            f"text_encoder and clip_pretrained now give {now} but the model was fitted with "
            f"{then} (text_encoder_info_); new texts must be embedded by the same encoder. Set "
            "them back, or pass text_embeddings=.")


def retarget(head, text):
    """A text head scoring ``text`` with ``head``'s projection and scale, and no class bias."""
    with torch.device("meta"):  # its own projection is replaced at once: no weights, no RNG
        new = TextSimilarityHead(head.proj.in_features, text, head.logit_scale,
                                 normalize=head.normalize, bias=False)
    new.training = False  # this head alone: eval() would also set the shared projection's flag
    new.proj = head.proj
    return new


def scoring_text(module, text):
    """A view of the fitted network whose heads score ``text``.

    A shallow copy with its own table of sub-modules: the encoders, fusion and
    projections are the fitted ones (shared, not copied), and the fitted network is
    not changed, so it can keep predicting in other threads.
    """
    view = copy.copy(module)
    view._modules = dict(module._modules)
    view.head = retarget(module.head, text)
    if len(module.aux):
        view.aux = torch.nn.ModuleList([retarget(h, text) for h in module.aux])
    return view
