"""Footprints in EPSG:4326: densified edges, split at the antimeridian, poles spanning all longitudes.

Bounds follow the STAC / RFC 7946 convention: ``west > east`` means the box crosses the antimeridian.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import shapely
from pyproj import CRS

from lazymerge.crs import transformer
from lazymerge.grid import TargetGrid

WGS84 = CRS.from_epsg(4326)
WGS84_WKT = WGS84.to_wkt()
DENSIFY = 21  # points per box edge
SAMPLES = 3  # points per edge a grid's cells take first (``grid_lonlat_bounds``)
BEND = 0.05  # an edge bending more than this share of its extent takes DENSIFY points
_FULL_LON_GAP = 45.0  # a boundary whose largest longitude gap is smaller than this wraps the globe


def box_boundaries(boxes: np.ndarray, k: int = DENSIFY) -> tuple[np.ndarray, np.ndarray]:
    """x, y of ``k`` points per edge along each box (n, 4) -> two (n, 4k) arrays."""
    boxes = np.asarray(boxes, dtype="f8").reshape(-1, 4)
    x0, y0, x1, y1 = (boxes[:, i : i + 1] for i in range(4))
    t = np.linspace(0.0, 1.0, k)[None, :]
    one = np.ones_like(t)
    xs = np.concatenate([x0 + t * (x1 - x0), x1 * one, x1 - t * (x1 - x0), x0 * one], axis=1)
    ys = np.concatenate([y0 * one, y0 + t * (y1 - y0), y1 * one, y1 - t * (y1 - y0)], axis=1)
    return xs, ys


def _lon_interval(lon: np.ndarray) -> tuple[float, float]:
    """Smallest circular interval covering the longitudes: the complement of the largest gap."""
    lon = np.sort(lon[np.isfinite(lon)])
    if lon.size == 0:
        return np.nan, np.nan
    gaps = np.diff(lon)
    wrap = lon[0] + 360.0 - lon[-1]
    g = int(np.argmax(gaps)) if gaps.size else -1
    largest = gaps[g] if gaps.size else 0.0
    if max(largest, wrap) < _FULL_LON_GAP:
        return -180.0, 180.0
    if wrap >= largest:
        return float(lon[0]), float(lon[-1])
    return float(lon[g + 1]), float(lon[g])


def lonlat_bounds(crs: CRS, boxes: np.ndarray, k: int = DENSIFY, widen: bool = False) -> np.ndarray:
    """(west, south, east, north) in EPSG:4326 of each box (n, 4) given in ``crs``.

    Edges are densified to ``k`` points; a box containing a pole spans all longitudes up to that pole;
    a box crossing the antimeridian has west > east. Rows with no finite boundary point are NaN. With
    ``widen``, each box grows by twice the largest bend of its edges (``_bend``; its longitudes only where
    it does not cross the antimeridian): an edge's extremes between its points lie within it.
    """
    boxes = np.asarray(boxes, dtype="f8").reshape(-1, 4)
    crs = CRS.from_user_input(crs)
    wkt = crs.to_wkt()  # ~1 ms each time: once
    to_ll = transformer(wkt, WGS84_WKT)
    xs, ys = box_boundaries(boxes, k)
    lon, lat = to_ll.transform(xs, ys)
    lon = np.where(np.isfinite(lon) & np.isfinite(lat), ((lon + 180.0) % 360.0) - 180.0, np.nan)
    lat = np.where(np.isfinite(lon), lat, np.nan)
    out = np.full((len(boxes), 4), np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN
        south, north = np.nanmin(lat, axis=1), np.nanmax(lat, axis=1)
        west, east = np.nanmin(lon, axis=1), np.nanmax(lon, axis=1)
    out[:] = np.stack([west, south, east, north], axis=1)
    # spanning less than 180 degrees, [min, max] is the smallest circular interval; only boxes near the
    # antimeridian or a pole need the circular search
    wraps = ~(east - west < 180.0) & np.isfinite(west)
    for i in np.nonzero(wraps)[0]:
        out[i, 0], out[i, 2] = _lon_interval(lon[i])
    if widen:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # edges with no finite inner point: none
            pad_lon, pad_lat = (
                2 * np.nanmax(_bend(v.reshape(len(v), 4, k)), axis=1) + 1e-9 for v in (lon, lat)
            )
        pad_lon = np.where(wraps | ~np.isfinite(pad_lon), 0.0, pad_lon)
        pad_lat = np.where(np.isfinite(pad_lat), pad_lat, 0.0)
        out[:, 0], out[:, 2] = np.maximum(out[:, 0] - pad_lon, -180.0), np.minimum(out[:, 2] + pad_lon, 180.0)
        out[:, 1], out[:, 3] = np.maximum(out[:, 1] - pad_lat, -90.0), np.minimum(out[:, 3] + pad_lat, 90.0)
    return _with_poles(wkt, boxes, out)


def grid_lonlat_bounds(
    crs: CRS, xs: np.ndarray, ys: np.ndarray, k: int = DENSIFY, samples: int = SAMPLES
) -> np.ndarray:
    """``lonlat_bounds`` of every cell of a rectilinear grid (cell edges ``xs`` and ``ys``, row-major cells),
    transforming each shared edge once: (len(ys)-1) * (len(xs)-1) rows.

    Edges are sampled at ``samples`` points first, and each cell's bounds widened by twice its edges' bend
    (``_shared_edges``). A cell with an edge bending more than ``BEND`` of its extent (near a pole), a point
    outside the projection, or spanning 180 degrees or more (the antimeridian) takes ``lonlat_bounds`` with
    ``k`` points per edge instead. Each cell's bounds depend on its own edges only, whatever else the call
    holds. ``samples`` = ``k``: ``k`` points per edge, as ``pyproj``'s ``transform_bounds`` (neither bends
    nor widening; a benchmark's baseline)."""
    crs = CRS.from_user_input(crs)
    wkt = crs.to_wkt()  # ~1 ms each time: once
    to_ll = transformer(wkt, WGS84_WKT)
    gx0, gy0 = np.meshgrid(xs[:-1], ys[1:])
    gx1, gy1 = np.meshgrid(xs[1:], ys[:-1])
    boxes = np.stack(
        [
            np.minimum(gx0, gx1).ravel(),
            np.minimum(gy0, gy1).ravel(),
            np.maximum(gx0, gx1).ravel(),
            np.maximum(gy0, gy1).ravel(),
        ],
        axis=1,
    )
    if samples < min(3, k):  # an edge's bend needs a point between its ends
        raise ValueError(
            f"samples={samples}: the edges' bend needs 3 points an edge or more (default {SAMPLES})"
        )
    out, bent = _shared_edges(to_ll, xs, ys, samples, widen=samples < k)
    hard = np.nonzero(bent | ~(out[:, 2] - out[:, 0] < 180.0))[0]  # a cell's own edges decide: any run
    if len(hard):  # box by box, densified; near the antimeridian the full circular search
        out[hard] = lonlat_bounds(crs, boxes[hard], k, widen=samples < k)
    return _with_poles(wkt, boxes, out)


