"""Every local executor gives the array threads gives (and GDAL's exact warper); bad input is typed."""

from __future__ import annotations

from pathlib import Path

import cloudpickle
import cubed
import numpy as np
import pytest

from lazymerge.api import merge
from lazymerge.errors import (
    ExecutorConfigError,
    ExecutorUnavailableError,
    StoreError,
    UnknownExecutorError,
    WorkDirError,
)
from lazymerge.executors import get_executor, load_executor_config
from lazymerge.executors.dask import local_cluster
from lazymerge.executors.lithops import localhost_config, validate_lithops_config
from tests.support.executor_cases import seed_merge, seed_spec


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    from lazymerge.catalog.meta import write_meta
    from lazymerge.demo import build_seed_store

    path = build_seed_store(tmp_path_factory.mktemp("exec") / "seed.zarr")
    write_meta(path)
    return path


@pytest.fixture(scope="module")
def reference(seed, tmp_path_factory):
    r = seed_merge(seed, tmp_path_factory.mktemp("wd"))
    a = r.array.compute(executor=get_executor("threads"))
    assert np.isfinite(a).sum() > 0.9 * a.size and set(np.unique(a[np.isfinite(a)])) == {100, 200, 300, 400}
    return a


def test_spec_passes_through(seed, tmp_path):
    spec = cubed.Spec(work_dir=str(tmp_path / "wd"), allowed_mem="300MB", reserved_mem="50MB")
    r = merge(seed, crs="EPSG:32618", bbox=(500000, 5990000, 508000, 6000000), resolution=40.0, spec=spec)
    assert r.array.spec.allowed_mem == 300_000_000 and r.array.spec.reserved_mem == 50_000_000
    assert r.array.spec.work_dir == str(tmp_path / "wd")
    saved = lambda: [p for p in (tmp_path / "wd").iterdir() if p.name.startswith("lazymerge-plan-")]  # noqa: E731
    assert not saved()  # tasks in this process read the plan in memory
    cloudpickle.dumps(r.task)  # a task leaving the process: the plan is saved under work_dir first
    (path,) = saved()
    assert str(path) == r.task.plan_path and cloudpickle.loads(cloudpickle.dumps(r.task)).local_plan is None


def test_unknown_executor_lists_valid_ones():
    with pytest.raises(UnknownExecutorError, match="'nope'.*threads, processes, lithops, modal, dask"):
        get_executor("nope")


def test_unwritable_work_dir_fails_before_any_task(seed, tmp_path):
    """/proc takes no new directories, whoever runs the tests (root included, unlike a chmod'ed dir). The
    check comes first: with a store that does not exist either, the work_dir is what is reported (had
    the store been opened or planned first, a StoreError would be)."""
    with pytest.raises(WorkDirError, match="'/proc/lazymerge-work-dir' is not writable"):
        seed_merge(seed, Path("/proc/lazymerge-work-dir"))
    with pytest.raises(WorkDirError, match="'/proc/lazymerge-work-dir' is not writable"):
        seed_merge(tmp_path / "no-such-store.zarr", Path("/proc/lazymerge-work-dir"))
    with pytest.raises(StoreError, match="no-such-store.zarr"):  # the same store, a good work_dir
        seed_merge(tmp_path / "no-such-store.zarr", tmp_path / "wd")


