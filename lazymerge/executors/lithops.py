"""Lithops: the offline ``localhost`` config (no ~/.lithops needed), cloud configs from files, validation."""

from __future__ import annotations

import copy
import hashlib
import os
import shlex
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from lazymerge.errors import ExecutorConfigError, ExecutorUnavailableError

# Imported once by the localhost runner so each forked task does not pay ~0.5-1 s re-importing them; the
# runner then loads numba's CPU target (kernel.warm.prime), which a forked task that must compile a loop
# would otherwise load again (~0.5 s); one that loads its loops from numba's cache does without it.
PRELOAD_MODULES = ("numpy", "zarr", "cubed", "lazymerge.kernel.warm")


def preload_runtime(directory: str | None = None) -> str:
    """An absolute "interpreter" path for ``localhost.runtime`` that pre-imports PRELOAD_MODULES and primes
    numba.

    It runs this venv's ``sys.executable`` (not resolved through symlinks: the venv must stay active);
    with ``localhost.version: 1`` every task forks from that runner and inherits the imports.
    """
    imports = "; ".join(f"import {m}" for m in PRELOAD_MODULES)
    code = (
        f"import sys, os, runpy; {imports}; from lazymerge.kernel.warm import prime; prime(); "
        "sys.argv = sys.argv[1:]; "
        "sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0]))); "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    directory = directory or tempfile.gettempdir()
    tag = hashlib.sha1(f"{sys.executable}|{code}".encode()).hexdigest()[:12]  # one per venv
    path = Path(directory) / f"lazymerge-python-preload-{os.getuid()}-{tag}"
    script = f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -c {shlex.quote(code)} "$@"\n'
    if not path.exists() or path.read_text() != script:
        tmp = path.with_suffix(f".{os.getpid()}")
        tmp.write_text(script)
        tmp.chmod(0o755)
        tmp.replace(path)
    return str(path)


def localhost_config(worker_processes: int = 2, preload: bool = True) -> dict[str, Any]:
    """Lithops 3.8 config for the ``localhost`` compute and storage backends, offline.

    ``localhost.version: 1`` forks each task from one runner; the runtime is this interpreter (or the
    preloading wrapper around it), so the workers import the installed lazymerge.
    """
    return {
        "lithops": {
            "backend": "localhost",
            "storage": "localhost",
            "log_level": "WARNING",
            "monitoring_interval": 0.1,
        },
        "localhost": {
            "version": 1,
            "runtime": preload_runtime() if preload else sys.executable,
            "worker_processes": worker_processes,
        },
    }


def load_lithops_config(path: str | os.PathLike[str], allow_placeholders: bool = False) -> dict[str, Any]:
    """A Lithops YAML config file as a dict, validated (see validate_lithops_config)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ExecutorConfigError(f"Lithops config {str(path)!r} cannot be read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ExecutorConfigError(f"Lithops config {str(path)!r} is not valid YAML: {exc}") from exc
    validate_lithops_config(data, source=str(path), allow_placeholders=allow_placeholders)
    return data


def _placeholders(config: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose value is still a template's ``<...>`` placeholder."""
    if isinstance(config, dict):
        return [k for key, v in config.items() for k in _placeholders(v, f"{prefix}{key}.")]
    if isinstance(config, str) and config.startswith("<") and config.endswith(">"):
        return [prefix.rstrip(".")]
    return []


def with_localhost_runtime(config: dict[str, Any], preload: bool = True) -> dict[str, Any]:
    """``config`` with ``localhost.runtime`` set to this interpreter (preloading) when it has none."""
    local = config.get("localhost") or {}
    if config.get("lithops", {}).get("backend") != "localhost" or local.get("runtime"):
        return config
    config = copy.deepcopy(config)
    config.setdefault("localhost", {})["runtime"] = preload_runtime() if preload else sys.executable
    return config


def validate_lithops_config(
    config: Any, source: str = "Lithops config", allow_placeholders: bool = False
) -> dict[str, Any]:
    """Check the keys lazymerge relies on, then let Lithops build its full config (no network).

    Returns Lithops' completed config. Raises ExecutorConfigError naming the missing or invalid key, or a
    template placeholder (``<...>``) left in place unless ``allow_placeholders``.
    """
    if not isinstance(config, dict) or not isinstance(config.get("lithops"), dict):
        raise ExecutorConfigError(f"{source}: missing the 'lithops' section (a mapping with 'backend')")
    section = config["lithops"]
    for key in ("backend", "storage"):
        if not section.get(key):
            raise ExecutorConfigError(f"{source}: missing key 'lithops.{key}'")
    backend, storage = section["backend"], section["storage"]
    for key, name in (("backend", backend), ("storage", storage)):
        if name != "localhost" and not isinstance(config.get(name), dict):
            raise ExecutorConfigError(f"{source}: missing the '{name}' section for lithops.{key}={name!r}")
    left = _placeholders(config)
    if left and not allow_placeholders:
        raise ExecutorConfigError(f"{source}: replace the template placeholder(s) in {', '.join(left)}")
    from lithops.config import default_config

    try:
        return default_config(config_data=copy.deepcopy(config))
    except Exception as exc:  # lithops raises bare Exception/KeyError for config problems
        raise ExecutorConfigError(f"{source}: Lithops rejects it: {exc!r}") from exc


def lithops_executor(
    config: dict[str, Any] | None = None,
    config_file: str | None = None,
    worker_processes: int = 2,
    preload: bool = True,
    wait_dur_sec: float = 0.1,
    **options: Any,
) -> Any:
    """Cubed's LithopsExecutor over ``config`` / ``config_file`` (default: offline localhost), stopping at
    the first failure (see StoppingLithopsExecutor)."""
    try:
        import cubed.runtime.executors.lithops  # noqa: F401
    except ImportError as exc:
        raise ExecutorUnavailableError(
            f"the lithops executor needs lithops: pip install 'lazymerge[lithops]' ({exc})"
        ) from exc
    if config is not None and config_file is not None:
        raise ExecutorConfigError("pass either 'config' or 'config_file' to the lithops executor, not both")
    if config_file is not None:
        config = load_lithops_config(config_file)
    elif config is not None:
        validate_lithops_config(config)
    else:
        config = localhost_config(worker_processes, preload)
    config = with_localhost_runtime(config, preload)
    return StoppingLithopsExecutor(config=config, wait_dur_sec=wait_dur_sec, **options)


def _final(future: Any) -> bool:
    """Whether a failed Lithops call raised an error that retrying cannot fix (FINAL_ERRORS)."""
    from lazymerge.executors.local import FINAL_ERRORS

    exc_info = getattr(future, "_exception", None)
    return isinstance(exc_info, tuple) and len(exc_info) > 1 and isinstance(exc_info[1], FINAL_ERRORS)


_SESSION_PID = "__LAZYMERGE_LITHOPS_SESSION_PID"  # the process that started the environment's Lithops session


def own_lithops_session() -> None:
    """Give this process a Lithops session of its own, unless it already has one.

    Lithops names executors ``<session>-<n>``, and it exports the session and its count to the
    environment, so that a child process joins the same session. A driver spawned by a process that used
    Lithops therefore counts on from the count it inherited, while the parent counts on in memory. The two
    then create executors with the same ID, and those executors share their job files. A killed driver's
    runner took the resumed run's job that way, and the run lost blocks without an error. The fix: a
    session named for this process (Lithops's own handoff), fresh in every process that did not start it."""
    pid = str(os.getpid())
    if os.environ.get(_SESSION_PID) != pid:
        os.environ["__LITHOPS_SESSION_ID"] = uuid.uuid4().hex[:6]
        os.environ["__LITHOPS_TOTAL_EXECUTORS"] = "-1"  # its first executor is number 0
        os.environ[_SESSION_PID] = pid


def _execute_dag(dag: Any, callbacks: Any = None, spec: Any = None, compute_id: Any = None,
                 retries: int = 2, use_backups: bool | None = None, wait_dur_sec: float | None = None,
                 compute_arrays_in_parallel: bool | None = None, **fexec_options: Any) -> None:  # fmt: skip
    """Cubed's Lithops DAG loop (one operation at a time), with ``retries`` per call, no retry of errors
    that retrying cannot fix, and the first failure ending the run: leaving the ``FunctionExecutor``
    drops the calls still queued and, on the localhost backend, kills the running ones."""
    from cubed.runtime.backup import use_backups_default
    from cubed.runtime.executors.lithops import map_unordered, run_func
    from cubed.runtime.pipeline import visit_nodes
    from cubed.runtime.utils import (
        handle_callbacks,
        handle_operation_end_callbacks,
        handle_operation_start_callbacks,
    )
    from lithops.executors import FunctionExecutor
    from lithops.retries import RetryingFunctionExecutor

    class Retrying(RetryingFunctionExecutor):
        def _split_done_and_retried(self, done, pending, lookup):
            for future in done:
                if future.error and _final(future):
                    lookup[future].cancel()  # Lithops: "gives up on any further retry"
            return super()._split_done_and_retried(done, pending, lookup)

    backups = use_backups_default(spec) if use_backups is None else use_backups
    own_lithops_session()
    with Retrying(FunctionExecutor(**fexec_options)) as executor:
        for name, node in visit_nodes(dag):
            handle_operation_start_callbacks(callbacks, name)
            pipeline = node["pipeline"]
            for result, stats in map_unordered(
                executor, [run_func], [pipeline.mappable], [name], retries=retries, use_backups=backups,
                return_stats=True, wait_dur_sec=wait_dur_sec, func=pipeline.function, config=pipeline.config,
                name=name, compute_id=compute_id,
            ):  # fmt: skip
                handle_callbacks(callbacks, result, stats)
            handle_operation_end_callbacks(callbacks, name)


def _stopping_class() -> type:
    from cubed.runtime.executors.lithops import LithopsExecutor

    from lazymerge.executors.stopping import StopsAtFirstFailure

    class _Lithops(LithopsExecutor):
        def execute_dag(self, dag, callbacks=None, spec=None, compute_id=None, **kwargs):
            _execute_dag(dag, callbacks, spec, compute_id, **{**self.kwargs, **kwargs})

    return type("StoppingLithopsExecutor", (StopsAtFirstFailure, _Lithops), {})


def StoppingLithopsExecutor(**options: Any) -> Any:  # noqa: N802 (a class, built once cubed's module is importable)
    """Cubed's LithopsExecutor (``retries``, ``use_backups``, ``wait_dur_sec`` and the FunctionExecutor's
    options) stopping at the first failure: errors that retrying cannot fix are not retried, the Lithops
    calls still queued are dropped, the localhost backend's running calls killed, and calls running
    elsewhere stop at their next block (lazymerge.executors.stopping)."""
    global _STOPPING
    if _STOPPING is None:
        _STOPPING = _stopping_class()
    return _STOPPING(**options)


_STOPPING: type | None = None
