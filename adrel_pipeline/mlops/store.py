"""The MLflow store and a training's run records: connect (fail fast), lock, runs, params, metrics,
artifacts.

Plain MLflow, no Dagster: the Dagster resource and assets call these functions. ``mlflow`` and
torch are imported inside the functions because importing them costs about 1.5 s and 3 s,
which only the steps that record a training should pay (not every load of the code location).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from adrel_pipeline.mlops.paths import local_artifact_root

DEFAULT_EXPERIMENT = "adrel"
PROBE_TIMEOUT_S = 10
# The tag tying an MLflow run to the Dagster run that opened it (MlflowTracking.dagster_tags).
OWNER_TAG = "dagster.run_id"
# Set on a run that end_orphaned_runs marked KILLED: the Dagster run that found it orphaned.
ORPHANED_BY_TAG = "adrel.orphaned_by"
# MLflow retries an unreachable server with backoff for about 4 minutes by default.
HTTP_RETRY_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking store cannot be reached or used."""


@contextmanager
def store_lock(tracking_uri: str) -> Iterator[None]:
    """An exclusive lock per tracking store, shared by every process on this host.

    It serialises what MLflow does not make atomic: creating a fresh sqlite schema and the
    experiment, and the promotion gate's read-compare-move of the ``champion`` alias. The
    embedded sqlite store is host-local, so this covers it fully; trainings on several hosts
    against one tracking server are serialised per host only.
    """
    digest = hashlib.sha1(tracking_uri.encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"adrel-mlflow-{digest}.lock"
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _probe_server(tracking_uri: str) -> None:
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as response:
            response.read()
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise TrackingUnavailable(f"MLflow tracking server {tracking_uri} is unreachable ({url}: {reason})") from e


def connect(tracking_uri: str, experiment_name: str) -> str:
    """Point this process's MLflow client at ``tracking_uri``; return the experiment's id.

    Creates the store and the experiment when missing (for a sqlite store, with its artifacts
    in ``mlartifacts/`` beside the database). Fails fast, naming the URI, when the store is
    unreachable or unusable: a server is probed once with a short timeout instead of MLflow's
    minutes of retries.
    """
    if tracking_uri.startswith(("http://", "https://")):
        for key, value in HTTP_RETRY_DEFAULTS.items():
            os.environ.setdefault(key, value)
        _probe_server(tracking_uri)
    try:
        from mlflow import MlflowClient

        with store_lock(tracking_uri):
            client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
            experiment = client.get_experiment_by_name(experiment_name)
            if experiment is None:
                root = local_artifact_root(tracking_uri)
                experiment_id = client.create_experiment(
                    experiment_name, artifact_location=root.as_uri() if root else None)
            elif experiment.lifecycle_stage != "active":
                raise TrackingUnavailable(
                    f"MLflow experiment {experiment_name!r} in {tracking_uri} is deleted: restore it "
                    "(mlflow experiments restore) or choose another experiment_name")
            else:
                experiment_id = experiment.experiment_id
    except TrackingUnavailable:
        raise
    except Exception as e:
        raise TrackingUnavailable(
            f"MLflow tracking store {tracking_uri} is unusable: {type(e).__name__}: {e}") from e
    use_store(tracking_uri)
    return experiment_id


def use_store(tracking_uri: str) -> None:
    """Point this process's MLflow client (tracking and registry) at ``tracking_uri``."""
    import mlflow

    # Progress bars for local artifact copies only clutter the Dagster step logs.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow also writes the URI into $MLFLOW_TRACKING_URI/$MLFLOW_REGISTRY_URI, the process's
    # default store (paths.default_tracking_uri): in a long-lived worker (a Celery worker runs
    # step after step) one run's tracking_uri would become the next run's default. Keep them.
    saved = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def client():
    from mlflow import MlflowClient

    return MlflowClient()


def end_orphaned_runs(experiment_id: str, is_alive: Callable[[str], bool], found_by: str = "") -> list[str]:
    """Mark KILLED this experiment's runs left RUNNING by a Dagster run that is no longer alive.

    A run worker killed outright (``kill -9``, out of memory, a lost host) never ends its MLflow
    run: it stays RUNNING for ever. Every RUNNING run that carries ``dagster.run_id`` and whose
    Dagster run ``is_alive`` says is dead is set to KILLED (end time: now) and tagged
    ``adrel.orphaned_by`` (``found_by``: the caller's Dagster run) and ``adrel.orphaned_reason``.
    Runs without the tag (not recorded by the pipeline) and runs of live Dagster runs are left
    alone. Returns the MLflow run ids marked, oldest first.
    """
    mlflow_client = client()
    alive: dict[str, bool] = {}
    orphaned: list[tuple[str, str]] = []
    page_token = None
    while True:
        page = mlflow_client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'",
                                         order_by=["attributes.start_time ASC"], page_token=page_token)
        for found in page:
            owner = found.data.tags.get(OWNER_TAG)
            if not owner:
                continue
            if owner not in alive:
                alive[owner] = is_alive(owner)
            if not alive[owner]:
                orphaned.append((found.info.run_id, owner))
        page_token = page.token
        if not page_token:
            break
    for run_id, owner in orphaned:
        mlflow_client.set_tag(run_id, ORPHANED_BY_TAG, found_by or "unknown")
        mlflow_client.set_tag(run_id, "adrel.orphaned_reason",
                              f"its Dagster run {owner} ended or vanished while this run was RUNNING "
                              "(worker killed or crashed)")
        mlflow_client.set_terminated(run_id, "KILLED")
    return [run_id for run_id, _ in orphaned]


