"""End to end against the peers: the same tiles as COGs + STAC items and as a lazymerge store, in one run.

    python benchmarks/peers.py [--small] [--repeat 3] [--threads 2] [--resampling nearest|bilinear]
                               [--chunk 1024] [--place 12,48] [--scaling] [--profile]

Workload: 16 overlapping 3000 x 3000 uint16 tiles (random values 1-4095, nodata 0 on a ragged wedge along
one edge and a band along the top, as scene edges are), the west half in UTM 32N and the east half in UTM
33N around 12 E 48 N, merged first-valid (tile order) into a 64 Mpix (8000 x 8000) EPSG:32633 grid at 10 m,
chunks 1024. ``--small``: 4 tiles of 1500 px into 2400 x 2400, for a quick check. Variations, so that a
claim is not tuned to one workload: ``--chunk`` sets the target chunk size of every tool (lazymerge's
chunks, odc-stac's and stackstac's dask chunks); ``--place LON,LAT`` moves the mosaic onto another UTM zone
boundary (the one nearest LON; south of the equator, the southern zones).

lazymerge's modules are byte-compiled first, as installing a wheel does (the peers' packages are): an
editable checkout has no ``.pyc`` files, and with ``PYTHONDONTWRITEBYTECODE`` set each fresh process would
compile them all again.

The tiles are written once as COGs (GDAL's COG driver, zstd, 512 px blocks) with a STAC item each (pystac,
projection and raster extensions), and as a lazymerge store (one group per tile, 512 px zstd chunks,
``nodata`` attribute, /meta). Every tool then runs in a fresh process (``--child``), ``--repeat`` times, its
time measured from before its imports to the numpy result (or, for ``lazymerge to_zarr``, the written
array):

- ``GDAL``: ``rasterio.warp.reproject`` of each COG into the target window it covers (its bounds
  transformed, one pixel of margin), ``--threads`` warp threads and ``GDAL_NUM_THREADS``, composited
  first-valid into the result.
- ``odc-stac``: ``odc.stac.load`` on the items with the target GeoBox, 1024 px dask chunks, items fused in
  order (first valid), computed with dask's threaded scheduler (``--threads`` workers).
- ``stackstac``: ``stackstac.stack`` (1024 px chunks, items in order) + ``stackstac.mosaic`` (first on top),
  dask threads.
- ``lazymerge``: ``merge(...).array.compute()`` and ``merge(...).to_zarr()`` (threads executor,
  ``--threads`` workers), on the Zarr store.

Printed per tool: best wall s, its CPU s (user + system of the process, all threads), wall / fastest
peer's wall, CPU / fastest peer's CPU, and the share of pixels identical to GDAL's exact warper (WarpedVRT,
tolerance 1e-9, the same resampling, first valid in tile order; untimed, computed in this process).
A peer that cannot be imported is reported with the reason instead of a time. For lazymerge, where its wall
time went: imports (``lazymerge.api`` and what it loads), ``merge()`` (planning) and the compute or write.
``--scaling`` also runs ``lazymerge compute`` on one thread (fresh processes) and prints the speed-up, then
the same in the steady state: the compute of a second merge in a process that has computed once (no
first-call costs: imports, numba's set-up, transformers), on one thread and on ``--threads``. ``--profile``
prints where lazymerge's time goes in one more fresh process: its imports package by package, a fresh
merge and compute, the steady-state blocks rendered one after another under cProfile (the functions with
the most own time), and what numba's context refresh costs (``profile_child``).
"""

from __future__ import annotations

import time

T0 = time.perf_counter()  # a child's clock starts before its tool's imports
MARKS: dict[str, float] = {}  # a lazymerge child's phases: seconds from T0 at the end of each

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

