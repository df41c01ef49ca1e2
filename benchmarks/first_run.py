"""The first run on a fresh clone: ``lazymerge demo`` in a fresh process with an empty numba cache.

    python -m benchmarks.first_run [--requests nearest bilinear average]
    python -m benchmarks.first_run --forked

Runs the demo (``lazymerge.demo.run_demo``) in a child process with ``NUMBA_CACHE_DIR`` set to a new empty
directory, as on a fresh clone, and prints each demo step's wall and CPU seconds, then what numba compiled
(each entry point: CPU seconds including the functions compiled into it). The demo's first compute is its
"compile the kernel" step plus its first "compute + write" step; the target is 5 s. A second run in the
same cache shows the warm start. Then, for each resampling of ``--requests``, what a merge of float32
sources into float32 compiles (``kernel.warm.warm_request``: same CRS and across UTM zones), each in a
fresh process with an empty cache. ``--forked`` instead: the first blocks of tasks forked from a runner
that imported the kernel (as Lithops localhost forks them), with and without the runner priming numba.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def listen() -> list[tuple[str, float, int]]:
    """Record numba's compiles from now on: (function, CPU seconds including what it compiles into it,
    depth: 0 for an entry point)."""
    from numba.core import event

    compiles: list[tuple[str, float, int]] = []

    class Listener(event.Listener):
        def __init__(self) -> None:
            self.started: list[float] = []

        def on_start(self, ev: event.Event) -> None:
            self.started.append(time.process_time())

        def on_end(self, ev: event.Event) -> None:
            t0 = self.started.pop()
            name = ev.data["dispatcher"].py_func.__name__
            compiles.append((name, time.process_time() - t0, len(self.started)))

    event.register("numba:compile", Listener())
    return compiles


def child_request(resampling: str) -> None:
    """Compile what a float32 merge with ``resampling`` needs; print one JSON line: CPU seconds, compiles."""
    compiles = listen()
    from lazymerge.kernel.warm import warm_request

    c0 = time.process_time()
    warm_request(["float32"], "float32", resampling)
    print(json.dumps({"cpu": time.process_time() - c0, "compiles": compiles}))


def child(out: str) -> None:
    """Run the demo into ``out``; print one JSON line: the steps and numba's compiles."""
    compiles = listen()
    import lazymerge.demo as demo

    steps: list[tuple[str, float, float]] = []

    def timed(say, label, fn):  # the demo's own step timer, with the CPU time too
        w0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        steps.append((label, time.perf_counter() - w0, time.process_time() - c0))
        return result

    demo._timed = timed
    demo.run_demo(out, say=lambda _: None)
    print(json.dumps({"steps": steps, "compiles": compiles}))


def child_forked(prime: str) -> None:
    """Import the kernel as a Lithops localhost runner does (``executors.lithops.preload_runtime``), prime
    numba's CPU target or not (``kernel.warm.prime``), then fork children one after another, each
    rendering its first blocks (a float32 nearest request, from numba's cache); print one JSON line: their
    CPU seconds."""
    from lazymerge.kernel import warm

    if prime == "yes":
        warm.prime()
    cpu = []
    for _ in range(3):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the task
            os.close(read)
            c0 = time.process_time()
            warm.warm_request(["float32"], "float32", "nearest")
            os.write(write, str(time.process_time() - c0).encode())
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as got:
            cpu.append(float(got.read()))
        os.waitpid(pid, 0)
    print(json.dumps({"cpu": cpu}))


def forked(rounds: int = 2) -> None:
    """A forked task's first blocks with and without the runner priming numba, alternating, cache warm."""
    print("a forked task's first blocks (float32 nearest, numba's cache filled), CPU s of 3 per runner:")
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        run_child(cache, "--child-request", "nearest")  # fills the cache
        for _ in range(rounds):
            for prime in ("no", "yes"):
                cpu = run_child(cache, "--child-forked", prime)["cpu"]
                label = "runner primed (kernel.warm.prime)" if prime == "yes" else "runner not primed"
                print(f"  {label:<36} " + "  ".join(f"{c:.2f}" for c in cpu))


def run_child(cache: str, *args: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    cmd = [sys.executable, "-m", "benchmarks.first_run", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_once(cache: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="lazymerge-demo-") as out:
        return run_child(cache, "--child", out)


def requests(resamplings: list[str]) -> None:
    """What each float32 request compiles with an empty cache, entry point by entry point."""
    print("a float32 merge's compile with an empty numba cache (same CRS and across UTM zones):")
    for resampling in resamplings:
        with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
            res = run_child(cache, "--child-request", resampling)
        top = [c for c in res["compiles"] if c[2] == 0]
        parts = ", ".join(f"{name} {cpu:.2f}" for name, cpu, _ in top)
        print(f"  {resampling:<9} {res['cpu']:6.2f} s CPU ({len(top)} entry points: {parts})")


def report(label: str, res: dict) -> None:
    print(f"{label}:")
    first = 0.0
    seen_compute = False
    for name, wall, cpu in res["steps"]:
        print(f"  {name:<46} {wall:7.2f} s wall {cpu:7.2f} s CPU")
        if name.startswith("compile") or (name.startswith("compute") and not seen_compute):
            first += wall
            seen_compute |= name.startswith("compute")
    print(f"  the demo's first compute (compile + first compute): {first:.2f} s wall (target 5 s)")
    top = [c for c in res["compiles"] if c[2] == 0]
    if top:
        print(f"  numba compiled {len(top)} entry points, {sum(c[1] for c in top):.2f} s CPU:")
        for name, cpu, _ in top:
            print(f"    {name:<24} {cpu:6.2f} s")
    else:
        print("  numba compiled nothing (all from its cache)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-request", help=argparse.SUPPRESS)
    ap.add_argument("--child-forked", help=argparse.SUPPRESS)
    ap.add_argument("--requests", nargs="*", default=["nearest", "bilinear", "average"])
    ap.add_argument("--forked", action="store_true", help="only: a forked task's first blocks, primed or not")
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    if args.child_request:
        child_request(args.child_request)
        return
    if args.child_forked:
        child_forked(args.child_forked)
        return
    if args.forked:
        forked()
        return
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        report("empty numba cache (a fresh clone)", run_once(cache))
        report("the same cache, second run", run_once(cache))
    requests(args.requests)


if __name__ == "__main__":
    from benchmarks.provenance import header

    if not any(a.startswith("--child") for a in sys.argv):
        print(header(), flush=True)
    main()