@contextmanager
def run(experiment_id: str | None = None, run_id: str | None = None, run_name: str | None = None,
        tags: Mapping[str, str] | None = None, description: str | None = None) -> Iterator[str]:
    """A new MLflow run, or ``run_id`` resumed; ends FAILED if the block raises. Yields the run id."""
    import mlflow

    with mlflow.start_run(run_id=run_id, experiment_id=None if run_id else experiment_id,
                          run_name=run_name, tags=dict(tags or {}), description=description) as active:
        yield active.info.run_id


def log_params(groups: Mapping[str, Mapping[str, Any]]) -> None:
    """``{"world": {...}, "train": {...}}`` logged as ``world.seed``, ``train.lr``, ..."""
    import mlflow

    mlflow.log_params({f"{group}.{k}": v for group, params in groups.items() for k, v in params.items()})


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    import mlflow

    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def log_curves(history: Mapping[str, Sequence[float]], keys: Sequence[str], step_key: str = "epoch") -> None:
    """Per-step curves (``history[key][i]`` at step ``history[step_key][i]``) in one write: a
    training of a few seconds should not spend a store round trip per epoch."""
    import time

    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(key, float(value), now, int(step))
               for key in keys for step, value in zip(history[step_key], history[key], strict=True)]
    for start in range(0, len(metrics), 1000):  # MLflow's batch limit
        client().log_batch(mlflow.active_run().info.run_id, metrics=metrics[start:start + 1000])


def set_tags(tags: Mapping[str, str]) -> None:
    import mlflow

    mlflow.set_tags(dict(tags))


def log_bytes(data: bytes, artifact_file: str) -> None:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact_file).name
        path.write_bytes(data)
        mlflow.log_artifact(str(path), artifact_path=str(Path(artifact_file).parent) or None)


def log_dict(data: Mapping[str, Any], artifact_file: str) -> None:
    import mlflow

    mlflow.log_dict(dict(data), artifact_file)


def log_text(text: str, artifact_file: str) -> None:
    import mlflow

    mlflow.log_text(text, artifact_file)


def load_dict(run_id: str, artifact_file: str) -> dict:
    """A JSON artifact of a run (e.g. one written by :func:`log_dict`)."""
    import mlflow

    return mlflow.artifacts.load_dict(f"runs:/{run_id}/{artifact_file}")


def run_url(ui_url: str, experiment_id: str, run_id: str) -> str:
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def model_version_url(ui_url: str, name: str, version: str) -> str:
    return f"{ui_url.rstrip('/')}/#/models/{name}/versions/{version}"
