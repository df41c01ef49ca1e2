"""docs/guide/geotiffs-to-cog.md: its three commands, read from the page and run as written, on GeoTIFFs
in two UTM zones; the COG is valid and agrees with GDAL's exact warper on the original files."""

from __future__ import annotations

import glob
import re
import shlex
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rio_cogeo.cogeo import cog_validate

from lazymerge.cli import main
from tests.support.gdal_oracle import Raster, agreement, mosaic_exact
from tests.support.geotiffs import write_geotiff

PAGE = Path(__file__).resolve().parents[1] / "docs" / "guide" / "geotiffs-to-cog.md"
TILES = [  # ingested in id (file name) order, which is the merge's priority without --sortby
    ("north", "EPSG:32618", (10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0)),
    ("south", "EPSG:32618", (10.0, 0.0, 501000.0, 0.0, -10.0, 5998000.0)),
    ("west", "EPSG:32617", (10.0, 0.0, 890500.0, 0.0, -10.0, 6016000.0)),
]


def commands() -> list[list[str]]:
    block = re.search(r"```sh\n(.*?)```", PAGE.read_text(), re.S).group(1)
    return [shlex.split(line) for line in block.strip().splitlines()]


def test_three_commands_from_the_guide(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(11)
    rasters = []
    (tmp_path / "tiles").mkdir()
    for name, crs, transform in TILES:
        data = rng.random((300, 300), dtype="f4")
        rasters.append(Raster(name, crs, transform, data))
        write_geotiff(tmp_path / "tiles" / f"{name}.tif", data, crs, transform, nodata=np.nan)
    monkeypatch.chdir(tmp_path)
    steps = commands()
    assert [s[:2] for s in steps] == [["lazymerge", "ingest"], ["lazymerge", "plan"], ["lazymerge", "run"]]
    for argv in steps:
        expanded = [m for a in argv[1:] for m in (sorted(glob.glob(a)) if "*" in a else [a])]
        assert main(expanded) == 0, capsys.readouterr().err
    assert "ingested 3 source(s)" in capsys.readouterr().out

    assert cog_validate("mosaic.tif")[0]
    plan = steps[1]
    bbox = [float(v) for v in plan[plan.index("--bbox") + 1].split(",")]
    res = float(plan[plan.index("--resolution") + 1])
    with rasterio.open("mosaic.tif") as ds:
        assert ds.crs.to_epsg() == 32618 and ds.transform == Affine(res, 0, bbox[0], 0, -res, bbox[3])
        assert ds.overviews(1) == [2]
        got = ds.read(1)
    expected = mosaic_exact(rasters, "EPSG:32618", ds.transform, got.shape)
    for one in rasters:  # every tile shows, and some of the mosaic stays empty
        assert (mosaic_exact([one], "EPSG:32618", ds.transform, got.shape) == expected).mean() > 0.05
    assert 0 < np.isnan(expected).mean() < 0.9
    assert agreement(got, expected) >= 0.9999
