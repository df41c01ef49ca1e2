"""Does the plan miss a source, and how much does it over-include? Measured against GDAL's exact warper.

For each geometry case of the GDAL oracle tests (two UTM zones, EPSG:4326 -> 3857, a polar pair around
the North Pole, a mosaic across the antimeridian), a (chunk, source) pair is *needed* when GDAL's exact
warp of that source alone puts a pixel in that chunk. The plan must hold every needed pair (missed = 0);
the pairs it holds beyond those are its over-inclusion (they cost a window read that yields nothing).

    python benchmarks/plan_accuracy.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from lazymerge.api import plan
from tests.support.gdal_cases import CASES, CHUNK, SIZE, target_grid
from tests.support.gdal_oracle import mosaic_exact


def store_of(sources, path: Path) -> Path:
    import zarr

    from lazymerge.catalog.meta import write_meta
    from tests.support.stores import add_source

    root = zarr.open_group(zarr.storage.LocalStore(str(path)), mode="w")
    for s in sources:
        add_source(root, s.name, s.crs, s.transform, s.data)
    write_meta(path)
    return path


def main() -> None:
    print(f"{'case':<14} {'path':<5} {'chunks':>6} {'planned':>8} {'needed':>7} {'missed':>7} {'over':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for case, (sources, (crs, lon, lat, res)) in CASES.items():
            store = store_of(sources, Path(tmp) / f"{case}.zarr")
            bbox, transform = target_grid(crs, lon, lat, res)
            needed = set()
            for src in sources:
                hit = ~np.isnan(mosaic_exact([src], crs, transform, (SIZE, SIZE)))
                rows, cols = np.nonzero(hit)
                needed |= {
                    (int(r) // CHUNK[0], int(c) // CHUNK[1], src.name)
                    for r, c in zip(rows, cols, strict=True)
                }
            for datafusion in (True, False):
                p = plan(
                    str(store),
                    crs=crs,
                    bbox=bbox,
                    resolution=res,
                    chunk_size=CHUNK,
                    bands="data",
                    datafusion=datafusion,
                )
                t = p.table
                planned = set(
                    zip(
                        t["chunk_row"].to_pylist(),
                        t["chunk_col"].to_pylist(),
                        t["source_id"].to_pylist(),
                        strict=True,
                    )
                )
                over = len(planned - needed)
                path, chunks = "sql" if datafusion else "scan", p.grid.nchunks[0] * p.grid.nchunks[1]
                print(
                    f"{case:<14} {path:<5} {chunks:>6} "
                    f"{len(planned):>8} {len(needed):>7} {len(needed - planned):>7} "
                    f"{over:>5} ({100 * over / max(len(planned), 1):.0f}%)"
                )


if __name__ == "__main__":
    from benchmarks.provenance import header

    print(header(), flush=True)
    main()
