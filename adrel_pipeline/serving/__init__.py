"""Serve from Python, without Dagster: ``rank_ads(user_id, candidate_ad_ids)`` with the relevance
champion, ``expand_audience(advertiser_id, k)`` with the Actalike expansions or model."""

from adrel_pipeline.serving.audience import expand_audience
from adrel_pipeline.serving.champion import RegisteredRanker, load_champion, rank_ads

__all__ = ["RegisteredRanker", "expand_audience", "load_champion", "rank_ads"]
