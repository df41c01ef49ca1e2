"""Source discovery by batched DataFusion SQL over the store's /meta table (zarr-datafusion-search).

One query reads the source columns, one ranks them by ``sortby``, one joins every chunk footprint with
every source footprint (an equi-join on a coarse spatial bin, then the exact box test) -- never one query
per chunk.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import zarr
from pyproj import CRS

from lazymerge import arrow
from lazymerge.catalog.datetimes import to_datetimes
from lazymerge.catalog.footprints import WGS84, wkb_parts
from lazymerge.catalog.layout import BANDS_COLUMN
from lazymerge.catalog.meta import INDEX_HINT, REQUIRED_COLUMNS, MetaTable
from lazymerge.catalog.sources import Band, Level, bands_from_json, read_band
from lazymerge.catalog.stores import StoreHandle
from lazymerge.catalog.validate import grid_points, meta_row_problems, points_outside, source_crs
from lazymerge.crs import transformer
from lazymerge.errors import ConventionError, InvalidFootprintError, MetaSchemaError, no_panic
from lazymerge.planner.filters import keep_parts, register, where_mask
from lazymerge.planner.pairs import JoinFn, SharedBands, SourceSet, bin_size
from lazymerge.planner.request import MergeRequest
from lazymerge.planner.windows import Candidates

BANDS_BATCH = 10_000  # /meta rows whose bands are parsed at once (their parse lists bound the memory)

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
    cols = {name: arrow.column(ids.astype("i8"))}
    cols.update({k: arrow.column(parts[:, i]) for i, k in enumerate(("xmin", "ymin", "xmax", "ymax"))})
    cols.update({k: arrow.column(b[:, i]) for i, k in enumerate(("bx0", "by0", "bx1", "by1"))})
    return pa.table(cols)


def _describe(request: MergeRequest, store: StoreHandle) -> str:
    """The request, as errors name it."""
    where = f", where={request.where!r}" if request.where else ""
    grid = request.target
    bbox = tuple(round(v, 6) for v in grid.bbox)
    return f"the request on {store.description} (bbox {bbox} in {grid.crs.to_string()}{where})"


def check_rows(ids: list[str], crs: list[str], base: np.ndarray, shape: np.ndarray, store: str) -> None:
    """MetaSchemaError naming the first /meta rows whose transform/shape (or CRS) ``lazymerge index`` would
    refuse, saying what is wrong with the source itself."""
    bad = np.nonzero(meta_row_problems(base, shape))[0]
    if len(bad):
        listed = "; ".join(
            f"source {ids[i]!r}: transform {base[i].tolist()}, shape {shape[i].tolist()}" for i in bad[:10]
        )
        raise MetaSchemaError(
            f"/meta of {store} has {len(bad)} source(s) whose base-level grid is not finite and invertible "
            f"({listed}). `lazymerge index` refuses such sources: fix their spatial:transform (or index the "
            "others with `lazymerge index --skip-invalid`), then re-run it"
        )
    first: dict[str, str] = {}
    for i, c in zip(ids, crs, strict=True):
        first.setdefault(c, i)
    count = Counter(crs)
    for code in sorted(first):
        try:
            others = f" and {count[code] - 1} other(s)" if count[code] > 1 else ""
            source_crs(code, f"source {first[code]!r}{others}")
        except ConventionError as exc:
            raise MetaSchemaError(
                f"/meta of {store}: {exc}. `lazymerge index` refuses such sources: fix their proj: "
                "attributes (or index the others with `lazymerge index --skip-invalid`), then re-run it"
            ) from exc


def check_bboxes(
    ids: list[str],
    crs: list[str],
    base: np.ndarray,
    shape: np.ndarray,
    part_index: np.ndarray,
    part_bounds: np.ndarray,
) -> None:
    """InvalidFootprintError naming the sources whose /meta bbox leaves out part of the grid that their
    transform_*/shape_* describe (corners and edge midpoints): the join would drop pixels."""
    n = len(ids)
    xs, ys = grid_points(base, shape)
    lon, lat = np.full_like(xs, np.nan), np.full_like(ys, np.nan)
    codes = np.asarray(crs, dtype=object).astype(str)
    for code in np.unique(codes):
        rows = np.nonzero(codes == code)[0]
        to_ll = transformer(CRS.from_user_input(str(code)).to_wkt(), WGS84.to_wkt())
        lon[rows], lat[rows] = to_ll.transform(xs[rows], ys[rows], errcheck=False)
    outside = np.nonzero(points_outside(lon, lat, part_index, part_bounds)[:n])[0]
    if len(outside):
        raise InvalidFootprintError(
            f"/meta bbox of {len(outside)} source(s) {[ids[i] for i in outside[:10]]} contradicts the same "
            "row's transform_*/shape_* (the grid reaches outside the bbox, so planning would drop its "
            f"pixels). /meta is stale or was edited: re-run `lazymerge index` ({INDEX_HINT})"
        )


def _bands_error(source_id: str, why: str) -> MetaSchemaError:
    return MetaSchemaError(
        f"/meta row of source {source_id!r}: its {BANDS_COLUMN} value {why}; /meta is stale or was "
        f"edited: re-run `lazymerge index` ({INDEX_HINT})"
    )


def _parsed_bands(
    text: Any, source_id: str, memo: dict | None = None
) -> tuple[dict[str | None, Band], list[tuple]]:
    """A /meta row's bands and one (*transform, *shape, *chunks) row per level, every level readable
    (``memo``: see ``bands_from_json``)."""
    try:
        bands = bands_from_json(text, memo)
        levels = [lv for band in bands.values() for lv in band.levels]
        for lv in levels:
            _dtype(lv.dtype)
            if lv.nodata is not None:
                float(lv.nodata)
            if len(lv.transform) != 6 or len(lv.shape) != 2 or len(lv.chunks) != 2 or not lv.path:
                raise ValueError(f"level {lv.path!r} is malformed")
        grids = [(*lv.transform, *lv.shape, *lv.chunks) for lv in levels]  # numbers: see _grid_array
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise _bands_error(source_id, f"cannot be read ({type(exc).__name__}: {exc})") from exc
    if not levels:
        raise _bands_error(source_id, "lists no level")
    return bands, grids


@lru_cache(maxsize=64)
def _dtype(name: str) -> np.dtype:
    return np.dtype(name)


def _bad_grids(grids: np.ndarray, base: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Per level row: its grid is not finite and invertible, or (``base``/``shape`` given per row, NaN
    where not a base level) the base level contradicts the row's transform_*/shape_*."""
    bad = meta_row_problems(grids[:, :6], grids[:, 6:8]) | (grids[:, 8:] < 1).any(axis=1)
    first = ~np.isnan(shape[:, 0])
    bad[first] |= ~(
        (grids[first, :6] == base[first]).all(axis=1) & (grids[first, 6:8] == shape[first]).all(1)
    )
    return bad


