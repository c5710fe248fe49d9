"""Days as partitions: the rolling window, single-run backfills from the CLI, byte-identical
re-materialization, and clear errors for days that are missing."""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from adrel_pipeline.defs.shared.partitions import FIRST_DAY, daily, window_days, window_mapping
from adrel_pipeline.world import WorldSpec
from adrel_pipeline_tests.conftest import DG_CLI, SMALL_WORLD, dagster_home, materialize, metadata, sqlite_uri

RUN_YAML = "resources:\n  world:\n    config: {" + ", ".join(f"{k}: {v}" for k, v in SMALL_WORLD.items()) + "}\n"


def days(first: str, last: str) -> list[str]:
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


@pytest.mark.parametrize("key, expected", [("2026-01-07", days("2026-01-01", "2026-01-07")),
                                           ("2026-03-01", days("2026-02-23", "2026-03-01")),
                                           # Days before the first partition do not exist: a shorter window.
                                           ("2026-01-03", days(FIRST_DAY, "2026-01-03")),
                                           (FIRST_DAY, [FIRST_DAY])])
def test_a_days_model_reads_the_window_ending_that_day(key, expected):
    mapped = window_mapping(7).get_upstream_mapped_partitions_result_for_partitions(
        daily.subset_with_partition_keys([key]), daily, daily)
    assert list(mapped.partitions_subset.get_partition_keys()) == expected


def test_window_length_comes_from_the_environment():
    assert window_days({}) == 7
    assert window_days({"ADREL_WINDOW_DAYS": "14"}) == 14
    for bad in ("0", "-3", "seven", "366"):
        with pytest.raises(ValueError, match=f"ADREL_WINDOW_DAYS='{bad}' is out of range: must be an integer in"):
            window_days({"ADREL_WINDOW_DAYS": bad})
    # The code location reads it when it loads: the graph asset's mapping follows.
    code = ("import dagster as dg; from adrel_pipeline.defs.graph.assets import hetero_graph; "
            "print(hetero_graph.get_partition_mapping(dg.AssetKey('interaction_edges')).start_offset)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "ADREL_WINDOW_DAYS": "3"})
    assert out.stdout.strip().splitlines()[-1] == "-2"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A DAGSTER_HOME with users and items, and days 1-3 backfilled by the real CLI in one run."""
    home = dagster_home(tmp_path_factory.mktemp("dagster_home"))
    (home / "run.yaml").write_text(RUN_YAML)
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    patch = pytest.MonkeyPatch()
    patch.setenv("DAGSTER_HOME", str(home))  # the project's dagster.yaml places storage by it
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert materialize(instance, sqlite_uri(home), selection=["users", "items"], partition_key=None,
                           run_config={}).success
    # `dg launch` as `make run` runs it: from the checkout, which names the code location in
    # pyproject.toml ([tool.dg]); a range of days in one run; run config from a file.
    proc = subprocess.run([DG_CLI, "launch", "--assets", "interaction_edges",
                           "--partition-range", "2026-01-01...2026-01-03", "-c", str(home / "run.yaml")],
                          check=False, capture_output=True, text=True, env={**env, "VIRTUAL_ENV": sys.prefix},
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-3000:]
    yield home
    patch.undo()


def stored_days(home: Path) -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in sorted((home / "storage" / "interaction_edges").glob("*.parquet"))}


@pytest.mark.slow
def test_cli_range_backfill_is_one_run_writing_each_day_once(home):
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = [r for r in instance.get_runs() if "interaction_edges" in str(r.asset_selection)]
        assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS
        materialized = instance.get_materialized_partitions(dg.AssetKey("interaction_edges"))
    assert sorted(materialized) == days("2026-01-01", "2026-01-03")
    spec = WorldSpec(**SMALL_WORLD)
    for day in stored_days(home):
        table = pl.read_parquet(home / "storage" / "interaction_edges" / f"{day}.parquet")
        assert table["day"].unique().to_list() == [dt.date.fromisoformat(day)]
        assert table.height == spec.interactions_on(dt.date.fromisoformat(day))


@pytest.mark.slow
def test_rematerializing_days_gives_identical_bytes_and_never_duplicates_a_day(home):
    before = stored_days(home)
    assert sorted(before) == days("2026-01-01", "2026-01-03")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        # One day alone, then an overlapping range (a second backfill over days 2-4).
        assert materialize(instance, sqlite_uri(home), selection=["interaction_edges"], partition_key="2026-01-02",
                           run_config={}).success
        assert stored_days(home) == before
        assert materialize(instance, sqlite_uri(home), selection=["interaction_edges"], run_config={},
                           tags={"dagster/asset_partition_range_start": "2026-01-02",
                                 "dagster/asset_partition_range_end": "2026-01-04"}).success
        after = stored_days(home)
        assert sorted(after) == days("2026-01-01", "2026-01-04")
        assert all(after[d] == before[d] for d in before)
        # The checks of a range run cover every day in it.
        checks = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("interaction_edges"), "daily_counts_as_configured")])
        assert next(iter(checks.values())).status.value == "SUCCEEDED"
    assert not list((home / "storage").rglob(".*.tmp"))


@pytest.mark.slow
def test_a_window_with_missing_days_fails_naming_them(home):
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = materialize(instance, sqlite_uri(home), selection=["hetero_graph"], partition_key="2026-01-07",
                             run_config={}, raise_on_error=False)
        assert not result.success
        message = str(result.all_events)
        assert "not materialized: 2026-01-05, 2026-01-06, 2026-01-07" in message
        assert "--partition-range 2026-01-05...2026-01-07" in message
        assert not (home / "storage" / "hetero_graph" / "2026-01-07.pt").exists()

        # The first day has no earlier days: its graph is built from that day alone.
        assert materialize(instance, sqlite_uri(home), selection=["hetero_graph"], partition_key=FIRST_DAY,
                           run_config={}).success
        graph = metadata(instance, "hetero_graph")
        assert (graph["window_start"], graph["window_end"], graph["window_days"]) == (FIRST_DAY, FIRST_DAY, 1)
