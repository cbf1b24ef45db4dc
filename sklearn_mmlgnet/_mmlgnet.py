"""MMLGNetClassifier: language-guided classification of HSI + LiDAR patches."""

from __future__ import annotations

import copy
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._base import PatchClassifierBase
from ._class_names import resolve_class_descriptions, resolve_class_names
from ._net import MAX_LOGIT_SCALE
from ._validation import check_band_split
from .augment import dihedral
from ._text_head import (check_same_encoder, check_text_embeddings, check_text_head,
                         scoring_text, warn_close_texts)
from .nn import MMLGNetModule
from .prompt_learning import make_prompt_learner
from .text import (DEFAULT_TEMPLATES, TEXT_ENCODERS, TextEncoder, encode_class_names,
                   make_text_encoder)

LOSSES = ("symmetric", "image_to_text", "cross_entropy")


class MMLGNetClassifier(PatchClassifierBase):
    """MMLGNet: language-guided classification of HSI + LiDAR patches.

    An HSI CNN encoder and a LiDAR CNN encoder embed each patch; a fusion layer and
    a projection map the pair into the embedding space of a frozen text encoder
    (CLIP's by default), where each class is the averaged embedding of handcrafted
    prompts ("a hyperspectral and lidar multimodal data of {class}", ...) and of
    its description sentences, if any (a prompt ensemble). Logits
    are similarities divided by ``temperature``; training minimises the symmetric
    (image->text + multi-positive text->image) contrastive loss; prediction is the
    softmax over the class similarities. Training runs skorch's loop on a
    :class:`skorch.NeuralNetClassifier` kept as ``net_``.

    Parameters
    ----------
    n_lidar_bands : int, default=1
        Number of LiDAR bands, which follow the HSI bands on X's channel axis.
        ``0`` means HSI only.
    patch_size : int or None, default=None
        Odd side of the centre crop taken from X's patches, so one patch array
        serves every searched size. ``None`` uses the full patches.
    temperature : float, default=0.07
        Softmax temperature of the text similarities (its initial value when
        ``learn_temperature=True``, then at least 0.01).
    learn_temperature : bool, default=False
        Train the temperature as CLIP's log logit scale, kept >= 0.01 as in CLIP.
    loss : {"symmetric", "image_to_text", "cross_entropy"}, default="symmetric"
        ``"symmetric"`` is MMLGNet's loss; ``"image_to_text"`` the one-direction
        ablation; ``"cross_entropy"`` drops the language side (a linear head on the
        fused features, the visual-only ablation).
    class_names : dict or sequence of str, optional
        Names used in the prompts when ``y`` does not hold the names itself: a dict
        ``{label: name}`` or one name per sorted label. Two classes whose names give
        the same prompts are refused.
    class_descriptions : dict, optional
        ``{label: sentence or list of sentences}``, e.g. from
        :func:`~sklearn_mmlgnet.descriptions.class_descriptions`. Each sentence is
        encoded as it is and joins the class's templated name prompts: the class
        embedding is the normalised mean of all of them, each weighing the same. A
        label left out keeps its name prompts alone; a label that ``y`` does not
        hold is refused. Used only when a text encoder runs (not with
        ``text_embeddings`` or ``loss="cross_entropy"``).
    prompt_templates : sequence of str, optional
        Templates with one ``{}`` each; default :data:`~sklearn_mmlgnet.text.DEFAULT_TEMPLATES`.
    prompt_context : int, default=0
        Learnt prompts (CoOp): the number of context vectors trained, through the
        frozen text encoder, in front of every class name in place of the
        templates (:mod:`sklearn_mmlgnet.prompt_learning`; they start from the
        words "an aerial image of"). The class's description sentences, if any,
        join its learnt prompt in the mean. ``0`` uses the templates. Used only
        when a text encoder runs, and it must be one of the two built-in backends.
    text_encoder : {"open_clip", "sentence-transformers"} or TextEncoder, default="open_clip"
        ``"open_clip"`` is CLIP ViT-B-32's text tower (weights ``clip_pretrained``);
        ``"sentence-transformers"`` the packaged offline all-MiniLM-L6-v2 (the
        ``offline`` extra); a :class:`~sklearn_mmlgnet.text.TextEncoder` instance for
        anything else, e.g. ``OpenCLIPTextEncoder("ViT-L-14", "openai")``. Used once
        per fit; the embeddings are cached on disk (``$MMLGNET_CACHE``).
    clip_pretrained : str or None, default="openai"
        Weights of ``text_encoder="open_clip"``: an open_clip pretrained tag, a local
        checkpoint file, or ``None`` for random weights (with a warning). Offline and
        not cached, fit fails within seconds with a message saying what to pass.
    text_embeddings : array-like of shape (n_classes, dim) or dict, optional
        Precomputed class embeddings (rows follow the sorted labels, or a dict
        ``{label: vector}``); then no text encoder runs at all.
    self_distillation : bool, default=False
        Add a student head after every encoder stage but the last, taught by the
        final head (SDHSI-Net's self-distillation).
    lr : float, default=5e-4
        Learning rate of the optimizer (its initial value with ``lr_schedule``).
    weight_decay : float, default=1e-2
        Weight decay of the optimizer.
    optimizer : {"adam", "adamw"}, default="adamw"
        :class:`torch.optim.AdamW` (decoupled weight decay) or :class:`torch.optim.Adam`.
    lr_schedule : {"cosine", None}, default="cosine"
        ``"cosine"`` anneals the learning rate from ``lr`` to 0 over ``max_epochs``
        (skorch's LRScheduler, added after ``callbacks``); ``None`` keeps ``lr``.
    augment : bool, default=True
        Train on randomly flipped / 90-degree rotated patches (one of the 8
        symmetries of the square per patch and batch). Training batches only.
    test_time_augment : bool, default=False
        Predict each patch as the mean of the class probabilities of its 8
        symmetries (8 times the cost). Read at prediction: it can be switched on a
        fitted model with ``set_params``.
    predict_heads : {"final", "mean"}, default="final"
        With self-distillation, predict with the final head alone or with the mean
        of the probabilities of the final and the student heads. Read at prediction.
    label_smoothing : float, default=0.1
        Label smoothing in [0, 1) of the cross-entropy terms against the labels.
    class_weight : {"balanced", "balanced_sqrt"}, dict or None, default=None
        Weights of the cross-entropy against the labels: ``"balanced"`` is
        scikit-learn's ``n_samples / (n_classes * n_c)`` from each fit's ``y``,
        ``"balanced_sqrt"`` its square root; a dict maps labels to weights.
    max_epochs : int, default=100
    batch_size : int, default=64
        At least 2 (batch norm).
    train_split : callable or None, default=None
        skorch's validation split, e.g. ``skorch.dataset.ValidSplit(0.1, stratified=True)``
        (with ``EarlyStopping`` in ``callbacks``); ``None`` trains on all of X.
    callbacks : list, optional
        skorch callbacks (EarlyStopping, Checkpoint, ProgressBar, ...).
    warm_start : bool, default=False
        Start the next ``fit`` from the fitted network's weights when they fit the
        network the current parameters build (same classes, bands and shape);
        otherwise train from scratch with a warning. Every other parameter takes
        effect as in a cold fit.
    verbose : int, default=0
        skorch's per-epoch table when >= 1.
    device : str, default="cpu"
        Torch device, e.g. ``"cuda"``.
    random_state : int, RandomState or None, default=None
        Seeds weight initialisation and batch order (repeatable on CPU).
    precision : {"fp32", "bf16"}, default="fp32"
        The dtype the forward passes of training compute in: ``"bf16"`` runs them
        under bfloat16 autocast (weights, gradients and the optimizer stay float32),
        faster on CPUs with AVX-512 BF16 or AMX and on recent GPUs. Prediction
        computes in float32 either way.
    **kwargs
        ``module__<name>`` for :class:`~sklearn_mmlgnet.nn.MMLGNetModule`'s
        architecture (``hsi_channels=(64, 128)``, ``lidar_channels=(32, 64)``,
        ``fusion_dim=256``, ``dropout=0.1``, ``spectral_channels=(256, 128)``,
        ``similarity="cosine"``, ``class_bias=True``) and ``criterion__<name>`` for
        the self-distillation weights of
        :class:`~sklearn_mmlgnet.losses.ContrastiveCriterion` (``distill_temperature=5.0``,
        ``distill_weight=0.1``, ``aux_ce_weight=0.8``), as in skorch. They show in
        ``get_params`` and can be searched by ``GridSearchCV``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The labels as given in ``y``.
    class_names_ : list of str
        Names used in the prompts.
    text_embeddings_ : ndarray of shape (n_classes, dim)
        The class text embeddings the model scores against.
    text_encoder_info_ : dict
        Backend, model and weights that produced ``text_embeddings_``; when a text
        encoder ran, also ``templates`` (the list used; empty with learnt prompts),
        ``descriptions`` (``{class name: sentences}`` of the described classes,
        empty without) and ``prompt_context`` (the number of learnt context vectors).
    prompt_context_ : ndarray of shape (prompt_context, width) or None
        The learnt context vectors (None without prompt learning); new texts are
        written after them in :meth:`text_scores`.
    temperature_ : float
        The softmax temperature of the fitted model (learnt or as given); an
        AttributeError with ``loss="cross_entropy"``, which has none.
    n_features_in_ : int
        Bands of X (HSI + LiDAR).
    n_hsi_bands_ : int
    patch_size_ : int
    net_ : skorch.NeuralNetClassifier
        The trained network (its module in eval mode).
    history_ : skorch.History
        Per-epoch training history of the last fit.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_mmlgnet import MMLGNetClassifier
    >>> rng = np.random.RandomState(0)
    >>> y = np.array(["Woods", "Roads"] * 20)
    >>> X = rng.normal(size=(40, 5, 5, 5)).astype("float32")
    >>> X[y == "Woods", :4] += 1.5
    >>> emb = {"Woods": [1.0, 0.0, 0.0], "Roads": [0.0, 1.0, 0.0]}
    >>> clf = MMLGNetClassifier(text_embeddings=emb, max_epochs=20, lr=1e-2,
    ...                         random_state=0).fit(X, y)
    >>> clf.classes_
    array(['Roads', 'Woods'], dtype='<U5')
    >>> clf.score(X, y) > 0.9
    True

    Scoring against other texts (open vocabulary, see :meth:`text_scores`):

    >>> new = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    >>> clf.zero_shot_predict(X[:2], ["Woods", "Roads", "Water"], text_embeddings=new)
    array(['Woods', 'Roads'], dtype='<U5')
    """

    _parameter_constraints = {
        **PatchClassifierBase._parameter_constraints,
        "n_lidar_bands": [Interval(Integral, 0, None, closed="left")],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "learn_temperature": ["boolean"],
        "loss": [StrOptions(set(LOSSES))],
        "class_names": [dict, "array-like", None],
        "class_descriptions": [dict, None],
        "prompt_templates": ["array-like", None],
        "prompt_context": [Interval(Integral, 0, None, closed="left")],
        "text_encoder": [StrOptions(set(TEXT_ENCODERS)), TextEncoder],
        "clip_pretrained": [str, None],
        "text_embeddings": [dict, "array-like", None],
    }
    _state_attributes = (*PatchClassifierBase._state_attributes, "n_hsi_bands_", "class_names_",
                         "text_embeddings_", "text_encoder_info_", "prompt_context_")
    _module_class = MMLGNetModule
    _during_fit_attributes = ("_prompt_learner",)

    def __init__(self, n_lidar_bands=1, patch_size=None, temperature=0.07,
                 learn_temperature=False, loss="symmetric", class_names=None,
                 class_descriptions=None, prompt_templates=None, prompt_context=0,
                 text_encoder="open_clip",
                 clip_pretrained="openai", text_embeddings=None, self_distillation=False,
                 lr=5e-4, weight_decay=1e-2, optimizer="adamw", lr_schedule="cosine",
                 augment=True, test_time_augment=False, predict_heads="final",
                 label_smoothing=0.1, class_weight=None, max_epochs=100, batch_size=64,
                 train_split=None, callbacks=None, warm_start=False, verbose=0, device="cpu",
                 random_state=None, precision="fp32", **kwargs):
        self.n_lidar_bands = n_lidar_bands
        self.patch_size = patch_size
        self.temperature = temperature
        self.learn_temperature = learn_temperature
        self.loss = loss
        self.class_names = class_names
        self.class_descriptions = class_descriptions
        self.prompt_templates = prompt_templates
        self.prompt_context = prompt_context
        self.text_encoder = text_encoder
        self.clip_pretrained = clip_pretrained
        self.text_embeddings = text_embeddings
        self.self_distillation = self_distillation
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.lr_schedule = lr_schedule
        self.augment = augment
        self.test_time_augment = test_time_augment
        self.predict_heads = predict_heads
        self.label_smoothing = label_smoothing
        self.class_weight = class_weight
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.train_split = train_split
        self.callbacks = callbacks
        self.warm_start = warm_start
        self.verbose = verbose
        self.device = device
        self.random_state = random_state
        self.precision = precision
        self._store_routed(kwargs)

    def _set_fitted_attributes(self, X):
        if self.learn_temperature and self.temperature < np.exp(-MAX_LOGIT_SCALE):
            raise ValueError(
                f"temperature={self.temperature!r} is below 0.01, CLIP's lower bound on a learnt "
                "temperature; give temperature >= 0.01 with learn_temperature=True (a fixed "
                "temperature may be lower).")
        self.n_hsi_bands_ = check_band_split(X.shape[1], self.n_lidar_bands)[0]
        # Names matter only when a text encoder writes them into prompts.
        if self.loss != "cross_entropy" and self.text_embeddings is None:
            self.class_names_ = resolve_class_names(self.classes_, self.class_names)
        elif self.class_names is not None:
            self.class_names_ = resolve_class_names(self.classes_, self.class_names)
        else:
            self.class_names_ = [str(c) for c in self.classes_.tolist()]
        # Checked in every case, so a wrong label fails the same whether used or not.
        descriptions = resolve_class_descriptions(self.classes_, self.class_descriptions)
        self.prompt_context_ = None
        self.text_embeddings_, self.text_encoder_info_ = self._encode_classes(descriptions)
        if self.loss != "cross_entropy":
            warn_close_texts(self.text_embeddings_, self.class_names_)

    def _encode_classes(self, descriptions):
        """Class embeddings and where they came from: given, encoded, or (no language) none.

        With ``prompt_context`` the embeddings are those of the untrained prompts, and
        the prompt learner waits in ``_prompt_learner`` for :meth:`_prepare_training`.
        """
        n_classes = len(self.classes_)
        if self.loss == "cross_entropy":  # only the class count is used
            return np.eye(n_classes, dtype=np.float32), {"backend": None}
        if self.text_embeddings is not None:
            return check_text_embeddings(self.text_embeddings, self.classes_), {
                "backend": "precomputed"}
        encoder = make_text_encoder(self.text_encoder, clip_pretrained=self.clip_pretrained)
        used = {name: d for name, d in zip(self.class_names_, descriptions) if d}
        if self.prompt_context:
            self._prompt_learner = make_prompt_learner(
                encoder, self.class_names_, self.prompt_context, descriptions=descriptions)
            with torch.no_grad():
                emb = self._prompt_learner().numpy()
            return emb, dict(encoder.identity, templates=[], descriptions=used,
                             prompt_context=int(self.prompt_context))
        templates = DEFAULT_TEMPLATES if self.prompt_templates is None else self.prompt_templates
        emb = encode_class_names(self.class_names_, templates, encoder=encoder,
                                 descriptions=descriptions)
        return emb, dict(encoder.identity, templates=list(templates), descriptions=used,
                         prompt_context=0)

    def _prepare_training(self):
        # Learnt prompts train with the network: their module computes the class
        # embeddings at every forward, and the optimizer is rebuilt to include it.
        learner = getattr(self, "_prompt_learner", None)
        if learner is not None:
            self.net_.module_.text_source = learner.to(self.net_.device)
            self.net_.initialize_optimizer()

    def _finish_training(self):
        # The trained prompts' embeddings become the stored ones: prediction, dense
        # maps and saved models need no text encoder.
        module = self.net_.module_
        if module.text_source is None:
            return
        learner = module.text_source
        with torch.no_grad():
            text = learner().float()
        module.store_text(text)
        self.text_embeddings_ = text.cpu().numpy()
        self.prompt_context_ = learner.context.detach().cpu().numpy()

    def _module_kwargs(self):
        return dict(n_hsi_bands=self.n_hsi_bands_,
                    n_lidar_bands=self.n_features_in_ - self.n_hsi_bands_,
                    text_embeddings=torch.as_tensor(self.text_embeddings_),
                    temperature=float(self.temperature),
                    learn_temperature=bool(self.learn_temperature),
                    head="linear" if self.loss == "cross_entropy" else "text",
                    aux_heads=bool(self.self_distillation))

    def _loss(self):
        return self.loss

    def _state_set_by_parameters(self, keys):
        # The class text vectors and a fixed temperature come from the parameters of this
        # fit; a warm start loads only what training learnt.
        return {k for k in keys if k.rsplit(".", 1)[-1] == "text"
                or (k.rsplit(".", 1)[-1] == "logit_scale" and not self.learn_temperature)}

    @property
    def temperature_(self):
        """The softmax temperature of the fitted model (learnt or as given).

        Raises AttributeError for a model fitted with ``loss="cross_entropy"``,
        whose linear head has no temperature.
        """
        check_is_fitted(self)
        if self.loss == "cross_entropy":
            raise AttributeError(
                "temperature_ is not defined for a model fitted with loss='cross_entropy': its "
                "linear head scores classes without text similarities, so no temperature applies.")
        return float(torch.exp(-self.net_.module_.logit_scale.detach().double()))

    # ------------------------------------------------------------ open vocabulary
    def text_scores(self, X, texts, *, class_descriptions=None, text_embeddings=None,
                    return_logits=False):
        """Scores of each sample against arbitrary texts, with the fitted network.

        Each text is treated as a class name and encoded as the fit encoded its
        classes: the same text encoder and the same templates (recorded in
        ``text_encoder_info_``) or learnt context vectors (``prompt_context_``),
        with ``class_descriptions`` as extra sentences.
        The samples are scored against those embeddings by the fitted projection
        and temperature. The texts may name classes never seen in training (zero
        shot, see :meth:`zero_shot_predict`); the fitted model is not changed, so
        this may run in several threads next to ``predict``.

        The learnt per-class bias of the fitted head (``module__class_bias``)
        belongs to the fitted classes and is left out, so scores of the fitted
        class names may differ slightly from :meth:`predict_proba`.
        ``predict_heads`` and ``test_time_augment`` apply as in ``predict_proba``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_bands, P, P)
        texts : sequence of str
            The candidate class names (at least one).
        class_descriptions : dict, optional
            ``{text: sentence or list of sentences}`` added to those texts' prompts.
        text_embeddings : array-like of shape (len(texts), dim), optional
            The texts' embeddings, given instead of encoded: required for a model
            fitted with precomputed ``text_embeddings`` (no text encoder is known),
            and used as given otherwise.
        return_logits : bool, default=False
            Return the final head's logits (cosine similarity / temperature;
            averaged over the 8 symmetries with ``test_time_augment``) instead of
            probabilities.

        Returns
        -------
        scores : ndarray of shape (n_samples, len(texts))
            Softmax over the given texts (rows sum to 1), or the logits.

        Raises
        ------
        AttributeError
            For a model fitted with ``loss="cross_entropy"``: its linear head has no
            text space (as it has no ``temperature_``).

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_mmlgnet import MMLGNetClassifier
        >>> rng = np.random.RandomState(0)
        >>> y = np.array(["Woods", "Roads"] * 10)
        >>> X = rng.normal(size=(20, 3, 3, 3)).astype("float32")
        >>> clf = MMLGNetClassifier(text_embeddings={"Woods": [1, 0], "Roads": [0, 1]},
        ...                         max_epochs=1, module__fusion_dim=8).fit(X, y)
        >>> p = clf.text_scores(X[:4], ["Woods", "Water", "Roads"],
        ...                     text_embeddings=[[1, 0], [0.6, 0.8], [0, 1]])
        >>> p.shape, bool(np.allclose(p.sum(axis=1), 1))
        ((4, 3), True)
        """
        scorer = self.with_texts(texts, class_descriptions=class_descriptions,
                                 text_embeddings=text_embeddings)
        if not return_logits:
            return scorer.predict_proba(X)
        X = self._check_predict_X(X)
        network = scorer.net_.module_
        out = []
        with torch.inference_mode():
            for xb in self._batches(X):
                out.append((sum(network(dihedral(xb, k), heads="final").double()
                                for k in self._symmetries()) / len(self._symmetries()))
                           .cpu().numpy())
        return np.concatenate(out)

    def zero_shot_predict(self, X, texts, *, class_descriptions=None, text_embeddings=None):
        """The best-scoring text of each sample: classification among any class names.

        The texts may include classes never seen in training; each sample gets the
        text of highest probability in :meth:`text_scores` (same arguments), as
        ``predict`` takes the class of highest ``predict_proba``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_bands, P, P)
        texts : sequence of str
        class_descriptions : dict, optional
        text_embeddings : array-like of shape (len(texts), dim), optional

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Entries of ``texts``.
        """
        texts = texts if isinstance(texts, str) else list(texts)  # a generator is read once
        scores = self.text_scores(X, texts, class_descriptions=class_descriptions,
                                  text_embeddings=text_embeddings)
        return np.asarray(texts)[np.argmax(scores, axis=1)]

    def with_texts(self, texts, *, class_descriptions=None, text_embeddings=None):
        """A fitted copy of this model that classifies among ``texts``.

        The texts are encoded as in :meth:`text_scores` and become the copy's
        classes: its ``classes_`` are the texts, and its ``predict``,
        ``predict_proba``, :func:`~sklearn_mmlgnet.prediction.predict_scene` and the
        dense path score them with the fitted network (shared, not copied; its
        per-class bias left out, as in :meth:`text_scores`). This model is not
        changed. Use it to map classes never seen in training over a whole scene.

        Parameters
        ----------
        texts : sequence of str
        class_descriptions : dict, optional
            ``{text: sentence or list of sentences}``.
        text_embeddings : array-like of shape (len(texts), dim), optional
            As in :meth:`text_scores`.

        Returns
        -------
        MMLGNetClassifier
            Fitted, with ``classes_ = np.asarray(texts)``; its predictions equal
            the argmax of :meth:`text_scores`. It can be saved and loaded.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_mmlgnet import MMLGNetClassifier
        >>> rng = np.random.RandomState(0)
        >>> y = np.array(["Woods", "Roads"] * 10)
        >>> X = rng.normal(size=(20, 3, 3, 3)).astype("float32")
        >>> clf = MMLGNetClassifier(text_embeddings={"Woods": [1, 0], "Roads": [0, 1]},
        ...                         max_epochs=1, module__fusion_dim=8).fit(X, y)
        >>> water = clf.with_texts(["Woods", "Water"], text_embeddings=[[1, 0], [0.6, 0.8]])
        >>> water.classes_, water.predict_proba(X[:2]).shape
        (array(['Woods', 'Water'], dtype='<U5'), (2, 2))
        """
        check_is_fitted(self)
        check_text_head(self)
        texts = texts if isinstance(texts, str) else list(texts)  # a str is refused below
        text = self._text_matrix(texts, class_descriptions, text_embeddings)
        new = copy.copy(self)
        new.net_ = copy.copy(self.net_)
        new.net_.module_ = scoring_text(self.net_.module_,
                                         torch.as_tensor(text, device=self.net_.device))
        new.module__class_bias = False  # the heads score the texts without the fitted bias
        new.classes_ = np.asarray(texts)
        new.class_names_ = list(texts)
        new.text_embeddings_ = np.asarray(text, dtype=np.float32)
        return new

    def _text_matrix(self, texts, class_descriptions, text_embeddings):
        """The (len(texts), dim) embeddings of ``texts``, given or encoded as at fit."""
        given, texts = texts, [] if isinstance(texts, str) else list(texts)
        if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise ValueError(f"texts must be a non-empty sequence of non-empty str; got {given!r}.")
        dim = self.net_.module_.head.text.shape[1]
        if text_embeddings is not None:
            if class_descriptions is not None:
                raise ValueError("class_descriptions cannot be used with text_embeddings=: the "
                                 "given vectors are used as they are; pass one or the other.")
            emb = np.asarray(text_embeddings, dtype=np.float32)
            if emb.shape != (len(texts), dim):
                raise ValueError(f"text_embeddings must have shape (len(texts)={len(texts)}, "
                                 f"dim={dim}), the fitted text space; got {emb.shape}.")
            if not np.isfinite(emb).all() or (np.linalg.norm(emb, axis=1) == 0).any():
                raise ValueError("text_embeddings must be finite with no all-zero row.")
            return emb
        info = self.text_encoder_info_
        if info.get("backend") == "precomputed":
            raise ValueError(
                "this model was fitted with precomputed text_embeddings, so no text encoder "
                f"can embed new texts; pass text_embeddings= of shape ({len(texts)}, {dim}) "
                "from the encoder that made the fitted ones.")
        encoder = make_text_encoder(self.text_encoder, clip_pretrained=self.clip_pretrained)
        check_same_encoder(encoder.identity, info)
        descriptions = resolve_class_descriptions(np.asarray(texts, dtype=object),
                                                  class_descriptions, owner="texts")
        if self.prompt_context_ is not None:  # the learnt context, then each text
            learner = make_prompt_learner(encoder, texts, context=self.prompt_context_,
                                          descriptions=descriptions)
            with torch.no_grad():
                emb = learner().numpy()
        else:
            emb = encode_class_names(texts, info["templates"], encoder=encoder,
                                     descriptions=descriptions)
        if emb.shape[1] != dim:
            raise ValueError(f"the text encoder gives {emb.shape[1]}-d embeddings but the model "
                             f"was fitted on {dim}-d ones.")
        return emb
