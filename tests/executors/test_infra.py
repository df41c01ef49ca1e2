"""infra/: the Lithops config templates load as Lithops config; the Modal app builds offline and its
functions run the kernel; the deploy/run command parses and, with no token, fails naming the token."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from lazymerge.errors import ExecutorConfigError
from lazymerge.executors import get_executor
from lazymerge.executors.lithops import load_lithops_config, validate_lithops_config
from tests.support.executor_cases import random_seed_store, seed_merge

INFRA = Path(__file__).resolve().parents[2] / "infra"
TEMPLATES = {
    "aws_lambda.yaml": ("aws_lambda", "aws_s3"),
    "gcp_cloudrun.yaml": ("gcp_cloudrun", "gcp_storage"),
    "gcp_functions.yaml": ("gcp_functions", "gcp_storage"),
    "localhost.yaml": ("localhost", "localhost"),
}


@pytest.fixture
def seed_store(tmp_path):
    """conftest's seed store with random values (not one constant per tile): a misplaced block shows."""
    return random_seed_store(tmp_path / "seed.zarr")


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_lithops_templates_load_as_lithops_config(name, tmp_path):
    import boto3  # noqa: F401  the cloud backends import their SDKs (lithops-cloud extra, in dev)

    config = yaml.safe_load((INFRA / "lithops" / name).read_text())
    if "gcp" in config:  # Lithops checks the service-account file exists
        (tmp_path / "sa.json").write_text("{}")
        config["gcp"]["credentials_path"] = str(tmp_path / "sa.json")
    full = validate_lithops_config(config, name, allow_placeholders=True)
    backend, storage = TEMPLATES[name]
    assert (full["lithops"]["backend"], full["lithops"]["storage"]) == (backend, storage)
    if backend != "localhost":
        assert full[backend]["runtime"].startswith("lazymerge-")
        assert full[backend]["runtime_memory"] >= 2048


def test_templates_refuse_unreplaced_placeholders_and_missing_keys():
    left = r"placeholder\(s\) in aws.region, aws_lambda.execution_role"
    with pytest.raises(ExecutorConfigError, match=left):
        get_executor("lithops", config_file=str(INFRA / "lithops" / "aws_lambda.yaml"))
    config = yaml.safe_load((INFRA / "lithops" / "aws_lambda.yaml").read_text())
    config["aws"]["region"] = "us-east-1"
    del config["aws_lambda"]["execution_role"]
    with pytest.raises(ExecutorConfigError, match="execution_role"):
        validate_lithops_config(config, allow_placeholders=True)


def test_lithops_localhost_template_runs(seed_store, tmp_path):
    config = load_lithops_config(INFRA / "lithops" / "localhost.yaml")
    assert "runtime" not in config["localhost"]  # lazymerge fills in this venv's interpreter
    r = seed_merge(seed_store, tmp_path / "wd", resolution=80.0)
    expected = r.array.compute()
    executor = get_executor("lithops", config_file=str(INFRA / "lithops" / "localhost.yaml"))
    got = r.array.compute(executor=executor)
    np.testing.assert_array_equal(got, expected)


def test_runtime_requirements_are_the_tested_versions():
    lines = [ln.split("#")[0].strip() for ln in (INFRA / "runtime-requirements.txt").read_text().splitlines()]
    pins = dict(ln.split("==") for ln in lines if ln)
    assert {"cubed", "zarr", "zarr-datafusion-search", "datafusion", "numpy", "pyproj"} <= set(pins)
    for name, version in pins.items():
        assert importlib.metadata.version(name) == version, name


@pytest.fixture(scope="module")
def modal_app():
    import modal  # noqa: F401  (the modal extra, in dev)

    spec = importlib.util.spec_from_file_location("lazymerge_modal_app", INFRA / "modal" / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_modal_app_builds_offline(modal_app):
    import modal

    assert modal_app.app.name == "lazymerge" and isinstance(modal_app.image, modal.Image)
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == modal_app.PYTHON_VERSION
    assert modal_app.LOCAL_SOURCES == ("lazymerge",)
    assert "cubed==0.27.0" in modal_app.requirements()
    for fn in (modal_app.render_block, modal_app.write_blocks):
        assert isinstance(fn, modal.Function)


def test_modal_functions_run_the_kernel(modal_app, seed_store, tmp_path):
    import zarr

    from lazymerge.output.write import BlockWriter, open_output

    r = seed_merge(seed_store, tmp_path / "wd", resolution=80.0, chunk=32)
    expected = r.array.compute()
    block = modal_app.render_block.local(r.task, (1, 2))
    np.testing.assert_array_equal(block, expected[32:64, 64:96])
    arr = r.array
    out = open_output(str(tmp_path / "o.zarr"), "", arr.shape, arr.chunksize, arr.dtype, resume=False)
    writer = BlockWriter(r.task, out, tuple(arr.numblocks), tuple(arr.chunksize))
    n = int(np.prod(arr.numblocks))
    assert modal_app.write_blocks.local(writer, list(range(n))) == list(range(n))
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "o.zarr"))[:], expected)


