"""Resampling kernels as textbooks define them, computed directly with numpy: the oracle where GDAL's
warper is wrong (its downsampling Lanczos, see ``lanczos_at``)."""

from __future__ import annotations

import numpy as np
from affine import Affine

from tests.support.gdal_oracle import Raster


def lanczos_at(src: Raster, transform: Affine, y: int, x: int, scale: float) -> float:
    """Lanczos (a = 3) widened by ``1 / scale`` at target pixel (y, x), separable, weights normalised."""
    col, row = (~Affine(*src.transform) @ transform) @ (x + 0.5, y + 0.5)

    reach = int(np.ceil(3 / scale)) + 1  # taps beyond 3 / scale pixels weigh 0

    def taps(v: float) -> tuple[np.ndarray, np.ndarray]:
        k = np.floor(v - 0.5) + np.arange(-reach, reach + 1)  # pixel k's centre is at k + 0.5
        t = (k + 0.5 - v) * scale
        return k.astype(int), np.where(np.abs(t) < 3, np.sinc(t) * np.sinc(t / 3), 0.0)

    (cols, wx), (rows, wy) = taps(col), taps(row)
    block = src.data[np.ix_(rows, cols)].astype("f8")
    return float(wy @ block @ wx / (wy.sum() * wx.sum()))
