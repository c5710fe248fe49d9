"""Use the materialized model from Python: ``rank_ads(user_id, candidate_ad_ids)``."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from adrel_pipeline.model import load_model
from adrel_pipeline.ranking import AdRanker
from adrel_pipeline.training import TrainResult


def load_ranker(instance: dg.DagsterInstance | None = None) -> AdRanker:
    """An :class:`AdRanker` over the latest materialized ``trained_gat`` and ``hetero_graph``.

    Reads through the code location's IO manager, from ``instance`` (default: the one at
    ``$DAGSTER_HOME``).
    """
    from adrel_pipeline.definitions import defs

    instance = instance or dg.DagsterInstance.get()
    with defs.get_asset_value_loader(instance=instance) as loader:
        trained = loader.load_asset_value("trained_gat")
        graph = loader.load_asset_value("hetero_graph")
    return AdRanker(load_model(TrainResult.from_payload(trained).checkpoint), graph)


def rank_ads(user_id: int, candidate_ad_ids: Sequence[int],
             instance: dg.DagsterInstance | None = None) -> list[tuple[int, float]]:
    """Candidate ads for ``user_id`` as ``(ad_id, probability)``, most relevant first."""
    return load_ranker(instance).rank_ads(user_id, candidate_ad_ids)
