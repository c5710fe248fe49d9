"""Score (context, ad) rows with the contextual relevance champion from Python, without Dagster:
``score_relevance(rows)`` reads ``models:/adrel-relevance@champion`` from the MLflow registry."""

from __future__ import annotations

import numpy as np
import pandas as pd

from adrel_pipeline.mlops import registry, store
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
