"""Executors: ``get_executor(name, **options)`` -> what Cubed's ``compute(executor=...)`` takes (see
``lazymerge.executors.registry`` for the names and their options)."""

from lazymerge.executors.config import load_executor_config
from lazymerge.executors.registry import EXECUTORS, get_executor
from lazymerge.executors.workdir import check_work_dir

__all__ = ["EXECUTORS", "check_work_dir", "get_executor", "load_executor_config"]
