"""Typed errors. Each message names the offending value and says how to fix it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class LazymergeError(Exception):
    """Base class of every error lazymerge raises on purpose."""


class InvalidRequestError(LazymergeError, ValueError):
    """A merge/plan argument is malformed."""


class InvalidCRSError(InvalidRequestError):
    """A CRS that pyproj does not know."""


class InvalidBBoxError(InvalidRequestError):
    """A bbox that is not (xmin, ymin, xmax, ymax) with xmin < xmax and ymin < ymax."""


class InvalidResolutionError(InvalidRequestError):
    """A resolution that is not a positive number."""


class InvalidChunkSizeError(InvalidRequestError):
    """A chunk_size that is not two positive integers."""


class UnknownColumnError(InvalidRequestError, KeyError):
    """A sortby column that the source table does not have."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class BandNotFoundError(LazymergeError, KeyError):
    """A requested band that no source (or not every source) has."""

    def __str__(self) -> str:
        return str(self.args[0])


class StoreError(LazymergeError, ValueError):
    """A store that cannot be opened or has no usable sources."""


class ConventionError(LazymergeError, ValueError):
    """spatial:/proj:/multiscales attributes that are missing or invalid."""


class MetaNotFoundError(LazymergeError, FileNotFoundError):
    """datafusion=True on a store that has no /meta table."""


class MetaSchemaError(LazymergeError, ValueError):
    """A /meta table that lacks a required column or has one of the wrong type."""


class InvalidFootprintError(MetaSchemaError):
    """A /meta bbox value that is not valid WKB."""


class GroupByError(InvalidRequestError):
    """A groupby that is unknown, or that the sources' datetimes cannot answer."""


class BandsInferredWarning(UserWarning):
    """bands=None took several bands; says which, so the user can pass them explicitly."""


class InvalidWhereError(InvalidRequestError):
    """A where= filter that does not parse as one SQL predicate or names an unknown column."""


class EmptyPlanWarning(UserWarning):
    """The bbox meets no source (after where=): the plan has zero pairs and the result is all nodata."""


class TaskMemoryError(InvalidRequestError):
    """A chunk whose task would need more memory than the executor allows."""


class UnknownExecutorError(InvalidRequestError):
    """An executor name lazymerge does not know; the message lists the valid ones."""


class ExecutorConfigError(LazymergeError, ValueError):
    """An executor config (file, Lithops or Modal section) that is missing, unreadable or invalid."""


class ExecutorUnavailableError(LazymergeError, RuntimeError):
    """An executor whose package is not installed or whose credentials are missing."""


class WorkDirError(LazymergeError, OSError):
    """A Spec work_dir that cannot be written to, found before any task runs."""


class OutputError(LazymergeError, ValueError):
    """A to_zarr target that cannot be written or resumed."""


class PlanFormatError(LazymergeError, ValueError):
    """A path that is not a saved plan, or a saved plan naming something this install cannot resolve."""


class SettingError(LazymergeError, ValueError):
    """An environment variable lazymerge reads holds a value it cannot use."""


class OutputExistsError(OutputError):
    """A to_zarr target that already holds data lazymerge may not replace (or lies inside the sources)."""


class OutputResumeError(OutputError):
    """resume=True into an output written by a different request (its fingerprint differs)."""


class OutputLockedError(OutputError):
    """A to_zarr target whose lease another run holds (or took over)."""


class OutputWriteError(OutputError, OSError):
    """Writing the output failed in the store (full disk, permissions): the output is not complete."""


class OutputIncompleteError(OutputError):
    """A run that ended without error but left blocks unwritten (a lost task): the output is not complete."""


class GridTooLargeError(InvalidRequestError):
    """A target grid with more pixels or tasks than the limits allow (``max_pixels``, ``max_tasks``)."""


class SourceReadError(LazymergeError, OSError):
    """A source window that could not be read (after retries): names the source array, the target chunk and
    the cause."""


class InvalidSourceError(ConventionError):
    """One or more sources whose conventions cannot be mosaicked (non-horizontal CRS, a transform that is
    not finite or not invertible, shapes or overview scales that contradict each other, a footprint outside
    the CRS's area of use). ``problems`` maps each bad source's path to what is wrong with it; the message
    lists them all."""

    def __init__(self, message: str, problems: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.problems = dict(problems or {})


class SkippedSourceWarning(UserWarning):
    """``skip_invalid=True`` left out sources that failed validation; the message names each and why."""


class MetaColumnWarning(UserWarning):
    """A source attribute that ``lazymerge index`` cannot store as a /meta column (by its name)."""


class QueryPanicError(LazymergeError, RuntimeError):
    """DataFusion or zarr-datafusion-search panicked (a Rust panic, turned into this error) while serving a
    request; the message names the request and the query."""


@contextmanager
def no_panic(
    what: str,
    error: type[LazymergeError] = QueryPanicError,
    fix: str = "planning with datafusion=False scans the conventions instead",
) -> Iterator[None]:
    """Turn a Rust panic raised through pyo3 (``PanicException``, a BaseException, or pyo3-async's
    ``RustPanic``) inside the block into ``error`` naming ``what`` and saying ``fix``; every other
    exception passes."""
    try:
        yield
    except LazymergeError:
        raise
    except BaseException as exc:
        if type(exc).__name__ not in ("PanicException", "RustPanic"):
            raise
        raise error(
            f"{what} failed inside DataFusion/zarr-datafusion-search (a Rust panic: {exc}); {fix}. If it "
            "persists, please report it with the request"
        ) from exc


class RunCancelledError(LazymergeError, RuntimeError):
    """A task stopped because another task of the same run failed (the run's error is the other one)."""


class WorkerLostError(LazymergeError, RuntimeError):
    """A worker process died under a task (killed, out of memory) more times than ``retries`` allows."""


class SkippedReadWarning(UserWarning):
    """With ``on_error="skip"``: source windows that could not be read rendered as nodata; names them."""
