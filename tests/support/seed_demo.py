"""The seed demo's code (sections 1-6, plots aside), as the seed wrote it.

One change: section 4's first merge call unpacked three values; the seed's own later cells (and the
design) return four -- ``(array, spatial, proj, time_coords)`` -- so that line unpacks four here.
Run as ``run_seed(tmpdir)``; returns the section results the tests check.
"""
# ruff: noqa: E501

import numpy as np
import xarray as xr
import zarr
from affine import Affine
from obstore.store import LocalStore
from rasterix import RasterIndex

from lazymerge.conventions import (
    ProjAttrs,
    SpatialAttrs,
    read_multiscales,
    read_spatial,
    write_proj,
    write_spatial,
)
from lazymerge.merge import merge
from lazymerge.sources import select_overview


def run_seed(tmpdir, datafusion=True):
    # 1. Create synthetic source arrays with DataFusion store layout
    store = zarr.storage.LocalStore(tmpdir)
    root = zarr.open_group(store, mode="w")
    sources = [
        {
            "name": "utm18n_tile_a",
            "crs": "EPSG:32618",
            "epsg": 32618,
            "bbox": (500000.0, 5990000.0, 505000.0, 5995000.0),
            "resolution": 10.0,
            "fill": 100.0,
        },
        {
            "name": "utm18n_tile_c",
            "crs": "EPSG:32618",
            "epsg": 32618,
            "bbox": (500000.0, 5995000.0, 505000.0, 6000000.0),
            "resolution": 10.0,
            "fill": 300.0,
        },
        {
            "name": "utm17n_tile_b",
            "crs": "EPSG:32617",
            "epsg": 32617,
            "bbox": (895094.0, 6006920.0, 900511.0, 6012337.0),
            "resolution": 10.0,
            "fill": 200.0,
        },
        {
            "name": "utm17n_tile_d",
            "crs": "EPSG:32617",
            "epsg": 32617,
            "bbox": (894669.0, 6011912.0, 900086.0, 6017329.0),
            "resolution": 10.0,
            "fill": 400.0,
        },
    ]
    for src in sources:
        xmin, ymin, xmax, ymax = src["bbox"]
        res = src["resolution"]
        width = int((xmax - xmin) / res)
        height = int((ymax - ymin) / res)
        scene_group = root.create_group(src["name"])
        band_group = scene_group.create_group("data")
        base = band_group.create_array("0", shape=(height, width), dtype="f4", chunks=(256, 256))
        base[:] = src["fill"]
        write_spatial(
            base,
            SpatialAttrs(
                dimensions=["y", "x"],
                transform=(res, 0.0, xmin, 0.0, -res, ymax),
                bbox=(xmin, ymin, xmax, ymax),
                shape=(height, width),
            ),
        )
        write_proj(base, ProjAttrs(code=src["crs"]))
        ovr_width = width // 2
        ovr_height = height // 2
        ovr_res = res * 2
        ovr = band_group.create_array("1", shape=(ovr_height, ovr_width), dtype="f4", chunks=(256, 256))
        ovr[:] = src["fill"]
        write_spatial(
            ovr,
            SpatialAttrs(
                dimensions=["y", "x"],
                transform=(ovr_res, 0.0, xmin, 0.0, -ovr_res, ymax),
                bbox=(xmin, ymin, xmax, ymax),
                shape=(ovr_height, ovr_width),
            ),
        )
        write_proj(ovr, ProjAttrs(code=src["crs"]))
        band_group.attrs["multiscales"] = {
            "layout": [
                {"asset": "0", "transform": {"scale": [1.0, 1.0], "translation": [0.0, 0.0]}},
                {
                    "asset": "1",
                    "derived_from": "0",
                    "transform": {"scale": [2.0, 2.0], "translation": [0.5, 0.5]},
                },
            ],
        }
    ob_store = LocalStore(tmpdir)

    # 2. Populate the /meta group
    import struct

    from pyproj import Transformer

    def bbox_to_wkb(xmin, ymin, xmax, ymax):
        """Encode a bounding box as a WKB Polygon (little-endian)."""
        points = [(xmin, ymin), (xmax, ymin), (xmax, ymax), (xmin, ymax), (xmin, ymin)]
        wkb = struct.pack("<BII", 1, 3, 1)  # LE, Polygon, 1 ring
        wkb += struct.pack("<I", 5)  # 5 points
        for x, y in points:
            wkb += struct.pack("<dd", x, y)
        return wkb

    meta = root.create_group("meta")
    ids = np.array([s["name"] for s in sources])
    epsgs = np.array([s["epsg"] for s in sources], dtype="int64")
    t0 = np.array([s["resolution"] for s in sources])
    t1 = np.zeros(len(sources))
    t2 = np.array([s["bbox"][0] for s in sources])
    t3 = np.zeros(len(sources))
    t4 = np.array([-s["resolution"] for s in sources])
    t5 = np.array([s["bbox"][3] for s in sources])
    shape_x = np.array([int((s["bbox"][2] - s["bbox"][0]) / s["resolution"]) for s in sources], dtype="int64")
    shape_y = np.array([int((s["bbox"][3] - s["bbox"][1]) / s["resolution"]) for s in sources], dtype="int64")
    bbox_wkb = []
    for s in sources:
        xmin, ymin, xmax, ymax = s["bbox"]
        transformer = Transformer.from_crs(s["crs"], "EPSG:4326", always_xy=True)
        xs = [xmin, xmin, xmax, xmax]
        ys = [ymin, ymax, ymin, ymax]
        tx, ty = transformer.transform(xs, ys)
        lon_min, lon_max = min(tx), max(tx)
        lat_min, lat_max = min(ty), max(ty)
        bbox_wkb.append(bbox_to_wkb(lon_min, lat_min, lon_max, lat_max))
    bbox_wkb_arr = np.array(bbox_wkb, dtype=object)
    id_arr = meta.create_array("id", shape=ids.shape, dtype="string")
    id_arr[:] = ids
    bbox_arr = meta.create_array("bbox", shape=bbox_wkb_arr.shape, dtype="variable_length_bytes")
    bbox_arr[:] = bbox_wkb_arr
    meta.create_array("proj:epsg", data=epsgs)
    meta.create_array("transform_0", data=t0)
    meta.create_array("transform_1", data=t1)
    meta.create_array("transform_2", data=t2)
    meta.create_array("transform_3", data=t3)
    meta.create_array("transform_4", data=t4)
    meta.create_array("transform_5", data=t5)
    meta.create_array("shape_x", data=shape_x)
    meta.create_array("shape_y", data=shape_y)

    # 3. Overview selection
    band_group = root["utm18n_tile_a/data"]
    overviews = read_multiscales(band_group)
    base_spatial = read_spatial(band_group["0"])
    native_res = abs(base_spatial.transform[0])
    for _ov in overviews:
        pass
    sel_10 = select_overview(overviews, target_res=10.0, native_res=native_res)
    sel_20 = select_overview(overviews, target_res=20.0, native_res=native_res)

    # 4. Merge with DataFusion (the seed unpacked three values here; merge returns four)
    result_arr, result_spatial, result_proj, time_coords = merge(
        store=ob_store,
        crs="EPSG:32618",
        bbox=(500000.0, 5990000.0, 508000.0, 6000000.0),
        resolution=10.0,
        chunk_size=(256, 256),
        bands="data",
        datafusion=datafusion,
        sortby="id",
    )
    # 3. Lazy merge
    result_arr, result_spatial, result_proj, time_coords = merge(
        store=ob_store,
        crs="EPSG:32618",
        bbox=(500000.0, 5990000.0, 508000.0, 6000000.0),
        resolution=10.0,
        chunk_size=(256, 256),
        bands="data",
        datafusion=datafusion,
        sortby="id",
    )
    # 4. Open the lazy Cubed array with xarray
    da = xr.DataArray(result_arr, dims=["y", "x"])
    affine = Affine(*result_spatial.transform)
    raster_idx = RasterIndex.from_transform(
        affine=affine, width=da.sizes["x"], height=da.sizes["y"], x_dim="x", y_dim="y", crs=result_proj.code
    )
    coords = xr.Coordinates.from_xindex(raster_idx)
    da = da.assign_coords(coords)
    da = da.proj.assign_crs(spatial_ref=result_proj.code, allow_override=True)
    lazy_da = da
    # 5. Compute
    da = da.compute()
    # 6. Overview selection at 20m
    result_20m, result_spatial_20m, result_proj_20m, time_coords = merge(
        store=ob_store,
        crs="EPSG:32618",
        bbox=(500000.0, 5990000.0, 508000.0, 6000000.0),
        resolution=20.0,
        chunk_size=(128, 128),
        bands="data",
        datafusion=datafusion,
        sortby="id",
    )
    affine_20m = Affine(*result_spatial_20m.transform)
    da_20m = xr.DataArray(result_20m, dims=["y", "x"])
    raster_idx_20m = RasterIndex.from_transform(
        affine=affine_20m,
        width=da_20m.sizes["x"],
        height=da_20m.sizes["y"],
        x_dim="x",
        y_dim="y",
        crs=result_proj_20m.code,
    )
    coords_20m = xr.Coordinates.from_xindex(raster_idx_20m)
    da_20m = da_20m.assign_coords(coords_20m)
    da_20m = da_20m.proj.assign_crs(spatial_ref=result_proj_20m.code, allow_override=True)
    return {
        "overviews": overviews,
        "sel_10": sel_10,
        "sel_20": sel_20,
        "lazy": lazy_da,
        "da": da,
        "da_20m": da_20m,
        "result_arr": result_arr,
        "result_spatial": result_spatial,
        "result_proj": result_proj,
        "time_coords": time_coords,
    }
