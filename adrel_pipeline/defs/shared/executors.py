"""Which executor runs a job's steps, chosen per deployment with ``$ADREL_EXECUTOR``.

* ``in_process`` (default): every step in the run's process. torch and PyG import once, which
  is the fastest on one machine for a graph this size.
* ``multiprocess``: one process per step, steps without dependencies between them in parallel
  (``execution: {config: {max_concurrent: N}}`` in run config bounds them).
* ``k8s``: one Kubernetes Job per step (``dagster-k8s``'s ``k8s_job_executor``).
* ``celery``: steps queued to Celery workers (``dagster-celery``'s ``celery_executor``).

The cluster executors are optional installs, imported only when chosen.
"""

from __future__ import annotations

import os

import dagster as dg

EXECUTOR_ENV = "ADREL_EXECUTOR"
EXECUTORS = ("in_process", "multiprocess", "k8s", "celery")


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
        except ImportError as err:
            raise RuntimeError(f"{EXECUTOR_ENV}={name} needs the {package} package: pip install {package}") from err
        return executor
    raise ValueError(f"{EXECUTOR_ENV}={name!r} is not allowed: must be one of {', '.join(EXECUTORS)}")
