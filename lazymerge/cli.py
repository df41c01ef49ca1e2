"""Command line: ``lazymerge demo | index | ingest | info | plan | run | warm``."""

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
    if args.stac:
        from lazymerge.catalog.ingest import index_stac

        table = index_stac(args.stac, args.store)
    else:
        table = write_meta(args.store, skip_invalid=args.skip_invalid)
    print(f"wrote {args.store}/meta: {table.num_rows} sources in {time.perf_counter() - t0:.2f} s")


def _ingest(args: argparse.Namespace) -> None:
    from lazymerge.catalog.ingest import ingest
    from lazymerge.executors import get_executor

    t0 = time.perf_counter()
    written = ingest(
        args.sources,
        args.out,
        overviews=args.overviews if args.overviews == "auto" else _overviews(args.overviews, "auto"),
        chunks=args.chunks,
        bands=args.bands,
        resampling=args.resampling,
        executor=get_executor(args.executor),
        progress=args.progress,
    )
    print(
        f"ingested {len(written)} source(s) into {args.out} and wrote its /meta in "
        f"{time.perf_counter() - t0:.2f} s"
    )


def _warm(args: argparse.Namespace) -> None:
    import os

    from lazymerge.kernel.warm import DTYPES, warm

    dtypes = args.dtypes.split(",") if args.dtypes else DTYPES
    where = os.environ.get("NUMBA_CACHE_DIR", "next to the lazymerge package")
    seconds = warm(dtypes)
    print(f"compiled the kernel's loops for {', '.join(dtypes)} sources in {seconds:.1f} s")
    print(f"numba's cache: {where}")


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


def _masks(specs: list[str], bits: list[str]) -> list[Any]:
    """``--mask SCL:3,8,9,10[:dilate]`` and ``--mask-bits QA_PIXEL:1,3,4[:dilate]`` -> Masks."""
    from lazymerge.kernel.masks import Mask

    out = []
    for text, key in [*((t, "values") for t in specs), *((t, "bits") for t in bits)]:
        band, _, rest = text.partition(":")
        numbers, _, grow = rest.partition(":")
        flag = "--mask" if key == "values" else "--mask-bits"
        try:
            values = [float(v) if key == "values" else int(v) for v in numbers.split(",") if v.strip()]
            dilate = int(grow) if grow else 0
        except ValueError:
            values, dilate = [], 0
        if not band or not values:
            raise InvalidRequestError(
                f"{flag} {text!r} must be BAND:n,n,...[:dilate], e.g. {flag} "
                + ("SCL:3,8,9,10" if key == "values" else "QA_PIXEL:1,3,4")
            )
        if key == "values":
            out.append(Mask(band=band, values=tuple(values), dilate=dilate))
        else:
            out.append(Mask(band=band, bits=tuple(int(v) for v in values), dilate=dilate))
    return out


