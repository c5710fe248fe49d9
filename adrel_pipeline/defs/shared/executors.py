"""Which executor runs a job's steps, chosen per deployment with ``$ADREL_EXECUTOR``.

* ``in_process`` (default): every step in the run's process. torch and PyG import once, which
  is the fastest on one machine for a graph this size.
* ``multiprocess``: one process per step, steps without dependencies between them in parallel
  (``execution: {config: {max_concurrent: N}}`` in run config bounds them).
* ``k8s``: one Kubernetes Job per step (``dagster-k8s``'s ``k8s_job_executor``).
* ``celery``: steps queued to Celery workers (``dagster-celery``'s ``celery_executor``). With
  ``$ADREL_CELERY_CONFIG`` (config/deployment/celery.yaml) its config is that file's
  ``execution.config`` block, the one the workers start with, so a UI launch needs no run config.

The cluster executors are optional installs, imported only when chosen.
"""

from __future__ import annotations

import os

import dagster as dg

EXECUTOR_ENV = "ADREL_EXECUTOR"
EXECUTORS = ("in_process", "multiprocess", "k8s", "celery")
CELERY_CONFIG_ENV = "ADREL_CELERY_CONFIG"


def executor_from_env(environ: dict[str, str] | None = None) -> dg.ExecutorDefinition:
    name = (os.environ if environ is None else environ).get(EXECUTOR_ENV, "").strip() or "in_process"
    if name == "in_process":
        return dg.in_process_executor
    if name == "multiprocess":
        return dg.multiprocess_executor
    if name in ("k8s", "celery"):
        package = {"k8s": "dagster-k8s", "celery": "dagster-celery"}[name]
        try:
            if name == "k8s":
                from dagster_k8s import k8s_job_executor as executor
            else:
                from dagster_celery import celery_executor as executor
                from dagster_celery.cli import get_config_value_from_yaml
        except ImportError as err:
            raise RuntimeError(f"{EXECUTOR_ENV}={name} needs the {package} package: pip install {package}") from err
        config = (os.environ if environ is None else environ).get(CELERY_CONFIG_ENV, "").strip()
        if name == "celery" and config:
            # The workers' file (read the way `dagster-celery worker start -y` reads it): executor and
            # workers cannot disagree on the broker; `{env: VAR}` values resolve in each process.
            return executor.configured(dict(get_config_value_from_yaml(config)), name="celery")
        return executor
    raise ValueError(f"{EXECUTOR_ENV}={name!r} is not allowed: must be one of {', '.join(EXECUTORS)}")