CRS = "EPSG:32633"
ZONES = ("EPSG:32632", "EPSG:32633")  # west half of the tiles, east half
CENTRE = (12.0, 48.0)  # lon, lat on the UTM 32/33 boundary
RES = 10.0
CHUNK = 1024
BLOCK = 512  # COG blocks and source Zarr chunks
DATETIME = "2024-06-01T10:00:00Z"
PEERS = ("GDAL", "odc-stac", "stackstac")
TOOLS = (*PEERS, "lazymerge compute", "lazymerge to_zarr")
SIZES = {False: (4, 3000, 8000), True: (2, 1500, 2400)}  # --small: (tiles per side, tile px, target px)


def configure(chunk: int, place: str) -> None:
    """Set the target chunk size and the place (``LON,LAT``): the mosaic sits on the UTM zone boundary
    nearest LON, its west tiles in the zone west of it, the east tiles and the target in the zone east."""
    global CHUNK, CRS, ZONES, CENTRE
    try:
        lon, lat = (float(v) for v in place.split(","))
    except ValueError:
        raise SystemExit(f"--place {place!r}: give LON,LAT in degrees, e.g. --place=-70,-33") from None
    boundary = round((lon + 180) / 6) * 6 - 180
    west = (boundary + 180) // 6  # UTM zone n spans -180 + 6 (n - 1) .. -180 + 6 n
    if not 1 <= west <= 59 or not -80 <= lat <= 84:
        raise SystemExit(f"--place {place}: needs a zone boundary between zones 1 and 60, latitude -80..84")
    base = 32600 if lat >= 0 else 32700
    CHUNK = chunk
    ZONES = (f"EPSG:{base + west}", f"EPSG:{base + west + 1}")
    CRS = ZONES[1]
    CENTRE = (float(boundary), lat)


# ----------------------------------------------------------------------------------------------- data


def target_grid(size: int) -> dict:
    from pyproj import Transformer

    cx, cy = Transformer.from_crs("EPSG:4326", CRS, always_xy=True).transform(*CENTRE)
    x0, y1 = round(cx / RES - size / 2) * RES, round(cy / RES + size / 2) * RES
    return {"crs": CRS, "bbox": [x0, y1 - size * RES, x0 + size * RES, y1], "shape": [size, size]}


def tile_grids(grid: dict, per_side: int, tile: int) -> list[dict]:
    """Tiles centred on a per_side x per_side lattice over the target, each on its zone's 10 m grid."""
    from pyproj import Transformer

    x0, y0, x1, y1 = grid["bbox"]
    span = grid["shape"][0] - tile  # target px between the first and last tile centres
    tiles = []
    for i in range(per_side):
        for j in range(per_side):
            cx = x0 + (tile / 2 + span * j / max(per_side - 1, 1)) * RES
            cy = y1 - (tile / 2 + span * i / max(per_side - 1, 1)) * RES
            crs = ZONES[0] if j < per_side / 2 else ZONES[1]
            tx, ty = Transformer.from_crs(CRS, crs, always_xy=True).transform(cx, cy)
            left, top = round(tx / RES - tile / 2) * RES, round(ty / RES + tile / 2) * RES
            tiles.append(
                {
                    "id": f"t{len(tiles):02d}",
                    "crs": crs,
                    "transform": [RES, 0.0, left, 0.0, -RES, top],
                    "shape": [tile, tile],
                }
            )
    return tiles


def tile_pixels(rng, tile: int):
    """Random 1-4095 values, 0 (nodata) on a ragged wedge along the left edge and a band along the top."""
    import numpy as np

    data = rng.integers(1, 4096, size=(tile, tile), dtype="u2")
    rows = np.arange(tile)[:, None]
    edge = rng.uniform(0, tile / 5) + rng.uniform(-0.15, 0.15) * rows
    edge = edge + rng.integers(0, 3, size=(tile, 1))  # a ragged edge, as on a scene's border
    data[np.arange(tile)[None, :] < edge] = 0
    data[: int(rng.uniform(0, tile / 10))] = 0
    return data


