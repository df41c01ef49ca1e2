"""where=: a user's SQL predicate over the source table, parsed by DataFusion as one expression.

The text is parsed with ``DataFrame.parse_sql_expr`` (a single expression, never spliced into a query), so
it can only ever filter rows; a parse error or an unknown column raises InvalidWhereError.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from datafusion import SessionContext

from lazymerge.errors import InvalidWhereError


def parse_where(where: object) -> str | None:
    if where is None:
        return None
    if not isinstance(where, str) or not where.strip():
        raise InvalidWhereError(f'where {where!r} must be a SQL predicate string, e.g. "cloud_cover < 20"')
    return where


def where_mask(table: pa.Table, where: str) -> np.ndarray:
    """Boolean mask of the rows of ``table`` for which ``where`` holds (NULL counts as false)."""
    columns = [
        c
        for c in table.column_names
        if not _is_bytes(table.schema.field(c).type) and not c.startswith("lazymerge:")
    ]
    data = table.select(columns).append_column("_lm_row", pa.array(np.arange(table.num_rows, dtype="i8")))
    ctx = SessionContext()
    ctx.register_record_batches("sources", [data.to_batches()])
    df = ctx.table("sources")
    try:
        kept = df.filter(df.parse_sql_expr(where)).select("_lm_row").to_arrow_table()
    except Exception as exc:  # DataFusion raises plain Exceptions with its own message
        raise InvalidWhereError(
            f"where {where!r} is not a valid predicate over the source table: {exc}. "
            f"Columns: {sorted(columns)}"
        ) from exc
    mask = np.zeros(table.num_rows, dtype=bool)
    mask[kept["_lm_row"].to_numpy()] = True
    return mask


def _is_bytes(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t)


def keep_parts(part_index: np.ndarray, part_bounds: np.ndarray, mask: np.ndarray | None):
    """Footprint parts of the sources that pass the filter (all when there is none)."""
    if mask is None:
        return part_index, part_bounds
    keep = mask[part_index]
    return part_index[keep], part_bounds[keep]
