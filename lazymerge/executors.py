"""Where the chunk kernel runs: ``get_executor(name, **options)`` gives what ``compute(executor=)`` takes.

============  ==============================================================================================
``threads``   (default) local threads. Options: ``max_workers``, ``retries``.
``processes`` local processes (spawn). Options: ``max_workers`` (default 2), ``max_tasks_per_child``.
``lithops``   Lithops functions. Options: ``config`` (a Lithops config dict) or ``config_file`` (its YAML/JSON
              file; ``infra/lithops/`` has AWS Lambda and GCP templates), ``workers`` (localhost processes,
              default 2), ``wait_dur_sec`` (default 0.1). With neither, runs on Lithops' ``localhost``
              backend with this interpreter, pre-importing numpy/zarr/cubed in its runner (~55 ms/task
              instead of ~0.5-1 s). Lithops must be installed (``pip install lazymerge[lithops]``).
``dask``      a Dask cluster via Cubed's dask executor. Options: ``address`` (scheduler), else the
              ``compute_kwargs`` for ``distributed.Client``. Needs ``distributed<2024.12``.
``modal``     Modal functions via Cubed's modal executor. Options: ``region`` (required), ``memory``,
              ``secret``. Needs Modal credentials (``modal token new``, or MODAL_TOKEN_ID/SECRET).
============  ==============================================================================================
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

from lazymerge.errors import ExecutorConfigError, UnknownExecutorError

NAMES = ("threads", "processes", "lithops", "dask", "modal")
LITHOPS_BACKEND_SECTIONS = {"localhost", "aws_lambda", "gcp_functions", "gcp_cloudrun", "code_engine", "k8s"}
_PRELOAD = (
    "import sys, os, runpy; import numpy, zarr, cubed, lazymerge.kernel; sys.argv = sys.argv[1:]; "
    "sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0]))); "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


def get_executor(name: str = "threads", **options: Any) -> Any:
    """A Cubed executor by name (see the module docstring for each name's options)."""
    from cubed.runtime.create import create_executor

    if name not in NAMES:
        raise UnknownExecutorError(f"executor {name!r} is not one of {list(NAMES)}")
    if name == "processes":
        options.setdefault("max_workers", 2)
    if name == "lithops":
        return create_executor("lithops", lithops_options(**options))
    if name == "dask":
        address = options.pop("address", None)
        kwargs = options.pop("compute_kwargs", {})
        if address:
            kwargs["address"] = address
        return create_executor("dask", {"compute_kwargs": kwargs, **options})
    if name == "modal":
        return modal_executor(**options)
    return create_executor(name, options)


def load_config(path: str | os.PathLike[str]) -> dict:
    """A YAML or JSON config file as a dict; ExecutorConfigError if it is missing or not a mapping."""
    p = Path(path)
    if not p.is_file():
        raise ExecutorConfigError(f"executor config file {str(p)!r} does not exist")
    text = p.read_text()
    try:
        import yaml

        data = yaml.safe_load(text) if p.suffix in (".yaml", ".yml") else json.loads(text)
    except Exception as exc:
        raise ExecutorConfigError(f"executor config file {str(p)!r} does not parse: {exc}") from exc
    if not isinstance(data, dict):
        raise ExecutorConfigError(
            f"executor config file {str(p)!r} must hold a mapping, not {type(data).__name__}"
        )
    return data


def check_lithops_config(config: dict, where: str = "lithops config") -> dict:
    """Validate the keys Lithops needs before any task runs; the error names the missing key."""
    section = config.get("lithops")
    if not isinstance(section, dict):
        raise ExecutorConfigError(f"{where}: missing the 'lithops' section (with 'backend' and 'storage')")
    for key in ("backend", "storage"):
        if not section.get(key):
            raise ExecutorConfigError(f"{where}: missing key 'lithops.{key}'")
    backend, storage = section["backend"], section["storage"]
    if backend != "localhost" and backend not in config:
        raise ExecutorConfigError(f"{where}: backend {backend!r} needs its own '{backend}' section")
    if storage != "localhost" and storage not in config:
        raise ExecutorConfigError(f"{where}: storage {storage!r} needs its own '{storage}' section")
    return config


def preload_runtime() -> str:
    """A wrapper interpreter for Lithops' localhost runner that imports numpy, zarr, cubed and the kernel
    once, so that every forked task inherits them instead of importing them again."""
    path = Path(tempfile.gettempdir()) / f"lazymerge-python-preload-{os.getuid()}"
    script = f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -c {shlex.quote(_PRELOAD)} "$@"\n'
    if not path.exists() or path.read_text() != script:
        tmp = path.with_suffix(f".{os.getpid()}")
        tmp.write_text(script)
        tmp.chmod(0o755)
        tmp.replace(path)
    return str(path)


def localhost_config(workers: int = 2, preload: bool = True) -> dict:
    """Lithops on this machine with no ~/.lithops: localhost compute and storage, this interpreter."""
    return {
        "lithops": {"backend": "localhost", "storage": "localhost", "log_level": "WARNING"},
        # version 1 forks each call from one runner (so the preload is inherited); the runtime must be the
        # venv's interpreter as given, never resolved through symlinks (that would lose the venv)
        "localhost": {
            "runtime": preload_runtime() if preload else sys.executable,
            "worker_processes": workers,
            "version": 1,
        },
    }


def lithops_options(
    config: dict | None = None,
    config_file: str | None = None,
    workers: int = 2,
    wait_dur_sec: float = 0.1,
    **extra: Any,
) -> dict:
    """Cubed's executor_options for Lithops."""
    try:
        import lithops  # noqa: F401
    except ImportError as exc:
        raise ExecutorConfigError(
            "the lithops executor needs Lithops: pip install 'lazymerge[lithops]'"
        ) from exc
    if config_file:
        config = check_lithops_config(load_config(config_file), where=str(config_file))
    elif config is not None:
        config = check_lithops_config(config)
    else:
        config = localhost_config(workers)
    return {"config": config, "wait_dur_sec": wait_dur_sec, **extra}


def modal_executor(
    region: str | None = None, memory: str = "2GB", secret: str | None = None, **extra: Any
) -> Any:
    """Cubed's Modal executor, after checking what it needs so that nothing hangs or fails mid-run."""
    try:
        import modal  # noqa: F401
    except ImportError as exc:
        raise ExecutorConfigError("the modal executor needs Modal: pip install 'lazymerge[modal]'") from exc
    has_env = os.environ.get("MODAL_TOKEN_ID") and os.environ.get("MODAL_TOKEN_SECRET")
    if not has_env and not (Path.home() / ".modal.toml").exists():
        raise ExecutorConfigError(
            "the modal executor needs Modal credentials: MODAL_TOKEN_ID and MODAL_TOKEN_SECRET are not set "
            "and ~/.modal.toml does not exist; run `modal token new`"
        )
    if not region:
        raise ExecutorConfigError(
            "the modal executor needs region= (e.g. 'us-east-1'), where its functions run"
        )
    import cubed

    # cubed's modal module reads its options from cubed's global config when it is imported
    cubed.config.set(
        {"spec.executor_options": {"region": region, "memory": memory, "secret": secret, **extra}}
    )
    from cubed.runtime.create import create_executor

    return create_executor("modal", {})
