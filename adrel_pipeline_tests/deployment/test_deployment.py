"""The real deployment (`make deploy-up`: config/deployment/, scripts/deploy.py) on this machine:
Dagster instance storage on PostgreSQL, the queued run coordinator and the daemon, steps on two
Celery workers (RabbitMQ), an MLflow tracking server with a PostgreSQL backend serving its artifacts
over HTTP. One deployment per module, on free ports with its own databases and vhost, a small world.

Runs are launched through the webserver's GraphQL API, as the UI launches them. The relevance
chain of the default pipeline: the week's users, items and interactions (one run), then
hetero_graph → link_split → trained_gat → oracle_metrics → test_auc of its last day.

Faults: a Celery worker killed in the middle of trained_gat; the MLflow server's database taken
away mid-run; two runs of one partition submitted at once.

Skipped, saying which, where PostgreSQL or RabbitMQ (or rabbitmqctl, for the vhost) is unreachable.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.request

import pytest
from mlflow import MlflowClient

from adrel_pipeline.mlops import registry, store
from adrel_pipeline_tests.conftest import MODEL_ASSETS, WEEK, WORLD_ASSETS, range_tags
from adrel_pipeline_tests.deployment.harness import Deployment, MlflowServer, pg_rows, unreachable_services

pytestmark = [pytest.mark.deployment, pytest.mark.slow]

DAY = WEEK[-1].isoformat()
MODEL = registry.DEFAULT_MODEL_NAME
PARTITION = {"dagster/partition": DAY}
# Fewer epochs than the default: the deployment's wiring, not the model, is under test.
SHORT = {"ops": {"trained_gat": {"config": {"epochs": 12}}}}
# Long enough (~10 s here) that a fault lands mid-training.
LONG = {"ops": {"trained_gat": {"config": {"epochs": 60, "patience": 60}}}}
RUN_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    reason = unreachable_services()
    if reason:
        pytest.skip(reason)
    deploy = Deployment(tmp_path_factory.mktemp("deployment")).start()
    try:
        yield deploy
    finally:
        deploy.stop()


@pytest.fixture(scope="module")
def week(deployment) -> str:
    """The world's week in one run (a single-run backfill, as `make run`'s first command); its id."""
    run_id = deployment.launch_assets(WORLD_ASSETS, range_tags(WEEK[0].isoformat(), DAY))
    status = deployment.wait_for_run(run_id, timeout=RUN_TIMEOUT_S)
    assert status == "SUCCESS", f"world run {run_id} ended {status}:\n{deployment.run_errors(run_id)}"
    return run_id


def client(url: str) -> MlflowClient:
    return MlflowClient(url, registry_uri=url)


def http_artifact(url: str, artifact_uri: str, path: str) -> bytes:
    """An artifact fetched over plain HTTP from the server's artifact proxy (--serve-artifacts)."""
    assert artifact_uri.startswith("mlflow-artifacts:/"), artifact_uri  # proxied, not a local path
    location = artifact_uri.removeprefix("mlflow-artifacts:").strip("/")
    with urllib.request.urlopen(f"{url}/api/2.0/mlflow-artifacts/artifacts/{location}/{path}", timeout=30) as resp:
        assert resp.status == 200
        return resp.read()


def registry_is_consistent(deploy: Deployment, mlflow: MlflowClient) -> None:
    """No version without a finished MLflow run of a successful Dagster run; every alias on a version
    whose model files download."""
    try:
        aliases = mlflow.get_registered_model(MODEL).aliases
    except Exception:  # noqa: BLE001 - no registered model yet: nothing registered at all
        assert not mlflow.search_model_versions(f"name = '{MODEL}'")
        return
    versions = {str(v.version): v for v in mlflow.search_model_versions(f"name = '{MODEL}'")}
    for version in versions.values():
        assert mlflow.get_run(version.run_id).info.status == "FINISHED", version
        owner = version.tags.get(store.OWNER_TAG)
        assert pg_rows(deploy.dagster_db, "SELECT status FROM runs WHERE run_id = %s", owner) == [("SUCCESS",)], \
            (version.version, owner)
    for alias, version in aliases.items():
        assert str(version) in versions, (alias, version)
        uri = mlflow.get_model_version_download_uri(MODEL, str(version))
        assert b"flavors" in http_artifact(deploy.mlflow_url, uri, "MLmodel"), (alias, version)


