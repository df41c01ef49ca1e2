"""The plan contract's schema: the plan table's columns, the levels table, and the saved layout's names.

A saved plan is a Zarr group: attributes (grid, bands, options), ``count``/``start`` (int32/int64 on the
(layer, chunk_row, chunk_col) grid, layer = ``time * n_layers + band``), ``rows/level_id``,
``rows/window`` (src_row0, src_row1, src_col0, src_col1), ``rows/priority``, one ``levels/<column>`` array
per LEVEL_SCHEMA column, and ``plan.parquet`` (the whole table, for people and other tools).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from lazymerge import arrow

PLAN_FORMAT = 1  # the ``lazymerge_plan`` attribute of a saved plan
LEVEL_COLUMNS = ("source", "band", "level")  # the key of a levels row

PLAN_SCHEMA = pa.schema(
    [
        ("band", pa.int16()),
        ("chunk_row", pa.int32()),
        ("chunk_col", pa.int32()),
        ("source", pa.int32()),
        ("source_id", pa.string()),
        ("priority", pa.int32()),
        ("level", pa.int16()),
        ("src_row0", pa.int64()),
        ("src_row1", pa.int64()),
        ("src_col0", pa.int64()),
        ("src_col1", pa.int64()),
    ]
)  # with groupby, a leading int32 ``time`` column


def empty_plan_table() -> pa.Table:
    """A plan table with no rows."""
    return PLAN_SCHEMA.empty_table()


LEVEL_SCHEMA = pa.schema(
    [
        ("source", pa.int32()),
        ("band", pa.int16()),
        ("level", pa.int16()),
        ("path", pa.string()),
        ("crs", pa.string()),
        *((f"transform_{k}", pa.float64()) for k in range(6)),
        ("shape_y", pa.int64()),
        ("shape_x", pa.int64()),
        ("chunk_y", pa.int64()),
        ("chunk_x", pa.int64()),
        ("dtype", pa.string()),
        ("nodata", pa.float64()),
        ("has_nodata", pa.bool_()),
        ("scale_factor", pa.float64()),
        ("add_offset", pa.float64()),
    ]
)


def levels_table(entries: list[tuple[int, int, int, Any, str]]) -> pa.Table:
    """The levels table (LEVEL_SCHEMA) from (source, band, level, Level, crs code) tuples."""
    levels = [e[3] for e in entries]
    transform = np.array([lv.transform for lv in levels], dtype="f8").reshape(-1, 6)
    columns = {
        "source": [e[0] for e in entries],
        "band": [e[1] for e in entries],
        "level": [e[2] for e in entries],
        "path": [lv.path for lv in levels],
        "crs": [e[4] for e in entries],
        **{f"transform_{k}": transform[:, k] for k in range(6)},
        "shape_y": [lv.shape[0] for lv in levels],
        "shape_x": [lv.shape[1] for lv in levels],
        "chunk_y": [lv.chunks[0] for lv in levels],
        "chunk_x": [lv.chunks[1] for lv in levels],
        "dtype": [lv.dtype for lv in levels],
        "nodata": [lv.nodata for lv in levels],
        "has_nodata": [lv.nodata is not None for lv in levels],
        "scale_factor": [lv.scale_factor for lv in levels],
        "add_offset": [lv.add_offset for lv in levels],
    }
    return arrow.table(columns, LEVEL_SCHEMA)