def write_data(tmp: Path, tiles: list[dict], seed: int) -> None:
    """Each tile as a COG + STAC item, and the same pixels as a lazymerge store (with /meta)."""
    import numpy as np
    import pystac
    import rasterio
    import rasterio.shutil
    import zarr
    from affine import Affine
    from rasterio.warp import transform_geom

    from lazymerge.catalog import conventions as lc
    from lazymerge.catalog.meta import write_meta

    root = zarr.open_group(zarr.storage.LocalStore(str(tmp / "tiles.zarr")), mode="w")
    rng = np.random.default_rng(seed)
    (tmp / "items").mkdir(exist_ok=True)
    for t in tiles:
        h, w = t["shape"]
        tr = Affine(*t["transform"])
        data = tile_pixels(rng, h)
        band = root.create_group(t["id"]).create_group("data")
        arr = band.create_array("0", shape=(h, w), dtype="u2", chunks=(BLOCK, BLOCK), fill_value=0)
        arr[:] = data
        arr.attrs["nodata"] = 0
        bbox = (tr.c, tr.f + h * tr.e, tr.c + w * tr.a, tr.f)
        lc.write_spatial(arr, lc.SpatialAttrs(("y", "x"), tuple(tr)[:6], bbox, (h, w)))
        lc.write_proj(arr, lc.ProjAttrs(code=t["crs"]))
        lc.write_multiscales(band, [lc.Overview("0")])
        profile = dict(
            driver="GTiff", height=h, width=w, count=1, dtype="uint16", crs=t["crs"], transform=tr, nodata=0
        )
        plain, cog = tmp / f"{t['id']}.tif", tmp / f"{t['id']}.cog.tif"
        with rasterio.open(plain, "w", **profile) as ds:
            ds.write(data, 1)
        rasterio.shutil.copy(plain, cog, driver="COG", COMPRESS="ZSTD", BLOCKSIZE=str(BLOCK))
        plain.unlink()
        footprint = {
            "type": "Polygon",
            "coordinates": [
                [
                    (bbox[0], bbox[1]),
                    (bbox[2], bbox[1]),
                    (bbox[2], bbox[3]),
                    (bbox[0], bbox[3]),
                    (bbox[0], bbox[1]),
                ]
            ],
        }
        geom = transform_geom(t["crs"], "EPSG:4326", footprint)
        lons, lats = zip(*geom["coordinates"][0], strict=True)
        item = pystac.Item(
            id=t["id"],
            geometry=geom,
            bbox=[min(lons), min(lats), max(lons), max(lats)],
            datetime=pystac.utils.str_to_datetime(DATETIME),
            properties={},
            stac_extensions=[
                "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
                "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
            ],
        )
        item.properties.update(
            {"proj:epsg": int(t["crs"].split(":")[1]), "proj:transform": list(tr)[:6], "proj:shape": [h, w]}
        )
        item.add_asset(
            "data",
            pystac.Asset(
                href=str(cog),
                media_type=pystac.MediaType.COG,
                roles=["data"],
                extra_fields={"raster:bands": [{"nodata": 0, "data_type": "uint16"}]},
            ),
        )
        (tmp / "items" / f"{t['id']}.json").write_text(json.dumps(item.to_dict()))
    write_meta(tmp / "tiles.zarr")


def _window(ds, grid: dict) -> tuple[int, int, int, int] | None:
    """(r0, r1, c0, c1): the target pixels a source's bounds cover, one pixel of margin; None if none."""
    from rasterio.warp import transform_bounds

    h, w = grid["shape"]
    x0, _, _, y1 = grid["bbox"]
    left, bottom, right, top = transform_bounds(ds.crs, CRS, *ds.bounds, densify_pts=21)
    c0, c1 = max(math.floor((left - x0) / RES) - 1, 0), min(math.ceil((right - x0) / RES) + 1, w)
    r0, r1 = max(math.floor((y1 - top) / RES) - 1, 0), min(math.ceil((y1 - bottom) / RES) + 1, h)
    return (r0, r1, c0, c1) if r1 > r0 and c1 > c0 else None


