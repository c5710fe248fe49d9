"""adrel: an ad-relevance ML platform on a synthetic ad platform whose ground truth is known.

The library is plain Python on polars, torch and scikit-learn, by domain: :mod:`.world` (the
simulation and its oracles), :mod:`.graph`, :mod:`.relevance`, :mod:`.audience`, :mod:`.contextual`,
:mod:`.evaluation`, :mod:`.mlops`, :mod:`.serving`. Importing it never imports Dagster: the one code location is
``adrel_pipeline.definitions:defs``, the only importer of ``adrel_pipeline.defs``.
"""

__all__ = ["expand_audience", "load_champion", "rank_ads", "score_relevance"]


def __getattr__(name: str):
    # Serving imports torch and MLflow: `import adrel_pipeline` alone should not pay for them.
    if name in __all__:
        from adrel_pipeline import serving

        return getattr(serving, name)
    raise AttributeError(f"module 'adrel_pipeline' has no attribute {name!r}")
