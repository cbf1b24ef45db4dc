"""IDTReeS 2020 loader, its honest splits and the crown-level scores, on the shared files."""

from __future__ import annotations

import numpy as np
import pytest

from sklearn_mmlgnet.datasets import idtrees_splits, load_idtrees
from sklearn_mmlgnet.metrics import aggregate_by_group, crown_scores

from .conftest import SHARED_DATA, requires_shared

IDTREES = SHARED_DATA / "idtrees2020_train"
requires_idtrees = pytest.mark.skipif(
    not IDTREES.is_dir(), reason="../shared/data/idtrees2020_train (IDTReeS 2020 files) is absent")


@pytest.fixture(scope="module")
def data():
    # Loaded once for the module; 3 x 3 patches keep X at 200 MB.
    return load_idtrees(SHARED_DATA, patch_size=3)


def _boxes(site):
    import shapefile

    with shapefile.Reader(str(IDTREES / "ITC" / f"train_{site}.shp")) as r:
        return [(s.record["indvdID"], s.shape.bbox) for s in r.iterShapeRecords()]


@requires_shared
@requires_idtrees
def test_plots_shapes_dtypes_and_georeference(data):
    import rasterio

    assert len(data.scenes) == 84  # 85 files, OSBS_35 a copy of OSBS_16
    assert data.duplicate_plots == {"OSBS_35": "OSBS_16"}
    assert [s.name for s in data.scenes[:3]] == ["MLBS_1", "MLBS_2", "MLBS_3"]  # natural order
    assert sum(s.site == "MLBS" for s in data.scenes) == 46
    for s in data.scenes:
        assert s.hsi.shape == (20, 20, 369) and s.hsi.dtype == np.float32
        assert s.lidar.shape == (20, 20, 1) and s.lidar.dtype == np.float32
        assert s.labels.shape == s.crown_ids.shape == (20, 20)
        assert s.labels.dtype.kind == s.crown_ids.dtype.kind == "i"
        assert s.crs.to_epsg() == 32617
        assert 0 <= s.hsi.min() and s.hsi.max() < 1  # reflectance, not x 10000
    s = data.scenes[0]
    with rasterio.open(IDTREES / "RemoteSensing" / "HSI" / "MLBS_1.tif") as src:
        assert s.transform == src.transform and s.crs == src.crs
        np.testing.assert_allclose(s.hsi, src.read().transpose(1, 2, 0) / 10000, rtol=1e-6)
    with rasterio.open(IDTREES / "RemoteSensing" / "CHM" / "MLBS_1.tif") as src:  # LZW
        np.testing.assert_array_equal(s.lidar[:, :, 0], src.read(1))
    assert s.transform.c == 542055.0 and s.transform.f == 4134999.0


@requires_shared
@requires_idtrees
def test_labelled_pixel_crown_and_class_counts(data):
    assert len(data.y) == 15167 and len(np.unique(data.crown_id)) == 885
    assert data.taxon_ids == {1: "ACRU", 2: "AMLA", 3: "NYSY", 4: "PIPA2", 5: "QUAL", 6: "QUCO2",
                              7: "QULA2", 8: "QURU"}
    assert data.class_names[4] == "Pinus palustris, longleaf pine"
    assert data.class_names[1] == "Acer rubrum, red maple"
    assert data.crown_counts == {1: 131, 2: 41, 3: 44, 4: 288, 5: 99, 6: 52, 7: 70, 8: 160}
    assert min(data.crown_counts.values()) >= 30  # the default min_crowns
    assert data.pixel_counts == dict(enumerate(np.bincount(data.y)[1:].tolist(), start=1))
    for label, n in data.crown_counts.items():
        assert len(np.unique(data.crown_id[data.y == label])) == n
    assert len(data.crowns_without_field) == 60 and data.field_without_crown == []
    assert data.crown_names[0] == "" and data.crown_names[data.crown_id[0]].startswith("MLBS")


@requires_shared
@requires_idtrees
def test_patches_and_per_pixel_arrays_match_the_scenes(data):
    n = len(data.y)
    assert data.X.shape == (n, 370, 3, 3) and data.X.dtype == np.float32
    for name in ("y", "crown_id", "plot_id", "plot_group", "rows", "cols", "site"):
        assert len(data[name]) == n
    for i in np.random.RandomState(0).choice(n, 200, replace=False):
        s = data.scenes[data.plot_id[i]]
        r, c = data.rows[i], data.cols[i]
        assert s.labels[r, c] == data.y[i] and s.crown_ids[r, c] == data.crown_id[i]
        assert s.site == data.site[i] and s.plot_group == data.plot_group[i]
        np.testing.assert_array_equal(data.X[i, :369, 1, 1], s.hsi[r, c])
        assert data.X[i, 369, 1, 1] == s.lidar[r, c, 0]
    # Patches are cut inside their plot: a corner pixel's patch is reflected, not zero.
    corner = np.flatnonzero((data.rows == 0) & (data.cols == 0))[0]
    s = data.scenes[data.plot_id[corner]]
    np.testing.assert_array_equal(data.X[corner, :369, 0, 0], s.hsi[1, 1])


