"""What a plan will cost before it runs: bytes read, each task's projected memory, a summary and a plot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lazymerge import arrow
from lazymerge.contract.budget import GREEN, GREEN_CELLS, PIXEL_OVERHEAD, PIXEL_PER_CRS, READ_AHEAD
from lazymerge.contract.model import Plan
from lazymerge.errors import TaskMemoryError

HISTOGRAM_EDGES = (0, 1, 2, 3, 5, 9, 17, 33)


def _level_column(plan: Plan, name: str) -> np.ndarray:
    return arrow.values(plan.levels[name])[plan.level_ids()]


def _read_pixels(plan: Plan) -> np.ndarray:
    """Pixels each row reads: its window rounded out to the source's chunk grid."""
    if plan.n_pairs == 0:
        return np.zeros(0, dtype="i8")
    t = plan.table
    r0, r1, c0, c1 = (
        arrow.values(t[c]).astype("i8") for c in ("src_row0", "src_row1", "src_col0", "src_col1")
    )
    cy = np.maximum(_level_column(plan, "chunk_y"), 1)
    cx = np.maximum(_level_column(plan, "chunk_x"), 1)
    return (-(-r1 // cy) - r0 // cy) * cy * (-(-c1 // cx) - c0 // cx) * cx


def read_bytes(plan: Plan) -> np.ndarray:
    """Uncompressed bytes each row reads: its window rounded out to the source's chunk grid."""
    if plan.n_pairs == 0:
        return np.zeros(0, dtype="i8")
    itemsize = np.array([np.dtype(d).itemsize for d in plan.levels["dtype"].to_pylist()])[plan.level_ids()]
    return _read_pixels(plan) * itemsize


def _quality_rows(plan: Plan) -> np.ndarray:
    """Which rows are of the quality band (``quality:<band>``) or a mask band: read by the output bands'
    tasks, one window at a time, not tasks of their own."""
    if len(plan.layer_bands) == len(plan.bands):
        return np.zeros(plan.n_pairs, dtype=bool)
    nr, nc = plan.grid.nchunks
    return plan.chunk_keys() // (nr * nc) % len(plan.layer_bands) >= len(plan.bands)


def task_memory(plan: Plan) -> tuple[np.ndarray, np.ndarray]:
    """(chunk key, projected bytes) of every task with rows: its block, the kernel's per-pixel arrays,
    its largest read held twice (compressed and decoded), READ_AHEAD more such reads in flight, its
    chunk's largest quality-band read (``quality:<band>``), and for ``average``/``sum``/``rms`` the
    running sums over its largest window (two float64 arrays, up to ``GREEN_CELLS`` pixels)."""
    if plan.n_pairs == 0:
        return np.zeros(0, dtype="i8"), np.zeros(0, dtype="i8")
    keys, reads, quality = plan.chunk_keys(), read_bytes(plan), _quality_rows(plan)
    uniq, inverse = np.unique(keys[~quality], return_inverse=True)
    largest = np.zeros(len(uniq), dtype="i8")
    np.maximum.at(largest, inverse, reads[~quality])
    crs_of_row = np.unique(arrow.values(plan.levels["crs"]), return_inverse=True)[1]
    crs_of_row = crs_of_row[plan.level_ids()[~quality]].astype("i8")
    n = int(crs_of_row.max()) + 1
    n_crs = np.bincount(np.unique(inverse * n + crs_of_row) // n, minlength=len(uniq))  # CRSs per task
    ch, cw = plan.grid.chunk_size
    pixels = ch * cw
    block = pixels * (np.dtype(plan.dtype).itemsize + PIXEL_OVERHEAD + PIXEL_PER_CRS * n_crs)
    mem = block + (2 + READ_AHEAD) * largest
    if any(r in GREEN for r in plan.band_resampling()):
        cells = np.zeros(len(uniq), dtype="i8")
        np.maximum.at(cells, inverse, _read_pixels(plan)[~quality])
        mem = mem + 16 * np.minimum(cells, GREEN_CELLS)
    if quality.any():  # (time, chunk) of every key: the quality window is held beside each band's reads
        nr, nc = plan.grid.nchunks
        nl = len(plan.layer_bands)

        def chunk_of(k: np.ndarray) -> np.ndarray:
            return k // (nr * nc) // nl * (nr * nc) + k % (nr * nc)

        per_chunk = np.zeros(plan.n_times * nr * nc, dtype="i8")
        np.maximum.at(per_chunk, chunk_of(keys[quality]), reads[quality])
        mem = mem + per_chunk[chunk_of(uniq)]
    return uniq, mem


def check_memory(plan: Plan, allowed_mem: int) -> int:
    """The largest task's projected memory; TaskMemoryError naming the chunk when it exceeds allowed_mem."""
    keys, mem = task_memory(plan)
    if len(mem) == 0:
        return 0
    worst = int(np.argmax(mem))
    if mem[worst] > allowed_mem:
        nr, nc = plan.grid.nchunks
        layer, rest = divmod(int(keys[worst]), nr * nc)
        row, col = divmod(rest, nc)
        raise TaskMemoryError(
            f"chunk (row {row}, col {col}, layer {layer}) would need {mem[worst] / 2**20:.0f} MiB, "
            f"{(mem[worst] - allowed_mem) / 2**20:.0f} MiB more than allowed_mem "
            f"({allowed_mem / 2**20:.0f} MiB); pass a smaller chunk_size (now {plan.grid.chunk_size}) "
            "or a larger allowed_mem"
        )
    return int(mem[worst])


@dataclass(frozen=True)
class PlanSummary:
    """The numbers a user checks before paying for a run."""

    grid: str
    bands: list
    times: int
    chunks_total: int
    chunks_busy: int
    pairs_before_cull: int
    pairs: int
    sources_used: int
    sources_total: int
    histogram: list[tuple[str, int]]
    bytes_read: int
    tasks: int
    largest_task_mem: int
    allowed_mem: int | None
    timings: dict[str, float]
    estimate: Any = None  # contract.pricing.RunEstimate: requests, bytes, time and cost

    def __str__(self) -> str:
        hist = ", ".join(f"{label}: {n}" for label, n in self.histogram)
        mem = f"{self.largest_task_mem / 2**20:.1f} MiB"
        if self.allowed_mem:
            mem += f" (allowed_mem {self.allowed_mem / 2**20:.0f} MiB)"
        steps = ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items())
        return "\n".join(
            [
                f"target grid        {self.grid}",
                f"bands              {self.bands}"
                + (f", {self.times} time groups" if self.times > 1 else ""),
                f"chunks             {self.chunks_total} total, {self.chunks_busy} with sources",
                f"pairs              {self.pairs_before_cull} before culling, {self.pairs} after",
                f"sources            {self.sources_used} used of {self.sources_total}",
                f"sources per chunk  {hist}",
                f"source bytes read  {self.bytes_read / 2**20:.1f} MiB (uncompressed, chunk-aligned)",
                f"tasks              {self.tasks}; largest projected memory {mem}",
                f"planning time      {sum(self.timings.values()):.2f} s ({steps})",
                *([str(self.estimate)] if self.estimate is not None else []),
            ]
        )


def summarize(plan: Plan, allowed_mem: int | None = None, estimate: Any = None) -> PlanSummary:
    nr, nc = plan.grid.nchunks
    nl = len(plan.layer_bands)
    per_chunk = np.bincount(plan.chunk_keys(), minlength=plan.n_times * nl * nr * nc)
    # the output bands' chunks: a quality band (quality:<band>) is read by them, not a layer of its own
    per_chunk = per_chunk.reshape(plan.n_times, nl, nr * nc)[:, : len(plan.bands)].ravel()
    edges = [*HISTOGRAM_EDGES, max(int(per_chunk.max(initial=0)) + 1, HISTOGRAM_EDGES[-1] + 1)]
    counts = np.histogram(per_chunk, bins=edges)[0]
    labels = [str(a) if b - a == 1 else f"{a}-{b - 1}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    labels[-1] = f"{edges[-2]}+"
    _, mem = task_memory(plan)
    return PlanSummary(
        grid=repr(plan.grid),
        bands=list(plan.bands),
        times=plan.n_times,
        chunks_total=len(per_chunk),
        chunks_busy=int((per_chunk > 0).sum()),
        pairs_before_cull=plan.pairs_before_cull if plan.pairs_before_cull is not None else plan.n_pairs,
        pairs=plan.n_pairs,
        sources_used=len(np.unique(arrow.values(plan.table["source"]))),
        sources_total=plan.n_sources,
        histogram=[(lab, int(n)) for lab, n in zip(labels, counts, strict=True) if n],
        bytes_read=int(read_bytes(plan).sum()),
        tasks=len(per_chunk),
        largest_task_mem=int(mem.max(initial=0)),
        allowed_mem=allowed_mem,
        timings=dict(plan.timings),
        estimate=estimate,
    )
