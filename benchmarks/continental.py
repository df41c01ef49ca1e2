"""A continental mosaic: Sentinel-2-like sources into >= 1 Gpix at 10 m EPSG:3035, priced before it runs.

    python -m benchmarks.continental [--scale 1/64 1/16 ...] [--executors processes lithops] [--store DIR]
                                     [--cog 1/16 ...]

The store: ``--tiles`` x ``--tiles`` tiles per date, 3 dates (each date's tiles shifted, as orbits are),
each tile ``--tile`` pixels square at 10 m in the UTM zone of its centre (32N and 33N: the area straddles
12 E), uint16 with nodata 0 on an oblique edge of a third of the tiles (orbit edges), a smooth texture
plus noise (compressible, zstd), chunks of 512. Defaults: 20 x 20 x 3 = 1,200 sources over a
32,768 x 32,768 px area (1.07 Gpix). Sources are created lazily: every source's metadata at once, and
the chunks of a tile only when a scale first needs it (so the small scales fit on a laptop disk).

Each scale is the centred square of that fraction of the area, mosaicked (sorted by date, method
``last``: the newest date on top, every source read) and streamed with ``to_zarr`` on each executor. The
table gives plan time, tasks, wall and CPU time, Mpix/s per core, peak RSS per task against allowed_mem,
source GETs and bytes (counted by a CountingStore around the sources, every worker's tally summed) and
bytes written, the cost per output Mpix (flat if the run scales), and the dry run's estimate against
the measured requests and bytes. ``--cog`` adds rows that write a COG (``to_cog`` on the processes
executor: blocks rendered into a temporary Zarr, then GDAL's COG driver) at those scales.

Time: the dry run's stored per-pixel speeds (``MPIX_PER_S``) come from one machine under one load and
leave out the executor's start-up and per-task costs, so the two smallest scales of each executor are
calibration runs: a line through their measured CPU seconds (driver and every worker) against the dry
run's core-seconds (``pricing.time_fit``: a fixed part, and a factor) scales the larger rows' estimates;
the table compares estimated and measured CPU seconds (and wall, which also depends on the machine's
load). ``--print-rows`` reprints the tables of runs saved with ``--rows`` (several files: one table).
"""

from __future__ import annotations

import argparse
import pickle
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import cubed
import numpy as np
import zarr
from pyproj import Transformer

import lazymerge
from lazymerge.catalog import conventions as conv
from lazymerge.catalog.meta import write_meta
from lazymerge.catalog.stores import StoreHandle, resolve_store
from lazymerge.contract.budget import DEFAULT_RESERVED_MEM
from lazymerge.contract.pricing import CountingStore, estimate, time_fit
from lazymerge.executors import get_executor

RES = 10.0
CENTRE = (12.0, 50.0)  # lon, lat: between UTM zones 32 and 33
DATES = ("2024-06-03", "2024-06-13", "2024-06-23")
CHUNK = 512
NODATA = 0


def area_bounds(side: int) -> tuple[float, float, float, float]:
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:3035", always_xy=True).transform(*CENTRE)
    x, y = round(x / 1000) * 1000, round(y / 1000) * 1000
    half = side * RES / 2
    return x - half, y - half, x + half, y + half


@lru_cache
def _from_3035(epsg: int) -> Transformer:
    return Transformer.from_crs("EPSG:3035", f"EPSG:{epsg}", always_xy=True)


