"""A progress bar for every executor (a Cubed callback), and each op's projected vs measured task memory."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from cubed.runtime.types import Callback


class Progress(Callback):
    """One tqdm bar over all tasks; at the end, per op, Cubed's projected memory next to the largest peak
    measured in a task (processes, Lithops and Dask measure it; threads do not)."""

    def __init__(self, file: TextIO | None = None, bar: bool = True) -> None:
        self.file = file or sys.stderr
        self.bar_enabled = bar
        self.projected: dict[str, int] = {}
        self.measured: dict[str, int] = {}
        self._bar: Any = None

    def on_compute_start(self, event: Any) -> None:
        total = 0
        for name, data in event.dag.nodes(data=True):
            op = data.get("primitive_op")
            if op is not None:
                total += op.num_tasks
                self.projected[name] = op.projected_mem
        if self.bar_enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="task", file=self.file, desc="lazymerge")

    def on_task_end(self, event: Any) -> None:
        if self._bar is not None:
            self._bar.update(event.num_tasks)
        if event.peak_measured_mem_end is not None:
            self.measured[event.name] = max(self.measured.get(event.name, 0), event.peak_measured_mem_end)

    def on_compute_end(self, event: Any) -> None:
        if self._bar is not None:
            self._bar.close()
        print(self.report(), file=self.file)

    def report(self) -> str:
        lines = ["task memory per op: projected / measured peak"]
        for name, projected in self.projected.items():
            measured = self.measured.get(name)
            seen = f"{measured / 2**20:.0f} MiB" if measured else "not measured by this executor"
            lines.append(f"  {name}: {projected / 2**20:.0f} MiB / {seen}")
        return "\n".join(lines)
