"""What a worker pays to import the kernel: wall time, RSS and modules, in a fresh process.

    python -m benchmarks.worker_imports [--modules lazymerge.kernel.block,lazymerge.output.write]

Prints one row per run (best of ``--repeat``), and whether the planner, DataFusion or shapely were loaded.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
for name in {modules!r}:
    __import__(name)
seconds = time.perf_counter() - t0
with open("/proc/self/status") as f:
    rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
heavy = sorted({{m.split(".")[0] if not m.startswith("lazymerge") else ".".join(m.split(".")[:2])
                for m in sys.modules if m.startswith(("datafusion", "shapely", "lazymerge.planner"))}})
print(json.dumps({{"seconds": seconds, "rss": rss, "modules": len(sys.modules), "heavy": heavy}}))
"""


def measure(modules: list[str]) -> dict:
    code = CHILD.format(modules=modules)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--modules", default="lazymerge.kernel.block,lazymerge.output.write")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    modules = args.modules.split(",")
    runs = [measure(modules) for _ in range(args.repeat)]
    best = min(runs, key=lambda r: r["seconds"])
    print(f"modules imported: {', '.join(modules)}")
    print("   import s   RSS MiB   modules   planner/datafusion/shapely loaded")
    heavy = best["heavy"] or "none"
    print(f"{best['seconds']:10.3f} {best['rss'] / 2**20:9.1f} {best['modules']:9d}   {heavy}")


if __name__ == "__main__":
    main()
