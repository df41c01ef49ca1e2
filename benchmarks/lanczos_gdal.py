"""Downsampling ``lanczos``: where lazymerge and GDAL 3.10 differ, and which of them is right.

When XSCALE/YSCALE < 1, GDAL's ``GWKResampleOptimizedLanczos`` mis-weights the centre tap of a pixel whose
centre falls exactly on a source pixel's centre (its weights carry a factor pi**4, the tap at distance 0
gets 1, or rounding noise when its accumulated distance is ~1e-16). This script warps random data as
``tests/test_kernel.py`` does (UTM 18, target pixels ``ratio`` times the source's, GDAL given the true
ratio as XSCALE/YSCALE) and prints, for the pixels in columns on a source pixel's centre and for the
others: how far lazymerge is from GDAL's exact warp, and from the textbook kernel computed with numpy.

    python benchmarks/lanczos_gdal.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from affine import Affine

from tests.support.gdal_cases import downsampled
from tests.support.gdal_oracle import around, warp_exact
from tests.support.textbook import lanczos_at


def compare(ratio: float, store: Path, src) -> str:
    got, transform = downsampled(store, src, ratio, "lanczos")
    scale = str(1 / ratio)
    gdal = warp_exact(src, "EPSG:32618", transform, got.shape, "lanczos", XSCALE=scale, YSCALE=scale)
    inner = np.zeros(got.shape, dtype=bool)
    inner[3:-3, 3:-3] = np.isfinite(gdal[3:-3, 3:-3])  # away from the block's and the source's edges
    cols = (
        (~Affine(*src.transform) @ transform) @ (np.arange(got.shape[1]) + 0.5, np.full(got.shape[1], 0.5))
    )[0]
    on_centre = np.zeros(got.shape, dtype=bool)
    on_centre[:, (cols - 0.5) % 1 == 0] = True
    textbook = np.full(got.shape, np.nan)
    for y, x in zip(*np.nonzero(inner), strict=True):
        textbook[y, x] = lanczos_at(src, transform, y, x, 1 / ratio)
    lines = []
    for name, where in (("on a centre", inner & on_centre), ("elsewhere", inner & ~on_centre)):
        if not where.any():
            lines.append(f"{ratio:>5} {name:<12} {0:>7}")
            continue
        vs_gdal = np.max(np.abs(got[where] - gdal[where]) / np.abs(gdal[where]))
        vs_book = np.max(np.abs(got[where] - textbook[where]) / np.abs(textbook[where]))
        gdal_book = np.max(np.abs(gdal[where] - textbook[where]) / np.abs(textbook[where]))
        lines.append(
            f"{ratio:>5} {name:<12} {where.sum():>7} {vs_gdal:16.1e} {vs_book:19.1e} {gdal_book:16.1e}"
        )
    return "\n".join(lines)


def main() -> None:
    import zarr
    from conftest import add_source

    from lazymerge.catalog.meta import write_meta

    src = around("a", "EPSG:32618", -75.0, 40.0, 10.0, 400, 5)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "s.zarr"
        root = zarr.open_group(zarr.storage.LocalStore(str(store)), mode="w")
        add_source(root, src.name, src.crs, src.transform, src.data, band="data")
        write_meta(store)
        print("lanczos, random float32 source, max relative difference over interior pixels")
        head = f"{'ratio':>5} {'columns':<12} {'pixels':>7} {'lazymerge-GDAL':>16}"
        print(f"{head} {'lazymerge-textbook':>19} {'GDAL-textbook':>16}")
        for ratio in (2.5, 3.0, 4.0):
            print(compare(ratio, store, src))


if __name__ == "__main__":
    from benchmarks.provenance import header

    print(header(), flush=True)
    main()
