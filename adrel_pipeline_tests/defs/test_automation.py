"""Running it like production: the daily schedule, retries, the failure sensor, blocking checks
stopping bad data, and the executor chosen by configuration."""

import datetime as dt
import os
import subprocess
from pathlib import Path

import dagster as dg
import pytest
import torch
from mlflow import MlflowClient

from adrel_pipeline.definitions import defs
from adrel_pipeline.defs.relevance import assets as model_assets
from adrel_pipeline.defs.shared.automation import describe_failure, report_failed_runs
from adrel_pipeline.defs.shared.executors import executor_from_env
from adrel_pipeline.graph import split as split_module
from adrel_pipeline.graph.build import AD_USER, USER_AD
from adrel_pipeline.mlops import registry
from adrel_pipeline.relevance import training
from adrel_pipeline_tests.conftest import (
    DAGSTER_CLI,
    WEEK,
    dagster_home,
    materialize,
    materialize_week,
    metadata,
    sqlite_uri,
)

DAY = WEEK[-1].isoformat()
UTC = dt.UTC


def tick(when: dt.datetime):
    schedule = defs.resolve_schedule_def("daily_retrain_schedule")
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when,
                                            repository_def=defs.get_repository_def())
        return schedule.evaluate_tick(context)


def test_schedule_retrains_the_previous_day_at_two_and_starts_stopped():
    schedule = defs.resolve_schedule_def("daily_retrain_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 2 * * *", "UTC")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.job_name == "daily_retrain"

    data = tick(dt.datetime(2026, 3, 2, 2, 0, tzinfo=UTC))
    [request] = data.run_requests
    assert request.partition_key == "2026-03-01"
    # The run key is the day: a tick evaluated twice never launches the same day twice.
    assert request.run_key == "2026-03-01"
    # Before the first day has ended there is nothing to train.
    assert not tick(dt.datetime(2026, 1, 1, 2, 0, tzinfo=UTC)).run_requests


def test_daily_job_materializes_the_day_then_its_model_not_the_static_tables():
    job = defs.resolve_job_def("daily_retrain")
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {
        "interaction_edges", "hetero_graph", "link_split", "trained_gat", "oracle_metrics", "test_auc",
        "candidate_log", "relevance_labels", "relevance_model", "funnel_metrics", "relevance_trend",
        "relevance_experiments"}
    assert job.partitions_def == defs.resolve_job_def("adrel_job").partitions_def


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An instance with a week of days and the last day's model: (instance, tracking_uri)."""
    uri = sqlite_uri(tmp_path_factory.mktemp("mlflow"))
    with dg.instance_for_test() as instance:
        assert all(r.success for r in materialize_week(instance, uri))
        yield instance, uri


def events(result, kind: str) -> list:
    return [e for e in result.all_events if e.event_type_value == kind]


@pytest.mark.slow
def test_transient_training_failure_is_retried_with_backoff(trained, monkeypatch):
    instance, uri = trained
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("worker lost")
        return train_gat(*args, **kwargs)

    train_gat = training.train_gat
    monkeypatch.setattr(training, "train_gat", flaky)  # the asset imports it when it runs
    result = materialize(instance, uri, selection=["trained_gat"])
    assert result.success and len(calls) == 2
    [retry] = events(result, "STEP_UP_FOR_RETRY")
    assert retry.step_key == "trained_gat" and "worker lost" in str(retry.event_specific_data)
    assert model_assets.RETRY.max_retries == 2 and model_assets.RETRY.backoff == dg.Backoff.EXPONENTIAL


@pytest.mark.slow
def test_failure_sensor_names_the_asset_the_partition_and_the_error(trained):
    instance, uri = trained
    bad = {"ops": {"trained_gat": {"config": {"epochs": 0}}}}
    result = materialize(instance, uri, run_config=bad, selection=["trained_gat"], raise_on_error=False)
    assert not result.success and not events(result, "STEP_UP_FOR_RETRY")  # config errors are not retried
    run = instance.get_run_by_id(result.run_id)
    message = describe_failure(instance, run)
    assert f"asset trained_gat (partition {DAY}) failed: epochs=0 is out of range" in message

    failure = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)[0].dagster_event
    context = dg.build_run_status_sensor_context(
        sensor_name="report_failed_runs", dagster_instance=instance, dagster_run=run, dagster_event=failure,
    ).for_run_failure()
    logged = []
    context.log.error = logged.append  # what the sensor tick's log shows in the UI
    report_failed_runs(context)
    assert logged == [message]


_split_links = split_module.split_links


def leaky_split(graph, spec):
    """The seed notebook's defect, injected: test positives left in the training graph."""
    split = _split_links(graph, spec)
    test = split["test"][USER_AD]
    leaked = test.edge_label_index[:, test.edge_label == 1][:, :5]
    train = split_module.with_message_passing(
        split["train"], torch.cat([split["train"][USER_AD].edge_index, leaked], dim=1))
    assert torch.equal(train[AD_USER].edge_index, train[USER_AD].edge_index.flip(0))
    return {**split, "train": train}


def check_status(instance, asset: str, name: str):
    key = dg.AssetCheckKey(dg.AssetKey(asset), name)
    return instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]


