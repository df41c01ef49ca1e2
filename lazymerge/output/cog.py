"""Writing a merge result as a Cloud-Optimized GeoTIFF, streamed block by block.

The blocks are rendered by the chunk kernel (``merge_block``, a few at a time in a thread pool) and written
window by window into a tiled GeoTIFF, so that only the blocks in flight and GDAL's block cache are ever in
memory, never the whole mosaic. GDAL's COG driver then copies that file into the final layout (tiles, internal
overviews, nodata, CRS and transform), also streaming. Everything happens in a temporary directory next to the
target and the finished file is renamed into place: a file at ``path`` is always a complete COG. An object-
store URL is written locally first, then uploaded with obstore.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lazymerge.errors import OutputError
from lazymerge.kernel.block import merge_block

if TYPE_CHECKING:
    from lazymerge.result import MergeResult

# GDAL's overview resamplings, by the merge's resampling names; the others (sum, min, max, med, q1, q3)
# build overviews by nearest, which keeps the mosaic's own values.
OVERVIEW_RESAMPLING = {
    "nearest": "NEAREST",
    "bilinear": "BILINEAR",
    "cubic": "CUBIC",
    "cubic_spline": "CUBICSPLINE",
    "lanczos": "LANCZOS",
    "average": "AVERAGE",
    "rms": "RMS",
    "mode": "MODE",
}
GDAL_CACHE_MB = 256  # GDAL's block cache while writing: partial tiles wait there, whatever the mosaic's size


def overview_count(shape: tuple[int, int], blocksize: int, overviews: int | str) -> int:
    """Levels for ``overviews="auto"`` (halve until the whole image fits one tile, as GDAL's COG driver
    does) or the number given."""
    if overviews == "auto":
        return max(0, math.ceil(math.log2(max(max(shape) / blocksize, 1.0))))
    if isinstance(overviews, bool) or not isinstance(overviews, int) or overviews < 0:
        raise OutputError(f"overviews={overviews!r}; pass 'auto', 0 (none) or a positive number of levels")
    return overviews


def overview_resampling(result: MergeResult, resampling: str | None = None) -> str:
    """GDAL's name of the resampling that builds the overviews: ``resampling`` when given, else the
    merge's own where GDAL has it (when every band shares it), else nearest."""
    merged = result.plan.band_resampling()  # one per output band (per-band resampling= allowed)
    name = resampling or (merged[0] if len(set(merged)) == 1 else "nearest")
    if resampling is not None and resampling not in OVERVIEW_RESAMPLING:
        raise OutputError(
            f"overview resampling {resampling!r} is not one GDAL builds overviews with; pass one of "
            f"{sorted(OVERVIEW_RESAMPLING)}"
        )
    return OVERVIEW_RESAMPLING.get(name, "NEAREST")


def _blocks(result: MergeResult) -> Iterator[tuple[tuple[int, ...], tuple[int, slice, slice]]]:
    """Every block id in row-major order (tiles fill row after row), with its band (1-based) and window."""
    grid = result.grid
    nbands = len(result.plan.bands) if result.plan.band_dim else 1
    for row, col in np.ndindex(*grid.nchunks):
        r0, r1, c0, c1 = grid.chunk_window(int(row), int(col))
        for band in range(nbands):
            block_id = (band, int(row), int(col)) if result.plan.band_dim else (int(row), int(col))
            yield block_id, (band + 1, slice(r0, r1), slice(c0, c1))


def render_blocks(
    result: MergeResult, max_workers: int | None = None
) -> Iterator[tuple[tuple[int, slice, slice], np.ndarray]]:
    """(band, window) and pixels of every block, in order, rendered ``max_workers`` at a time: at most
    twice that many blocks are ever held."""
    workers = max_workers or os.cpu_count() or 1
    pending: deque[tuple[tuple[int, slice, slice], Future]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lazymerge-cog") as pool:
        for block_id, where in _blocks(result):
            pending.append((where, pool.submit(merge_block, None, task=result.task, block_id=block_id)))
            if len(pending) >= 2 * workers:
                done_where, future = pending.popleft()
                yield done_where, future.result()
        while pending:
            done_where, future = pending.popleft()
            yield done_where, future.result()


def stored_blocks(result: MergeResult, array: Any) -> Iterator[tuple[tuple[int, slice, slice], np.ndarray]]:
    """(band, window) and pixels of every block, read one at a time from ``array`` (the mosaic written to
    Zarr by ``to_zarr``)."""
    for block_id, (band, rows, cols) in _blocks(result):
        lead = (block_id[0],) if result.plan.band_dim else ()
        yield (band, rows, cols), array[(*lead, rows, cols)]


def _write_tiled(
    result: MergeResult,
    path: Path,
    blocksize: int,
    nodata: float,
    blocks: Iterator[tuple[tuple[int, slice, slice], np.ndarray]],
) -> None:
    """The mosaic as a tiled GeoTIFF at ``path``, written window by window."""
    import rasterio
    from rasterio.windows import Window

    h, w = result.grid.shape
    bands = list(result.plan.bands) if result.plan.band_dim else [None]
    profile = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": len(bands),
        "dtype": np.dtype(result.array.dtype).name,
        "crs": result.grid.crs.to_wkt(),
        "transform": result.grid.transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": blocksize,
        "blockysize": blocksize,
        "compress": "zstd",  # an intermediate: fast
        "zstd_level": 1,
        "bigtiff": "IF_SAFER",
    }
    with rasterio.open(path, "w", **profile) as ds:
        for i, name in enumerate(bands, start=1):
            if name is not None:
                ds.set_band_description(i, str(name))
        for (band, rows, cols), block in blocks:
            window = Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
            ds.write(block.reshape(block.shape[-2:]), band, window=window)


