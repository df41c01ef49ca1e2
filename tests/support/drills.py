"""Kill drills: start a writer in its own process group, kill the whole group once it has written enough."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def chunk_files(path: Path) -> dict[str, int]:
    """Finished chunk files under the Zarr array ``path`` (relative name -> mtime), as they are at this
    moment while a writer may still be running: zarr's ``*.partial`` temporaries are left out, and a file
    renamed or deleted between the listing and its ``stat`` is skipped."""
    found = {}
    for p in (path / "c").rglob("*"):
        if p.name.endswith(".partial"):
            continue
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode):
            found[str(p.relative_to(path))] = st.st_mtime_ns
    return found


def kill_group_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 180) -> None:
    """SIGKILL ``proc``'s process group (its workers too) as soon as ``ready()``; fails if the writer ends
    first or ``timeout`` seconds pass."""
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None, "the writer finished or failed before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def kill_when(
    argv: list[str], env: dict[str, str], cwd: Path, ready: Callable[[], bool], timeout: float
) -> None:
    """Run ``argv`` in its own process group (so the kill takes its workers too) and kill the group as soon
    as ``ready()`` (``kill_group_when``)."""
    kill_group_when(subprocess.Popen(argv, env=env, cwd=cwd, start_new_session=True), ready, timeout)