@pytest.mark.slow
def test_leaky_split_is_stopped_by_a_blocking_check_before_training(trained, monkeypatch):
    instance, uri = trained
    storage = Path(instance.storage_directory())
    split_before = (storage / "link_split" / f"{DAY}.pt").read_bytes()
    trainings = len(instance.fetch_materializations(dg.AssetKey("trained_gat"), limit=100).records)

    monkeypatch.setattr(split_module, "split_links", leaky_split)  # the asset imports it when it runs
    result = materialize(instance, uri, selection=["link_split", "trained_gat", "test_auc"], raise_on_error=False)
    assert not result.success
    assert "no_supervision_leakage: supervision leaks into message passing: 5 test positives in the train " \
           "message-passing graph (5 forward, 5 reverse)" in str(result.all_events)
    assert check_status(instance, "link_split", "no_supervision_leakage").status.value == "FAILED"
    # Nothing written, nothing trained downstream.
    assert (storage / "link_split" / f"{DAY}.pt").read_bytes() == split_before
    assert not result.get_asset_materialization_events()
    assert len(instance.fetch_materializations(dg.AssetKey("trained_gat"), limit=100).records) == trainings


@pytest.mark.slow
def test_model_failing_a_blocking_check_is_not_registered(trained):
    instance, uri = trained
    client = MlflowClient(uri, registry_uri=uri)
    versions = len(client.search_model_versions(f"name='{registry.DEFAULT_MODEL_NAME}'"))
    champion = client.get_model_version_by_alias(registry.DEFAULT_MODEL_NAME, registry.CHAMPION).version
    strict = {"ops": {"test_auc": {"config": {"min_test_auc": 0.99}}}}
    result = materialize(instance, uri, run_config=strict, selection=["test_auc"], raise_on_error=False)
    assert not result.success
    assert check_status(instance, "test_auc", "test_auc_above_chance").status.value == "FAILED"
    assert check_status(instance, "test_auc", "test_auc_within_oracle_ceiling").status.value == "SUCCEEDED"
    assert len(client.search_model_versions(f"name='{registry.DEFAULT_MODEL_NAME}'")) == versions
    assert client.get_model_version_by_alias(registry.DEFAULT_MODEL_NAME, registry.CHAMPION).version == champion
    run = client.get_run(metadata(instance, "trained_gat")["mlflow_run_id"])
    assert run.data.tags["adrel.promotion"] == "rejected" and "below the minimum 0.9900" in \
        run.data.tags["adrel.promotion_reason"]


@pytest.mark.slow
def test_bad_check_bounds_name_the_field_and_range(trained):
    instance, uri = trained
    bad = {"ops": {"test_auc": {"config": {"oracle_tolerance_se": -0.1}}}}
    result = materialize(instance, uri, run_config=bad, selection=["test_auc"], raise_on_error=False)
    assert not result.success
    assert "oracle_tolerance_se=-0.1 is out of range: must be a number in [0, 10]" in str(result.all_events)


@pytest.mark.parametrize("value, expected", [(None, dg.in_process_executor), ("", dg.in_process_executor),
                                             ("in_process", dg.in_process_executor),
                                             ("multiprocess", dg.multiprocess_executor)])
def test_executor_is_chosen_by_configuration(value, expected):
    assert executor_from_env({} if value is None else {"ADREL_EXECUTOR": value}) is expected


def test_unknown_or_missing_executor_fails_clearly():
    with pytest.raises(ValueError, match="ADREL_EXECUTOR='threads' is not allowed: must be one of in_process, "
                                         "multiprocess, k8s, celery"):
        executor_from_env({"ADREL_EXECUTOR": "threads"})
    for name, package in (("k8s", "dagster-k8s"), ("celery", "dagster-celery")):
        try:
            __import__(package.replace("-", "_"))
        except ImportError:
            with pytest.raises(RuntimeError, match=f"needs the {package} package: pip install {package}"):
                executor_from_env({"ADREL_EXECUTOR": name})


@pytest.mark.slow
def test_multiprocess_executor_materializes_the_pipeline(tmp_path, monkeypatch):
    """The relevance pipeline for the first day through the CLI, each step in its own process."""
    home = dagster_home(tmp_path / "home")
    (tmp_path / "run.yaml").write_text(
        "resources:\n  world:\n    config: {num_users: 500, num_items: 2000, num_interactions: 70000}\n"
        "ops:\n  trained_gat:\n    config: {epochs: 5}\n  test_auc:\n    config: {min_test_auc: 0.5}\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "ADREL_EXECUTOR": "multiprocess",
           "MLFLOW_TRACKING_URI": sqlite_uri(tmp_path)}
    proc = subprocess.run([DAGSTER_CLI, "asset", "materialize", "-m", "adrel_pipeline.definitions",
                           "--select", "*test_auc", "--partition", "2026-01-01", "-c", str(tmp_path / "run.yaml")],
                          check=False, capture_output=True, text=True, env=env, timeout=500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # the project's dagster.yaml places storage by it
    with dg.DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS
        records = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
        steps = {r.step_key: r.dagster_event.pid for r in records}
        assert set(steps) == {"users", "items", "interaction_edges", "hetero_graph", "link_split", "trained_gat",
                              "oracle_metrics", "test_auc"}
        # One worker process per step.
        assert len(set(steps.values())) == len(steps)
        latest = instance.get_latest_materialization_event(dg.AssetKey("test_auc")).asset_materialization
        assert latest.partition == "2026-01-01"
