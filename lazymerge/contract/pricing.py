"""A dry run that prices a run: requests, bytes, task time and memory, and dollars, before anything runs;
and, after a run, what it measured against what was estimated.

Everything here is computed from the plan (its windows and the sources' chunk grids), a few ``getsize``
calls on the store (the stored size of a sample of source chunks), a calibrated per-pixel kernel speed
(``MPIX_PER_S``, measured by ``calibrate``) and a price table (``PRICES``). Nothing is looked up on the
network; every number can be overridden.

What is counted as a GET: one request per source chunk a block's windows touch (the kernel fetches whole
chunks). ``gets`` is what ``to_zarr`` does: its write tasks render several neighbouring blocks one after
another (``output.write.blocks_per_task``) in a worker whose chunk cache serves a chunk once per task;
two bounds are given beside it: ``gets_per_block`` (every block fetches its own: ``merge(...).array``
computed with no cache, ``LAZYMERGE_CHUNK_CACHE_MB=0``) and ``gets_shared`` (each chunk once: one worker
whose cache holds everything). Warm workers that keep their cache from task to task fall in between.
Metadata reads (one ``zarr.json`` per source array per worker, the
saved plan's arrays) are small and listed apart, not priced as chunk bytes.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import zarr
import zarr.storage
from zarr.core.buffer import Buffer, BufferPrototype

from lazymerge import arrow
from lazymerge.contract.cost import task_memory
from lazymerge.contract.model import Plan

# Kernel speed in output megapixels per second per source row, one core, per resampling: measured by
# ``calibrate()`` on the development machine (2 x86-64 cores shared with other jobs, so noisy; 512 x 512
# chunks, one UTM source warped into EPSG:3035, uint16). ``mpix_per_s=calibrate()`` uses your machine's.
MPIX_PER_S: dict[str, float] = {  # calibrate(RESAMPLING, repeat=5), 2026-12-07, load ~15 on 2 cores
    "nearest": 104.0,
    "bilinear": 2.8,
    "cubic": 3.8,
    "cubic_spline": 2.6,
    "lanczos": 4.0,
    "average": 4.6,
    "min": 4.4,
    "max": 4.6,
    "sum": 7.7,
    "rms": 7.6,
    "mode": 2.7,
    "med": 2.8,
    "q1": 3.2,
    "q3": 2.5,
}
DECODE_MB_PER_S = 400.0  # zstd/blosc decode of source chunks, MB of decoded data per second per core
REQUEST_LATENCY_S = 0.03  # one object-store round trip; a task overlaps READ_AHEAD + 1 of them

# Prices in USD, as published for us-east-1 (AWS Lambda x86 and S3 Standard, 2024): a small, documented
# table to override with your own (``prices={...}``), not a quote. Nothing is fetched from the network.
PRICES: dict[str, dict[str, float]] = {
    "aws-lambda": {
        "lambda_gb_s": 0.0000166667,  # per GB-second of function memory
        "lambda_per_1m_requests": 0.20,  # per million invocations (one per task)
        "s3_get_per_1000": 0.0004,  # GET requests
        "s3_put_per_1000": 0.005,  # PUT requests
        "s3_gb_month": 0.023,  # storing the output (one month), per GB
    },
}


@dataclass(frozen=True)
class RunEstimate:
    """What a run will do and cost, estimated from the plan before it runs (print it)."""

    backend: str
    tasks: int  # output blocks (one kernel call each)
    busy_tasks: int  # of which read sources
    gets: int  # source chunk GETs of to_zarr's write tasks (each task's chunks once)
    gets_per_block: int  # every block fetching its own (no cache: an upper bound)
    gets_shared: int  # each chunk once (a shared cache: a lower bound)
    metadata_gets: int  # source arrays opened (a few small metadata GETs each, per worker)
    bytes_read: int  # stored bytes of ``gets``
    bytes_read_per_block: int
    bytes_read_shared: int
    bytes_basis: str  # how bytes_read was obtained
    puts: int
    bytes_written: int  # uncompressed output blocks (an upper bound: the output is compressed)
    task_mem: int  # largest projected task memory
    task_seconds: float  # mean projected seconds per busy task, one core
    max_task_seconds: float
    total_seconds: float  # summed over tasks: core-seconds
    memory_gb: float  # function memory the price assumes
    prices: dict[str, float]
    cost: dict[str, float] = field(default_factory=dict)

    @property
    def total_cost(self) -> float:
        return float(sum(self.cost.values()))

    def __str__(self) -> str:
        mib = 2**20
        lines = [
            f"tasks              {self.tasks} ({self.busy_tasks} read sources)",
            f"GET requests       {self.gets} source chunks ({self.gets_per_block} with no cache, "
            f"{self.gets_shared} if each is read once) + metadata of {self.metadata_gets} source arrays",
            f"bytes to read      {self.bytes_read / mib:.1f} MiB ({self.bytes_read_per_block / mib:.1f} "
            f"to {self.bytes_read_shared / mib:.1f} MiB); {self.bytes_basis}",
            f"PUT requests       {self.puts}, {self.bytes_written / mib:.1f} MiB (uncompressed: at most)",
            f"task memory        {self.task_mem / mib:.1f} MiB largest projected",
            f"task time          {self.task_seconds:.2f} s mean, {self.max_task_seconds:.2f} s longest, "
            f"{self.total_seconds:.0f} core-s in all (calibrated per-pixel cost)",
            f"estimated cost     {self.backend} at {self.memory_gb:g} GB: "
            + ", ".join(f"{k} ${v:.4f}" for k, v in self.cost.items())
            + f"; total ${self.total_cost:.4f}",
        ]
        return "\n".join(lines)

    def scaled(self, factor: float, fixed: float = 0.0) -> RunEstimate:
        """This estimate with every task time (and the compute cost) multiplied by ``factor``, plus
        ``fixed`` CPU seconds for the whole run (worker start-up): apply ``time_fit(...)`` of short runs
        measured on the same machine and executor."""
        total = self.total_seconds * factor + fixed
        cost = {**self.cost, "compute": self.cost.get("compute", 0.0) * total / max(self.total_seconds, 1e-9)}
        return replace(
            self,
            task_seconds=self.task_seconds * factor,
            max_task_seconds=self.max_task_seconds * factor,
            total_seconds=total,
            cost=cost,
        )

    def compare(
        self,
        measured: IOCount,
        wall_seconds: float | None = None,
        cores: int = 1,
        cpu_seconds: float | None = None,
    ) -> str:
        """Measured vs estimated: source chunk GETs, bytes read, PUTs, CPU time (the estimate's core-seconds
        against the CPU seconds of the driver and every worker) and wall time (core-seconds / cores)."""

        def row(name: str, est: float, high: float, low: float, got: float) -> str:
            err = (got - est) / est * 100 if est else float("nan")
            return f"{name:<18} {est:>14,.0f} {high:>14,.0f} {low:>14,.0f} {got:>14,.0f} {err:>+8.1f} %"

        out = [
            f"{'':<18} {'estimate':>14} {'no cache':>14} {'read once':>14} {'measured':>14} {'vs est.':>10}",
            row("source GETs", self.gets, self.gets_per_block, self.gets_shared, measured.chunk_gets),
            row(
                "source bytes",
                self.bytes_read,
                self.bytes_read_per_block,
                self.bytes_read_shared,
                measured.chunk_bytes,
            ),
        ]
        if measured.puts:  # the output's store was counted too
            out.append(row("PUTs", self.puts, self.puts, self.puts, measured.puts))
        if cpu_seconds is not None:
            est = self.total_seconds
            out.append(row("CPU s", est, est, est, cpu_seconds).replace(",", ""))
        if wall_seconds is not None:
            est = self.total_seconds / max(cores, 1)
            out.append(row(f"wall s ({cores} cores)", est, est, est, wall_seconds).replace(",", ""))
        return "\n".join(out)


def _chunk_counts(plan: Plan) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per plan row: level id, chunk-row range start/stop and chunk-col range start/stop as one array
    (n, 4) of chunk indices, and the chunk counts."""
    t = plan.table
    r0, r1, c0, c1 = (
        arrow.values(t[c]).astype("i8") for c in ("src_row0", "src_row1", "src_col0", "src_col1")
    )
    ids = plan.level_ids()
    cy = np.maximum(arrow.values(plan.levels["chunk_y"])[ids], 1)
    cx = np.maximum(arrow.values(plan.levels["chunk_x"])[ids], 1)
    rows = np.stack([r0 // cy, -(-r1 // cy), c0 // cx, -(-c1 // cx)], axis=1)
    n = (rows[:, 1] - rows[:, 0]) * (rows[:, 3] - rows[:, 2])
    return ids, rows, n, cy * cx


def _row_chunks(ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(plan row, level id, chunk row, chunk col) of every source chunk of every row's window."""
    if not len(ids):
        return np.zeros((0, 4), dtype="i8")
    across = rows[:, 3] - rows[:, 2]
    n = (rows[:, 1] - rows[:, 0]) * across
    row = np.repeat(np.arange(len(ids)), n)
    k = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)  # chunk number within its row's window
    return np.stack([row, ids[row], rows[row, 0] + k // across[row], rows[row, 2] + k % across[row]], axis=1)


def _distinct(group: np.ndarray, chunks: np.ndarray) -> np.ndarray:
    """The distinct (group, level id, chunk row, chunk col) rows, for ``group`` per chunk row."""
    if not len(chunks):
        return np.zeros((0, 4), dtype="i8")
    return np.unique(np.column_stack([group, chunks[:, 1:]]), axis=0)


def stored_chunk_sizes(
    plan: Plan, store: Any, level_ids: np.ndarray, chunks: np.ndarray, sample: int
) -> list[tuple[int, int]]:
    """(stored bytes, uncompressed bytes) of up to ``sample`` of the given source chunks, evenly spread:
    one ``getsize`` (a HEAD on object stores) each. A chunk never written (all fill) is 0 bytes."""
    from lazymerge.kernel.chunkio import chunk_key

    if not len(level_ids) or store is None or sample <= 0:
        return []
    picks = np.unique(np.linspace(0, len(level_ids) - 1, min(sample, len(level_ids))).astype("i8"))
    paths = plan.levels["path"].to_pylist()
    sizes = []
    for k in picks:
        arr = zarr.open_array(store, path=paths[int(level_ids[k])], mode="r")
        key = chunk_key(arr, (int(chunks[k][0]), int(chunks[k][1])))
        try:
            stored = int(zarr.core.sync.sync(store.getsize(key)))
        except (FileNotFoundError, KeyError):
            stored = 0
        sizes.append((stored, int(np.prod(arr.chunks)) * arr.dtype.itemsize))
    return sizes


def estimate(
    plan: Plan,
    store: Any = None,
    *,
    backend: str = "aws-lambda",
    prices: Mapping[str, float] | None = None,
    memory_gb: float = 2.0,
    mpix_per_s: Mapping[str, float] | None = None,
    sample: int = 64,
    output_blocks: int | None = None,
    blocks_per_task: int | None = None,
) -> RunEstimate:
    """Price a plan before running it.

    Parameters
    ----------
    plan
        The plan (``lazymerge.plan(...)`` or ``MergeResult.plan``).
    store
        The sources' zarr store (``StoreHandle.zarr_store``, or anything ``resolve_store`` accepts); when
        given, ``sample`` source chunks are sized with ``getsize`` and bytes are stored (compressed) bytes
        extrapolated from them; without it, bytes are uncompressed (an upper bound).
    backend, prices
        A name in ``PRICES`` and overrides of its entries (or a whole table for a new name).
    memory_gb
        Function memory the compute price is charged at (e.g. the Lambda memory setting).
    mpix_per_s
        Kernel speed per resampling (``calibrate()``'s result); defaults to ``MPIX_PER_S``.
    output_blocks
        Blocks written (default: every block of the output, as ``to_zarr`` writes them).
    blocks_per_task
        Blocks one task renders (default: ``to_zarr``'s, ``output.write.blocks_per_task``); 1 for
        ``merge(...).array`` computed by Cubed.
    """
    from lazymerge.catalog.stores import resolve_store

    table = {**PRICES.get(backend, {}), **(prices or {})}
    missing = {"lambda_gb_s", "s3_get_per_1000", "s3_put_per_1000"} - set(table)
    if missing:
        from lazymerge.errors import InvalidRequestError

        raise InvalidRequestError(
            f"backend {backend!r} has no prices for {sorted(missing)}; pass prices={{...}} with them "
            f"(known backends: {sorted(PRICES)})"
        )
    speed = {**MPIX_PER_S, **(mpix_per_s or {})}
    ids, chunk_ranges, n, chunk_px = _chunk_counts(plan)
    itemsize = np.array([np.dtype(d).itemsize for d in plan.levels["dtype"].to_pylist()])
    raw_row = n * chunk_px * (itemsize[ids] if len(ids) else 0)
    from lazymerge.output.write import blocks_per_task as to_zarr_batch

    nr, nc = plan.grid.nchunks
    blocks = output_blocks if output_blocks is not None else plan.n_times * len(plan.bands) * nr * nc
    ch, cw = plan.grid.chunk_size
    per_task = blocks_per_task or to_zarr_batch(blocks, ch * cw)
    chunks = _row_chunks(ids, chunk_ranges)
    keys_of_rows = plan.chunk_keys()
    chunk_bytes = (
        np.maximum(arrow.values(plan.levels["chunk_y"]), 1)
        * np.maximum(arrow.values(plan.levels["chunk_x"]), 1)
    ) * itemsize
    per_block = _distinct(keys_of_rows[chunks[:, 0]] if len(chunks) else chunks[:, 0], chunks)
    batched = _distinct(per_block[:, 0] // per_task, per_block)
    once = np.unique(per_block[:, 1:], axis=0)
    gets, raw_batched = len(batched), int(chunk_bytes[batched[:, 1]].sum())
    raw_per_block = int(chunk_bytes[per_block[:, 1]].sum())
    raw_shared = int(chunk_bytes[once[:, 0]].sum())
    zstore = resolve_store(store).zarr_store if store is not None else None
    # sampled from the chunks as the write tasks read them: a chunk read twice weighs twice
    sizes = stored_chunk_sizes(plan, zstore, batched[:, 1], batched[:, 2:], sample)
    if sizes:
        ratio = sum(s for s, _ in sizes) / max(sum(r for _, r in sizes), 1)
        basis = f"stored bytes, from the sizes of {len(sizes)} sampled chunks (stored/raw {ratio:.3f})"
    else:
        ratio, basis = 1.0, "uncompressed bytes (no store given to size chunks): an upper bound"
    keys, mem = task_memory(plan)
    rows_per_task = (
        np.bincount(np.unique(plan.chunk_keys(), return_inverse=True)[1]) if plan.n_pairs else np.zeros(0)
    )
    slowest = min(speed.get(r, min(speed.values())) for r in plan.band_resampling())  # per band
    rate = slowest * 1e6
    seconds = rows_per_task * ch * cw / rate
    if plan.n_pairs:  # decoding and fetching: each task's bytes, its requests overlapped READ_AHEAD + 1
        from lazymerge.contract.budget import READ_AHEAD

        inverse = np.unique(plan.chunk_keys(), return_inverse=True)[1]
        seconds = seconds + np.bincount(inverse, weights=raw_row) / (DECODE_MB_PER_S * 1e6)
        seconds = seconds + np.bincount(inverse, weights=n) * REQUEST_LATENCY_S / (READ_AHEAD + 1)
    block_bytes = ch * cw * np.dtype(plan.dtype).itemsize
    total = float(seconds.sum())
    idle = (blocks - len(seconds)) * 0.01  # empty blocks: a fill and a write
    cost = {
        "compute": (total + idle) * memory_gb * table["lambda_gb_s"],
        "invocations": blocks * table.get("lambda_per_1m_requests", 0.0) / 1e6,
        "GETs": gets * table["s3_get_per_1000"] / 1000,
        "PUTs": blocks * table["s3_put_per_1000"] / 1000,
    }
    return RunEstimate(
        backend=backend,
        tasks=blocks,
        busy_tasks=len(keys),
        gets=gets,
        gets_per_block=len(per_block),
        gets_shared=len(once),
        metadata_gets=len(np.unique(ids)) if len(ids) else 0,
        bytes_read=int(raw_batched * ratio),
        bytes_read_per_block=int(raw_per_block * ratio),
        bytes_read_shared=int(raw_shared * ratio),
        bytes_basis=basis,
        puts=blocks,
        bytes_written=blocks * block_bytes,
        task_mem=int(mem.max(initial=0)),
        task_seconds=float(seconds.mean()) if len(seconds) else 0.0,
        max_task_seconds=float(seconds.max(initial=0.0)),
        total_seconds=total + idle,
        memory_gb=memory_gb,
        prices=table,
        cost=cost,
    )


def calibrate(
    resamplings: Iterable[str] = ("nearest", "bilinear", "cubic", "average"), size: int = 512, repeat: int = 3
) -> dict[str, float]:
    """This machine's kernel speed, in output megapixels per second per source row (one core): one
    random uint16 source in UTM 32N warped into a ``size``-pixel EPSG:3035 chunk, best of ``repeat``.
    Pass the result as ``estimate(..., mpix_per_s=...)``."""
    from affine import Affine
    from pyproj import CRS, Transformer

    from lazymerge.catalog.sources import Level
    from lazymerge.contract.tasks import KernelOptions, TaskRow
    from lazymerge.grid import TargetGrid
    from lazymerge.kernel.block import render_chunk

    x, y = Transformer.from_crs("EPSG:32632", "EPSG:3035", always_xy=True).transform(500000.0, 5300000.0)
    grid = TargetGrid(CRS.from_epsg(3035), Affine(10.0, 0.0, x, 0.0, -10.0, y), (size, size), (size, size))
    n = size + 64
    data = np.random.default_rng(0).integers(1, 10000, (n, n), dtype="u2")
    level = Level(
        "calibration",
        (10.0, 0.0, 500000.0 - 3000, 0.0, -10.0, 5300000.0 + 3000),
        (n, n),
        "uint16",
        0.0,
        crs="EPSG:32632",
    )
    row = TaskRow(level, (0, n, 0, n), 0)
    out = {}
    for name in resamplings:
        options = KernelOptions(resampling=name, nodata=0)
        best = float("inf")
        for _ in range(repeat + 1):  # the first call compiles
            t0 = time.perf_counter()
            render_chunk([row], grid, 0, 0, None, np.dtype("uint16"), options, lambda _s, _r: data)
            best = min(best, time.perf_counter() - t0)
        out[name] = size * size / best / 1e6
    return out


def time_fit(estimates: Iterable[RunEstimate], cpu_seconds: Iterable[float]) -> tuple[float, float]:
    """``(factor, fixed)`` such that ``fixed + factor * est.total_seconds`` gives the measured CPU seconds
    of short runs (a least-squares line through two or more; through the origin with one).

    ``MPIX_PER_S`` and the decode and latency constants are measured on one machine under one load and
    leave out the executor's own costs: a fixed part per run (starting and importing in every worker) and
    a part per task (process forks, (de)serialisation, Cubed and zarr bookkeeping). Measure two small
    parts of the area on the executor you will use (e.g. 1/64 and 1/16), then
    ``estimate(...).scaled(*time_fit(small_estimates, their_cpu_seconds))`` projects the large run. CPU
    seconds are used rather than wall time because they depend far less on what else the machine runs."""
    x = np.array([e.total_seconds for e in estimates], dtype=float)
    y = np.array(list(cpu_seconds), dtype=float)
    if len(x) == 0 or len(x) != len(y) or x.max(initial=0.0) <= 0:
        raise ValueError("time_fit needs as many CPU times as estimates, of runs that render pixels")
    if len(x) == 1 or np.ptp(x) == 0:
        return float(y.sum() / x.sum()), 0.0
    factor, fixed = np.polyfit(x, y, 1)
    if fixed < 0 or factor <= 0:  # noise: fall back to proportional
        return float(y.sum() / x.sum()), 0.0
    return float(factor), float(fixed)


# --- measuring a run: a counting wrapper around the store the kernel reads -----------------------------


@dataclass
class IOCount:
    """Requests and bytes a run made through a CountingStore."""

    chunk_gets: int = 0
    chunk_bytes: int = 0
    metadata_gets: int = 0
    metadata_bytes: int = 0
    puts: int = 0  # chunks written
    put_bytes: int = 0
    metadata_puts: int = 0

    def add(self, other: IOCount) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


_COUNTS: dict[str, IOCount] = {}  # per process, by CountingStore tag


def _is_metadata(key: str) -> bool:
    """Metadata and the writer lease (``.lazymerge-lock``, renewed while a run lasts): not chunk data."""
    name = key.rsplit("/", 1)[-1]
    return name in ("zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata", ".lazymerge-lock")


class CountingStore(zarr.storage.WrapperStore):
    """A zarr store that counts the GETs (chunk and metadata apart) and PUTs made through it, and their
    bytes. Pickles with the store it wraps, so each worker counts its own; ``counts()`` sums them.

    Exact on the ``threads`` and ``synchronous`` executors (one process). With ``tally_dir`` (a local
    directory), each worker process also writes its running totals there after every request, so
    ``counts()`` sums the workers of the ``processes`` and Lithops ``localhost`` executors (same machine
    only: a cloud function's local disk is not the driver's)."""

    def __init__(self, store: Any, tag: str | None = None, tally_dir: str | None = None) -> None:
        super().__init__(store)
        self.tag = tag or uuid.uuid4().hex
        self.tally_dir = tally_dir

    def _with_store(self, store: Any) -> CountingStore:
        return type(self)(store, self.tag, self.tally_dir)

    def __eq__(self, value: object) -> bool:
        return isinstance(value, CountingStore) and self._store == value._store

    def _count(self, key: str, nbytes: int, put: bool = False) -> None:
        c = _COUNTS.setdefault(self.tag, IOCount())
        if put and _is_metadata(key):
            c.metadata_puts += 1
        elif put:
            c.puts += 1
            c.put_bytes += nbytes
        elif _is_metadata(key):
            c.metadata_gets += 1
            c.metadata_bytes += nbytes
        else:
            c.chunk_gets += 1
            c.chunk_bytes += nbytes
        if self.tally_dir:
            path = Path(self.tally_dir) / f"{self.tag}-{os.getpid()}.json"
            tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
            tmp.write_text(json.dumps(c.__dict__))
            os.replace(tmp, path)

    async def get(self, key: str, prototype: BufferPrototype, byte_range: Any = None) -> Buffer | None:
        buf = await self._store.get(key, prototype, byte_range)
        self._count(key, 0 if buf is None else len(buf))
        return buf

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, Any]]
    ) -> list[Buffer | None]:
        key_ranges = list(key_ranges)
        bufs = await self._store.get_partial_values(prototype, key_ranges)
        for (key, _), buf in zip(key_ranges, bufs, strict=True):
            self._count(key, 0 if buf is None else len(buf))
        return bufs

    async def set(self, key: str, value: Buffer) -> None:
        await self._store.set(key, value)
        self._count(key, len(value), put=True)

    def counts(self) -> IOCount:
        """What every process using this store (this tag) counted: this process's, or with ``tally_dir``
        the sum of every worker's tally there (this process's included)."""
        if not self.tally_dir:
            return IOCount(**_COUNTS.get(self.tag, IOCount()).__dict__)
        total = IOCount()
        for path in Path(self.tally_dir).glob(f"{self.tag}-*.json"):
            total.add(IOCount(**json.loads(path.read_text())))
        return total

    def reset(self) -> None:
        """Forget what was counted (this process, and the tallies in ``tally_dir``)."""
        _COUNTS.pop(self.tag, None)
        if self.tally_dir:
            for path in Path(self.tally_dir).glob(f"{self.tag}-*.json"):
                path.unlink(missing_ok=True)
