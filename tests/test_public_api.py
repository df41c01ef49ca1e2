"""The public surface: ``import lazymerge``, the seed's import paths, MergeResult, and a kernel that runs
in a worker without the planner."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lazymerge
from lazymerge.executors import get_executor
from tests.support.probes import PROBE_DIR, ModuleProbe

ROOT = Path(__file__).resolve().parents[1]
SEED = {
    "crs": "EPSG:32618",
    "bbox": (500000.0, 5990000.0, 508000.0, 6000000.0),
    "resolution": 20.0,
    "chunk_size": (128, 128),
    "bands": "data",
    "sortby": "id",
}


def _python(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=300
    )
    return out.stdout.strip()


def test_namespace_exposes_the_public_names():
    for name in lazymerge.__all__:
        assert getattr(lazymerge, name) is not None, name
    assert callable(lazymerge.merge) and callable(lazymerge.plan) and callable(lazymerge.get_executor)
    assert lazymerge.__version__ and (Path(lazymerge.__file__).parent / "py.typed").exists()
    assert issubclass(lazymerge.InvalidRequestError, lazymerge.LazymergeError)


@pytest.mark.parametrize(
    "code",
    [
        # the function first, then the seed's module path
        "import lazymerge; f = lazymerge.merge\nfrom lazymerge.merge import merge\n"
        "print(lazymerge.merge is f is merge)",
        # the seed's module path first: lazymerge.merge stays callable (the module calls the function)
        "from lazymerge.merge import merge\nimport lazymerge\nimport lazymerge.api\n"
        "print(callable(lazymerge.merge) and merge is lazymerge.api.merge)",
    ],
)
def test_merge_is_a_function_and_the_seed_module_path_still_imports(code):
    assert _python(code) == "True"


def test_importing_lazymerge_loads_no_planner_and_no_datafusion():
    loaded = json.loads(_python("import json, sys, lazymerge; print(json.dumps(sorted(sys.modules)))"))
    assert not [m for m in loaded if m.startswith(("datafusion", "shapely", "lazymerge.planner", "cubed"))]


def test_merge_result_unpacks_and_survives_replace(seed_store):
    result = lazymerge.merge(str(seed_store), **SEED)
    arr, spatial, proj, time_coords = result
    assert arr is result.array and time_coords is None and proj.code == "EPSG:32618"
    assert spatial.transform == (20.0, 0.0, 500000.0, 0.0, -20.0, 6000000.0)
    doubled = dataclasses.replace(result, array=result.array * 2)
    assert doubled.plan is result.plan and doubled.grid is result.grid
    np.testing.assert_array_equal(doubled.array.compute(), arr.compute() * 2)


def test_merge_takes_a_ready_grid(seed_store):
    by_bbox = lazymerge.merge(str(seed_store), **SEED)
    grid = by_bbox.grid
    by_grid = lazymerge.merge(str(seed_store), grid=grid, bands="data", sortby="id")
    np.testing.assert_array_equal(by_grid.array.compute(), by_bbox.array.compute())
    odc_geo = pytest.importorskip("odc.geo.geobox")
    geobox = odc_geo.GeoBox(grid.shape, grid.transform, "EPSG:32618")
    by_geobox = lazymerge.merge(
        str(seed_store), grid=geobox, chunk_size=(128, 128), bands="data", sortby="id"
    )
    np.testing.assert_array_equal(by_geobox.array.compute(), by_bbox.array.compute())
    with pytest.raises(lazymerge.InvalidRequestError, match="either grid= or crs"):
        lazymerge.merge(str(seed_store), grid=grid, crs="EPSG:32618")


def test_request_arguments_are_keyword_only(seed_store):
    with pytest.raises(TypeError):
        lazymerge.merge(str(seed_store), "EPSG:32618", SEED["bbox"], 20.0)  # type: ignore[misc]
    with pytest.raises(lazymerge.InvalidRequestError, match="resolutio"):
        lazymerge.merge(str(seed_store), crs="EPSG:32618", bbox=SEED["bbox"], resolutio=20.0)


def test_a_worker_running_a_block_loads_neither_the_planner_nor_datafusion(seed_store, tmp_path, monkeypatch):
    """A spawned processes-executor worker renders blocks (the probe method records its modules)."""
    probes = tmp_path / "probes"
    probes.mkdir()
    monkeypatch.setenv(PROBE_DIR, str(probes))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the spawned workers import tests.support.probes
    request = {**SEED, "method": ModuleProbe}
    result = lazymerge.merge(str(seed_store), **request)
    executor = get_executor("processes", max_workers=2, use_processes="spawn")
    result.to_zarr(str(tmp_path / "out.zarr"), executor=executor, progress=False)
    files = list(probes.glob("modules-*.json"))
    assert files, "no worker ran the probe"
    for path in files:
        loaded = json.loads(path.read_text())
        assert "lazymerge.kernel.block" in loaded
        bad = [m for m in loaded if m.startswith(("lazymerge.planner", "datafusion", "shapely", "pandas"))]
        assert not bad, f"worker {path.name} imported {bad[:5]}"


NO_PANDAS = """
import sys, tempfile
import lazymerge
from lazymerge.contract.model import Plan
from lazymerge.executors import get_executor

store, meta = sys.argv[1], sys.argv[2] == "meta"
request = dict({seed}, datafusion=meta, where="shape_x > 0" if meta else None)
result = lazymerge.merge(store, **request)
result.array.compute(executor=get_executor("threads", max_workers=2))
out = tempfile.mkdtemp()
result.to_zarr(out + "/out.zarr", progress=False)
lazymerge.merge(store, **request, provenance=True).composition()
result.plan.save(out + "/plan")
plan = Plan.load(out + "/plan")
plan.summary(), plan.estimate(), plan.rows(0, 0, 0)
lazymerge.merge(store, **request, groupby="day").array.compute()
print(sorted(m for m in sys.modules if m.split(".")[0] == "pandas"))
"""


@pytest.mark.parametrize("meta", [True, False], ids=["meta", "scan"])
def test_planning_computing_and_writing_never_import_pandas(tmp_path, meta):
    """pyarrow imports pandas (0.3 s of a fresh process) at the first ``pa.array`` or ``to_numpy``; the
    planner, the plan and the writers move Arrow columns through their buffers instead (lazymerge.arrow)."""
    import zarr

    from lazymerge.catalog.meta import write_meta
    from lazymerge.demo import SEED_TILES
    from tests.support.executor_cases import random_seed_store

    store = random_seed_store(tmp_path / "store.zarr", meta=False)
    root = zarr.open_group(str(store), mode="r+")
    for day, (name, *_) in enumerate(SEED_TILES):  # two days, so that groupby makes two layers
        root[name].attrs["datetime"] = f"2024-06-0{1 + day % 2}T10:00:00Z"
    if meta:
        write_meta(store)
    out = subprocess.run(
        [sys.executable, "-c", NO_PANDAS.format(seed=SEED), str(store), "meta" if meta else "scan"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
