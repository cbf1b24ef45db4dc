"""
Your own scene: GeoTIFF rasters and labels in, a GeoTIFF map for QGIS out
=========================================================================

The same two commands a user types in a shell, run here through
:func:`sklearn_mmlgnet.cli.main`::

    mmlgnet fit --hsi flight.tif --lidar chm.tif --labels train_labels.tif \\
        --out model.safetensors
    mmlgnet predict model.safetensors --hsi flight.tif --lidar chm.tif \\
        --out map.tif --proba

The model file is in sklearn-mmlgnet's safe format (safetensors weights and a
JSON description): loading it runs no code, unlike a pickle.

By default a synthetic scene is written as GeoTIFFs (a UTM grid, float32 bands)
and its spatially disjoint training and test labels play the parts of a user's
field data.

With ``MMLGNET_EXAMPLE_IDTREES=1`` and the IDTReeS 2020 plots in ``../shared/data``
(real NEON rasters: 20 x 20 m plots of 369-band int16 HSI and a float32 LZW canopy
height model, EPSG:32617, at the sites MLBS and OSBS), the model is trained on many
plots at once and maps plots it never saw: the plots are split by plot group as the
IDTReeS benchmark splits them (:func:`~sklearn_mmlgnet.datasets.idtrees_splits`,
the first of its 3 plot-grouped folds is held out: no plot and no crown on both
sides). Each plot's tree crowns, with their species, are written as a label
GeoTIFF with the class names (as a GIS exports them); the training plots are
listed in a CSV file for ``mmlgnet fit --scenes``, and the held-out plots are
given to one ``mmlgnet predict`` with ``--hsi`` / ``--lidar`` repeated::

    mmlgnet fit --scenes scenes.csv --out model.safetensors --patch-size 7 \\
        --spectral-norm l2 --pca 30 --epochs 5
    mmlgnet predict model.safetensors --hsi HSI/MLBS_3.tif --lidar CHM/MLBS_3.tif \\
        --hsi HSI/OSBS_9.tif --lidar CHM/OSBS_9.tif ... --out maps

Set ``MMLGNET_EXAMPLE_QUICK=1`` for a small, fast run (as in CI) and
``MMLGNET_EXAMPLE_OUT`` for the output folder.
"""

import csv
import json
import os
from pathlib import Path

import numpy as np
import rasterio

from sklearn_mmlgnet.cli import main
from sklearn_mmlgnet.io import write_map

QUICK = os.environ.get("MMLGNET_EXAMPLE_QUICK") == "1"
out = Path(os.environ.get("MMLGNET_EXAMPLE_OUT", "own_scene_out"))
out.mkdir(parents=True, exist_ok=True)
# sphinx-gallery runs an example from its own folder and without __file__
HERE = Path(globals().get("__file__", "own_scene.py")).resolve().parent
IDTREES = HERE.parents[1] / "shared" / "data" / "idtrees2020_train"


def idtrees_inputs():
    """(fit arguments, held-out plots as (hsi, chm, labels)): IDTReeS split by plot group."""
    from sklearn_mmlgnet.datasets import idtrees_splits, load_idtrees

    # The loader rasterises the crowns of the 8 taxa with >= 30 crowns onto every plot
    # (pixels in the boxes of two trees dropped) and groups plots that touch or share a
    # crown; the benchmark's first plot-grouped fold is held out.
    data = load_idtrees(IDTREES.parent, patch_size=None)
    train, test = idtrees_splits(data, kind="plot", n_splits=3, random_state=0)[0]
    (out / "labels").mkdir(exist_ok=True)
    rs = IDTREES / "RemoteSensing"

    def plot(i):
        scene = data.scenes[i]
        labels = write_map(out / "labels" / f"{scene.name}.tif", scene.labels, like=scene,
                           class_names=data.class_names)
        return (str(rs / "HSI" / f"{scene.name}.tif"), str(rs / "CHM" / f"{scene.name}.tif"),
                str(labels))

    fit_plots = [plot(i) for i in np.unique(data.plot_id[train])]
    held_out = [plot(i) for i in np.unique(data.plot_id[test])]
    with open(out / "scenes.csv", "w", newline="") as f:  # one row per training plot
        csv.writer(f).writerows([("hsi", "lidar", "labels"), *fit_plots])
    sites = ", ".join(f"{site} {sum(Path(h).stem.startswith(site) for h, _, _ in held_out)}"
                      for site in ("MLBS", "OSBS"))
    print(f"IDTReeS 2020: fit on {len(fit_plots)} plots ({len(train)} labelled pixels), map the "
          f"{len(held_out)} held-out plots ({sites}; {len(test)} labelled pixels), "
          f"{len(data.class_names)} taxa.")
    return ["--scenes", str(out / "scenes.csv"), "--spectral-norm", "l2", "--pca", "30"], held_out


