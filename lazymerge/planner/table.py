"""Plan: the chunk -> ordered sources table, the levels it reads, and its on-disk CSR layout for tasks.

On disk (a Zarr group) a task fetches only its own rows: ``start``/``count`` on the (band, row, col) chunk
grid, then one slice of the flat ``rows/*`` arrays, then the ``levels/*`` entries those rows name.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import zarr
from affine import Affine
from pyproj import CRS
from zarr.core.sync import sync

from lazymerge.aio import zarr_gather
from lazymerge.grid import TargetGrid

LEVEL_COLUMNS = ("source", "band", "level")


@dataclass
class Plan:
    """The explicit plan of a merge: one row per (band, chunk, contributing source), in priority order.

    ``table`` columns: band, chunk_row, chunk_col, source (row of the source table: /meta or the
    ScanIndex), source_id, priority, level, src_row0, src_row1, src_col0, src_col1 (the source window at
    that level). ``levels`` holds what the kernel needs to read each (source, band, level).
    """

    grid: TargetGrid
    bands: list[str | None]
    band_dim: bool
    table: pa.Table
    levels: pa.Table
    dtype: str
    n_sources: int
    time_coords: np.ndarray | None = None  # datetime64[ns] labels of the time groups (a "time" column)
    pairs_before_cull: int | None = None  # rows before occlusion culling (== n_pairs without it)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per planning step
    resampling: str = "nearest"
    method: Any = "first"  # compositing method name, or a class (saved as module:qualname)
    exact: bool = False
    nodata: float | None = None  # output fill (None: NaN)
    quality_band: str | None = None  # method quality:<band>: rows of this band follow the output bands'

    @property
    def layer_bands(self) -> list[str | None]:
        """The bands the table's ``band`` column indexes: the output bands, then the quality band."""
        return [*self.bands, self.quality_band] if self.quality_band else list(self.bands)

    @property
    def n_pairs(self) -> int:
        return self.table.num_rows

    @property
    def n_times(self) -> int:
        return 1 if self.time_coords is None else len(self.time_coords)

    def rows(self, band: int, row: int, col: int, time: int = 0) -> pa.Table:
        """The rows of one chunk of one band (and time group), in priority order."""
        t = self.table
        mask = pc.and_(
            pc.and_(pc.equal(t["band"], band), pc.equal(t["chunk_row"], row)), pc.equal(t["chunk_col"], col)
        )
        if self.time_coords is not None:
            mask = pc.and_(mask, pc.equal(t["time"], time))
        return t.filter(mask)

    def layers(self) -> np.ndarray:
        """Layer of every row: ``time * n_bands + band``, the leading axis of the saved CSR index."""
        layer = self.table["band"].to_numpy().astype("i8")
        if self.time_coords is not None:
            layer = layer + self.table["time"].to_numpy().astype("i8") * len(self.layer_bands)
        return layer

    @property
    def n_busy_chunks(self) -> int:
        """Chunks (of every band and time group) with at least one row."""
        return len(np.unique(self.chunk_keys()))

    def chunk_keys(self) -> np.ndarray:
        """Flat index of every row's chunk in the saved (layer, chunk_row, chunk_col) grid."""
        nr, nc = self.grid.nchunks
        t = self.table
        row, col = (t[c].to_numpy().astype("i8") for c in ("chunk_row", "chunk_col"))
        return (self.layers() * nr + row) * nc + col

    def summary(self, allowed_mem: int | None = None):
        """A PlanSummary (print it): grid, chunks, pairs before/after culling, sources per chunk, bytes
        read, tasks and the largest task's projected memory, planning time."""
        from lazymerge.planner.report import summarize

        return summarize(self, allowed_mem)

    def plot(self, path: str | None = None, ax: Any = None) -> Any:
        """Chunk grid coloured by sources per chunk, source footprints outlined; a PNG at ``path``."""
        from lazymerge.planner.plot import plot_plan

        return plot_plan(self, path, ax)

    @classmethod
    def load(cls, path: str) -> Plan:
        """A plan written by ``save`` (or ``lazymerge plan --out``), ready for ``merge(..., plan=...)``."""
        import pyarrow.parquet as pq

        grid, bands, band_dim, dtype = load_plan_grid(path)
        root = zarr.open_group(path, mode="r")
        attrs = dict(root.attrs)
        times = attrs.get("time_coords")
        levels = root["levels"]
        columns = {}
        for name in LEVEL_SCHEMA.names:
            values = levels[name][:]
            columns[name] = pa.array(values.tolist() if values.dtype == object else values)
        columns["nodata"] = pa.array(levels["nodata"][:], mask=~levels["has_nodata"][:])
        return cls(
            grid=grid,
            bands=bands,
            band_dim=band_dim,
            table=pq.read_table(f"{path}/plan.parquet"),
            levels=pa.table(columns, schema=LEVEL_SCHEMA),
            dtype=dtype,
            n_sources=int(attrs["n_sources"]),
            time_coords=None if times is None else np.array(times, dtype="datetime64[ns]"),
            pairs_before_cull=attrs.get("pairs_before_cull"),
            timings=dict(attrs.get("timings", {})),
            resampling=attrs.get("resampling", "nearest"),
            method=_load_method(attrs.get("method", "first")),
            exact=bool(attrs.get("exact", False)),
            nodata=attrs.get("nodata"),
            quality_band=attrs.get("quality_band"),
        )

    def __repr__(self) -> str:
        nb = len(self.layer_bands) * self.n_times
        nr, nc = self.grid.nchunks
        busy = self.n_busy_chunks
        return (
            f"Plan({self.grid!r}, bands={self.bands}, chunks={nb * nr * nc} ({busy} non-empty), "
            f"pairs={self.n_pairs}, sources={self.n_sources})"
        )

    def level_ids(self) -> np.ndarray:
        """Row of ``levels`` for every row of ``table`` (``levels`` is sorted by source, band, level)."""

        def key(t: pa.Table) -> np.ndarray:
            s, b, lv = (t[c].to_numpy().astype("i8") for c in LEVEL_COLUMNS)
            return (s << 32) | (b << 16) | lv

        return np.searchsorted(key(self.levels), key(self.table)).astype("i4")

    def save(self, path: str) -> str:
        """Write the CSR layout to a Zarr group at ``path`` (local path or URL) and return the path."""
        nl, (nr, nc) = len(self.layer_bands) * self.n_times, self.grid.nchunks
        _forget(path)  # this process may have read an earlier plan there
        root = zarr.open_group(path, mode="w")
        root.attrs.update(
            {
                "lazymerge_plan": 1,
                "crs": self.grid.crs.to_wkt(),
                "transform": list(self.grid.transform)[:6],
                "shape": list(self.grid.shape),
                "chunk_size": list(self.grid.chunk_size),
                "bands": self.bands,
                "band_dim": self.band_dim,
                "dtype": self.dtype,
                "n_sources": self.n_sources,
                "time_coords": None if self.time_coords is None else [str(v) for v in self.time_coords],
                "pairs_before_cull": self.pairs_before_cull,
                "timings": self.timings,
                "resampling": self.resampling,
                "method": self.method
                if isinstance(self.method, str)
                else f"{self.method.__module__}:{self.method.__qualname__}",
                "exact": self.exact,
                "nodata": self.nodata,
                "quality_band": self.quality_band,
            }
        )
        t = self.table
        count = np.bincount(self.chunk_keys(), minlength=nl * nr * nc).astype("i4")
        start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype("i8")
        n = max(t.num_rows, 1)
        grid_chunks = (1, min(nr, 256), min(nc, 256))
        window = np.stack([t[c].to_numpy() for c in ("src_row0", "src_row1", "src_col0", "src_col1")], axis=1)
        arrays = {  # name: (data, chunks, dtype)
            "count": (count.reshape(nl, nr, nc), grid_chunks, None),
            "start": (start.reshape(nl, nr, nc), grid_chunks, None),
            "rows/level_id": (self.level_ids(), (min(n, 1 << 16),), None),
            "rows/window": (window.astype("i8").reshape(-1, 4), (min(n, 1 << 16), 4), None),
            "rows/priority": (t["priority"].to_numpy().astype("i4"), (min(n, 1 << 16),), None),
        }
        levels, m = self.levels, max(self.levels.num_rows, 1)
        for name in levels.column_names:
            col = levels[name]
            if pa.types.is_string(col.type):
                data, dtype = np.array(col.to_pylist(), dtype=object), "string"
            else:
                data, dtype = col.to_numpy(zero_copy_only=False), None
            arrays[f"levels/{name}"] = (data, (min(m, 4096),), dtype)
        root.create_group("rows")
        root.create_group("levels")
        group = root._async_group  # created concurrently: one round trip each, not one after another
        zarr_gather([_create(group, k, *spec) for k, spec in arrays.items()])
        import pyarrow.parquet as pq  # the readable copy, for people and other tools

        store_path = str(path)
        if "://" not in store_path:
            pq.write_table(self.table, f"{store_path}/plan.parquet")
        return path