@requires_shared
@requires_idtrees
def test_crowns_rasterised_by_pixel_centre_and_ambiguous_pixels_dropped(data):
    """An independent count of the boxes covering each pixel centre, from the shapefiles."""
    boxes = {site: _boxes(site) for site in ("MLBS", "OSBS")}
    n_amb = 0
    for s in data.scenes:
        rows, cols = np.indices((20, 20))
        x = s.transform.c + (cols + 0.5) * s.transform.a
        y = s.transform.f + (rows + 0.5) * s.transform.e
        owners = [set() for _ in range(400)]
        for ind, (x0, y0, x1, y1) in boxes[s.site]:
            for k in np.flatnonzero(((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)).ravel()):
                owners[k].add(ind)
        n_owners = np.array([len(o) for o in owners]).reshape(20, 20)
        np.testing.assert_array_equal(s.ambiguous, n_owners > 1)
        assert (s.labels[n_owners != 1] == 0).all() and (s.crown_ids[n_owners != 1] == 0).all()
        single = np.flatnonzero(n_owners.ravel() == 1)
        got = data.crown_names[s.crown_ids.ravel()[single]]
        assert got.tolist() == [next(iter(owners[k])) for k in single]
        n_amb += int(s.ambiguous.sum())
    assert n_amb == data.n_ambiguous == 4169


@requires_shared
@requires_idtrees
def test_plot_folds_keep_plots_and_crowns_on_one_side(data):
    # A crown that spans two plots ties them into one group.
    crown_groups = {c: set(data.plot_group[data.crown_id == c]) for c in np.unique(data.crown_id)}
    assert all(len(g) == 1 for g in crown_groups.values())
    folds = idtrees_splits(data, kind="plot", n_splits=5, random_state=0)
    assert len(folds) == 5
    np.testing.assert_array_equal(np.sort(np.concatenate([te for _, te in folds])), np.arange(len(data.y)))
    for train, test in folds:
        for groups in (data.plot_id, data.plot_group, data.crown_id):
            assert not set(groups[train]) & set(groups[test])
        assert set(data.y[test]) == set(data.y)  # stratified: every class in every test fold
    again = idtrees_splits(data, kind="plot", n_splits=5, random_state=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))


@requires_shared
@requires_idtrees
def test_cross_site_and_crown_splits(data):
    site_folds = idtrees_splits(data, kind="site")
    assert len(site_folds) == 2
    for train, test in site_folds:
        assert len(set(data.site[test])) == 1 and not set(data.site[train]) & set(data.site[test])
        assert not set(data.plot_id[train]) & set(data.plot_id[test])
    for train, test in idtrees_splits(data, kind="crown", n_splits=3):
        assert not set(data.crown_id[train]) & set(data.crown_id[test])
    with pytest.raises(ValueError, match="kind must be one of"):
        idtrees_splits(data, kind="pixel")


@requires_shared
@requires_idtrees
def test_rare_taxa_and_one_site_from_the_folder_itself():
    # The folder itself as data_home; one site; every taxon kept.
    d = load_idtrees(IDTREES, sites="OSBS", min_crowns=1, patch_size=None)
    assert d.X is None and set(d.site) == {"OSBS"} and len(d.scenes) == 38
    assert sorted(d.class_names) == list(range(1, len(d.class_names) + 1))
    assert d.taxon_ids[min(d.taxon_ids)] == "ACRU" and "PIPA2" in d.taxon_ids.values()
    assert min(d.crown_counts.values()) == 1
    kept = load_idtrees(IDTREES, sites="OSBS", min_crowns=50, patch_size=None)
    assert set(kept.taxon_ids.values()) == {t for k, t in d.taxon_ids.items() if d.crown_counts[k] >= 50}
    with pytest.raises(ValueError, match="kind='site' needs two sites"):
        idtrees_splits(d, kind="site")


