"""Run visibility: a tqdm progress bar per op, and projected vs measured peak memory per task."""

from __future__ import annotations

import sys
from typing import Any

from cubed import Callback


class MemoryReport(Callback):
    """Collects, per op, Cubed's projected memory per task and the largest measured peak of its tasks.

    Threads cannot measure per-task memory (the peak is then ``None``); processes, Lithops and Dask do.
    """

    def __init__(self) -> None:
        self.projected: dict[str, int] = {}
        self.names: dict[str, str] = {}
        self.peak: dict[str, int] = {}
        self.tasks: dict[str, int] = {}

    def on_compute_start(self, event: Any) -> None:
        for name, data in event.dag.nodes(data=True):
            op = data.get("primitive_op")
            if op is not None and data.get("type") == "op":
                self.projected[name] = int(op.projected_mem)
                self.names[name] = f"{name} {data.get('func_name', '')}".strip()

    def on_task_end(self, event: Any) -> None:
        self.tasks[event.name] = self.tasks.get(event.name, 0) + event.num_tasks
        peak = event.peak_measured_mem_end
        if peak is not None:
            self.peak[event.name] = max(self.peak.get(event.name, 0), int(peak))

    def rows(self) -> list[tuple[str, int, int, int | None]]:
        """(op, tasks run, projected bytes per task, measured peak bytes per task or None)."""
        return [
            (self.names[n], self.tasks.get(n, 0), self.projected[n], self.peak.get(n))
            for n in self.projected
            if self.tasks.get(n)
        ]

    def summary(self) -> str:
        lines = ["memory per task: op, tasks, projected, measured peak"]
        for name, tasks, projected, peak in self.rows():
            measured = f"{peak / 1e6:.1f} MB" if peak is not None else "not measured by this executor"
            lines.append(f"  {name}: {tasks} tasks, projected {projected / 1e6:.1f} MB, measured {measured}")
        return "\n".join(lines)


def run_callbacks(progress: bool | None = None) -> tuple[list[Callback], MemoryReport]:
    """Callbacks for a run: a tqdm bar when ``progress`` (default: stderr is a terminal) + a MemoryReport."""
    report = MemoryReport()
    callbacks: list[Callback] = [report]
    if progress is None:
        progress = sys.stderr.isatty()
    if progress:
        from cubed.diagnostics.tqdm import TqdmProgressBar

        callbacks.append(TqdmProgressBar())
    return callbacks, report
