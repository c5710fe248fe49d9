"""Automation: the daily retrain schedule, and a sensor that says what failed in a failed run."""

from __future__ import annotations

import dagster as dg

from adrel_pipeline.defs.shared.source import is_synthetic

# The day's interactions, then the graph, split, model and evaluation for that day. users and
# items are not partitioned and never change for a world: `make run` (or the UI) materializes
# them once.
daily_retrain_job = dg.define_asset_job(
    "daily_retrain",
    # The audience group reads a fixed embedding window and is partitioned by advertiser: not daily.
    # The contextual group's day (candidate log, labels, relevance model) needs no interactions; the
    # funnel group follows the relevance model and the GAT (test_auc), which serves home's pCTR.
    # On a team's own data the contextual group is its labels and relevance model, when it has labels
    # (definitions.py).
    selection=(dg.AssetSelection.assets("interaction_edges").downstream() - dg.AssetSelection.groups("audience"))
    | (dg.AssetSelection.assets("candidate_log").downstream() if is_synthetic() else dg.AssetSelection.groups("contextual")),
    description="Materialize one day's interactions and retrain the model on the window ending that day; log the "
                "day's ad candidates, label them, retrain the contextual relevance model, measure it in the "
                "serving funnel (launch checks, trend, A/A and A/B tests) and register it.",
)

# At 02:00 UTC, one RunRequest for the day that just ended (run_key = partition key, so a tick
# evaluated twice never launches the same day twice). Stopped until turned on in the UI
# (Automation → daily_retrain_schedule) or with `dagster schedule start daily_retrain_schedule`.
daily_retrain_schedule = dg.build_schedule_from_partitioned_job(
    daily_retrain_job,
    name="daily_retrain_schedule",
    hour_of_day=2,
    minute_of_hour=0,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Every day at 02:00 UTC: the previous day's interactions, then its models and the funnel.",
)


def describe_failure(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    """Which steps (assets) of a failed run failed, for which partition, and why, in one message."""
    records = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    tags = run.tags
    partition = tags.get("dagster/partition") or (
        f"{tags['dagster/asset_partition_range_start']}...{tags['dagster/asset_partition_range_end']}"
        if "dagster/asset_partition_range_start" in tags else None)
    where = f" (partition {partition})" if partition else ""
    lines = []
    for record in records:
        event = record.dagster_event
        error = event.step_failure_data.error if event and event.step_failure_data else None
        # "pkg.module.Failure: lr=0.0 is out of range" -> "lr=0.0 is out of range"
        reason = error.message.strip() if error else "no error recorded"
        if error and reason.split(": ", 1)[0].endswith(error.cls_name):
            reason = reason.split(": ", 1)[1]
        lines.append(f"asset {record.step_key}{where} failed: {reason}")
    if not lines:
        lines.append(f"run failed before any asset ran{where}: see the run's log")
    return f"run {run.run_id} of job {run.job_name} failed. " + " | ".join(lines)


@dg.run_failure_sensor(name="report_failed_runs", default_status=dg.DefaultSensorStatus.RUNNING,
                       description="Logs which asset of a failed run failed, for which partition, and why.")
def report_failed_runs(context: dg.RunFailureSensorContext) -> None:
    context.log.error(describe_failure(context.instance, context.dagster_run))