def checked_bands(text: Any, source_id: str, base: np.ndarray, shape: np.ndarray) -> dict[str | None, Band]:
    """A /meta row's bands (its ``lazymerge:bands`` JSON), checked: readable, every level's grid finite and
    invertible with a known dtype, and the first band's base level the row's own transform_*/shape_*.
    MetaSchemaError naming the source otherwise (the kernel would read the wrong pixels)."""
    bands, rows = _parsed_bands(text, source_id)
    try:
        grids = np.array(rows, dtype="f8")
    except (ValueError, TypeError) as exc:
        raise _bands_error(source_id, f"cannot be read ({type(exc).__name__}: {exc})") from exc
    if meta_row_problems(grids[:, :6], grids[:, 6:8]).any() or (grids[:, 8:] < 1).any():
        raise _bands_error(source_id, "holds a level whose grid is not finite and invertible")
    if not (np.array_equal(grids[0, :6], base) and np.array_equal(grids[0, 6:8], shape)):
        raise _bands_error(
            source_id,
            f"describes a base level (transform {grids[0, :6].tolist()}, shape {grids[0, 6:8].tolist()}) "
            f"that contradicts the row's transform_*/shape_* ({base.tolist()}, {shape.tolist()})",
        )
    return bands


_HOLE = "\x00"  # where a bands template held its source's id (JSON text: \\u0000)


def _template(text: Any, source_id: str) -> str | None:
    """``text`` with every JSON string that starts with the source's id starting with a hole instead:
    the revisits of one tile then share one text, parsed once. None where that could be ambiguous: an id
    that does not start with a letter, digit, ``_``, ``-`` or ``.`` (after a string's closing quote comes
    ``,``, ``]``, ``:`` or a space, so the id can only follow an opening or an escaped quote), or a text
    already holding a NUL."""
    if not (isinstance(text, str) and source_id and (source_id[0].isalnum() or source_id[0] in "_-.")):
        return None
    if "\\u0000" in text or _HOLE in text:
        return None
    return text.replace(json.dumps(source_id)[:-1], '"\\u0000')


def _grids(text: Any, source_id: str, memo: dict) -> tuple[dict[str | None, Band], np.ndarray]:
    """``_parsed_bands`` with the level rows as one (levels, 10) float array."""
    bands, rows = _parsed_bands(text, source_id, memo)
    try:
        return bands, np.array(rows, dtype="f8").reshape(-1, 10)
    except (ValueError, TypeError) as exc:
        raise _bands_error(source_id, f"cannot be read ({type(exc).__name__}: {exc})") from exc


