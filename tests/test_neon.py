"""NEON AOP reflectance HDF5 tiles (sklearn_mmlgnet.neon), on files in NEON's layout."""

from __future__ import annotations

import numpy as np
import pytest

h5py = pytest.importorskip("h5py", reason="the 'datasets' extra (h5py) is not installed")
rasterio = pytest.importorskip("rasterio", reason="the 'geo' extra (rasterio) is not installed")
from rasterio.crs import CRS  # noqa: E402
from rasterio.windows import Window  # noqa: E402

from sklearn_mmlgnet.io import read_scene  # noqa: E402
from sklearn_mmlgnet.neon import read_neon_reflectance, write_neon_geotiff  # noqa: E402

H, W, B = 12, 10, 5
X0, Y0 = 257000.0, 4112000.0  # the upper-left corner of the upper-left pixel
WAVELENGTHS = [381.5, 386.5, 391.5, 396.5, 401.5]
IGNORE = [(0, 0), (3, 7), (11, 9)]


def write_tile(path, *, site="SJER", epsg=b"32617", map_info=True, extent=None,
               attrs=("Scale_Factor", "Data_Ignore_Value"), data=None):
    """A reflectance tile as NEON publishes it (DP3.30006.001), 1 m pixels."""
    rng = np.random.RandomState(0)
    if data is None:
        data = rng.randint(0, 10000, size=(H, W, B)).astype(np.int16)
        for r, c in IGNORE:
            data[r, c, :] = -9999
    with h5py.File(path, "w") as f:
        refl = f.create_group(f"{site}/Reflectance")
        ds = refl.create_dataset("Reflectance_Data", data=data, chunks=(4, 4, B))
        values = {"Scale_Factor": 10000.0, "Data_Ignore_Value": -9999.0}
        for name in attrs:
            ds.attrs[name] = values[name]
        ds.attrs["Spatial_Extent_meters"] = extent or [X0, X0 + W, Y0 - H, Y0]
        ds.attrs["Cloud conditions"] = "Green (<10%) cloud cover"
        ds.attrs["Dimension_Labels"] = "Line, Sample, Wavelength"
        spectral = refl.create_group("Metadata/Spectral_Data")
        spectral.create_dataset("Wavelength", data=np.array(WAVELENGTHS))
        spectral.create_dataset("FWHM", data=np.full(B, 5.0))
        coords = refl.create_group("Metadata/Coordinate_System")
        if map_info:
            coords.create_dataset("Map_Info", data=(
                f"UTM,  1.000,  1.000,  {X0:.2f},  {Y0:.1f},  1.0000000e+00,  "
                "1.0000000e+00,  17,  North,  WGS-84,  units=Meters, 0").encode())
        if epsg is not None:
            coords.create_dataset("EPSG Code", data=epsg)
        coords.create_dataset("Proj4", data=b"+proj=UTM +zone=17 +ellps=WGS84 +datum=WGS84 "
                                            b"+units=m +no_defs")
    return path, data


@pytest.fixture
def tile(tmp_path):
    return write_tile(tmp_path / "NEON_D17_SJER_DP3_257000_4112000_reflectance.h5")


def test_reads_the_tile_scaled_with_nan_at_ignored_pixels(tile):
    path, data = tile
    scene = read_neon_reflectance(path)
    assert scene.hsi.dtype == np.float32 and scene.hsi.shape == (H, W, B)
    expected = data.astype(np.float32) / np.float32(10000)
    for r, c in IGNORE:
        assert np.isnan(scene.hsi[r, c]).all() and not scene.valid_mask[r, c]
        expected[r, c] = np.nan
    np.testing.assert_array_equal(scene.hsi, expected)
    assert scene.valid_mask.sum() == H * W - len(IGNORE)
    assert scene.wavelengths == WAVELENGTHS and scene.fwhm == [5.0] * B
    assert scene.site == "SJER" and scene.crs == CRS.from_epsg(32617)
    assert scene.lidar.shape == (H, W, 0) and scene.labels is None


