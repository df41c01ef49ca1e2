"""lazymerge: mosaic many georeferenced Zarr rasters into one target grid, lazily, as a Cubed array.

>>> import lazymerge
>>> result = lazymerge.merge("sources.zarr", crs="EPSG:32618", bbox=bbox, resolution=10.0)
>>> array, spatial, proj, time_coords = result

The public names are imported on first use, so that a worker process importing the kernel loads neither
the planner nor DataFusion.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from lazymerge.errors import (
    BandNotFoundError,
    BandsInferredWarning,
    ConventionError,
    EmptyPlanWarning,
    ExecutorConfigError,
    ExecutorUnavailableError,
    GroupByError,
    InvalidBBoxError,
    InvalidChunkSizeError,
    InvalidCRSError,
    InvalidFootprintError,
    InvalidRequestError,
    InvalidResolutionError,
    InvalidSourceError,
    InvalidWhereError,
    LazymergeError,
    MetaColumnWarning,
    MetaNotFoundError,
    MetaSchemaError,
    OutputError,
    OutputExistsError,
    OutputIncompleteError,
    OutputLockedError,
    OutputResumeError,
    OutputWriteError,
    PlanFormatError,
    QueryPanicError,
    SettingError,
    SkippedSourceWarning,
    SourceReadError,
    StoreError,
    TaskMemoryError,
    UnknownColumnError,
    UnknownExecutorError,
    WorkDirError,
)

if TYPE_CHECKING:
    from lazymerge.api import merge, plan
    from lazymerge.catalog.ingest import ingest
    from lazymerge.contract.model import Plan
    from lazymerge.executors import get_executor
    from lazymerge.grid import PixelGrid, TargetGrid
    from lazymerge.kernel.masks import Mask
    from lazymerge.planner.request import MergeRequest
    from lazymerge.result import MergeResult

try:
    __version__ = version("lazymerge")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

_LAZY = {
    "merge": "lazymerge.api",
    "plan": "lazymerge.api",
    "MergeRequest": "lazymerge.planner.request",
    "Mask": "lazymerge.kernel.masks",
    "MergeResult": "lazymerge.result",
    "Plan": "lazymerge.contract.model",
    "PixelGrid": "lazymerge.grid",
    "TargetGrid": "lazymerge.grid",
    "get_executor": "lazymerge.executors",
    "ingest": "lazymerge.catalog.ingest",
}

__all__ = [
    "BandNotFoundError",
    "BandsInferredWarning",
    "ConventionError",
    "EmptyPlanWarning",
    "ExecutorConfigError",
    "ExecutorUnavailableError",
    "GroupByError",
    "InvalidBBoxError",
    "InvalidCRSError",
    "InvalidChunkSizeError",
    "InvalidFootprintError",
    "InvalidRequestError",
    "InvalidResolutionError",
    "InvalidSourceError",
    "InvalidWhereError",
    "LazymergeError",
    "Mask",
    "MergeRequest",
    "MergeResult",
    "MetaColumnWarning",
    "MetaNotFoundError",
    "MetaSchemaError",
    "OutputError",
    "OutputExistsError",
    "OutputIncompleteError",
    "OutputLockedError",
    "OutputResumeError",
    "OutputWriteError",
    "PixelGrid",
    "Plan",
    "PlanFormatError",
    "QueryPanicError",
    "SettingError",
    "SkippedSourceWarning",
    "SourceReadError",
    "StoreError",
    "TargetGrid",
    "TaskMemoryError",
    "UnknownColumnError",
    "UnknownExecutorError",
    "WorkDirError",
    "__version__",
    "get_executor",
    "ingest",
    "merge",
    "plan",
]


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lazymerge' has no attribute {name!r}")
    if name == "merge":  # the seed's module of that name first, so that the function is what stays bound
        importlib.import_module("lazymerge.merge")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
