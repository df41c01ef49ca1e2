"""lazymerge on Modal: an image with lazymerge and its pins, functions that run the chunk kernel, and a
``modal run`` entry point that writes a mosaic to an object store through ``to_zarr`` (the same target
checks, fingerprint, lease and completion mark as every executor), resuming blocks already written.

    modal deploy infra/modal/app.py
    modal run infra/modal/app.py --store s3://bucket/sources.zarr --crs EPSG:32618 \\
        --bbox 500000,5990000,508000,6000000 --resolution 10 --out s3://bucket/mosaic.zarr \\
        --work-dir s3://bucket/tmp

Building this module (app, image, functions) needs no network and no token; running it does.
"""

from __future__ import annotations

from pathlib import Path

import modal

APP_NAME = "lazymerge"
PYTHON_VERSION = "3.11"
REQUIREMENTS_FILE = Path(__file__).resolve().parents[1] / "runtime-requirements.txt"
LOCAL_SOURCES = ("lazymerge",)
# Modal secret holding the object-store credentials (AWS_ACCESS_KEY_ID/... or GOOGLE_APPLICATION_CREDENTIALS)
SECRET_NAME = "lazymerge-object-store"
MEMORY_MB = 2048  # keep above Spec.allowed_mem (default 1GB)
RETRIES = 2
TIMEOUT_S = 600


def requirements() -> list[str]:
    """The pinned requirements the image installs."""
    lines = (line.split("#")[0].strip() for line in REQUIREMENTS_FILE.read_text().splitlines())
    return [line for line in lines if line]


NUMBA_CACHE_DIR = "/opt/lazymerge-numba-cache"
image = (
    modal.Image.debian_slim(python_version=PYTHON_VERSION)
    .pip_install(*requirements())
    .add_local_python_source(*LOCAL_SOURCES, copy=True)  # in the image: the warm step below imports it
    .env({"NUMBA_CACHE_DIR": NUMBA_CACHE_DIR})
    # the kernel's numba loops compiled into the image, so cold workers skip the compile (same CPU features)
    .run_commands("python -m lazymerge.cli warm")
)
app = modal.App(APP_NAME, image=image)
_function = app.function(
    memory=MEMORY_MB,
    cpu=1.0,
    retries=RETRIES,
    timeout=TIMEOUT_S,
    secrets=[modal.Secret.from_name(SECRET_NAME)],
)


@_function
def render_block(task, block_id: tuple[int, ...]):
    """One output block: the kernel (lazymerge.kernel.merge_block) on the task's own plan rows."""
    from lazymerge.kernel.block import merge_block

    return merge_block(None, task=task, block_id=tuple(block_id))


@_function
def write_blocks(writer, ids: list[int]) -> list[int]:
    """Render the blocks ``ids`` (flat indices) and write each into the output array; returns ``ids``."""
    import numpy as np

    from lazymerge.output.write import write_blocks as write

    return [int(i) for i in write(np.asarray(ids, dtype="i8"), writer=writer)]


def run_batches(writer, ids, batch: int = 4, call=None) -> int:
    """Render/write the blocks ``ids`` on Modal, ``batch`` per function call (``call``: how the batches
    are mapped, ``write_blocks.map`` by default); returns how many were written."""
    batches = [[int(i) for i in ids[k : k + batch]] for k in range(0, len(ids), batch)]
    call = call or write_blocks.map
    return sum(len(done) for done in call([writer] * len(batches), batches))


@app.local_entrypoint()
def main(
    store: str,
    crs: str,
    bbox: str,
    resolution: float,
    out: str,
    work_dir: str,
    chunk_size: int = 512,
    batch: int = 4,
) -> None:
    """Plan locally, then write through ``to_zarr`` (target checks, request fingerprint, lease, resume of
    the blocks already written, ``lazymerge:complete`` last) with the blocks rendered on Modal."""
    from functools import partial

    import cubed
    import numpy as np

    from lazymerge.api import merge

    spec = cubed.Spec(work_dir=work_dir, allowed_mem="1GB", reserved_mem="100MB")
    bounds = tuple(float(v) for v in bbox.split(","))
    result = merge(
        store, crs=crs, bbox=bounds, resolution=resolution, chunk_size=(chunk_size, chunk_size), spec=spec
    )
    result.to_zarr(out, resume=True, render=partial(run_batches, batch=batch))
    print(f"wrote {int(np.prod(result.array.numblocks))} block(s) to {out}")
