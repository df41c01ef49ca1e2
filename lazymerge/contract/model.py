"""Plan: the chunk -> ordered sources table, the levels it reads, and its on-disk CSR layout for tasks.

On disk (a Zarr group) a task fetches only its own rows: ``start``/``count`` on the (band, row, col) chunk
grid, then one slice of the flat ``rows/*`` arrays, then the ``levels/*`` entries those rows name.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import zarr
from affine import Affine
from pyproj import CRS

from lazymerge import arrow
from lazymerge.aio import zarr_gather
from lazymerge.catalog.stores import zarr_location
from lazymerge.contract.schema import LEVEL_COLUMNS, LEVEL_SCHEMA, PLAN_FORMAT, empty_plan_table
from lazymerge.contract.tasks import forget_plan
from lazymerge.errors import InvalidRequestError, PlanFormatError
from lazymerge.grid import TargetGrid
from lazymerge.kernel.composite import method_name, parse_method
from lazymerge.kernel.masks import Mask, parse_masks
from lazymerge.kernel.resampling import band_resampling


def spilled_table(batches: Iterable[pa.Table], directory: str | None = None) -> pa.Table:
    """The batches' rows in one table that lives in a file, not in memory: each batch is appended to an
    Arrow IPC file in ``directory`` (default: the system temporary directory) as it arrives, and the file
    is read back memory-mapped, then unlinked (the mapping keeps it readable until the table is freed;
    where a mapped file cannot be unlinked, it is deleted at exit)."""
    fd, path = tempfile.mkstemp(prefix="lazymerge-plan-", suffix=".arrow", dir=directory)
    os.close(fd)
    writer = None
    try:
        with pa.OSFile(path, "wb") as sink:
            for batch in batches:
                if writer is None:
                    writer = pa.ipc.new_file(sink, batch.schema)
                writer.write_table(batch)
            if writer is None:
                return empty_plan_table()
            writer.close()
        table = pa.ipc.open_file(pa.memory_map(path, "r")).read_all()
    finally:
        try:
            os.unlink(path)
        except OSError:  # a mapped file on Windows: deleted when the process exits
            atexit.register(_remove, path)
    return table


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


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
    resampling: str | dict[str, str] = "nearest"  # one name, or per band name ('*': the others)
    method: Any = "first"  # compositing method: a name, or a class (saved by its registered name)
    exact: bool = False
    nodata: float | None = None  # output fill (None: NaN)
    quality_band: str | None = None  # method quality:<band>: rows of this band follow the output bands'
    rescale: bool = False  # apply each level's scale_factor/add_offset before compositing
    masks: tuple[Mask, ...] = ()  # pixel masks: rows of their bands follow the output (and quality) bands'

    def band_resampling(self) -> list[str]:
        """The resampling of each output band."""
        return [band_resampling(self.resampling, b) for b in self.bands]

    @property
    def mask_bands(self) -> list[str]:
        """The distinct bands the masks read, in order."""
        return list(dict.fromkeys(m.band for m in self.masks))

    @property
    def layer_bands(self) -> list[str | None]:
        """The bands the table's ``band`` column indexes: the output bands, the quality band, then the
        mask bands."""
        quality = [self.quality_band] if self.quality_band else []
        return [*self.bands, *quality, *self.mask_bands]

    def mask_layers(self) -> tuple[int, ...]:
        """The layer (index into ``layer_bands``) of each mask's band."""
        layers = self.layer_bands
        return tuple(len(layers) - len(self.mask_bands) + self.mask_bands.index(m.band) for m in self.masks)

    @property
    def n_pairs(self) -> int:
        return self.table.num_rows

    @property
    def n_times(self) -> int:
        return 1 if self.time_coords is None else len(self.time_coords)

    def rows(self, band: int, row: int, col: int, time: int = 0) -> pa.Table:
        """The rows of one chunk of one band (and time group), in priority order."""
        t = self.table
        wanted = {"band": band, "chunk_row": row, "chunk_col": col}
        if self.time_coords is not None:
            wanted["time"] = time
        mask = np.logical_and.reduce([arrow.values(t[name]) == v for name, v in wanted.items()])
        return t.filter(arrow.column(mask))

    def layers(self) -> np.ndarray:
        """Layer of every row: ``time * n_bands + band``, the leading axis of the saved CSR index."""
        layer = arrow.values(self.table["band"]).astype("i8")
        if self.time_coords is not None:
            layer = layer + arrow.values(self.table["time"]).astype("i8") * len(self.layer_bands)
        return layer

    @property
    def n_busy_chunks(self) -> int:
        """Chunks (of every band and time group) with at least one row."""
        return len(np.unique(self.chunk_keys()))

    def chunk_keys(self) -> np.ndarray:
        """Flat index of every row's chunk in the saved (layer, chunk_row, chunk_col) grid."""
        nr, nc = self.grid.nchunks
        t = self.table
        row, col = (arrow.values(t[c]).astype("i8") for c in ("chunk_row", "chunk_col"))
        return (self.layers() * nr + row) * nc + col

    def summary(self, allowed_mem: int | None = None, store: Any = None, **pricing: Any):
        """A PlanSummary (print it): grid, chunks, pairs before/after culling, sources per chunk, bytes
        read, tasks and the largest task's projected memory, planning time, and the priced dry run
        (``contract.pricing.estimate``: GETs, bytes, PUTs, task time, cost; ``store`` sizes a sample of
        source chunks, ``**pricing`` are its keywords: backend, prices, memory_gb, mpix_per_s)."""
        from lazymerge.contract.cost import summarize
        from lazymerge.contract.pricing import estimate

        return summarize(self, allowed_mem, estimate(self, store, **pricing))

    def estimate(self, store: Any = None, **pricing: Any):
        """The priced dry run alone (``lazymerge.contract.pricing.estimate``)."""
        from lazymerge.contract.pricing import estimate

        return estimate(self, store, **pricing)

    def plot(self, path: str | None = None, ax: Any = None) -> Any:
        """Chunk grid coloured by sources per chunk, source footprints outlined; a PNG at ``path``."""
        from lazymerge.contract.plot import plot_plan

        return plot_plan(self, path, ax)

    @classmethod
    def load(cls, path: str) -> Plan:
        """A plan written by ``save`` (or ``lazymerge plan --out``), ready for ``merge(..., plan=...)``."""
        import pyarrow.parquet as pq

        grid, bands, band_dim, dtype = load_plan_grid(path)
        root = zarr.open_group(zarr_location(path), mode="r")
        attrs: dict[str, Any] = dict(root.attrs)  # the JSON save() wrote; converted below, field by field
        times = attrs.get("time_coords")
        columns: dict[str, Any] = {
            name: _read_column(root, path, f"levels/{name}") for name in LEVEL_SCHEMA.names
        }
        columns["nodata"] = [
            v if has else None
            for v, has in zip(columns["nodata"].tolist(), columns["has_nodata"].tolist(), strict=True)
        ]
        return cls(
            grid=grid,
            bands=bands,
            band_dim=band_dim,
            table=pq.ParquetFile(f"{path}/plan.parquet").read(),  # read_table imports pandas
            levels=arrow.table(columns, LEVEL_SCHEMA),
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
            masks=parse_masks(attrs.get("masks")),
            rescale=bool(attrs.get("rescale", False)),
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
            s, b, lv = (arrow.values(t[c]).astype("i8") for c in LEVEL_COLUMNS)
            return (s << 32) | (b << 16) | lv

        return np.searchsorted(key(self.levels), key(self.table)).astype("i4")

    def csr(self) -> dict[str, np.ndarray]:
        """The task index ``save`` writes: ``count``/``start`` of each chunk's rows on the (layer, row, col)
        grid, and each row's ``level_id`` and source ``window``."""
        nl, (nr, nc) = len(self.layer_bands) * self.n_times, self.grid.nchunks
        t = self.table
        count = np.bincount(self.chunk_keys(), minlength=nl * nr * nc).astype("i4")
        start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype("i8")
        window = np.stack(
            [arrow.values(t[c]) for c in ("src_row0", "src_row1", "src_col0", "src_col1")], axis=1
        )
        return {
            "count": count.reshape(nl, nr, nc),
            "start": start.reshape(nl, nr, nc),
            "level_id": self.level_ids(),
            "window": window.astype("i8").reshape(-1, 4),
        }

    def save(self, path: str) -> str:
        """Write the CSR layout to a Zarr group at ``path`` (local path or URL) and return the path."""
        nr, nc = self.grid.nchunks
        forget_plan(path)  # this process may have read an earlier plan there
        root = zarr.open_group(
            zarr_location(path),
            mode="w",
            attributes={  # in one write, not one per key
                "lazymerge_plan": PLAN_FORMAT,
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
                "method": _method_name(self.method),
                "exact": self.exact,
                "nodata": self.nodata,
                "quality_band": self.quality_band,
                "masks": [m.to_dict() for m in self.masks],
                "rescale": self.rescale,
            },
        )
        t = self.table
        csr = self.csr()
        n = max(t.num_rows, 1)
        grid_chunks = (1, min(nr, 256), min(nc, 256))
        arrays: dict[str, tuple[np.ndarray, tuple[int, ...], str | None]] = {  # name: (data, chunks, dtype)
            "count": (csr["count"], grid_chunks, None),
            "start": (csr["start"], grid_chunks, None),
            "rows/level_id": (csr["level_id"], (min(n, 1 << 16),), None),
            "rows/window": (csr["window"], (min(n, 1 << 16), 4), None),
            "rows/priority": (arrow.values(t["priority"]).astype("i4"), (min(n, 1 << 16),), None),
        }
        levels, m = self.levels, max(self.levels.num_rows, 1)
        for name in levels.column_names:
            col = levels[name]
            data = arrow.values(col)
            dtype = "string" if pa.types.is_string(col.type) else None
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


def load_plan_grid(path: str) -> tuple[TargetGrid, list[str | None], bool, str]:
    """The target grid, bands, band_dim flag and dtype of a saved plan."""
    try:
        group = zarr.open_group(zarr_location(path), mode="r")
        attrs: dict[str, Any] = dict(group.attrs)  # JSON, converted below
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError) as exc:
        raise PlanFormatError(
            f"{path!r} is not a saved lazymerge plan ({exc}); write one with Plan.save or "
            "`lazymerge plan ... --out PATH`"
        ) from exc
    if attrs.get("lazymerge_plan") != PLAN_FORMAT:
        raise PlanFormatError(
            f"{path!r} is not a saved lazymerge plan (its attributes have no lazymerge_plan: {PLAN_FORMAT}); "
            "write one with Plan.save or `lazymerge plan ... --out PATH`"
        )
    shape, chunk_size = attrs["shape"], attrs["chunk_size"]
    grid = TargetGrid(
        CRS.from_wkt(attrs["crs"]),
        Affine(*attrs["transform"]),
        (int(shape[0]), int(shape[1])),
        (int(chunk_size[0]), int(chunk_size[1])),
    )
    return grid, list(attrs["bands"]), bool(attrs["band_dim"]), str(attrs["dtype"])


