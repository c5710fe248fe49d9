"""Score (context, ad) rows with the contextual relevance champion from Python, without Dagster:
``score_relevance(rows)`` reads ``models:/adrel-relevance@champion`` from the MLflow registry;
``production_models(day, ...)`` loads the models production served with when a day began."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from adrel_pipeline.mlops import packaging, registry, store
from adrel_pipeline.mlops.paths import default_tracking_uri


def load_relevance_model(tracking_uri: str | None = None, alias: str = registry.CHAMPION):
    """``(version, pyfunc)`` of the ``adrel-relevance`` version holding ``alias``, pinned once loaded."""
    import mlflow.pyfunc

    uri = tracking_uri or default_tracking_uri()
    store.use_store(uri)
    version = registry.version_by_alias(registry.RELEVANCE_MODEL_NAME, alias)
    if version is None:
        raise LookupError(f"registered model {registry.RELEVANCE_MODEL_NAME!r} has no {alias!r} version in {uri}: "
                          "materialize relevance_model first (make run)")
    return str(version.version), mlflow.pyfunc.load_model(f"models:/{registry.RELEVANCE_MODEL_NAME}/{version.version}")


def score_relevance(rows: pd.DataFrame, tracking_uri: str | None = None) -> np.ndarray:
    """The champion's calibrated P(relevant) of each row: the signals (text_match,
    embedding_similarity, image_similarity, category_match; None where absent), surface,
    content_type and query_intent."""
    _, model = load_relevance_model(tracking_uri)
    return np.asarray(model.predict(rows))


@dataclass(frozen=True)
class ProductionModels:
    """What production served with when a day began: the ``adrel-relevance`` model that trims and
    ranks, and the ``adrel-gat`` scorer of home's pCTR, each None where no champion existed yet,
    with a line saying which version (or why none)."""

    relevance: object | None  # a RelevanceModel: .predict(polars frame) -> P(relevant)
    relevance_source: str
    gat: Callable[[np.ndarray, np.ndarray], np.ndarray] | None  # (user ids, ad ids) -> P(interaction)
    gat_source: str


def _source(name: str, version, day: str) -> str:
    if version is None:
        return f"none: no {name} version took champion for a day before {day}"
    return f"{name} v{version.version} (trained for {version.tags['partition']})"


def production_models(day: str, world_fingerprint: str, tracking_uri: str | None = None,
                      relevance: bool = True) -> ProductionModels:
    """The champions of ``adrel-relevance`` (unless ``relevance`` is False) and ``adrel-gat`` as
    of the start of ``day`` (:func:`adrel_pipeline.mlops.registry.champion_as_of`), for the world
    ``world_fingerprint``, loaded from ``tracking_uri`` (default: as :func:`load_relevance_model`)."""
    import mlflow.pyfunc

    store.use_store(tracking_uri or default_tracking_uri())
    rel_version = registry.champion_as_of(registry.RELEVANCE_MODEL_NAME, day, world_fingerprint) if relevance else None
    gat_version = registry.champion_as_of(registry.DEFAULT_MODEL_NAME, day, world_fingerprint)
    rel_model = None
    if rel_version is not None:
        rel_model = packaging.load_pyfunc(f"models:/{registry.RELEVANCE_MODEL_NAME}/{rel_version.version}").model
    gat = None
    if gat_version is not None:
        pyfunc = mlflow.pyfunc.load_model(f"models:/{registry.DEFAULT_MODEL_NAME}/{gat_version.version}")

        def gat(user_ids: np.ndarray, ad_ids: np.ndarray) -> np.ndarray:
            return np.asarray(pyfunc.predict(pd.DataFrame({"user_id": user_ids, "ad_id": ad_ids})), dtype=np.float64)

    return ProductionModels(rel_model, _source(registry.RELEVANCE_MODEL_NAME, rel_version, day) if relevance else
                            "not used", gat, _source(registry.DEFAULT_MODEL_NAME, gat_version, day))
