"""Killed runs: a training killed outright (kill -9) leaves the last good model and the registry as
they were; the daemon's run monitoring fails its Dagster run (config/dagster.yaml); the next
training marks its MLflow run, left RUNNING, KILLED and succeeds."""

import logging
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
from dagster._daemon.monitoring import run_monitoring
from mlflow import MlflowClient

from adrel_pipeline.mlops import registry, store
from adrel_pipeline_tests.conftest import DAGSTER_CLI, SMALL_WORLD, WEEK, dagster_home, sqlite_uri

DAY = WEEK[-1].isoformat()
MODEL = registry.DEFAULT_MODEL_NAME
WORLD_YAML = "resources:\n  world:\n    config: {" + ", ".join(f"{k}: {v}" for k, v in SMALL_WORLD.items()) + "}\n"


def run_config(folder: Path, name: str, **train) -> str:
    path = folder / f"{name}.yaml"
    path.write_text(WORLD_YAML + "ops:\n  trained_gat:\n    config: {"
                    + ", ".join(f"{k}: {v}" for k, v in train.items()) + "}\n")
    return str(path)


def materialize_args(select: str, *args: str) -> list[str]:
    return [DAGSTER_CLI, "asset", "materialize", "-m", "adrel_pipeline.definitions", "--select", select, *args]