UNREGISTERED = "unregistered:"  # how a saved plan marks a method class with no registered name


def _read_column(root: zarr.Group, path: str, name: str) -> np.ndarray:
    """The whole array ``name`` of a saved plan; PlanFormatError when it is missing or a group."""
    node = root.get(name)
    if not isinstance(node, zarr.Array):
        raise PlanFormatError(f"the saved plan {path!r} has no array {name!r}; write it again with Plan.save")
    return np.asarray(node[...])


def _method_name(method: Any) -> str:
    """How a saved plan names its method: the registered name (a plan is data: no code is named)."""
    name = method_name(method)
    return name if name is not None else f"{UNREGISTERED}{method.__module__}.{method.__qualname__}"


def _load_method(name: str) -> Any:
    """A saved plan's method: a name resolved by the registry (built in, registered, or an installed
    entry point) -- never code that the file names."""
    if name.startswith(UNREGISTERED):
        raise PlanFormatError(
            f"saved plan's method {name[len(UNREGISTERED) :]!r} is a class that was never registered by "
            "name, so a loaded plan cannot run it (a saved plan names no code); register it with "
            "lazymerge.kernel.composite.register_method(name, cls) or a 'lazymerge.methods' entry point, "
            "and plan again with method=name"
        )
    try:
        parse_method(name)
    except InvalidRequestError as exc:
        raise PlanFormatError(
            f"saved plan names method {name!r}, which is not registered here: {exc}"
        ) from exc
    return name
