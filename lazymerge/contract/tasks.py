"""The worker side of the plan contract: what every task carries (``KernelTask``) and how it reads its own
rows of a saved plan (``read_task_rows``), cached per worker process.

On disk (a Zarr group, see ``contract.schema``) a task fetches only its own rows: ``start``/``count`` on the
(layer, row, col) chunk grid, then one slice of the flat ``rows/*`` arrays, then the ``levels/*`` entries
those rows name.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr
from zarr import AsyncArray, AsyncGroup
from zarr.core.sync import sync

from lazymerge.aio import zarr_gather
from lazymerge.catalog.sources import Level
from lazymerge.catalog.stores import zarr_location
from lazymerge.contract.budget import PLAN_CACHE_BYTES
from lazymerge.errors import PlanFormatError
from lazymerge.grid import TargetGrid

# default maximum error of the control grid, in source pixels along each axis: a nearest pixel moves only
# where its centre lies within it of a source pixel's edge (<= 2e-5 of pixels; kernel/mapping.py)
THRESHOLD = 1e-5


@dataclass(frozen=True)
class TaskRow:
    """One plan row as a task reads it: the level to read, the source window at that level, and the
    source's row of the source table (/meta or the scan index)."""

    level: Level
    window: tuple[int, int, int, int]
    source: int = -1


_PLAN_CACHE: dict[str, dict[str, Any]] = {}
_LEVEL_COLUMNS = (
    "path",
    "crs",
    "dtype",
    "shape_y",
    "shape_x",
    "nodata",
    "has_nodata",
    "source",
    "scale_factor",
    "add_offset",
) + tuple(f"transform_{k}" for k in range(6))
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
    group = await zarr.api.asynchronous.open_group(zarr_location(path), mode="r")
    names = {"level_id": "rows/level_id", "window": "rows/window"}
    names.update({k: f"levels/{k}" for k in _LEVEL_COLUMNS})
    paths = ["count", "start", *names.values()]
    nodes = await asyncio.gather(*(group.getitem(v) for v in paths))
    count, start, *arrays = (_plan_array(path, v, node) for v, node in zip(paths, nodes, strict=True))
    index = await asyncio.gather(count.getitem(...), start.getitem(...))
    plan: dict[str, Any] = dict(zip(("count", "start"), index, strict=True))
    plan.update({k: zarr.Array(a) for k, a in zip(names, arrays, strict=True)})
    return plan


def _plan_array(path: str, name: str, node: AsyncArray[Any] | AsyncGroup) -> AsyncArray[Any]:
    """``node`` as an array; PlanFormatError, naming the plan and the member, when it is a group."""
    if not isinstance(node, AsyncArray):
        raise PlanFormatError(
            f"{name!r} of the saved plan {path!r} is a group, not an array; "
            "write the plan again with Plan.save"
        )
    return node


def forget_plan(path: str) -> None:
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
            while _chunks_size > PLAN_CACHE_BYTES and len(_chunks) > 1:
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


def _transform(row: np.ndarray) -> tuple[float, float, float, float, float, float]:
    a, b, c, d, e, f = (float(v) for v in row)
    return a, b, c, d, e, f


_saved: set[str] = set()
_saved_lock = threading.Lock()


def save_once(plan: Any, path: str) -> None:
    """Save ``plan`` (a Plan) at ``path`` unless this process already did: the tasks that leave the process
    read it there, those that stay read the plan in memory."""
    with _saved_lock:
        if path not in _saved:
            plan.save(path)
            _saved.add(path)


def _memory_index(plan: Any) -> dict[str, np.ndarray]:
    """The arrays of the saved layout, from a Plan in memory; built once per plan."""
    index = plan.__dict__.get("_task_index")
    if index is None:
        from lazymerge import arrow  # pyarrow: only where the plan is in memory, never in a worker

        index = plan.csr()
        for name in _LEVEL_COLUMNS:
            col = plan.levels[name]
            index[name] = arrow.values(col)
        plan.__dict__["_task_index"] = index  # a race builds it twice, the same
    return index


