"""The embedded default: `lazymerge demo` writes the two mosaics as Zarr with spatial:/proj: and a PNG."""

from __future__ import annotations

import numpy as np
import zarr

from lazymerge.catalog.conventions import read_proj, read_spatial
from lazymerge.cli import main


def test_demo(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "write /meta" in printed and "plan 10 m" in printed and "overview level(s) used: [1]" in printed
    png = (out / "mosaic.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    for res, shape in ((10, (1000, 800)), (20, (500, 400))):
        arr = zarr.open_array(str(out / f"mosaic_{res}m.zarr"), mode="r")
        assert arr.shape == shape
        assert read_spatial(arr).transform == (float(res), 0.0, 500000.0, 0.0, -float(res), 6000000.0)
        assert read_proj(arr).code == "EPSG:32618"
        data = arr[:]
        assert (data[0, 0], data[0, -1], data[-1, 0], data[-3, -3]) == (300, 400, 100, 200)
        assert 0 < np.isnan(data).sum() < 20


def test_info(seed_store, capsys):
    assert main(["info", str(seed_store)]) == 0
    out = capsys.readouterr().out
    assert "4 sources; bands shared by all: ['data']" in out and "utm17n_tile_b  EPSG:32617  541x541" in out


def test_cli_reports_errors(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.zarr")]) == 2
    assert "does not exist" in capsys.readouterr().err
