"""where=: a user's SQL predicate over the source table, parsed by DataFusion as one expression.

The text is parsed with ``DataFrame.parse_sql_expr`` (a single expression, never spliced into a query), so
it can only ever filter rows; a parse error or an unknown column raises InvalidWhereError.

Before DataFusion sees it, the text is bounded (``check_where_size``): DataFusion's parser and optimizer
recurse once per operator of a chain, so ~10,000 ``OR`` terms overflow the stack (a segfault) and a few
hundred chained ``+`` take seconds to minutes. The limits, each with the fix in its error:

- ``MAX_WHERE_CHARS`` characters in all (an ``IN (...)`` list of 100,000 numbers fits);
- ``MAX_WHERE_TERMS`` boolean terms (``AND``/``OR`` joined; use ``col IN (a, b, ...)`` for long lists),
  and as many comparisons;
- ``MAX_WHERE_OPERATORS`` arithmetic, bitwise and concatenation operators;
- ``MAX_WHERE_DEPTH`` nested parentheses.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
from datafusion import SessionContext

from lazymerge import arrow
from lazymerge.errors import InvalidWhereError, LazymergeError, no_panic

MAX_WHERE_CHARS = 1_000_000
MAX_WHERE_TERMS = 256
MAX_WHERE_OPERATORS = 128
MAX_WHERE_DEPTH = 32

# Skipped: string literals ('it''s', E'...'), quoted identifiers ("a ""b"""), comments. Counted: the rest.
_TOKENS = re.compile(
    r"""(?P<skip>[eE]?'(?:[^'\\]|''|\\.)*'?|"(?:[^"]|"")*"?|--[^\n]*|/\*.*?(?:\*/|$))"""
    r"""|(?P<bool>\b(?i:AND|OR)\b)"""
    r"""|(?P<cmp><=|>=|<>|!=|==|<|>|=)|(?P<op>\|\||<<|>>|[-+*/%&|^#~])"""
    r"""|(?P<open>\()|(?P<close>\))""",
    re.DOTALL,
)


def check_where_size(where: str) -> None:
    """Raise InvalidWhereError when ``where`` is longer, has more boolean terms or operators, or nests
    deeper than the module's limits allow (before any parser sees it)."""
    if len(where) > MAX_WHERE_CHARS:
        raise InvalidWhereError(
            f"where= is {len(where):,} characters long; the limit is {MAX_WHERE_CHARS:,}. Filter on fewer "
            "values, or add a column to /meta that selects the sources"
        )
    terms, cmps, ops, depth, deepest = 1, 0, 0, 0, 0
    for m in _TOKENS.finditer(where):
        kind = m.lastgroup
        if kind == "bool":
            terms += 1
        elif kind == "cmp":
            cmps += 1
        elif kind == "op":
            ops += 1
        elif kind == "open":
            depth += 1
            deepest = max(deepest, depth)
        elif kind == "close":
            depth -= 1
    head = where if len(where) <= 80 else where[:77] + "..."
    if terms > MAX_WHERE_TERMS:
        raise InvalidWhereError(
            f"where {head!r} joins {terms} terms with AND/OR; the limit is {MAX_WHERE_TERMS}. For a list of "
            "values use one IN list: \"col IN ('a', 'b', ...)\""
        )
    if cmps > MAX_WHERE_TERMS:
        raise InvalidWhereError(
            f"where {head!r} has {cmps} comparisons; the limit is {MAX_WHERE_TERMS}. For a list of "
            "values use one IN list: \"col IN ('a', 'b', ...)\""
        )
    if ops > MAX_WHERE_OPERATORS:
        raise InvalidWhereError(
            f"where {head!r} has {ops} arithmetic operators; the limit is {MAX_WHERE_OPERATORS}. Simplify "
            "the expression (an IN list for many values), or add a computed column to /meta"
        )
    if deepest > MAX_WHERE_DEPTH:
        raise InvalidWhereError(
            f"where {head!r} nests parentheses {deepest} deep; the limit is {MAX_WHERE_DEPTH}. Flatten it"
        )


def parse_where(where: object) -> str | None:
    """The where= predicate, checked to be a non-empty string within the size limits (or None)."""
    if where is None:
        return None
    if not isinstance(where, str) or not where.strip():
        raise InvalidWhereError(f'where {where!r} must be a SQL predicate string, e.g. "cloud_cover < 20"')
    check_where_size(where)
    return where


def where_mask(table: pa.Table, where: str) -> np.ndarray:
    """Boolean mask of the rows of ``table`` for which ``where`` holds (NULL counts as false)."""
    check_where_size(where)
    columns = [
        c
        for c in table.column_names
        if not _is_bytes(table.schema.field(c).type) and not c.startswith("lazymerge:")
    ]
    data = table.select(columns).append_column("_lm_row", arrow.column(np.arange(table.num_rows, dtype="i8")))
    ctx = SessionContext()
    register(ctx, "sources", data)
    df = ctx.table("sources")
    try:
        with no_panic(f"where {where!r}"):
            kept = df.filter(df.parse_sql_expr(where)).select("_lm_row").to_arrow_table()
    except Exception as exc:  # DataFusion raises plain Exceptions with its own message
        if isinstance(exc, LazymergeError):  # a panic, already typed
            raise
        raise InvalidWhereError(
            f"where {where!r} is not a valid predicate over the source table: {exc}. "
            f"Columns: {sorted(columns)}"
        ) from exc
    mask = np.zeros(table.num_rows, dtype=bool)
    mask[arrow.values(kept["_lm_row"])] = True
    return mask


def register(ctx: SessionContext, name: str, table: pa.Table) -> None:
    """Register ``table`` in ``ctx`` as ``name``, empty tables included (DataFusion panics on a partition
    without batches: one empty batch with the table's schema stands in for it)."""
    batches = table.to_batches() or [pa.RecordBatch.from_pylist([], schema=table.schema)]
    with no_panic(f"registering the {table.num_rows}-row table {name!r}"):
        ctx.register_record_batches(name, [batches])


def _is_bytes(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t)


def keep_parts(part_index: np.ndarray, part_bounds: np.ndarray, mask: np.ndarray | None):
    """Footprint parts of the sources that pass the filter (all when there is none)."""
    if mask is None:
        return part_index, part_bounds
    keep = mask[part_index]
    return part_index[keep], part_bounds[keep]
