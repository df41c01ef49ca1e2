"""Every `lazymerge run` / `lazymerge plan` flag has a test: the flags are read from the parser and each must
appear in a test that calls the CLI; the flags no other test covered are run here on the seed store."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import numpy as np
import pytest
import rasterio
import zarr

from lazymerge.api import merge
from lazymerge.catalog.meta import write_meta
from lazymerge.cli import build_parser, main
from tests.support.stores import add_source, date_and_band

TESTS = Path(__file__).parent
GRID = ["--crs", "EPSG:32618", "--bbox", "500000,5990000,508000,6000000", "--resolution", "40"]
REQUEST = {"crs": "EPSG:32618", "bbox": (500000, 5990000, 508000, 6000000), "resolution": 40.0}


def cli_flags(*commands: str) -> set[str]:
    """The long flags of the given subcommands, from the parser itself (``--help`` aside)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {
        flag
        for command in commands
        for action in sub.choices[command]._actions
        for flag in action.option_strings
        if flag.startswith("--") and flag != "--help"
    }


def flags_in_cli_tests() -> set[str]:
    """Every ``--flag`` (or ``--flag=value``) string literal in the test modules that call the CLI."""
    found = set()
    for path in TESTS.rglob("test_*.py"):
        text = path.read_text()
        if "lazymerge.cli import" not in text:
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("--"):
                found.add(node.value.split("=", 1)[0])
    return found


def test_every_run_and_plan_flag_has_a_test():
    flags = cli_flags("run", "plan")
    assert {"--resume", "--plan", "--max-tasks", "--no-progress"} <= flags  # the parser was read
    untested = sorted(flags - flags_in_cli_tests())
    assert not untested, f"`lazymerge run/plan` flags no test passes: {untested}; add a test running each"


def test_plan_prices_for_the_given_backend_and_memory(seed_store, tmp_path, capsys):
    argv = ["plan", str(seed_store), *GRID, "--out"]
    costs = {}
    for gb in ("2", "4"):
        assert main([*argv, str(tmp_path / f"p{gb}"), "--backend", "aws-lambda", "--memory-gb", gb]) == 0
        out = capsys.readouterr().out
        assert f"estimated cost     aws-lambda at {gb} GB" in out
        costs[gb] = out
    assert costs["2"] != costs["4"]
    assert main([*argv, str(tmp_path / "q"), "--backend", "gcp-functions"]) == 2
    err = capsys.readouterr().err
    assert "'gcp-functions'" in err and "aws-lambda" in err


def test_run_refuses_grids_over_max_pixels_or_max_tasks(seed_store, tmp_path, capsys):
    base = ["run", str(seed_store), *GRID, "--out", str(tmp_path / "o.zarr"), "--no-progress"]
    assert main([*base, "--max-pixels", "1000"]) == 2  # the grid is 250 x 200
    assert "max_pixels" in capsys.readouterr().err
    assert main([*base, "--chunk-size", "64,64", "--max-tasks", "10"]) == 2  # 4 x 4 chunks
    assert "max_tasks" in capsys.readouterr().err
    assert not (tmp_path / "o.zarr").exists()
    assert main([*base, "--chunk-size", "64,64", "--max-tasks", "16", "--max-pixels", "50000"]) == 0


def test_run_geotiff_with_compress_and_blocksize(seed_store, tmp_path):
    out = tmp_path / "o.tif"
    argv = ["run", str(seed_store), *GRID, "--sortby", "id", "--out", str(out), "--no-progress"]
    assert main([*argv, "--compress", "zstd", "--blocksize", "128", "--overviews", "0"]) == 0
    with rasterio.open(out) as ds:
        assert ds.compression.name.lower() == "zstd"
        assert ds.block_shapes == [(128, 128)]
        np.testing.assert_array_equal(
            ds.read(1), merge(str(seed_store), **REQUEST, sortby="id").array.compute()
        )


def test_run_groupby_origin_moves_the_bins(random_store, tmp_path):
    """Two days of acquisitions (06-01, 06-02): 2-day bins from the default origin (1970-01-01) split them
    (06-01 starts no bin), from --groupby-origin 2024-06-01 they share one."""
    dated = date_and_band(random_store)
    out = tmp_path / "o.zarr"
    argv = ["run", str(dated), *GRID, "--groupby", "P2D", "--groupby-origin", "2024-06-01", "--bands", "data"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    got = zarr.open_array(str(out))[:]
    assert got.shape == (1, 250, 200)
    request = {**REQUEST, "groupby": "P2D", "bands": "data"}
    assert merge(str(dated), **request).array.shape == (2, 250, 200)
    expected = merge(str(dated), **request, groupby_origin="2024-06-01")
    np.testing.assert_array_equal(got, expected.array.compute())


def test_run_rescale_applies_scale_and_offset(tmp_path):
    """Stored counts DN with scale_factor 1e-4 and add_offset -0.1, merged on their own grid: the output is
    DN * 1e-4 - 0.1 (NaN where DN is 0, the nodata) with --rescale, the counts themselves without."""
    dn = np.random.default_rng(4).integers(0, 10000, (60, 50), dtype="u2")
    dn[0, :5] = 0
    path = tmp_path / "s.zarr"
    root = zarr.open_group(zarr.storage.LocalStore(str(path)), mode="w")
    transform = (30.0, 0.0, 500010.0, 0.0, -30.0, 5000040.0)
    add_source(root, "a", "EPSG:32618", transform, dn, nodata=0, scale_factor=1e-4, add_offset=-0.1)
    write_meta(path)
    grid = ["--crs", "EPSG:32618", "--bbox", "500010,4998240,501510,5000040", "--resolution", "30"]
    for flags, expected in (
        (["--rescale"], np.where(dn == 0, np.nan, dn * 1e-4 - 0.1)),
        ([], np.where(dn == 0, np.nan, dn)),
    ):
        out = tmp_path / f"o{len(flags)}.zarr"
        assert main(["run", str(path), *grid, *flags, "--out", str(out), "--no-progress"]) == 0
        np.testing.assert_allclose(zarr.open_array(str(out))[:], expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("flag", ["--progress", "--no-progress"])
def test_run_progress_bar(seed_store, tmp_path, capsys, flag):
    argv = ["run", str(seed_store), *GRID, "--chunk-size", "128,128", "--out", str(tmp_path / "o.zarr")]
    assert main([*argv, flag]) == 0
    assert ("100%|" in capsys.readouterr().err) == (flag == "--progress")
