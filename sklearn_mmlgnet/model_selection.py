"""Train/test splits of labelled scenes: per-class sampling and spatially disjoint blocks.

Label maps are (H, W) integer arrays with 0 for unlabelled pixels. Splits return
boolean masks of the map's shape (``train_mask``, ``test_mask``); turn them into
coordinates with ``np.nonzero``.

A random per-class split of a scene lets the P x P patches of training and test
pixels overlap, so test pixels leak into training. :func:`spatially_disjoint_split`
and :class:`SpatialBlockKFold` hold out whole blocks and drop the training pixels
whose patch would overlap a test pixel's patch.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from scipy.ndimage import maximum_filter
from sklearn.utils import check_random_state

#: Trento's standard disjoint training counts per class (label 1..6), 819 in all.
TRENTO_TRAIN_COUNTS = {1: 129, 2: 125, 3: 105, 4: 154, 5: 184, 6: 122}


def _check_labels(labels):
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iub":
        raise ValueError(
            f"labels must be an integer label map of shape (H, W) with 0 = unlabelled; got "
            f"dtype {labels.dtype} and shape {labels.shape}.")
    return labels


def sample_per_class(labels, n_per_class=None, fraction=None, random_state=None):
    """Draw training pixels per class; all other labelled pixels are test pixels.

    Parameters
    ----------
    labels : array of shape (H, W), int
        Ground truth with 0 = unlabelled.
    n_per_class : int or dict, optional
        Training pixels per class (a dict ``{label: n}`` per class). A class with
        fewer pixels gives half of them to training.
    fraction : float in (0, 1), optional
        Fraction of every class drawn for training (at least one pixel).
    random_state : int, RandomState or None

    Returns
    -------
    train_mask, test_mask : ndarray of shape (H, W), bool

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.repeat([[1, 1, 2, 2, 0]], 4, axis=0)
    >>> tr, te = sample_per_class(labels, n_per_class=3, random_state=0)
    >>> int(tr.sum()), int(te.sum())
    (6, 10)
    """
    labels = _check_labels(labels)
    if (n_per_class is None) == (fraction is None):
        raise ValueError("give exactly one of n_per_class and fraction.")
    if fraction is not None and not (isinstance(fraction, numbers.Real) and 0 < fraction < 1):
        raise ValueError(f"fraction must be a float in (0, 1); got {fraction!r}.")
    rng = check_random_state(random_state)
    train = np.zeros(labels.shape, bool)
    flat = labels.ravel()
    for c in np.unique(flat[flat > 0]):
        idx = np.flatnonzero(flat == c)
        if fraction is not None:
            n = max(1, int(round(fraction * len(idx))))
        else:
            n = n_per_class.get(int(c)) if isinstance(n_per_class, dict) else n_per_class
            if n is None:
                raise ValueError(f"n_per_class has no count for class {int(c)}.")
            if len(idx) <= n:
                n = len(idx) // 2
        train.ravel()[rng.choice(idx, n, replace=False)] = True
    test = (labels > 0) & ~train
    return train, test


def trento_standard_split(labels, random_state=None):
    """Trento's standard split: 129/125/105/154/184/122 training pixels, the rest test.

    The public Trento files ship one ground-truth map; papers (MFT, TMCFN, ...)
    draw these counts per class and test on the other 29,395 labelled pixels.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.repeat(np.arange(1, 7), 300).reshape(30, 60)
    >>> tr, te = trento_standard_split(labels, random_state=0)
    >>> int(tr.sum())
    819
    """
    return sample_per_class(labels, n_per_class=TRENTO_TRAIN_COUNTS, random_state=random_state)


def _buffer(test_mask, patch_size):
    """Pixels whose P x P patch overlaps the patch of some test pixel."""
    # Patches of pixels a and b overlap iff |dr| < P and |dc| < P.
    return maximum_filter(test_mask.astype(np.uint8), size=2 * patch_size - 1, mode="constant") > 0


def _block_ids(shape, block_size):
    r, c = np.indices(shape)
    n_cols = -(-shape[1] // block_size)
    return (r // block_size) * n_cols + c // block_size


def spatially_disjoint_split(labels, patch_size=11, block_size=32, test_size=0.5, min_train=1,
                             random_state=None):
    """Hold out whole square blocks; training patches never overlap test patches.

    The scene is cut into ``block_size`` x ``block_size`` tiles; tiles are shuffled
    and given to the test set until ``test_size`` of every class's labelled pixels
    is reached where possible. Training pixels closer than ``patch_size`` to a test
    pixel are dropped (they are in neither set), so no test pixel appears inside a
    training patch and no two patches of different sets share a pixel.

    A rare class can sit in a single block, or only near test blocks, and so lose
    every training pixel. Test blocks are then given back to training (those that
    free the most pixels of that class first) until every class has ``min_train``
    training pixels; a class left with no test pixel is reported by a warning.

    Parameters
    ----------
    labels : array of shape (H, W), int
    patch_size : int, default=11
    block_size : int, default=32
    test_size : float in (0, 1), default=0.5
        Target fraction of labelled pixels in the test set.
    min_train : int, default=1
        Training pixels every class must get; 0 turns the guarantee off. A
        ValueError names the class when it has fewer labelled pixels than this.
    random_state : int, RandomState or None

    Returns
    -------
    train_mask, test_mask : ndarray of shape (H, W), bool

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.ones((64, 64), int)
    >>> tr, te = spatially_disjoint_split(labels, patch_size=5, block_size=16, random_state=0)
    >>> bool((tr & te).any())
    False

    A class found in one block only keeps its pixels for training:

    >>> labels[2:6, 2:6] = 2
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")  # "class 2 has no test pixel"
    ...     tr, te = spatially_disjoint_split(labels, patch_size=5, block_size=16, random_state=0)
    >>> int((tr & (labels == 2)).sum())
    16
    """
    labels = _check_labels(labels)
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1); got {test_size!r}.")
    min_train = _check_min_train(min_train)
    rng = check_random_state(random_state)
    blocks = _block_ids(labels.shape, block_size)
    labelled = labels > 0
    classes = np.unique(labels[labelled])
    block_list = np.unique(blocks[labelled])
    rng.shuffle(block_list)
    # per-block class counts, to fill each class's test quota greedily
    counts = np.zeros((blocks.max() + 1, len(classes)), int)
    for k, c in enumerate(classes):
        np.add.at(counts[:, k], blocks[labels == c], 1)
    target = test_size * counts.sum(0)
    taken = np.zeros(len(classes))
    test_blocks = []
    for b in block_list:
        need = taken < target
        if need[counts[b] > 0].any():
            test_blocks.append(b)
            taken += counts[b]
    test = labelled & np.isin(blocks, test_blocks)
    train = labelled & ~test & ~_buffer(test, patch_size)
    if min_train:
        train, test = _release_blocks(labels, blocks, classes, counts, train, test, patch_size,
                                      min_train)
    return train, test


def _check_min_train(min_train):
    if not isinstance(min_train, numbers.Integral) or isinstance(min_train, bool) or min_train < 0:
        raise ValueError(f"min_train must be an int >= 0; got {min_train!r}.")
    return int(min_train)


def _release_blocks(labels, blocks, classes, counts, train, test, patch_size, min_train):
    """Give test blocks back to training until every class has ``min_train`` pixels there."""
    labelled = labels > 0
    for k, c in enumerate(classes):
        in_c = labels == c
        if counts[:, k].sum() < min_train:
            raise ValueError(
                f"class {c} has {counts[:, k].sum()} labelled pixels, fewer than min_train={min_train} "
                "training pixels per class; lower min_train or drop the class.")
        while (train & in_c).sum() < min_train:
            # Test blocks holding the class's missing pixels or buffering them off.
            reach = maximum_filter((in_c & ~train).astype(np.uint8), size=2 * patch_size - 1,
                                   mode="constant") > 0
            candidates = np.unique(blocks[test & reach])
            best, best_gain = None, -1
            for b in candidates:
                t = test & (blocks != b)
                gain = (in_c & labelled & ~t & ~_buffer(t, patch_size)).sum()
                if gain > best_gain:
                    best, best_gain = b, gain
            test = test & (blocks != best)  # candidates is never empty: see the count check above
            if not test.any():
                raise ValueError(
                    f"class {c} cannot get min_train={min_train} training pixels while any test "
                    f"block remains (patch_size={patch_size} buffers the rest off); use a smaller "
                    "patch_size or block_size, a larger scene, or a smaller min_train.")
            train = labelled & ~test & ~_buffer(test, patch_size)
    lost = [c for c in classes if not (test & (labels == c)).any()]
    if lost:
        warnings.warn(
            f"spatially_disjoint_split: class(es) {[int(c) for c in lost]} have no test pixel: their "
            f"pixels were kept for training (min_train={min_train}); they are not evaluated.",
            UserWarning, stacklevel=3)
    return train, test


class SpatialBlockKFold:
    """K-fold over spatial blocks of a scene, with a buffer that stops patch overlap.

    A scikit-learn CV splitter (``cv=`` in ``cross_val_score``/``GridSearchCV``)
    for samples taken at known pixel coordinates: each fold tests on a set of
    whole blocks and trains on the remaining pixels whose patches do not overlap
    any test patch.

    When ``y`` is passed to :meth:`split` (``cross_val_score`` and ``GridSearchCV``
    do), every fold trains on at least ``min_train`` samples of every class: blocks
    of a class that a fold would hold out entirely are moved to another fold. A
    class that cannot be spread so (all of it in one block, say) raises a
    ValueError naming it.

    Parameters
    ----------
    rows, cols : array-like of int, shape (n_samples,)
        Pixel coordinates of the samples, in the order of X.
    n_splits : int, default=5
    block_size : int, default=32
    patch_size : int, default=11
    min_train : int, default=1
        Training samples every class must have in every fold (checked when ``y``
        is given); 0 turns the guarantee off.
    random_state : int, RandomState or None
        Shuffles the blocks before they are dealt to folds.

    Examples
    --------
    >>> import numpy as np
    >>> r, c = np.indices((40, 40)); r, c = r.ravel(), c.ravel()
    >>> cv = SpatialBlockKFold(r, c, n_splits=4, block_size=10, patch_size=3, random_state=0)
    >>> [len(te) for tr, te in cv.split(r)]
    [400, 400, 400, 400]
    """

    def __init__(self, rows, cols, n_splits=5, block_size=32, patch_size=11, min_train=1,
                 random_state=None):
        self.rows = rows
        self.cols = cols
        self.n_splits = n_splits
        self.block_size = block_size
        self.patch_size = patch_size
        self.min_train = min_train
        self.random_state = random_state

    def get_n_splits(self, X=None, y=None, groups=None):
        return self.n_splits

    def _check_lengths(self, X, y):
        n = len(self.rows)
        for name, a in (("X", X), ("y", y)):
            if a is not None and len(a) != n:
                raise ValueError(f"{name} has {len(a)} samples but rows/cols give {n} coordinates.")

    def split(self, X=None, y=None, groups=None):
        rows = np.asarray(self.rows, dtype=np.intp)
        cols = np.asarray(self.cols, dtype=np.intp)
        self._check_lengths(X, y)
        min_train = _check_min_train(self.min_train)
        shape = (rows.max() + 1, cols.max() + 1)
        blocks = _block_ids(shape, self.block_size)[rows, cols]
        uniq = np.unique(blocks)
        if len(uniq) < self.n_splits:
            raise ValueError(
                f"n_splits={self.n_splits} is more than the {len(uniq)} spatial blocks holding "
                "samples; use a smaller block_size or fewer splits.")
        check_random_state(self.random_state).shuffle(uniq)
        # Deal blocks to folds, largest first, to balance fold sizes.
        sizes = dict(zip(*np.unique(blocks, return_counts=True)))
        fold_of, load = {}, np.zeros(self.n_splits)
        for b in sorted(uniq, key=lambda b: -sizes[b]):
            k = int(np.argmin(load))
            fold_of[b] = k
            load[k] += sizes[b]
        sample_fold = np.array([fold_of[b] for b in blocks])
        if y is not None and min_train:
            sample_fold = self._spread_classes(np.asarray(y), blocks, sample_fold, shape, min_train)
        for k in range(self.n_splits):
            test = np.flatnonzero(sample_fold == k)
            yield np.flatnonzero(self._train_mask(sample_fold, k, shape)), test

    def _train_mask(self, sample_fold, k, shape):
        rows, cols = np.asarray(self.rows, np.intp), np.asarray(self.cols, np.intp)
        test = sample_fold == k
        grid = np.zeros(shape, bool)
        grid[rows[test], cols[test]] = True
        return ~test & ~_buffer(grid, self.patch_size)[rows, cols]

    def _spread_classes(self, y, blocks, sample_fold, shape, min_train):
        """Move blocks between folds until every fold trains on ``min_train`` of each class."""
        classes, y_idx = np.unique(y, return_inverse=True)

        def deficit(fold, k):
            got = np.bincount(y_idx[self._train_mask(fold, k, shape)], minlength=len(classes))
            return np.maximum(min_train - got, 0)

        deficits = {k: deficit(sample_fold, k) for k in range(self.n_splits)}
        for _ in range(len(np.unique(blocks)) * len(classes) + 1):
            short = [(k, c) for k in range(self.n_splits) for c in np.flatnonzero(deficits[k])]
            if not short:
                return sample_fold
            k, c = short[0]
            # Candidate moves: a block of fold k holding class c, to any other fold.
            # The move that lowers the total shortfall most (folds other than k and j keep
            # their training set, so only those two change).
            cand = np.unique(blocks[(sample_fold == k) & (y_idx == c)])
            best, best_change = None, 0
            if len(np.unique(blocks[sample_fold == k])) > 1:  # a fold keeps at least one block
                for b in cand:
                    for j in range(self.n_splits):
                        if j == k:
                            continue
                        fold = np.where(blocks == b, j, sample_fold)
                        dk, dj = deficit(fold, k), deficit(fold, j)
                        change = dk.sum() + dj.sum() - deficits[k].sum() - deficits[j].sum()
                        if change < best_change:
                            best, best_change = (fold, dk, dj, j), change
            if best is None:
                n_c = int((y_idx == c).sum())
                n_blocks = len(np.unique(blocks[y_idx == c]))
                raise ValueError(
                    f"class {classes[c].item()!r} cannot give every fold min_train={self.min_train} "
                    f"training samples: its {n_c} samples lie in {n_blocks} block(s) of "
                    f"{self.block_size} px for n_splits={self.n_splits}; use a smaller block_size, "
                    "fewer splits, or min_train=0.")
            sample_fold, deficits[k], dj, j = best
            deficits[j] = dj
        return sample_fold  # pragma: no cover - the loop bound is never reached
