"""The deployment's configuration files (config/deployment/) as Dagster and dagster-celery read them,
without any service: a second or so. The deployment itself is exercised by test_deployment.py."""

from __future__ import annotations

import pytest
import yaml

from adrel_pipeline.defs.shared.executors import CELERY_CONFIG_ENV, EXECUTOR_ENV, executor_from_env
from adrel_pipeline_tests.defs.ui_driver import REPO

CONFIG = REPO / "config" / "deployment"
pytest.importorskip("dagster_celery", reason="the deployment's packages are not installed: pip install -e '.[deploy]'")


def test_the_instance_queues_runs_one_per_partition_on_postgres():
    from dagster._core.instance.config import dagster_instance_config
    from dagster._serdes import ConfigurableClassData

    config, _ = dagster_instance_config(str(CONFIG), "dagster.yaml")
    assert set(config["storage"]) == {"postgres"}
    # The scheme dagster-postgres is written for: a bare postgresql:// would load psycopg 3.
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    coordinator = config["run_coordinator"]
    assert coordinator["class"] == "QueuedRunCoordinator"
    queue = ConfigurableClassData(coordinator["module"], coordinator["class"],
                                  yaml.safe_dump(coordinator["config"])).rehydrate(as_type=object).get_run_queue_config()
    assert queue.max_concurrent_runs > 1
    assert {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} \
        in queue.tag_concurrency_limits


def test_the_celery_executor_takes_the_workers_config(monkeypatch):
    from dagster_celery.cli import get_validated_config

    monkeypatch.setenv("ADREL_CELERY_BROKER", "pyamqp://guest:guest@127.0.0.1:5672/somewhere")
    workers = get_validated_config(str(CONFIG / "celery.yaml"))  # what `dagster-celery worker start -y` reads
    assert workers["broker"] == "pyamqp://guest:guest@127.0.0.1:5672/somewhere"
    # A killed worker's step is requeued, not lost (the deployment test kills one).
    assert workers["config_source"]["task_acks_late"] and workers["config_source"]["task_reject_on_worker_lost"]

    executor = executor_from_env({EXECUTOR_ENV: "celery", CELERY_CONFIG_ENV: str(CONFIG / "celery.yaml")})
    resolved = executor.config_schema.resolve_config({})  # a launch with no execution config
    assert resolved.success, resolved.errors
    assert resolved.value["config"] == workers
    # Without the file, the plain executor (its config from run config).
    from dagster_celery import celery_executor

    assert executor_from_env({EXECUTOR_ENV: "celery"}) is celery_executor