def test_modal_run_command_without_token_names_it(tmp_path):
    import modal  # noqa: F401  (the modal extra, in dev)

    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    env["HOME"] = str(tmp_path)  # no ~/.modal.toml
    modal_cli = Path(sys.executable).parent / "modal"
    app = str(INFRA / "modal" / "app.py")
    helped = subprocess.run([modal_cli, "run", app, "--help"], env=env, capture_output=True, text=True)
    assert helped.returncode == 0 and "--store" in helped.stdout and "--work-dir" in helped.stdout
    args = ["--store", "s3://b/s.zarr", "--crs", "EPSG:32618", "--bbox", "0,0,1,1", "--resolution", "1"]
    run = subprocess.run(
        [modal_cli, "run", app, *args, "--out", "s3://b/o.zarr", "--work-dir", "s3://b/tmp"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0 and "Token missing" in run.stdout + run.stderr


def test_cubed_modal_container_runs_the_kernel_offline(seed_store, tmp_path):
    """Cubed's Modal executor sends every task to ``Container.run_remotely``; run that method body
    in-process (``.local``) over the whole plan: it writes exactly the threads executor's array."""
    import cubed
    import modal  # noqa: F401  (the modal extra, in dev)
    import networkx as nx

    from lazymerge.executors.modal import REQUIREMENTS

    options = {"region": "us-east-1", "requirements_file": str(REQUIREMENTS)}
    with cubed.config.set({"spec.executor_options": options}):  # read when Cubed's module is imported
        from cubed.runtime.executors.modal import Container
    r = seed_merge(seed_store, tmp_path / "wd", resolution=80.0, chunk=64)
    expected = r.array.compute()
    dag = r.array.plan().dag
    ran = 0
    for name in nx.topological_sort(dag):
        pipeline = dag.nodes[name].get("pipeline")
        for item in pipeline.mappable if pipeline is not None else ():
            Container().run_remotely.local(
                item, func=pipeline.function, config=pipeline.config, name=name, compute_id="offline"
            )
            ran += 1
    assert ran == 1 + 4  # create-arrays, then one kernel task per block
    lazy = [d["target"] for _, d in dag.nodes(data=True) if type(d.get("target")).__name__ == "LazyZarrArray"]
    (target,) = lazy  # the kernel op's output array
    np.testing.assert_array_equal(target.open()[:], expected)


def test_cubed_modal_container_stops_at_the_run_stop_marker(seed_store, tmp_path):
    """What lazymerge's Modal executor sends (every task bound to the run's stop marker in work_dir), run
    in-process through ``Container.run_remotely``: once the driver wrote the marker, each queued kernel
    task ends with RunCancelledError before rendering anything."""
    import cubed
    import networkx as nx

    from lazymerge.errors import RunCancelledError
    from lazymerge.executors.modal import REQUIREMENTS
    from lazymerge.executors.stopping import bound_dag, stop_marker

    options = {"region": "us-east-1", "requirements_file": str(REQUIREMENTS)}
    with cubed.config.set({"spec.executor_options": options}):
        from cubed.runtime.executors.modal import Container
    r = seed_merge(seed_store, tmp_path / "wd", resolution=80.0, chunk=64)
    stop = stop_marker(r.array.spec)
    dag = bound_dag(r.array.plan().dag, stop)
    stopped = 0
    for name in nx.topological_sort(dag):
        pipeline = dag.nodes[name].get("pipeline")
        for item in pipeline.mappable if pipeline is not None else ():
            if stopped == 0 and "create" not in name:
                stop.set()  # the run failed elsewhere: the driver writes the marker
                assert (tmp_path / "wd" / stop.name).exists()
            if not stop.is_set():
                Container().run_remotely.local(item, func=pipeline.function, config=pipeline.config)
                continue
            with pytest.raises(RunCancelledError):
                Container().run_remotely.local(item, func=pipeline.function, config=pipeline.config)
            stopped += 1
    assert stopped == 4  # every kernel task
