"""The world's ground truth: the probability that a (user, item) pair interacts, which ranks pairs
exactly as the Bayes-optimal scorer does."""

from __future__ import annotations

import numpy as np
import polars as pl

from adrel_pipeline.world.simulation import category_codes, cell_popularity, row_positions, style_weights, user_taste
from adrel_pipeline.world.spec import INTERESTS, WorldSpec

# The generator's latent columns the oracle reads: real data (a source other than this generator)
# has none of them, and its metrics that need the truth are then unavailable, never estimated.
TRUTH_COLUMNS = {"users": ("true_activity", "taste"), "items": ("style", "popularity")}


def missing_truth(users: pl.DataFrame, items: pl.DataFrame) -> list[str]:
    """The truth columns the oracle needs that ``users``/``items`` lack, as ``table.column``."""
    tables = {"users": users, "items": items}
    return [f"{table}.{column}" for table, columns in TRUTH_COLUMNS.items() for column in columns
            if column not in tables[table].columns]


def has_truth(users: pl.DataFrame, items: pl.DataFrame) -> bool:
    """Whether the tables carry the generator's truth, so the oracle (:func:`interaction_probability`)
    can score them: True for the synthetic world, False for real data."""
    return not missing_truth(users, items)


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
    if outer:
        return OracleRows(spec, users, items, item_ids)(user_ids)
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
    rows = np.arange(len(user_row))
    taste = weights[rows, style] / norm[rows, cat]

    p = spec.main_interest_prob
    within = np.where(ad, 1.0 / cat_size[cat], organic_share[cat] * popularity * taste)
    per_draw = share * (p * (interest == cat) + (1.0 - p) / len(INTERESTS)) * within
    return window_probability(spec, per_draw)


def window_probability(spec: WorldSpec, per_draw: np.ndarray) -> np.ndarray:
    """``1 - (1 - p)^N`` over the window's ``num_interactions`` draws, from the per-draw probability."""
    return -np.expm1(spec.num_interactions * np.log1p(-per_draw))


class OracleRows:
    """The true probabilities of fixed items against any batch of users, ``(len(user_ids),
    len(item_ids))``: :func:`interaction_probability` with ``outer=True``, the same numbers.

    Everything that depends only on the items or on the whole users table (category codes, the
    cells' popularity, the users' tastes, the id lookups) is computed once here rather than per
    batch: at a million users, converting every taste per batch of users cost more than the batch.
    Per batch, ads cost a row gather and two products per cell; organic items add the taste part.
    """

    def __init__(self, spec: WorldSpec, users: pl.DataFrame, items: pl.DataFrame, item_ids: np.ndarray):
        self.spec = spec
        self._users = users
        self._user_ids = users["user_id"].to_numpy()
        self._user_order = np.argsort(self._user_ids, kind="stable")
        item_row = row_positions(items["item_id"].to_numpy(), item_ids, "item_id", "items")
        activity = users["true_activity"].to_numpy()
        self._share = activity / activity.sum()
        self._interest = category_codes(users["main_interest"])
        item_cat = category_codes(items["category"])
        is_ad = items["is_ad"].to_numpy()
        cat_size = np.bincount(item_cat, minlength=len(INTERESTS))
        cat = item_cat[item_row]
        self._cat, self._ad = cat, is_ad[item_row]
        p = self.spec.main_interest_prob
        # The category choice's probability per (main interest, item), as interaction_probability
        # computes it per pair: p * [interest == category] + (1 - p) / K.
        self._choice = p * (np.arange(len(INTERESTS))[:, None] == cat[None, :]) + (1.0 - p) / len(INTERESTS)
        self._within_ad = 1.0 / cat_size[cat]
        self._organic = None
        if not self._ad.all():  # ads never need the users' tastes
            organic_share = np.bincount(item_cat[~is_ad], minlength=len(INTERESTS)) / cat_size
            self._organic = {"share": organic_share[cat] * items["popularity"].to_numpy()[item_row],
                             "style": items["style"].to_numpy()[item_row],
                             "weights": style_weights(spec, user_taste(users)),
                             "cells": cell_popularity(spec, items).T}

    def _rows(self, user_ids: np.ndarray) -> np.ndarray:
        wanted = np.asarray(user_ids, dtype=np.int64)
        n = len(self._user_ids)
        pos = np.clip(np.searchsorted(self._user_ids, wanted, sorter=self._user_order), 0, max(n - 1, 0))
        rows = self._user_order[pos] if n else pos
        unknown = wanted if n == 0 else wanted[self._user_ids[rows] != wanted]
        if len(unknown):
            raise KeyError(f"{len(unknown)} user_ids are not in users, e.g. {unknown[:5].tolist()}")
        return rows

    def per_draw(self, user_ids: np.ndarray) -> np.ndarray:
        """The per-draw probabilities: :meth:`__call__` before the window's monotone transform, so
        they rank every user's items exactly as the probabilities do, at a third of the cost."""
        rows = self._rows(user_ids)
        within = self._within_ad
        if self._organic is not None:
            o = self._organic
            weights = o["weights"][rows]
            norm = weights @ o["cells"]
            norm = np.where(norm > 0, norm, 1.0)
            taste = weights[:, o["style"]] / norm[:, self._cat]
            within = np.where(self._ad, within, o["share"] * taste)
        return self._share[rows][:, None] * self._choice[self._interest[rows]] * within

    def __call__(self, user_ids: np.ndarray) -> np.ndarray:
        return window_probability(self.spec, self.per_draw(user_ids))
