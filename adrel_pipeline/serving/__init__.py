"""Serve the registered champion from Python: ``rank_ads(user_id, candidate_ad_ids)``."""

from adrel_pipeline.serving.champion import RegisteredRanker, load_champion, rank_ads

__all__ = ["RegisteredRanker", "load_champion", "rank_ads"]