def test_the_pipeline_runs_on_celery_workers_and_records_to_postgres_and_the_mlflow_server(deployment, week):
    run_id = deployment.launch_assets(MODEL_ASSETS, PARTITION, SHORT)
    status = deployment.wait_for_run(run_id, timeout=RUN_TIMEOUT_S)
    assert status == "SUCCESS", f"run {run_id} ended {status}:\n{deployment.run_errors(run_id)}"

    # Every step ran in a Celery worker process, not in its run worker: the model's in the current
    # workers' processes (both used: trained_gat and oracle_metrics run side by side), the world's
    # (maybe before another test restarted a worker) in the deployment's named Celery workers.
    workers = deployment.celery_pids()
    assert len(set(workers.values())) == 2
    for run, assets in ((week, WORLD_ASSETS), (run_id, MODEL_ASSETS)):
        [run_start] = deployment.events(run, "PIPELINE_START")
        starts = deployment.events(run, "STEP_START")
        assert sorted(e["step"] for e in starts) == sorted(assets)
        assert all(e["pid"] != run_start["pid"] for e in starts), (starts, run_start)
        handed = [e for e in deployment.events(run, "ENGINE_EVENT") if "in celery worker" in json.dumps(e["event"])]
        assert sorted(e["step"] for e in handed) == sorted(assets)
        nodes = {re.search(r'"(worker\d+)@', json.dumps(e["event"])).group(1) for e in handed}
        assert nodes <= set(workers), (nodes, workers)
    model_pids = {e["pid"] for e in deployment.events(run_id, "STEP_START")}
    assert model_pids == set(workers.values()), (model_pids, workers)

    # The runs and their event logs are rows of the instance's PostgreSQL database.
    rows = dict(pg_rows(deployment.dagster_db, "SELECT run_id, status FROM runs WHERE run_id IN (%s, %s)",
                        week, run_id))
    assert rows == {week: "SUCCESS", run_id: "SUCCESS"}
    [(materialized,)] = pg_rows(deployment.dagster_db, "SELECT count(*) FROM event_logs WHERE run_id = %s AND "
                                "dagster_event_type = 'ASSET_MATERIALIZATION'", run_id)
    assert materialized == len(MODEL_ASSETS)

    # The training's MLflow run and its registered version are on the tracking server, their
    # artifacts downloadable over HTTP through it.
    mlflow = client(deployment.mlflow_url)
    [version] = [v for v in mlflow.search_model_versions(f"name = '{MODEL}'")
                 if v.tags.get(store.OWNER_TAG) == run_id]
    training = mlflow.get_run(version.run_id)
    assert training.info.status == "FINISHED"
    assert training.data.tags[store.OWNER_TAG] == run_id
    assert "train_loss" in training.data.metrics
    config = json.loads(http_artifact(deployment.mlflow_url, training.info.artifact_uri, "config.json"))
    assert config, "the training's config.json artifact is empty"
    uri = mlflow.get_model_version_download_uri(MODEL, str(version.version))
    assert b"flavors" in http_artifact(deployment.mlflow_url, uri, "MLmodel")
    registry_is_consistent(deployment, mlflow)