def _first_valid(tmp: Path, grid: dict, tiles: list[dict], warp):
    """Each tile warped by ``warp(ds, transform, (rows, cols))`` into the target window it covers, first
    valid (non-zero) in tile order."""
    import numpy as np
    import rasterio
    from affine import Affine

    x0, _, _, y1 = grid["bbox"]
    out = np.zeros(grid["shape"], dtype="u2")
    for t in tiles:
        with rasterio.open(tmp / f"{t['id']}.cog.tif") as ds:
            win = _window(ds, grid)
            if win is None:
                continue
            r0, r1, c0, c1 = win
            data = warp(ds, Affine(RES, 0, x0 + c0 * RES, 0, -RES, y1 - r0 * RES), (r1 - r0, c1 - c0))
        view = out[r0:r1, c0:c1]
        fill = view == 0
        view[fill] = data[fill]
    return out


def exact_oracle(tmp: Path, grid: dict, tiles: list[dict], resampling: str):
    """GDAL's exact warper (WarpedVRT, tolerance 1e-9), first valid in tile order."""
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    def warp(ds, transform, shape):
        with WarpedVRT(ds, crs=CRS, transform=transform, width=shape[1], height=shape[0], tolerance=1e-9,
                       resampling=Resampling[resampling], src_nodata=0, nodata=0) as vrt:  # fmt: skip
            return vrt.read(1)

    return _first_valid(tmp, grid, tiles, warp)


# ----------------------------------------------------------------------------------------------- tools


def run_gdal(tmp: Path, grid: dict, tiles: list[dict], threads: int, resampling: str):
    import numpy as np
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    def warp(ds, transform, shape):
        dst = np.zeros(shape, dtype="u2")
        reproject(
            source=rasterio.band(ds, 1),
            destination=dst,
            src_nodata=0,
            dst_nodata=0,
            dst_transform=transform,
            dst_crs=CRS,
            resampling=Resampling[resampling],
            num_threads=threads,
        )
        return dst

    with rasterio.Env(GDAL_NUM_THREADS=str(threads)):
        return _first_valid(tmp, grid, tiles, warp)


def _items(tmp: Path, tiles: list[dict]) -> list:
    import pystac

    return [pystac.Item.from_file(str(tmp / "items" / f"{t['id']}.json")) for t in tiles]


def run_odc(tmp: Path, grid: dict, tiles: list[dict], threads: int, resampling: str):
    import dask
    import odc.stac
    from affine import Affine
    from odc.geo.geobox import GeoBox

    h, w = grid["shape"]
    x0, _, _, y1 = grid["bbox"]
    gbox = GeoBox((h, w), Affine(RES, 0, x0, 0, -RES, y1), CRS)
    ds = odc.stac.load(
        _items(tmp, tiles),
        bands=["data"],
        geobox=gbox,
        chunks={"x": CHUNK, "y": CHUNK},
        resampling=resampling,
        groupby="time",
        dtype="uint16",
        nodata=0,
    )
    with dask.config.set(scheduler="threads", num_workers=threads):
        return ds["data"].isel(time=0).values


def run_stackstac(tmp: Path, grid: dict, tiles: list[dict], threads: int, resampling: str):
    import dask
    import numpy as np
    import stackstac
    from rasterio.enums import Resampling

    items = [item.to_dict() for item in _items(tmp, tiles)]
    stack = stackstac.stack(
        items,
        assets=["data"],
        epsg=int(CRS.split(":")[1]),
        resolution=RES,
        bounds=tuple(grid["bbox"]),
        chunksize=CHUNK,
        dtype="uint16",
        fill_value=np.uint16(0),
        rescale=False,
        sortby_date=False,
        resampling=Resampling[resampling],
    )
    mosaic = stackstac.mosaic(stack, dim="time", reverse=True, nodata=0)  # reverse: first on top
    with dask.config.set(scheduler="threads", num_workers=threads):
        return mosaic.isel(band=0).values


