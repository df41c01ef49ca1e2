"""merge(): request -> plan -> lazy Cubed array whose blocks run the chunk kernel."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import uuid
from dataclasses import replace
from typing import Any, NamedTuple

import cubed
import numpy as np

from lazymerge.composite import parse_method
from lazymerge.conventions import ProjAttrs, SpatialAttrs
from lazymerge.errors import InvalidRequestError
from lazymerge.executors.workdir import check_work_dir
from lazymerge.grid import TargetGrid
from lazymerge.kernel import KernelOptions, KernelTask, merge_block
from lazymerge.planner import build_plan
from lazymerge.planner.report import check_memory
from lazymerge.planner.request import build_request
from lazymerge.planner.table import CHUNK_CACHE_BYTES as PLAN_CACHE_BYTES
from lazymerge.planner.table import Plan
from lazymerge.reads import CHUNK_CACHE_BYTES as SOURCE_CACHE_BYTES
from lazymerge.sources import crs_code
from lazymerge.stores import resolve_store

DEFAULT_ALLOWED_MEM = "1GB"
# a worker's baseline: the interpreter and libraries (100 MB), plus its caches of plan chunks and of decoded
# source chunks; pass a Spec with your own reserved_mem when you change LAZYMERGE_CHUNK_CACHE_MB
DEFAULT_RESERVED_MEM = 100_000_000 + PLAN_CACHE_BYTES + SOURCE_CACHE_BYTES


class _MergeTuple(NamedTuple):
    array: cubed.Array
    spatial: SpatialAttrs
    proj: ProjAttrs
    time_coords: np.ndarray | None


class MergeResult(_MergeTuple):
    """``(array, spatial, proj, time_coords)``, plus the ``plan`` and ``grid`` it came from."""

    plan: Plan
    grid: TargetGrid
    task: KernelTask  # what each block's task carries besides its block id
    provenance: cubed.Array | None  # with provenance=True: each pixel's source table row (-1: none)

    def to_xarray(self):
        """A DataArray backed by the Cubed array, with rasterix RasterIndex coords and the xproj CRS."""
        from lazymerge.xarray import to_xarray

        return to_xarray(self)

    def to_zarr(self, target: Any, **kwargs: Any) -> Any:
        """Stream the blocks into Zarr at ``target``; see lazymerge.output.write_zarr for the options
        (executor, resume, overviews, progress; an Icechunk session is committed only on success)."""
        from lazymerge.output import write_zarr

        return write_zarr(self, target, **kwargs)


def default_spec(work_dir: str | None = None, allowed_mem: int | str = DEFAULT_ALLOWED_MEM) -> cubed.Spec:
    """Local threads, with allowed_mem always explicit (a Spec without it allows 0 bytes)."""
    return cubed.Spec(work_dir=work_dir, allowed_mem=allowed_mem, reserved_mem=DEFAULT_RESERVED_MEM)


def _plan_location(spec: cubed.Spec) -> str:
    """Where the plan is saved for the tasks: under the spec's work_dir, or a temp dir removed at exit."""
    if spec.work_dir:
        return f"{str(spec.work_dir).rstrip('/')}/lazymerge-plan-{uuid.uuid4().hex}.zarr"
    tmp = tempfile.mkdtemp(prefix="lazymerge-plan-")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    return f"{tmp}/plan.zarr"


def kernel_task(plan: Plan, store: Any, spec: cubed.Spec) -> KernelTask:
    """Save the plan where the tasks can read it and return what every task carries."""
    path = plan.save(_plan_location(spec))
    time_dim = plan.time_coords is not None
    options = KernelOptions(plan.resampling, plan.method, plan.exact, nodata=plan.nodata)
    quality = len(plan.bands) if plan.quality_band else None  # the quality band's layer, after the bands
    n_layers = len(plan.layer_bands)
    return KernelTask(path, store, plan.grid, plan.dtype, plan.band_dim, time_dim, n_layers, options, quality)


def lazy_array(plan: Plan, store: Any, spec: cubed.Spec, task: KernelTask | None = None) -> cubed.Array:
    """The Cubed array of a plan: one kernel task per block, reading its rows from the saved plan.

    Raises TaskMemoryError, naming the chunk, when a task would need more than allowed_mem."""
    mem = check_memory(plan, int(spec.allowed_mem) - int(spec.reserved_mem or 0))
    task = task or kernel_task(plan, store, spec)
    time_dim = task.time_dim
    chunks = plan.grid.chunks
    if plan.band_dim:
        chunks = ((1,) * len(plan.bands), *chunks)
    if time_dim:
        chunks = ((1,) * plan.n_times, *chunks)
    out_block = int(np.prod([c[0] for c in chunks])) * np.dtype(task.dtype).itemsize
    array = cubed.map_blocks(
        merge_block,
        dtype=np.dtype(task.dtype),
        chunks=chunks,
        spec=spec,
        task=task,
        extra_projected_mem=max(mem - out_block, 0),  # reads and kernel arrays, beyond the output block
    )
    return array


