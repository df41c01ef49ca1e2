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


def halo_pixels(resampling: str, ratio: float) -> int:
    """Source pixels a resampling reads beyond the pixel containing a target pixel centre, where one
    target pixel spans ``ratio`` source pixels."""
    if not math.isfinite(ratio):
        ratio = 1.0
    if resampling in AREA:  # half a target pixel
        return math.ceil(0.5 * ratio)
    # GDAL snaps the scale to 1/n within 5%, so the kernel can reach 5% further than the ratio says
    return math.ceil(RADIUS[CODES[resampling]] * max(1.0, 1.06 * ratio))