async def _create(group: Any, name: str, data: np.ndarray, chunks: tuple[int, ...], dtype: Any) -> None:
    """Create and fill the array ``name`` under ``group`` (``dtype``: None for data's)."""
    if dtype is None:
        await group.create_array(name, data=data, chunks=chunks)
        return
    arr = await group.create_array(name, shape=data.shape, dtype=dtype, chunks=chunks)
    if len(data):
        await arr.setitem(slice(None), data)


@dataclass(frozen=True)
class TaskLevel:
    """What the kernel needs to read and warp one (source, band, level)."""

    path: str
    crs: str
    transform: Affine
    shape: tuple[int, int]
    nodata: float | None
    source: int = -1  # its row of the source table (/meta or the scan index)


@dataclass(frozen=True)
class TaskRow:
    level: TaskLevel
    window: tuple[int, int, int, int]


_PLAN_CACHE: dict[str, dict[str, Any]] = {}
_LEVEL_COLUMNS = ("path", "crs", "shape_y", "shape_x", "nodata", "has_nodata", "source") + tuple(
    f"transform_{k}" for k in range(6)
)
CHUNK_CACHE_BYTES = 64 << 20  # decoded plan chunks kept per worker process
_chunks: OrderedDict[tuple[str, str, int], np.ndarray] = OrderedDict()
_chunks_size = 0
_chunks_lock = threading.Lock()


