"""Sampling a source window at fractional pixel coordinates, with GDAL's conventions.

Source pixel ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)`` and its centre is at ``(j + 0.5, i + 0.5)``.
``nearest`` takes the pixel containing the point (``floor``, as GDAL); ``bilinear`` and ``cubic`` weight
the 2 x 2 / 4 x 4 pixel centres around it (cubic: Keys, a = -0.5, as GDAL's ``cubic``). Neighbours that are
nodata or outside the window get no weight and the others are renormalised, as GDAL does. The planner
widens every source window by ``HALO[resampling]`` pixels so neighbours are always read, and a point only
gets a value when the pixel containing it is valid.
"""

from __future__ import annotations

import numpy as np

from lazymerge.errors import InvalidRequestError

RESAMPLING = ("nearest", "bilinear", "cubic", "average", "min", "max", "sum", "rms")
AREA = ("average", "min", "max", "sum", "rms")  # statistics over each target pixel's footprint
# extra source pixels a kernel reads around a point; None: half a target pixel (area resamplings)
HALO: dict[str, int | None] = {"nearest": 0, "bilinear": 1, "cubic": 2, **dict.fromkeys(AREA)}
_MIN_WEIGHT = 1e-5


def parse_resampling(name: object) -> str:
    if name in RESAMPLING:
        return str(name)
    raise InvalidRequestError(f"resampling {name!r} is not one of {list(RESAMPLING)}")


def _cubic(t: np.ndarray, a: float = -0.5) -> np.ndarray:
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def sample(
    data: np.ndarray,
    valid: np.ndarray,
    origin: tuple[int, int],
    col: np.ndarray,
    row: np.ndarray,
    resampling: str,
) -> tuple[np.ndarray, np.ndarray]:
    """(values, ok) at source pixel coordinates ``col``, ``row`` from the window ``data`` (top-left at
    ``origin`` in source pixels; ``valid`` marks its usable pixels). NaN coordinates give ok = False."""
    c = col - origin[1]
    r = row - origin[0]
    h, w = data.shape
    finite = np.isfinite(c) & np.isfinite(r)
    ci = np.floor(np.where(finite, c, -1)).astype("i8")
    ri = np.floor(np.where(finite, r, -1)).astype("i8")
    inside = finite & (ri >= 0) & (ri < h) & (ci >= 0) & (ci < w)
    ok = inside.copy()
    ok[inside] = valid[ri[inside], ci[inside]]
    out = np.zeros(col.shape, dtype="f8" if resampling != "nearest" else data.dtype)
    if resampling == "nearest":
        out[ok] = data[ri[ok], ci[ok]]
        return out, ok
    u, v = c[ok] - 0.5, r[ok] - 0.5
    j0, i0 = np.floor(u).astype("i8"), np.floor(v).astype("i8")
    fu, fv = u - j0, v - i0
    if resampling == "bilinear":
        offsets = (0, 1)
        wu = [1 - fu, fu]
        wv = [1 - fv, fv]
    else:
        offsets = (-1, 0, 1, 2)
        wu = [_cubic(fu - k) for k in offsets]
        wv = [_cubic(fv - k) for k in offsets]
    acc = np.zeros(len(u))
    weight = np.zeros(len(u))
    for a, dv in enumerate(offsets):
        ii = i0 + dv
        for b, du in enumerate(offsets):
            jj = j0 + du
            use = (ii >= 0) & (ii < h) & (jj >= 0) & (jj < w)
            use[use] = valid[ii[use], jj[use]]
            wgt = np.where(use, wv[a] * wu[b], 0.0)
            acc += wgt * np.where(use, data[np.clip(ii, 0, h - 1), np.clip(jj, 0, w - 1)], 0.0)
            weight += wgt
    good = np.abs(weight) > _MIN_WEIGHT
    values = np.where(good, acc / np.where(good, weight, 1.0), 0.0)
    out[ok] = values
    ok[ok] = good
    return out, ok
