"""What the audience models see of a user: organic edges (for the embeddings), who is active, and
the raw features of the regression baseline. Observed data only: the latent columns
(``true_activity``, ``taste``, item style and popularity) never enter."""

from __future__ import annotations

import numpy as np
import polars as pl

from adrel_pipeline.world.simulation import category_codes, row_positions
from adrel_pipeline.world.spec import AGE_GROUPS, INTERESTS

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


def _one_hot(values: pl.Series, vocabulary: tuple[str, ...]) -> np.ndarray:
    codes = values.cast(pl.Enum(vocabulary)).to_physical().to_numpy().astype(np.int64)
    return np.eye(len(vocabulary))[codes]


def raw_features(users: pl.DataFrame, items: pl.DataFrame, interactions: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``(user_ids, X)``: one row per user in ``users``' row order, columns :data:`RAW_FEATURE_NAMES`:
    one-hot age group, one-hot main interest, log1p interactions per item category (ads included:
    both are observed behaviour) and log1p all interactions (observed activity).

    Dense: 19 columns at 10,000 users is 1.5 MB, and the regression's solver is faster on dense input.
    """
    log = (interactions.select("user_id", "item_id")
           .join(items.select("item_id", "category"), on="item_id")
           .join(users.select("user_id").with_row_index("row"), on="user_id"))
    k = len(INTERESTS)
    cell = log["row"].to_numpy().astype(np.int64) * k + category_codes(log["category"])
    counts = np.bincount(cell, minlength=users.height * k).reshape(users.height, k).astype(np.float64)
    return users["user_id"].to_numpy(), np.hstack([
        _one_hot(users["age_group"], AGE_GROUPS),
        _one_hot(users["main_interest"], INTERESTS),
        np.log1p(counts),
        np.log1p(counts.sum(axis=1, keepdims=True)),
    ])


def user_rows(users: pl.DataFrame, user_ids) -> np.ndarray:
    """Row positions in ``users`` of ``user_ids`` (the embeddings' and features' rows); unknown ids raise."""
    return row_positions(users["user_id"].to_numpy(), user_ids)