def _open_plan(path: str) -> dict[str, Any]:
    """A saved plan's arrays, opened once per worker process (metadata is read once, every array's
    concurrently), with its small ``count``/``start`` index held in memory."""
    plan = _PLAN_CACHE.get(path)
    if plan is None:
        plan = sync(_open_arrays(path))
        if len(_PLAN_CACHE) >= 8:
            _PLAN_CACHE.pop(next(iter(_PLAN_CACHE)))
        _PLAN_CACHE[path] = plan
    return plan


async def _open_arrays(path: str) -> dict[str, Any]:
    group = await zarr.api.asynchronous.open_group(path, mode="r")
    names = {"level_id": "rows/level_id", "window": "rows/window"}
    names.update({k: f"levels/{k}" for k in _LEVEL_COLUMNS})
    count, start, *arrays = await asyncio.gather(
        group.getitem("count"), group.getitem("start"), *(group.getitem(v) for v in names.values())
    )
    index = await asyncio.gather(count.getitem(...), start.getitem(...))
    plan: dict[str, Any] = dict(zip(("count", "start"), index, strict=True))
    plan.update({k: zarr.Array(a) for k, a in zip(names, arrays, strict=True)})
    return plan


def _forget(path: str) -> None:
    """Drop what this process cached of the plan at ``path``."""
    global _chunks_size
    _PLAN_CACHE.pop(path, None)
    with _chunks_lock:
        for key in [k for k in _chunks if k[0] == path]:
            _chunks_size -= _chunks.pop(key).nbytes


