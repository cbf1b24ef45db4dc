"""IDTReeS 2020: NEON hyperspectral + LiDAR plots with field-identified tree crowns.

The competition's training data (Graves et al., PeerJ 2023, doi:10.7717/peerj.16578):
20 m x 20 m plots at 1 m from two NEON sites (MLBS, Virginia; OSBS, Florida), each a
369-band HSI GeoTIFF and a canopy height model (CHM) GeoTIFF on the same grid, crown
boxes drawn by hand (``ITC/train_<SITE>.shp``) and the species of the field-identified
trees (``Field/train_data.csv``). :func:`load_idtrees` rasterises the crowns onto the
plots and returns the scenes and, in one call, the labelled patches with the groups
(crown, plot, site) an honest split needs; :func:`idtrees_splits` gives those splits
with scikit-learn's group-aware splitters.
"""

from __future__ import annotations

import csv
import numbers
import re
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from ..patches import extract_patches
from ._base import get_data_home

#: Common names of the 33 IDTReeS 2020 taxa (USDA PLANTS symbols as NEON's taxonID).
IDTREES_COMMON_NAMES = {
    "ACPE": "striped maple", "ACRU": "red maple", "ACSA3": "sugar maple",
    "AMLA": "Allegheny serviceberry", "BETUL": "birch", "CAGL8": "pignut hickory",
    "CATO6": "mockernut hickory", "FAGR": "American beech", "GOLA": "loblolly bay",
    "LITU": "tuliptree", "LYLU3": "fetterbush", "MAGNO": "magnolia", "NYBI": "swamp tupelo",
    "NYSY": "blackgum", "OXYDE": "sourwood", "PEPA37": "swamp bay", "PIEL": "slash pine",
    "PIPA2": "longleaf pine", "PINUS": "pine", "PITA": "loblolly pine",
    "PRSE2": "black cherry", "QUAL": "white oak", "QUCO2": "scarlet oak",
    "QUGE2": "sand live oak", "QUHE2": "Darlington oak", "QULA2": "turkey oak",
    "QULA3": "laurel oak", "QUMO4": "chestnut oak", "QUNI": "water oak",
    "QURU": "northern red oak", "QUERC": "oak", "ROPS": "black locust",
    "TSCA": "eastern hemlock",
}

IDTREES_SITES = ("MLBS", "OSBS")
AMBIGUOUS_MODES = ("drop", "nearest")
SPLIT_KINDS = ("plot", "site", "crown")
_DEFAULT_MIN_CROWNS = 30
_EXPECTED = ("RemoteSensing/HSI/<SITE>_<n>.tif", "RemoteSensing/CHM/<SITE>_<n>.tif",
             "ITC/train_<SITE>.shp (+ .shx, .dbf)", "Field/train_data.csv",
             "Field/taxonID_ScientificName.csv")


def _natural_key(name):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _root(data_home):
    """``data_home/idtrees2020_train/``, else ``data_home`` itself if it holds the layout."""
    home = get_data_home(data_home)
    for root in (home / "idtrees2020_train", home):
        if any((root / sub).is_dir() for sub in ("RemoteSensing", "ITC", "Field")):
            return root
    return home / "idtrees2020_train"


def _missing_error(root, missing):
    return FileNotFoundError(
        f"IDTReeS 2020 files are missing under {root} (data_home/idtrees2020_train/ or data_home "
        f"itself; data_home defaults to $MMLGNET_DATA, else ~/sklearn_mmlgnet_data): "
        f"{', '.join(missing)}. The loader expects the competition's training layout: "
        f"{'; '.join(_EXPECTED)}.")


