"""Footprints in EPSG:4326: densified edges, split at the antimeridian, poles spanning all longitudes.

Bounds follow the STAC / RFC 7946 convention: ``west > east`` means the box crosses the antimeridian.
"""

from __future__ import annotations

import warnings

import numpy as np
import shapely
from pyproj import CRS

from lazymerge.crs import transformer
from lazymerge.grid import TargetGrid

WGS84 = CRS.from_epsg(4326)
WGS84_WKT = WGS84.to_wkt()
DENSIFY = 21  # points per box edge
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


def lonlat_bounds(crs: CRS, boxes: np.ndarray, k: int = DENSIFY) -> np.ndarray:
    """(west, south, east, north) in EPSG:4326 of each box (n, 4) given in ``crs``.

    Edges are densified to ``k`` points; a box containing a pole spans all longitudes up to that pole;
    a box crossing the antimeridian has west > east. Rows with no finite boundary point are NaN.
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
    for i in np.nonzero(~(east - west < 180.0) & np.isfinite(west))[0]:
        out[i, 0], out[i, 2] = _lon_interval(lon[i])
    return _with_poles(wkt, boxes, out)


def grid_lonlat_bounds(crs: CRS, xs: np.ndarray, ys: np.ndarray, k: int = DENSIFY) -> np.ndarray:
    """``lonlat_bounds`` of every cell of a rectilinear grid (cell edges ``xs`` and ``ys``, row-major cells),
    transforming each shared edge once: (len(ys)-1) * (len(xs)-1) rows."""
    crs = CRS.from_user_input(crs)
    wkt = crs.to_wkt()  # ~1 ms each time: once
    to_ll = transformer(wkt, WGS84_WKT)
    t = np.linspace(0.0, 1.0, k)[:-1]
    dense_x = np.append((xs[:-1, None] + t[None, :] * np.diff(xs)[:, None]).ravel(), xs[-1])
    dense_y = np.append((ys[:-1, None] + t[None, :] * np.diff(ys)[:, None]).ravel(), ys[-1])
    hx, hy = np.meshgrid(dense_x, ys)  # (ny, nx * (k-1) + 1)
    vx, vy = np.meshgrid(xs, dense_y)  # (ny * (k-1) + 1, nx)
    h_lon, h_lat = to_ll.transform(hx, hy, errcheck=False)
    v_lon, v_lat = to_ll.transform(vx, vy, errcheck=False)

    def edges(values: np.ndarray, reduce: np.ufunc) -> np.ndarray:
        """Reduce each edge's k points: (lines, segments)."""
        inner = reduce.reduce(values[:, :-1].reshape(len(values), -1, k - 1), axis=2)
        return reduce(inner, values[:, k - 1 :: k - 1])

    def cells(h: np.ndarray, v: np.ndarray, reduce: np.ufunc) -> np.ndarray:
        he, ve = edges(h, reduce), edges(v.T, reduce).T  # (ny, ncx), (ncy, nx)
        return reduce(reduce(he[:-1], he[1:]), reduce(ve[:, :-1], ve[:, 1:])).ravel()

    ok_h = np.isfinite(h_lon) & np.isfinite(h_lat)
    ok_v = np.isfinite(v_lon) & np.isfinite(v_lat)
    h_lon = np.where(ok_h, (h_lon + 180.0) % 360.0 - 180.0, np.nan)
    v_lon = np.where(ok_v, (v_lon + 180.0) % 360.0 - 180.0, np.nan)
    h_lat, v_lat = np.where(ok_h, h_lat, np.nan), np.where(ok_v, v_lat, np.nan)
    out = np.stack(
        [
            cells(h_lon, v_lon, np.fmin),
            cells(h_lat, v_lat, np.fmin),
            cells(h_lon, v_lon, np.fmax),
            cells(h_lat, v_lat, np.fmax),
        ],
        axis=1,
    )
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
    hard = np.nonzero(~(out[:, 2] - out[:, 0] < 180.0) & np.isfinite(out[:, 0]))[0]
    if len(hard):  # near the antimeridian: the full circular search, box by box
        out[hard] = lonlat_bounds(crs, boxes[hard], k)
    return _with_poles(wkt, boxes, out)


def chunk_footprints(grid: TargetGrid) -> np.ndarray:
    """(n, 4) EPSG:4326 (west, south, east, north) of every chunk of ``grid``, row-major, antimeridian- and
    pole-aware, densified along every chunk edge (each shared edge transformed once)."""
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