def _lazymerge(tmp: Path, grid: dict, resampling: str):
    import lazymerge
    import lazymerge.api  # noqa: F401  (what merge() imports, timed as imports)

    MARKS["imports"] = time.perf_counter() - T0
    return lazymerge.merge(
        str(tmp / "tiles.zarr"),
        crs=CRS,
        bbox=tuple(grid["bbox"]),
        resolution=RES,
        chunk_size=(CHUNK, CHUNK),
        bands="data",
        sortby="id",
        resampling=resampling,
        dtype="uint16",
        nodata=0,
    )


def run_lazymerge(tmp: Path, grid: dict, tiles: list[dict], threads: int, resampling: str):
    from lazymerge.executors import get_executor

    result = _lazymerge(tmp, grid, resampling)
    MARKS["plan"] = time.perf_counter() - T0
    return result.array.compute(executor=get_executor("threads", max_workers=threads))


def run_lazymerge_warm(tmp: Path, grid: dict, tiles: list[dict], threads: int, resampling: str):
    """``lazymerge compute`` once untimed (imports, numba's set-up and cache, transformers, the page
    cache), then merged again (a new plan: no decoded chunk is reused) and computed: its compute phase is
    the steady state, without the first call's one-time costs."""
    from lazymerge.executors import get_executor

    _lazymerge(tmp, grid, resampling).array.compute(executor=get_executor("threads", max_workers=threads))
    result = _lazymerge(tmp, grid, resampling)
    MARKS["plan"] = time.perf_counter() - T0
    MARKS["plan_cpu"] = time.process_time()  # the process's CPU (all threads) before the timed compute
    return result.array.compute(executor=get_executor("threads", max_workers=threads))


def run_lazymerge_zarr(tmp: Path, grid: dict, tiles: list[dict], threads: int, resampling: str):
    import shutil

    from lazymerge.executors import get_executor

    out = tmp / "lazymerge-out.zarr"
    shutil.rmtree(out, ignore_errors=True)
    result = _lazymerge(tmp, grid, resampling)
    MARKS["plan"] = time.perf_counter() - T0
    result.to_zarr(str(out), executor=get_executor("threads", max_workers=threads), progress=False)
    return out  # read back after the clock stops


RUNNERS = {
    "GDAL": run_gdal,
    "odc-stac": run_odc,
    "stackstac": run_stackstac,
    "lazymerge compute": run_lazymerge,
    "lazymerge to_zarr": run_lazymerge_zarr,
    "lazymerge warm": run_lazymerge_warm,
}
IMPORTS = {
    "GDAL": ["rasterio"],
    "odc-stac": ["odc.stac", "pystac"],
    "stackstac": ["stackstac", "pystac"],
    "lazymerge compute": ["lazymerge"],
    "lazymerge to_zarr": ["lazymerge"],
    "lazymerge warm": ["lazymerge"],
}


PROFILED_IMPORTS = (
    *("numpy", "pyproj", "zarr", "pyarrow", "datafusion", "shapely", "networkx", "cubed", "numba"),
)


