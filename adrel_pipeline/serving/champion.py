"""Serve the registered champion from Python: ``rank_ads(user_id, candidate_ad_ids)``, or every ad
for a batch of users (``load_champion().top_ads(user_ids, k)``).

Serving reads ``models:/adrel-gat@champion`` from the MLflow registry, never the last training
that happened to run: a worse model trained later stays a challenger and serves nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from adrel_pipeline.mlops import registry, store
from adrel_pipeline.mlops.paths import default_tracking_uri


@dataclass
class RegisteredRanker:
    """A pinned registered model version, scoring through its MLflow pyfunc interface."""

    name: str
    version: str
    model_uri: str
    pyfunc: object

    def score(self, user_ids: Sequence[int], ad_ids: Sequence[int]):
        """Relevance probabilities for aligned user and ad (item) ids."""
        return self.pyfunc.predict(pd.DataFrame({"user_id": list(user_ids), "ad_id": list(ad_ids)}))

    def rank_ads(self, user_id: int, candidate_ad_ids: Sequence[int]) -> list[tuple[int, float]]:
        """``(ad_id, probability)`` for each candidate, most relevant first (ties by ad id)."""
        candidates = [int(a) for a in candidate_ad_ids]
        if not candidates:
            return []
        probs = self.score([user_id] * len(candidates), candidates)
        return sorted(zip(candidates, (float(p) for p in probs)), key=lambda p: (-p[1], p[0]))

    def top_ads(self, user_ids: Sequence[int], k: int | None = None):
        """Each user's ``k`` most relevant ads (default: all) and their probabilities, most relevant
        first, ties by ad id: ``(ad_ids, probabilities)``, ``(len(user_ids), k)`` tensors. Vectorised
        over the whole catalogue (:meth:`~adrel_pipeline.relevance.ranking.AdRanker.top_ads`), not
        through the row-by-row pyfunc interface."""
        return self.pyfunc.unwrap_python_model().ranker.top_ads(user_ids, k)


def load_champion(tracking_uri: str | None = None, name: str = registry.DEFAULT_MODEL_NAME,
                  alias: str = registry.CHAMPION) -> RegisteredRanker:
    """The version holding ``alias`` (default ``champion``) of ``name``, loaded once for reuse.

    ``tracking_uri`` defaults to ``$MLFLOW_TRACKING_URI``, else the embedded store of
    ``make run``. The version is resolved once and pinned, so a promotion while this ranker is
    in use does not change what it scores with.
    """
    import mlflow.pyfunc

    uri = tracking_uri or default_tracking_uri()
    store.use_store(uri)
    version = registry.version_by_alias(name, alias)
    if version is None:
        raise LookupError(f"registered model {name!r} has no {alias!r} version in {uri}: "
                          "materialize test_auc first (make run)")
    model_uri = f"models:/{name}/{version.version}"
    return RegisteredRanker(name=name, version=str(version.version), model_uri=model_uri,
                            pyfunc=mlflow.pyfunc.load_model(model_uri))


def rank_ads(user_id: int, candidate_ad_ids: Sequence[int],
             tracking_uri: str | None = None) -> list[tuple[int, float]]:
    """Candidate ads for ``user_id`` as ``(ad_id, probability)``, most relevant first, by the champion."""
    return load_champion(tracking_uri).rank_ads(user_id, candidate_ad_ids)
