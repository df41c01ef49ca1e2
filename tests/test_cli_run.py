"""`lazymerge run`: the same array as merge() on threads, executor options from a file, typed errors."""

from __future__ import annotations

import numpy as np
import zarr

from lazymerge.catalog.conventions import read_proj
from lazymerge.cli import main
from tests.support.executor_cases import seed_merge

ARGS = ["--crs", "EPSG:32618", "--bbox", "500000,5990000,508000,6000000", "--resolution", "40"]


def test_run_processes_from_config_file(seed_store, tmp_path, capsys):
    (tmp_path / "exec.yaml").write_text("max_workers: 2\n")
    out = tmp_path / "out.zarr"
    argv = ["run", str(seed_store), *ARGS, "--chunk-size", "64,64", "--sortby", "id", "--out", str(out)]
    argv += ["--executor", "processes", "--executor-config", str(tmp_path / "exec.yaml"), "--overviews", "1"]
    assert main([*argv, "--work-dir", str(tmp_path / "wd"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and "projected" in printed and "measured" in printed
    expected = seed_merge(seed_store, tmp_path / "wd2", resolution=40.0, chunk=64).array.compute()
    arr = zarr.open_array(str(out / "data" / "0"), mode="r")
    np.testing.assert_array_equal(arr[:], expected)
    assert read_proj(arr).code == "EPSG:32618"


def test_run_errors(seed_store, tmp_path, capsys):
    out = str(tmp_path / "o.zarr")
    assert main(["run", str(seed_store), *ARGS, "--out", out, "--executor", "spark"]) == 2
    assert "valid executors: threads, processes, lithops, modal, dask" in capsys.readouterr().err
    bad = ["--crs", "EPSG:32618", "--bbox", "500000,5990000", "--resolution", "40"]
    assert main(["run", str(seed_store), *bad, "--out", out]) == 2
    assert "--bbox '500000,5990000' must be 4 numbers" in capsys.readouterr().err
    missing = str(tmp_path / "nope.yaml")
    assert main(["run", str(seed_store), *ARGS, "--out", out, "--executor-config", missing]) == 2
    assert "nope.yaml" in capsys.readouterr().err
