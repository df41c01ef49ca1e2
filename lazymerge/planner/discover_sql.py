"""Source discovery by batched DataFusion SQL over the store's /meta table (zarr-datafusion-search).

One query reads the source columns, one ranks them by ``sortby``, one joins every chunk footprint with
every source footprint (an equi-join on a coarse spatial bin, then the exact box test) -- never one query
per chunk.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import zarr

from lazymerge.catalog.datetimes import to_datetimes
from lazymerge.catalog.footprints import wkb_parts
from lazymerge.catalog.layout import BANDS_COLUMN
from lazymerge.catalog.meta import INDEX_HINT, REQUIRED_COLUMNS, MetaTable
from lazymerge.catalog.sources import Band, bands_from_json, read_band
from lazymerge.catalog.stores import StoreHandle
from lazymerge.errors import InvalidFootprintError
from lazymerge.planner.filters import keep_parts, where_mask
from lazymerge.planner.pairs import JoinFn, SourceSet, bin_size
from lazymerge.planner.request import MergeRequest
from lazymerge.planner.windows import Candidates

# Every footprint part is exploded over the grid bins it touches; the equi-join on (bin x, bin y) replaces a
# quadratic nested-loop join, and a pair is kept only in the bin holding the lower-left corner of the two
# boxes' intersection, so each (chunk part, source part) comes out once without a DISTINCT. The result is
# streamed in batches, unordered: the planner culls and orders it.
JOIN_SQL = """
WITH s1 AS (SELECT src, xmin, ymin, xmax, ymax, bx0, by0, by1, unnest(range(bx0, bx1 + 1)) AS cx
            FROM sparts),
     s2 AS (SELECT src, xmin, ymin, xmax, ymax, bx0, by0, cx, unnest(range(by0, by1 + 1)) AS cy FROM s1),
     c1 AS (SELECT chunk, xmin, ymin, xmax, ymax, bx0, by0, by1, unnest(range(bx0, bx1 + 1)) AS cx
            FROM cparts),
     c2 AS (SELECT chunk, xmin, ymin, xmax, ymax, bx0, by0, cx, unnest(range(by0, by1 + 1)) AS cy FROM c1)
SELECT c.chunk AS chunk, s.src AS src
FROM c2 c JOIN s2 s ON c.cx = s.cx AND c.cy = s.cy
WHERE s.xmin <= c.xmax AND s.xmax >= c.xmin AND s.ymin <= c.ymax AND s.ymax >= c.ymin
  AND c.cx = greatest(c.bx0, s.bx0) AND c.cy = greatest(c.by0, s.by0)
"""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _binned(name: str, ids: np.ndarray, parts: np.ndarray, cell: float) -> pa.Table:
    b = np.floor(parts / cell).astype("i8")
    cols = {name: pa.array(ids.astype("i8"))}
    cols.update({k: pa.array(parts[:, i]) for i, k in enumerate(("xmin", "ymin", "xmax", "ymax"))})
    cols.update({"bx0": b[:, 0], "by0": b[:, 1], "bx1": b[:, 2], "by1": b[:, 3]})
    return pa.table(cols)


def discover(request: MergeRequest, store: StoreHandle) -> tuple[SourceSet, JoinFn]:
    """Read /meta into a SourceSet, ranking sources by ``sortby``; returns it and the join function."""
    meta = MetaTable(store)
    request.check_sort_columns(meta.schema.names)
    names = meta.schema.names
    wanted = [*REQUIRED_COLUMNS, *(c for c in ("proj:code", "proj:epsg") if c in names)]
    ranking = request.ranking(names)
    extra = ["datetime", BANDS_COLUMN, *(k.column for k in ranking)]
    wanted = list(dict.fromkeys([*wanted, *(c for c in extra if c in names)]))
    if request.where:  # the predicate may use any /meta column
        wanted += [c for c in names if c not in wanted]
    table = meta.sql(f"SELECT {', '.join(map(_quote, wanted))} FROM meta")
    table = table.append_column("_row", pa.array(np.arange(table.num_rows, dtype="i8")))

    rank_cols = table.drop_columns(["bbox", *([BANDS_COLUMN] if BANDS_COLUMN in names else [])])
    meta.ctx.register_record_batches("src", [rank_cols.to_batches()])
    order_by = ", ".join([*(k.sql() for k in ranking), "_row"])
    order = meta.sql(f"SELECT _row FROM src ORDER BY {order_by}")["_row"].to_numpy()
    priority = np.empty(table.num_rows, dtype="i8")
    priority[order] = np.arange(table.num_rows)

    ids = [str(v) for v in table["id"].to_pylist()]
    codes = table["proj:code"].to_pylist() if "proj:code" in names else [None] * table.num_rows
    epsgs = table["proj:epsg"].to_pylist() if "proj:epsg" in names else [None] * table.num_rows
    crs = [c if c else f"EPSG:{e}" for c, e in zip(codes, epsgs, strict=True)]

    part_index, part_bounds, bad = wkb_parts(table["bbox"].to_pylist())
    if len(bad):
        row = int(bad[0])
        raise InvalidFootprintError(
            f"/meta row {row} (id {ids[row]!r}) has a bbox that is not valid WKB; {INDEX_HINT}"
        )
    mask = where_mask(table.drop_columns(["_row"]), request.where) if request.where else None
    part_index, part_bounds = keep_parts(part_index, part_bounds, mask)
    root = store.open_root()

    described = table[BANDS_COLUMN] if BANDS_COLUMN in names else None

    def read_bands(s: int) -> dict[str | None, Band]:
        if described is not None and described[s].is_valid:
            return bands_from_json(described[s].as_py())
        node = root[ids[s]]  # a /meta without the bands column: read the source's groups
        if isinstance(node, zarr.Array):
            return {None: read_band(node, None)[0]}
        if "multiscales" in node.attrs:
            return {None: read_band(node, None)[0]}
        return {name: read_band(child, name)[0] for name, child in sorted(node.members(max_depth=0))}

    def join(c_index: np.ndarray, c_parts: np.ndarray, s_index: np.ndarray, s_parts: np.ndarray):
        """(chunk, source) candidate pairs, streamed in record batches (one query for every chunk)."""
        cell = bin_size(c_parts, s_parts)
        meta.ctx.register_record_batches("cparts", [_binned("chunk", c_index, c_parts, cell).to_batches()])
        meta.ctx.register_record_batches("sparts", [_binned("src", s_index, s_parts, cell).to_batches()])
        try:
            for batch in meta.ctx.sql(JOIN_SQL).execute_stream():
                rb = batch.to_pyarrow()
                yield rb.column(0).to_numpy().astype("i8"), rb.column(1).to_numpy().astype("i8")
        finally:
            meta.ctx.deregister_table("cparts")
            meta.ctx.deregister_table("sparts")

    dt = to_datetimes(table["datetime"]) if "datetime" in names else None
    base = np.stack([table[f"transform_{i}"].to_numpy() for i in range(6)], axis=1)
    shape = np.stack([table["shape_y"].to_numpy(), table["shape_x"].to_numpy()], axis=1)
    cands = Candidates(ids, crs, priority, dt, base, shape)
    return SourceSet(cands, part_index, part_bounds, read_bands, tuple(names)), join