# How each MergeRequest field is spelled on the command line (the rest: its own type, or a flag for bools)
_PARSE = {
    "bbox": lambda text: _floats(text, 4, "--bbox"),
    "chunk_size": lambda text: tuple(int(v) for v in _floats(text, 2, "--chunk-size") or ()),
    "bands": _names,
    "sortby": lambda text: text.split(","),
    "resolution": float,
    "resampling": lambda text: dict(p.split("=", 1) for p in text.split(",")) if "=" in text else text,
    "nodata": float,
    "max_pixels": float,
    "max_tasks": float,
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
        elif f.name == "mask":
            p.add_argument(
                flag,
                action="append",
                default=[],
                metavar="BAND:V,V,...[:DILATE]",
                help="drop pixels whose BAND is one of the values (repeatable), e.g. SCL:3,8,9,10",
            )
            p.add_argument(
                "--mask-bits",
                action="append",
                default=[],
                metavar="BAND:BIT,BIT,...[:DILATE]",
                help="drop pixels whose BAND has any of the bits set (repeatable), e.g. QA_PIXEL:1,3,4",
            )
        else:
            required = grid_required and f.name in ("crs", "bbox", "resolution")
            p.add_argument(flag, required=required, default=argparse.SUPPRESS, help=doc)
    p.add_argument("--scan", action="store_true", help="scan the conventions even if /meta exists")
    p.add_argument("--allowed-mem", default="1GB", help="memory per task (Cubed allowed_mem), default 1GB")


def _request(args: argparse.Namespace) -> dict[str, Any]:
    """The MergeRequest fields given on the command line (the others keep their defaults)."""
    from lazymerge.planner.request import MergeRequest

    given = {f.name: getattr(args, f.name) for f in fields(MergeRequest) if hasattr(args, f.name)}
    masks = _masks(given.pop("mask", []), getattr(args, "mask_bits", []))
    options = {k: _PARSE.get(k, str)(v) if isinstance(v, str) else v for k, v in given.items()}
    if masks:
        options["mask"] = masks
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


def _executor(args: argparse.Namespace):
    """The executor ``--executor`` names; ``--executor-config`` is the Lithops config file for ``lithops``
    (``infra/lithops/*.yaml``), else a mapping of the executor's options."""
    from lazymerge.executors import get_executor, load_executor_config

    if args.executor == "lithops" and args.executor_config:
        return get_executor("lithops", config_file=args.executor_config)
    options = load_executor_config(args.executor_config) if args.executor_config else {}
    return get_executor(args.executor, **options)


def _run(args: argparse.Namespace) -> None:
    from lazymerge.api import merge

    request = _request(args)
    if args.plan and request:
        flags = ", ".join("--scan" if k == "datafusion" else "--" + k.replace("_", "-") for k in request)
        raise InvalidRequestError(
            f"--plan {args.plan!r} runs a saved plan as is, so {flags} would be ignored; drop them, or "
            "plan again with `lazymerge plan`"
        )
    geotiff = args.out.lower().endswith((".tif", ".tiff"))
    if geotiff and args.resume:
        raise InvalidRequestError(
            f"--out {args.out!r} is a GeoTIFF, written in one pass: --resume applies to Zarr (--out X.zarr)"
        )
    executor = _executor(args)  # a bad name or config fails before planning
    spec = _spec(args)
    t0 = time.perf_counter()
    counting, tally = _counting_store(args.store, args.executor)
    result = merge(counting, plan=args.plan, spec=spec, on_error=args.on_error, **request)
    summary = result.plan.summary(int(spec.allowed_mem), args.store, **_pricing(args))
    print(summary)
    if geotiff:
        result.to_cog(
            args.out,
            overviews=_overviews(args.overviews, "auto"),
            compress=args.compress,
            blocksize=args.blocksize,
            overwrite=args.overwrite,
            executor=None if args.executor == "threads" and not args.executor_config else executor,
            progress=args.progress,
        )
        print(f"wrote {args.out} (COG) in {time.perf_counter() - t0:.2f} s")
        return
    reports: list = []
    result.to_zarr(
        args.out,
        executor=executor,
        resume=args.resume,
        overwrite=args.overwrite,
        overviews=_overviews(args.overviews, 0),
        progress=args.progress,
        report=reports,
    )
    wall = time.perf_counter() - t0
    print(f"wrote {args.out} ({args.executor}) in {wall:.2f} s")
    print(reports[0].summary())
    for skipped in reports[1:2]:
        print(f"{len(skipped)} source window(s) skipped (--on-error skip), rendered as nodata:")
        for record in skipped:
            print(f"  {record}")
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


def _overviews(text: str | None, default: int | str) -> int | str:
    """``--overviews``: a number of levels, or ``auto`` (GeoTIFF and ingest only)."""
    if text is None:
        return default
    if text == "auto" and default == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        allowed = "a number or auto" if default == "auto" else "a number"
        raise InvalidRequestError(f"--overviews {text!r} must be {allowed}") from None


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plan", help="a plan written by `lazymerge plan --out` (no planning again)")
    p.add_argument(
        "--out",
        required=True,
        help="output Zarr path or URL, or a .tif/.tiff path or URL: a Cloud-Optimized GeoTIFF",
    )
    p.add_argument("--executor", default="threads", help="threads (default), processes, lithops, modal, dask")
    p.add_argument(
        "--executor-config", help="YAML/JSON file of executor options; for lithops, its Lithops config file"
    )
    p.add_argument("--work-dir", help="Cubed work_dir (and where tasks read the plan): local path or URL")
    p.add_argument(
        "--reserved-mem", help="worker baseline memory (default: 300MB + the plan and source-chunk caches)"
    )
    p.add_argument(
        "--overviews",
        help="overview levels to build (default: 0 for Zarr, auto for a GeoTIFF: until one tile)",
    )
    p.add_argument("--compress", default="deflate", help="GeoTIFF compression (default deflate)")
    p.add_argument("--blocksize", type=int, default=512, help="GeoTIFF tile size (default 512)")
    p.add_argument(
        "--resume", action="store_true", help="finish an interrupted Zarr run of the same request into --out"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier lazymerge output at --out, or an existing GeoTIFF (never other files)",
    )
    p.add_argument(
        "--on-error",
        choices=["raise", "skip"],
        default="raise",
        help="a source window that cannot be read: fail the run (default) or render it as nodata and list it",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: on when stderr is a terminal)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``lazymerge`` command line: one subcommand per function, each with its flags."""
    parser = argparse.ArgumentParser(
        prog="lazymerge", description="Lazy mosaics of georeferenced Zarr rasters"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "demo", help="build the seed's 4-tile store, merge it at 10 m and 20 m, write Zarr + PNG"
    )
    p.add_argument("--out", default="demo-output", help="output directory (default: demo-output)")
    p.set_defaults(func=_demo)
    p = sub.add_parser("index", help="write a store's /meta table from its conventions (or a STAC catalogue)")
    p.add_argument("store", help="path or URL of the Zarr store")
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="index the valid sources and warn about each invalid one (default: fail, listing them all)",
    )
    p.add_argument(
        "--stac",
        help="STAC ItemCollection .json or stac-geoparquet .parquet whose Zarr assets are STORE's sources",
    )
    p.set_defaults(func=_index)
    p = sub.add_parser(
        "ingest", help="GeoTIFFs/COGs or STAC items (.json, stac-geoparquet) -> a lazymerge store + /meta"
    )
    p.add_argument(
        "sources",
        nargs="+",
        help="GeoTIFF/COG paths or URLs, STAC ItemCollection .json or stac-geoparquet .parquet",
    )
    p.add_argument("--out", required=True, help="the store to write (created; complete sources are skipped)")
    p.add_argument("--overviews", default="auto", help="levels: auto (a COG's own, else to one chunk) or N")
    p.add_argument("--chunks", type=int, default=512, help="Zarr chunk side in pixels (default 512)")
    p.add_argument("--bands", help="band names or STAC asset keys to take, comma-separated (default: all)")
    p.add_argument("--resampling", default="average", help="built overviews: average (default) or nearest")
    p.add_argument("--executor", default="threads", help="threads (default), processes, lithops, modal, dask")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar")
    p.set_defaults(func=_ingest)
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
    p.add_argument("--dtypes", help="comma-separated source dtypes (default: every dtype the kernel reads)")
    p.set_defaults(func=_warm)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except LazymergeError as exc:
        print(f"lazymerge: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