def tiles(side: int, n: int, tile: int) -> list[dict]:
    """Every source: name, date, UTM CRS, transform, and its EPSG:3035 box (to create it lazily)."""
    x0, y0, x1, y1 = area_bounds(side)
    step = (x1 - x0) / n
    to_ll = Transformer.from_crs("EPSG:3035", "EPSG:4326", always_xy=True)
    out = []
    for d, date in enumerate(DATES):
        shift = (d - 1) * step * 0.3  # orbits: each date's tiles shifted
        for i in range(n):
            for j in range(n):
                cx, cy = x0 + (j + 0.5) * step + shift, y1 - (i + 0.5) * step + shift / 2
                lon, lat = to_ll.transform(cx, cy)
                zone = int((lon + 180) // 6) + 1
                epsg = 32600 + zone
                ux, uy = _from_3035(epsg).transform(cx, cy)
                half = tile * RES / 2
                left, top = round((ux - half) / RES) * RES, round((uy + half) / RES) * RES
                box = (cx - half * 1.1, cy - half * 1.1, cx + half * 1.1, cy + half * 1.1)
                out.append(
                    {
                        "name": f"T{zone}_{i:02d}_{j:02d}_{date}",
                        "date": date,
                        "crs": f"EPSG:{epsg}",
                        "transform": (RES, 0.0, left, 0.0, -RES, top),
                        "box": box,
                        "edge": (i * n + j) % 3 == 0,
                        "seed": d * n * n + i * n + j,
                    }
                )
    return out


def texture(t: dict, tile: int) -> np.ndarray:
    """Smooth fields plus noise, uint16 (1..~9000), nodata 0 beyond an oblique orbit edge."""
    rng = np.random.default_rng(t["seed"])
    left, top = t["transform"][2], t["transform"][5]
    yy = (top - RES * np.arange(tile))[:, None] / 1000.0
    xx = (left + RES * np.arange(tile))[None, :] / 1000.0
    field = 3000 + 1500 * np.sin(xx / 3.1 + t["seed"] % 7) * np.cos(yy / 2.3) + 800 * np.sin((xx + yy) / 0.7)
    data = (field + rng.integers(0, 16, (tile, tile))).astype("u2")
    if t["edge"]:
        r, c = np.ogrid[:tile, :tile]
        data[c > tile * 0.75 + (r - tile / 2) * 0.2] = NODATA
    return data


def build_store(path: Path, sources: list[dict], tile: int) -> None:
    """Every source's metadata (arrays with no chunks yet) and /meta, once."""
    if (path / "zarr.json").exists():
        return
    root = zarr.open_group(path, mode="w")
    for t in sources:
        group = root.require_group(t["name"])
        group.attrs["datetime"] = t["date"]
        band = group.create_group("data")
        arr = band.create_array(
            "0",
            shape=(tile, tile),
            chunks=(CHUNK, CHUNK),
            dtype="u2",
            fill_value=NODATA,
            compressors=zarr.codecs.ZstdCodec(level=3),
        )
        conv.write_spatial(arr, conv.SpatialAttrs(("y", "x"), t["transform"], shape=(tile, tile)))
        conv.write_proj(arr, conv.ProjAttrs(code=t["crs"]))
        arr.attrs["nodata"] = NODATA
        conv.write_multiscales(band, [conv.Overview("0", (1.0, 1.0))])
    write_meta(path)


def fill_tiles(path: Path, sources: list[dict], bounds: tuple[float, ...], tile: int) -> int:
    """Write the pixels of the tiles overlapping ``bounds`` not written yet; returns how many."""
    done = path / ".filled"
    done.mkdir(exist_ok=True)
    n = 0
    for t in sources:
        b = t["box"]
        if b[2] < bounds[0] or b[0] > bounds[2] or b[3] < bounds[1] or b[1] > bounds[3]:
            continue
        if (done / t["name"]).exists():
            continue
        zarr.open_array(path / t["name"] / "data" / "0", mode="r+")[:] = texture(t, tile)
        (done / t["name"]).touch()
        n += 1
    return n


@contextmanager
def cpu_seconds(out: list[float]):
    """CPU seconds of this process and every descendant (workers, Lithops runners) while the block runs,
    sampled every 0.25 s (a worker that ends between samples loses at most its last 0.25 s)."""
    import psutil

    me = psutil.Process()
    seen: dict[int, float] = {}
    stop = threading.Event()

    def sample() -> None:
        for proc in me.children(recursive=True):
            try:
                t = proc.cpu_times()
                seen[proc.pid] = t.user + t.system
            except psutil.Error:
                pass

    def loop() -> None:
        while not stop.wait(0.25):
            sample()

    start = me.cpu_times()
    before = {p.pid: p.cpu_times().user + p.cpu_times().system for p in me.children(recursive=True)}
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        sample()
        stop.set()
        thread.join()
        end = me.cpu_times()
        own = end.user + end.system - start.user - start.system
        out.append(own + sum(v - before.get(pid, 0.0) for pid, v in seen.items()))


def run(
    args, store: Path, sources: list[dict], scale: Fraction, name: str, tmp: Path, cog: bool = False
) -> dict:
    side_all = args.tiles * args.tile * 10 // 11 // 512 * 512  # the area, a whole number of chunks
    side = int(round(side_all * float(scale) ** 0.5 / args.chunk)) * args.chunk
    bounds = area_bounds(side)
    filled = fill_tiles(store, sources, bounds, args.tile)
    tally = tmp / f"tally-{name}-{scale}-{cog}".replace("/", "_")
    tally.mkdir()
    handle = resolve_store(store)
    counting = CountingStore(handle.zarr_store, tally_dir=str(tally))
    spec = cubed.Spec(
        work_dir=str(tmp / "wd"), allowed_mem=args.allowed_mem, reserved_mem=DEFAULT_RESERVED_MEM
    )
    t0 = time.perf_counter()
    result = lazymerge.merge(
        StoreHandle(counting, handle.obstore, None, handle.description),
        crs="EPSG:3035",
        bbox=bounds,
        resolution=RES,
        chunk_size=(args.chunk, args.chunk),
        sortby="datetime",
        method="last",
        spec=spec,
    )
    plan_s = time.perf_counter() - t0
    est = estimate(result.plan, store, memory_gb=2.0)
    counting.reset()
    target = tmp / (f"out-{name}.tif" if cog else f"out-{name}.zarr")
    out = CountingStore(zarr.storage.LocalStore(str(target)), tally_dir=str(tally))
    executor = (
        get_executor("processes", max_workers=args.workers)
        if name == "processes"
        else get_executor("lithops", worker_processes=args.workers)
    )
    report: list = []
    cpu: list[float] = []
    t0 = time.perf_counter()
    with cpu_seconds(cpu):
        if cog:
            result.to_cog(target, executor=executor, progress=False)
        else:
            result.to_zarr(out, executor=executor, progress=False, report=report)
    wall = time.perf_counter() - t0
    got = counting.counts()
    if cog:
        got.puts, got.put_bytes = 1, target.stat().st_size  # one file (uploaded whole to a bucket)
        target.unlink()
    else:
        got.add(out.counts())
        shutil.rmtree(target)
    for blocks in (tmp / "wd").glob("lazymerge-cog-*"):  # the COG's blocks, rendered into a Zarr first
        shutil.rmtree(blocks, ignore_errors=True)
    peaks = [p for _, _, _, p in report[0].rows() if p is not None] if report else []
    mpix = side * side / 1e6
    return {
        "executor": name + ("+cog" if cog else ""),
        "scale": str(scale),
        "mpix": mpix,
        "filled": filled,
        "plan_s": plan_s,
        "tasks": est.tasks,
        "wall": wall,
        "cpu": cpu[0],
        "mpix_core": mpix / wall / args.workers,
        "mpix_cpu": mpix / cpu[0],
        "peak": max(peaks) if peaks else None,
        "allowed": int(spec.allowed_mem),
        "gets": got.chunk_gets,
        "bytes": got.chunk_bytes,
        "puts": got.puts,
        "put_bytes": got.put_bytes,
        "est": est,
        "got": got,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", nargs="+", default=["1/64", "1/16"], help="fractions of the area (1 = all)")
    ap.add_argument("--executors", nargs="+", default=["processes", "lithops"])
    ap.add_argument("--cog", nargs="*", default=[], help="scales to also write as a COG (on processes)")
    ap.add_argument("--tiles", type=int, default=20, help="tiles per side per date (x 3 dates)")
    ap.add_argument("--tile", type=int, default=1830, help="tile side in pixels (10 m)")
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--allowed-mem", default="1GB")
    ap.add_argument("--store", help="where the source store lives (kept between runs); default a temp dir")
    ap.add_argument("--rows", help="also pickle the measured rows here (each as it ends)")
    ap.add_argument("--print-rows", nargs="+", help="print the tables of these --rows files; run nothing")
    args = ap.parse_args()
    if args.print_rows:
        report([r for f in args.print_rows for r in pickle.loads(Path(f).read_bytes())], args.workers)
        return
    from benchmarks.provenance import header

    print(header())
    print(f"# workers {args.workers} per executor", flush=True)
    side_all = args.tiles * args.tile * 10 // 11 // 512 * 512
    sources = tiles(side_all, args.tiles, args.tile)
    zones = sorted({s["crs"] for s in sources})
    print(
        f"area {side_all} x {side_all} px = {side_all**2 / 1e9:.2f} Gpix at 10 m EPSG:3035; "
        f"{len(sources)} sources of {args.tile}^2 px, {len(DATES)} dates, zones {zones}"
    )
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="lazymerge-continental-") as tmpdir:
        tmp = Path(tmpdir)
        store = Path(args.store) if args.store else tmp / "s2.zarr"
        t0 = time.perf_counter()
        build_store(store, sources, args.tile)
        print(f"store metadata ready in {time.perf_counter() - t0:.1f} s at {store}", flush=True)
        jobs = [(Fraction(s), ex, False) for s in args.scale for ex in args.executors]
        jobs += [(Fraction(s), "processes", True) for s in args.cog]
        jobs.sort(key=lambda j: (j[0], j[2]))  # smallest first: the first of each executor calibrates
        for scale, ex, cog in jobs:
            rows.append(run(args, store, sources, scale, ex, tmp, cog))
            print(line(rows[-1]), flush=True)  # as it goes, in case a long run is cut short
            if args.rows:
                Path(args.rows).write_bytes(pickle.dumps(rows))
    report(rows, args.workers)


def report(rows: list[dict], workers: int) -> None:
    """The table of every row, then each row's estimate (time scaled by its executor's factor) vs measured."""
    fits: dict[str, tuple[float, float]] = {}
    for name in dict.fromkeys(r["executor"] for r in rows if not r["executor"].endswith("+cog")):
        # the two smallest Zarr rows of each executor calibrate the time estimate: CPU = fixed + k x est.
        by_size = {r["mpix"]: r for r in reversed(rows) if r["executor"] == name}  # one per scale
        small = [by_size[m] for m in sorted(by_size)[:CALIBRATION]]
        for r in small:
            r["calibration"] = True
        fits[name] = time_fit([r["est"] for r in small], [r["cpu"] for r in small])
    print()
    print(HEAD)
    for r in rows:
        print(line(r))
    print("\nestimate (dry run, before the run) vs measured:")
    print(
        "time fit (CPU s = fixed + k x the stored speeds' core-s, from the calibration rows): "
        + ", ".join(f"{name} k={k:.2f} fixed={fixed:.1f} s" for name, (k, fixed) in fits.items())
    )
    for r in rows:
        est = r["est"].scaled(*fits[r["executor"].removesuffix("+cog")])  # a COG: processes' fit
        tag = "calibration row: the time fit includes it" if r.get("calibration") else "time calibrated"
        print(f"-- {r['executor']}, scale {r['scale']} (tiles newly filled for it: {r['filled']}; {tag})")
        print(est.compare(r["got"], r["wall"], workers, cpu_seconds=r["cpu"]))
        print(
            f"   stored speeds alone: {r['est'].total_seconds:.0f} CPU s "
            f"({(r['cpu'] - r['est'].total_seconds) / r['est'].total_seconds * 100:+.0f} % off); "
            f"estimated cost on {est.backend} at 2 GB: ${est.total_cost:.4f} "
            f"(${est.total_cost / r['mpix'] * 1000:.4f} per Gpix)"
        )


CALIBRATION = 2  # rows per executor the time estimate is fitted to

HEAD = (
    f"{'executor':<14} {'scale':>5} {'Mpix':>7} {'plan s':>6} {'tasks':>5} {'wall s':>7} {'CPU s':>7} "
    f"{'Mpix/s/core':>11} {'Mpix/CPU-s':>10} {'peak RSS/allowed':>16} {'GETs':>7} {'MB read':>8} "
    f"{'PUTs':>5} {'MB written':>10} {'GETs/Mpix':>9} {'MB read/Mpix':>12}"
)


def line(r: dict) -> str:
    peak = f"{r['peak'] / 1e6:.0f}/{r['allowed'] / 1e6:.0f} MB" if r["peak"] else "n/a"
    return (
        f"{r['executor']:<14} {r['scale']:>5} {r['mpix']:>7.0f} {r['plan_s']:>6.2f} {r['tasks']:>5} "
        f"{r['wall']:>7.1f} {r['cpu']:>7.1f} {r['mpix_core']:>11.2f} {r['mpix_cpu']:>10.2f} {peak:>16} "
        f"{r['gets']:>7} {r['bytes'] / 1e6:>8.1f} {r['puts']:>5} {r['put_bytes'] / 1e6:>10.1f} "
        f"{r['gets'] / r['mpix']:>9.2f} {r['bytes'] / 1e6 / r['mpix']:>12.2f}"
    )


if __name__ == "__main__":
    main()
