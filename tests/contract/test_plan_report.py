"""Planning features a user relies on before paying: where=, culling, summary, plot, saved plans, CLI."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest
import zarr

from lazymerge.api import default_spec, merge, plan
from lazymerge.catalog.meta import write_meta
from lazymerge.cli import main
from lazymerge.contract.budget import DEFAULT_RESERVED_MEM
from lazymerge.contract.model import Plan
from lazymerge.demo import SEED_TARGET
from lazymerge.errors import InvalidWhereError, PlanFormatError, TaskMemoryError

REQUEST = {**SEED_TARGET, "resolution": 10.0, "chunk_size": (100, 100), "bands": "data", "sortby": "-id"}


@pytest.fixture
def clouded(random_store):
    """The random store, each source with a cloud_cover attribute that lazymerge index puts in /meta."""
    root = zarr.open_group(str(random_store), mode="r+")
    for k in range(8):
        root[f"s{k}"].attrs["cloud_cover"] = float(10 * k)
    write_meta(random_store)
    return random_store


@pytest.mark.parametrize("datafusion", [True, False])
def test_where_narrows_the_sources(clouded, datafusion):
    p = plan(str(clouded), where="cloud_cover < 35 AND id <> 's1'", datafusion=datafusion, **REQUEST)
    assert set(p.table["source_id"].to_pylist()) == {"s0", "s2", "s3"}


def test_where_is_the_same_on_both_paths(clouded):
    a = plan(str(clouded), where="cloud_cover >= 20", datafusion=True, **REQUEST)
    b = plan(str(clouded), where="cloud_cover >= 20", datafusion=False, **REQUEST)
    assert a.table.equals(b.table) and a.n_pairs > 0


@pytest.mark.parametrize("datafusion", [True, False])
@pytest.mark.parametrize(
    "where, words",
    [
        ("cloud_cover <", "not a valid predicate"),
        ("clouds < 3", "clouds"),
        ("1=1) OR (1=1", "not a valid predicate"),
        ("cloud_cover < 3; DROP TABLE meta", "not a valid predicate"),
    ],
)
def test_bad_where(clouded, datafusion, where, words):
    with pytest.raises(InvalidWhereError, match="cloud_cover") as err:
        plan(str(clouded), where=where, datafusion=datafusion, **REQUEST)
    assert words in str(err.value) and repr(where) in str(err.value)


@pytest.mark.parametrize("datafusion", [True, False])
def test_culling_drops_covered_sources_and_keeps_every_pixel(random_store, datafusion):
    full = merge(str(random_store), datafusion=datafusion, **REQUEST)
    culled = merge(str(random_store), datafusion=datafusion, cull=True, **REQUEST)
    assert culled.plan.pairs_before_cull >= full.plan.n_pairs
    assert culled.plan.n_pairs < full.plan.n_pairs
    np.testing.assert_array_equal(culled.array.compute(), full.array.compute())


def test_culling_is_the_same_on_both_paths(random_store):
    a = plan(str(random_store), datafusion=True, cull=True, **REQUEST)
    b = plan(str(random_store), datafusion=False, cull=True, **REQUEST)
    assert a.table.equals(b.table)


def test_summary_adds_up(random_store):
    p = plan(str(random_store), cull=True, **REQUEST)
    s = p.summary(allowed_mem=10**9)
    assert s.chunks_total == 10 * 8 and s.tasks == s.chunks_total
    assert sum(n for _, n in s.histogram) == s.chunks_total
    assert s.pairs == p.n_pairs < s.pairs_before_cull
    assert 0 < s.chunks_busy <= s.chunks_total
    assert s.sources_used == len(set(p.table["source"].to_pylist())) and s.sources_total == 8
    # every read is at least its window, rounded out to 64 x 64 source chunks of float32
    t = p.table
    window = (t["src_row1"].to_numpy() - t["src_row0"].to_numpy()) * (
        t["src_col1"].to_numpy() - t["src_col0"].to_numpy()
    )
    assert s.bytes_read >= 4 * window.sum() and s.bytes_read % (64 * 64 * 4) == 0
    assert s.largest_task_mem > 100 * 100 * 4
    text = str(s)
    assert "before culling" in text and "sources per chunk" in text and "planning time" in text


def test_too_much_memory_per_task_names_the_chunk(random_store):
    with pytest.raises(TaskMemoryError, match=r"chunk \(row \d+, col \d+.*smaller chunk_size"):
        merge(str(random_store), spec=default_spec(allowed_mem=DEFAULT_RESERVED_MEM + 400_000), **REQUEST)


def test_saved_plan_runs_without_planning_again(random_store, tmp_path):
    p = plan(str(random_store), **REQUEST)
    p.save(str(tmp_path / "plan"))
    loaded = Plan.load(str(tmp_path / "plan"))
    assert loaded.table.equals(p.table) and loaded.levels.equals(p.levels)
    expected = merge(str(random_store), **REQUEST).array.compute()
    got = merge(str(random_store), plan=loaded).array.compute()
    np.testing.assert_array_equal(got, expected)


def test_loading_what_is_not_a_plan_is_a_typed_error(random_store, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for path in (tmp_path / "empty", random_store, tmp_path / "missing"):
        with pytest.raises(PlanFormatError, match="is not a saved lazymerge plan"):
            Plan.load(str(path))
    code = main(["run", str(random_store), "--plan", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert code == 2 and "is not a saved lazymerge plan" in capsys.readouterr().err


def test_a_saved_plan_names_its_method_and_loading_imports_no_code(random_store, tmp_path):
    """A saved plan is data: its method is a registered name; a class the file names is never imported."""
    import zarr

    from lazymerge.kernel.composite import Last, register_method

    class Newest(Last):
        pass

    p = plan(str(random_store), **{**REQUEST, "method": Newest})
    p.save(str(tmp_path / "unregistered"))
    with pytest.raises(PlanFormatError, match="never registered"):
        Plan.load(str(tmp_path / "unregistered"))
    group = zarr.open_group(str(tmp_path / "unregistered"), mode="r+")
    group.attrs["method"] = "os:system"  # a file naming code to run
    with pytest.raises(PlanFormatError, match="not registered"):
        Plan.load(str(tmp_path / "unregistered"))
    register_method("newest-test", Newest)
    p = plan(str(random_store), **{**REQUEST, "method": Newest})
    p.save(str(tmp_path / "registered"))
    loaded = Plan.load(str(tmp_path / "registered"))
    assert loaded.method == "newest-test"
    np.testing.assert_array_equal(
        merge(str(random_store), plan=loaded).array.compute(),
        merge(str(random_store), **{**REQUEST, "method": "last"}).array.compute(),
    )


def test_plot(random_store, tmp_path):
    plan(str(random_store), **REQUEST).plot(str(tmp_path / "plan.png"))
    image = matplotlib.image.imread(tmp_path / "plan.png")
    assert image.shape[0] > 100 and image.std() > 0


def test_cli_plan_then_run(clouded, tmp_path, capsys):
    args = ["--crs", "EPSG:32618", "--bbox", "500000,5990000,508000,6000000", "--resolution", "10"]
    args += ["--chunk-size", "100,100", "--bands", "data", "--sortby=-id", "--cull"]
    code = main(
        [
            "plan",
            str(clouded),
            *args,
            "--where",
            "cloud_cover < 50",
            "--out",
            str(tmp_path / "p"),
            "--plot",
            str(tmp_path / "p.png"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "pairs" in out and "before culling" in out and (tmp_path / "p.png").exists()
    assert main(["run", str(clouded), "--plan", str(tmp_path / "p"), "--out", str(tmp_path / "o.zarr")]) == 0
    got = zarr.open_array(str(tmp_path / "o.zarr"))[:]
    expected = merge(str(clouded), where="cloud_cover < 50", **REQUEST).array.compute()
    np.testing.assert_array_equal(got, expected)
    assert main(["plan", str(clouded), *args, "--where", "nope <", "--out", str(tmp_path / "q")]) == 2
    assert "not a valid predicate" in capsys.readouterr().err


def test_cli_kernel_options(random_store, tmp_path):
    args = ["--crs", "EPSG:32618", "--bbox", "500000,5990000,508000,6000000", "--resolution", "10"]
    args += ["--chunk-size", "100,100", "--bands", "data", "--sortby=-id", "--resampling", "bilinear"]
    args += ["--method", "max", "--exact"]
    assert main(["run", str(random_store), *args, "--out", str(tmp_path / "o.zarr"), "--no-progress"]) == 0
    expected = merge(str(random_store), resampling="bilinear", method="max", exact=True, **REQUEST).array
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "o.zarr"))[:], expected.compute())
