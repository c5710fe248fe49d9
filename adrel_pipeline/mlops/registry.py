"""The model registry: versions, aliases, and the promotion gate that moves ``champion``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from adrel_pipeline.mlops.packaging import LoggedModel
from adrel_pipeline.mlops.promotion import CHALLENGER, CHAMPION, Comparison, decide
from adrel_pipeline.mlops.store import client, set_tags, store_lock

DEFAULT_MODEL_NAME = "adrel-gat"
# The audience system's per-advertiser heads (adrel_pipeline.audience), registered by audience_models.
ACTALIKE_MODEL_NAME = "adrel-actalike"
# The contextual relevance model (adrel_pipeline.contextual), registered by relevance_model.
RELEVANCE_MODEL_NAME = "adrel-relevance"
__all__ = ["ACTALIKE_MODEL_NAME", "CHALLENGER", "CHAMPION", "DEFAULT_MODEL_NAME", "RELEVANCE_MODEL_NAME", "Promotion",
           "champion_as_of", "register_and_promote", "register_once", "version_by_alias"]


@dataclass(frozen=True)
class Promotion:
    version: str
    alias: str                       # CHAMPION, CHALLENGER, or NO_ALIAS (a backfilled day)
    reason: str
    previous_champion: str | None    # version that held the alias before the gate ran
    champion_test_auc: float | None  # that version's AUC on this run's test split
    se_difference: float | None = None

    @classmethod
    def of_version(cls, version) -> Promotion:
        """The decision recorded on a registered version (a re-evaluation reads it back, unchanged)."""
        tags = version.tags
        number = lambda key: float(tags[key]) if tags.get(key) else None
        return cls(version=str(version.version), alias=tags.get("promotion", ""),
                   reason=tags.get("promotion_reason", ""), previous_champion=tags.get("previous_champion") or None,
                   champion_test_auc=number("champion_test_auc"), se_difference=number("champion_se_difference"))


def version_by_alias(name: str, alias: str):
    """The model version holding ``alias``, or None (no such model or alias)."""
    from mlflow.exceptions import MlflowException

    try:
        return client().get_model_version_by_alias(name, alias)
    except MlflowException as e:
        if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def champion_as_of(name: str, day: str, world_fingerprint: str | None = None):
    """The version that served as ``champion`` when ``day`` began: the newest version of an earlier
    day that took ``champion`` when it was registered (of the world ``world_fingerprint``, when
    given); None when there is none. Later registrations do not change the answer, so a day's
    traffic re-served in a backfill meets the models it met the first time."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client().search_model_versions(f"name='{name}'")
    except MlflowException:
        return None
    served = [v for v in versions if v.tags.get("promotion") == CHAMPION and "" < v.tags.get("partition", "") < day
              and (world_fingerprint is None or v.tags.get("world_fingerprint") == world_fingerprint)]
    return max(served, key=lambda v: (v.tags["partition"], int(v.version))) if served else None


def registered_version_of_run(name: str, run_id: str):
    """The version already registered from ``run_id`` (a re-evaluation), else None."""
    versions = client().search_model_versions(f"name='{name}' and run_id='{run_id}'")
    return max(versions, key=lambda v: int(v.version)) if versions else None


def newest_registered_partition(name: str) -> str | None:
    """The newest ``partition`` tag among the versions of ``name`` (None when there are none)."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client().search_model_versions(f"name='{name}'")
    except MlflowException:
        return None
    days = [v.tags.get("partition") for v in versions if v.tags.get("partition")]
    return max(days) if days else None


def register_once(name: str, run_id: str, rejected: Sequence[str], register: Callable[[], Promotion],
                  log) -> Promotion | None:
    """The registry's decision for the training of MLflow run ``run_id`` (call it inside that run).

    A run registered before (a re-evaluation) keeps its decision as it was: it is never registered
    twice, nor re-tagged (a champion is never "rejected"). Otherwise ``rejected`` (the failed
    blocking checks' descriptions) tags the run ``adrel.promotion=rejected`` and registers nothing
    (returns None), and an accepted run is registered by ``register`` and tagged with its decision.
    ``log``: a logger for what happened (``.error``)."""
    existing = registered_version_of_run(name, run_id)
    if rejected:
        if existing is None:
            set_tags({"adrel.promotion": "rejected", "adrel.promotion_reason": "; ".join(rejected)})
            log.error(f"{name}: not registered, a blocking check failed: {'; '.join(rejected)}")
        else:
            log.error(f"{name} v{existing.version} (already registered, alias kept) fails a blocking check on "
                      f"re-evaluation: {'; '.join(rejected)}")
        return None
    if existing is not None:
        return Promotion.of_version(existing)
    promotion = register()
    set_tags({"adrel.model_version": promotion.version, "adrel.promotion": promotion.alias,
                    "adrel.promotion_reason": promotion.reason})
    return promotion


def register_and_promote(
    name: str,
    run_id: str,
    model: LoggedModel,
    test_auc: float,
    compare_with: Callable[[str, str], tuple[Comparison | None, str]],
    tags: Mapping[str, str],
    partition: str | None = None,
    newest_materialized: str | None = None,
    score_name: str = "test_auc",
) -> Promotion:
    """Register ``model`` as a new version of ``name`` and apply :func:`promotion.decide`.

    ``compare_with(champion_version, model_uri)`` scores the current champion on *this* run's test
    split beside the new model and returns ``(comparison, pairs_described)``, or
    ``(None, why_not_comparable)``. ``newest_materialized`` is the newest day whose model exists
    (Dagster's view); with the registry's own newest ``partition`` tag it decides whether this
    day is a backfill. ``test_auc`` is recorded as the version's tag ``score_name``.

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
        newest = max((d for d in (newest_registered_partition(name), newest_materialized) if d), default=None)
        champion = version_by_alias(name, CHAMPION)
        comparison, incomparable = None, None
        is_backfill = partition is not None and newest is not None and partition < newest
        if champion is not None and not is_backfill:
            comparison, described = compare_with(str(champion.version), f"models:/{name}/{champion.version}")
            incomparable = None if comparison is not None else described
        decision = decide(partition, newest, None if champion is None else str(champion.version),
                          comparison, incomparable)
        recorded = {"promotion": decision.alias or "none", "promotion_reason": decision.reason,
                    score_name: f"{test_auc:.6f}",
                    "previous_champion": "" if champion is None else str(champion.version)}
        if comparison is not None:
            # repr: a re-evaluation reads back exactly the numbers the gate used.
            recorded |= {"champion_test_auc": repr(float(comparison.champion_auc)),
                         "champion_se_difference": repr(float(comparison.se_difference))}
        if partition is not None:
            recorded["partition"] = partition
        version = mlflow_client.create_model_version(
            name, source=model.model_uri, run_id=run_id, model_id=model.model_id,
            tags={**tags, **recorded}, description=decision.reason,
        )
        if decision.alias:
            try:
                mlflow_client.set_registered_model_alias(name, decision.alias, version.version)
            except BaseException:
                mlflow_client.delete_model_version(name, version.version)
                raise
    return Promotion(version=str(version.version), alias=decision.alias or "none", reason=decision.reason,
                     previous_champion=None if champion is None else str(champion.version),
                     champion_test_auc=None if comparison is None else comparison.champion_auc,
                     se_difference=None if comparison is None else comparison.se_difference)


