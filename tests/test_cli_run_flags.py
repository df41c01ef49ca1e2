"""`lazymerge run` flag by flag: --executor-config as the Lithops config, --resume, --reserved-mem,
--groupby, list-valued --bands, and --plan refusing request flags it would ignore."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
import zarr

from lazymerge.api import merge, plan
from lazymerge.cli import main
from lazymerge.contract.cost import task_memory
from tests.support.stores import date_and_band

GRID = ["--crs", "EPSG:32618", "--bbox", "500000,5990000,508000,6000000", "--resolution", "40"]
REQUEST = {"crs": "EPSG:32618", "bbox": (500000, 5990000, 508000, 6000000), "resolution": 40.0}


def chunk_mtimes(path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in (path / "c").rglob("*") if p.is_file()}


def test_resume_renders_only_the_missing_blocks(seed_store, tmp_path):
    out = tmp_path / "o.zarr"
    argv = ["run", str(seed_store), *GRID, "--chunk-size", "64,64", "--sortby", "id", "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    full = zarr.open_array(str(out))[:]
    before = chunk_mtimes(out)
    lost = sorted(before)[::3]  # an interrupted run: a third of the chunks never written
    for key in lost:
        (out / key).unlink()
    assert main([*argv, "--resume", "--no-progress"]) == 0
    after = chunk_mtimes(out)
    assert set(after) == set(before)
    assert all(after[k] == before[k] for k in before if k not in lost)  # kept blocks were not rewritten
    np.testing.assert_array_equal(zarr.open_array(str(out))[:], full)


def test_reserved_mem_is_the_workers_baseline(seed_store, tmp_path, capsys):
    """An allowed_mem that fits the largest task only with a small baseline: refused with the default
    reserved_mem (~300 MB), accepted with --reserved-mem 20MB."""
    p = plan(str(seed_store), **REQUEST, chunk_size=(64, 64))
    allowed = str(int(task_memory(p)[1].max()) + 40_000_000)
    argv = ["run", str(seed_store), *GRID, "--chunk-size", "64,64", "--allowed-mem", allowed, "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "a.zarr")]) == 2
    assert "smaller chunk_size" in capsys.readouterr().err
    assert main([*argv, "--reserved-mem", "20MB", "--out", str(tmp_path / "b.zarr")]) == 0


@pytest.fixture
def dated(random_store):
    return date_and_band(random_store)


def test_groupby_and_band_list(dated, tmp_path):
    out = tmp_path / "o.zarr"
    argv = ["run", str(dated), *GRID, "--chunk-size", "64,64", "--bands", "nir,data", "--groupby", "day"]
    assert main([*argv, "--sortby", "id", "--out", str(out), "--no-progress"]) == 0
    got = zarr.open_array(str(out))[:]
    expected = merge(
        str(dated), **REQUEST, chunk_size=(64, 64), bands=["nir", "data"], groupby="day", sortby="id"
    )
    assert got.shape == (2, 2, 250, 200)  # (time, band, y, x)
    np.testing.assert_array_equal(got, expected.array.compute())
    assert not np.array_equal(got[0, 0], got[0, 1]) and not np.array_equal(got[0, 0], got[1, 0])


def test_one_band_with_a_comma_is_a_band_dimension(dated, tmp_path):
    out = tmp_path / "o.zarr"
    assert main(["run", str(dated), *GRID, "--bands", "nir,", "--out", str(out), "--no-progress"]) == 0
    got = zarr.open_array(str(out))[:]
    assert got.shape == (1, 250, 200)
    np.testing.assert_array_equal(got[0], merge(str(dated), **REQUEST, bands="nir").array.compute())


def test_run_plan_refuses_request_flags(seed_store, tmp_path, capsys):
    saved = str(tmp_path / "p")
    assert main(["plan", str(seed_store), *GRID, "--out", saved]) == 0
    out = str(tmp_path / "o.zarr")
    code = main(["run", str(seed_store), "--plan", saved, "--resolution", "20", "--method=max", "--out", out])
    assert code == 2
    err = capsys.readouterr().err
    assert "--resolution, --method would be ignored" in err and repr(saved) in err
    assert not (tmp_path / "o.zarr").exists()
    assert main(["run", str(seed_store), "--plan", saved, "--out", out, "--no-progress"]) == 0


def test_lithops_executor_config_is_the_lithops_config(tmp_path, capsys):
    """The file is Lithops' own config (as infra/lithops/*.yaml), not keyword arguments: a mapping of
    options fails as a Lithops config would, naming the file, and a Lithops config reaches Lithops."""
    from lazymerge.cli import _executor
    from lazymerge.executors.lithops import localhost_config

    config = localhost_config(worker_processes=1)
    config["lithops"]["log_level"] = "ERROR"
    (tmp_path / "lithops.yaml").write_text(yaml.safe_dump(config))
    args = type("Args", (), {"executor": "lithops", "executor_config": str(tmp_path / "lithops.yaml")})
    executor = _executor(args)
    assert executor.kwargs["config"]["lithops"]["log_level"] == "ERROR"
    assert executor.kwargs["config"]["localhost"]["worker_processes"] == 1
    (tmp_path / "opts.yaml").write_text("worker_processes: 1\n")
    argv = ["run", "unused.zarr", *GRID, "--out", str(tmp_path / "o.zarr"), "--executor", "lithops"]
    assert main([*argv, "--executor-config", str(tmp_path / "opts.yaml")]) == 2
    err = capsys.readouterr().err
    assert "opts.yaml" in err and "missing the 'lithops' section" in err


@pytest.mark.slow
def test_run_on_lithops_from_its_config_file(seed_store, tmp_path, monkeypatch):
    from lazymerge.executors.lithops import localhost_config

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.lithops: the config comes from the file only
    (tmp_path / "lithops.yaml").write_text(yaml.safe_dump(localhost_config(worker_processes=2)))
    out = tmp_path / "o.zarr"
    argv = ["run", str(seed_store), *GRID, "--chunk-size", "64,64", "--sortby", "id", "--out", str(out)]
    argv += ["--executor", "lithops", "--executor-config", str(tmp_path / "lithops.yaml"), "--no-progress"]
    assert main([*argv, "--work-dir", str(tmp_path / "wd")]) == 0
    expected = merge(str(seed_store), **REQUEST, chunk_size=(64, 64), sortby="id").array.compute()
    np.testing.assert_array_equal(zarr.open_array(str(out))[:], expected)
