"""adrel: an ad-relevance pipeline (synthetic world → hetero graph → link split → GAT → honest AUC)."""

from adrel_pipeline.definitions import defs
from adrel_pipeline.serving import load_champion, rank_ads

__all__ = ["defs", "load_champion", "rank_ads"]