def cli(env, select: str, *args: str) -> None:
    proc = subprocess.run(materialize_args(select, *args), check=False, capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def registry_state(client: MlflowClient) -> tuple[set[str], dict[str, str]]:
    versions = {str(v.version) for v in client.search_model_versions(f"name = '{MODEL}'")}
    return versions, {k: str(v) for k, v in client.get_registered_model(MODEL).aliases.items()}


def running_runs(client: MlflowClient, experiment_id: str):
    return client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'")


def wait_for_training(client: MlflowClient, experiment_id: str, proc: subprocess.Popen, log: Path):
    """The MLflow run of the training ``proc`` runs, once it has logged an epoch."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the training exited early:\n{log.read_text()[-3000:]}"
        for found in running_runs(client, experiment_id):
            if client.get_metric_history(found.info.run_id, "train_loss"):
                return found
        time.sleep(0.5)
    raise AssertionError(f"no training reached its first epoch:\n{log.read_text()[-3000:]}")


class _DaemonWorkspace:
    """What the monitoring daemon's iteration reads of its workspace context for STARTED runs."""

    def __init__(self, instance):
        self.instance = instance

    def create_request_context(self):
        return None


def monitor(instance, seconds_later: float = 0.0) -> None:
    """One iteration of the daemon's run monitoring, as if ``seconds_later`` had passed."""
    now = time.time() + seconds_later
    patch = pytest.MonkeyPatch()
    patch.setattr(run_monitoring, "get_current_timestamp", lambda: now)
    try:
        errors = [e for e in run_monitoring.execute_run_monitoring_iteration(
            _DaemonWorkspace(instance), logging.getLogger("run_monitoring")) if e is not None]
    finally:
        patch.undo()
    assert not errors, errors


@pytest.mark.slow
def test_a_killed_training_changes_nothing_and_the_next_one_ends_its_mlflow_run(tmp_path, monkeypatch):
    home = dagster_home(tmp_path / "home")
    uri = sqlite_uri(tmp_path)
    env = {**os.environ, "DAGSTER_HOME": str(home), "MLFLOW_TRACKING_URI": uri, "ADREL_EXECUTOR": "in_process"}
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # the project's dagster.yaml places storage by it

    # The world's week, then a good model of its last day: registered, champion.
    world = tmp_path / "world.yaml"
    world.write_text(WORLD_YAML)
    cli(env, "users,items,interaction_edges", "--partition-range", f"{WEEK[0]}...{WEEK[-1]}", "-c", str(world))
    cli(env, "hetero_graph*", "--partition", DAY, "-c", run_config(tmp_path, "good", epochs=12))
    model_file = home / "storage" / "trained_gat" / f"{DAY}.pt"
    good_bytes, good_mtime = model_file.read_bytes(), model_file.stat().st_mtime_ns
    client = MlflowClient(uri, registry_uri=uri)
    experiment_id = client.get_experiment_by_name(store.DEFAULT_EXPERIMENT).experiment_id
    good_registry = registry_state(client)
    assert good_registry[1] == {"champion": "1"}
    assert not running_runs(client, experiment_id)

    # A long training, killed with SIGKILL mid-training: the in-process executor runs the step in
    # the CLI's own process.
    log = tmp_path / "killed.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(materialize_args("trained_gat", "--partition", DAY, "-c",
                                                 run_config(tmp_path, "long", epochs=400, patience=400)),
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        orphan = wait_for_training(client, experiment_id, proc, log)
        killed_run_id = orphan.data.tags[store.OWNER_TAG]
        with dg.DagsterInstance.get() as instance:
            [step_start] = instance.all_logs(killed_run_id, of_type=dg.DagsterEventType.STEP_START)
            assert step_start.dagster_event.pid == proc.pid
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # The last good model and the registry are untouched.
    assert model_file.read_bytes() == good_bytes
    assert model_file.stat().st_mtime_ns == good_mtime
    assert sorted(p.name for p in model_file.parent.iterdir()) == [model_file.name]
    assert registry_state(client) == good_registry
    # The problem: nothing ended either run. The MLflow run stays RUNNING, the Dagster run STARTED.
    assert client.get_run(orphan.info.run_id).info.status == "RUNNING"
    with dg.DagsterInstance.get() as instance:
        assert instance.get_run_by_id(killed_run_id).status == dg.DagsterRunStatus.STARTED

        # Run monitoring, as the daemon of `make ui` runs it with config/dagster.yaml: the default run
        # launcher cannot see the dead worker, so the run stays STARTED until it has been running
        # max_runtime_seconds; then it is marked FAILED.
        assert instance.run_monitoring_enabled
        max_runtime = instance.run_monitoring_max_runtime_seconds
        assert 0 < max_runtime <= 30 * 60
        monitor(instance)
        assert instance.get_run_by_id(killed_run_id).status == dg.DagsterRunStatus.STARTED
        monitor(instance, seconds_later=max_runtime + 1)
        assert instance.get_run_by_id(killed_run_id).status == dg.DagsterRunStatus.FAILURE

        # Bystanders the next training must leave RUNNING: a run not recorded by the pipeline, and
        # one whose Dagster run is still in progress. A run whose Dagster run is unknown here is
        # ended like the killed one.
        live = dg.DagsterRun(job_name="__ASSET_JOB", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED)
        instance.add_run(live)
    untagged = client.create_run(experiment_id).info.run_id
    of_live = client.create_run(experiment_id, tags={store.OWNER_TAG: live.run_id}).info.run_id
    of_unknown = client.create_run(experiment_id, tags={store.OWNER_TAG: str(uuid.uuid4())}).info.run_id

    # The next training succeeds and ends the orphaned MLflow runs KILLED.
    cli(env, "trained_gat,test_auc", "--partition", DAY, "-c", run_config(tmp_path, "next", epochs=12))
    with dg.DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("trained_gat"))
        next_run_id = event.run_id
        assert next_run_id != killed_run_id
        assert instance.get_run_by_id(next_run_id).status == dg.DagsterRunStatus.SUCCESS
        assert event.asset_materialization.metadata["mlflow_orphaned_runs_killed"].value == 2
        warnings = [r.user_message for r in instance.all_logs(next_run_id) if r.level == logging.WARNING]
        assert any("Marked 2 orphaned MLflow run(s) KILLED" in w and orphan.info.run_id in w for w in warnings)
    for run_id in (orphan.info.run_id, of_unknown):
        killed = client.get_run(run_id)
        assert killed.info.status == "KILLED" and killed.info.end_time is not None
        assert killed.data.tags[store.ORPHANED_BY_TAG] == next_run_id
    assert {r.info.run_id for r in running_runs(client, experiment_id)} == {untagged, of_live}
    versions, aliases = registry_state(client)
    assert versions == good_registry[0] | {"2"} and set(aliases.values()) <= versions
