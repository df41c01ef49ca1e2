"""The public entry points: ``merge`` (request -> plan -> lazy Cubed array whose blocks run the chunk
kernel) and ``plan`` (the same request, planned only)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import uuid
from dataclasses import replace
from typing import Any

import cubed
import numpy as np

from lazymerge.catalog.conventions import ProjAttrs, SpatialAttrs
from lazymerge.catalog.stores import StoreLike, resolve_store, with_object_work_dir
from lazymerge.contract.budget import DEFAULT_RESERVED_MEM
from lazymerge.contract.cost import check_memory
from lazymerge.contract.model import Plan
from lazymerge.contract.tasks import KernelOptions, KernelTask
from lazymerge.crs import crs_code
from lazymerge.errors import InvalidRequestError
from lazymerge.executors.workdir import check_work_dir
from lazymerge.kernel.block import merge_block
from lazymerge.kernel.composite import parse_method
from lazymerge.planner.build import build_plan
from lazymerge.planner.request import MergeRequest
from lazymerge.result import MergeResult

DEFAULT_ALLOWED_MEM = "1GB"


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
    chunks: tuple[tuple[int, ...], ...] = plan.grid.chunks
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
    store: StoreLike,
    *,
    request: MergeRequest | None = None,
    plan: Plan | str | None = None,
    provenance: bool = False,
    spec: cubed.Spec | None = None,
    **options: Any,
) -> MergeResult:
    """Mosaic every source of ``store`` into one grid, lazily.

    Parameters
    ----------
    store
        obstore store, zarr Store, Icechunk Session, or path/URL.
    request
        A ready ``MergeRequest``, instead of its fields as keyword arguments.
    plan
        A Plan (or the path of a saved one) to run as is, without planning again; then ``store`` is only
        read for pixels and no request is taken.
    provenance
        Also build ``result.provenance``: an int32 array of the source table row each pixel came from
        (-1 where none), for methods that take each pixel from one source.
    spec
        The cubed.Spec to compute with (default: local threads, allowed_mem 1GB).
    **options
        The fields of ``lazymerge.MergeRequest``: ``crs``, ``bbox``, ``resolution``, ``chunk_size``,
        ``grid``, ``bands``, ``datafusion``, ``sortby``, ``groupby``, ``where``, ``cull``, ``resampling``,
        ``method``, ``exact``, ``dtype``, ``nodata`` (each documented there).

    Returns
    -------
    MergeResult
        Unpacks as ``(array, spatial, proj, time_coords)``; has ``.plan``, ``.grid``, ``.to_zarr()``,
        ``.to_xarray()``.

    Raises
    ------
    lazymerge.errors.LazymergeError
        A typed subclass naming the bad value and the fix.
    """
    spec = with_object_work_dir(spec or default_spec())
    check_work_dir(spec.work_dir)  # before planning: a bad work_dir fails at once
    handle = resolve_store(store)
    if plan is None:
        plan = build_plan(_request(request, options), handle)
    elif request is not None or options:
        given = sorted(options) + (["request"] if request is not None else [])
        raise InvalidRequestError(
            f"plan= runs a saved plan as is; drop the request arguments {given}, or plan again without plan="
        )
    elif isinstance(plan, str):
        plan = Plan.load(plan)
    task = kernel_task(plan, handle.zarr_store, spec)
    array = lazy_array(plan, handle.zarr_store, spec, task)
    grid = plan.grid
    h, w = grid.shape
    spatial = SpatialAttrs(
        dimensions=("y", "x"), transform=tuple(grid.transform)[:6], bbox=grid.bbox, shape=(h, w)
    )
    prov = None
    if provenance:
        if not getattr(parse_method(plan.method), "picks_one", False):
            raise InvalidRequestError(
                f"provenance=True needs a method that takes each pixel from one source (first, last, min, "
                f"max), not {plan.method!r}"
            )
        ptask = replace(task, dtype="int32", options=replace(task.options, provenance=True))
        prov = lazy_array(plan, handle.zarr_store, spec, ptask)
    proj = ProjAttrs(code=crs_code(grid.crs))
    return MergeResult(array, spatial, proj, plan.time_coords, plan, grid, task, prov)


def plan(store: StoreLike, *, request: MergeRequest | None = None, **options: Any) -> Plan:
    """Plan a merge without computing anything: the same request as ``merge`` (``**options``: the fields
    of ``lazymerge.MergeRequest``).

    Returns
    -------
    Plan
        ``.table`` is the Arrow plan table (one row per chunk x contributing source, priority order);
        ``.summary()``, ``.plot()``, ``.save()``.
    """
    return build_plan(_request(request, options), resolve_store(store))


def _request(request: MergeRequest | None, options: dict[str, Any]) -> MergeRequest:
    """The request: ``request`` itself, or one built from keyword arguments (never both)."""
    if request is None:
        try:
            return MergeRequest(**options)
        except TypeError as exc:  # an unknown keyword
            raise InvalidRequestError(
                f"{exc}; merge/plan take store, then the fields of lazymerge.MergeRequest as keywords"
            ) from exc
    if options:
        raise InvalidRequestError(
            f"pass either request= or its fields as keywords, not both (got request and {sorted(options)})"
        )
    return request
