"""MergeResult -> xarray.DataArray backed by the Cubed array, with rasterix and xproj, plus the CF grid
mapping (``spatial_ref``) and nodata that rioxarray, odc-geo and GDAL read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
import xproj  # noqa: F401  (registers the .proj accessor)
from affine import Affine
from pyproj import CRS
from rasterix import RasterIndex

if TYPE_CHECKING:
    from lazymerge.result import MergeResult


def cf_grid_mapping(crs: CRS, transform: Affine) -> dict[str, Any]:
    """CF grid-mapping attributes of a ``spatial_ref`` coordinate: pyproj's ``CRS.to_cf()`` (``crs_wkt``,
    ``grid_mapping_name`` and its parameters), ``spatial_ref`` (the WKT, for GDAL) and ``GeoTransform``
    (GDAL's six numbers ``c a b f d e`` as text, which rioxarray and GDAL read)."""
    attrs = crs.to_cf()
    attrs["spatial_ref"] = attrs["crs_wkt"]
    attrs["GeoTransform"] = " ".join(repr(float(v)) for v in transform.to_gdal())
    return attrs


def nodata_of(result: MergeResult) -> float:
    """The value the mosaic writes where no source is: the request's ``nodata``, else NaN."""
    nodata = result.plan.nodata
    return float("nan") if nodata is None else float(np.dtype(result.array.dtype).type(nodata))


def to_xarray(result: MergeResult, name: str = "mosaic") -> xr.DataArray:
    """DataArray with dims ([time,] [band,] y, x), RasterIndex x/y coordinates, labelled band and time
    coordinates, and a ``spatial_ref`` coordinate carrying the xproj CRS index and the CF grid mapping.

    ``grid_mapping`` and ``_FillValue`` attributes name the grid mapping and the nodata value, so that
    rioxarray (``.rio.crs``, ``.rio.transform()``, ``.rio.nodata``, ``.rio.to_raster()``) and odc-geo
    (``.odc.geobox``) see the georeferencing without any further step.
    """
    plan = result.plan
    dims = ("time",) * (plan.time_coords is not None) + ("band",) * plan.band_dim + ("y", "x")
    da = xr.DataArray(result.array, dims=dims, name=name)
    h, w = result.grid.shape
    code = result.proj.code
    transform = result.grid.transform
    index = RasterIndex.from_transform(affine=transform, width=w, height=h, x_dim="x", y_dim="y", crs=code)
    da = da.assign_coords(xr.Coordinates.from_xindex(index))
    if plan.band_dim:
        da = da.assign_coords(band=list(plan.bands))
    if plan.time_coords is not None:
        da = da.assign_coords(time=plan.time_coords)
    da = da.proj.assign_crs(spatial_ref=code, allow_override=True)
    da = da.proj.write_crs_info("spatial_ref", func=lambda crs: cf_grid_mapping(crs, transform))
    da.attrs.update(grid_mapping="spatial_ref", _FillValue=nodata_of(result))
    return da