def merge(
    store: Any,
    crs: Any = None,
    bbox: Any = None,
    resolution: Any = None,
    chunk_size: Any = (512, 512),
    bands: Any = None,
    datafusion: bool | None = None,
    sortby: Any = None,
    *,
    groupby: str | None = None,
    where: str | None = None,
    cull: bool = False,
    resampling: str = "nearest",
    method: Any = "first",
    exact: bool = False,
    dtype: Any = None,
    nodata: float | None = None,
    plan: Plan | str | None = None,
    provenance: bool = False,
    spec: cubed.Spec | None = None,
) -> MergeResult:
    """Mosaic every source of ``store`` into one grid, lazily.

    Parameters
    ----------
    store
        obstore store, zarr Store, Icechunk Session, or path/URL.
    crs, bbox, resolution
        The target grid: its CRS, (xmin, ymin, xmax, ymax) in that CRS, and its pixel size.
    chunk_size
        (rows, cols) of each output chunk; edges are ragged.
    bands
        A band name (2-D result), a list of names (a leading band dimension, in that order), or None:
        every band that all contributing sources share (2-D when that is one band; several are taken in
        name order, with a BandsInferredWarning saying which).
    datafusion
        True: discover sources by SQL over /meta; False: scan the store's conventions; None: /meta when
        the store has one.
    sortby
        Column or list of columns of the source table (``-col`` for descending) giving priority; earlier
        sources win where they overlap (within each time group). None keeps the table's row order.
    groupby
        None: one composite. ``"time"`` (each distinct timestamp), ``"day"`` (UTC date) or ``"solar_day"``
        (local solar date at each source's longitude): a leading time dimension, one composite per group,
        labelled by ``time_coords``. Needs a ``datetime`` per source (/meta column or group attribute).
    where
        A SQL predicate over the source table's columns (e.g. ``"cloud_cover < 20"``), parsed by
        DataFusion as one expression: only the sources it holds for are merged.
    cull
        Drop, per chunk, sources that higher-priority sources already cover (first-valid compositing).
        Assumes each source is valid over its whole grid; leave it off when sources have nodata inside.
    resampling
        GDAL's names and semantics: ``nearest`` (default), ``bilinear``, ``cubic``, ``cubic_spline``,
        ``lanczos`` (kernels widen when downsampling; windows get a halo), or the area statistics
        ``average``, ``min``, ``max``, ``sum``, ``rms``, ``mode``, ``med``, ``q1``, ``q3``.
    method
        How overlapping sources combine: ``first`` (default), ``last``, ``min``, ``max``, ``mean``,
        ``median``, ``count``, ``sum``, ``quality:<band>`` (per pixel, the source whose band is highest
        there), ``quality:<column>`` (sources ranked by a source-table column, highest first), or a class
        with the same protocol (lazymerge.composite).
    exact
        Transform every pixel exactly; by default a control grid every 32 pixels, checked against the
        exact transform at cell centres and refined where it is off by more than 0.01 source pixel.
    dtype, nodata
        Output dtype (default: a float holding every source dtype) and the value where no source has
        one (default NaN; required for an integer dtype).
    provenance
        Also build ``result.provenance``: an int32 array of the source table row each pixel came from
        (-1 where none), for methods that take each pixel from one source.
    plan
        A Plan (or the path of a saved one) to run as is, without planning again; then ``store`` is only
        read for pixels and the grid arguments are ignored.
    spec
        The cubed.Spec to compute with (default: local threads, allowed_mem 1GB).

    Returns
    -------
    MergeResult
        ``(array, spatial, proj, time_coords)`` with ``.plan``, ``.grid``, ``.to_xarray()``.

    Raises
    ------
    lazymerge.errors.LazymergeError
        A typed subclass naming the bad value and the fix.
    """
    spec = spec or default_spec()
    check_work_dir(spec.work_dir)  # before planning: a bad work_dir fails at once
    if plan is None:
        request = build_request(
            store=store,
            crs=crs,
            bbox=bbox,
            resolution=resolution,
            chunk_size=chunk_size,
            bands=bands,
            datafusion=datafusion,
            sortby=sortby,
            groupby=groupby,
            where=where,
            cull=cull,
            resampling=resampling,
            method=method,
            exact=exact,
            dtype=dtype,
            nodata=nodata,
        )
        plan, handle = build_plan(request), request.store
    else:
        plan, handle = Plan.load(plan) if isinstance(plan, str) else plan, resolve_store(store)
    task = kernel_task(plan, handle.zarr_store, spec)
    array = lazy_array(plan, handle.zarr_store, spec, task)
    grid = plan.grid
    h, w = grid.shape
    spatial = SpatialAttrs(
        dimensions=("y", "x"), transform=tuple(grid.transform)[:6], bbox=grid.bbox, shape=(h, w)
    )
    result = MergeResult(array, spatial, ProjAttrs(code=crs_code(grid.crs)), plan.time_coords)
    result.plan = plan
    result.grid = grid
    result.task = task
    result.provenance = None
    if provenance:
        if not getattr(parse_method(plan.method), "picks_one", False):
            raise InvalidRequestError(
                f"provenance=True needs a method that takes each pixel from one source (first, last, min, "
                f"max), not {plan.method!r}"
            )
        ptask = replace(task, dtype="int32", options=replace(task.options, provenance=True))
        result.provenance = lazy_array(plan, handle.zarr_store, spec, ptask)
    return result
