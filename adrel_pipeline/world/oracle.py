"""The world's ground truth: the probability that a (user, item) pair interacts, which ranks pairs
exactly as the Bayes-optimal scorer does."""

from __future__ import annotations

import numpy as np
import polars as pl

from adrel_pipeline.world.simulation import category_codes, cell_popularity, row_positions, style_weights, user_taste
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

    Per draw: activity share x category choice probability x the item's probability within its
    category. For an ad that is ``1 / n_items(c)`` (ads are picked as in the seed notebook); for an
    organic pin ``n_organic(c) / n_items(c) x popularity_i exp(b t_u . P_k(i)) / Z(u, c)`` with
    ``b = taste_strength`` and ``Z(u, c) = sum_k W[c, k] exp(b t_u . P_k)``, ``W[c, k]`` the total
    popularity of the (category, style) cell. Over ``num_interactions`` independent draws (a 7-day
    window), ``1 - (1 - p)^N``. Monotone in the per-draw probability, so it ranks pairs exactly as
    the Bayes-optimal scorer does for a window of any length: AUC and ranking metrics do not
    depend on N.

    Aligned pairs by default; with ``outer=True`` every user against every item, shape
    ``(len(user_ids), len(item_ids))``.
    """
    user_row = row_positions(users["user_id"].to_numpy(), user_ids, "user_id", "users")
    item_row = row_positions(items["item_id"].to_numpy(), item_ids, "item_id", "items")
    activity = users["true_activity"].to_numpy()
    interest = category_codes(users["main_interest"])[user_row]
    item_cat = category_codes(items["category"])
    is_ad = items["is_ad"].to_numpy()
    cat_size = np.bincount(item_cat, minlength=len(INTERESTS))
    organic_share = np.bincount(item_cat[~is_ad], minlength=len(INTERESTS)) / cat_size
    share = activity[user_row] / activity.sum()
    cat, ad = item_cat[item_row], is_ad[item_row]
    style, popularity = items["style"].to_numpy()[item_row], items["popularity"].to_numpy()[item_row]

    # Taste part of an organic pick; Z(u, c) is 0 only for a category without organic pins, where
    # no organic item exists to need it.
    weights = style_weights(spec, user_taste(users)[user_row])
    norm = weights @ cell_popularity(spec, items).T
    norm = np.where(norm > 0, norm, 1.0)
    if outer:
        interest, share = interest[:, None], share[:, None]
        taste = weights[:, style] / norm[:, cat]
    else:
        rows = np.arange(len(user_row))
        taste = weights[rows, style] / norm[rows, cat]

    p = spec.main_interest_prob
    within = np.where(ad, 1.0 / cat_size[cat], organic_share[cat] * popularity * taste)
    per_draw = share * (p * (interest == cat) + (1.0 - p) / len(INTERESTS)) * within
    return -np.expm1(spec.num_interactions * np.log1p(-per_draw))

