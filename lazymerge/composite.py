"""How overlapping sources combine into one block."""

from __future__ import annotations

import numpy as np


def valid_mask(values: np.ndarray, nodata: float | None) -> np.ndarray:
    """Pixels that carry data: not NaN, and not the source's nodata value."""
    ok = np.ones(values.shape, dtype=bool)
    if values.dtype.kind == "f":
        ok &= ~np.isnan(values)
    if nodata is not None and not np.isnan(nodata):
        ok &= values != nodata
    return ok


def first_valid(out: np.ndarray, filled: np.ndarray, values: np.ndarray, valid: np.ndarray) -> bool:
    """Fill pixels not yet filled with valid values, in priority order; True once the block is full."""
    take = valid & ~filled
    out[take] = values[take]
    filled |= take
    return bool(filled.all())
