"""Request -> plan table: which sources (level, window) each target chunk needs, in priority order."""

from __future__ import annotations

from typing import Any

import numpy as np

from lazymerge.geometry import split_parts
from lazymerge.planner.request import MergeRequest, build_request
from lazymerge.planner.table import Plan, levels_table
from lazymerge.planner.time import add_time_column, centre_longitudes, time_groups
from lazymerge.planner.windows import resolve_windows

__all__ = ["Plan", "MergeRequest", "build_plan", "plan"]


def output_dtype(dtypes: list[str]) -> str:
    """Float dtype holding every source dtype, NaN for missing pixels: float32 unless that loses values."""
    if not dtypes:
        return "float32"
    return str(np.promote_types(np.result_type(*[np.dtype(d) for d in dtypes]), np.float32))


def build_plan(request: MergeRequest) -> Plan:
    """Compile a validated request into a Plan."""
    if request.datafusion:
        from lazymerge.planner.datafusion import discover
    else:
        from lazymerge.planner.memory import discover
    sources, join = discover(request)
    grid = request.grid
    c_index, c_parts = split_parts(grid.chunk_footprints())
    chunk, source = join(c_index, c_parts, sources.part_index, sources.part_bounds)
    used = np.unique(source)
    bands = sources.resolve_bands(request.bands, used)
    table = resolve_windows(grid, chunk, source, sources.candidates, bands, sources.band_of)
    time_coords = None
    if request.groupby:
        cands = sources.candidates
        lon = centre_longitudes(len(cands.ids), sources.part_index, sources.part_bounds)
        used = np.unique(table["source"].to_numpy())
        group_of_source, time_coords = time_groups(request.groupby, cands.datetime, cands.ids, lon, used)
        table = add_time_column(table, group_of_source)

    keys = sorted(set(zip(*(table[c].to_pylist() for c in ("source", "band", "level")), strict=True)))
    entries = [
        (s, b, lv, sources.band_of(s, bands[b]).levels[lv], sources.candidates.crs[s]) for s, b, lv in keys
    ]
    return Plan(
        grid=grid,
        bands=bands,
        band_dim=request.band_dim or len(bands) > 1,
        table=table,
        levels=levels_table(entries),
        dtype=output_dtype([e[3].dtype for e in entries]),
        n_sources=len(sources.candidates.ids),
        time_coords=time_coords,
    )


def plan(
    store: Any,
    crs: Any,
    bbox: Any,
    resolution: Any,
    chunk_size: Any = (512, 512),
    bands: Any = None,
    datafusion: bool | None = None,
    sortby: Any = None,
    groupby: Any = None,
) -> Plan:
    """Plan a merge without computing anything; takes the same arguments as ``lazymerge.merge``.

    Returns
    -------
    Plan
        ``.table`` is the Arrow plan table (one row per chunk x contributing source, priority order).
    """
    request = build_request(
        store=store,
        crs=crs,
        bbox=bbox,
        resolution=resolution,
        chunk_size=chunk_size,
        bands=bands,
        datafusion=datafusion,
        sortby=sortby,
        groupby=groupby,
    )
    return build_plan(request)