def _slices(path: str, plan: dict[str, Any], names: tuple[str, ...], lo: int, hi: int) -> list[np.ndarray]:
    """``plan[name][lo:hi]`` of each column through a per-worker LRU of decoded chunks: neighbouring tasks
    share the chunks of the plan's rows and levels, so each is fetched and decoded once per worker, not
    once per task. The chunks not cached are fetched concurrently, in one round trip."""
    global _chunks_size
    wanted = {}  # (name, k) -> its chunk's slice of the column
    for name in names:
        size = plan[name].chunks[0]
        for k in range(lo // size, (hi - 1) // size + 1):
            wanted[name, k] = slice(k * size, min((k + 1) * size, plan[name].shape[0]))
    found = {}
    with _chunks_lock:
        for name, k in wanted:
            block = _chunks.get((path, name, k))
            if block is not None:
                _chunks.move_to_end((path, name, k))
                found[name, k] = block
    missing = [key for key in wanted if key not in found]
    if missing:
        fetched = zarr_gather([plan[name]._async_array.getitem(wanted[name, k]) for name, k in missing])
        with _chunks_lock:
            for key, block in zip(missing, fetched, strict=True):
                found[key] = block
                replaced = _chunks.pop((path, *key), None)  # another thread may have fetched it meanwhile
                _chunks_size += block.nbytes - (0 if replaced is None else replaced.nbytes)
                _chunks[(path, *key)] = block
            while _chunks_size > CHUNK_CACHE_BYTES and len(_chunks) > 1:
                _chunks_size -= _chunks.popitem(last=False)[1].nbytes
    out = []
    for name in names:
        size = plan[name].chunks[0]
        parts = [
            found[name, k][max(lo - k * size, 0) : hi - k * size]
            for k in range(lo // size, (hi - 1) // size + 1)
        ]
        out.append(parts[0] if len(parts) == 1 else np.concatenate(parts))
    return out


def read_task_rows(path: str, layer: int, row: int, col: int) -> list[TaskRow]:
    """The rows of one chunk of one layer (``time * n_bands + band``), in priority order, read from a saved
    plan (its chunks cached per worker)."""
    lv = _open_plan(path)
    n = int(lv["count"][layer, row, col])
    if n == 0:
        return []
    s = int(lv["start"][layer, row, col])
    level_ids, windows = _slices(path, lv, ("level_id", "window"), s, s + n)
    ids = np.unique(level_ids)
    lo, hi = int(ids.min()), int(ids.max()) + 1
    columns = dict(zip(_LEVEL_COLUMNS, _slices(path, lv, _LEVEL_COLUMNS, lo, hi), strict=True))
    paths, crss, nod, has, src = (columns[k] for k in ("path", "crs", "nodata", "has_nodata", "source"))
    tr = np.stack([columns[f"transform_{k}"] for k in range(6)], axis=1)
    shp = np.stack([columns["shape_y"], columns["shape_x"]], axis=1)
    levels = {
        int(i): TaskLevel(
            str(paths[i - lo]),
            str(crss[i - lo]),
            Affine(*tr[i - lo]),
            tuple(int(v) for v in shp[i - lo]),
            float(nod[i - lo]) if has[i - lo] else None,
            int(src[i - lo]),
        )
        for i in ids
    }
    return [
        TaskRow(levels[int(i)], tuple(int(v) for v in w)) for i, w in zip(level_ids, windows, strict=True)
    ]


def load_plan_grid(path: str) -> tuple[TargetGrid, list[str | None], bool, str]:
    """The target grid, bands, band_dim flag and dtype of a saved plan."""
    attrs = dict(zarr.open_group(path, mode="r").attrs)
    if attrs.get("lazymerge_plan") != 1:
        raise ValueError(f"{path!r} is not a saved lazymerge plan")
    grid = TargetGrid(
        CRS.from_wkt(attrs["crs"]),
        Affine(*attrs["transform"]),
        tuple(attrs["shape"]),
        tuple(attrs["chunk_size"]),
    )
    return grid, list(attrs["bands"]), bool(attrs["band_dim"]), str(attrs["dtype"])


def _load_method(name: str) -> Any:
    """A method name, or the class a ``module:qualname`` names."""
    if ":" not in name or name.startswith("quality:"):
        return name
    import importlib

    module, _, qualname = name.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


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
    ]
)


def levels_table(entries: list[tuple[int, int, int, Any, str]]) -> pa.Table:
    """The levels table (LEVEL_SCHEMA) from (source, band, level, Level, crs code) tuples."""
    rows = [
        {
            "source": s,
            "band": b,
            "level": lv,
            "path": level.path,
            "crs": crs,
            **{f"transform_{k}": level.transform[k] for k in range(6)},
            "shape_y": level.shape[0],
            "shape_x": level.shape[1],
            "chunk_y": level.chunks[0],
            "chunk_x": level.chunks[1],
            "dtype": level.dtype,
            "nodata": level.nodata,
            "has_nodata": level.nodata is not None,
        }
        for s, b, lv, level, crs in entries
    ]
    return pa.Table.from_pylist(rows, schema=LEVEL_SCHEMA)
