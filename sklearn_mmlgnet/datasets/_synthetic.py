"""A synthetic co-registered HSI + LiDAR scene: the package's embedded default data.

The scene is built to be a fair stand-in for Trento, not a toy:

* contiguous parcels (a Voronoi tessellation) of orchards, woods, vineyards and
  bare ground, an unlabelled meadow cover, roads along straight lines and blocks of
  buildings on the meadow;
* smooth reflectance spectra (400-1000 nm) from physically shaped prototypes
  (chlorophyll absorption, red edge, NIR plateau, soil slope, asphalt), with a
  smooth per-parcel spectral variation, per-pixel variation and a smooth
  illumination field;
* mixed pixels at parcel borders (abundances blurred across edges), sensor noise
  that grows at the ends of the spectrum;
* LiDAR heights by class with within-class variation and canopy texture.

The classes are built so that each modality alone falls short: Apple trees and
Woods share one vegetation spectrum (and Roads and Buildings one asphalt/roof
spectrum), so only the height separates them; Apple trees and Vineyard have the
same height (as have Ground and Roads), so only the spectrum separates them.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.ndimage import gaussian_filter
from sklearn.utils import check_random_state

from ..model_selection import sample_per_class, spatially_disjoint_split
from ._base import make_scene_bunch

SYNTHETIC_CLASSES = {1: "Apple trees", 2: "Buildings", 3: "Ground", 4: "Woods", 5: "Vineyard",
                     6: "Roads"}
_MEADOW = 0  # unlabelled cover

# class -> (spectral prototype, mean height m, height std m)
_CLASS_MODEL = {
    1: ("broadleaf", 4.0, 1.2),    # Apple trees: same spectrum as Woods, low
    2: ("asphalt", 6.0, 2.0),       # Buildings: roofs like the roads, tall
    3: ("soil", 0.15, 0.15),       # Ground: same height as Roads, other spectrum
    4: ("broadleaf", 11.0, 3.5),   # Woods: same spectrum as Apple trees, tall
    5: ("vine", 4.0, 1.2),         # Vineyard: same height as Apple trees, other spectrum
    6: ("asphalt", 0.15, 0.15),    # Roads: same spectrum as Buildings, flat
    _MEADOW: ("grass", 0.3, 0.2),
}


def _prototypes(wl):
    """Smooth reflectance prototypes on wavelengths ``wl`` (nm)."""
    def sig(x, c, w):
        return 1.0 / (1.0 + np.exp(-(x - c) / w))

    def bump(x, c, w):
        return np.exp(-0.5 * ((x - c) / w) ** 2)

    def vegetation(nir, green, edge):
        return 0.03 + green * bump(wl, 550, 35) - 0.02 * bump(wl, 670, 25) + nir * sig(wl, edge, 12)

    soil = 0.08 + 0.25 * sig(wl, 600, 150) + 0.02 * bump(wl, 900, 60)
    return {
        "broadleaf": vegetation(0.42, 0.05, 715),
        "vine": 0.55 * vegetation(0.30, 0.07, 728) + 0.45 * soil,
        "grass": vegetation(0.33, 0.08, 705),
        "soil": soil,
        "asphalt": 0.06 + 0.05 * (wl - wl.min()) / np.ptp(wl) + 0.01 * bump(wl, 480, 60),
    }


def _smooth_field(shape, rng, scale, amplitude):
    field = gaussian_filter(rng.normal(size=shape), sigma=scale, mode="reflect")
    field /= field.std() + 1e-12
    return 1.0 + amplitude * field


def _layout(n_rows, n_cols, rng):
    """Class map of parcels, roads and buildings (0 = meadow)."""
    n_parcels = max(6, int(n_rows * n_cols / 1400))
    seeds = np.column_stack([rng.uniform(0, n_rows, n_parcels), rng.uniform(0, n_cols, n_parcels)])
    rr, cc = np.indices((n_rows, n_cols))
    # Voronoi parcels via nearest seed, in row chunks to bound memory.
    parcel = np.empty((n_rows, n_cols), np.int64)
    for r0 in range(0, n_rows, 64):
        d = ((rr[r0:r0 + 64, :, None] - seeds[:, 0]) ** 2
             + (0.6 * (cc[r0:r0 + 64, :, None] - seeds[:, 1])) ** 2)  # elongated, like fields
        parcel[r0:r0 + 64] = d.argmin(-1)
    # Parcel covers: the first six guarantee every class appears.
    covers = np.array([1, 4, 5, 3, 1, 4, 5, 3, _MEADOW, -1])
    if n_parcels < len(covers):  # small scenes: one parcel of each cover first
        covers = np.array([1, 4, 5, 3, -1, _MEADOW, 1, 4, 5])
    kinds = rng.choice([1, 4, 5, 3, _MEADOW, -1], size=n_parcels, p=[.2, .22, .24, .08, .12, .14])
    kinds[: len(covers)] = covers[: min(len(covers), n_parcels)]
    classes = kinds[parcel]
    urban = classes == -1
    classes[urban] = _MEADOW
    # Buildings: rectangles on urban parcels.
    for _ in range(int(urban.sum() / 90) + 2):
        ys, xs = np.nonzero(urban)
        if not len(ys):
            break
        k = rng.randint(len(ys))
        h, w = rng.randint(4, 11), rng.randint(5, 16)
        block = np.zeros_like(urban)
        block[ys[k]: ys[k] + h, xs[k]: xs[k] + w] = True
        classes[block & urban] = 2
    # Roads: straight bands across the scene.
    width = max(4, n_rows // 28)
    for r in rng.choice(np.arange(width, n_rows - width), size=max(1, n_rows // 80), replace=False):
        classes[r: r + width] = 6
    for c in rng.choice(np.arange(width, n_cols - width), size=max(1, n_cols // 120), replace=False):
        classes[:, c: c + width] = 6
    return classes, parcel


def make_hsi_lidar_scene(n_rows=166, n_cols=600, n_bands=63, n_lidar_bands=1,
                         n_train_per_class=None, patch_size=11, noise=0.008, random_state=0):
    """Generate a Trento-like HSI + LiDAR scene with a spatially disjoint split.

    Parameters
    ----------
    n_rows, n_cols : int, default=166, 600
        Scene size (Trento's by default).
    n_bands : int, default=63
        HSI bands between 400 and 1000 nm.
    n_lidar_bands : int, default=1
        1: the elevation (normalised DSM, m). 2: also an intensity-like raster.
    n_train_per_class : int or dict, optional
        Training pixels per class, drawn from the training side of the split.
        Default: Trento's counts (129/125/105/154/184/122) scaled to the scene's area.
    patch_size : int, default=11
        Width of the buffer between the training and test sides of the split, so
        training patches never overlap test patches.
    noise : float, default=0.008
        Standard deviation of the sensor noise in reflectance units (mid-spectrum).
    random_state : int, RandomState or None, default=0

    Returns
    -------
    scene : Bunch
        ``hsi`` (H, W, B) float32 reflectance, ``lidar`` (H, W, L) float32,
        ``labels`` (H, W) int (0 = unlabelled), ``class_names`` {label: name},
        ``train_mask`` and ``test_mask`` (H, W) bool, ``wavelengths`` (B,) nm.

    Examples
    --------
    >>> from sklearn_mmlgnet.datasets import make_hsi_lidar_scene
    >>> scene = make_hsi_lidar_scene(n_rows=100, n_cols=200, n_bands=20, patch_size=5,
    ...                              random_state=0)
    >>> scene.hsi.shape, scene.lidar.shape, scene.labels.shape
    ((100, 200, 20), (100, 200, 1), (100, 200))
    >>> bool((scene.train_mask & scene.test_mask).any())
    False
    """
    if n_rows < 24 or n_cols < 24:
        raise ValueError(f"the scene must be at least 24 x 24 pixels; got {n_rows} x {n_cols}.")
    if n_bands < 3:
        raise ValueError(f"n_bands must be >= 3; got {n_bands}.")
    if n_lidar_bands not in (0, 1, 2):
        raise ValueError(f"n_lidar_bands must be 0, 1 or 2; got {n_lidar_bands}.")
    rng = check_random_state(random_state)
    shape = (n_rows, n_cols)
    classes, parcel = _layout(n_rows, n_cols, rng)
    wl = np.linspace(400, 1000, n_bands)
    protos = _prototypes(wl)
    n_parcels = parcel.max() + 1

    # Abundances of each cover, blurred at borders: mixed pixels.
    covers = sorted(_CLASS_MODEL)
    abund = np.stack([gaussian_filter((classes == c).astype(np.float64), 0.8) for c in covers])
    abund /= abund.sum(0, keepdims=True)

    # Per-parcel smooth spectral variation: low-order cosine modulations.
    t = (wl - wl[0]) / np.ptp(wl)
    basis = np.stack([np.cos(np.pi * k * t) for k in range(1, 4)])          # (3, B)
    parcel_mod = 1.0 + rng.normal(0, 0.06, (n_parcels, 3)) @ basis          # (n_parcels, B)
    hsi = np.zeros(shape + (n_bands,), np.float64)
    height = np.zeros(shape)
    for k, c in enumerate(covers):
        proto_name, h_mean, h_std = _CLASS_MODEL[c]
        # Pixel-level variation: brightness (canopy/texture) and a little shape change.
        texture = rng.normal(1.0, 0.1, shape)[..., None]
        spectra = protos[proto_name][None, None, :] * parcel_mod[parcel] * texture
        if proto_name == "vine":  # rows of vines over soil: periodic NIR modulation
            rows_pattern = 0.5 + 0.5 * np.cos(2 * np.pi * np.arange(n_cols) / 4.0)
            spectra = spectra * (1 + 0.08 * (rows_pattern[None, :, None] - 0.5))
        hsi += abund[k][..., None] * spectra
        # Heights: per-parcel mean, per-pixel canopy texture.
        parcel_h = h_mean + rng.normal(0, h_std * 0.6, n_parcels)[parcel]
        pixel_h = parcel_h + rng.normal(0, h_std * 0.8, shape)
        if c == 2:  # flat roofs: per-building height, little pixel noise
            pixel_h = parcel_h + gaussian_filter(rng.normal(0, h_std, shape), 3) + rng.normal(0, .1, shape)
        height += abund[k] * np.maximum(pixel_h, 0)

    illumination = _smooth_field(shape, rng, scale=25, amplitude=0.08)
    band_noise = noise * (1 + 2.0 * (np.abs(t - 0.5) * 2) ** 3)            # worse at the ends
    hsi = hsi * illumination[..., None] + rng.normal(size=hsi.shape) * band_noise
    lidar_bands = []
    if n_lidar_bands >= 1:
        lidar_bands.append(height + rng.normal(0, 0.15, shape))
    if n_lidar_bands == 2:  # intensity-like raster: brighter on vegetation and roofs
        intensity = 0.3 + 0.5 * np.einsum("khw->hw", abund * np.array(
            [0.2, 0.7, 0.5, 0.3, 0.8, 0.6, 0.4])[:, None, None])
        lidar_bands.append(intensity + rng.normal(0, 0.05, shape))
    lidar = np.stack(lidar_bands, axis=-1) if lidar_bands else np.zeros(shape + (0,))

    # Ground truth: pure interiors of the labelled covers, as survey polygons are.
    pure = abund.max(0) > 0.9
    labels = np.where(pure & (classes > 0), classes, 0).astype(np.int64)

    block = max(2 * patch_size, min(40, min(n_rows, n_cols) // 3))  # small scenes: smaller blocks
    # min_train=0: small scenes keep their split; a class left without training pixels is
    # reported by the warning below instead.
    train_side, test = spatially_disjoint_split(labels, patch_size=patch_size, block_size=block,
                                                test_size=0.5, min_train=0, random_state=rng)
    if n_train_per_class is None:
        area = n_rows * n_cols / (166 * 600)
        n_train_per_class = {c: max(10, int(round(n * area))) for c, n in
                             {1: 129, 2: 125, 3: 105, 4: 154, 5: 184, 6: 122}.items()}
    train_labels = np.where(train_side, labels, 0)
    train, _ = sample_per_class(train_labels, n_per_class=n_train_per_class, random_state=rng)
    missing = [SYNTHETIC_CLASSES[c] for c in SYNTHETIC_CLASSES
               if (labels == c).any() and not (labels[train] == c).any()]
    if missing:
        warnings.warn(
            f"the {n_rows} x {n_cols} scene has no training pixel of {missing} once the "
            f"patch_size={patch_size} buffer of the disjoint split is removed; use a larger scene "
            "or a smaller patch_size.", UserWarning, stacklevel=2)
    return make_scene_bunch(
        hsi, lidar, labels, SYNTHETIC_CLASSES, train, test, "synthetic",
        "Synthetic Trento-like HSI + LiDAR scene (sklearn_mmlgnet.datasets.make_hsi_lidar_scene); "
        "spatially disjoint train/test split with a patch-size buffer.",
        wavelengths=wl.astype(np.float32))