def test_work_dir_that_is_a_file_fails(seed, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    bbox = (500000, 5990000, 508000, 6000000)
    with pytest.raises(WorkDirError, match=str(f)):
        merge(seed, crs="EPSG:32618", bbox=bbox, resolution=40.0, spec=seed_spec(f))


def test_executor_config_file(tmp_path):
    (tmp_path / "t.yaml").write_text("max_workers: 3\nretries: 1\n")
    assert load_executor_config(tmp_path / "t.yaml") == {"max_workers": 3, "retries": 1}
    (tmp_path / "bad.yaml").write_text("- a\n- b\n")
    with pytest.raises(ExecutorConfigError, match="mapping"):
        load_executor_config(tmp_path / "bad.yaml")
    with pytest.raises(ExecutorConfigError, match="missing.yaml"):
        load_executor_config(tmp_path / "missing.yaml")


def test_lithops_config_errors_name_the_key():
    cfg = localhost_config()
    assert validate_lithops_config(cfg)["lithops"]["backend"] == "localhost"
    del cfg["lithops"]["storage"]
    with pytest.raises(ExecutorConfigError, match="lithops.storage"):
        get_executor("lithops", config=cfg)
    with pytest.raises(ExecutorConfigError, match="'aws_lambda' section"):
        validate_lithops_config({"lithops": {"backend": "aws_lambda", "storage": "aws_s3"}})


def test_modal_without_credentials_fails_fast(monkeypatch, tmp_path):
    for var in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"):
        monkeypatch.delenv(var, raising=False)
    import modal.config

    if modal.config.config.get("token_id"):
        pytest.skip("a Modal token is configured on this machine")
    with pytest.raises(ExecutorUnavailableError, match="MODAL_TOKEN_ID and MODAL_TOKEN_SECRET"):
        get_executor("modal", region="us-east-1")
    with pytest.raises(ExecutorConfigError, match="region"):
        get_executor("modal")


def gdal_nearest(data, src_crs, src_transform, dst_crs, dst_transform, shape):
    """GDAL's exact warper (WarpedVRT, tolerance=1e-9), nearest, NaN outside the source."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.io import MemoryFile
    from rasterio.vrt import WarpedVRT

    profile = {"driver": "GTiff", "height": data.shape[0], "width": data.shape[1], "count": 1}
    profile.update(dtype="float32", crs=src_crs, transform=rasterio.Affine(*src_transform), nodata=np.nan)
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(data, 1)
        grid = {"crs": dst_crs, "transform": dst_transform, "width": shape[1], "height": shape[0]}
        with (
            mem.open() as src,
            WarpedVRT(src, **grid, resampling=Resampling.nearest, tolerance=1e-9, nodata=np.nan) as vrt,
        ):
            return vrt.read(1)


@pytest.mark.slow
def test_gdal_oracle_case_identical_on_every_executor(make_store, tmp_path, monkeypatch):
    """Random data in UTM 17N mosaicked onto UTM 18N: every executor (processes, Cubed's own run, Lithops
    localhost, a Dask LocalCluster) gives the array threads gives, and it matches GDAL's exact warper."""
    from affine import Affine

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.lithops: everything comes from lazymerge's config
    data = np.random.default_rng(5).random((300, 300)).astype("f4")
    src_transform = (30.0, 0.0, 895000.0, 0.0, -30.0, 6015000.0)
    store = make_store([("rand", "EPSG:32617", src_transform, data)])
    bbox = (500000.0, 5995000.0, 506000.0, 6003000.0)
    spec = seed_spec(tmp_path / "wd")
    r = merge(store, crs="EPSG:32618", bbox=bbox, resolution=25.0, chunk_size=(64, 64), spec=spec)
    expected = gdal_nearest(
        data,
        "EPSG:32617",
        src_transform,
        "EPSG:32618",
        Affine(25.0, 0.0, 500000.0, 0.0, -25.0, 6003000.0),
        r.array.shape,
    )
    threads = r.array.compute(executor=get_executor("threads"))
    both = np.isfinite(threads) & np.isfinite(expected)
    assert both.sum() > 10_000
    assert (np.isfinite(threads) == np.isfinite(expected)).mean() >= 0.9999
    assert (threads[both] == expected[both]).mean() >= 0.9999
    np.testing.assert_array_equal(r.array.compute(executor=get_executor("processes", max_workers=2)), threads)
    (through_cubed,) = cubed.compute(r.array, executor=get_executor("threads"))  # Cubed's own run
    np.testing.assert_array_equal(through_cubed, threads)
    np.testing.assert_array_equal(r.array.compute(executor=get_executor("lithops")), threads)
    with local_cluster(n_workers=2, memory_limit="1GB") as cluster:
        dask = r.array.compute(executor=get_executor("dask", address=cluster.scheduler_address))
    np.testing.assert_array_equal(dask, threads)


def test_local_compute_goes_straight_into_numpy(seed, reference, tmp_path):
    """On local threads, compute() renders into the result without Cubed's temporary Zarr (nothing is
    written under work_dir); derived arrays, callbacks and other executors still run through Cubed."""
    r = seed_merge(seed, tmp_path / "wd")
    for workers in (1, 3):
        np.testing.assert_array_equal(r.array.compute(executor=get_executor("threads", max_workers=workers)),
                                      reference)  # fmt: skip
    np.testing.assert_array_equal(r.array.compute(), reference)  # the spec's default executor
    assert not list((tmp_path / "wd").glob("cubed-*"))  # only the saved plan is there
    np.testing.assert_array_equal(r.array[10:20, 5:].compute(), reference[10:20, 5:])
    from cubed.diagnostics.history import HistoryCallback

    history = HistoryCallback()
    np.testing.assert_array_equal(r.array.compute(callbacks=[history]), reference)
    assert history.stats_df is not None  # Cubed ran it and reported it


def test_local_to_zarr_writes_from_threads_without_cubeds_task_array(seed, reference, tmp_path):
    """On local threads, to_zarr writes each block from a thread of this process: no task array of block
    ids under work_dir, the same output as .compute(), every block there and the output marked complete;
    with a progress bar, callbacks or a memory report asked for, it runs through Cubed (its ids array)."""
    import zarr
    from cubed.diagnostics.history import HistoryCallback

    wd = tmp_path / "wd"
    r = seed_merge(seed, wd)
    for workers, out in ((1, "a.zarr"), (3, "b.zarr")):
        arr = r.to_zarr(
            str(tmp_path / out), executor=get_executor("threads", max_workers=workers), progress=False
        )
        np.testing.assert_array_equal(arr[:], reference)
        assert zarr.open_array(str(tmp_path / out), mode="r").attrs["lazymerge:complete"] is True
    r.to_zarr(str(tmp_path / "c.zarr"), progress=False)  # the spec's default executor
    assert not list(wd.glob("lazymerge-ids-*")) and not list(wd.glob("cubed-*"))
    history, report = HistoryCallback(), []
    r.to_zarr(str(tmp_path / "d.zarr"), progress=False, callbacks=[history])
    assert history.stats_df is not None  # Cubed ran it and reported it
    r.to_zarr(str(tmp_path / "e.zarr"), progress=False, report=report)
    assert report[0].rows()  # the memory report has the write's op
    assert len(list(wd.glob("lazymerge-ids-*"))) == 2
    for out in ("c.zarr", "d.zarr", "e.zarr"):
        np.testing.assert_array_equal(zarr.open_array(str(tmp_path / out), mode="r")[:], reference)


def test_object_store_work_dir_is_probed_through_obstore():
    from lazymerge.executors.workdir import check_work_dir

    check_work_dir("memory:///lazymerge-tmp")  # writable: no error
    with pytest.raises(WorkDirError, match="'nosuchscheme://x/y' is not writable"):
        check_work_dir("nosuchscheme://x/y")


CHILD_EXECUTOR_ID = (
    "from lazymerge.executors.lithops import own_lithops_session\n"
    "from lithops.utils import create_executor_id\n"
    "own_lithops_session()\n"
    "print(create_executor_id())\n"
)


def test_a_spawned_driver_names_its_lithops_executors_apart_from_its_parents(monkeypatch):
    """Lithops hands its session and executor count to child processes; a driver spawned after its parent
    used Lithops took the parent's next executor ID, and the two then shared job files (a killed driver's
    runner took the resumed run's job). Each driver process now counts in a session of its own."""
    import subprocess
    import sys

    from lithops.utils import create_executor_id

    from lazymerge.executors.lithops import own_lithops_session

    for name in ("__LITHOPS_SESSION_ID", "__LITHOPS_TOTAL_EXECUTORS", "__LAZYMERGE_LITHOPS_SESSION_PID"):
        monkeypatch.delenv(name, raising=False)
    own_lithops_session()
    ours = [create_executor_id() for _ in range(2)]
    child = subprocess.run(
        [sys.executable, "-c", CHILD_EXECUTOR_ID], capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    ours.append(create_executor_id())  # the parent's next executor, as the child's would have been
    assert child not in ours
    assert child.split("-")[0] != ours[0].split("-")[0]  # a session of its own
    assert len(set(ours)) == 3


def test_lithops_localhost_runner_starts_with_numba_loaded(tmp_path):
    """The localhost runner's interpreter (``preload_runtime``) has loaded numba's CPU target before it
    runs the Lithops runner script, so the tasks it forks do not each load it at their first block."""
    import subprocess

    from lazymerge.executors.lithops import preload_runtime

    script = tmp_path / "runner.py"
    script.write_text(
        "import sys\n"
        "from numba.core.registry import cpu_target\n"
        "print(len(cpu_target.target_context._registries), sys.argv[1:])\n"
    )
    out = subprocess.run([preload_runtime(str(tmp_path)), str(script), "run_job", "x"], capture_output=True)
    loaded, args = out.stdout.decode().split(" ", 1)
    assert int(loaded) > 0 and args.strip() == "['run_job', 'x']"
