"""Plan.plot(): the chunk grid coloured by sources per chunk, with the sources' footprints outlined."""

from __future__ import annotations

from typing import Any

import numpy as np
from pyproj import Transformer

from lazymerge import arrow
from lazymerge.catalog.footprints import box_boundaries
from lazymerge.contract.model import Plan

MAX_OUTLINES = 5000


def plot_plan(plan: Plan, path: str | None = None, ax: Any = None) -> Any:
    """Draw the plan (the busiest of its band/time layers per chunk); save a PNG at ``path`` if given."""
    import matplotlib

    if ax is None and path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nr, nc = plan.grid.nchunks
    layers = len(plan.layer_bands) * plan.n_times
    per_chunk = np.bincount(plan.chunk_keys(), minlength=layers * nr * nc).reshape(layers, nr, nc).max(axis=0)
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 8 * max(nr / nc, 0.3)))
    x0, y0, x1, y1 = plan.grid.bbox
    masked = np.ma.masked_equal(per_chunk, 0)
    image = ax.imshow(
        masked, extent=(x0, x1, y0, y1), cmap="viridis", interpolation="nearest", origin="upper"
    )
    plt.colorbar(image, ax=ax, label="sources per chunk")
    lv = plan.levels
    first = np.unique(arrow.values(lv["source"]), return_index=True)[1][:MAX_OUTLINES]
    for i in first:
        t = [lv[f"transform_{k}"][int(i)].as_py() for k in range(6)]
        h, w = lv["shape_y"][int(i)].as_py(), lv["shape_x"][int(i)].as_py()
        xs = [t[2], t[2] + w * t[0]]
        ys = [t[5] + h * t[4], t[5]]
        bx, by = box_boundaries(np.array([[min(xs), min(ys), max(xs), max(ys)]]))
        to_tgt = Transformer.from_crs(lv["crs"][int(i)].as_py(), plan.grid.crs, always_xy=True)
        px, py = to_tgt.transform(bx[0], by[0], errcheck=False)
        ax.plot(px, py, color="white", linewidth=0.6, alpha=0.8)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_title(f"{plan.n_pairs} pairs over {int((per_chunk > 0).sum())} chunks, {len(first)} sources")
    if path is not None:
        (fig or ax.figure).savefig(path, dpi=120, bbox_inches="tight")
        if fig is not None:
            plt.close(fig)
    return ax
