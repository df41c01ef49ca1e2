"""Fault injection, for tests and drills only: some kernel tasks fail, to prove retries give the same output.

``LAZYMERGE_FAULT_RATE`` (0..1, unset = off)
    Fraction of blocks whose task raises InjectedFault.
``LAZYMERGE_FAULT_DIR`` (optional)
    With it, a chosen block fails only on its first attempt (a marker file per block records the failure,
    shared by every worker on the machine), so retries always succeed. Without it every attempt of a chosen
    block fails with probability RATE.
``LAZYMERGE_FAULT_SEED`` (default 0)
    Changes which blocks are chosen.
``LAZYMERGE_FAULT_BLOCKS`` (optional)
    Blocks that fail on every attempt with InjectedReadError, a SourceReadError (as an unreadable chunk
    would: not retried), e.g. ``"0,0;0,1"`` (a block id's indices, ``;`` between blocks).
``LAZYMERGE_FAULT_DELAY`` (seconds, unset = off)
    Every task (kernel blocks, and overview blocks) sleeps this long first: slows a run down so a drill
    can kill it mid-way.
``LAZYMERGE_FAULT_SLOW`` (``"row,col:seconds"``, unset = off; needs LAZYMERGE_FAULT_DIR)
    A straggler: the first attempt of that block sleeps up to ``seconds``, then renders and writes it as
    usual; later attempts (a retry, or a backup task) run at full speed. The sleep ends early once a file
    named ``release`` exists in LAZYMERGE_FAULT_DIR; a file ``woke-<row>-<col>`` appears there when it ends.

Workers inherit these from the environment of the process that starts them.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from pathlib import Path

from lazymerge.errors import SourceReadError


class InjectedFault(RuntimeError):
    """A failure injected on purpose by LAZYMERGE_FAULT_RATE."""


class InjectedReadError(SourceReadError):
    """An unreadable source injected on purpose by LAZYMERGE_FAULT_BLOCKS."""


def _chosen(block_id: tuple[int, ...], rate: float, seed: str) -> bool:
    digest = hashlib.sha256(f"{seed}:{tuple(int(i) for i in block_id)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def _blocks(text: str) -> set[tuple[int, ...]]:
    return {tuple(int(i) for i in item.split(",")) for item in text.split(";") if item.strip()}


def maybe_delay() -> None:
    """Sleep LAZYMERGE_FAULT_DELAY seconds, when set (every kernel and overview task calls this)."""
    delay = os.environ.get("LAZYMERGE_FAULT_DELAY")
    if delay:
        time.sleep(float(delay))


def maybe_straggle(block_id: tuple[int, ...]) -> None:
    """Sleep on the first attempt of the block named by LAZYMERGE_FAULT_SLOW (a straggler), when set."""
    slow = os.environ.get("LAZYMERGE_FAULT_SLOW")
    directory = os.environ.get("LAZYMERGE_FAULT_DIR")
    if not slow or not directory:
        return
    where, seconds = slow.split(":")
    if tuple(int(i) for i in where.split(",")) != tuple(int(i) for i in block_id[-2:]):
        return
    try:
        (Path(directory) / ("slow-" + where.replace(",", "-"))).touch(exist_ok=False)
    except FileExistsError:
        return  # not the first attempt
    end = time.monotonic() + float(seconds)
    while time.monotonic() < end and not (Path(directory) / "release").exists():
        time.sleep(0.1)
    (Path(directory) / ("woke-" + where.replace(",", "-"))).touch()


def maybe_fail(block_id: tuple[int, ...]) -> None:
    """Raise InjectedFault for this block when fault injection is on and picks it."""
    maybe_delay()
    maybe_straggle(block_id)
    listed = os.environ.get("LAZYMERGE_FAULT_BLOCKS")
    if listed and tuple(int(i) for i in block_id) in _blocks(listed):
        raise InjectedReadError(
            f"injected read error in block {tuple(block_id)} (LAZYMERGE_FAULT_BLOCKS={listed})"
        )
    rate = os.environ.get("LAZYMERGE_FAULT_RATE")
    if not rate:
        return
    seed = os.environ.get("LAZYMERGE_FAULT_SEED", "0")
    directory = os.environ.get("LAZYMERGE_FAULT_DIR")
    if directory:
        if not _chosen(block_id, float(rate), seed):
            return
        marker = Path(directory) / ("fault-" + "-".join(str(int(i)) for i in block_id))
        try:
            marker.touch(exist_ok=False)  # atomic: exactly one attempt of this block fails
        except FileExistsError:
            return
    elif random.random() >= float(rate):
        return
    raise InjectedFault(f"injected fault in block {tuple(block_id)} (LAZYMERGE_FAULT_RATE={rate})")
