"""A GDAL VRT mosaic of classification maps: ``mmlgnet predict --mosaic``.

GDAL's ``BuildVRT`` needs GDAL's Python bindings, which rasterio does not ship; a
mosaic of maps on one CRS and pixel size is a short XML file, written here.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from ._io import gdal_env, open_raster, write_text

__all__ = ["check_mosaic", "write_mosaic"]


def check_mosaic(paths, role):
    """The rasters share a CRS and a north-up pixel size, as a VRT mosaic needs."""
    grids = []
    with gdal_env():
        for p in paths:
            with open_raster(p, role) as src:
                grids.append((src.crs, src.transform))
    crs0, t0 = grids[0]
    for p, (crs, t) in zip(paths, grids):
        if t.b or t.d or crs != crs0 or not math.isclose(t.a, t0.a, rel_tol=1e-6) \
                or not math.isclose(t.e, t0.e, rel_tol=1e-6):
            raise ValueError(
                f"--mosaic: {role} {p} ({crs}, pixel {t.a:g} x {-t.e:g}) and {paths[0]} ({crs0}, "
                f"pixel {t0.a:g} x {-t0.e:g}) differ in CRS or pixel size (or are rotated); a VRT "
                "mosaic needs one. Leave out --mosaic, or reproject the rasters onto one grid "
                "first (gdalwarp -t_srs -tr).")


def write_mosaic(path, maps):
    """Write a GDAL VRT that shows ``maps`` (same CRS and pixel size) as one layer.

    Each map is a source placed at its offset in the union of their extents, its
    nodata (0) transparent so that neighbours show through; the VRT carries the first
    map's colour table and class names, so QGIS opens it as the maps themselves.
    Paths are relative to the VRT when they can be.

    Returns
    -------
    path : Path
    """
    import rasterio

    path = Path(path).expanduser()
    check_mosaic([str(m) for m in maps], "map")
    with gdal_env(), contextlib.ExitStack() as stack:
        srcs = [stack.enter_context(rasterio.open(m)) for m in maps]
        ref = srcs[0]
        xres, yres = ref.transform.a, -ref.transform.e
        left, top = min(s.bounds.left for s in srcs), max(s.bounds.top for s in srcs)
        width = round((max(s.bounds.right for s in srcs) - left) / xres)
        height = round((top - min(s.bounds.bottom for s in srcs)) / yres)
        names = {int(k): v for k, v in json.loads(ref.tags().get("CLASS_NAMES", "{}")).items()}
        try:
            colours = ref.colormap(1)
        except ValueError:  # a map without a colour table
            colours = {}
        dtype = {"uint8": "Byte", "uint16": "UInt16"}.get(ref.dtypes[0], "Int32")
        top_code = max([*names, 0])
        lines = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
                 f"  <SRS>{escape(ref.crs.to_wkt())}</SRS>" if ref.crs else "",
                 f"  <GeoTransform>{left!r}, {xres!r}, 0.0, {top!r}, 0.0, {-yres!r}"
                 "</GeoTransform>",
                 "  <Metadata>",
                 f'    <MDI key="CLASS_NAMES">{escape(json.dumps(names))}</MDI>',
                 "  </Metadata>",
                 f'  <VRTRasterBand dataType="{dtype}" band="1">',
                 "    <NoDataValue>0</NoDataValue>",
                 "    <ColorInterp>Palette</ColorInterp>" if colours else "",
                 "    <CategoryNames>",
                 *(f"      <Category>{escape(names.get(c, ''))}</Category>"
                   for c in range(top_code + 1)),
                 "    </CategoryNames>"]
        if colours:
            lines += ["    <ColorTable>",
                      *(f'      <Entry c1="{r}" c2="{g}" c3="{b}" c4="{a}"/>'
                        for r, g, b, a in (colours.get(c, (0, 0, 0, 0))
                                           for c in range(max(top_code + 1, 2)))),
                      "    </ColorTable>"]
        for m, s in zip(maps, srcs):
            try:
                rel, relative = os.path.relpath(Path(m).resolve(), path.resolve().parent), 1
            except ValueError:  # another drive (Windows): the absolute path
                rel, relative = str(Path(m).resolve()), 0
            x_off = round((s.bounds.left - left) / xres, 6)
            y_off = round((top - s.bounds.top) / yres, 6)
            lines += ["    <ComplexSource>",
                      f"      <SourceFilename relativeToVRT={quoteattr(str(relative))}>"
                      f"{escape(rel)}</SourceFilename>",
                      "      <SourceBand>1</SourceBand>",
                      f'      <SrcRect xOff="0" yOff="0" xSize="{s.width}" ySize="{s.height}"/>',
                      f'      <DstRect xOff="{x_off:g}" yOff="{y_off:g}" xSize="{s.width}" '
                      f'ySize="{s.height}"/>',
                      "      <NODATA>0</NODATA>",
                      "    </ComplexSource>"]
        lines += ["  </VRTRasterBand>", "</VRTDataset>", ""]
    return write_text(path, "\n".join(line for line in lines if line))
