"""The embedded default job: the seed's four-tile, two-zone mosaic, merged at 10 m and 20 m."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, TypeVar

import numpy as np
import zarr

from lazymerge.catalog.conventions import (
    Overview,
    ProjAttrs,
    SpatialAttrs,
    write_multiscales,
    write_proj,
    write_spatial,
)

if TYPE_CHECKING:
    from lazymerge.result import MergeResult

T = TypeVar("T")


class SeedTarget(TypedDict):
    """The seed's target area: ``merge(store, **SEED_TARGET, resolution=...)``."""

    crs: str
    bbox: tuple[float, float, float, float]


# The seed's tiles: two in UTM 18N (left), two in UTM 17N covering the adjacent area to their east.
SEED_TILES = [
    ("utm18n_tile_a", "EPSG:32618", (500000.0, 5990000.0, 505000.0, 5995000.0), 100.0),
    ("utm18n_tile_c", "EPSG:32618", (500000.0, 5995000.0, 505000.0, 6000000.0), 300.0),
    ("utm17n_tile_b", "EPSG:32617", (895094.0, 6006920.0, 900511.0, 6012337.0), 200.0),
    ("utm17n_tile_d", "EPSG:32617", (894669.0, 6011912.0, 900086.0, 6017329.0), 400.0),
]
SEED_TARGET: SeedTarget = {"crs": "EPSG:32618", "bbox": (500000.0, 5990000.0, 508000.0, 6000000.0)}


def build_seed_store(path: str | Path, resolution: float = 10.0) -> Path:
    """Write the seed's store: each tile a group with a ``data`` band group of two levels (10 m, 20 m)."""
    path = Path(path)
    root = zarr.open_group(zarr.storage.LocalStore(str(path)), mode="w")
    for name, crs, (xmin, ymin, xmax, ymax), fill in SEED_TILES:
        band = root.create_group(name).create_group("data")
        for level, factor in (("0", 1), ("1", 2)):
            res = resolution * factor
            h, w = int((ymax - ymin) / resolution) // factor, int((xmax - xmin) / resolution) // factor
            arr = band.create_array(level, shape=(h, w), dtype="f4", chunks=(256, 256))
            arr[:] = fill
            write_spatial(
                arr,
                SpatialAttrs(("y", "x"), (res, 0.0, xmin, 0.0, -res, ymax), (xmin, ymin, xmax, ymax), (h, w)),
            )
            write_proj(arr, ProjAttrs(code=crs))
        write_multiscales(band, [Overview("0"), Overview("1", (2.0, 2.0), (0.5, 0.5), derived_from="0")])
    return path


def _timed(say: Callable[[str], None], label: str, fn: Callable[[], T]) -> T:
    t0 = time.perf_counter()
    out = fn()
    say(f"  {label:<44} {time.perf_counter() - t0:7.2f} s")
    return out


def run_demo(out: str | Path = "demo-output", say: Callable[[str], None] = print) -> dict[str, object]:
    """Build the seed store under ``out``, index it, merge at 10 m and 20 m with DataFusion and local
    threads, write both results as Zarr (spatial:/proj: attributes) and a two-panel PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lazymerge.api import merge
    from lazymerge.catalog.meta import write_meta
    from lazymerge.kernel.warm import warm_request

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store = out / "sources.zarr"
    shutil.rmtree(store, ignore_errors=True)
    say(f"lazymerge demo -> {out.resolve()}")
    _timed(say, "build the seed's 4-tile store (2 UTM zones)", partial(build_seed_store, store))
    meta = _timed(say, "write /meta (lazymerge index)", partial(write_meta, store))
    say(f"    /meta: {meta.num_rows} sources, columns {meta.column_names}")
    results: dict[float, tuple[MergeResult, np.ndarray]] = {}
    for res, chunks in ((10.0, (256, 256)), (20.0, (128, 128))):
        result = _timed(
            say,
            f"plan {res:g} m (DataFusion SQL over /meta)",
            partial(
                merge,
                str(store),
                resolution=res,
                chunk_size=chunks,
                bands="data",
                datafusion=True,
                sortby="id",
                **SEED_TARGET,
            ),
        )
        levels = sorted(set(result.plan.table["level"].to_pylist()))
        say(f"    {result.plan!r}; overview level(s) used: {levels}")
        if not results:  # numba compiles the loops this merge needs once (then loads them from its cache)
            p = result.plan
            dtypes = p.levels["dtype"].to_pylist()
            compile_loops = partial(warm_request, dtypes, p.dtype, p.band_resampling()[0])
            _timed(say, "compile the kernel (one time, numba's cache)", compile_loops)
        target = out / f"mosaic_{int(res)}m.zarr"
        shutil.rmtree(target, ignore_errors=True)
        _timed(say, f"compute + write {target.name} (threads)", partial(result.to_zarr, str(target)))
        data = np.asarray(zarr.open_array(str(target), mode="r")[:])
        say(
            f"    shape {data.shape}, chunks {result.array.chunks}, corners TL/TR/BL/BR = "
            f"{data[0, 0]:g}/{data[0, -1]:g}/{data[-1, 0]:g}/{data[-3, -3]:g}, "
            f"NaN pixels {int(np.isnan(data).sum())}"
        )
        results[res] = (result, data)
    fig, axes = plt.subplots(1, 2, figsize=(16, 5))
    for ax, (res, (result, data)) in zip(axes, results.items(), strict=True):
        x0, y0, x1, y1 = result.grid.bbox
        im = ax.imshow(data, cmap="viridis", vmin=100, vmax=400, extent=(x0, x1, y0, y1))
        kind = "base" if res == 10.0 else "2x overview"
        ax.set_title(f"{res:g} m — {kind} ({data.shape[0]}x{data.shape[1]})")
        ax.set_aspect("equal")
    fig.colorbar(im, ax=axes, shrink=0.8)
    fig.suptitle("Overview selection: 10 m uses base, 20 m uses 2x overview", fontsize=14)
    png = out / "mosaic.png"
    fig.savefig(png, dpi=80)
    plt.close(fig)
    say(f"  wrote {png}")
    return {"store": store, "png": png, "results": results}
