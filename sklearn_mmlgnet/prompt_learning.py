"""Learnt prompts: context vectors trained in front of each class name (CoOp).

CoOp (Zhou et al., "Learning to Prompt for Vision-Language Models", IJCV 2022)
replaces handcrafted templates by ``M`` context vectors shared by every class, in
the text encoder's token-embedding space: class ``c``'s prompt is
``[ctx_1] ... [ctx_M] <name of c>.``. The text encoder stays frozen; the image-text
loss trains the context vectors through it, and nothing else of it.

:class:`~sklearn_mmlgnet.MMLGNetClassifier` builds a prompt learner when
``prompt_context > 0`` (:func:`make_prompt_learner`), trains it with the image side
and, once fitted, keeps the class embeddings it gives (``text_embeddings_``) and the
context vectors (``prompt_context_``); prediction then needs no text encoder.

Two backends: the CLIP text tower of open_clip (:class:`CLIPPromptLearner`, the
EOT token's feature projected, as CLIP) and a sentence-transformers BERT model such
as the packaged all-MiniLM-L6-v2 (:class:`BertPromptLearner`, its mean or CLS pooling).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .text import OpenCLIPTextEncoder, SentenceTransformerTextEncoder, prompt_name

#: The words the context vectors start from (CoOp starts from "a photo of a"); with
#: more context vectors than its tokens, the extra leading ones start at random.
CONTEXT_INIT = "an aerial image of"

__all__ = ["PromptLearner", "CLIPPromptLearner", "BertPromptLearner", "make_prompt_learner",
           "CONTEXT_INIT"]


class PromptLearner(nn.Module):
    """Class embeddings from learnt context vectors and a frozen text encoder.

    Subclasses hold the frozen encoder and the class tokens and implement
    :meth:`encode_context`. The module's only trained parameter is ``context``.

    Parameters
    ----------
    context : Tensor of shape (n_context, width)
        The initial context vectors (token-embedding space of the encoder).
    extra : Tensor of shape (n_classes, dim), optional
        Per class, the sum of the unit embeddings of fixed sentences (class
        descriptions) that join its learnt prompt in the class mean.
    extra_count : Tensor of shape (n_classes,), optional
        How many sentences each row of ``extra`` sums.
    """

    def __init__(self, context, extra=None, extra_count=None):
        super().__init__()
        self.context = nn.Parameter(context.detach().clone().float())
        self.register_buffer("extra", extra)
        self.register_buffer("extra_count", extra_count)

    @property
    def n_context(self):
        return self.context.shape[0]

    def encode_context(self):  # pragma: no cover - interface
        """The (n_classes, dim) embeddings of the learnt prompts (not normalised)."""
        raise NotImplementedError

    def forward(self):
        """Unit class embeddings: each the normalised mean of its learnt prompt's unit
        embedding and its fixed sentences' (one each)."""
        emb = F.normalize(self.encode_context().float(), dim=-1)
        if self.extra is not None:
            emb = (emb + self.extra) / (1.0 + self.extra_count[:, None])
        return F.normalize(emb, dim=-1)

    def train(self, mode=True):
        # The text encoder stays in eval mode (no dropout): it is frozen.
        super().train(mode)
        self.encoder.eval()
        return self


def _frozen(module):
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


def _initial_context(words, embed, n_context):
    """``n_context`` vectors: the embeddings of the last words of ``words``, preceded by
    random ones (N(0, 0.02), CoOp's) where there are not enough words."""
    width = embed.shape[1]
    n_words = min(n_context, len(words))
    start = torch.randn(n_context - n_words, width) * 0.02
    return torch.cat([start, embed[len(words) - n_words:]], dim=0) if n_words else start


