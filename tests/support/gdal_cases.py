"""The GDAL oracle cases shared by the merge and kernel tests and the plan-accuracy benchmark: two UTM
zones, 4326 -> 3857, the North Pole, the antimeridian (``CASES``), harder projections for the
default path (``HARD``) and world projections' seams (``SEAMS``); random data around each."""

from __future__ import annotations

import numpy as np
from affine import Affine
from pyproj import Transformer

from lazymerge.api import merge
from tests.support.gdal_oracle import Raster, around

SIZE = 192
CHUNK = (64, 64)

CASES = {
    "utm-zones": (
        [
            around("a", "EPSG:32617", -78.02, 40.0, 30.0, 160, 1),
            around("b", "EPSG:32618", -77.97, 40.02, 30.0, 160, 2),
        ],
        ("EPSG:32618", -78.0, 40.01, 25.0),
    ),
    "4326-to-3857": (
        [
            around("a", "EPSG:4326", 10.0, 45.0, 0.0003, 160, 3),
            around("b", "EPSG:4326", 10.02, 45.01, 0.00025, 160, 4),
        ],
        ("EPSG:3857", 10.01, 45.005, 30.0),
    ),
    "polar": (
        [
            around("a", "EPSG:32633", 15.0, 89.5, 500.0, 200, 5),
            around("b", "EPSG:3995", 0.0, 90.0, 500.0, 200, 6),
        ],
        ("EPSG:3413", 0.0, 90.0, 600.0),
    ),
    "antimeridian": (
        [
            around("a", "EPSG:32660", 179.85, 50.0, 150.0, 200, 7),
            around("b", "EPSG:32601", -179.85, 50.05, 150.0, 200, 8),
        ],
        ("EPSG:3832", 180.0, 50.02, 200.0),
    ),
}


_rng = np.random.default_rng(3)
# hard projections for the default path (the control grid): sources or targets near a pole, across the
# antimeridian, geographic sources at high latitude; lazymerge.kernel.mapping must refine where its cubic
# fails (the pole, the +-180 seam) and stay within THRESHOLD elsewhere
HARD = {
    "4326-around-north-pole": (  # every longitude, 85..90 N: the pole and the seam in the target
        [Raster("g", "EPSG:4326", (0.5, 0.0, -180.0, 0.0, -0.02, 90.0), _rng.random((250, 720), dtype="f4"))],
        ("EPSG:3413", 0.0, 90.0, 1000.0),
    ),
    "south-pole": (
        [
            around("a", "EPSG:32733", 15.0, -89.4, 500.0, 200, 11),
            around("b", "EPSG:4326", 40.0, -88.8, 0.01, 200, 12),
        ],
        ("EPSG:3031", 0.0, -89.5, 600.0),
    ),
    "4326-80N-to-3413": (
        [around("g", "EPSG:4326", -40.0, 80.0, 0.004, 200, 13)],
        ("EPSG:3413", -40.0, 80.0, 300.0),
    ),
    "4326-78N-to-utm": (
        [around("g", "EPSG:4326", 16.0, 78.0, 0.004, 200, 14)],
        ("EPSG:32633", 16.0, 78.0, 200.0),
    ),
    "antimeridian-3857": (
        [
            around("a", "EPSG:32660", 179.85, 60.0, 150.0, 200, 15),
            around("b", "EPSG:32601", -179.85, 60.05, 150.0, 200, 16),
        ],
        ("EPSG:3857", 180.0, 60.02, 300.0),
    ),
    "antimeridian-utm": (  # UTM 60N across 180: UTM 1N, and a geographic source whose seam crosses it
        [
            around("b", "EPSG:32601", -179.8, 50.05, 150.0, 200, 17),
            around("g", "EPSG:4326", 179.8, 50.0, 0.002, 200, 18),
        ],
        ("EPSG:32660", 180.0, 50.02, 200.0),
    ),
}