def _check_files(root, sites):
    missing = [str(Path(*p.split("/"))) for p in ("Field/train_data.csv",
                                                  "Field/taxonID_ScientificName.csv")
               if not (root / p).is_file()]
    plots = {}
    for site in sites:
        for ext in ("shp", "shx", "dbf"):
            if not (root / "ITC" / f"train_{site}.{ext}").is_file():
                missing.append(f"ITC/train_{site}.{ext}")
        hsi_dir = root / "RemoteSensing" / "HSI"
        names = sorted((p.stem for p in hsi_dir.glob(f"{site}_*.tif")), key=_natural_key) \
            if hsi_dir.is_dir() else []
        if not names:
            missing.append(f"RemoteSensing/HSI/{site}_<n>.tif")
        missing += [f"RemoteSensing/CHM/{n}.tif" for n in names
                    if not (root / "RemoteSensing" / "CHM" / f"{n}.tif").is_file()]
        plots[site] = names
    if missing:
        raise _missing_error(root, missing)
    return plots


def _read_taxa(path):
    """{taxonID: scientific name} in the table's order (taxonCode)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: int(r["taxonCode"]))
    return {r["taxonID"].strip(): r["scientificName"].strip() for r in rows}


def _prompt_name(taxon_id, scientific):
    """"Genus species, common name": the authority (``L.``, ``Mill.``...) is dropped."""
    binomial = " ".join(scientific.split()[:2])
    common = IDTREES_COMMON_NAMES.get(taxon_id)
    return f"{binomial}, {common}" if common else binomial


def _read_field(path):
    """{indvdID: taxonID} and {indvdID: siteID}; two records with two taxa give ``None``."""
    taxon, site = {}, {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            ind, tax = row["indvdID"].strip(), row["taxonID"].strip()
            if ind in taxon and taxon[ind] != tax:
                tax = None  # conflicting records: the crown stays unlabelled
            taxon[ind], site[ind] = tax, row.get("siteID", "").strip()
    return taxon, site


def _read_crowns(root, site):
    import shapefile  # pyshp

    with shapefile.Reader(str(root / "ITC" / f"train_{site}.shp")) as reader:
        return [(sr.record["indvdID"].strip(), sr.shape, tuple(sr.shape.bbox))
                for sr in reader.iterShapeRecords() if sr.shape.points]


def _pixel_centres(transform, shape):
    """Map coordinates (x, y) of the pixel centres of a grid."""
    r, c = np.indices(shape) + 0.5
    t = transform
    return t.a * c + t.b * r + t.c, t.d * c + t.e * r + t.f


def _inside(shape, bbox, centres, transform):
    """Pixels whose centre is inside a crown polygon.

    A box (axis-aligned rectangle, as all IDTReeS crowns are) takes the pixels whose
    centre lies in the closed box, edges included; other polygons go through
    :func:`rasterio.features.geometry_mask` (GDAL's pixel-centre rule).
    """
    x0, y0, x1, y1 = bbox
    pts = np.asarray(shape.points, dtype=np.float64)
    on_x = np.isclose(pts[:, 0], x0) | np.isclose(pts[:, 0], x1)
    on_y = np.isclose(pts[:, 1], y0) | np.isclose(pts[:, 1], y1)
    if len(shape.parts) == 1 and len(pts) in (4, 5) and (on_x & on_y).all():
        x, y = centres
        return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
    from rasterio.features import geometry_mask

    return geometry_mask([shape.__geo_interface__], centres[0].shape, transform, invert=True)


def _read_plot(root, name):
    import rasterio

    with rasterio.open(root / "RemoteSensing" / "HSI" / f"{name}.tif") as src:
        raw = src.read()
        nodata, crs, transform, bounds = src.nodata, src.crs, src.transform, src.bounds
    bad = raw < 0
    if nodata is not None:
        bad |= raw == nodata
    # NEON writes -9999 for no data and atmospheric correction can leave small negative
    # reflectances: both become 0 rather than NaN, which every estimator would reject.
    hsi = np.where(bad, 0, raw).astype(np.float32) / np.float32(10000)
    with rasterio.open(root / "RemoteSensing" / "CHM" / f"{name}.tif") as src:
        chm = src.read(1, masked=True)
        if src.crs != crs or src.transform != transform or chm.shape != raw.shape[1:]:
            raise ValueError(
                f"IDTReeS plot {name}: the CHM's grid ({src.crs}, {src.transform}, {chm.shape}) "
                f"differs from the HSI's ({crs}, {transform}, {raw.shape[1:]}).")
    # A CHM's no-data cells are ground without returns: height 0.
    chm = np.nan_to_num(chm.filled(0).astype(np.float32), nan=0.0)
    return Bunch(hsi=np.ascontiguousarray(hsi.transpose(1, 2, 0)), lidar=chm[:, :, None],
                 raw=raw, crs=crs, transform=transform, bounds=bounds)


def _rasterise(plot, crowns, crown_index, ambiguous):
    """Crown id per pixel (0 = none) and the mask of pixels in boxes of two individuals."""
    H, W = plot.hsi.shape[:2]
    b = plot.bounds
    xy = _pixel_centres(plot.transform, (H, W))
    cover = {}  # crown id -> (H, W) bool, the union of its boxes inside the plot
    centres = {}  # crown id -> centres of its boxes (for ambiguous="nearest")
    for ind, shape, (x0, y0, x1, y1) in crowns:
        if x0 > b.right or x1 < b.left or y0 > b.top or y1 < b.bottom:
            continue
        inside = _inside(shape, (x0, y0, x1, y1), xy, plot.transform)
        if not inside.any():
            continue
        cid = crown_index[ind]
        cover[cid] = cover.get(cid, False) | inside
        centres.setdefault(cid, []).append(((x0 + x1) / 2, (y0 + y1) / 2))
    crown_ids = np.zeros((H, W), np.int64)
    if not cover:
        return crown_ids, np.zeros((H, W), bool)
    ids = np.fromiter(cover, np.int64)
    stack = np.stack([cover[c] for c in ids])  # (n_crowns, H, W)
    n_cover = stack.sum(0)
    crown_ids[n_cover == 1] = ids[stack.argmax(0)][n_cover == 1]
    amb = n_cover > 1
    if ambiguous == "nearest" and amb.any():
        r, c = np.nonzero(amb)
        xs, ys = xy[0][r, c], xy[1][r, c]
        best = np.full(len(r), np.inf)
        for k, cid in enumerate(ids):
            for cx, cy in centres[cid]:
                d = np.where(stack[k, r, c], np.hypot(xs - cx, ys - cy), np.inf)
                take = d < best
                best[take], crown_ids[r[take], c[take]] = d[take], cid
    return crown_ids, amb


def _plot_groups(scenes):
    """Connected plots (touching grids or a crown in both) share one group id."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(scenes)
    edges = []
    crowns = [set(np.unique(s.crown_ids[s.crown_ids > 0]).tolist()) for s in scenes]
    for i in range(n):
        bi = scenes[i].bounds
        for j in range(i + 1, n):
            bj = scenes[j].bounds
            touch = (bi.left <= bj.right and bj.left <= bi.right and bi.bottom <= bj.top
                     and bj.bottom <= bi.top and str(scenes[i].crs) == str(scenes[j].crs))
            if touch or crowns[i] & crowns[j]:
                edges.append((i, j))
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _check_sites(sites):
    if isinstance(sites, str):
        sites = (sites,)
    try:
        sites = tuple(sites)
    except TypeError:
        sites = None
    if not sites or not all(isinstance(s, str) and s for s in sites) or len(set(sites)) != len(sites):
        raise ValueError(f"sites must be a non-empty sequence of distinct site codes such as "
                         f"{IDTREES_SITES}; got {sites!r}.")
    return sites


def load_idtrees(data_home=None, *, sites=IDTREES_SITES, min_crowns=_DEFAULT_MIN_CROWNS,
                 patch_size=11, ambiguous="drop", pad_mode="reflect"):
    """IDTReeS 2020 training plots: 369-band HSI + LiDAR CHM, tree species per crown.

    Reads the competition's training layout from ``data_home/idtrees2020_train/`` (or
    from ``data_home`` itself): ``RemoteSensing/HSI/<SITE>_<n>.tif`` (20 x 20 px,
    369 bands, int16 reflectance x 10000), ``RemoteSensing/CHM/<SITE>_<n>.tif`` (canopy
    height in metres, same grid), ``ITC/train_<SITE>.shp`` (crown boxes, attribute
    ``indvdID``), ``Field/train_data.csv`` (``indvdID`` -> ``taxonID``) and
    ``Field/taxonID_ScientificName.csv``. Rasters are read with rasterio and crowns
    with pyshp; each plot keeps its CRS and affine transform.

    What the loader decides, and why:

    * **Crowns** are rasterised per plot: a pixel belongs to a box when its centre is
      inside the box, edges included (computed from the plot's transform; a crown that
      is not a box would go through :func:`rasterio.features.geometry_mask`). One
      individual drawn as two boxes is still one crown.
    * **Ambiguous pixels**, inside the boxes of two different individuals (labelled
      or not), are dropped by default (``ambiguous="drop"``: label 0, crown id 0,
      flagged in the scene's ``ambiguous`` mask): their species is unknown.
      ``ambiguous="nearest"`` gives each to the individual whose box centre is nearest.
    * **Field records vs boxes**: boxes of individuals absent from the field table
      are crowns without a species (label 0; they still make overlaps ambiguous);
      field trees without a box have no pixels; an individual listed twice with two
      different taxa would stay unlabelled (none is, in the 2020 files).
    * **Rare taxa**: a taxon is kept when at least ``min_crowns`` of its crowns have
      a pixel after the steps above; the others are set to label 0.
    * **Reflectance**: int16 / 10000 as float32; negative values and the file's
      no-data value (NEON's -9999) become 0 (the 2020 files hold none). CHM no-data
      becomes height 0.
    * **Duplicate plots**: a plot whose grid and HSI equal an earlier plot's is
      skipped (``OSBS_35`` is a copy of ``OSBS_16``); keeping both would put the
      same pixels on both sides of a split. They are listed in ``duplicate_plots``.

    With the defaults (both sites, ``min_crowns=30``, ``ambiguous="drop"``) the 2020
    files give 84 plots (57 groups of connected plots), 8 taxa, 15,167 labelled pixels
    in 885 crowns; 4,169 pixels are ambiguous. The next taxon, LITU, has 17 crowns, so
    any ``min_crowns`` from 18 to 41 keeps the same 8; ``min_crowns=1`` keeps 33 taxa,
    17,375 pixels, 1,025 crowns.

    =====  ============================================  ======  ======  ==========
    label  class name (taxonID)                          crowns  pixels  site
    =====  ============================================  ======  ======  ==========
    1      Acer rubrum, red maple (ACRU)                    131   2,309  MLBS, OSBS
    2      Amelanchier laevis, Allegheny serviceberry        41     799  MLBS
           (AMLA)
    3      Nyssa sylvatica, blackgum (NYSY)                  44     625  MLBS
    4      Pinus palustris, longleaf pine (PIPA2)           288   4,637  OSBS
    5      Quercus alba, white oak (QUAL)                    99   1,981  MLBS
    6      Quercus coccinea, scarlet oak (QUCO2)             52     994  MLBS
    7      Quercus laevis, turkey oak (QULA2)                70     943  OSBS
    8      Quercus rubra, northern red oak (QURU)           160   2,879  MLBS
    =====  ============================================  ======  ======  ==========

    Parameters
    ----------
    data_home : str or Path, optional
        Folder holding ``idtrees2020_train/`` (or the folder itself); defaults to
        ``$MMLGNET_DATA``, else ``~/sklearn_mmlgnet_data``.
    sites : sequence of str, default=("MLBS", "OSBS")
        Sites to load.
    min_crowns : int, default=30
        Keep the taxa with at least this many crowns (counted over ``sites``).
    patch_size : int or None, default=11
        Side of the patches ``X``, cut inside each plot with
        :func:`~sklearn_mmlgnet.patches.extract_patches` (``pad_mode`` at the plot's
        borders: a patch never reads a neighbouring plot). ``None``: no ``X`` (the
        scenes and per-pixel arrays only), which saves memory: ``X`` takes
        ``n_pixels * 370 * P * P * 4`` bytes (535 MiB at P = 5, 1.0 GiB at P = 7,
        2.5 GiB at P = 11 for the default 15,167 pixels).
    ambiguous : {"drop", "nearest"}, default="drop"
        What to do with pixels inside the boxes of two individuals (see above).
    pad_mode : {"reflect", "symmetric", "edge", "constant"}, default="reflect"
        Padding of patches at plot borders.

    Returns
    -------
    data : Bunch
        With these fields:

        * ``scenes`` (list of Bunch): One per plot: ``hsi`` (20, 20, 369) float32 reflectance,
          ``lidar`` (20, 20, 1) float32 CHM (m), ``labels`` (20, 20) int64 (0 = unlabelled),
          ``crown_ids`` (20, 20) int64 (0 = no crown or ambiguous), ``ambiguous`` (20, 20) bool,
          ``name``, ``site``, ``crs``, ``transform``, ``bounds``, ``plot_group``.
        * ``class_names`` (dict): ``{label: "Genus species, common name"}`` for the taxa kept,
          labels 1..K in the taxon table's order.
        * ``taxon_ids`` (dict): ``{label: taxonID}`` (NEON codes, e.g. ``"PIPA2"``).
        * ``X`` (ndarray of shape (n_pixels, 370, P, P), float32, or None): Patches of the
          labelled pixels: 369 HSI bands then the CHM.
        * ``y`` (ndarray of shape (n_pixels,), int64): the pixels' labels.
        * ``crown_id``, ``plot_id``, ``plot_group`` (ndarray of shape (n_pixels,), int64):
          Per-pixel groups: the crown, the plot (index into ``scenes``) and the group of
          connected plots (plots whose grids touch or that share a crown), the unit
          :func:`idtrees_splits` keeps on one side.
        * ``site`` (ndarray of shape (n_pixels,), str): the pixels' NEON site.
        * ``rows``, ``cols`` (ndarray of shape (n_pixels,), int64): Pixel position in its plot.
        * ``crown_names`` (ndarray of str): ``crown_names[crown_id]`` is the individual's
          ``indvdID`` ("" for 0).
        * ``crown_counts``, ``pixel_counts`` (dict): ``{label: count}`` of crowns and pixels.
        * ``duplicate_plots`` (dict): ``{skipped plot: the plot it copies}``.
        * ``n_ambiguous`` (int): Pixels inside two individuals' boxes (dropped or resolved).
        * ``crowns_without_field``, ``field_without_crown`` (list of str): Individuals with a
          box but no field record, and the reverse.
        * ``DESCR`` (str): a description of the data and of these choices.

    Raises
    ------
    FileNotFoundError
        When files are missing; the message lists them and the expected layout.

    Examples
    --------
    >>> from sklearn_mmlgnet.datasets import load_idtrees
    >>> data = load_idtrees("path/to/data_home", patch_size=5)  # doctest: +SKIP
    >>> data.X.shape, len(data.scenes)  # doctest: +SKIP
    ((15167, 370, 5, 5), 84)

    Without the files, the error lists what is missing and the expected layout:

    >>> load_idtrees("/nonexistent")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: IDTReeS 2020 files are missing under /nonexistent/idtrees2020_train ...
    """
    sites = _check_sites(sites)
    if isinstance(min_crowns, bool) or not isinstance(min_crowns, numbers.Integral) or min_crowns < 1:
        raise ValueError(f"min_crowns must be a positive int; got {min_crowns!r}.")
    if ambiguous not in AMBIGUOUS_MODES:
        raise ValueError(f"ambiguous must be one of {AMBIGUOUS_MODES}; got {ambiguous!r}.")
    if patch_size is not None and (isinstance(patch_size, bool) or not isinstance(
            patch_size, numbers.Integral) or patch_size < 1 or patch_size % 2 == 0):
        raise ValueError(f"patch_size must be an odd positive int or None; got {patch_size!r}.")
    root = _root(data_home)
    plot_names = _check_files(root, sites)
    taxa = _read_taxa(root / "Field" / "taxonID_ScientificName.csv")
    field, field_site = _read_field(root / "Field" / "train_data.csv")
    crowns = {site: _read_crowns(root, site) for site in sites}
    all_ids = sorted({ind for site in sites for ind, _, _ in crowns[site]})
    crown_index = {ind: k + 1 for k, ind in enumerate(all_ids)}

    scenes, duplicates, seen, n_ambiguous = [], {}, {}, 0
    for site in sites:
        for name in plot_names[site]:
            plot = _read_plot(root, name)
            key = (str(plot.crs), tuple(plot.transform), plot.raw.tobytes())
            if key in seen:
                duplicates[name] = seen[key]
                continue
            seen[key] = name
            crown_ids, amb = _rasterise(plot, crowns[site], crown_index, ambiguous)
            n_ambiguous += int(amb.sum())
            scenes.append(Bunch(hsi=plot.hsi, lidar=plot.lidar, crown_ids=crown_ids,
                                ambiguous=amb, name=name, site=site, crs=plot.crs,
                                transform=plot.transform, bounds=plot.bounds))

    # Taxa kept: enough crowns with at least one pixel over the loaded plots.
    crown_names = np.array([""] + all_ids)
    present = np.unique(np.concatenate([s.crown_ids[s.crown_ids > 0] for s in scenes] or [[]]))
    taxon_of = {cid: field.get(crown_names[cid]) for cid in present.astype(int).tolist()}
    n_crowns = {}
    for tax in taxon_of.values():
        if tax is not None:
            n_crowns[tax] = n_crowns.get(tax, 0) + 1
    order = list(taxa) + sorted(set(n_crowns) - set(taxa))  # taxa missing from the table last
    kept = [t for t in order if n_crowns.get(t, 0) >= min_crowns]
    if not kept:
        raise ValueError(f"No taxon has min_crowns={min_crowns} crowns at sites {sites}; the "
                         f"largest has {max(n_crowns.values(), default=0)}.")
    label_of_taxon = {t: k + 1 for k, t in enumerate(kept)}
    lut = np.zeros(len(crown_names), np.int64)
    for cid, tax in taxon_of.items():
        lut[cid] = label_of_taxon.get(tax, 0)

    groups = _plot_groups(scenes)
    per_pixel = {k: [] for k in ("y", "crown_id", "plot_id", "plot_group", "rows", "cols", "site")}
    for i, s in enumerate(scenes):
        s.labels = lut[s.crown_ids]
        s.plot_group = int(groups[i])
        r, c = np.nonzero(s.labels)
        per_pixel["y"].append(s.labels[r, c])
        per_pixel["crown_id"].append(s.crown_ids[r, c])
        per_pixel["plot_id"].append(np.full(len(r), i))
        per_pixel["plot_group"].append(np.full(len(r), groups[i]))
        per_pixel["rows"].append(r)
        per_pixel["cols"].append(c)
        per_pixel["site"].append(np.full(len(r), s.site))
    arrays = {k: np.concatenate(v) for k, v in per_pixel.items()}
    for k in ("y", "crown_id", "plot_id", "plot_group", "rows", "cols"):
        arrays[k] = arrays[k].astype(np.int64)

    X = None
    if patch_size is not None:
        n_bands = scenes[0].hsi.shape[2] + scenes[0].lidar.shape[2]
        X = np.empty((len(arrays["y"]), n_bands, patch_size, patch_size), np.float32)
        start = 0  # filled plot by plot: no second copy of X
        for i, s in enumerate(scenes):
            r, c = np.nonzero(s.labels)
            X[start:start + len(r)] = extract_patches(s.hsi, s.lidar, r, c, patch_size, pad_mode)
            start += len(r)

    class_names = {label_of_taxon[t]: _prompt_name(t, taxa.get(t, t)) for t in kept}
    crown_counts = {label_of_taxon[t]: n_crowns[t] for t in kept}
    pixel_counts = {int(k): int(v) for k, v in zip(*np.unique(arrays["y"], return_counts=True))}
    return Bunch(
        scenes=scenes, class_names=class_names, taxon_ids={v: k for k, v in label_of_taxon.items()},
        X=X, **arrays, crown_names=crown_names, crown_counts=crown_counts,
        pixel_counts=pixel_counts, duplicate_plots=duplicates, n_ambiguous=n_ambiguous,
        crowns_without_field=sorted(set(all_ids) - set(field)),
        field_without_crown=sorted(i for i in field
                                   if field_site[i] in sites and i not in crown_index),
        DESCR=(f"IDTReeS 2020 training plots from {root}: sites {sites}, {len(scenes)} plots, "
               f"{len(kept)} taxa with >= {min_crowns} crowns, {len(arrays['y'])} labelled "
               f"pixels, ambiguous={ambiguous!r}, patch_size={patch_size}."))


def idtrees_splits(data, kind="plot", n_splits=5, random_state=0):
    """Honest train/test index pairs over :func:`load_idtrees`'s pixels.

    Thin wrappers of scikit-learn's splitters on the groups the loader returns:

    * ``"plot"`` (default): :class:`~sklearn.model_selection.StratifiedGroupKFold`
      with ``groups=data.plot_group``: no plot and no crown on both sides, and
      plots that touch or share a crown stay together.
    * ``"site"``: :class:`~sklearn.model_selection.LeaveOneGroupOut` on
      ``data.site``: train on one site, test on the other (one pair per site;
      ``n_splits`` and ``random_state`` are unused). The two sites share few taxa:
      labels found only in the test site cannot be predicted.
    * ``"crown"``: ``StratifiedGroupKFold`` on ``data.crown_id``: crowns never on
      both sides, but plots are, and an 11 x 11 patch reaches into neighbouring
      crowns of the test set: optimistic, for comparison only.

    Parameters
    ----------
    data : Bunch
        From :func:`load_idtrees`.
    kind : {"plot", "site", "crown"}, default="plot"
    n_splits : int, default=5
    random_state : int, default=0
        Shuffles the groups among folds (the same folds for every seed of a
        benchmark when kept fixed).

    Returns
    -------
    splits : list of (train_index, test_index)

    Examples
    --------
    A stand-in for ``load_idtrees()``'s per-pixel arrays: 8 plots of 2 pixels.

    >>> import numpy as np
    >>> from sklearn.utils import Bunch
    >>> from sklearn_mmlgnet.datasets import idtrees_splits
    >>> data = Bunch(y=np.repeat([1, 2], 8), plot_group=np.repeat(np.arange(8), 2),
    ...              crown_id=np.arange(16), site=np.repeat(["MLBS", "OSBS"], 8))
    >>> [np.unique(data.plot_group[test]).tolist() for _, test in idtrees_splits(data, n_splits=4)]
    [[3, 6], [2, 5], [1, 4], [0, 7]]
    >>> [np.unique(data.site[test]).tolist() for _, test in idtrees_splits(data, kind="site")]
    [['MLBS'], ['OSBS']]

    The plot folds as a one-liner, usable as ``cv=`` anywhere:

    >>> from sklearn.model_selection import StratifiedGroupKFold
    >>> cv = StratifiedGroupKFold(4, shuffle=True, random_state=0)
    >>> folds = list(cv.split(data.y, data.y, groups=data.plot_group))
    """
    from sklearn.model_selection import LeaveOneGroupOut, StratifiedGroupKFold

    if kind not in SPLIT_KINDS:
        raise ValueError(f"kind must be one of {SPLIT_KINDS}; got {kind!r}.")
    y = np.asarray(data.y)
    if kind == "site":
        if len(np.unique(data.site)) < 2:
            raise ValueError(f"kind='site' needs two sites; the data hold {np.unique(data.site)}.")
        return list(LeaveOneGroupOut().split(y, y, groups=data.site))
    groups = data.plot_group if kind == "plot" else data.crown_id
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    return list(cv.split(y, y, groups=groups))