class CLIPPromptLearner(PromptLearner):
    """Learnt prompts through the text tower of an open_clip CLIP model.

    Parameters
    ----------
    model : open_clip CLIP model
        With ``token_embedding``, ``positional_embedding``, ``transformer``,
        ``ln_final``, ``text_projection`` and ``"argmax"`` text pooling (the EOT
        token's feature, as OpenAI's CLIP). Frozen here.
    tokenizer : callable
        open_clip's tokenizer of the model.
    class_names : sequence of str
    n_context : int, optional
        Number of context vectors (with ``context=None``).
    context : array-like of shape (n_context, width), optional
        Context vectors to start from (a fitted model's ``prompt_context_``).
    extra, extra_count : Tensor, optional
        See :class:`PromptLearner`.
    """

    def __init__(self, model, tokenizer, class_names, n_context=None, context=None, extra=None,
                 extra_count=None):
        if getattr(model, "text_pool_type", "argmax") != "argmax" or not hasattr(
                model, "token_embedding"):
            raise ValueError(
                "prompt learning needs a CLIP text tower that pools the EOT token "
                "(text_pool_type='argmax', as OpenAI's CLIP); this open_clip model does not.")
        n_context = _check_context_size(n_context, context)
        placeholder = " ".join(["X"] * n_context)
        tokens = tokenizer([f"{placeholder} {prompt_name(n)}." for n in class_names])
        with torch.no_grad():
            embedded = model.token_embedding(tokens.to(model.positional_embedding.device))
            if context is None:
                words = tokenizer([CONTEXT_INIT])[0]
                words = words[1:int(words.argmax())]  # between SOT and EOT
                context = _initial_context(words, model.token_embedding(words.to(
                    embedded.device)).cpu(), n_context)
        super().__init__(torch.as_tensor(context), extra, extra_count)
        self.encoder = _frozen(model)
        if self.context.shape[1] != embedded.shape[-1]:
            raise ValueError(f"context vectors have width {self.context.shape[1]}; the text "
                             f"encoder's tokens have {embedded.shape[-1]}.")
        # Only what the prompts need is kept; the vision tower is not used.
        self.register_buffer("prefix", embedded[:, :1].float())  # SOT
        self.register_buffer("suffix", embedded[:, 1 + n_context:].float())  # name, '.', EOT
        self.register_buffer("eot", tokens.argmax(dim=-1))

    def encode_context(self):
        m = self.encoder
        n_classes = self.prefix.shape[0]
        x = torch.cat([self.prefix, self.context.expand(n_classes, -1, -1), self.suffix], dim=1)
        x = x + m.positional_embedding
        x = m.ln_final(m.transformer(x, attn_mask=m.attn_mask))
        x = x[torch.arange(n_classes, device=x.device), self.eot]
        proj = m.text_projection
        return proj(x) if isinstance(proj, nn.Module) else x @ proj


class BertPromptLearner(PromptLearner):
    """Learnt prompts through a sentence-transformers BERT-style model.

    The prompt ``[CLS] ctx_1 ... ctx_M <name>. [SEP]`` runs through the frozen
    transformer from its input embeddings, then the model's own pooling (mean or
    CLS) gives the class embedding, as ``SentenceTransformer.encode`` does.

    Parameters
    ----------
    model : sentence_transformers.SentenceTransformer
        A Transformer module followed by a Pooling module (mean or CLS), e.g. the
        packaged all-MiniLM-L6-v2. Frozen here.
    class_names, n_context, context, extra, extra_count
        As in :class:`CLIPPromptLearner`.
    """

    def __init__(self, model, class_names, n_context=None, context=None, extra=None,
                 extra_count=None):
        transformer, pooling = model[0], model[1] if len(model) > 1 else None
        mode = getattr(pooling, "pooling_mode", None) or (
            "mean" if getattr(pooling, "pooling_mode_mean_tokens", False) else
            "cls" if getattr(pooling, "pooling_mode_cls_token", False) else None)
        if mode not in ("mean", "cls") or not hasattr(transformer, "auto_model"):
            raise ValueError("prompt learning needs a sentence-transformers model made of a "
                             f"Transformer and a mean or CLS Pooling; got pooling {mode!r}.")
        n_context = _check_context_size(n_context, context)
        tok, bert = transformer.tokenizer, transformer.auto_model
        words = [tok(f"{prompt_name(n)}.", add_special_tokens=False)["input_ids"]
                 for n in class_names]
        length = 2 + n_context + max(map(len, words))
        ids = torch.full((len(words), length), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros(len(words), length, dtype=torch.long)
        for c, w in enumerate(words):  # CLS, context placeholders (pad ids), name, SEP
            row = [tok.cls_token_id] + [tok.pad_token_id] * n_context + w + [tok.sep_token_id]
            ids[c, :len(row)] = torch.tensor(row)
            mask[c, :len(row)] = 1
        embed = bert.get_input_embeddings()
        with torch.no_grad():
            embedded = embed(ids.to(embed.weight.device)).float()
            if context is None:
                init = torch.tensor(tok(CONTEXT_INIT, add_special_tokens=False)["input_ids"])
                context = _initial_context(init, embed(init.to(embed.weight.device)).cpu(),
                                           n_context)
        super().__init__(torch.as_tensor(context), extra, extra_count)
        self.encoder = _frozen(bert)
        if self.context.shape[1] != embedded.shape[-1]:
            raise ValueError(f"context vectors have width {self.context.shape[1]}; the text "
                             f"encoder's tokens have {embedded.shape[-1]}.")
        self.pooling = mode
        self.register_buffer("prefix", embedded[:, :1])
        self.register_buffer("suffix", embedded[:, 1 + n_context:])
        self.register_buffer("mask", mask.to(embedded.device))

    def encode_context(self):
        n_classes = self.prefix.shape[0]
        x = torch.cat([self.prefix, self.context.expand(n_classes, -1, -1), self.suffix], dim=1)
        hidden = self.encoder(inputs_embeds=x, attention_mask=self.mask).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = self.mask[..., None].to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)


