"""Command line: ``lazymerge demo | index | info | run``."""

from __future__ import annotations

import argparse
import sys
import time

from lazymerge.cli_run import add_run_parser
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
    add_run_parser(sub)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except LazymergeError as exc:
        print(f"lazymerge: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
