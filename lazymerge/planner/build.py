"""``build_plan``: a validated request and a store -> the Plan (which sources, at which level and window,
each target chunk needs, in priority order)."""

from __future__ import annotations

import gc
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lazymerge import arrow
from lazymerge.catalog.footprints import split_parts
from lazymerge.catalog.layout import META_GROUP
from lazymerge.catalog.stores import StoreHandle
from lazymerge.contract.model import Plan, spilled_table
from lazymerge.contract.schema import empty_plan_table, levels_table
from lazymerge.errors import EmptyPlanWarning, InvalidRequestError
from lazymerge.kernel.composite import parse_method
from lazymerge.kernel.resampling import band_resampling
from lazymerge.planner.culling import CoverCull, cull_mask
from lazymerge.planner.nearby import nearby_chunks
from lazymerge.planner.pairs import SourceSet, collect_pairs
from lazymerge.planner.request import MergeRequest
from lazymerge.planner.timegroups import (
    add_time_column,
    centre_longitudes,
    label_ids,
    parse_origin,
    source_labels,
    time_groups,
)
from lazymerge.planner.windows import window_batches

STREAM_ROWS = 2_000_000  # plans of more candidate rows (without culling) stream to disk as they are built


class Stopwatch:
    """Named laps of wall time, in seconds."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self._t
        self._t = now


def output_dtype(dtypes: list[str]) -> str:
    """Float dtype holding every source dtype, NaN for missing pixels: float32 unless that loses values."""
    if not dtypes:
        return "float32"
    return str(np.promote_types(np.result_type(*[np.dtype(d) for d in dtypes]), np.float32))


@contextmanager
def collection_paused() -> Iterator[None]:
    """The cyclic garbage collector paused (then restored as it was): planning creates many objects and
    frees them by reference count, while each full collection walks every object of the process (the
    imported libraries' included) -- ~0.1 s each at 10k sources, several per plan. Cycles left meanwhile
    are collected once it resumes."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def build_plan(request: MergeRequest, store: StoreHandle) -> Plan:
    """Compile a validated request over ``store`` into a Plan (timed, step by step, in ``plan.timings``)."""
    with collection_paused():
        return _build_plan(request, store)


def _build_plan(request: MergeRequest, store: StoreHandle) -> Plan:
    datafusion = request.datafusion
    if datafusion is None:
        datafusion = META_GROUP in store.open_root()
    if datafusion:
        from lazymerge.planner.discover_sql import discover
    else:
        from lazymerge.planner.discover_scan import discover
    clock = Stopwatch()
    sources, join = discover(request, store)
    clock.lap("sources")
    grid = request.target
    cands = sources.candidates
    chunk_ids, footprints = nearby_chunks(grid, sources.part_bounds)  # not the chunks far from every source
    c_index, c_parts = split_parts(footprints)
    c_index = chunk_ids[c_index]
    clock.lap("chunk footprints")
    labels = None
    if request.groupby:
        lon = centre_longitudes(len(cands.ids), sources.part_index, sources.part_bounds)
        labels = source_labels(request.groupby, cands.datetime, lon, parse_origin(request.groupby_origin))
    cull = request.cull and not request.mask  # a masked source covers nothing: it culls none behind it
    cover = CoverCull(grid, cands, chunk_ids, footprints, label_ids(labels)) if cull else None
    batches = join(c_index, c_parts, sources.part_index, sources.part_bounds)
    chunk, source = collect_pairs(batches, cands.priority, cover)
    clock.lap("join + cover culling" if cover else "join")
    used = np.unique(source)
    bands = sources.resolve_bands(request.band_names, used)
    method, quality_band = _quality(request, sources, used)
    mask_bands = _mask_bands(request, sources, used)
    layers = [*bands, *([quality_band] if quality_band else []), *mask_bands]
    nearest = ["nearest"] * (len(layers) - len(bands))  # quality and mask bands are sampled nearest
    halo = [0] * (len(layers) - len(mask_bands))
    halo += [max(m.dilate for m in request.mask if m.band == b) for b in mask_bands]
    batches = window_batches(
        grid,
        chunk,
        source,
        cands,
        layers,
        sources.levels_of,
        masks=cull,
        resampling=[band_resampling(request.resampling, b) for b in bands] + nearest,
        halo=halo,
    )
    if not cull and (request.plan_dir is not None or len(chunk) * len(layers) > STREAM_ROWS):
        table = spilled_table(batches, request.plan_dir)  # memory-mapped: the rows stay on disk
        clock.lap("windows (streamed to disk)")
    else:
        tables = list(batches)
        table = pa.concat_tables(tables) if tables else empty_plan_table()
        clock.lap("windows")
    del batches, chunk, source  # the pairs live on in the table
    time_coords = None
    if request.groupby:
        assert labels is not None  # set above for every groupby
        used = np.unique(arrow.values(table["source"]))
        group_of_source, time_coords = time_groups(request.groupby, labels, cands.ids, used)
        table = add_time_column(table, group_of_source)
    pairs_before_cull = cover.seen * len(bands) if cover else table.num_rows
    if cull:
        keys = ["time"] * bool(request.groupby) + ["band", "chunk_row", "chunk_col"]
        table = table.filter(arrow.column(cull_mask(table, keys))).drop_columns(["_cover", "_touch"])
        clock.lap("cell culling")
    if table.num_rows == 0:
        where = f" matching where={request.where!r}" if request.where else ""
        warnings.warn(
            f"bbox {tuple(round(v, 6) for v in grid.bbox)} in {grid.crs.to_string()} meets none of the "
            f"{len(cands.ids)} source(s){where} in {store.description}: the plan has zero pairs and "
            "the result is all nodata. Check the bbox's CRS and extent",
            EmptyPlanWarning,
            stacklevel=3,
        )

    uniq = unique_levels(table)
    entries = [(s, b, lv, sources.level_of(s, layers[b], lv), cands.crs[s]) for s, b, lv in uniq]
    clock.lap("levels")
    return Plan(
        grid=grid,
        bands=bands,
        band_dim=request.band_dim or len(bands) > 1,
        table=table,
        levels=levels_table(entries),
        dtype=_dtype(request, [e[3] for e in entries if e[1] < len(bands)], cands.ids),
        n_sources=len(cands.ids),
        time_coords=time_coords,
        pairs_before_cull=pairs_before_cull,
        timings=clock.laps,
        resampling=request.resampling,
        method=method,
        exact=request.exact,
        nodata=request.nodata,
        quality_band=quality_band,
        masks=request.mask,
        rescale=request.rescale,
    )


def _mask_bands(request: MergeRequest, sources: SourceSet, used: np.ndarray) -> list[str]:
    """The distinct bands the masks read; every contributing source must have each."""
    names = list(dict.fromkeys(m.band for m in request.mask))
    for name in names:
        lacking = [sources.candidates.ids[int(s)] for s in used if name not in sources.bands_of(int(s))]
        if lacking:
            raise InvalidRequestError(
                f"mask band {name!r} is missing from {len(lacking)} contributing source(s), e.g. "
                f"{lacking[0]!r} (bands: {sorted(map(str, sources.bands_of(int(used[0]))))}); mask with a "
                "band every source has, or select the sources that have it with where="
            )
    return names


def _quality(request: MergeRequest, sources: SourceSet, used: np.ndarray) -> tuple[Any, str | None]:
    """(method, quality band) for the kernel: ``quality:<column>`` ranked the sources by that column, so
    it is ``first``; ``quality:<band>`` reads that band of every source as well."""
    name = request.quality
    if name is None:
        return request.method, None
    if name in sources.columns:
        return "first", None
    present = [set(sources.bands_of(int(s))) for s in used]
    if present and all(name in p for p in present):
        return request.method, name
    bands = sorted(map(str, set.union(*present))) if present else []
    raise InvalidRequestError(
        f"method {request.method!r}: {name!r} is neither a column of the source table "
        f"({sorted(sources.columns)}) nor a band of every contributing source (bands: {bands}); name one "
        "of them after 'quality:'"
    )


def _dtype(request: MergeRequest, levels: list, ids: list[str]) -> str:
    """The output dtype: the requested one (every source must cast to it without loss; resampled values
    are rounded into it, as GDAL does), promoted to float for methods that average; else a float holding
    them all."""
    floats = getattr(parse_method(request.method), "float_result", False)  # a custom class may lack it
    if request.dtype is None:
        return output_dtype([lv.dtype for lv in levels])
    wanted = np.dtype(request.dtype)
    for lv in levels:
        if not np.can_cast(np.dtype(lv.dtype), wanted, "same_kind") or (
            np.dtype(lv.dtype).itemsize > wanted.itemsize and wanted.kind != "f"
        ):
            raise InvalidRequestError(
                f"source array {lv.path!r} ({lv.dtype}) cannot be cast to dtype {wanted} without loss; "
                "pass a wider dtype"
            )
    return str(np.promote_types(wanted, np.float32)) if floats else str(wanted)


def unique_levels(table: pa.Table) -> list[tuple[int, int, int]]:
    """Sorted distinct (source, band, level) of the plan rows (read batch by batch)."""
    keys = [np.zeros(0, dtype="i8")]
    for batch in table.select(["source", "band", "level"]).to_batches():
        s, b, lv = (arrow.values(batch.column(i)).astype("i8") for i in range(3))
        keys.append(arrow.values(pc.unique(arrow.column((s << 32) | (b << 16) | lv))))  # a hash: no sort
    key = np.unique(np.concatenate(keys))
    return list(
        zip((key >> 32).tolist(), ((key >> 16) & 0xFFFF).tolist(), (key & 0xFFFF).tolist(), strict=True)
    )