def _holes_in_paths_only(bands: dict[str | None, Band]) -> bool:
    """The holes of a parsed template are in band and level paths only (where ``_Filled`` fills them)."""
    for name, band in bands.items():
        if isinstance(name, str) and _HOLE in name:
            return False
        for lv in band.levels:
            values = (lv.dtype, lv.nodata, lv.scale, lv.scale_factor, lv.add_offset)
            if any(isinstance(v, str) and _HOLE in v for v in values):
                return False
    return True


def _with_path(level: Level, path: str) -> Level:
    """``dataclasses.replace(level, path=path)`` in a fraction of its time (every field is copied as is:
    the level is frozen and its values are checked already)."""
    out = object.__new__(Level)
    out.__dict__.update(level.__dict__)
    out.__dict__["path"] = path
    return out


class _Filled(SharedBands):
    """A template's bands with the source's id in their paths' holes, each band filled when first looked
    up: a request reads one or a few of a source's bands (filling all 13 of every Sentinel-2-like source
    took ~1.5 s of a 10k plan: ``benchmarks/plan_scale.py --bands 13``)."""

    __slots__ = ("_bands", "_id", "_done")

    def __init__(self, bands: dict[str | None, Band], source_id: str) -> None:
        self._bands, self._id = bands, source_id
        self._done: dict[str | None, Band] = {}

    def __getitem__(self, name: str | None) -> Band:
        band = self._done.get(name)
        if band is None:
            t, sid = self._bands[name], self._id
            levels = tuple(_with_path(lv, lv.path.replace(_HOLE, sid)) for lv in t.levels)
            band = self._done[name] = Band(name, t.path.replace(_HOLE, sid), levels)
        return band

    def grids(self, name: str | None) -> tuple[Level, ...]:
        return self._bands[name].levels

    def level(self, name: str | None, i: int) -> Level:  # the plan's levels table takes one a source
        band = self._done.get(name)
        if band is not None:
            return band.levels[i]
        lv = self._bands[name].levels[i]
        return _with_path(lv, lv.path.replace(_HOLE, self._id))

    def __contains__(self, name: object) -> bool:
        return name in self._bands

    def __iter__(self) -> Iterator[str | None]:
        return iter(self._bands)

    def __len__(self) -> int:
        return len(self._bands)


