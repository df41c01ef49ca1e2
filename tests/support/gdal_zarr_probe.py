"""Run by the side interpreter of ``.venv-gdal`` (Python 3.12, made by ``make test``), never imported by the
suite: open a Zarr output's levels with the newest GDAL that has a Zarr driver and print what GDAL reads.

``python gdal_zarr_probe.py STORE BAND LEVELS OUTDIR`` prints one JSON object: the GDALs found
(``gdal-wheel``'s osgeo bindings and rasterio's bundled GDAL, each with its version and whether it has the
Zarr driver), the one used, and per level its CRS (WKT), geotransform and overview count; the pixels of
level ``k`` are saved to ``OUTDIR/k.npy``. Each GDAL is probed in its own process: the two wheels bundle
different libgdal builds, which must not meet in one process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


def osgeo_info() -> dict[str, Any]:
    from osgeo import gdal

    return {"version": gdal.__version__, "zarr": gdal.GetDriverByName("Zarr") is not None}


def rasterio_info() -> dict[str, Any]:
    import rasterio

    with rasterio.Env() as env:
        return {"version": rasterio.__gdal_version__, "zarr": "Zarr" in env.drivers()}


def osgeo_levels(store: str, band: str, levels: int, outdir: str) -> list[dict[str, Any]]:
    import numpy as np
    from osgeo import gdal

    gdal.UseExceptions()
    found = []
    for k in range(levels):
        ds = gdal.Open(f'ZARR:"{store}":/{band}/{k}')
        np.save(f"{outdir}/{k}.npy", ds.GetRasterBand(1).ReadAsArray())
        found.append(
            {
                "crs": ds.GetSpatialRef().ExportToWkt() if ds.GetSpatialRef() else None,
                "transform": list(ds.GetGeoTransform()),
                "overviews": ds.GetRasterBand(1).GetOverviewCount(),
            }
        )
    return found


def rasterio_levels(store: str, band: str, levels: int, outdir: str) -> list[dict[str, Any]]:
    import warnings

    import numpy as np
    import rasterio

    found = []
    for k in range(levels):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            ds = rasterio.open(f'ZARR:"{store}":/{band}/{k}')
        with ds:
            np.save(f"{outdir}/{k}.npy", ds.read(1))
            found.append(
                {
                    "crs": ds.crs.to_wkt() if ds.crs else None,
                    "transform": list(ds.transform.to_gdal()),
                    "overviews": len(ds.overviews(1)),
                }
            )
    return found


def main(store: str, band: str, levels: int, outdir: str) -> dict[str, Any]:
    def ask(what: str) -> Any:
        run = subprocess.run(
            [sys.executable, __file__, "--one", what, store, band, str(levels), outdir],
            capture_output=True,
            text=True,
        )
        return json.loads(run.stdout) if run.returncode == 0 else {"error": run.stderr.strip()[-300:]}

    gdals = {"gdal-wheel": ask("osgeo_info"), "rasterio": ask("rasterio_info")}
    usable = [n for n, g in gdals.items() if g.get("zarr")]
    if not usable:
        return {"gdals": gdals, "used": None}
    used = max(usable, key=lambda n: tuple(int(p) for p in gdals[n]["version"].split(".")[:3]))
    reader = "osgeo_levels" if used == "gdal-wheel" else "rasterio_levels"
    return {"gdals": gdals, "used": used, "version": gdals[used]["version"], "levels": ask(reader)}


if __name__ == "__main__":
    if sys.argv[1] == "--one":
        what, store, band, levels, outdir = sys.argv[2:7]
        fn = globals()[what]
        result = fn() if what.endswith("_info") else fn(store, band, int(levels), outdir)
    else:
        store, band, levels, outdir = sys.argv[1:5]
        result = main(store, band, int(levels), outdir)
    print(json.dumps(result))
