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


def spatially_disjoint_split(labels, patch_size=11, block_size=32, test_size=0.5, random_state=None):
    """Hold out whole square blocks; training patches never overlap test patches.

    The scene is cut into ``block_size`` x ``block_size`` tiles; tiles are shuffled
    and given to the test set until ``test_size`` of every class's labelled pixels
    is reached where possible. Training pixels closer than ``patch_size`` to a test
    pixel are dropped (they are in neither set), so no test pixel appears inside a
    training patch and no two patches of different sets share a pixel.

    Parameters
    ----------
    labels : array of shape (H, W), int
    patch_size : int, default=11
    block_size : int, default=32
    test_size : float in (0, 1), default=0.5
        Target fraction of labelled pixels in the test set.
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
    """
    labels = _check_labels(labels)
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1); got {test_size!r}.")
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
    return train, test


class SpatialBlockKFold:
    """K-fold over spatial blocks of a scene, with a buffer that stops patch overlap.

    A scikit-learn CV splitter (``cv=`` in ``cross_val_score``/``GridSearchCV``)
    for samples taken at known pixel coordinates: each fold tests on a set of
    whole blocks and trains on the remaining pixels whose patches do not overlap
    any test patch.

    Parameters
    ----------
    rows, cols : array-like of int, shape (n_samples,)
        Pixel coordinates of the samples, in the order of X.
    n_splits : int, default=5
    block_size : int, default=32
    patch_size : int, default=11
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

    def __init__(self, rows, cols, n_splits=5, block_size=32, patch_size=11, random_state=None):
        self.rows = rows
        self.cols = cols
        self.n_splits = n_splits
        self.block_size = block_size
        self.patch_size = patch_size
        self.random_state = random_state

    def get_n_splits(self, X=None, y=None, groups=None):
        return self.n_splits

    def split(self, X=None, y=None, groups=None):
        rows = np.asarray(self.rows, dtype=np.intp)
        cols = np.asarray(self.cols, dtype=np.intp)
        if X is not None and len(X) != len(rows):
            raise ValueError(f"X has {len(X)} samples but rows/cols give {len(rows)} coordinates.")
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
        for k in range(self.n_splits):
            test = np.flatnonzero(sample_fold == k)
            grid = np.zeros(shape, bool)
            grid[rows[test], cols[test]] = True
            near = _buffer(grid, self.patch_size)[rows, cols]
            train = np.flatnonzero((sample_fold != k) & ~near)
            yield train, test
