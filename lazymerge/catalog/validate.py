"""What a source must satisfy to be mosaicked, checked by ``lazymerge index``, by the scan path and by the
DataFusion path (on /meta's rows).

A source is refused, with a message naming its path and what is wrong, when:

- its CRS is unknown to pyproj, or is not horizontal (vertical, e.g. EPSG:5703; geocentric; a compound
  CRS without a horizontal part; an engineering CRS);
- a level's ``spatial:transform`` is not six finite numbers with a non-zero determinant, or its
  ``spatial:shape``/``spatial:bbox`` contradict the array (``lazymerge.conventions.read_spatial``);
- an overview level's pixel size contradicts its ``multiscales`` scale (``check_overview``);
- its EPSG:4326 footprint cannot be computed or lies outside the CRS's area of use widened by
  ``AREA_TOLERANCE_DEG`` degrees (UTM tiles routinely reach a few degrees past their zone; in longitude the
  widening is that distance at the footprint's latitude, and within it of a pole longitude is not checked).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pyproj import CRS
from pyproj.exceptions import CRSError

from lazymerge.errors import ConventionError

AREA_TOLERANCE_DEG = 10.0  # how far a footprint may reach past its CRS's area of use
POINT_TOLERANCE_DEG = 1e-6  # slack of the /meta bbox test (points of the grid inside the stored bbox)


def source_crs(crs_input: Any, where: str) -> CRS:
    """The source's CRS, checked to be known and horizontal; ConventionError naming ``where`` otherwise."""
    try:
        crs = CRS.from_user_input(crs_input)
    except (CRSError, TypeError, ValueError) as exc:
        raise ConventionError(
            f"{where}: CRS {crs_input!r} is not one pyproj knows ({exc}); write a valid proj:code "
            "(e.g. EPSG:32618), proj:wkt2 or proj:projjson"
        ) from exc
    problem = horizontal_problem(crs)
    if problem:
        raise ConventionError(f"{where}: CRS {crs_input!r} {problem}; sources need a horizontal CRS")
    return crs


def horizontal_problem(crs: CRS) -> str | None:
    """Why ``crs`` cannot place pixels on the Earth's surface (None when it is horizontal)."""
    if crs.is_geocentric:
        return "is geocentric (x, y, z from the Earth's centre)"
    if crs.is_compound:
        if not any(sub.is_projected or sub.is_geographic for sub in crs.sub_crs_list):
            return "is compound without a horizontal part"
        return None
    if crs.is_vertical:
        return "is vertical (heights or depths only)"
    if not (crs.is_projected or crs.is_geographic):
        return f"is a {crs.type_name} CRS, neither projected nor geographic"
    return None


def footprint_problem(crs: CRS, bounds: np.ndarray) -> str | None:
    """Why an EPSG:4326 footprint (west, south, east, north; west > east across the antimeridian) cannot
    be right for a source in ``crs``: not finite, or outside the CRS's area of use (with tolerance)."""
    west, south, east, north = (float(v) for v in bounds)
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        return "its footprint cannot be transformed to EPSG:4326 (the transform puts it off the Earth)"
    area = crs.area_of_use
    if area is None:
        return None
    tol = AREA_TOLERANCE_DEG
    # longitude degrees shrink towards the poles: the same distance is more of them; near a pole, any
    polar = max(abs(south), abs(north)) >= 90.0 - tol
    tol_lon = tol / math.cos(math.radians(max(abs(south), abs(north)))) if not polar else 360.0
    if south < area.south - tol or north > area.north + tol or not _lon_inside(west, east, area, tol_lon):
        return (
            f"its footprint (lon {west:.4f}..{east:.4f}, lat {south:.4f}..{north:.4f}) lies outside the "
            f"area of use of {crs.name} (lon {area.west}..{area.east}, lat {area.south}..{area.north}, "
            f"widened by {tol} degrees): its transform or its CRS is wrong"
        )
    return None


def _lon_inside(west: float, east: float, area: Any, tol: float) -> bool:
    """Whether the circular longitude interval west..east lies in the area's, widened by ``tol``."""
    span_area = (area.east - area.west) % 360.0 or (360.0 if area.east != area.west else 0.0)
    if span_area + 2 * tol >= 360.0:
        return True
    span = (east - west) % 360.0
    if span == 0.0 and west != east:
        span = 360.0
    offset = (west - (area.west - tol)) % 360.0
    return offset + span <= span_area + 2 * tol + 1e-9


