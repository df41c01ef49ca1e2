"""The header each benchmark prints first, so that a results file pasted from its output says what made
it: the commit (and whether the tree had uncommitted changes), the command line, the machine (cores, CPU
model, memory) and the date (UTC)."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return ""
    return out.stdout.strip()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory() -> str:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return "?"
    return f"{pages * size / 2**30:.1f} GiB"


def header() -> str:
    """Commit, command, machine and date, one per line, each starting with ``#``."""
    commit = _git("rev-parse", "HEAD") or "unknown"
    dirty = " (plus uncommitted changes)" if _git("status", "--porcelain", "--untracked-files=no") else ""
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            f"# commit  {commit}{dirty}",
            f"# command {command}",
            f"# machine {cores} cores usable ({os.cpu_count()} online), {_cpu_model()}, {_memory()}; "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}",
            f"# date    {now}",
        ]
    )


if __name__ == "__main__":
    print(header())
