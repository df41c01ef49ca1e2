"""Resampling names (GDAL's) and how far each reaches into the source around a target pixel.

Interpolating kernels (``bilinear``, ``cubic``, ``cubic_spline``, ``lanczos``) weight the source pixel
centres within their radius of the point, widened by the downsampling ratio as GDAL's are; area
resamplings take statistics over each target pixel's footprint. The sampling itself is compiled
(``kernel.loops``). The planner widens every source window by ``halo_pixels`` so neighbours are always
read: no seams at source-chunk, source or target-chunk boundaries.
"""

from __future__ import annotations

import math

from lazymerge.errors import InvalidRequestError
from lazymerge.kernel.loops import AREA, CODES, RADIUS

RESAMPLING = (*CODES, *AREA)


def parse_resampling(name: object) -> str:
    if name in RESAMPLING:
        return str(name)
    raise InvalidRequestError(f"resampling {name!r} is not one of {list(RESAMPLING)}")


def parse_band_resampling(value: object) -> str | dict[str, str]:
    """``resampling=``: one name for every band, or a dict of band name -> name with ``"*"`` for the
    others (default ``nearest``), e.g. ``{"SCL": "nearest", "*": "bilinear"}``."""
    if isinstance(value, dict):
        if not value or not all(isinstance(k, str) for k in value):
            raise InvalidRequestError(
                f"resampling {value!r} must map band names (or '*') to resampling names, e.g. "
                "{'SCL': 'nearest', '*': 'bilinear'}"
            )
        return {k: parse_resampling(v) for k, v in value.items()}
    return parse_resampling(value)


def band_resampling(resampling: str | dict[str, str], band: str | None) -> str:
    """The resampling of ``band`` under ``resampling=``."""
    if isinstance(resampling, str):
        return resampling
    return resampling.get(str(band), resampling.get("*", "nearest"))


def halo_pixels(resampling: str, ratio: float) -> int:
    """Source pixels a resampling reads beyond the pixel containing a target pixel centre, where one
    target pixel spans ``ratio`` source pixels."""
    if not math.isfinite(ratio):
        ratio = 1.0
    if resampling in AREA:  # half a target pixel
        return math.ceil(0.5 * ratio)
    # GDAL snaps the scale to 1/n within 5%, so the kernel can reach 5% further than the ratio says
    return math.ceil(RADIUS[CODES[resampling]] * max(1.0, 1.06 * ratio))