SINUSOIDAL = "+proj=sinu +lon_0=0 +datum=WGS84 +units=m"
# a world projection's +-180 seam crossing a target chunk, on the source's side: the plan's lattice jumps
# across it (``lazymerge.planner.windows._seams``) and a block's corners' Jacobian with it
SEAMS = {
    "3857-to-utm60": (
        around("m", "EPSG:3857", 179.95, 60.0, 150.0, 200, 22),
        ("EPSG:32660", 180.0, 60.0, 100.0),
    ),
    "3857-to-utm1": (
        around("m", "EPSG:3857", 179.95, 60.0, 150.0, 200, 23),
        ("EPSG:32601", 180.0, 60.0, 100.0),
    ),
    "sinusoidal-near-pole": (
        Raster(
            "s",
            SINUSOIDAL,
            (28.597, 0.0, 194748.9, 0.0, -28.597, 9941878.1),
            np.random.default_rng(24).random((200, 200), dtype="f4"),
        ),
        ("+proj=lcc +lat_1=84.4 +lat_2=88 +lat_0=85 +lon_0=179.9 +datum=WGS84 +units=m", 179.9, 89.426, 30.0),
    ),
}


def target_grid(crs: str, lon: float, lat: float, res: float) -> tuple[tuple[float, ...], Affine]:
    """A SIZE-square bbox around lon/lat whose centre sits off every pixel edge of the sources."""
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    x0 = x - SIZE / 2 * res + 0.21 * res
    y1 = y + SIZE / 2 * res - 0.43 * res
    return (x0, y1 - SIZE * res, x0 + SIZE * res, y1), Affine(res, 0.0, x0, 0.0, -res, y1)


def oracle_store(path) -> tuple[dict, np.ndarray]:
    """The "utm-zones" case's random sources written to a store at ``path`` (with /meta): the request that
    merges them exactly (``merge(store, **request)``) and GDAL's exact mosaic, the independent expected
    value for tests of store kinds and transports."""
    import zarr

    from lazymerge.catalog.meta import write_meta
    from tests.support.gdal_oracle import mosaic_exact
    from tests.support.stores import add_source

    sources, (crs, lon, lat, res) = CASES["utm-zones"]
    root = zarr.open_group(str(path), mode="w")
    for s in sources:
        add_source(root, s.name, s.crs, s.transform, s.data)
    write_meta(path)
    bbox, transform = target_grid(crs, lon, lat, res)
    expected = mosaic_exact(sources, crs, transform, (SIZE, SIZE))
    assert 0 < np.isnan(expected).mean() < 0.9
    request = {"crs": crs, "bbox": bbox, "resolution": res, "chunk_size": CHUNK, "bands": "data"}
    return {**request, "sortby": "id", "exact": True}, expected


def store_of(make_store, sources: list[Raster]):
    return make_store([(s.name, s.crs, s.transform, s.data) for s in sources])


def merge_case(store, crs, bbox, res, datafusion=None, **kw):
    """The oracle cases' merge (one ``data`` band, CHUNK chunks, id order), exact unless told otherwise."""
    kw.setdefault("exact", True)  # the foundation's exact kernel; the approximate one is tested below
    return merge(
        str(store),
        crs=crs,
        bbox=bbox,
        resolution=res,
        chunk_size=CHUNK,
        bands="data",
        datafusion=datafusion,
        sortby="id",
        **kw,
    )


def run(store, crs, bbox, res, datafusion, **kw):
    return merge_case(store, crs, bbox, res, datafusion, **kw).array.compute()


def downsampled(store, src: Raster, ratio: float, resampling: str) -> tuple[np.ndarray, Affine]:
    """lazymerge's merge of ``src`` (in ``store``, UTM 18) onto pixels ``ratio`` times larger, off its
    grid, in small chunks; and the target affine."""
    tres, n = 10.0 * ratio, int(300 / ratio)
    x0, y1 = src.transform[2] + 40 + 0.3 * tres, src.transform[5] - 40 - 0.2 * tres
    got = merge(
        str(store),
        crs="EPSG:32618",
        bbox=(x0, y1 - n * tres, x0 + n * tres, y1),
        resolution=tres,
        chunk_size=(24, 40),
        bands="data",
        resampling=resampling,
    ).array.compute()
    return got, Affine(tres, 0, x0, 0, -tres, y1)


def interior(expected: np.ndarray, k: int = 4) -> np.ndarray:
    """Pixels at least ``k`` pixels away from any NaN (and the array edge)."""
    bad = np.isnan(expected)
    grown = bad.copy()
    for dr in range(-k, k + 1):
        for dc in range(-k, k + 1):
            grown |= np.roll(np.roll(bad, dr, 0), dc, 1)
    grown[:k], grown[-k:], grown[:, :k], grown[:, -k:] = True, True, True, True
    return ~grown
