"""Labelled polygons from a shapefile or GeoJSON, checked and brought onto a raster's CRS.

Every failure is a ValueError naming the file: JSON nested too deeply, features
that are not objects, invalid or non-finite geometries, an unknown ``crs``, class
values that are neither names nor integer codes.
"""

from __future__ import annotations

import json
import numbers

import numpy as np
import rasterio
import rasterio.features
import rasterio.warp

from ._raster import crs_text, is_gdal_error

__all__ = ["read_vector", "pick_field", "to_grid_crs"]

CLASS_FIELD_GUESSES = ("class", "class_name", "classname", "label", "category", "taxonid",
                       "species", "name", "landcover", "lc")


def finite_coords(geom, depth=0):
    """Whether every coordinate of a GeoJSON geometry is a finite number."""
    if depth > 8:
        return False
    if isinstance(geom, dict):
        parts = geom.get("geometries") if geom.get("type") == "GeometryCollection" else \
            [geom.get("coordinates")]
        return isinstance(parts, list) and all(finite_coords(p, depth + 1) for p in parts)
    if isinstance(geom, (list, tuple)):
        return all(finite_coords(p, depth + 1) for p in geom)
    return isinstance(geom, numbers.Real) and not isinstance(geom, bool) and np.isfinite(geom)


def _geojson_records(path):
    """(features as (geometry, properties), CRS or None, whether the CRS is RFC 7946's default)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ValueError(f"labels: {path} is nested too deeply to be GeoJSON.") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"labels: {path} is not GeoJSON ({exc}).") from None
    if not isinstance(data, dict):
        raise ValueError(f"labels: {path} holds a JSON {type(data).__name__}, not a GeoJSON "
                         "FeatureCollection.")
    features = [data] if data.get("type") == "Feature" else data.get("features")
    if not isinstance(features, list):
        raise ValueError(f"labels: {path} has no list of 'features'; a GeoJSON "
                         "FeatureCollection is expected.")
    records = []
    for i, f in enumerate(features):
        props = f.get("properties") if isinstance(f, dict) else None
        if not isinstance(f, dict) or not isinstance(props if props is not None else {}, dict):
            raise ValueError(f"labels: {path}: feature {i} is not a GeoJSON Feature object "
                             "with an object of 'properties'.")
        geom = f.get("geometry")
        if geom is None:
            continue
        if not (isinstance(geom, dict) and finite_coords(geom)
                and rasterio.features.is_valid_geom(geom)):
            raise ValueError(f"labels: {path}: feature {i}'s geometry is not a valid GeoJSON "
                             "geometry with finite coordinates.")
        records.append((geom, props or {}))
    fields = list(dict.fromkeys(k for _, props in records for k in props))
    crs_member = data.get("crs")
    if crs_member is None:
        return records, rasterio.crs.CRS.from_epsg(4326), True, fields
    name = crs_member.get("properties") if isinstance(crs_member, dict) else None
    name = name.get("name") if isinstance(name, dict) else None
    if not isinstance(name, str):
        raise ValueError(f"labels: {path}: its 'crs' member {str(crs_member)[:80]} names no CRS; "
                         'expected {"type": "name", "properties": {"name": "EPSG:32617"}}.')
    try:
        return records, rasterio.crs.CRS.from_user_input(name), False, fields
    except rasterio.errors.CRSError as exc:
        raise ValueError(f"labels: {path}: its crs {name[:80]!r} is not a CRS GDAL knows "
                         f"({exc}).") from None


def _shapefile_records(path):
    import struct

    import shapefile

    records, fields = [], []
    try:
        with shapefile.Reader(str(path)) as reader:
            fields = [f[0] for f in reader.fields[1:]]
            for rec in reader.iterShapeRecords():
                if rec.shape.shapeType != shapefile.NULL:
                    records.append((rec.shape.__geo_interface__, dict(zip(fields, rec.record))))
    except (shapefile.ShapefileException, struct.error, ValueError, TypeError, IndexError,
            KeyError, AttributeError, UnicodeDecodeError) as exc:
        raise ValueError(f"labels: {path} could not be read as a shapefile ({exc}).") from None
    crs, prj = None, path.with_suffix(".prj")
    if prj.is_file():
        try:
            crs = rasterio.crs.CRS.from_wkt(prj.read_text(errors="replace"))
        except rasterio.errors.CRSError as exc:
            raise ValueError(f"labels: {prj} is not a CRS GDAL knows ({exc}).") from None
    for i, (geom, _) in enumerate(records):
        if not (finite_coords(geom) and rasterio.features.is_valid_geom(geom)):
            raise ValueError(f"labels: {path}: shape {i} is not a valid geometry.")
    return records, crs, False, fields


def pick_field(fields, class_field, path):
    if class_field is not None:
        if class_field not in fields:
            raise ValueError(
                f"class_field {class_field!r} is not an attribute of {path}; it has {fields}.")
        return class_field
    lower = {f.lower(): f for f in fields}
    for guess in CLASS_FIELD_GUESSES:
        if guess in lower:
            return lower[guess]
    if len(fields) == 1:
        return fields[0]
    raise ValueError(
        f"{path} has attributes {fields}; say which one holds the class with class_field "
        "(--class-field on the command line).")


def to_grid_crs(geoms, crs, implicit, grid_crs, path, grid_name):
    """Geometries reprojected from the vector's CRS to the grid's (RFC 7946: WGS84 by default)."""
    if crs is None or grid_crs is None or crs == grid_crs or not geoms:
        return geoms
    if implicit:
        xy = np.array([c for g in geoms for c in _points(g)], float).reshape(-1, 2)
        if len(xy) and (np.abs(xy[:, 0]).max() > 180 or np.abs(xy[:, 1]).max() > 90):
            x, y = xy[np.argmax(np.abs(xy).max(axis=1))]
            raise ValueError(
                f"labels: {path} has no 'crs' member, so its coordinates are WGS84 longitude / "
                f"latitude (RFC 7946), but they reach ({x:g}, {y:g}), outside -180..180 / "
                f"-90..90. Export it in WGS84, or add a 'crs' member naming its CRS (the scene "
                f"{grid_name} is in {crs_text(grid_crs)}).")
    try:
        out = rasterio.warp.transform_geom(crs, grid_crs, geoms)
    except Exception as exc:  # noqa: BLE001 - PROJ raises several types
        if not is_gdal_error(exc) and not isinstance(exc, ValueError):
            raise
        raise ValueError(f"labels: {path} could not be reprojected from {crs_text(crs)} to "
                         f"{crs_text(grid_crs)} ({exc}).") from None
    if not all(finite_coords(g) for g in out):
        raise ValueError(f"labels: {path}: some polygons fall outside the area where "
                         f"{crs_text(grid_crs)} is defined.")
    return out


def _points(geom):
    stack = [geom.get("coordinates") or [g.get("coordinates") for g in geom.get("geometries", [])]]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)) and item and isinstance(item[0], numbers.Real):
            yield item[:2]
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def read_vector(path):
    """(records as (GeoJSON geometry, properties), CRS or None, whether the CRS is implied,
    attribute names).

    A ``.shp`` is read with pyshp (its CRS from the ``.prj``; none: None); anything
    else as GeoJSON, whose CRS is its ``crs`` member or else WGS84 (RFC 7946:
    ``implied`` is then True).
    """
    if path.suffix.lower() == ".shp":
        return _shapefile_records(path)
    return _geojson_records(path)
