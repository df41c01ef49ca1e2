"""docs/guide/cloud-free-composite.md, run as written, against a numpy reference of the same scenes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "guide" / "cloud-free-composite.md"


@pytest.mark.filterwarnings("ignore:All-NaN slice:RuntimeWarning")
def test_cloud_free_monthly_composite_page(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = "\n".join(re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S))
    ns: dict = {}
    exec(compile(code, str(PAGE), "exec"), ns)  # noqa: S102 -- the page's own example
    monthly, size = ns["monthly"], ns["SIZE"]
    assert [str(t)[:10] for t in ns["result"].time_coords] == ["2022-01-01", "2022-02-01"]
    # the reference: each scene's physical values on the target grid (10 m, aligned), masked by its SCL
    # upsampled nearest from 20 m, then a numpy median per month
    layers = {"01": [], "02": []}
    for date, shift, offset, dn, scl in ns["scenes"]:
        canvas = np.full((size, size + 10), np.nan)
        physical = np.where(dn == 0, np.nan, dn * 1e-4 - offset * 1e-4)
        physical[np.isin(np.kron(scl, np.ones((2, 2), dtype=scl.dtype)), [3, 8, 9, 10])] = np.nan
        canvas[:, shift : shift + size] = physical
        layers[date[5:7]].append(canvas)
    expected = np.stack([np.nanmedian(np.stack(layers[m]), axis=0) for m in ("01", "02")])
    np.testing.assert_allclose(monthly, expected, rtol=1e-5, atol=1e-6)
    ground = ns["ground"][:size, : size + 10]
    clear = np.isfinite(monthly)
    assert clear.mean() > 0.9
    assert np.abs(monthly - ground[None])[clear].max() < 0.05  # on the ground, not on the clouds
    # the page's command line plans the same merge
    import shlex

    from lazymerge.cli import main
    from lazymerge.contract.model import Plan

    command = re.findall(r"```bash\n(.*?)```", PAGE.read_text(), flags=re.S)[0].replace("\\\n", " ")
    args = shlex.split(command)[1:]
    assert args[0] == "run"
    assert main(["plan", *args[1:-2], "--out", "plan.zarr"]) == 0
    saved = Plan.load("plan.zarr")
    assert saved.masks == (ns["Mask"](band="SCL", values=[3, 8, 9, 10]),) and saved.rescale
    assert saved.n_pairs == ns["result"].plan.n_pairs and saved.method == "median"