def _check_context_size(n_context, context):
    if context is not None:
        context = torch.as_tensor(context)
        if context.dim() != 2 or context.shape[0] < 1:
            raise ValueError(f"context must have shape (n_context, width); got "
                             f"{tuple(context.shape)}.")
        return context.shape[0]
    if isinstance(n_context, bool) or not isinstance(n_context, int) or n_context < 1:
        raise ValueError(f"n_context must be an int >= 1; got {n_context!r}.")
    return n_context


def make_prompt_learner(encoder, class_names, n_context=None, *, context=None,
                        descriptions=None):
    """The prompt learner of a :class:`~sklearn_mmlgnet.text.TextEncoder`.

    Parameters
    ----------
    encoder : OpenCLIPTextEncoder or SentenceTransformerTextEncoder
        Its model is loaded (as for encoding) and frozen.
    class_names : sequence of str
        Written into the prompts as :func:`~sklearn_mmlgnet.text.prompt_name` writes them.
    n_context : int, optional
        Number of learnt context vectors, started from :data:`CONTEXT_INIT` (given
        when ``context`` is not).
    context : array-like of shape (n_context, width), optional
        Context vectors to use, e.g. a fitted model's ``prompt_context_``.
    descriptions : sequence, optional
        Per class: None, a sentence or a list of sentences, encoded once (frozen)
        and averaged with the class's learnt prompt, each weighing the same.

    Returns
    -------
    PromptLearner
        ``learner()`` gives the (n_classes, dim) unit class embeddings.

    Examples
    --------
    >>> import warnings; warnings.simplefilter("ignore")
    >>> from sklearn_mmlgnet.text import OpenCLIPTextEncoder
    >>> enc = OpenCLIPTextEncoder("ViT-S-32-alt", pretrained=None)  # a small random tower
    >>> learner = make_prompt_learner(enc, ["Woods", "Roads"], n_context=4)
    >>> learner().shape, learner.context.shape, learner.context.requires_grad
    (torch.Size([2, 256]), torch.Size([4, 256]), True)
    """
    extra = count = None
    if descriptions is not None and any(descriptions):
        sentences = [[d] if isinstance(d, str) else list(d or []) for d in descriptions]
        flat = [s for group in sentences for s in group]
        emb = F.normalize(torch.as_tensor(encoder.encode(flat), dtype=torch.float32), dim=1)
        bounds = torch.tensor([0] + [len(g) for g in sentences]).cumsum(0).tolist()
        extra = torch.stack([emb[a:b].sum(0) if b > a else torch.zeros(emb.shape[1])
                             for a, b in zip(bounds[:-1], bounds[1:])])
        count = torch.tensor([len(g) for g in sentences], dtype=torch.float32)
    if isinstance(encoder, OpenCLIPTextEncoder):
        model, tokenizer = encoder.load_model()
        return CLIPPromptLearner(model, tokenizer, class_names, n_context, context, extra, count)
    if isinstance(encoder, SentenceTransformerTextEncoder):
        return BertPromptLearner(encoder.load_model(), class_names, n_context, context, extra,
                                 count)
    raise ValueError(
        "prompt learning needs the text encoder's network: text_encoder='open_clip', "
        "'sentence-transformers' or an OpenCLIPTextEncoder / SentenceTransformerTextEncoder; "
        f"got {type(encoder).__name__}.")
