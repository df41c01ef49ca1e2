"""GeoTIFFs and COGs for the ingest and output tests, written by rasterio and GDAL's COG driver."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine


def write_geotiff(
    path: Path,
    data: np.ndarray,
    crs: str,
    transform: tuple[float, ...],
    nodata: float | None = None,
    cog_overviews: int = 0,
    scale: float | None = None,
    offset: float = 0.0,
) -> Path:
    """``data`` (2-D, or bands x rows x cols) as a GeoTIFF; with ``cog_overviews``, rewritten as a COG with
    that many internal overviews (average) by GDAL's COG driver."""
    bands = data.reshape((-1, *data.shape[-2:]))
    profile = dict(
        driver="GTiff",
        width=bands.shape[2],
        height=bands.shape[1],
        count=len(bands),
        dtype=bands.dtype.name,
        crs=crs,
        transform=Affine(*transform),
        nodata=nodata,
    )
    plain = path.with_suffix(".plain.tif") if cog_overviews else path
    with rasterio.open(plain, "w", **profile) as ds:
        ds.write(bands)
        if scale is not None:
            ds.scales, ds.offsets = (scale,) * len(bands), (offset,) * len(bands)
    if cog_overviews:
        rasterio.shutil.copy(
            plain,
            path,
            driver="COG",
            BLOCKSIZE=128,
            OVERVIEW_COUNT=cog_overviews,
            OVERVIEW_RESAMPLING="AVERAGE",
        )
        plain.unlink()
    return path
