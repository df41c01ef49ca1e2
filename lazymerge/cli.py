"""Command line: ``lazymerge demo | index | info | plan | run | warm``."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import fields
from typing import Any

from lazymerge.errors import InvalidRequestError, LazymergeError


def _demo(args: argparse.Namespace) -> None:
    from lazymerge.demo import run_demo

    t0 = time.perf_counter()
    run_demo(args.out)
    print(f"done in {time.perf_counter() - t0:.2f} s")


def _index(args: argparse.Namespace) -> None:
    from lazymerge.catalog.meta import write_meta

    t0 = time.perf_counter()
    table = write_meta(args.store)
    print(f"wrote {args.store}/meta: {table.num_rows} sources in {time.perf_counter() - t0:.2f} s")


def _warm(args: argparse.Namespace) -> None:
    import os

    from lazymerge.kernel.warm import warm

    where = os.environ.get("NUMBA_CACHE_DIR", "next to the lazymerge package")
    print(f"compiled the kernel's loops in {warm():.1f} s; numba's cache: {where}")


def _info(args: argparse.Namespace) -> None:
    from lazymerge.catalog.scan import scan_store
    from lazymerge.crs import crs_code

    index = scan_store(args.store)
    print(f"{len(index)} sources; bands shared by all: {index.band_names}")
    for e in index:
        bands = ", ".join(f"{b}: {len(band.levels)} level(s)" for b, band in e.bands.items())
        print(f"  {e.id}  {crs_code(e.crs)}  {e.base.shape[0]}x{e.base.shape[1]}  [{bands}]")


def _floats(text: str | None, n: int, what: str) -> tuple[float, ...] | None:
    """``n`` comma-separated numbers, or InvalidRequestError naming the option."""
    if text is None:
        return None
    try:
        values = tuple(float(p) for p in text.replace(",", " ").split())
    except ValueError:
        values = ()
    if len(values) != n:
        raise InvalidRequestError(f"{what} {text!r} must be {n} numbers separated by commas")
    return values


def _names(text: str | None) -> str | list[str] | None:
    """``B04`` -> "B04"; ``B04,B03,B02`` -> a list (a band dimension)."""
    if text is None:
        return None
    names = [v.strip() for v in text.split(",") if v.strip()]
    return names[0] if len(names) == 1 and "," not in text else names


# How each MergeRequest field is spelled on the command line (the rest: its own type, or a flag for bools)
_PARSE = {
    "bbox": lambda text: _floats(text, 4, "--bbox"),
    "chunk_size": lambda text: tuple(int(v) for v in _floats(text, 2, "--chunk-size") or ()),
    "bands": _names,
    "sortby": lambda text: text.split(","),
    "resolution": float,
    "nodata": float,
}
_NOT_FLAGS = ("grid", "datafusion")  # grid objects come from Python; datafusion is --scan


def _request_args(p: argparse.ArgumentParser, grid_required: bool) -> None:
    """The store, then one flag per MergeRequest field, with the field's documentation as help."""
    from lazymerge.planner.request import MergeRequest

    p.add_argument("store", help="path or URL of the Zarr store")
    for f in fields(MergeRequest):
        if f.name in _NOT_FLAGS:
            continue
        flag = "--" + f.name.replace("_", "-")
        doc = f"{f.metadata['doc']} (default: {f.default!r})"
        if f.type == "bool":
            p.add_argument(flag, action="store_true", default=argparse.SUPPRESS, help=doc)
        else:
            required = grid_required and f.name in ("crs", "bbox", "resolution")
            p.add_argument(flag, required=required, default=argparse.SUPPRESS, help=doc)
    p.add_argument("--scan", action="store_true", help="scan the conventions even if /meta exists")
    p.add_argument("--allowed-mem", default="1GB", help="memory per task (Cubed allowed_mem), default 1GB")


def _request(args: argparse.Namespace) -> dict[str, Any]:
    """The MergeRequest fields given on the command line (the others keep their defaults)."""
    from lazymerge.planner.request import MergeRequest

    given = {f.name: getattr(args, f.name) for f in fields(MergeRequest) if hasattr(args, f.name)}
    options = {k: _PARSE.get(k, str)(v) if isinstance(v, str) else v for k, v in given.items()}
    if args.scan:
        options["datafusion"] = False
    return options


def _spec(args: argparse.Namespace):
    import cubed

    from lazymerge.contract.budget import DEFAULT_RESERVED_MEM

    reserved = getattr(args, "reserved_mem", None) or DEFAULT_RESERVED_MEM
    return cubed.Spec(
        work_dir=getattr(args, "work_dir", None), allowed_mem=args.allowed_mem, reserved_mem=reserved
    )


def _plan(args: argparse.Namespace) -> None:
    from lazymerge.api import plan
    from lazymerge.contract.cost import check_memory

    p = plan(args.store, **_request(args))
    spec = _spec(args)
    check_memory(p, int(spec.allowed_mem) - int(spec.reserved_mem))
    p.save(args.out)
    print(p.summary(int(spec.allowed_mem), args.store, **_pricing(args)))
    print(f"plan written to {args.out}")
    if args.plot:
        p.plot(args.plot)
        print(f"plot written to {args.plot}")


