"""Serve from Python, without Dagster: ``rank_ads(user_id, candidate_ad_ids)`` with the relevance
champion, ``expand_audience(advertiser_id, k)`` with the Actalike expansions or model,
``score_relevance(rows)`` with the contextual relevance champion."""

from adrel_pipeline.serving.audience import expand_audience
from adrel_pipeline.serving.champion import RegisteredRanker, load_champion, rank_ads
from adrel_pipeline.serving.contextual import load_relevance_model, score_relevance

__all__ = ["RegisteredRanker", "expand_audience", "load_champion", "load_relevance_model", "rank_ads",
           "score_relevance"]