@requires_shared
@requires_idtrees
def test_ambiguous_nearest_gives_each_pixel_to_one_of_its_boxes(data):
    d = load_idtrees(SHARED_DATA, sites=("MLBS",), patch_size=None, ambiguous="nearest")
    assert len(d.y) > (data.site == "MLBS").sum()  # more pixels than with "drop"
    boxes = _boxes("MLBS")
    for s in d.scenes:
        for r, c in np.argwhere(s.ambiguous)[:5]:
            x = s.transform.c + (c + 0.5) * s.transform.a
            y = s.transform.f + (r + 0.5) * s.transform.e
            cover = {ind for ind, (x0, y0, x1, y1) in boxes if x0 <= x <= x1 and y0 <= y <= y1}
            assert d.crown_names[s.crown_ids[r, c]] in cover


def test_missing_folder_names_the_expected_files(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_idtrees(tmp_path)
    msg = str(err.value)
    for name in ("Field/train_data.csv", "Field/taxonID_ScientificName.csv", "ITC/train_MLBS.shp",
                 "ITC/train_OSBS.shp", "RemoteSensing/HSI/MLBS_<n>.tif", "RemoteSensing/CHM"):
        assert name in msg
    assert str(tmp_path) in msg


@requires_shared
@requires_idtrees
def test_a_missing_chm_is_named(tmp_path):
    import shutil

    root = tmp_path / "idtrees2020_train"
    shutil.copytree(IDTREES, root, ignore=shutil.ignore_patterns("OSBS_*"))
    (root / "RemoteSensing" / "CHM" / "MLBS_7.tif").unlink()
    with pytest.raises(FileNotFoundError, match=r"RemoteSensing/CHM/MLBS_7.tif"):
        load_idtrees(tmp_path, sites=["MLBS"])


@pytest.mark.parametrize("kwargs, match", [
    ({"min_crowns": 0}, "min_crowns must be a positive int"),
    ({"ambiguous": "keep"}, "ambiguous must be one of"),
    ({"patch_size": 4}, "patch_size must be an odd positive int or None"),
    ({"sites": []}, "sites must be a non-empty sequence"),
])
def test_bad_arguments_are_named(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_idtrees(tmp_path, **kwargs)


def test_crown_scores_against_a_hand_computation():
    # Crown 7: pixels (.8,.2), (.1,.9), (.3,.7) -> mean (.4,.6) -> "b" (true "a": wrong).
    # Crown 3: (.6,.4) -> "a" (right). Crown 5: (.2,.8), (.9,.1) -> (.55,.45) -> "a" (true "b").
    y = np.array(["a", "a", "a", "a", "b", "b"])
    proba = np.array([[.8, .2], [.1, .9], [.3, .7], [.6, .4], [.2, .8], [.9, .1]])
    groups = np.array([7, 7, 7, 3, 5, 5])
    s = crown_scores(y, proba, groups, classes=["a", "b"])
    assert s["n_crowns"] == 3 and s["crowns"].tolist() == [3, 5, 7]
    assert s["y_true"].tolist() == ["a", "b", "a"] and s["y_pred"].tolist() == ["a", "a", "b"]
    assert s["accuracy"] == pytest.approx(1 / 3)
    # F1(a): precision 1/2, recall 1/2 -> 1/2; F1(b): 0 -> macro 1/4.
    assert s["macro_f1"] == pytest.approx(0.25)
    # Pixel majority would differ: 4 of 6 pixels are right under argmax per pixel.
    ids, means = aggregate_by_group(proba, groups)
    np.testing.assert_allclose(means, [[.6, .4], [.55, .45], [.4, .6]])


def test_crown_scores_checks_its_inputs():
    with pytest.raises(ValueError, match="pass classes=estimator.classes_"):
        crown_scores([1, 1, 2], np.full((3, 3), 1 / 3), [1, 1, 2])
    with pytest.raises(ValueError, match="group 1 holds labels"):
        crown_scores([1, 2, 2], np.full((3, 2), .5), [1, 1, 2])
    with pytest.raises(ValueError, match="y_true and groups must be 1-D"):
        crown_scores([1, 2], np.full((3, 2), .5), [1, 1, 2])


@requires_shared
@requires_idtrees
def test_crown_scores_on_the_loaded_crowns_equal_a_loop(data):
    rng = np.random.RandomState(0)
    proba = rng.dirichlet(np.ones(8), size=len(data.y))
    s = crown_scores(data.y, proba, data.crown_id, classes=np.arange(1, 9))
    right = 0
    for c in np.unique(data.crown_id):
        m = data.crown_id == c
        right += np.argmax(proba[m].mean(0)) + 1 == data.y[m][0]
    assert s["n_crowns"] == 885 and s["accuracy"] == pytest.approx(right / 885)