def _pricing(args: argparse.Namespace) -> dict[str, Any]:
    """The dry run's price keywords from --backend, --memory-gb and --price KEY=VALUE."""
    prices = {}
    for item in args.price or []:
        key, sep, value = item.partition("=")
        try:
            prices[key] = float(value) if sep else float("nan")
        except ValueError:
            prices[key] = float("nan")
        if prices[key] != prices[key]:
            raise InvalidRequestError(
                f"--price {item!r} is not KEY=NUMBER; e.g. --price lambda_gb_s=0.0000166667"
            )
    return {"backend": args.backend, "prices": prices, "memory_gb": args.memory_gb}


def _pricing_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default="aws-lambda", help="price table of the dry run (default aws-lambda)")
    p.add_argument("--memory-gb", type=float, default=2.0, help="function memory the price assumes (GB)")
    p.add_argument(
        "--price", action="append", help="override a price, KEY=VALUE (lambda_gb_s, s3_get_per_1000, ...)"
    )


def _run(args: argparse.Namespace) -> None:
    from lazymerge.api import merge
    from lazymerge.executors import get_executor, load_executor_config

    options = load_executor_config(args.executor_config) if args.executor_config else {}
    executor = get_executor(args.executor, **options)  # a bad name or config fails before planning
    spec = _spec(args)
    t0 = time.perf_counter()
    request = _request(args)
    if args.plan and request:
        raise InvalidRequestError(
            f"--plan runs a saved plan as is; drop the request flags {sorted(request)} or the --plan"
        )
    counting, tally = _counting_store(args.store, args.executor)
    result = merge(counting, plan=args.plan, spec=spec, **request)
    summary = result.plan.summary(int(spec.allowed_mem), args.store, **_pricing(args))
    print(summary)
    reports: list = []
    result.to_zarr(
        args.out,
        executor=executor,
        resume=args.resume,
        overviews=args.overviews,
        progress=args.progress,
        report=reports,
    )
    wall = time.perf_counter() - t0
    print(f"wrote {args.out} ({args.executor}) in {wall:.2f} s")
    print(reports[0].summary())
    if tally is not None:
        print("measured vs estimated (source reads counted in this machine's workers):")
        print(summary.estimate.compare(counting.zarr_store.counts(), wall, os.cpu_count() or 1))
        shutil.rmtree(tally, ignore_errors=True)


def _counting_store(store: str, executor: str) -> tuple[Any, str | None]:
    """The store with its reads counted (contract.pricing.CountingStore) when the workers run on this
    machine (threads, processes, synchronous): their tallies meet in a temporary directory."""
    from lazymerge.catalog.stores import StoreHandle, resolve_store
    from lazymerge.contract.pricing import CountingStore

    if executor not in ("threads", "processes", "synchronous"):
        return store, None
    handle = resolve_store(store)
    tally = tempfile.mkdtemp(prefix="lazymerge-io-")
    counting = CountingStore(handle.zarr_store, tally_dir=tally)
    return StoreHandle(counting, handle.obstore, handle.icechunk_session, handle.description), tally


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plan", help="a plan written by `lazymerge plan --out` (no planning again)")
    p.add_argument("--out", required=True, help="output Zarr path or URL")
    p.add_argument("--executor", default="threads", help="threads (default), processes, lithops, modal, dask")
    p.add_argument("--executor-config", help="YAML/JSON file of executor options (for lithops: its config)")
    p.add_argument("--work-dir", help="Cubed work_dir (and where tasks read the plan): local path or URL")
    p.add_argument(
        "--reserved-mem", help="worker baseline memory (default: 100MB + the plan and source-chunk caches)"
    )
    p.add_argument("--overviews", type=int, default=0, help="overview levels to build (default 0)")
    p.add_argument("--resume", action="store_true", help="render only blocks missing from --out")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: on when stderr is a terminal)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lazymerge", description="Lazy mosaics of georeferenced Zarr rasters"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "demo", help="build the seed's 4-tile store, merge it at 10 m and 20 m, write Zarr + PNG"
    )
    p.add_argument("--out", default="demo-output", help="output directory (default: demo-output)")
    p.set_defaults(func=_demo)
    p = sub.add_parser("index", help="write a store's /meta table from its conventions")
    p.add_argument("store", help="path or URL of the Zarr store")
    p.set_defaults(func=_index)
    p = sub.add_parser("info", help="list a store's sources, CRSs and bands")
    p.add_argument("store", help="path or URL of the Zarr store")
    p.set_defaults(func=_info)
    p = sub.add_parser("plan", help="plan a merge (dry run): write the plan, print what it will cost")
    _request_args(p, grid_required=True)
    _pricing_args(p)
    p.add_argument("--out", required=True, help="directory to write the plan to (a Zarr group)")
    p.add_argument("--plot", help="PNG of the chunk grid coloured by sources per chunk")
    p.set_defaults(func=_plan)
    p = sub.add_parser("run", help="merge into Zarr on any executor, from a request or a saved plan (--plan)")
    _request_args(p, grid_required=False)
    _run_args(p)
    _pricing_args(p)
    p.set_defaults(func=_run)
    p = sub.add_parser("warm", help="compile the kernel into numba's cache (NUMBA_CACHE_DIR), for images")
    p.set_defaults(func=_warm)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except LazymergeError as exc:
        print(f"lazymerge: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