def _is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def write_cog(
    result: MergeResult,
    path: str | os.PathLike[str],
    *,
    overviews: int | str = "auto",
    compress: str = "deflate",
    blocksize: int = 512,
    resampling: str | None = None,
    overwrite: bool = False,
    max_workers: int | None = None,
    executor: Any = None,
    progress: bool | None = None,
) -> str:
    """Write ``result`` as a Cloud-Optimized GeoTIFF at ``path`` (a local path or an object-store URL).

    Parameters
    ----------
    overviews
        ``"auto"`` (halve until the whole image fits one tile), 0 (none) or a number of levels.
    compress
        GDAL's COG compression: deflate, zstd, lzw, lerc, webp, jpeg, none ...
    blocksize
        The tile size in pixels (a multiple of 16).
    resampling
        How overviews are built (GDAL's overview resamplings); default: the merge's own where GDAL has
        it (nearest, bilinear, cubic, cubic_spline, lanczos, average, rms, mode), else nearest.
    overwrite
        Replace an existing file at ``path``; without it an existing target is an OutputError.
    max_workers
        Threads rendering blocks (default: one per core); at most twice as many blocks are held at once.
    executor, progress
        With an executor (``lazymerge.executors.get_executor``), the blocks are rendered by it into a
        temporary Zarr (``to_zarr``, under the Spec's ``work_dir`` when it has one, else next to the
        target), which is then streamed into the GeoTIFF block by block.

    Returns
    -------
    str
        The path or URL written.
    """
    try:
        import rasterio
        import rasterio.shutil
    except ImportError as exc:
        raise OutputError(
            f"writing {os.fspath(path)!r} as a COG needs rasterio: pip install 'lazymerge[formats]'"
        ) from exc

    target = os.fspath(path)
    if result.plan.time_coords is not None:
        raise OutputError(
            f"a GeoTIFF has no time axis and this merge has {len(result.plan.time_coords)} time groups; "
            f"merge without groupby=, or write Zarr (to_zarr) for {target!r}"
        )
    if blocksize <= 0 or blocksize % 16:
        raise OutputError(f"blocksize={blocksize}; GeoTIFF tiles need a positive multiple of 16 (e.g. 512)")
    levels = overview_count(result.grid.shape, blocksize, overviews)
    method = overview_resampling(result, resampling)
    remote = _is_url(target)
    if remote:
        store, key = _object_store(target)
        if not overwrite and _exists(store, key):
            raise OutputError(f"{target!r} exists; pass overwrite=True (--overwrite) to replace it")
        workdir = Path(tempfile.mkdtemp(prefix="lazymerge-cog-"))
        final = None
    else:
        final = Path(target.removeprefix("file://")).expanduser().resolve()
        if final.exists() and not overwrite:
            raise OutputError(f"{str(final)!r} exists; pass overwrite=True (--overwrite) to replace it")
        if not final.parent.is_dir():
            raise OutputError(f"the directory of {str(final)!r} does not exist; create it first")
        workdir = final.parent / f".{final.name}.lazymerge-{uuid.uuid4().hex[:12]}"
        workdir.mkdir()
    from lazymerge.output.dataarray import nodata_of

    try:
        tiled = workdir / "tiled.tif"
        cog = workdir / "cog.tif"
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB, GDAL_NUM_THREADS="ALL_CPUS"):
            if executor is None:
                blocks = render_blocks(result, max_workers)
            else:
                blocks = stored_blocks(result, _render_to_zarr(result, workdir, executor, progress))
            _write_tiled(result, tiled, blocksize, nodata_of(result), blocks)
            options: dict[str, Any] = {
                "COMPRESS": compress.upper(),
                "BLOCKSIZE": blocksize,
                "BIGTIFF": "IF_SAFER",
                "NUM_THREADS": "ALL_CPUS",
                "OVERVIEW_RESAMPLING": method,
            }
            if levels:
                options.update(OVERVIEWS="IGNORE_EXISTING", OVERVIEW_COUNT=levels)
            else:
                options["OVERVIEWS"] = "NONE"
            rasterio.shutil.copy(tiled, cog, driver="COG", **options)
        tiled.unlink()
        if remote:
            import obstore

            obstore.put(store, key, cog)
            return target
        assert final is not None  # a local target
        os.replace(cog, final)  # the only step that makes a file appear at the target: complete or absent
        return str(final)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _render_to_zarr(result: MergeResult, workdir: Path, executor: Any, progress: bool | None) -> Any:
    """Render every block on ``executor`` into a temporary Zarr: under the Spec's work_dir (where remote
    workers can write), else in ``workdir``."""
    work_dir = result.array.spec.work_dir
    where = f"{str(work_dir).rstrip('/')}/lazymerge-cog-{uuid.uuid4().hex}.zarr" if work_dir else None
    return result.to_zarr(where or str(workdir / "blocks.zarr"), executor=executor, progress=progress)


def _object_store(url: str) -> tuple[Any, str]:
    """(obstore store of the URL's directory, file name), credentials from the environment."""
    from obstore.store import from_url

    parent, _, name = url.rstrip("/").rpartition("/")
    if not name.lower().endswith((".tif", ".tiff")):
        raise OutputError(f"{url!r} does not name a .tif/.tiff file; end the URL with the file's name")
    try:
        return from_url(parent + "/"), name
    except Exception as exc:  # obstore raises its own error types per scheme
        raise OutputError(f"cannot open the object store of {url!r}: {exc}") from exc


def _exists(store: Any, key: str) -> bool:
    import obstore

    try:
        obstore.head(store, key)
    except FileNotFoundError:
        return False
    return True