def profile_child(args: argparse.Namespace) -> None:
    """``--profile``, in this fresh process: the imports package by package, lazymerge's own modules last;
    a fresh merge and compute; then every block of a second merge rendered one after another in this
    thread under cProfile (reads still in reader threads), its largest own times; the block pixels the
    sampling calls got against those they wrote (``_sampling``); and what numba's context refresh costs
    here, which a load of the loops from numba's cache no longer pays (``loops._Cache``)."""
    import cProfile
    import importlib
    import pstats

    tmp = Path(args.data)
    spec = json.loads((tmp / "workload.json").read_text())
    took = []
    for name in (*PROFILED_IMPORTS, "lazymerge.api"):
        t0 = time.perf_counter()
        importlib.import_module(name)
        took.append(f"{name} {time.perf_counter() - t0:.3f}")
    print(f"  imports, one after another (s): {', '.join(took)} (lazymerge.api: lazymerge's own modules)")
    import numpy as np

    from lazymerge.executors import get_executor
    from lazymerge.kernel.block import merge_block

    t0 = time.perf_counter()
    result = _lazymerge(tmp, spec["grid"], args.resampling)
    t1 = time.perf_counter()
    result.array.compute(executor=get_executor("threads", max_workers=args.threads))
    t2 = time.perf_counter()
    print(f"  fresh: merge() {t1 - t0:.2f} s, compute on {args.threads} threads {t2 - t1:.2f} s")
    result = _lazymerge(tmp, spec["grid"], args.resampling)
    ids = list(np.ndindex(*(len(c) for c in result.array.chunks)))
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for block_id in ids:
        merge_block(None, task=result.task, block_id=block_id)
    prof.disable()
    total = time.perf_counter() - t0
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    top = sorted(stats.items(), key=lambda kv: -kv[1][2])[:6]
    where = ", ".join(f"{fn[2]} {v[2]:.3f} s ({v[1]} calls)" for fn, v in top)
    print(f"  steady state, {len(ids)} blocks one after another: {total:.2f} s; own time: {where}")
    print(f"  the sampling calls (a third merge): {_sampling(tmp, spec, args, merge_block)}")
    from numba.core.registry import cpu_target

    t0 = time.perf_counter()
    cpu_target.target_context.refresh()
    refresh = time.perf_counter() - t0
    print(f"  numba's context refresh, which a load from its cache no longer pays: {refresh:.2f} s")


def _sampling(tmp: Path, spec: dict, args: argparse.Namespace, merge_block) -> str:
    """How many block pixels the kernel's sampling calls (``loops.sample_into``, one per block and source
    read) were given, against how many they wrote: what partial windows leave the loops to skip. Counted
    around the real function over one merge's blocks, then put back."""
    import numpy as np

    from lazymerge.kernel import loops

    real, given, wrote, calls = loops.sample_into, [0], [0], [0]

    def counted(*a, **k):
        n = real(*a, **k)
        calls[0] += 1
        given[0] += a[8][0].size  # out = (values, has, winner)
        wrote[0] += n
        return n

    result = _lazymerge(tmp, spec["grid"], args.resampling)
    loops.sample_into = counted
    try:
        for block_id in np.ndindex(*(len(c) for c in result.array.chunks)):
            merge_block(None, task=result.task, block_id=block_id)
    finally:
        loops.sample_into = real
    return f"{calls[0]} calls over {given[0] / 1e6:.1f} Mpix of blocks, {wrote[0] / 1e6:.1f} Mpix written"


