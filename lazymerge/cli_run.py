"""``lazymerge run``: merge a store onto a grid and write it to Zarr on any executor."""

from __future__ import annotations

import argparse
import time
from typing import Any

from lazymerge.errors import InvalidRequestError


def _floats(text: str, n: int, what: str) -> tuple[float, ...]:
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != n:
        raise InvalidRequestError(f"{what} {text!r} must be {n} numbers separated by commas")
    return values


def add_run_parser(sub: Any) -> None:
    """Register the ``run`` subcommand on the main parser's subparsers."""
    p = sub.add_parser("run", help="merge a store onto a target grid and write Zarr, on any executor")
    p.add_argument("store", help="path or URL of the Zarr store")
    p.add_argument("--crs", required=True, help="target CRS, e.g. EPSG:32618")
    p.add_argument("--bbox", required=True, help="xmin,ymin,xmax,ymax in the target CRS")
    p.add_argument("--resolution", required=True, type=float, help="target pixel size")
    p.add_argument("--chunk-size", default="512,512", help="rows,cols of each output chunk (default 512,512)")
    p.add_argument("--bands", default=None, help="band name or comma-separated names (default: the one band)")
    p.add_argument("--sortby", default=None, help="comma-separated priority columns (-col for descending)")
    p.add_argument("--out", required=True, help="output Zarr path or URL")
    p.add_argument("--executor", default="threads", help="threads (default), processes, lithops, modal, dask")
    p.add_argument("--executor-config", default=None, help="YAML/JSON file of executor options")
    p.add_argument("--work-dir", default=None, help="Cubed work_dir: local path or object-store URL")
    p.add_argument("--allowed-mem", default="1GB", help="memory one task may use (default 1GB)")
    p.add_argument("--reserved-mem", default="100MB", help="worker baseline memory (default 100MB)")
    p.add_argument("--overviews", type=int, default=0, help="overview levels to build (default 0)")
    p.add_argument("--resume", action="store_true", help="render only blocks missing from --out")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: on when stderr is a terminal)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    import cubed

    from lazymerge.executors import get_executor, load_executor_config
    from lazymerge.merge import merge

    options = load_executor_config(args.executor_config) if args.executor_config else {}
    executor = get_executor(args.executor, **options)
    chunk = tuple(int(v) for v in _floats(args.chunk_size, 2, "--chunk-size"))
    bands = args.bands.split(",") if args.bands and "," in args.bands else args.bands
    spec = cubed.Spec(work_dir=args.work_dir, allowed_mem=args.allowed_mem, reserved_mem=args.reserved_mem)
    t0 = time.perf_counter()
    result = merge(
        args.store,
        args.crs,
        _floats(args.bbox, 4, "--bbox"),
        args.resolution,
        chunk_size=chunk,
        bands=bands,
        sortby=args.sortby.split(",") if args.sortby else None,
        spec=spec,
    )
    print(f"plan: {result.plan!r}")
    reports: list = []
    result.to_zarr(
        args.out,
        executor=executor,
        resume=args.resume,
        overviews=args.overviews,
        progress=args.progress,
        report=reports,
    )
    print(f"wrote {args.out} ({args.executor}) in {time.perf_counter() - t0:.2f} s")
    print(reports[0].summary())
