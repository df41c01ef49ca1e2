"""What keeps ``to_zarr`` from destroying data: the target checks, the request fingerprint and the lease.

- A target that holds anything is refused (``OutputExistsError``), unless it is a lazymerge output and the
  caller passes ``overwrite=True`` (only the nodes lazymerge wrote, marked by ``lazymerge:output``, are
  deleted; foreign files stay) or ``resume=True`` for the same request (its fingerprint, stored in the
  root's ``lazymerge:fingerprint``, must match; ``OutputResumeError`` names what differs). A target inside
  the source store is refused too.
- A lease object, ``.lazymerge-lock`` at the target root, is created atomically (zarr's
  ``set_if_not_exists``: ``O_EXCL``-style link on local disk, a conditional ``put(mode="create")`` on
  object stores) and renewed while the run lasts; a second writer gets ``OutputLockedError`` naming the
  holder. An expired lease (``LAZYMERGE_LEASE_SECONDS``, default 60), or one whose process on this host is
  gone, is taken over atomically (a conditional put on the lease's ETag on object stores, an exclusive
  ``flock`` on local disk), so of two runs taking it over at once exactly one wins. The lease is checked
  again before the output is marked complete. An Icechunk session takes no lease: concurrent sessions
  conflict at commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
import zarr.storage
from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from lazymerge import arrow
from lazymerge.errors import (
    OutputError,
    OutputExistsError,
    OutputLockedError,
    OutputResumeError,
    SettingError,
)
from lazymerge.kernel.composite import method_name

if TYPE_CHECKING:
    from lazymerge.result import MergeResult

LOCK_KEY = ".lazymerge-lock"
MARK = "lazymerge:output"  # on every node lazymerge writes: the digest of the request's fingerprint
FINGERPRINT = "lazymerge:fingerprint"  # on the output's root node: what the request was
COMPLETE = "lazymerge:complete"  # on the root node: true once every block and overview level is written


@dataclass(frozen=True)
class Target:
    """A to_zarr target resolved: the zarr store to write, the Icechunk session (if any), a name for
    messages, and its location (a URL-like key compared with the source store's)."""

    store: Any
    session: Any | None
    description: str
    location: str | None


def open_target(target: Any) -> Target:
    """Resolve a path/URL, obstore store, zarr Store or Icechunk Session into a writable Target."""
    from obstore.store import from_url

    if type(target).__module__.startswith("icechunk") and hasattr(target, "store"):
        return Target(target.store, target, f"icechunk session {target!r}", None)
    if type(target).__module__.startswith("obstore"):
        target = zarr.storage.ObjectStore(target)
    if isinstance(target, (str, os.PathLike)):
        text = os.fspath(target)
        if "://" in text and not text.startswith("file://"):
            try:
                remote = zarr.storage.ObjectStore(from_url(text))
            except Exception as exc:  # obstore raises its own error types per scheme
                raise OutputError(f"cannot open output URL {text!r}: {exc}") from exc
            return Target(remote, None, text, location(remote))
        path = Path(text.removeprefix("file://")).expanduser().resolve()
        if path.exists() and not path.is_dir():
            raise OutputExistsError(f"output {str(path)!r} is an existing file; pick a new directory path")
        store = zarr.storage.LocalStore(str(path))
        return Target(store, None, str(path), location(store))
    if isinstance(target, Store):
        return Target(target, None, str(target), location(target))
    raise OutputError(
        f"output of type {type(target).__name__} is not supported; pass a path/URL, an obstore store, a zarr "
        "Store or an Icechunk Session"
    )


def location(store: Any) -> str | None:
    """A key naming where ``store`` keeps its data (``file:///abs/path``, ``S3Store://bucket/prefix``,
    ``memory://id``), or None when unknown."""
    if isinstance(store, zarr.storage.LocalStore):
        return Path(store.root).resolve().as_uri()
    if isinstance(store, zarr.storage.MemoryStore):
        return f"memory://{id(store._store_dict)}"
    if isinstance(store, zarr.storage.ObjectStore):
        store = store.store
    if not type(store).__module__.startswith("obstore"):
        return None
    prefix = str(getattr(store, "prefix", None) or "")
    if type(store).__name__ == "LocalStore":
        return Path(prefix).resolve().as_uri()
    config = getattr(store, "config", None) or {}
    bucket = config.get("bucket") or config.get("container_name")
    if bucket is None:
        return f"memory://{id(store)}"
    return f"{type(store).__name__}://{bucket}/{prefix.strip('/')}"  # endpoints left out: err on refusing


def check_outside(target: Target, source_store: Any) -> None:
    """OutputExistsError when the target is the source store or lies inside it."""
    src = location(source_store)
    if target.location is None or src is None:
        return
    if target.location == src or target.location.startswith(src.rstrip("/") + "/"):
        raise OutputExistsError(
            f"output {target.description!r} is inside the source store {src!r}: writing there could "
            "destroy the sources; write the mosaic to a path outside the source store"
        )


def fingerprint(result: MergeResult, overviews: int, band: str) -> dict[str, Any]:
    """What makes two requests write the same output: grid, dtype, nodata, bands, times, methods, layout
    and a digest of the plan table. JSON-ready (compared after a round trip through the attributes)."""
    plan = result.plan
    method = method_name(plan.method) or f"{plan.method.__module__}:{plan.method.__qualname__}"
    nodata = None if plan.nodata is None or np.isnan(plan.nodata) else float(plan.nodata)
    times = None if result.time_coords is None else [str(t) for t in np.asarray(result.time_coords)]
    fp = {
        "crs": plan.grid.crs.to_string(),
        "transform": [float(v) for v in tuple(plan.grid.transform)[:6]],
        "shape": [int(n) for n in result.array.shape],
        "chunks": [int(n) for n in result.array.chunksize],
        "dtype": str(np.dtype(result.array.dtype)),
        "nodata": nodata,
        "bands": list(plan.bands),
        "times": times,
        "resampling": plan.resampling,
        "method": method,
        "exact": bool(plan.exact),
        "overviews": int(overviews),
        "band": band,
        "plan": table_digest(plan.table),
    }
    return json.loads(json.dumps(fp))


def table_digest(table: Any) -> str:
    """sha256 of the plan table's values (without ``source``, the row number in whichever source table
    was read), independent of its chunking and integer widths."""
    h = hashlib.sha256()
    for name in table.column_names:
        if name == "source":
            continue
        col = table[name].combine_chunks()
        values = arrow.values(col)
        h.update(name.encode() + b"\0")
        if values.dtype.kind in "iub":
            h.update(values.astype("i8").tobytes())
        elif values.dtype.kind == "f":
            h.update(values.astype("f8").tobytes())
        else:  # strings (source ids): few distinct values, so hash their codes and the distinct values
            codes = col.dictionary_encode()
            h.update(arrow.values(codes.indices).astype("i8").tobytes())
            h.update("\0".join(map(str, codes.dictionary.to_pylist())).encode())
    return h.hexdigest()


def digest(fp: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]


def _keys(store: Any) -> list[str]:
    async def listing() -> list[str]:
        return [k async for k in store.list_dir("")]

    try:
        # the lease, and a contender's temporary copy of it (LocalStore writes it next to the key)
        return sorted(k for k in sync(listing()) if not k.startswith(LOCK_KEY))
    except FileNotFoundError:
        return []


def _root(store: Any) -> Any:
    try:
        return zarr.open(store, mode="r")
    except Exception:  # no readable zarr.json at the root: not a lazymerge output
        return None


def prepare(target: Target, fp: dict[str, Any], *, resume: bool, overwrite: bool) -> bool:
    """Make the target ready under the lease; True when resuming an output of the same request.

    Raises OutputExistsError for a non-empty target that may not be replaced, OutputResumeError when
    ``resume`` meets an output of another request."""
    keys = _keys(target.store)
    if not keys:
        return False
    root = _root(target.store)
    old = root.attrs.get(FINGERPRINT) if root is not None else None
    held = ", ".join(keys[:5]) + (", ..." if len(keys) > 5 else "")
    if old is None:
        why = "overwrite=True only replaces a lazymerge output" if overwrite else "nothing is overwritten"
        raise OutputExistsError(
            f"output {target.description!r} is not empty (holds {held}) and is not a lazymerge output "
            f"({why}); write to a new or empty target, or remove what is there yourself"
        )
    if resume:
        differ = [
            f"{k}: {_short(old.get(k))} there, {_short(v)} now" for k, v in fp.items() if old.get(k) != v
        ]
        if differ:
            raise OutputResumeError(
                f"cannot resume into {target.description!r}: it was written by a different request "
                f"({'; '.join(differ)}); resume with the same request, or pass overwrite=True to replace it"
            )
        return True
    if not overwrite:
        raise OutputExistsError(
            f"output {target.description!r} already holds a lazymerge output; pass overwrite=True "
            "(--overwrite) to replace it, resume=True (--resume) to finish it, or write to a new target"
        )
    delete_own(target.store, root)
    return False


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def delete_own(store: Any, root: Any) -> None:
    """Delete the nodes lazymerge wrote (those with the MARK attribute): an array's metadata and chunks
    (its ``c/`` prefix), a group's metadata. Every other key stays."""
    nodes = [("", root)]
    if isinstance(root, zarr.Group):
        with warnings.catch_warnings():  # foreign files are not nodes: zarr warns about each
            warnings.simplefilter("ignore", zarr.errors.ZarrUserWarning)
            nodes += list(root.members(max_depth=None))
    for path, node in nodes:
        if MARK not in node.attrs:
            continue
        prefix = f"{path}/" if path else ""
        if isinstance(node, zarr.Array):
            sync(store.delete_dir(prefix + "c"))
        sync(store.delete(prefix + "zarr.json"))


def lease_seconds(value: str | None) -> float:
    """The lease duration from ``LAZYMERGE_LEASE_SECONDS`` (unset: 60)."""
    if value is None:
        return 60.0
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise SettingError(
            f"LAZYMERGE_LEASE_SECONDS={value!r} is not a positive number of seconds; set e.g. 60"
        )
    return seconds


class Lease:
    """The target's writer lease, held while the ``with`` block runs (renewed by a daemon thread)."""

    def __init__(self, target: Target, seconds: float | None = None) -> None:
        self.target = target
        self.store = target.store
        self.seconds = seconds or lease_seconds(os.environ.get("LAZYMERGE_LEASE_SECONDS"))
        self.run = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _payload(self) -> dict[str, Any]:
        now = time.time()
        return {
            "run": self.run,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "expires": now + self.seconds,
        }

    def _read(self) -> dict[str, Any] | None:
        buf = sync(self.store.get(LOCK_KEY, prototype=default_buffer_prototype()))
        return None if buf is None else _parse(buf.to_bytes())

    def _buffer(self) -> Any:
        return default_buffer_prototype().buffer.from_bytes(json.dumps(self._payload()).encode())

    def acquire(self) -> None:
        """Create the lease, or take over a stale one; OutputLockedError naming a live holder."""
        for _ in range(3):
            sync(self.store.set_if_not_exists(LOCK_KEY, self._buffer()))
            held = self._read()
            if held is None:
                continue  # released between our put and our read
            if held.get("run") == self.run:
                return
            if not _stale(held):
                raise OutputLockedError(
                    f"output {self.target.description!r} is being written by another run ({_holder(held)}); "
                    f"wait for it to finish, or write elsewhere. A lease left by a killed run expires "
                    f"{self.seconds:g} s after its last renewal (LAZYMERGE_LEASE_SECONDS)"
                )
            self._take_over(held)
        raise OutputLockedError(f"output {self.target.description!r}: could not take its lease ({LOCK_KEY})")

    def _take_over(self, held: dict[str, Any]) -> None:
        """Replace the stale lease ``held`` by ours, atomically: of several runs taking over the same lease
        at once, exactly one wins (the others then see its lease and fail). On an object store the lease is
        overwritten only if its ETag is still the one read (a conditional put); on local disk under an
        exclusive ``flock`` of ``.lazymerge-lock.takeover``, the lease read again; elsewhere (memory
        stores) it is deleted if unchanged and created again."""
        inner: Any = getattr(self.store, "store", None)
        if isinstance(self.store, zarr.storage.ObjectStore) and hasattr(inner, "put"):
            import obstore
            from obstore.exceptions import NotFoundError, PreconditionError

            try:
                found = obstore.get(inner, LOCK_KEY)
                if not _stale(_parse(bytes(found.bytes()))):
                    return  # renewed or taken over meanwhile: the caller sees the new holder
                mine = json.dumps(self._payload()).encode()
                obstore.put(inner, LOCK_KEY, mine, mode={"e_tag": found.meta["e_tag"]})
            except (NotFoundError, PreconditionError, FileNotFoundError):
                pass  # released, or another run took it over first: the caller looks again
            return
        if isinstance(self.store, zarr.storage.LocalStore):
            import fcntl

            root = Path(self.store.root)
            root.mkdir(parents=True, exist_ok=True)
            with open(root / f"{LOCK_KEY}.takeover", "a") as guard:
                fcntl.flock(guard, fcntl.LOCK_EX)  # released when the file closes
                if self._read() == held:
                    sync(self.store.delete(LOCK_KEY))
                    sync(self.store.set_if_not_exists(LOCK_KEY, self._buffer()))
            return
        if self._read() == held:
            sync(self.store.delete(LOCK_KEY))

    def check(self) -> None:
        """OutputLockedError unless this run still holds the lease (before marking the output complete)."""
        held = self._read()
        if held is None or held.get("run") != self.run:
            raise OutputLockedError(
                f"output {self.target.description!r}: this run lost its lease to "
                f"{_holder(held) if held else 'nobody'}; the output is not marked complete. Check the other "
                "run, then resume=True"
            )

    def _renew(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                held = self._read()
                if held is not None and held.get("run") == self.run:
                    sync(self.store.set(LOCK_KEY, self._buffer()))
            except Exception:  # a transient store error: the next renewal tries again
                pass

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        held = self._read()
        if held is not None and held.get("run") == self.run:
            sync(self.store.delete(LOCK_KEY))

    def __enter__(self) -> Lease:
        self.acquire()
        self._thread = threading.Thread(target=self._renew, name="lazymerge-lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def check_holder(store: Any, run: str, description: str) -> None:
    """OutputLockedError unless ``run`` holds the lease of the target ``store`` (what a write task checks
    before writing: a task of a run that lost its lease, or sent to a target it never leased, writes
    nothing)."""
    buf = sync(store.get(LOCK_KEY, prototype=default_buffer_prototype()))
    held = None if buf is None else _parse(buf.to_bytes())
    if held is None or held.get("run") != run:
        holder = _holder(held) if held else "nobody holds it"
        raise OutputLockedError(
            f"output {description!r}: run {run} does not hold its lease ({holder}); "
            "nothing was written. Write through to_zarr, which takes the lease, or wait for the holder"
        )


def _parse(data: bytes) -> dict[str, Any]:
    """A lease's contents; a torn or foreign one reads as expired."""
    try:
        held = json.loads(data)
    except ValueError:
        held = None
    return held if isinstance(held, dict) else {"run": None, "expires": 0}


def _holder(held: dict[str, Any]) -> str:
    left = float(held.get("expires", 0)) - time.time()
    return (
        f"run {held.get('run')} on host {held.get('host')} pid {held.get('pid')}, since {held.get('since')}, "
        f"lease expires in {max(left, 0):.0f} s"
    )


def _stale(held: dict[str, Any]) -> bool:
    """An expired lease, or one held by a process of this host that no longer exists."""
    if time.time() > float(held.get("expires", 0)):
        return True
    pid = held.get("pid")
    if held.get("host") == socket.gethostname() and isinstance(pid, int) and pid > 0:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except (PermissionError, OverflowError):
            return False
    return False
