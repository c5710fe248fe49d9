"""adrel: an ad-relevance pipeline (synthetic world → hetero graph → link split → GAT → honest AUC)."""

from adrel_pipeline.definitions import defs

__all__ = ["defs", "load_champion", "rank_ads"]


def __getattr__(name: str):
    # Serving imports torch and MLflow; `dagster ... -m adrel_pipeline` loads this package and
    # should not pay for them.
    if name in ("load_champion", "rank_ads"):
        from adrel_pipeline import serving

        return getattr(serving, name)
    raise AttributeError(f"module 'adrel_pipeline' has no attribute {name!r}")