def synthetic_inputs():
    """A synthetic scene written as GeoTIFFs: training labels left, test labels right."""
    from rasterio.transform import from_origin

    from sklearn_mmlgnet.datasets import make_hsi_lidar_scene

    size = dict(n_rows=80, n_cols=160, n_bands=16) if QUICK else dict(n_rows=120, n_cols=300,
                                                                      n_bands=32)
    scene = make_hsi_lidar_scene(patch_size=5, random_state=0, **size)
    grid = dict(crs=rasterio.crs.CRS.from_epsg(32632),  # Trento's UTM zone
                transform=from_origin(664000.0, 5105000.0, 1.0, 1.0), hsi=scene.hsi)
    H, W, B = scene.hsi.shape
    profile = dict(driver="GTiff", height=H, width=W, dtype="float32", crs=grid["crs"],
                   transform=grid["transform"])
    paths = out / "hsi.tif", out / "lidar.tif"
    for path, cube in zip(paths, (scene.hsi, scene.lidar)):
        with rasterio.open(path, "w", count=cube.shape[2], **profile) as dst:
            dst.write(np.moveaxis(cube, -1, 0))
    train = np.where(scene.train_mask, scene.labels, 0)
    test = np.where(scene.test_mask, scene.labels, 0)
    write_map(out / "train_labels.tif", train, like=grid, class_names=scene.class_names)
    write_map(out / "test_labels.tif", test, like=grid, class_names=scene.class_names)
    hsi, lidar = map(str, paths)
    return (["--hsi", hsi, "--lidar", lidar, "--labels", str(out / "train_labels.tif")],
            [(hsi, lidar, str(out / "test_labels.tif"))])


if os.environ.get("MMLGNET_EXAMPLE_IDTREES") == "1" and IDTREES.is_dir():
    print("Scenes: IDTReeS 2020 plots (NEON AOP rasters), split by plot group.")
    scene_args, held_out = idtrees_inputs()
else:
    print("Scene: synthetic, written as GeoTIFFs.")
    scene_args, held_out = synthetic_inputs()

# One raster: --out is the map. Several: --out is a folder, one <HSI name>.tif each.
model_path = out / "model.safetensors"
maps = ([out / "map.tif"] if len(held_out) == 1
        else [out / "maps" / f"{Path(h).stem}.tif" for h, _, _ in held_out])
fit_args = ["fit", *scene_args, "--out", str(model_path), "--patch-size", "5" if QUICK else "7",
            "--epochs", "3" if QUICK else ("5" if len(held_out) > 1 else "15"), "--quiet"]
if QUICK:
    fit_args += ["--hsi-channels", "16", "--lidar-channels", "8", "--fusion-dim", "32"]
assert main(fit_args) == 0
predict_args = ["predict", str(model_path), "--proba", "--quiet",
                "--out", str(maps[0] if len(maps) == 1 else maps[0].parent)]
for hsi, chm, _ in held_out:
    predict_args += ["--hsi", hsi, "--lidar", chm]
assert main(predict_args) == 0

# Each map is a GeoTIFF on its input's grid, with the class names QGIS shows in its legend.
preds, truths = [], []
for (hsi, _, labels), map_path in zip(held_out, maps):
    with rasterio.open(map_path) as src, rasterio.open(hsi) as ref, \
            rasterio.open(labels) as gt:
        assert src.crs == ref.crs and src.transform == ref.transform
        preds.append(src.read(1))
        truths.append(gt.read(1).astype(np.int64))
        names = {int(k): v for k, v in json.loads(src.tags()["CLASS_NAMES"]).items()}
        if map_path == maps[0]:
            more = f" (and {len(maps) - 1} more maps beside it)" if len(maps) > 1 else ""
            print(f"Map {map_path}: {src.width} x {src.height} px, {src.crs.to_string()}, "
                  "classes " + ", ".join(f"{k}={v}" for k, v in sorted(names.items())) + more)

# Score the maps on labelled pixels the model never saw (the test blocks / held-out plots).
pred = np.concatenate([p.ravel() for p in preds])
truth = np.concatenate([t.ravel() for t in truths])
known = np.isin(truth, list(names)) & (pred > 0)
if known.any():
    print(f"Pixel accuracy on {int(known.sum())} held-out labelled pixels of the trained classes: "
          f"{100 * np.mean(pred[known] == truth[known]):.1f} %"
          + (f" ({len(maps)} plots)" if len(maps) > 1 else ""))
print("Open", maps[0], "in QGIS: a paletted layer whose legend names the classes.")

# %%
# The map next to the held-out labels it was scored on (the held-out plots side by side).
from sklearn_mmlgnet.plotting import plot_classification_map  # noqa: E402


def side_by_side(images, per_row=10, gap=2):
    """Small maps in rows, 0 (nodata) between them."""
    h, w = max(i.shape[0] for i in images), max(i.shape[1] for i in images)
    rows = -(-len(images) // per_row)
    canvas = np.zeros((rows * (h + gap), min(len(images), per_row) * (w + gap)), np.int64)
    for k, image in enumerate(images):
        r, c = divmod(k, per_row)
        canvas[r * (h + gap):r * (h + gap) + image.shape[0],
               c * (w + gap):c * (w + gap) + image.shape[1]] = image
    return canvas


shown_truth = [np.where(np.isin(t, list(names)) & (p > 0), t, 0) for p, t in zip(preds, truths)]
fig = plot_classification_map(side_by_side(preds), side_by_side(shown_truth), class_names=names,
                              path=out / "own_scene_map.png",
                              title="Predicted map | held-out labels")
