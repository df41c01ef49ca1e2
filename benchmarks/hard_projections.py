"""Nearest on random hard CRS pairs, default options and ``exact=True``, against two oracles.

Each case draws a point (anywhere, near a pole, or beside the antimeridian), a target CRS and two source
CRSs among UTM, LAEA, LCC, polar stereographic, Web Mercator, geographic and sinusoidal centred on or near
it, at 30-500 m, and two 200 px sources of random floats (``tests.support.gdal_oracle.around``) on a 192 px
target in 64 px chunks (``tests.support.gdal_cases.target_grid``). Merged first-valid in id order, compared
with:

- ``truth``: every target pixel centre through pyproj's exact transform, floored to a source pixel (NaN
  outside every source; ``tests.support.gdal_oracle.nearest_exact``): a nearest warp by the exact
  transform;
- ``GDAL``: GDAL's exact warper (``WarpedVRT``, ``tolerance=1e-9``), which the tests take as the oracle,
  and which itself departs from ``truth`` where a seam crosses its source window.

    python -m benchmarks.hard_projections                 # 48 cases (seeds 1-3, 16 each)
    python -m benchmarks.hard_projections --seeds 4 5 --cases 10
    python -m benchmarks.hard_projections --chunkings     # and 64 against 96 px chunks, per resampling

Polar stereographic is drawn only beyond 50 degrees of latitude, Web Mercator only within 84. Cases lazymerge
refuses (a source outside its CRS's area of use: ``InvalidSourceError``) are counted apart.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np
import zarr
from pyproj import CRS

from lazymerge.api import merge
from lazymerge.catalog.meta import write_meta
from lazymerge.errors import InvalidSourceError
from tests.support.gdal_cases import SIZE, target_grid
from tests.support.gdal_oracle import Raster, agreement, around, mosaic_exact, nearest_exact
from tests.support.stores import add_source


def _utm(lon: float, lat: float) -> str:
    return f"EPSG:{(32600 if lat >= 0 else 32700) + int((lon + 180) // 6) % 60 + 1}"


def _laea(lon: float, lat: float) -> str:
    return f"+proj=laea +lat_0={lat:.2f} +lon_0={lon:.2f} +datum=WGS84 +units=m"


def _lcc(lon: float, lat: float) -> str:
    lat0 = max(min(lat, 85.0), -85.0)
    return (
        f"+proj=lcc +lat_1={max(min(lat - 5, 85), -85):.1f} +lat_2={max(min(lat + 3, 88), -88):.1f} "
        f"+lat_0={lat0:.1f} +lon_0={lon:.1f} +datum=WGS84 +units=m"
    )


CHUNKINGS = ("bilinear", "cubic", "average")  # ``--chunkings``: compared at 64 and 96 px chunks
KINDS = {
    "utm": _utm,
    "laea": _laea,
    "lcc": _lcc,
    "polar": lambda lon, lat: "EPSG:3413" if lat > 0 else "EPSG:3031",
    "3857": lambda lon, lat: "EPSG:3857",
    "4326": lambda lon, lat: "EPSG:4326",
    "sinu": lambda lon, lat: "+proj=sinu +lon_0=0 +datum=WGS84 +units=m",
}


def draw(rng: np.random.Generator) -> tuple[list[Raster], str, float, float, float, str]:
    """One random case: sources, target CRS, lon, lat, target resolution, and the kinds (``KINDS``)."""
    lat = float(rng.choice([rng.uniform(-89.9, 89.9), rng.uniform(75, 89.95), rng.uniform(-89.95, -75)]))
    lon = float(rng.choice([rng.uniform(-180, 180), 179.9 * rng.choice([-1, 1])]))
    names = list(KINDS)
    pick = names[rng.integers(len(names))]
    if pick == "3857" and abs(lat) > 84 or pick == "polar" and abs(lat) < 50:
        pick = "polar" if abs(lat) > 50 else "laea"  # Mercator's poles; a polar CRS far from its pole
    target = KINDS[pick](lon, lat)
    res = float(rng.choice([30.0, 100.0, 500.0]))
    sources, kinds = [], []
    for i in range(2):
        kind = names[rng.integers(len(names))]
        if kind == "3857" and abs(lat) > 84 or kind == "polar" and abs(lat) < 50:
            kind = "4326"
        kinds.append(kind)
        crs = KINDS[kind](lon + rng.uniform(-0.3, 0.3), lat)
        sres = res * rng.uniform(0.6, 1.5) / (111_000.0 if CRS.from_user_input(crs).is_geographic else 1.0)
        at_lon = (lon + rng.uniform(-0.1, 0.1) * res / 100 + 180) % 360 - 180
        at_lat = max(min(lat + rng.uniform(-0.05, 0.05) * res / 100, 89.99), -89.99)
        sources.append(around("ab"[i], crs, at_lon, at_lat, sres, 200, int(rng.integers(1 << 30))))
    tres = res / 111_000.0 if CRS.from_user_input(target).is_geographic else res
    return sources, target, lon, lat, tres, f"{'+'.join(kinds)} -> {pick}"


def run(
    sources: list[Raster], crs: str, lon: float, lat: float, res: float, chunkings: bool = False
) -> dict | str:
    """Agreement of lazymerge (default, exact) with both oracles, or why lazymerge refused the case. With
    ``chunkings``: also, per resampling of ``CHUNKINGS``, how far 64 and 96 px chunks differ (exact
    coordinates; the largest difference, and the pixels NaN in one only)."""
    bbox, transform = target_grid(crs, lon, lat, res)
    exact_px, gdal = (
        nearest_exact(sources, crs, transform, (SIZE, SIZE)),
        mosaic_exact(sources, crs, transform, (SIZE, SIZE)),
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.zarr"
        root = zarr.open_group(str(path), mode="w")
        for s in sources:
            add_source(root, s.name, s.crs, s.transform, s.data)
        got = {}
        for exact in (False, True):
            try:
                write_meta(path)
                got[exact] = merge(
                    str(path), crs=crs, bbox=bbox, resolution=res, chunk_size=(64, 64), bands="data",
                    sortby="id", exact=exact,
                ).array.compute()  # fmt: skip
            except InvalidSourceError as e:
                return f"refused: {str(e).splitlines()[0][:90]}"
        apart = {}
        for rs in CHUNKINGS if chunkings else ():
            a, b = (
                merge(
                    str(path),
                    crs=crs,
                    bbox=bbox,
                    resolution=res,
                    chunk_size=(c, c),
                    bands="data",
                    sortby="id",
                    exact=True,
                    resampling=rs,
                ).array.compute()  # fmt: skip
                for c in (64, 96)
            )
            both = np.isfinite(a) & np.isfinite(b)
            apart[rs] = (float(np.abs(a - b)[both].max(initial=0.0)), int((np.isnan(a) != np.isnan(b)).sum()))
    return {
        "chunkings": apart,
        "filled": float(np.isfinite(exact_px).mean()),
        "gdal_truth": agreement(gdal, exact_px),
        "default_truth": agreement(got[False], exact_px),
        "exact_truth": agreement(got[True], exact_px),
        "default_gdal": agreement(got[False], gdal),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--cases", type=int, default=16, help="cases per seed")
    ap.add_argument("--chunkings", action="store_true", help="also compare two chunkings (CHUNKINGS)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    print(
        f"{'case':<6} {'sources -> target':<22} {'lon':>8} {'lat':>7} {'filled':>6}  "
        f"{'GDAL=truth':>10} {'default=truth':>13} {'exact=truth':>11} {'default=GDAL':>12}"
    )
    rows, refused = [], 0
    for seed in args.seeds:
        rng = np.random.default_rng(seed)
        for k in range(args.cases):
            sources, crs, lon, lat, res, kinds = draw(rng)
            r = run(sources, crs, lon, lat, res, args.chunkings)
            head = f"{seed}-{k:<4} {kinds:<22} {lon:8.2f} {lat:7.2f}"
            if isinstance(r, str):
                refused += 1
                print(f"{head}  {r}", flush=True)
                continue
            rows.append(r)
            print(
                f"{head} {100 * r['filled']:5.0f}%  {100 * r['gdal_truth']:9.4f}% "
                f"{100 * r['default_truth']:12.4f}% {100 * r['exact_truth']:10.4f}% "
                f"{100 * r['default_gdal']:11.4f}%"
                + "".join(f"  {rs[:3]} {d:.0e}/{nan}" for rs, (d, nan) in r["chunkings"].items()),
                flush=True,
            )
    n = len(rows)

    def share(key: str) -> str:
        return f"{sum(r[key] >= 0.9999 for r in rows)}/{n}"

    print(
        f"\n{n} cases ({refused} refused): >= 99.99 % of pixels equal to the truth: lazymerge default "
        f"{share('default_truth')}, exact {share('exact_truth')}, GDAL's exact warper {share('gdal_truth')}; "
        f"lazymerge default equal to GDAL: {share('default_gdal')}"
    )
    for rs in CHUNKINGS if args.chunkings else ():
        d = [r["chunkings"][rs] for r in rows]
        print(
            f"{rs}, 64 against 96 px chunks (exact=True): largest difference {max(x for x, _ in d):.1e} "
            f"(data in [0, 1]); identical in {sum(x == 0 for x, _ in d)}/{n}; pixels NaN in one chunking "
            f"only: {sum(nan for _, nan in d)}"
        )


if __name__ == "__main__":
    from benchmarks.provenance import header

    print(header(), flush=True)
    main()
