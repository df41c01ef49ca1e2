"""The same kernel on threads, processes and Lithops (localhost); small tasks; executor errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import zarr

from lazymerge.cli import main
from lazymerge.errors import ExecutorConfigError, UnknownExecutorError
from lazymerge.executors import check_lithops_config, get_executor, load_config
from lazymerge.geometry import bounds_to_wkb
from lazymerge.merge import merge
from lazymerge.meta import write_meta_table
from lazymerge.sources import Band, Level, bands_json

INFRA = Path(__file__).resolve().parents[1] / "infra" / "lithops"
SEED = {
    "crs": "EPSG:32618",
    "bbox": (500000.0, 5990000.0, 508000.0, 6000000.0),
    "resolution": 20.0,
    "chunk_size": (128, 128),
    "bands": "data",
    "sortby": "id",
}


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    from lazymerge.demo import build_seed_store
    from lazymerge.meta import write_meta

    path = build_seed_store(tmp_path_factory.mktemp("ex") / "seed.zarr")
    write_meta(path)
    return path, merge(str(path), **SEED).array.compute()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["processes", "lithops"])
def test_same_arrays_as_threads(seed, name):
    path, expected = seed
    got = merge(str(path), **SEED).array.compute(executor=get_executor(name))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.slow
def test_cli_run_on_lithops(seed, tmp_path):
    path, expected = seed
    args = ["run", str(path), "--crs", "EPSG:32618", "--bbox", "500000,5990000,508000,6000000"]
    args += ["--resolution", "20", "--chunk-size", "128,128", "--bands", "data", "--sortby", "id"]
    assert main([*args, "--executor", "lithops", "--out", str(tmp_path / "o.zarr")]) == 0
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "o.zarr"))[:], expected)


def meta_store(path: Path, n: int) -> Path:
    """A store whose /meta lists ``n`` 110 km UTM 32N sources (only /meta: planning needs nothing else)."""
    x0 = 300000.0 + 1000.0 * (np.arange(n) % 100)
    y1 = 5000000.0 + 1000.0 * (np.arange(n) // 100)
    t = [(10.0, 0.0, x, 0.0, -10.0, y) for x, y in zip(x0, y1, strict=True)]
    from lazymerge.geometry import lonlat_bounds

    boxes = np.stack([x0, y1 - 109800.0, x0 + 109800.0, y1], axis=1)
    bands = [
        bands_json(
            {
                "B04": Band(
                    "B04",
                    f"s{i}/B04",
                    (Level(f"s{i}/B04/0", t[i], (10980, 10980), "uint16", 0.0, 1.0, (1024, 1024)),),
                )
            }
        )
        for i in range(n)
    ]
    table = pa.table(
        {
            "id": pa.array([f"s{i}" for i in range(n)]),
            "bbox": pa.array(bounds_to_wkb(lonlat_bounds("EPSG:32632", boxes)), pa.binary()),
            "proj:code": pa.array(["EPSG:32632"] * n),
            **{f"transform_{k}": pa.array([v[k] for v in t]) for k in range(6)},
            "shape_x": pa.array(np.full(n, 10980)),
            "shape_y": pa.array(np.full(n, 10980)),
            "lazymerge:bands": pa.array(bands),
        }
    )
    zarr.open_group(str(path), mode="w")
    write_meta_table(str(path), table)
    return path


def test_task_payload_does_not_grow_with_sources(tmp_path):
    """What ships with each task is the plan's path, the store and the grid: never the index or plan."""
    request = {
        "crs": "EPSG:32632",
        "bbox": (350000.0, 4950000.0, 370000.0, 4970000.0),
        "resolution": 10.0,
        "chunk_size": (512, 512),
        "bands": "B04",
        "datafusion": True,
    }
    sizes = {}
    for n in (10, 10_000):
        result = merge(str(meta_store(tmp_path / f"m{n}.zarr", n)), **request)
        assert result.plan.n_sources == n
        sizes[n] = len(pickle.dumps(result.task))
    assert result.plan.n_pairs > 10 * result.grid.nchunks[0] * result.grid.nchunks[1]
    assert abs(sizes[10_000] - sizes[10]) <= 8, sizes  # only the store path's length differs


def test_unknown_executor_lists_the_valid_ones():
    with pytest.raises(
        UnknownExecutorError, match=r"'spark' is not one of \['threads', 'processes', 'lithops'"
    ):
        get_executor("spark")


@pytest.mark.parametrize(
    "template, lithops_loads",
    [("aws_lambda.yaml", True), ("localhost.yaml", True), ("gcp_cloudrun.yaml", False)],
)
def test_lithops_templates_are_valid_lithops_configs(template, lithops_loads):
    """Every template passes lazymerge's check; Lithops' own loader takes those whose backend module is
    installed here (its GCP backend needs lithops[gcp], which the tests do not install)."""
    from lithops.config import default_config

    config = check_lithops_config(load_config(INFRA / template), where=template)
    if lithops_loads:
        resolved = default_config(config_data=config)
        assert resolved["lithops"]["backend"] == config["lithops"]["backend"]
        assert resolved["lithops"]["storage"] == config["lithops"]["storage"]


@pytest.mark.parametrize(
    "config, words",
    [
        ({}, "missing the 'lithops' section"),
        ({"lithops": {"backend": "localhost"}}, "missing key 'lithops.storage'"),
        ({"lithops": {"backend": "aws_lambda", "storage": "aws_s3"}}, "backend 'aws_lambda' needs its own"),
    ],
)
def test_bad_lithops_config_names_the_key(config, words):
    with pytest.raises(ExecutorConfigError, match=words):
        get_executor("lithops", config=config)


def test_missing_executor_config_file(tmp_path):
    with pytest.raises(ExecutorConfigError, match="does not exist"):
        get_executor("lithops", config_file=str(tmp_path / "nope.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["threads", "lithops"])
def test_injected_faults_are_retried(seed, tmp_path, monkeypatch, name):
    """The first attempt of every third block fails; the executor's retries give identical output.
    (Cubed 0.27's processes executor has no retries, so it is not listed.)"""
    from lazymerge.kernel import FAULT_DIR

    path, expected = seed
    monkeypatch.setenv(FAULT_DIR, str(tmp_path))
    got = merge(str(path), **SEED).array.compute(executor=get_executor(name))
    assert len(list(tmp_path.iterdir())) >= 5  # faults did fire
    np.testing.assert_array_equal(got, expected)


def test_progress_reports_projected_and_measured_memory(seed, tmp_path):
    import io

    from lazymerge.progress import Progress

    path, expected = seed
    out = io.StringIO()
    progress = Progress(file=out)
    merge(str(path), **SEED).to_zarr(
        str(tmp_path / "o.zarr"), executor=get_executor("processes"), callbacks=[progress]
    )
    text = out.getvalue()
    assert "16/16" in text.replace(" ", "") or "16/16" in text  # the bar reached every task
    assert "projected / measured peak" in text and "MiB /" in text
    assert any(v > 0 for v in progress.measured.values())  # processes measure peak memory
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "o.zarr"))[:], expected)
