"""Source discovery from an in-memory ScanIndex of the store's conventions (no /meta needed)."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import shapely

from lazymerge import arrow
from lazymerge.catalog.datetimes import to_datetimes
from lazymerge.catalog.footprints import split_parts
from lazymerge.catalog.scan import scan_store
from lazymerge.catalog.stores import StoreHandle
from lazymerge.crs import crs_code
from lazymerge.planner.filters import keep_parts, where_mask
from lazymerge.planner.pairs import JoinFn, SourceSet
from lazymerge.planner.request import MergeRequest
from lazymerge.planner.windows import Candidates

JOIN_BATCH = 50_000  # chunk parts per STRtree query


def discover(request: MergeRequest, store: StoreHandle) -> tuple[SourceSet, JoinFn]:
    """Scan the store into a SourceSet ranked by ``sortby``; returns it and the join function."""
    index = scan_store(store)
    table = index.table()
    request.check_sort_columns(table.column_names)
    table = table.append_column("_row", arrow.column(np.arange(table.num_rows, dtype="i8")))
    ranking = request.ranking(table.column_names)
    keys = [(k.column, "descending" if k.descending else "ascending", "at_end") for k in ranking]
    order = pc.sort_indices(table, sort_keys=[*keys, ("_row", "ascending", "at_end")])
    priority = np.empty(table.num_rows, dtype="i8")
    priority[arrow.values(order)] = np.arange(table.num_rows)

    mask = where_mask(table, request.where) if request.where else None
    part_index, part_bounds = keep_parts(*split_parts(index.lonlat()), mask)
    entries = index.entries
    dt = to_datetimes(table["datetime"]) if "datetime" in table.column_names else None
    base = np.array([e.base.transform for e in entries]).reshape(-1, 6)
    shape = np.array([e.base.shape for e in entries]).reshape(-1, 2)
    cands = Candidates([e.id for e in entries], [crs_code(e.crs) for e in entries], priority, dt, base, shape)

    def join(c_index: np.ndarray, c_parts: np.ndarray, s_index: np.ndarray, s_parts: np.ndarray):
        """(chunk, source) candidate pairs from an STRtree of source parts, chunk parts in batches."""
        tree = shapely.STRtree(shapely.box(*s_parts.T))
        for start in range(0, len(c_parts), JOIN_BATCH):
            qi, si = tree.query(shapely.box(*c_parts[start : start + JOIN_BATCH].T))
            yield c_index[start + qi], s_index[si]

    columns = tuple(table.column_names)
    return SourceSet(cands, part_index, part_bounds, lambda s: dict(entries[s].bands), columns), join
