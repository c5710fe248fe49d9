"""What the audience models see of a user: organic edges (for the embeddings), who is active, and
the raw features of the regression baseline. Observed data only: the latent columns
(``true_activity``, ``taste``, item style and popularity) never enter."""

from __future__ import annotations

import numpy as np
import polars as pl

from adrel_pipeline.graph.features import FeatureSpec, category_column, encode_table, vocabularies_of
from adrel_pipeline.world.simulation import row_positions
from adrel_pipeline.world.spec import AGE_GROUPS, INTERESTS

# The raw features' columns on the synthetic world (another source: its own features, encoded the same way).
RAW_FEATURE_NAMES: tuple[str, ...] = (
    *(f"age={a}" for a in AGE_GROUPS),
    *(f"interest={i}" for i in INTERESTS),
    *(f"log1p_count[{c}]" for c in INTERESTS),
    "log1p_interactions",
)


def organic_edges(interactions: pl.DataFrame, items: pl.DataFrame) -> pl.DataFrame:
    """Distinct (user_id, item_id) pairs on organic (non-ad) items, sorted."""
    organic = items.filter(~pl.col("is_ad")).select("item_id")
    return (interactions.select("user_id", "item_id").join(organic, on="item_id", how="semi")
            .unique().sort("user_id", "item_id"))


def active_users(users: pl.DataFrame, interactions: pl.DataFrame) -> np.ndarray:
    """Sorted ids of the users with at least one interaction (the blog's monthly active users)."""
    ids = interactions["user_id"].unique().to_numpy()
    return np.sort(ids[np.isin(ids, users["user_id"].to_numpy())])


def raw_features(users: pl.DataFrame, items: pl.DataFrame, interactions: pl.DataFrame,
                 features: FeatureSpec | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(user_ids, X)``: one row per user in ``users``' row order: the users' declared features
    encoded as the graph encodes them (one-hots, standardised numbers), log1p interactions per
    value of the items' category column (:func:`~adrel_pipeline.graph.features.category_column`;
    ads included: both are observed behaviour) and log1p all interactions (observed activity).
    ``features``: the source's; default the synthetic world's (columns :data:`RAW_FEATURE_NAMES`).

    Dense: 19 columns at 10,000 users is 1.5 MB, and the regression's solver is faster on dense input.
    """
    from adrel_pipeline.graph.features import synthetic_features

    features = features or synthetic_features()
    vocabularies = vocabularies_of(users, items, features)
    user_x, _ = encode_table(users, features.user_columns, vocabularies, "users")
    log = interactions.select("user_id", "item_id").join(users.select("user_id").with_row_index("row"), on="user_id")
    rows = log["row"].to_numpy().astype(np.int64)
    column = category_column(items, features)
    if column is None:
        counts = np.zeros((users.height, 0))
        total = np.bincount(rows, minlength=users.height).astype(np.float64)[:, None]
    else:
        values = items[column].cast(pl.String)
        vocabulary = vocabularies.get(column) or tuple(sorted(values.unique().to_list()))
        codes = items.select("item_id", values.cast(pl.Enum(vocabulary)).to_physical().alias("code"))
        log = log.join(codes, on="item_id")
        k = len(vocabulary)
        cell = log["row"].to_numpy().astype(np.int64) * k + log["code"].to_numpy().astype(np.int64)
        counts = np.bincount(cell, minlength=users.height * k).reshape(users.height, k).astype(np.float64)
        total = counts.sum(axis=1, keepdims=True)
    return users["user_id"].to_numpy(), np.hstack([user_x.astype(np.float64), np.log1p(counts), np.log1p(total)])


def user_rows(users: pl.DataFrame, user_ids) -> np.ndarray:
    """Row positions in ``users`` of ``user_ids`` (the embeddings' and features' rows); unknown ids raise."""
    return row_positions(users["user_id"].to_numpy(), user_ids)
