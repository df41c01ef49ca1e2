"""lazymerge on Modal: an image with lazymerge and its pins, functions that run the chunk kernel, and a
``modal run`` entry point that writes a mosaic to an object store, resuming blocks already written.

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
    """Plan locally, render/write the missing blocks on Modal, ``batch`` per call, then the attrs."""
    import cubed
    import numpy as np

    from lazymerge.api import merge
    from lazymerge.catalog.conventions import write_proj, write_spatial
    from lazymerge.output.write import BlockWriter, missing_blocks, open_output

    spec = cubed.Spec(work_dir=work_dir, allowed_mem="1GB", reserved_mem="100MB")
    bounds = tuple(float(v) for v in bbox.split(","))
    result = merge(
        store, crs=crs, bbox=bounds, resolution=resolution, chunk_size=(chunk_size, chunk_size), spec=spec
    )
    arr = result.array
    target = open_output(out, "", arr.shape, arr.chunksize, arr.dtype, resume=True)
    ids = missing_blocks(target)
    writer = BlockWriter(result.task, target, tuple(arr.numblocks), tuple(arr.chunksize))
    batches = [ids[i : i + batch].tolist() for i in range(0, len(ids), batch)]
    done = sum(len(b) for b in write_blocks.map([writer] * len(batches), batches))
    write_spatial(target, result.spatial)
    write_proj(target, result.proj)
    print(f"wrote {done} block(s) of {int(np.prod(arr.numblocks))} to {out}")
