"""Blocks where a pixel's neighbourhood is not small: a seam of the source's projection inside the block
(the kernel scale, GDAL's XSCALE/YSCALE, from its corners' Jacobian, is then meaningless) and pixels beside
a pole whose footprints span many source pixels (area statistics)."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from pyproj import Transformer

from lazymerge.api import merge
from lazymerge.grid import TargetGrid
from lazymerge.kernel.block import kernel_scale
from lazymerge.kernel.mapping import pixel_mapping
from tests.support.gdal_cases import SEAMS, target_grid
from tests.support.gdal_oracle import around


def _scale(grid: TargetGrid, rows: tuple[int, int], cols: tuple[int, int], crs: str, transform) -> np.ndarray:
    m = pixel_mapping(grid.crs, grid.transform, rows, cols, crs, 1e-3)
    return kernel_scale(m, ~Affine(*transform))


def test_a_block_across_web_mercators_seam_takes_its_neighbours_scale():
    """UTM 60N across 180 from a Web Mercator source at 60 N (75 m on the ground, 100 m target pixels):
    ~0.75 either side of the seam. From the corners' Jacobian alone, the block holding the seam read the
    jump of 40,075 km as one block's width: a scale of ~1e-5, a kernel ~100,000 pixels wide."""
    src = around("m", "EPSG:3857", 179.95, 60.0, 150.0, 200, 22)
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:32660", always_xy=True).transform(180.0, 60.0)
    grid = TargetGrid.from_bbox("EPSG:32660", (x - 6400, y - 6400, x + 6400, y + 6400), 100.0, (64, 64))
    seam_col = 64  # the seam crosses the grid's middle column of blocks: check
    beside = _scale(grid, (0, 64), (0, 64), src.crs, src.transform)
    across = _scale(grid, (0, 64), (seam_col - 32, seam_col + 32), src.crs, src.transform)
    np.testing.assert_allclose(beside, 0.75, rtol=0.02)
    np.testing.assert_allclose(across, beside, rtol=0.02)


def _in_two_chunkings(store, crs: str, bbox, res: float, **kw) -> list[np.ndarray]:
    """The merge of ``store``'s one ``data`` band in 64 and in 96 px chunks."""
    return [
        merge(
            str(store), crs=crs, bbox=bbox, resolution=res, chunk_size=(c, c), bands="data", **kw
        ).array.compute()
        for c in (64, 96)
    ]


@pytest.mark.parametrize("case", ["3857-to-utm60", "3857-to-utm1"])
def test_bilinear_across_a_seam_barely_depends_on_the_chunking(make_store, case):
    """Each block estimates its own scale (as GDAL does per warp chunk), so two chunkings differ by the
    scale's variation between blocks (~3e-3 here); with a seam's block reading a kernel tens of thousands
    of pixels wide they differed by up to 0.47."""
    src, (crs, lon, lat, res) = SEAMS[case]
    store = make_store([(src.name, src.crs, src.transform, src.data)])
    bbox, _ = target_grid(crs, lon, lat, res)
    out = _in_two_chunkings(store, crs, bbox, res, resampling="bilinear")
    assert np.isfinite(out[0]).mean() > 0.1
    np.testing.assert_array_equal(np.isnan(out[0]), np.isnan(out[1]))
    assert np.nanmax(np.abs(out[0] - out[1])) < 0.01


@pytest.mark.parametrize("resampling", ["average", "max"])
def test_area_statistics_near_a_pole_do_not_depend_on_the_chunking(make_store, resampling):
    """A 100 m pixel beside the South Pole spans ~80 columns of a 1 m geographic source: its footprint meets
    the source with none of the block's pixel corners inside it. The corner check said the source was not
    needed there, so 140 pixels were NaN in 96 px chunks and valid in 64 px ones (and in GDAL's)."""
    data = np.random.default_rng(31).random((200, 200), dtype="f4")
    src = (0.00062642262435729, 0.0, 117.13983432482269, 0.0, -0.00062642262435729, -88.9618640307037)
    store = make_store([("b", "EPSG:4326", src, data)])
    crs = "+proj=laea +lat_0=-89.01 +lon_0=117.18 +datum=WGS84 +units=m"
    bbox, _ = target_grid(crs, 117.17561282168009, -89.01236705756702, 100.0)
    out = _in_two_chunkings(store, crs, bbox, 100.0, exact=True, resampling=resampling)
    assert np.isfinite(out[0][:, 95]).sum() > 100  # the column at the 96 px chunks' edge
    np.testing.assert_array_equal(out[0], out[1])


@pytest.mark.parametrize("resampling", ["average", "bilinear"])
def test_windows_reach_along_the_stretched_axis(make_store, resampling):
    """A geographic source at 84.7 N under 500 m pixels: a target pixel spans ~10 source pixels of longitude
    but ~1 of latitude. The window's reach took the square root of the pixel's area (~3 pixels), so a
    footprint at a chunk's edge ran past its window: 96 px chunks differed from 64 px ones by up to 0.044.
    It takes the longer axis now: with exact coordinates, every chunking gives the same pixels."""
    data = np.random.default_rng(32).random((200, 200), dtype="f4")
    src = (0.0050884762311760555, 0.0, 50.300980269707715, 0.0, -0.0050884762311760555, 84.71148216553499)
    store = make_store([("a", "EPSG:4326", src, data)])
    crs = "+proj=lcc +lat_1=79.1 +lat_2=87.1 +lat_0=84.1 +lon_0=50.7 +datum=WGS84 +units=m"
    bbox, _ = target_grid(crs, 50.681469420695095, 84.10771246343865, 500.0)
    out = _in_two_chunkings(store, crs, bbox, 500.0, exact=True, resampling=resampling)
    assert np.isfinite(out[0]).mean() > 0.1
    if resampling == "average":  # no kernel scale: the same arithmetic in every chunking
        np.testing.assert_array_equal(out[0], out[1])
    else:  # each block's own kernel scale (as GDAL's per warp chunk): close, not equal
        np.testing.assert_array_equal(np.isnan(out[0]), np.isnan(out[1]))
        assert np.nanmax(np.abs(out[0] - out[1])) < 0.05