def test_the_grid_puts_the_upper_left_corner_at_map_info(tile):
    scene = read_neon_reflectance(tile[0])
    t = scene.transform
    assert (t.a, t.b, t.c, t.d, t.e, t.f) == (1.0, 0.0, X0, 0.0, -1.0, Y0)
    assert t @ (0.5, 0.5) == (X0 + 0.5, Y0 - 0.5)  # pixel (0, 0)'s centre
    assert t @ (W, H) == (X0 + W, Y0 - H)


def test_spatial_extent_alone_gives_the_grid(tmp_path):
    path, _ = write_tile(tmp_path / "t.h5", map_info=False)
    assert read_neon_reflectance(path).transform == rasterio.Affine(1, 0, X0, 0, -1, Y0)


def test_map_info_disagreeing_with_the_extent_warns(tmp_path):
    path, _ = write_tile(tmp_path / "t.h5", extent=[X0 + 100, X0 + 100 + W, Y0 - H, Y0])
    with pytest.warns(UserWarning, match="Map_Info is used"):
        assert read_neon_reflectance(path).transform.c == X0


def test_the_crs_falls_back_to_proj4_then_map_info(tmp_path, recwarn):
    path, _ = write_tile(tmp_path / "t.h5", epsg=None)
    assert read_neon_reflectance(path).crs.to_epsg() == 32617
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]
    with h5py.File(path, "a") as f:
        del f["SJER/Reflectance/Metadata/Coordinate_System/Proj4"]
    assert read_neon_reflectance(path).crs == CRS.from_epsg(32617)  # UTM 17 North, WGS-84


@pytest.mark.parametrize("bands", [[1, 3], slice(1, 4), [4, 0, 2], (2,), np.array([0, 4])])
def test_bands_are_the_slices_of_the_full_read(tile, bands):
    full = read_neon_reflectance(tile[0])
    part = read_neon_reflectance(tile[0], bands=bands)
    idx = list(range(B))[bands] if isinstance(bands, slice) else list(bands)
    np.testing.assert_array_equal(part.hsi, full.hsi[..., idx])
    assert part.wavelengths == [WAVELENGTHS[i] for i in idx]
    assert part.band_names == [f"band {i + 1}" for i in idx]


@pytest.mark.parametrize("window", [(2, 3, 5, 4), ((2, 7), (3, 7)), Window(3, 2, 4, 5)])
def test_a_window_is_the_slice_of_the_full_read(tile, window):
    full = read_neon_reflectance(tile[0])
    part = read_neon_reflectance(tile[0], window=window, bands=[0, 2])
    np.testing.assert_array_equal(part.hsi, full.hsi[2:7, 3:7][..., [0, 2]])
    assert part.transform @ (0, 0) == (X0 + 3, Y0 - 2)
    np.testing.assert_array_equal(part.valid_mask, full.valid_mask[2:7, 3:7])


def test_the_geotiff_reads_back_with_read_scene(tile, tmp_path):
    out = write_neon_geotiff(tile[0], tmp_path / "sjer.tif")
    neon, scene = read_neon_reflectance(tile[0]), read_scene(out)
    np.testing.assert_array_equal(scene.hsi, neon.hsi)
    np.testing.assert_array_equal(scene.valid_mask, neon.valid_mask)
    assert scene.wavelengths == WAVELENGTHS
    assert scene.crs == neon.crs and scene.transform == neon.transform
    assert scene.band_names[0] == "band 1 (381.5 nm)"
    assert sorted(p.name for p in tmp_path.iterdir()) == [tile[0].name, "sjer.tif"]