def test_a_celery_worker_killed_mid_training_hands_the_step_to_the_other(deployment, week):
    run_id = deployment.launch_assets(MODEL_ASSETS, PARTITION, LONG)
    mlflow = client(deployment.mlflow_url)
    workers = deployment.celery_pids()
    try:
        step = deployment.wait_for_event(run_id, "STEP_START", "trained_gat")
        assert step["pid"] in workers.values(), (step, workers)
        # The training has opened its MLflow run: the worker dies mid-step.
        deadline = time.monotonic() + 120
        while not (opened := [r for r in mlflow.search_runs(
                [mlflow.get_experiment_by_name(store.DEFAULT_EXPERIMENT).experiment_id],
                filter_string=f"tags.`{store.OWNER_TAG}` = '{run_id}'")]):
            assert time.monotonic() < deadline, deployment.run_errors(run_id)
            time.sleep(0.2)
        os.kill(step["pid"], signal.SIGKILL)
        status = deployment.wait_for_run(run_id, timeout=RUN_TIMEOUT_S)
        assert status == "SUCCESS", f"run {run_id} ended {status}:\n{deployment.run_errors(run_id)}"
    finally:
        deployment.start()  # `deploy.py up` again: restarts the killed worker for the other tests

    # Celery requeued the step (acks late, rejected on worker loss) and the surviving worker ran it:
    # two starts, one success, one materialization.
    starts = deployment.events(run_id, "STEP_START", "trained_gat")
    assert len(starts) == 2 and starts[0]["pid"] == step["pid"], starts
    assert starts[1]["pid"] in set(workers.values()) - {step["pid"]}, (starts, workers)
    assert len(deployment.events(run_id, "STEP_SUCCESS", "trained_gat")) == 1
    [materialization] = deployment.events(run_id, "ASSET_MATERIALIZATION", "trained_gat")
    assert materialization["pid"] == starts[1]["pid"]
    assert len(deployment.events(run_id, "ASSET_MATERIALIZATION", "test_auc")) == 1

    # The model file is the retry's, whole; the killed attempt's MLflow run finished nothing and
    # registered nothing; this run registered exactly one version, of a finished MLflow run.
    model_file = deployment.storage / "trained_gat" / f"{DAY}.pt"
    assert model_file.stat().st_mtime >= starts[1]["timestamp"]
    assert [p.name for p in model_file.parent.iterdir()] == [model_file.name]
    trainings = mlflow.search_runs([opened[0].info.experiment_id],
                                   filter_string=f"tags.`{store.OWNER_TAG}` = '{run_id}'")
    assert sorted(r.info.status for r in trainings) == ["FINISHED", "RUNNING"], trainings
    [killed] = [r for r in trainings if r.info.status == "RUNNING"]
    versions = [v for v in mlflow.search_model_versions(f"name = '{MODEL}'") if v.tags.get(store.OWNER_TAG) == run_id]
    assert len(versions) == 1 and versions[0].run_id != killed.info.run_id
    registry_is_consistent(deployment, mlflow)


def test_losing_the_mlflow_database_mid_run_fails_naming_the_store_and_registers_nothing(
        deployment, week, tmp_path):
    server = MlflowServer(tmp_path).start()
    try:
        config = {**LONG, "resources": {"mlflow": {"config": {"tracking_uri": server.url}}}}
        run_id = deployment.launch_assets(MODEL_ASSETS, PARTITION, config)
        deployment.wait_for_event(run_id, "STEP_START", "trained_gat")
        server.block_database()
        status = deployment.wait_for_run(run_id, timeout=RUN_TIMEOUT_S)
        errors = deployment.error_messages(run_id)
        server.unblock_database()

        # The failure names the tracking store whose database went away (the server answers 503).
        assert status == "FAILURE", f"run {run_id} ended {status}"
        assert f"MLflow tracking store {server.url} is unusable" in errors, errors
        assert not deployment.events(run_id, "ASSET_MATERIALIZATION", "test_auc")
        # With its database back, the server shows no version, and no finished training, of this run.
        mlflow = client(server.url)
        assert not [v for v in mlflow.search_model_versions(f"name = '{MODEL}'")
                    if v.tags.get(store.OWNER_TAG) == run_id]
        experiment = mlflow.get_experiment_by_name(store.DEFAULT_EXPERIMENT)
        assert not mlflow.search_runs([experiment.experiment_id], filter_string="attributes.status = 'FINISHED'")
        registry_is_consistent(deployment, mlflow)
    finally:
        server.stop()


def test_two_runs_of_one_partition_submitted_at_once_run_one_after_the_other(deployment, week):
    first = deployment.launch_assets(["hetero_graph"], PARTITION)
    second = deployment.launch_assets(["hetero_graph"], PARTITION)
    for run_id in (first, second):
        status = deployment.wait_for_run(run_id, timeout=RUN_TIMEOUT_S)
        assert status == "SUCCESS", f"run {run_id} ended {status}:\n{deployment.run_errors(run_id)}"
    # The instance's tag limit (config/deployment/dagster.yaml: one run per dagster/partition value)
    # held one back although max_concurrent_runs would have started both.
    (start_a, end_a), (start_b, end_b) = sorted(deployment.run_times(r) for r in (first, second))
    assert end_a <= start_b, f"runs overlapped: {start_a}-{end_a} and {start_b}-{end_b}"
