"""Expanded audiences from Python, without Dagster: ``expand_audience(advertiser_id, k)``.

By default it reads the materialized ``audience_expansions`` of the advertiser (what the pipeline
shipped). With ``source="model"`` it scores every user with the registered ``adrel-actalike``
model instead: the champion when it holds the advertiser's head, else the newest version that
does (an advertiser added after the champion was trained), for any ``k``.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from adrel_pipeline.mlops import registry, store
from adrel_pipeline.mlops.paths import dagster_storage_dir, default_tracking_uri

MODEL_NAME = registry.ACTALIKE_MODEL_NAME


def _stored(storage: Path, asset: str, advertiser_id: str) -> pl.DataFrame | None:
    path = storage / asset / f"{advertiser_id}.parquet"
    return pl.read_parquet(path) if path.exists() else None


def model_version_for(advertiser_id: str, name: str = MODEL_NAME):
    """The registered version that serves ``advertiser_id``: the champion if it has its head, else
    the newest version that does; None when no version has it."""
    champion = registry.version_by_alias(name, registry.CHAMPION)
    if champion is not None and advertiser_id in champion.tags.get("advertisers", "").split(","):
        return champion
    versions = [v for v in store.client().search_model_versions(f"name='{name}'")
                if advertiser_id in v.tags.get("advertisers", "").split(",")]
    return max(versions, key=lambda v: int(v.version)) if versions else None


def expand_audience(advertiser_id: str, k: int | None = None, *, source: str = "expansions",
                    storage_dir: str | Path | None = None, tracking_uri: str | None = None) -> pl.DataFrame:
    """The advertiser's top-``k`` users (``user_id``, ``score``, ``rank``), its seed users excluded.

    ``source="expansions"`` (default) reads the materialized expansion (``k`` at most its size;
    None: all of it) from ``storage_dir`` (default ``$DAGSTER_HOME/storage``). ``source="model"``
    scores with the registered model (``k`` required), from ``tracking_uri`` (default
    ``$MLFLOW_TRACKING_URI``, else the embedded store of ``make run``).
    """
    storage = Path(storage_dir) if storage_dir else dagster_storage_dir()
    if source == "expansions":
        stored = _stored(storage, "audience_expansions", advertiser_id)
        if stored is None:
            raise LookupError(f"no expansion of advertiser {advertiser_id!r} under {storage / 'audience_expansions'}: "
                              f"materialize audience_expansions for it (make run), or use source='model'")
        if k is not None and k > stored.height:
            raise ValueError(f"k={k} is more than the {stored.height} users stored for {advertiser_id!r}: "
                             f"use source='model' to score every user")
        return stored.select("user_id", "score", "rank").head(k if k is not None else stored.height)
    if source != "model":
        raise ValueError(f"source={source!r} is not one of 'expansions', 'model'")
    if k is None or k < 1:
        raise ValueError(f"k={k!r} is out of range: source='model' needs an integer k >= 1")
    import mlflow.pyfunc

    uri = tracking_uri or default_tracking_uri()
    store.use_store(uri)
    version = model_version_for(advertiser_id)
    if version is None:
        raise LookupError(f"no version of {MODEL_NAME!r} in {uri} has a head for advertiser {advertiser_id!r}: "
                          "materialize audience_models for it first")
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{version.version}").unwrap_python_model()
    seeds = _stored(storage, "seed_lists", advertiser_id)
    exclude = [] if seeds is None else seeds["user_id"].to_list()
    return pl.from_pandas(model.expand(advertiser_id, k, exclude=exclude))