def read_task_rows(path: str, layer: int, row: int, col: int, plan: Any = None) -> list[TaskRow]:
    """The rows of one chunk of one layer (``time * n_bands + band``), in priority order: from ``plan`` (a
    Plan) when it is in this process, else read from the plan saved at ``path`` (chunks cached per worker)."""
    if plan is not None:
        lv = _memory_index(plan)

        def get(names: tuple[str, ...], lo: int, hi: int) -> list[np.ndarray]:
            return [lv[name][lo:hi] for name in names]
    else:
        lv = _open_plan(path)

        def get(names: tuple[str, ...], lo: int, hi: int) -> list[np.ndarray]:
            return _slices(path, lv, names, lo, hi)

    n = int(lv["count"][layer, row, col])
    if n == 0:
        return []
    s = int(lv["start"][layer, row, col])
    level_ids, windows = get(("level_id", "window"), s, s + n)
    ids = np.unique(level_ids)
    lo, hi = int(ids.min()), int(ids.max()) + 1
    columns = dict(zip(_LEVEL_COLUMNS, get(_LEVEL_COLUMNS, lo, hi), strict=True))
    paths, crss, dtypes, nod, has, src, factor, offset = (
        columns[k]
        for k in ("path", "crs", "dtype", "nodata", "has_nodata", "source", "scale_factor", "add_offset")
    )
    tr = np.stack([columns[f"transform_{k}"] for k in range(6)], axis=1)
    shp = np.stack([columns["shape_y"], columns["shape_x"]], axis=1)
    levels = {
        int(i): Level(
            path=str(paths[i - lo]),
            transform=_transform(tr[i - lo]),
            shape=(int(shp[i - lo][0]), int(shp[i - lo][1])),
            dtype=str(dtypes[i - lo]),
            nodata=float(nod[i - lo]) if has[i - lo] else None,
            crs=str(crss[i - lo]),
            scale_factor=float(factor[i - lo]),
            add_offset=float(offset[i - lo]),
        )
        for i in ids
    }
    return [
        TaskRow(levels[int(i)], (int(w[0]), int(w[1]), int(w[2]), int(w[3])), int(src[int(i) - lo]))
        for i, w in zip(level_ids, windows, strict=True)
    ]


@dataclass(frozen=True)
class KernelOptions:
    """How pixels are computed: resampling, compositing method, exact transform, the nodata fill."""

    resampling: str | tuple[str, ...] = "nearest"  # one name, or one per output band
    method: Any = "first"
    exact: bool = False
    threshold: float = THRESHOLD
    nodata: float | None = None
    provenance: bool = False  # return each pixel's source (its source table row) instead of its value
    masks: tuple[Any, ...] = ()  # lazymerge.kernel.masks.Mask: pixels each source drops before compositing
    rescale: bool = False  # apply each level's scale_factor/add_offset before compositing
    on_error: str = "raise"  # a source window that cannot be read: "raise" SourceReadError, or "skip" it


@dataclass(frozen=True)
class KernelTask:
    """What every task carries: where the plan and the sources are, and the target grid. Small and
    the same size whatever the number of sources."""

    plan_path: str
    store: Any
    grid: TargetGrid
    dtype: str
    band_dim: bool
    time_dim: bool = False
    n_bands: int = 1  # layers per time group: the output bands, then the quality band if any
    options: KernelOptions = KernelOptions()
    quality_layer: int | None = None  # method quality:<band>: that band's layer
    mask_layers: tuple[int, ...] = ()  # the layer of each of ``options.masks``' bands
    out_bands: int = 1  # output bands (a multi-band method renders them all in one task)
    # the Plan itself while the task is in the process that planned: its tasks read their rows from memory.
    # Pickling the task (to ship it to another process) saves the plan at plan_path first, and leaves it out.
    local_plan: Any = field(default=None, compare=False, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        if self.local_plan is not None:
            save_once(self.local_plan, self.plan_path)
        return {**self.__dict__, "local_plan": None}