def test_the_geotiff_of_some_bands_and_a_window(tile, tmp_path, monkeypatch):
    import sklearn_mmlgnet.neon as neon

    monkeypatch.setattr(neon, "BLOCK_ROWS", 2)  # several blocks of rows
    out = write_neon_geotiff(tile[0], tmp_path / "part.tif", bands=[4, 1],
                             window=((1, 8), (0, 9)))
    scene = read_scene(out)
    full = read_neon_reflectance(tile[0])
    np.testing.assert_array_equal(scene.hsi, full.hsi[1:8, 0:9][..., [4, 1]])
    assert scene.wavelengths == [WAVELENGTHS[4], WAVELENGTHS[1]]
    assert scene.transform @ (0, 0) == (X0, Y0 - 1)


def test_a_failed_conversion_leaves_nothing(tile, tmp_path, monkeypatch):
    import sklearn_mmlgnet.neon as neon

    def fail(self, win):
        raise RuntimeError("disk full")

    out = tmp_path / "sjer.tif"
    out.write_bytes(b"old")
    monkeypatch.setattr(neon._Tile, "read", fail)
    with pytest.raises(RuntimeError):
        write_neon_geotiff(tile[0], out)
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([tile[0].name, "sjer.tif"])


def test_the_output_cannot_be_the_input(tile):
    with pytest.raises(ValueError, match="destroy"):
        write_neon_geotiff(tile[0], tile[0])


def test_a_file_that_is_not_hdf5_is_named(tmp_path):
    path = tmp_path / "not.h5"
    path.write_bytes(b"GIF89a not a tile")
    with pytest.raises(ValueError, match=f"{path}.*not an HDF5 file"):
        read_neon_reflectance(path)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        read_neon_reflectance(tmp_path / "missing.h5")


def test_an_hdf5_file_without_reflectance_is_named(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("SJER/CHM/Data", data=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=f"{path} holds no <SITE>/Reflectance/Reflectance_Data"):
        read_neon_reflectance(path)


@pytest.mark.parametrize("missing", ["Scale_Factor", "Data_Ignore_Value"])
def test_missing_scale_or_ignore_attributes_are_named(tmp_path, missing):
    attrs = [a for a in ("Scale_Factor", "Data_Ignore_Value") if a != missing]
    path, _ = write_tile(tmp_path / "t.h5", attrs=attrs)
    with pytest.raises(ValueError, match=f"{path}.*no {missing} attribute"):
        read_neon_reflectance(path)


@pytest.mark.parametrize("bands", [[5], [-1], [0.5], [], "red"])
def test_bad_bands_are_refused_naming_the_file(tile, bands):
    with pytest.raises(ValueError, match=f"bands.*{tile[0].name}"):
        read_neon_reflectance(tile[0], bands=bands)


@pytest.mark.parametrize("window", [(0, 0, 13, 1), ((0, 5), (8, 11)), (0, 0, 0, 3), "all"])
def test_bad_windows_are_refused(tile, window):
    with pytest.raises(ValueError, match="window"):
        read_neon_reflectance(tile[0], window=window)


def test_wavelengths_of_another_length_are_refused(tmp_path):
    path, _ = write_tile(tmp_path / "t.h5", data=np.zeros((H, W, B + 1), np.int16))
    with pytest.raises(ValueError, match="rows, cols, bands"):
        read_neon_reflectance(path)


def test_missing_h5py_names_the_extra(tile, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_h5py(name, *args, **kwargs):
        if name == "h5py":
            raise ImportError("no h5py")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_h5py)
    with pytest.raises(ImportError, match=r"sklearn-mmlgnet\[datasets\]"):
        read_neon_reflectance(tile[0])


def test_an_unreadable_map_info_is_named(tmp_path):
    path, _ = write_tile(tmp_path / "t.h5")
    with h5py.File(path, "a") as f:
        coords = f["SJER/Reflectance/Metadata/Coordinate_System"]
        del coords["Map_Info"]
        coords.create_dataset("Map_Info", data=b"UTM, 1.0, one")
    with pytest.raises(ValueError, match=f"{path}: cannot read the Map_Info"):
        read_neon_reflectance(path)
