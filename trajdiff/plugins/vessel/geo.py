"""Geodesy for vessel tracks: a local equirectangular metric frame, great circles on a sphere, polygons.

Over the tens of kilometres a vessel covers in an hour, the equirectangular projection around a
reference point (x east = R cos(lat0) dlon, y north = R dlat, angles in radians) is accurate to
well under a metre per kilometre and is exactly invertible; it is what the encoder and the
costs use. Distances for metrics use the haversine formula on a sphere of radius
``EARTH_RADIUS_M`` (the IUGG mean Earth radius, 6,371,008.8 m); motion along great circles of that
sphere (dead reckoning) works on unit vectors (`to_unit`, `from_unit`), exact at any latitude and range.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from trajdiff.errors import ConfigError, DataError

__all__ = [
    "EARTH_RADIUS_M",
    "KNOT_M_S",
    "from_local",
    "haversine_m",
    "inside_polygon",
    "load_polygons",
    "from_unit",
    "signed_distance",
    "to_local",
    "to_unit",
]

EARTH_RADIUS_M = 6_371_008.8
KNOT_M_S = 1852.0 / 3600.0  # one knot in metres per second (international nautical mile)
_M_PER_RAD = EARTH_RADIUS_M


def to_local(lat: np.ndarray, lon: np.ndarray, lat0: float, lon0: float) -> np.ndarray:
    """Degrees -> metres ``[..., 2]`` (east, north) in the equirectangular frame around (lat0, lon0)."""
    x = np.radians(np.asarray(lon, dtype=np.float64) - lon0) * _M_PER_RAD * np.cos(np.radians(lat0))
    y = np.radians(np.asarray(lat, dtype=np.float64) - lat0) * _M_PER_RAD
    return np.stack([x, y], axis=-1)


def from_local(xy: np.ndarray, lat0: float, lon0: float) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of `to_local`: metres ``[..., 2]`` -> (lat, lon) in degrees."""
    xy = np.asarray(xy, dtype=np.float64)
    lat = lat0 + np.degrees(xy[..., 1] / _M_PER_RAD)
    lon = lon0 + np.degrees(xy[..., 0] / (_M_PER_RAD * np.cos(np.radians(lat0))))
    return lat, lon


def haversine_m(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> np.ndarray:
    """Great-circle distance in metres between points given in degrees (arrays broadcast)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def to_unit(lat: Any, lon: Any) -> np.ndarray:
    """Degrees -> points on the unit sphere ``[..., 3]`` (x towards lat 0 lon 0, z towards the north pole)."""
    p, la = np.radians(np.asarray(lat, dtype=np.float64)), np.radians(np.asarray(lon, dtype=np.float64))
    return np.stack([np.cos(p) * np.cos(la), np.cos(p) * np.sin(la), np.sin(p)], axis=-1)


def from_unit(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of `to_unit`: vectors ``[..., 3]`` (any length) -> (lat, lon) in degrees."""
    v = np.asarray(v, dtype=np.float64)
    lat = np.degrees(np.arctan2(v[..., 2], np.hypot(v[..., 0], v[..., 1])))
    return lat, np.degrees(np.arctan2(v[..., 1], v[..., 0]))


# ------------------------------------------------------------------------------------------ polygons


def load_polygons(source: str | Path | dict[str, Any]) -> list[np.ndarray]:
    """Outer rings of every Polygon / MultiPolygon in a GeoJSON file or mapping, as ``[K, 2]``
    arrays of (lon, lat) degrees. Holes are ignored (a keep-out area is kept out whole)."""
    label = "GeoJSON mapping"
    if isinstance(source, (str, Path)):
        path = Path(source)
        label = str(source)
        if not path.is_file():
            raise ConfigError(f"{label}: keep-out GeoJSON file not found; check the path")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{label}: not valid JSON ({e}); export the keep-out areas as GeoJSON") from e
    else:
        data = source
    rings: list[np.ndarray] = []
    for geometry in _geometries(data, label):
        kind, coords = geometry.get("type"), geometry.get("coordinates")
        polygons = [coords] if kind == "Polygon" else coords if kind == "MultiPolygon" else None
        if polygons is None:
            continue
        for polygon in polygons:
            try:
                ring = np.asarray(polygon[0], dtype=np.float64)[:, :2]
            except (TypeError, ValueError, IndexError) as e:
                raise DataError(f"{label}: a {kind} has malformed coordinates ({e}); expected [[lon, lat], ...]") \
                    from e
            if len(ring) > 1 and np.array_equal(ring[0], ring[-1]):
                ring = ring[:-1]
            if len(ring) < 3 or not np.isfinite(ring).all():
                raise DataError(f"{label}: a {kind} ring has fewer than 3 distinct finite vertices; fix it")
            if np.abs(ring[:, 1]).max() > 90 or np.abs(ring[:, 0]).max() > 180:
                raise DataError(f"{label}: polygon coordinates must be [longitude, latitude] in degrees "
                                f"(GeoJSON order); got a vertex {ring[np.abs(ring).argmax() // 2].tolist()}")
            rings.append(ring)
    if not rings:
        raise DataError(f"{label}: holds no Polygon or MultiPolygon geometry; add the keep-out areas as polygons")
    return rings


def _geometries(data: Any, label: str) -> list[dict[str, Any]]:
    if not isinstance(data, dict) or "type" not in data:
        raise DataError(f"{label}: not a GeoJSON object (no 'type'); expected a FeatureCollection, Feature or geometry")
    kind = data["type"]
    if kind == "FeatureCollection":
        return [g for f in data.get("features", []) for g in _geometries(f, label)]
    if kind == "Feature":
        geometry = data.get("geometry")
        return _geometries(geometry, label) if geometry else []
    if kind == "GeometryCollection":
        return [g for item in data.get("geometries", []) for g in _geometries(item, label)]
    return [data]


def inside_polygon(points: Tensor, ring: Tensor) -> Tensor:
    """Even-odd (ray casting) test: points ``[..., 2]`` inside the polygon ``ring [K, 2]`` -> bool ``[...]``."""
    a, b = ring, torch.roll(ring, -1, dims=0)  # edges a -> b
    px, py = points[..., None, 0], points[..., None, 1]
    crosses = (a[:, 1] > py) != (b[:, 1] > py)
    dy = torch.where(b[:, 1] == a[:, 1], torch.ones_like(b[:, 1]), b[:, 1] - a[:, 1])
    x_at = a[:, 0] + (py - a[:, 1]) * (b[:, 0] - a[:, 0]) / dy
    return ((crosses & (px < x_at)).sum(-1) % 2) == 1


def signed_distance(points: Tensor, ring: Tensor) -> Tensor:
    """Distance from points ``[..., 2]`` to the boundary of ``ring [K, 2]`` (same units), negative
    inside: differentiable almost everywhere, its gradient points away from the polygon."""
    a, b = ring, torch.roll(ring, -1, dims=0)
    ab = b - a  # [K, 2]
    ap = points[..., None, :] - a  # [..., K, 2]
    t = ((ap * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-12)).clamp(0.0, 1.0)
    nearest = a + t[..., None] * ab
    distance = (points[..., None, :] - nearest).square().sum(-1).add(1e-9).sqrt().min(-1).values
    return torch.where(inside_polygon(points, ring), -distance, distance)