def child(args: argparse.Namespace) -> None:
    """Run one tool in this (fresh) process; print its wall and CPU time as JSON, save its output."""
    import importlib

    tmp = Path(args.data)
    spec = json.loads((tmp / "workload.json").read_text())
    try:
        for name in IMPORTS[args.child]:
            importlib.import_module(name)
    except Exception as exc:  # an uninstallable peer: say why instead of a time
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return
    out = RUNNERS[args.child](tmp, spec["grid"], spec["tiles"], args.threads, args.resampling)
    wall = time.perf_counter() - T0
    cpu_end = time.process_time()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    import numpy as np

    if isinstance(out, Path):
        import zarr

        out = zarr.open_array(str(out), mode="r")[:]
    np.save(args.out, np.asarray(out))
    print(
        json.dumps({"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "cpu_end": cpu_end, "marks": MARKS})
    )


# ----------------------------------------------------------------------------------------------- main


def _run_child(tool: str, tmp: Path, args: argparse.Namespace, run: int) -> dict:
    out = tmp / f"out-{tool.replace(' ', '_')}-{run}.npy"
    cmd = [
        sys.executable,
        __file__,
        "--child",
        tool,
        "--data",
        str(tmp),
        "--out",
        str(out),
        "--threads",
        str(args.threads),
        "--resampling",
        args.resampling,
        "--chunk",
        str(args.chunk),
        f"--place={args.place}",  # "=": a negative longitude is not an option
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}
    result = json.loads(lines[-1])
    result["out"] = out
    return result


def _commit() -> str:
    """The commit of the lazymerge being measured (the one imported, e.g. through PYTHONPATH)."""
    import lazymerge

    repo = Path(next(iter(lazymerge.__path__))).parent
    out = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return out.stdout.strip() or "unknown"


def agreement(a, b) -> str:
    import numpy as np

    if a.shape != b.shape:
        return f"shape {a.shape} != {b.shape}"
    same = a == b
    near = np.abs(a.astype("i4") - b.astype("i4")) <= 1
    return f"{same.mean():9.4%} ({int((~same).sum())} differ, {int((~near).sum())} by > 1)"


def byte_compile() -> None:
    """Byte-compile lazymerge's modules, as installing its wheel does for it and for the peers' packages: a
    checkout installed editable has no ``.pyc`` files, and with ``PYTHONDONTWRITEBYTECODE`` set every fresh
    process would compile every module again (~0.1 s of its imports)."""
    import compileall

    import lazymerge

    compileall.compile_dir(str(Path(lazymerge.__file__).parent), quiet=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="4 tiles of 1500 px into 2400 x 2400 (quick)")
    ap.add_argument("--repeat", type=int, default=3, help="fresh-process runs per tool; the best is shown")
    ap.add_argument("--threads", type=int, default=2, help="threads / workers for every tool")
    ap.add_argument("--resampling", default="nearest", choices=("nearest", "bilinear"))
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated subset of {', '.join(TOOLS)}")
    ap.add_argument("--scaling", action="store_true", help="also lazymerge compute on 1 thread (fresh)")
    ap.add_argument("--profile", action="store_true", help="also where lazymerge's time goes (fresh)")
    ap.add_argument("--keep", help="write the tiles into this directory, or reuse them if already there")
    ap.add_argument("--chunk", type=int, default=CHUNK, help="target chunk size of every tool")
    ap.add_argument("--place", default=f"{CENTRE[0]:g},{CENTRE[1]:g}", help="LON,LAT (UTM boundary near LON)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    configure(args.chunk, args.place)
    if args.child == "lazymerge profile":
        profile_child(args)
        return
    if args.child:
        child(args)
        return
    import numpy as np

    tools = [t.strip() for t in args.tools.split(",")]
    byte_compile()
    per_side, tile, size = SIZES[args.small]
    grid = target_grid(size)
    tiles = tile_grids(grid, per_side, tile)
    with tempfile.TemporaryDirectory(prefix="lazymerge-peers-") as tmpdir:
        tmp = Path(args.keep or tmpdir)
        t0 = time.perf_counter()
        workload = json.dumps({"grid": grid, "tiles": tiles})
        if not (tmp / "workload.json").exists() or (tmp / "workload.json").read_text() != workload:
            tmp.mkdir(parents=True, exist_ok=True)
            write_data(tmp, tiles, seed=0)
            (tmp / "workload.json").write_text(workload)
        print(
            f"{len(tiles)} uint16 tiles of {tile}x{tile} (nodata 0 edges) in {' + '.join(ZONES)} -> "
            f"{size}x{size} ({size * size / 1e6:g} Mpix) {CRS} at {RES:g} m, chunks {CHUNK}, "
            f"{args.resampling}, {args.threads} threads; written as COG + STAC and Zarr in "
            f"{time.perf_counter() - t0:.1f} s"
        )
        print(
            f"each tool in a fresh process, best of {args.repeat} (wall from before its imports; "
            "lazymerge byte-compiled, as an installed package is)"
        )
        oracle = exact_oracle(tmp, grid, tiles, args.resampling)
        rows = {}
        for run in range(args.repeat):  # interleaved, so a busy moment does not hit one tool only
            for tool in tools:
                res = _run_child(tool, tmp, args, run)
                best = rows.get(tool)
                if "error" in res:
                    rows.setdefault(tool, res)
                elif best is None or "error" in best or res["wall"] < best["wall"]:
                    rows[tool] = res
        timed = [r for t, r in rows.items() if t in PEERS and "error" not in r]
        fastest = min(timed, key=lambda r: r["wall"]) if timed else None
        print(
            f"{'tool':20} {'wall s':>7} {'CPU s':>7} {'x fastest peer':>15} {'CPU x':>6}  "
            f"identical to GDAL exact warper"
        )
        for tool, r in rows.items():
            if "error" in r:
                print(f"{tool:20} not run: {r['error']}")
                continue
            ratio = f"{r['wall'] / fastest['wall']:14.2f}x" if fastest else f"{'-':>15}"
            cpu = f"{r['cpu'] / fastest['cpu']:5.2f}x" if fastest else f"{'-':>6}"
            print(
                f"{tool:20} {r['wall']:7.2f} {r['cpu']:7.2f} {ratio} {cpu}  "
                f"{agreement(np.load(r['out']), oracle)}"
            )
        for tool, r in rows.items():
            marks = r.get("marks")
            if marks:  # where a lazymerge run's wall time went
                imports, plan = marks["imports"], marks["plan"]
                print(
                    f"  {tool}: imports {imports:.2f} s, merge() (planning) {plan - imports:.2f} s, "
                    f"{tool.split()[-1]} {r['wall'] - plan:.2f} s"
                )
        if args.scaling and "lazymerge compute" in rows and "error" not in rows["lazymerge compute"]:
            one = argparse.Namespace(**{**vars(args), "threads": 1})
            runs = [_run_child("lazymerge compute", tmp, one, run) for run in range(args.repeat)]
            best = min((r for r in runs if "error" not in r), key=lambda r: r["wall"])
            two = rows["lazymerge compute"]
            c1, c2 = best["wall"] - best["marks"]["plan"], two["wall"] - two["marks"]["plan"]
            print(
                f"lazymerge compute on 1 thread: {best['wall']:.2f} s wall (compute {c1:.2f} s); "
                f"{args.threads} threads are {best['wall'] / two['wall']:.2f}x faster overall, "
                f"{c1 / c2:.2f}x in compute"
            )
            warm, cores = {}, {}
            for n in (1, args.threads):
                opts = argparse.Namespace(**{**vars(args), "threads": n})
                runs = [_run_child("lazymerge warm", tmp, opts, run) for run in range(args.repeat)]
                ok = [r for r in runs if "error" not in r]
                fast = min(ok, key=lambda r: r["wall"] - r["marks"]["plan"]) if ok else None
                warm[n] = fast["wall"] - fast["marks"]["plan"] if fast else math.nan
                cores[n] = (fast["cpu_end"] - fast["marks"]["plan_cpu"]) / warm[n] if fast else math.nan
            print(
                f"steady state (a second merge in a process that computed once): compute on 1 thread "
                f"{warm[1]:.2f} s ({cores[1]:.2f} cores busy: reads run beside it), on {args.threads} "
                f"{warm[args.threads]:.2f} s ({cores[args.threads]:.2f} cores): "
                f"{warm[1] / warm[args.threads]:.2f}x"
            )
        if args.profile:
            cmd = [sys.executable, __file__, "--child", "lazymerge profile", "--data", str(tmp)]
            cmd += ["--threads", str(args.threads), "--resampling", args.resampling]
            cmd += ["--chunk", str(args.chunk)]
            proc = subprocess.run([*cmd, f"--place={args.place}"], capture_output=True, text=True)
            print("where lazymerge's time goes (a fresh process):")
            print(proc.stdout.rstrip() if proc.returncode == 0 else f"  failed: {proc.stderr.strip()[-500:]}")
        if fastest:
            name = next(t for t, r in rows.items() if r is fastest)
            print(
                f"fastest peer: {name}; lazymerge target: wall <= "
                f"{0.5 if args.resampling == 'nearest' else 0.7}x, CPU <= 1x"
            )
        print(f"machine: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}")
        print(
            f"commit {_commit()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
            f"python benchmarks/peers.py {' '.join(sys.argv[1:])}"
        )


if __name__ == "__main__":
    main()