def checked_bands_many(
    texts: list[Any], ids: list[str], base: np.ndarray, shape: np.ndarray, memo: dict | None = None
) -> list[Mapping[str | None, Band]]:
    """``checked_bands`` of many rows, the grid checks vectorised over every level of every row (the
    first failing row raises its own error; ``memo``: see ``bands_from_json``). Rows whose text is the
    same once their id is taken out of it (``_template``: revisits of one tile) are parsed and their
    levels' grids checked once."""
    memo = {} if memo is None else memo
    shared: dict[str, tuple[dict[str | None, Band], np.ndarray, bool] | None] = {}
    out: list[Mapping[str | None, Band]] = []
    grids = []
    for text, source_id in zip(texts, ids, strict=True):
        key = _template(text, source_id)
        if key is not None and key not in shared:
            try:
                parsed, rows = _grids(key, source_id, memo)
                unset = np.full((len(rows), 8), np.nan)  # every level's grid checked here, once
                ok = _holes_in_paths_only(parsed) and not _bad_grids(rows, unset[:, :6], unset[:, 6:]).any()
            except MetaSchemaError:  # the row's own text says why, below
                ok = False
            # each row sharing it checks its base level alone against its own transform_*/shape_*
            shared[key] = (parsed, rows[:1], "\\u0000" in key) if ok else None
        found = shared[key] if key is not None else None
        if found is None:
            bands, rows = _grids(text, source_id, memo)
            out.append(bands)
        else:
            out.append(_Filled(found[0], source_id) if found[2] else found[0])
            rows = found[1]
        grids.append(rows)
    counts = np.array([len(g) for g in grids], dtype="i8")
    levels = np.concatenate(grids) if grids else np.zeros((0, 10))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype("i8")
    row_base, row_shape = np.full((len(levels), 6), np.nan), np.full((len(levels), 2), np.nan)
    row_base[starts], row_shape[starts] = base, shape
    bad = _bad_grids(levels, row_base, row_shape)
    for i in np.nonzero(np.logical_or.reduceat(bad, starts))[0] if len(levels) else []:
        checked_bands(texts[i], ids[i], base[i], shape[i])  # raises
    return out


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
    request_name = _describe(request, store)
    table = meta.sql(
        f"SELECT {', '.join(map(_quote, wanted))} FROM meta", f"reading /meta for {request_name}"
    )
    table = table.append_column("_row", arrow.column(np.arange(table.num_rows, dtype="i8")))

    rank_cols = table.drop_columns(["bbox", *([BANDS_COLUMN] if BANDS_COLUMN in names else [])])
    register(meta.ctx, "src", rank_cols)
    order_by = ", ".join([*(k.sql() for k in ranking), "_row"])
    order = meta.sql(f"SELECT _row FROM src ORDER BY {order_by}", f"ranking sources for {request_name}")
    order = arrow.values(order["_row"])
    priority = np.empty(table.num_rows, dtype="i8")
    priority[order] = np.arange(table.num_rows)

    ids = [str(v) for v in table["id"].to_pylist()]
    codes = table["proj:code"].to_pylist() if "proj:code" in names else [None] * table.num_rows
    epsgs = table["proj:epsg"].to_pylist() if "proj:epsg" in names else [None] * table.num_rows
    crs = [c if c else f"EPSG:{e}" for c, e in zip(codes, epsgs, strict=True)]

    base = np.stack([arrow.values(table[f"transform_{i}"]) for i in range(6)], axis=1)
    shape = np.stack([arrow.values(table[f"shape_{a}"]) for a in "yx"], axis=1)
    check_rows(ids, crs, base, shape, store.description)
    part_index, part_bounds, bad = wkb_parts(table["bbox"].to_pylist())
    if len(bad):
        row = int(bad[0])
        raise InvalidFootprintError(
            f"/meta row {row} (id {ids[row]!r}) has a bbox that is not valid WKB; {INDEX_HINT}"
        )
    check_bboxes(ids, crs, base, shape, part_index, part_bounds)
    mask = where_mask(table.drop_columns(["_row"]), request.where) if request.where else None
    part_index, part_bounds = keep_parts(part_index, part_bounds, mask)
    root = store.open_root()

    described = table[BANDS_COLUMN] if BANDS_COLUMN in names else None

    def read_many(rows: np.ndarray) -> dict[int, Mapping[str | None, Band]]:
        """The bands of many rows that have the bands column, checked at once."""
        rows = np.asarray(rows, dtype="i8")
        if described is None:
            return {}
        rows = rows[arrow.values(described.is_valid())[rows]] if len(rows) else rows
        found: dict[int, Mapping[str | None, Band]] = {}
        memo: dict = {}  # equal values shared by every row (see bands_from_json)
        column = described.cast(pa.large_string())  # DataFusion's string views have no take
        for part in np.array_split(rows, max(1, len(rows) // BANDS_BATCH)):  # bounded parse lists
            texts = column.take(arrow.column(part)).to_pylist()
            bands = checked_bands_many(texts, [ids[s] for s in part], base[part], shape[part], memo)
            found.update(zip(part.tolist(), bands, strict=True))
        return found

    def read_bands(s: int) -> dict[str | None, Band]:
        if described is not None and described[s].is_valid:
            return checked_bands(described[s].as_py(), ids[s], base[s], shape[s])
        node = root[ids[s]]  # a /meta without the bands column: read the source's groups
        if isinstance(node, zarr.Array):
            return {None: read_band(node, None)[0]}
        if "multiscales" in node.attrs:
            return {None: read_band(node, None)[0]}
        return {name: read_band(child, name)[0] for name, child in sorted(node.members(max_depth=0))}

    def join(c_index: np.ndarray, c_parts: np.ndarray, s_index: np.ndarray, s_parts: np.ndarray):
        """(chunk, source) candidate pairs, streamed in record batches (one query for every chunk)."""
        if len(c_parts) == 0 or len(s_parts) == 0:  # nothing to join (e.g. where= kept no source)
            return
        cell = bin_size(c_parts, s_parts)
        register(meta.ctx, "cparts", _binned("chunk", c_index, c_parts, cell))
        register(meta.ctx, "sparts", _binned("src", s_index, s_parts, cell))
        try:
            with no_panic(f"joining chunks and sources for {request_name}"):
                for batch in meta.ctx.sql(JOIN_SQL).execute_stream():
                    rb = batch.to_pyarrow()
                    yield arrow.values(rb.column(0)).astype("i4"), arrow.values(rb.column(1)).astype("i4")
        finally:
            meta.ctx.deregister_table("cparts")
            meta.ctx.deregister_table("sparts")

    dt = to_datetimes(table["datetime"]) if "datetime" in names else None
    cands = Candidates(ids, crs, priority, dt, base, shape)
    sources = SourceSet(cands, part_index, part_bounds, read_bands, tuple(names), read_many=read_many)
    return sources, join
