"""The world's ground truth: the probability that a (user, item) pair interacts, which ranks pairs
exactly as the Bayes-optimal scorer does."""

from __future__ import annotations

import numpy as np
import polars as pl

from adrel_pipeline.world.simulation import category_codes
from adrel_pipeline.world.spec import INTERESTS, WorldSpec


def interaction_probability(
    spec: WorldSpec,
    users: pl.DataFrame,
    items: pl.DataFrame,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    outer: bool = False,
) -> np.ndarray:
    """True probability that (user, item) pairs interact at least once in the world.

    Per draw: activity share x category choice probability / category size; over
    ``num_interactions`` independent draws (a 7-day window), ``1 - (1 - p)^N``. Monotone in the
    per-draw probability, so it ranks pairs exactly as the Bayes-optimal scorer does for a
    window of any length: AUC and ranking metrics do not depend on N.

    Aligned pairs by default; with ``outer=True`` every user against every item, shape
    ``(len(user_ids), len(item_ids))``.
    """
    user_row = _row_lookup(users["user_id"].to_numpy(), np.asarray(user_ids), "user_id")
    item_row = _row_lookup(items["item_id"].to_numpy(), np.asarray(item_ids), "item_id")
    activity = users["true_activity"].to_numpy()
    interest = category_codes(users["main_interest"])[user_row]
    item_cat = category_codes(items["category"])
    cat_size = np.bincount(item_cat, minlength=len(INTERESTS))
    share = activity[user_row] / activity.sum()
    cat = item_cat[item_row]
    if outer:
        interest, share = interest[:, None], share[:, None]

    p = spec.main_interest_prob
    per_draw = share * (p * (interest == cat) + (1.0 - p) / len(INTERESTS)) / cat_size[cat]
    return -np.expm1(spec.num_interactions * np.log1p(-per_draw))


def _row_lookup(ids: np.ndarray, wanted: np.ndarray, name: str) -> np.ndarray:
    order = np.argsort(ids)
    pos = np.searchsorted(ids, wanted, sorter=order)
    pos = np.clip(pos, 0, len(ids) - 1)
    rows = order[pos]
    if not np.all(ids[rows] == wanted):
        missing = wanted[ids[rows] != wanted][:5].tolist()
        raise KeyError(f"unknown {name} values: {missing}")
    return rows
