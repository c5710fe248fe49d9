"""The model registry: versions, aliases, and the promotion gate that moves ``champion``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from adrel_pipeline.mlops.packaging import LoggedModel
from adrel_pipeline.mlops.store import client, store_lock

DEFAULT_MODEL_NAME = "adrel-gat"
CHAMPION, CHALLENGER = "champion", "challenger"


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