def check_overview(
    group_path: str,
    asset: str,
    scale: tuple[float, ...],
    base: tuple[float, ...],
    level: tuple[float, ...],
    shape: tuple[int, int],
) -> None:
    """ConventionError when an overview level's pixel size (its ``spatial:transform``) is not the base
    level's times its ``multiscales`` scale. Tolerance: one level pixel over the level's extent, so that
    GDAL-style overviews of odd sizes (ceil(w / scale) pixels) pass."""
    a0, b0, _, d0, e0, _ = base
    a, b, _, d, e, _ = level
    sy, sx = (float(scale[0]), float(scale[1])) if len(scale) > 1 else (float(scale[0]),) * 2
    ratio_x = math.hypot(a, d) / math.hypot(a0, d0)
    ratio_y = math.hypot(b, e) / math.hypot(b0, e0)
    tol = 1.0 / max(min(shape), 1) + 1e-6
    if abs(ratio_x / sx - 1) > tol or abs(ratio_y / sy - 1) > tol:
        raise ConventionError(
            f"band group {group_path!r}: overview level {asset!r} has pixels {ratio_y:.6g} x {ratio_x:.6g} "
            f"times the base level's (its spatial:transform {list(level)}), but its multiscales scale says "
            f"{sy:g} x {sx:g}; fix the level's spatial:transform or its multiscales scale and re-run "
            "`lazymerge index`"
        )


def meta_row_problems(transforms: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    """Per /meta row: True where transform_0..5 are not finite with a non-zero determinant or the shape
    is not positive (rows that ``lazymerge index`` would have refused)."""
    t = np.asarray(transforms, dtype="f8").reshape(-1, 6)
    s = np.asarray(shapes, dtype="f8").reshape(-1, 2)
    with np.errstate(all="ignore"):
        det = t[:, 0] * t[:, 4] - t[:, 1] * t[:, 3]
    ok = np.isfinite(t).all(axis=1) & np.isfinite(det) & (det != 0) & np.isfinite(s).all(axis=1)
    return ~(ok & (s >= 1).all(axis=1))


def grid_points(transforms: np.ndarray, shapes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x, y (n, 8) in each row's CRS of its grid's four corners and four edge midpoints."""
    t = np.asarray(transforms, dtype="f8").reshape(-1, 6)
    h, w = (np.asarray(shapes, dtype="f8").reshape(-1, 2)[:, i : i + 1] for i in range(2))
    cols = np.concatenate([0 * w, w, 0 * w, w, w / 2, w / 2, 0 * w, w], axis=1)
    rows = np.concatenate([0 * h, 0 * h, h, h, 0 * h, h, h / 2, h / 2], axis=1)
    xs = t[:, 0:1] * cols + t[:, 1:2] * rows + t[:, 2:3]
    ys = t[:, 3:4] * cols + t[:, 4:5] * rows + t[:, 5:6]
    return xs, ys


def points_outside(
    lon: np.ndarray, lat: np.ndarray, part_index: np.ndarray, part_bounds: np.ndarray
) -> np.ndarray:
    """Per row: True when a finite point (lon, lat: (n, k)) of the row lies in none of its footprint parts
    (``POINT_TOLERANCE_DEG`` slack); rows without parts have every finite point outside."""
    lon = np.where(np.isfinite(lon), (lon + 180.0) % 360.0 - 180.0, np.nan)
    tol = POINT_TOLERANCE_DEG
    inside = np.zeros(lon.shape, dtype=bool)
    pl, pt = lon[part_index], lat[part_index]
    b = part_bounds[:, :, None]
    hit = (pl >= b[:, 0] - tol) & (pl <= b[:, 2] + tol) & (pt >= b[:, 1] - tol) & (pt <= b[:, 3] + tol)
    seam = (np.abs(pl) >= 180.0 - tol) & ((b[:, 0] <= -180.0 + tol) | (b[:, 2] >= 180.0 - tol))
    hit |= seam & (pt >= b[:, 1] - tol) & (pt <= b[:, 3] + tol)  # 180 and -180 are one meridian
    np.logical_or.at(inside, part_index, hit)
    finite = np.isfinite(lon) & np.isfinite(lat)
    return (finite & ~inside).any(axis=1)


# Names zarr-datafusion-search 0.1.2 reads back from /meta (tests/catalog/test_meta_names.py writes and
# reads every character of this set); others (non-ASCII, % # ? " \ * ~ | < > [ ] { } ^ `) make it panic
# or lose the column, and "/" makes a nested group.
META_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 _.:'+&=!@$,;()-")


def column_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a /meta column (None when it can)."""
    bad = sorted(set(name) - META_NAME_CHARS)
    if not name or name in (".", "..") or bad:
        return (
            f'/meta column names may hold only ASCII letters, digits and " _.:\'+&=!@$,;()-" '
            f"({name!r} has {bad or 'no usable name'}): zarr-datafusion-search cannot read others back"
        )
    return None
