"""Per-partition check results: each day keeps its own result, so a bad day in a backfill stays
FAILED in the UI after other days pass, instead of being hidden by the asset's latest result."""

import dagster as dg
import pytest
from dagster._core.event_api import PartitionKeyFilter

from adrel_pipeline.definitions import all_assets
from adrel_pipeline.defs.shared import checks
from adrel_pipeline.defs.shared.partitions import daily
from adrel_pipeline.outcomes import CheckOutcome
from adrel_pipeline.sources import synthetic
from adrel_pipeline_tests.conftest import WORLD_ASSETS, materialize, range_tags, sqlite_uri

BAD, GOOD = "2026-01-01", "2026-01-02"
COUNTS = dg.AssetCheckKey(dg.AssetKey("interaction_edges"), "daily_counts_as_configured")
REFERENCES = dg.AssetCheckKey(dg.AssetKey("interaction_edges"), "references_known_users_and_items")


def latest(instance, key: dg.AssetCheckKey, partition: str | None = ...):
    """The latest execution of a check: of one partition, or (``...``) of any."""
    storage = instance.event_log_storage
    if partition is ...:
        return storage.get_latest_asset_check_execution_by_key([key])[key]
    return storage.get_latest_asset_check_execution_by_key([key], partition_filter=PartitionKeyFilter(key=partition))[key]


def partition_info(instance, key: dg.AssetCheckKey) -> dict:
    return {i.partition_key: i for i in instance.event_log_storage.get_asset_check_partition_info([key])}


def test_checks_of_partitioned_assets_are_partitioned_like_their_asset():
    seen = 0
    for asset in all_assets:
        for spec in asset.check_specs:
            assert spec.partitions_def == asset.partitions_def, spec.key
            seen += asset.partitions_def is not None
    # interaction_edges 2, hetero_graph 2, link_split 2, test_auc 4; seed_lists 1, audience_expansions 1;
    # candidate_log 3, relevance_labels 2, relevance_model 3; funnel_metrics 4.
    assert seen == 24


@pytest.fixture
def bad_day(monkeypatch):
    """The generator loses 3 rows of BAD (and only BAD): its daily count check fails."""
    real = synthetic.generate_day

    def three_rows_short_on_bad_day(spec, users, items, day):
        df = real(spec, users, items, day)
        return df.head(df.height - 3) if day.isoformat() == BAD else df

    monkeypatch.setattr(synthetic, "generate_day", three_rows_short_on_bad_day)
    return monkeypatch


@pytest.mark.slow
def test_a_bad_day_in_a_backfill_stays_failed_after_the_good_day_is_materialized(tmp_path, bad_day):
    uri = sqlite_uri(tmp_path)
    with dg.instance_for_test() as instance:
        # A single-run backfill of both days: one result per check and day.
        result = materialize(instance, uri, selection=WORLD_ASSETS, tags=range_tags(BAD, GOOD), run_config={},
                             raise_on_error=False)
        assert not result.success
        evaluations = {(e.check_name, e.partition): e.passed for e in result.get_asset_check_evaluations()
                       if e.asset_key == COUNTS.asset_key}
        assert evaluations == {(COUNTS.name, BAD): False, (COUNTS.name, GOOD): True,
                               (REFERENCES.name, BAD): True, (REFERENCES.name, GOOD): True}
        assert f"{BAD}: daily_counts_as_configured: 1 day with the wrong count" in str(result.all_events)
        # The blocking failure wrote neither day.
        assert not instance.get_materialized_partitions(COUNTS.asset_key)
        assert latest(instance, COUNTS, BAD).status.value == "FAILED"
        assert latest(instance, COUNTS, GOOD).status.value == "SUCCEEDED"

        # The good day on its own, later: its result is the check's latest, and BAD's is still FAILED.
        assert materialize(instance, uri, selection=["interaction_edges"], partition_key=GOOD, run_config={}).success
        assert latest(instance, COUNTS).partition == GOOD
        assert latest(instance, COUNTS).status.value == "SUCCEEDED"
        assert latest(instance, COUNTS, BAD).status.value == "FAILED"
        assert "1 day with the wrong count" in latest(instance, COUNTS, BAD).event.dagster_event.event_specific_data \
            .description
        info = partition_info(instance, COUNTS)
        assert info[BAD].latest_execution_status.value == "FAILED"
        assert info[GOOD].latest_execution_status.value == "SUCCEEDED" and info[GOOD].is_current
        assert len(instance.event_log_storage.get_asset_check_execution_history(
            COUNTS, limit=10, partition_filter=PartitionKeyFilter(key=GOOD))) == 2

        # The generator fixed, the backfill again: each day's result targets its own materialization.
        bad_day.undo()
        assert materialize(instance, uri, selection=WORLD_ASSETS, tags=range_tags(BAD, GOOD), run_config={}).success
        for key in (COUNTS, REFERENCES):
            info = partition_info(instance, key)
            assert set(info) == {BAD, GOOD}
            for day in (BAD, GOOD):
                assert info[day].latest_execution_status.value == "SUCCEEDED"
                assert info[day].is_current and info[day].latest_target_materialization_storage_id is not None
        assert info[BAD].latest_target_materialization_storage_id != info[GOOD].latest_target_materialization_storage_id


TOY_CHECKS = [checks.Check("even_day", "The day of the month is even.")]


@dg.asset(partitions_def=daily, check_specs=checks.specs("toy", TOY_CHECKS, daily))
def toy(context: dg.AssetExecutionContext):
    day = int(context.partition_key[-2:])
    yield from checks.emit(dg.Output(day), TOY_CHECKS, {"even_day": CheckOutcome(day % 2 == 0, f"day {day}")})


def test_a_one_day_run_records_its_result_against_its_day():
    key = dg.AssetCheckKey(dg.AssetKey("toy"), "even_day")
    with dg.instance_for_test() as instance:
        assert not dg.materialize([toy], instance=instance, partition_key=BAD, raise_on_error=False).success
        assert dg.materialize([toy], instance=instance, partition_key=GOOD).success
        assert latest(instance, key, BAD).status.value == "FAILED"
        assert latest(instance, key, GOOD).status.value == "SUCCEEDED"


def test_outcomes_must_cover_exactly_the_runs_days():
    @dg.asset(partitions_def=daily, check_specs=checks.specs("toy_range", TOY_CHECKS, daily))
    def toy_range(context: dg.AssetExecutionContext):
        yield from checks.emit_by_partition(context, dg.Output({k: 1 for k in context.partition_keys}), TOY_CHECKS,
                                            {BAD: {"even_day": CheckOutcome(True, "")}})

    with dg.instance_for_test() as instance:
        result = dg.materialize([toy_range], instance=instance, tags=range_tags(BAD, GOOD), raise_on_error=False)
    assert not result.success
    assert f"outcomes for partitions ['{BAD}'] do not match the run's ['{BAD}', '{GOOD}']" in str(result.all_events)