def _shared_edges(
    to_ll: Any, xs: np.ndarray, ys: np.ndarray, k: int, widen: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's (west, south, east, north) from ``k`` points per edge, each shared edge transformed once,
    and whether the cell needs more (``grid_lonlat_bounds``). With ``widen``, the bounds are widened by
    twice the bend of each edge (the largest distance of a point from the chord of its neighbours, per
    coordinate): a smooth edge's extremes between points lie within it; an edge bending more than
    ``BEND`` of its extent, or a point outside the projection, needs more. Without, only the latter."""
    t = np.linspace(0.0, 1.0, k)[:-1]
    dense_x = np.append((xs[:-1, None] + t[None, :] * np.diff(xs)[:, None]).ravel(), xs[-1])
    dense_y = np.append((ys[:-1, None] + t[None, :] * np.diff(ys)[:, None]).ravel(), ys[-1])
    hx, hy = np.meshgrid(dense_x, ys)  # (ny, nx * (k-1) + 1)
    vx, vy = np.meshgrid(xs, dense_y)  # (ny * (k-1) + 1, nx)
    h_lon, h_lat = to_ll.transform(hx, hy, errcheck=False)
    v_lon, v_lat = to_ll.transform(vx, vy, errcheck=False)
    ok_h = np.isfinite(h_lon) & np.isfinite(h_lat)
    ok_v = np.isfinite(v_lon) & np.isfinite(v_lat)
    h_lon = np.where(ok_h, (h_lon + 180.0) % 360.0 - 180.0, np.nan)
    v_lon = np.where(ok_v, (v_lon + 180.0) % 360.0 - 180.0, np.nan)
    h_lat, v_lat = np.where(ok_h, h_lat, np.nan), np.where(ok_v, v_lat, np.nan)

    def segments(values: np.ndarray) -> np.ndarray:
        """Each edge's k points: (lines, segments, k)."""
        inner = values[:, :-1].reshape(len(values), -1, k - 1)
        return np.concatenate([inner, values[:, k - 1 :: k - 1][:, :, None]], axis=2)

    lon = segments(h_lon), segments(v_lon.T)  # horizontal edges (ny, ncx, k), vertical (nx, ncy, k)
    lat = segments(h_lat), segments(v_lat.T)
    bounds, hard = [], []
    for e in range(2):  # horizontal edges, then vertical
        with np.errstate(invalid="ignore"):
            lo = np.fmin.reduce(lon[e], axis=2), np.fmin.reduce(lat[e], axis=2)
            hi = np.fmax.reduce(lon[e], axis=2), np.fmax.reduce(lat[e], axis=2)
            size = np.maximum(hi[0] - lo[0], hi[1] - lo[1])
            if widen:
                bend = _bend(lon[e]), _bend(lat[e])
                pad = [2 * b + 1e-6 * size + 1e-9 for b in bend]  # and room for the cubic terms
                bent = np.maximum(*bend) > BEND * size
            else:
                pad, bent = [np.zeros(size.shape)] * 2, np.zeros(size.shape, dtype=bool)
        missing = np.isnan(lon[e]).any(axis=2)
        bounds.append((lo[0] - pad[0], lo[1] - pad[1], hi[0] + pad[0], hi[1] + pad[1]))
        hard.append(bent | missing)

    def cells(he: np.ndarray, ve: np.ndarray, reduce: np.ufunc) -> np.ndarray:
        """Per-edge values (ny, ncx) and (nx, ncy) -> per cell, reduced over its four edges."""
        ve = ve.T
        return reduce(reduce(he[:-1], he[1:]), reduce(ve[:, :-1], ve[:, 1:])).ravel()

    reducers = (np.fmin, np.fmin, np.fmax, np.fmax)  # west, south, east, north
    out = np.stack([cells(bounds[0][i], bounds[1][i], reducers[i]) for i in range(4)], axis=1)
    return out, cells(hard[0], hard[1], np.logical_or)


def _bend(edges: np.ndarray) -> np.ndarray:
    """(lines, segments) largest distance of an edge's inner points from the chord of their neighbours."""
    mid = edges[:, :, 1:-1] - (edges[:, :, :-2] + edges[:, :, 2:]) / 2
    return np.abs(mid).max(axis=2)


def chunk_footprints(grid: TargetGrid) -> np.ndarray:
    """(n, 4) EPSG:4326 (west, south, east, north) of every chunk of ``grid``, row-major, antimeridian- and
    pole-aware, holding every point of its chunk (``grid_lonlat_bounds``: shared edges transformed once)."""
    return grid_lonlat_bounds(grid.crs, *grid.chunk_edges())


def _with_poles(wkt: str, boxes: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Boxes (in the CRS of ``wkt``) containing a pole reach it and span every longitude."""
    from_ll = transformer(WGS84_WKT, wkt)
    for pole_lat in (90.0, -90.0):
        px, py = from_ll.transform(0.0, pole_lat, errcheck=False)
        if not (np.isfinite(px) and np.isfinite(py)):
            continue
        inside = (boxes[:, 0] <= px) & (px <= boxes[:, 2]) & (boxes[:, 1] <= py) & (py <= boxes[:, 3])
        out[inside, 0], out[inside, 2] = -180.0, 180.0
        if pole_lat > 0:
            out[inside, 3] = 90.0
        else:
            out[inside, 1] = -90.0
    return out


def split_parts(bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split antimeridian-crossing (west > east) bounds into two boxes.

    Returns ``(index, parts)``: for each part the row of ``bounds`` it came from and its
    (xmin, ymin, xmax, ymax). Rows that are NaN are dropped.
    """
    bounds = np.asarray(bounds, dtype="f8").reshape(-1, 4)
    ok = np.all(np.isfinite(bounds), axis=1)
    idx = np.nonzero(ok)[0]
    b = bounds[ok]
    cross = b[:, 0] > b[:, 2]
    east_part = b.copy()
    east_part[cross, 2] = 180.0
    west_part = b[cross].copy()
    west_part[:, 0] = -180.0
    index = np.concatenate([idx, idx[cross]])
    parts = np.concatenate([east_part, west_part])
    order = np.argsort(index, kind="stable")
    return index[order], parts[order]


def bounds_to_wkb(bounds: np.ndarray) -> list[bytes]:
    """WKB Polygon per row, or a MultiPolygon of two boxes where the row crosses the antimeridian."""
    out = []
    for west, south, east, north in np.asarray(bounds, dtype="f8").reshape(-1, 4):
        if west <= east:
            geom = shapely.box(west, south, east, north)
        else:
            geom = shapely.MultiPolygon(
                [shapely.box(west, south, 180.0, north), shapely.box(-180.0, south, east, north)]
            )
        out.append(shapely.to_wkb(geom, byte_order=1))
    return out


def wkb_parts(wkb: list[bytes | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode WKB footprints into per-part bounds.

    Returns ``(index, parts, bad)``: the row and (xmin, ymin, xmax, ymax) of every polygon part, and
    the rows whose value is not valid WKB (empty when all are valid).
    """
    geoms = shapely.from_wkb(np.asarray(wkb, dtype=object), on_invalid="ignore")
    bad = np.nonzero(shapely.is_missing(geoms) | shapely.is_empty(geoms))[0]
    parts, index = shapely.get_parts(geoms, return_index=True)
    return index.astype("i8"), shapely.bounds(parts).reshape(-1, 4), bad
