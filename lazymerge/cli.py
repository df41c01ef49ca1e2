"""Command line: ``lazymerge demo | index | info | plan | run``."""

from __future__ import annotations

import argparse
import sys
import time

from lazymerge.errors import LazymergeError


def _demo(args: argparse.Namespace) -> None:
    from lazymerge.demo import run_demo

    t0 = time.perf_counter()
    run_demo(args.out)
    print(f"done in {time.perf_counter() - t0:.2f} s")


def _index(args: argparse.Namespace) -> None:
    from lazymerge.meta import write_meta

    t0 = time.perf_counter()
    table = write_meta(args.store)
    print(f"wrote {args.store}/meta: {table.num_rows} sources in {time.perf_counter() - t0:.2f} s")


def _info(args: argparse.Namespace) -> None:
    from lazymerge.sources import crs_code, scan_store

    index = scan_store(args.store)
    print(f"{len(index)} sources; bands shared by all: {index.band_names}")
    for e in index:
        bands = ", ".join(f"{b}: {len(band.levels)} level(s)" for b, band in e.bands.items())
        print(f"  {e.id}  {crs_code(e.crs)}  {e.base.shape[0]}x{e.base.shape[1]}  [{bands}]")


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.replace(",", " ").split()]


def _names(text: str | None) -> str | list[str] | None:
    """``B04`` -> "B04"; ``B04,B03,B02`` -> a list (a band dimension)."""
    if text is None:
        return None
    names = [v.strip() for v in text.split(",") if v.strip()]
    return names[0] if len(names) == 1 and "," not in text else names


def _request_args(p: argparse.ArgumentParser, grid_required: bool) -> None:
    p.add_argument("store", help="path or URL of the Zarr store")
    p.add_argument("--crs", required=grid_required, help="target CRS, e.g. EPSG:3857")
    p.add_argument(
        "--bbox", type=_floats, required=grid_required, help="xmin,ymin,xmax,ymax in the target CRS"
    )
    p.add_argument("--resolution", type=float, required=grid_required, help="target pixel size")
    p.add_argument("--chunk-size", type=_floats, default=[512, 512], help="rows,cols per chunk (512,512)")
    p.add_argument("--bands", help="a band, or a comma-separated list (a band dimension)")
    p.add_argument("--sortby", help="source columns, comma-separated; --sortby=-col for descending")
    p.add_argument("--where", help='SQL predicate over the source table, e.g. "cloud_cover < 20"')
    p.add_argument("--groupby", choices=["time", "day", "solar_day"], help="one composite per time group")
    p.add_argument("--cull", action="store_true", help="drop sources already covered (valid everywhere)")
    p.add_argument("--scan", action="store_true", help="scan the conventions even if /meta exists")
    p.add_argument("--allowed-mem", default="1GB", help="memory per task (Cubed allowed_mem), default 1GB")


def _request(args: argparse.Namespace) -> dict:
    return {
        "store": args.store,
        "crs": args.crs,
        "bbox": args.bbox,
        "resolution": args.resolution,
        "chunk_size": [int(v) for v in args.chunk_size],
        "bands": _names(args.bands),
        "sortby": args.sortby.split(",") if args.sortby else None,
        "where": args.where,
        "groupby": args.groupby,
        "cull": args.cull,
        "datafusion": False if args.scan else None,
    }


def _spec(args: argparse.Namespace):
    from lazymerge.merge import default_spec

    return default_spec(work_dir=getattr(args, "work_dir", None), allowed_mem=args.allowed_mem)


def _executor(args: argparse.Namespace):
    """The executor that --executor names, configured from --executor-config (YAML or JSON)."""
    from lazymerge.executors import get_executor, load_config

    if args.executor == "lithops" and args.executor_config:
        return get_executor("lithops", config_file=args.executor_config)
    options = load_config(args.executor_config) if args.executor_config else {}
    return get_executor(args.executor, **options)


def _plan(args: argparse.Namespace) -> None:
    from lazymerge.planner import plan
    from lazymerge.planner.report import check_memory

    p = plan(**_request(args))
    spec = _spec(args)
    check_memory(p, int(spec.allowed_mem) - int(spec.reserved_mem))
    p.save(args.out)
    print(p.summary(int(spec.allowed_mem)))
    print(f"plan written to {args.out}")
    if args.plot:
        p.plot(args.plot)
        print(f"plot written to {args.plot}")


def _run(args: argparse.Namespace) -> None:
    from lazymerge.merge import merge

    t0 = time.perf_counter()
    spec = _spec(args)
    executor = _executor(args)  # checked before planning: a bad name or config fails at once
    request = {"store": args.store, "plan": args.plan} if args.plan else _request(args)
    result = merge(**request, spec=spec)
    print(result.plan.summary(int(spec.allowed_mem)))
    from lazymerge.progress import Progress

    result.to_zarr(
        args.out, executor=executor, callbacks=[Progress(bar=not args.no_progress and sys.stderr.isatty())]
    )
    print(f"wrote {args.out} {result.array.shape} in {time.perf_counter() - t0:.2f} s")


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
    p.add_argument("--out", required=True, help="directory to write the plan to (a Zarr group)")
    p.add_argument("--plot", help="PNG of the chunk grid coloured by sources per chunk")
    p.set_defaults(func=_plan)
    p = sub.add_parser("run", help="merge into a Zarr array, from a request or a saved plan (--plan)")
    _request_args(p, grid_required=False)
    p.add_argument("--plan", help="a plan written by `lazymerge plan --out` (no planning again)")
    p.add_argument("--out", required=True, help="output Zarr array path")
    p.add_argument("--executor", default="threads", help="threads (default), processes, lithops, dask, modal")
    p.add_argument("--executor-config", help="the executor's options (YAML/JSON); for lithops its config")
    p.add_argument("--work-dir", help="Cubed work_dir (and where the plan is put for the tasks)")
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (off anyway when not a terminal)"
    )
    p.set_defaults(func=_run)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except LazymergeError as exc:
        print(f"lazymerge: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
