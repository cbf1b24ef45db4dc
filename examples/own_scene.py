"""
Your own scene: GeoTIFF rasters and labels in, a GeoTIFF map for QGIS out
=========================================================================

The same two commands a user types in a shell, run here through
:func:`sklearn_mmlgnet.cli.main`::

    mmlgnet fit --hsi HSI/MLBS_1.tif --lidar CHM/MLBS_1.tif \\
        --labels crowns.geojson --class-field taxonID --out model.safetensors
    mmlgnet predict model.safetensors --hsi HSI/MLBS_2.tif --lidar CHM/MLBS_2.tif \\
        --out map_MLBS_2.tif --proba

The model file is in sklearn-mmlgnet's safe format (safetensors weights and a
JSON description): loading it runs no code, unlike a pickle.

By default a synthetic scene is written as GeoTIFFs (a UTM grid, float32 bands)
and its spatially disjoint training and test labels play the parts of a user's
field data. With ``MMLGNET_EXAMPLE_IDTREES=1`` and the IDTReeS 2020 plots in
``../shared/data`` (real NEON rasters: 369-band int16 HSI and a float32 LZW
canopy-height model, EPSG:32617), the tree crowns of ``ITC/train_MLBS.shp`` are
joined to their species and written as GeoJSON, the model is fitted on plot
MLBS_1 and maps plot MLBS_2. One 20 x 20 m plot holds a few hundred labelled
pixels: far too few to train a species classifier, so that run only shows the
files are wired up, not an accuracy to expect.

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
from sklearn_mmlgnet.io import read_scene, write_map

QUICK = os.environ.get("MMLGNET_EXAMPLE_QUICK") == "1"
out = Path(os.environ.get("MMLGNET_EXAMPLE_OUT", "own_scene_out"))
out.mkdir(parents=True, exist_ok=True)
# sphinx-gallery runs an example from its own folder and without __file__
HERE = Path(globals().get("__file__", "own_scene.py")).resolve().parent
IDTREES = HERE.parents[1] / "shared" / "data" / "idtrees2020_train"


def idtrees_inputs():
    """(train rasters, test rasters, labels file, class field) from two IDTReeS plots."""
    import shapefile

    species = {}
    with open(IDTREES / "Field" / "train_data.csv", newline="") as f:
        for row in csv.DictReader(f):
            species[row["indvdID"]] = row["taxonID"]
    features = []
    with shapefile.Reader(str(IDTREES / "ITC" / "train_MLBS.shp")) as crowns:
        for rec in crowns.iterShapeRecords():
            taxon = species.get(rec.record["indvdID"])
            if taxon:  # crowns without a field identification stay unlabelled
                features.append({"type": "Feature", "properties": {"taxonID": taxon},
                                 "geometry": rec.shape.__geo_interface__})
    labels = out / "crowns.geojson"
    labels.write_text(json.dumps({"type": "FeatureCollection", "features": features,
                                  "crs": {"type": "name", "properties": {"name": "EPSG:32617"}}}))
    rs = IDTREES / "RemoteSensing"
    plot = lambda name: (rs / "HSI" / f"{name}.tif", rs / "CHM" / f"{name}.tif")  # noqa: E731
    return plot("MLBS_1"), plot("MLBS_2"), labels, "taxonID"


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
    return paths, paths, out / "train_labels.tif", None


if os.environ.get("MMLGNET_EXAMPLE_IDTREES") == "1" and IDTREES.is_dir():
    print("Scene: IDTReeS 2020 plots MLBS_1 (fit) and MLBS_2 (map), NEON AOP rasters.")
    (hsi, chm), (hsi2, chm2), labels, field = idtrees_inputs()
else:
    print("Scene: synthetic, written as GeoTIFFs.")
    (hsi, chm), (hsi2, chm2), labels, field = synthetic_inputs()

model_path, map_path = out / "model.safetensors", out / "map.tif"
fit_args = ["fit", "--hsi", str(hsi), "--lidar", str(chm), "--labels", str(labels),
            "--out", str(model_path), "--patch-size", "5" if QUICK else "7",
            "--epochs", "3" if QUICK else "15", "--quiet"]
if field:
    fit_args += ["--class-field", field]
if QUICK:
    fit_args += ["--hsi-channels", "16", "--lidar-channels", "8", "--fusion-dim", "32"]
assert main(fit_args) == 0
assert main(["predict", str(model_path), "--hsi", str(hsi2), "--lidar", str(chm2),
             "--out", str(map_path), "--proba", "--quiet"]) == 0

# The map is a GeoTIFF on the input's grid, with the class names QGIS shows in its legend.
with rasterio.open(map_path) as src:
    pred = src.read(1)
    names = {int(k): v for k, v in json.loads(src.tags()["CLASS_NAMES"]).items()}
    with rasterio.open(hsi2) as ref:
        assert src.crs == ref.crs and src.transform == ref.transform
    print(f"Map {map_path}: {src.width} x {src.height} px, {src.crs.to_string()}, classes "
          + ", ".join(f"{k}={v}" for k, v in sorted(names.items())))

# Score it on labelled pixels the model never saw (another plot / the test blocks).
truth = read_scene(hsi2, labels=labels if field else out / "test_labels.tif",
                   class_field=field).labels
known = np.isin(truth, list(names)) & (pred > 0)
if known.any():
    print(f"Pixel accuracy on {int(known.sum())} held-out labelled pixels of the trained classes: "
          f"{100 * np.mean(pred[known] == truth[known]):.1f} %")
print("Open", map_path, "in QGIS: a paletted layer whose legend names the classes.")

# %%
# The map next to the held-out labels it was scored on.
from sklearn_mmlgnet.plotting import plot_classification_map  # noqa: E402

fig = plot_classification_map(pred, np.where(known, truth, 0), class_names=names,
                              path=out / "own_scene_map.png",
                              title="Predicted map | held-out labels")
