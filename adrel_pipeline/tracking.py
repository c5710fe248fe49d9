"""The MLflow side of a training: the store, the run's records, the registered model and its gate.

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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adrel_pipeline.paths import local_artifact_root

if TYPE_CHECKING:
    from torch_geometric.data import HeteroData

DEFAULT_EXPERIMENT = "adrel"
DEFAULT_MODEL_NAME = "adrel-gat"
CHAMPION, CHALLENGER = "champion", "challenger"
MODEL_ARTIFACT = "model"
PROBE_TIMEOUT_S = 10
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
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)


def client():
    from mlflow import MlflowClient

    return MlflowClient()


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


def pip_requirements() -> list[str]:
    import mlflow
    import numpy
    import pandas
    import polars
    import torch
    import torch_geometric

    return [f"torch=={torch.__version__.split('+')[0]}", f"torch_geometric=={torch_geometric.__version__}",
            f"mlflow=={mlflow.__version__}", f"numpy=={numpy.__version__}", f"pandas=={pandas.__version__}",
            f"polars=={polars.__version__}"]


@dataclass(frozen=True)
class LoggedModel:
    model_uri: str
    model_id: str | None


def model_signature():
    """Input: integer ``user_id`` and ``ad_id`` columns; output: one float32 probability per row."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    return ModelSignature(inputs=Schema([ColSpec("long", "user_id"), ColSpec("long", "ad_id")]),
                          outputs=Schema([TensorSpec(np.dtype("float32"), (-1,))]))


def log_model(checkpoint: dict, graph: HeteroData, input_example) -> LoggedModel:
    """Log the pyfunc (weights + scoring graph) to the active run, with signature and example."""
    import mlflow
    import torch

    from adrel_pipeline import pyfunc_model, serialization

    with tempfile.TemporaryDirectory() as tmp:
        paths = {pyfunc_model.CHECKPOINT: Path(tmp) / "checkpoint.pt", pyfunc_model.GRAPH: Path(tmp) / "graph.pt"}
        torch.save(checkpoint, paths[pyfunc_model.CHECKPOINT])
        serialization.save(graph, paths[pyfunc_model.GRAPH])
        info = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=pyfunc_model.__file__,
            artifacts={k: str(v) for k, v in paths.items()},
            signature=model_signature(),
            input_example=input_example,
            pip_requirements=pip_requirements(),
        )
    return LoggedModel(model_uri=info.model_uri, model_id=getattr(info, "model_id", None))


def load_pyfunc(model_uri: str):
    """The registered model as our Python class (``.model``, ``.ranker``), from any model URI."""
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model()


@dataclass(frozen=True)
class Promotion:
    version: str
    alias: str                       # CHAMPION or CHALLENGER
    reason: str
    previous_champion: str | None    # version that held the alias before the gate ran
    champion_test_auc: float | None  # that version's AUC on this run's test split


def version_by_alias(name: str, alias: str):
    """The model version holding ``alias``, or None (no such model or alias)."""
    from mlflow.exceptions import MlflowException

    try:
        return client().get_model_version_by_alias(name, alias)
    except MlflowException as e:
        if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def registered_version_of_run(name: str, run_id: str):
    """The version already registered from ``run_id`` (a re-evaluation), else None."""
    versions = client().search_model_versions(f"name='{name}' and run_id='{run_id}'")
    return max(versions, key=lambda v: int(v.version)) if versions else None


def register_and_promote(
    name: str,
    run_id: str,
    model: LoggedModel,
    test_auc: float,
    score_champion: Callable[[str], tuple[float | None, str]],
    tags: Mapping[str, str],
) -> Promotion:
    """Register ``model`` as a new version of ``name`` and run the promotion gate.

    ``score_champion(model_uri)`` evaluates the current champion on *this* run's test split and
    returns ``(auc, what_was_compared)``, or ``(None, why_not_comparable)``. The new version
    becomes ``champion`` if there is none or if its test AUC is at least the champion's on the
    same pairs; otherwise it becomes ``challenger``. An incomparable champion is never replaced
    automatically.

    Call it only after the run's metrics and artifacts are logged. The whole gate holds the
    store lock, and a version whose alias cannot be set is deleted again, so the registry never
    keeps a version without its decision.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow_client = client()
    with store_lock(mlflow.get_tracking_uri()):
        try:
            mlflow_client.create_registered_model(name)
        except MlflowException as e:
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        champion = version_by_alias(name, CHAMPION)
        champion_auc = None
        if champion is None:
            alias, reason = CHAMPION, "first version of the model: no champion yet"
        else:
            champion_auc, compared = score_champion(f"models:/{name}/{champion.version}")
            if champion_auc is None:
                alias, reason = CHALLENGER, (f"champion v{champion.version} is not comparable ({compared}); "
                                             "promote by hand if this version should serve")
            elif test_auc >= champion_auc:
                alias, reason = CHAMPION, (f"test AUC {test_auc:.4f} >= champion v{champion.version}'s "
                                           f"{champion_auc:.4f} on {compared}")
            else:
                alias, reason = CHALLENGER, (f"test AUC {test_auc:.4f} < champion v{champion.version}'s "
                                             f"{champion_auc:.4f} on {compared}")

        version = mlflow_client.create_model_version(
            name, source=model.model_uri, run_id=run_id, model_id=model.model_id,
            tags={**tags, "test_auc": f"{test_auc:.6f}", "promotion": alias, "promotion_reason": reason},
            description=reason,
        )
        try:
            mlflow_client.set_registered_model_alias(name, alias, version.version)
        except BaseException:
            mlflow_client.delete_model_version(name, version.version)
            raise
    return Promotion(version=str(version.version), alias=alias, reason=reason,
                     previous_champion=None if champion is None else str(champion.version),
                     champion_test_auc=champion_auc)


def run_url(ui_url: str, experiment_id: str, run_id: str) -> str:
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def model_version_url(ui_url: str, name: str, version: str) -> str:
    return f"{ui_url.rstrip('/')}/#/models/{name}/versions/{version}"
