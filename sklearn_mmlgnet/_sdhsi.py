"""SDHSIClassifier: an HSI-only spectral-spatial CNN trained with self-distillation."""

from __future__ import annotations

from ._base import PatchClassifierBase
from .nn import SDHSINet


class SDHSIClassifier(PatchClassifierBase):
    """SDHSI-Net: an HSI-only spectral-spatial CNN trained with self-distillation.

    A HybridSN-like backbone (3-D convolutions over band x row x col, then a 2-D
    convolution, then a fully connected head) with a student head after every
    convolutional stage, each with a small bottleneck of its own. Loss: ``CE(final)
    + mean_k [a * CE(student_k) + b * KL(softmax(final / T) || softmax(student_k / T)) * T^2]``
    with the final head detached as teacher. Reduce the bands first, e.g. with
    :class:`~sklearn_mmlgnet.preprocessing.SpectralPCA` in a Pipeline.

    Parameters
    ----------
    patch_size : int or None, default=None
        Odd centre-crop size; ``None`` uses the full patches.
    self_distillation : bool, default=True
        ``False`` trains the final head alone (the ablation): no student heads are
        built or run.
    lr : float, default=1e-3
        Learning rate of the optimizer.
    weight_decay, optimizer, lr_schedule, augment, test_time_augment, label_smoothing, class_weight
        As in :class:`~sklearn_mmlgnet.MMLGNetClassifier`, with the defaults ``0.0``,
        ``"adam"``, ``None``, ``True``, ``False``, ``0.0`` and ``None``.
    predict_heads : {"mean", "final"}, default="mean"
        Predict with the mean of the probabilities of the final and the student
        heads, or with the final head alone.
    max_epochs : int, default=50
    batch_size, train_split, callbacks, warm_start, verbose, device, random_state
        As in :class:`~sklearn_mmlgnet.MMLGNetClassifier`.
    precision : {"fp32", "bf16"}, default="fp32"
        The dtype the forward passes of training compute in: ``"bf16"`` runs them
        under bfloat16 autocast (weights, gradients and the optimizer stay float32),
        faster on CPUs with AVX-512 BF16 or AMX and on recent GPUs. Prediction
        computes in float32 either way. See the Performance page.
    **kwargs
        ``module__<name>`` for :class:`~sklearn_mmlgnet.nn.SDHSINet`
        (``conv3d_channels=(8, 16, 32)``, ``spectral_kernels=(7, 5, 3)``,
        ``conv2d_channels=64``, ``hidden=256``, ``dropout=0.4``,
        ``student_stages=None`` (every stage), ``student_hidden=64``) and
        ``criterion__<name>`` for the distillation weights (``distill_temperature=5.0``
        ``T``, ``distill_weight=0.1`` ``b``, ``aux_ce_weight=0.8`` ``a``).

    Attributes
    ----------
    classes_, n_features_in_, patch_size_, net_, history_
        As in :class:`~sklearn_mmlgnet.MMLGNetClassifier`.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_mmlgnet import SDHSIClassifier
    >>> rng = np.random.RandomState(0)
    >>> y = np.repeat([0, 1], 20)
    >>> X = rng.normal(size=(40, 10, 5, 5)).astype("float32") + y[:, None, None, None]
    >>> clf = SDHSIClassifier(max_epochs=15, lr=1e-2, random_state=0).fit(X, y)
    >>> sorted(clf.head_scores(X, y))
    ['final', 'stage_1', 'stage_2', 'stage_3', 'stage_4']
    """

    _module_class = SDHSINet

    def __init__(self, patch_size=None, self_distillation=True, lr=1e-3, weight_decay=0.0,
                 optimizer="adam", lr_schedule=None, augment=True, test_time_augment=False,
                 predict_heads="mean", label_smoothing=0.0, class_weight=None, max_epochs=50,
                 batch_size=64, train_split=None, callbacks=None, warm_start=False, verbose=0,
                 device="cpu", random_state=None, precision="fp32", **kwargs):
        self.patch_size = patch_size
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

    def _module_kwargs(self):
        return dict(n_bands=self.n_features_in_, n_classes=len(self.classes_),
                    aux_heads=bool(self.self_distillation))

    def _student_names(self, n_students):
        # A student is named by the stage it reads (the 2-D stage last).
        return [f"stage_{k}" for k in self.net_.module_.student_stages[:n_students]]
