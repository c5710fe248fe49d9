"""The synthetic ad platform: users, items and their interactions.

The generative process is the seed notebook's, vectorised and made reproducible, plus a latent
taste that only organic interactions reveal:

* users have an age group (fixed probabilities), a main interest (uniform), a latent activity
  level ``true_activity ~ Beta(2, 7)`` and a latent ``taste``, a unit vector in
  ``taste_dim`` dimensions, ``t_u = normalize(mu[age_u] + N(0, I))`` with ``|mu[g]| = 0.8``
  (age predicts taste only in part; no raw feature determines it);
* items have a category (uniform) and an ``is_ad`` flag (exactly
  ``round(ad_fraction * num_items)`` of them are ads, so tiny worlds still have both kinds);
  every item has a latent ``style`` (uniform over ``num_styles``, each with a prototype unit
  vector ``P_k``) and organic pins a ``popularity``: Zipf weights ``1 / rank^popularity_exponent``
  over a random order within their (category, style) cell (ads: 1, unused);
* interactions arrive day by day, ``num_interactions`` in every 7 consecutive days (the
  default training window); each day's events are drawn from their own random stream keyed by
  (seed, date), so any day can be regenerated alone, byte for byte;
* each interaction picks a user with probability proportional to activity, then a category:
  the user's main interest with probability ``main_interest_prob``, otherwise a uniformly
  random category (which may again be the main interest); then, with probability
  ``n_ads(c) / n_items(c)``, an ad uniformly among the category's ads, otherwise an organic pin
  with probability proportional to ``popularity_i * exp(taste_strength * t_u . P_style(i))``.

So an ad's true per-draw probability is exactly the notebook's,
``activity_u / sum(activity) * (p * [cat_i == interest_u] + (1 - p) / K) / n_items(cat_i)``:
taste shapes who engages with which organic pins (what user embeddings can learn), never the
ads. :func:`~adrel_pipeline.world.oracle.interaction_probability` gives every pair's probability,
the Bayes-optimal (oracle) score.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import polars as pl

from adrel_pipeline.world.spec import ACTIVITY_BETA, AGE_GROUPS, AGE_PROBS, INTERESTS, WorldConfigError, WorldSpec

# Independent random streams per table, so regenerating one table never shifts another (and the
# latent columns, added later, left the earlier columns' draws as they were).
_STREAM_USERS, _STREAM_ITEMS, _STREAM_INTERACTIONS, _STREAM_TASTE, _STREAM_ITEM_LATENT, _STREAM_STYLES = 1, 2, 3, 4, 5, 6
# Length of the age groups' mean tastes: enough that age says something about taste, little
# enough that it says far from all (the taste's noise has length ~sqrt(taste_dim)).
AGE_TASTE_SHIFT = 0.8
# Events x styles weights held at once while drawing organic picks (~32 MB of float64).
_CHUNK_CELLS = 2**22


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow at any x


def generate_users(spec: WorldSpec) -> pl.DataFrame:
    """One row per user. ``true_activity`` and ``taste`` are the generator's latent truth: never
    model features."""
    rng = spec.rng(_STREAM_USERS)
    n = spec.num_users
    age = rng.choice(len(AGE_GROUPS), size=n, p=AGE_PROBS)
    interest = rng.integers(0, len(INTERESTS), size=n)
    activity = rng.beta(*ACTIVITY_BETA, size=n)
    taste_rng = spec.rng(_STREAM_TASTE)
    mean_taste = AGE_TASTE_SHIFT * _normalize(taste_rng.standard_normal((len(AGE_GROUPS), spec.taste_dim)))
    taste = _normalize(mean_taste[age] + taste_rng.standard_normal((n, spec.taste_dim)))
    return pl.DataFrame(
        {
            "user_id": np.arange(n, dtype=np.int64),
            "age_group": np.asarray(AGE_GROUPS)[age],
            "main_interest": np.asarray(INTERESTS)[interest],
            "true_activity": activity,
            "taste": taste,
        },
        schema={"user_id": pl.Int64, "age_group": pl.Utf8, "main_interest": pl.Utf8,
                "true_activity": pl.Float64, "taste": pl.Array(pl.Float64, spec.taste_dim)},
    )


def user_taste(users: pl.DataFrame) -> np.ndarray:
    """``(num_users, taste_dim)``: the users' latent tastes, rows in the frame's order."""
    return users["taste"].to_numpy()


def style_prototypes(spec: WorldSpec) -> np.ndarray:
    """``(num_styles, taste_dim)``: each style's prototype taste, a random unit vector."""
    return _normalize(spec.rng(_STREAM_STYLES).standard_normal((spec.num_styles, spec.taste_dim)))


def generate_items(spec: WorldSpec) -> pl.DataFrame:
    """One row per item: organic pins and ads, with a category each, and the latent ``style`` and
    ``popularity`` that steer organic picks (never model features)."""
    rng = spec.rng(_STREAM_ITEMS)
    n = spec.num_items
    category_idx = rng.integers(0, len(INTERESTS), size=n)
    empty = [INTERESTS[c] for c in range(len(INTERESTS)) if not np.any(category_idx == c)]
    if empty:
        raise WorldConfigError(
            f"num_items={n} is too small: categories {empty} drew no items; increase num_items"
        )
    is_ad = np.zeros(n, dtype=bool)
    is_ad[rng.permutation(n)[: spec.num_ads]] = True

    latent = spec.rng(_STREAM_ITEM_LATENT)
    style = latent.integers(0, spec.num_styles, size=n)
    # Zipf over a random order within each organic (category, style) cell: a few pins of a style
    # draw most of its traffic, as on a real platform; ads keep 1 (their picks are uniform).
    cell = np.where(is_ad, -1, category_idx * spec.num_styles + style)
    order = np.lexsort((latent.random(n), cell))
    sorted_cell = cell[order]
    first = np.searchsorted(sorted_cell, sorted_cell, side="left")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - first + 1
    popularity = np.where(is_ad, 1.0, rank.astype(np.float64) ** -spec.popularity_exponent)
    return pl.DataFrame(
        {
            "item_id": np.arange(n, dtype=np.int64),
            "category": np.asarray(INTERESTS)[category_idx],
            "is_ad": is_ad,
            "style": style,
            "popularity": popularity,
        },
        schema={"item_id": pl.Int64, "category": pl.Utf8, "is_ad": pl.Boolean, "style": pl.Int64,
                "popularity": pl.Float64},
    )


def row_positions(ids: np.ndarray, wanted, name: str = "user_id", table: str = "users") -> np.ndarray:
    """Positions in ``ids`` (a table's id column, any order) of the ``wanted`` ids; any unknown id
    raises a ``KeyError`` naming how many, the table and a few of them."""
    ids, wanted = np.asarray(ids), np.asarray(wanted, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    pos = np.clip(np.searchsorted(ids, wanted, sorter=order), 0, max(len(ids) - 1, 0))
    rows = order[pos] if len(ids) else pos
    unknown = wanted if len(ids) == 0 else wanted[ids[rows] != wanted]
    if len(unknown):
        raise KeyError(f"{len(unknown)} {name}s are not in {table}, e.g. {unknown[:5].tolist()}")
    return rows


def category_codes(values: pl.Series) -> np.ndarray:
    return values.cast(pl.Enum(INTERESTS)).to_physical().to_numpy().astype(np.int64)


def style_weights(spec: WorldSpec, taste: np.ndarray) -> np.ndarray:
    """``(len(taste), num_styles)``: ``exp(taste_strength * t_u . P_k)`` up to a per-user factor
    (shifted by each user's maximum, so no exponent overflows); that factor cancels in every
    normalised pick."""
    logits = spec.taste_strength * (taste @ style_prototypes(spec).T)
    return np.exp(logits - logits.max(axis=1, keepdims=True))


def cell_popularity(spec: WorldSpec, items: pl.DataFrame) -> np.ndarray:
    """``(categories, num_styles)``: the total popularity of each (category, style) cell's organic
    pins (0 for an empty cell)."""
    organic = ~items["is_ad"].to_numpy()
    cell = category_codes(items["category"]) * spec.num_styles + items["style"].to_numpy()
    weights = np.bincount(cell[organic], weights=items["popularity"].to_numpy()[organic],
                          minlength=len(INTERESTS) * spec.num_styles)
    return weights.reshape(len(INTERESTS), spec.num_styles)


INTERACTION_SCHEMA = {"user_id": pl.Int64, "item_id": pl.Int64, "day": pl.Date}


def window(end: dt.date, days: int) -> list[dt.date]:
    """The ``days`` dates ending at ``end``, oldest first."""
    return [end - dt.timedelta(days=days - 1 - i) for i in range(days)]


def generate_day(spec: WorldSpec, users: pl.DataFrame, items: pl.DataFrame, day: dt.date) -> pl.DataFrame:
    """One day of the interaction log: ``spec.interactions_on(day)`` (user_id, item_id, day) events,
    repeats included. Depends only on the world and the date, never on which other days exist."""
    rng = spec.rng(_STREAM_INTERACTIONS, day.toordinal())
    n = spec.interactions_on(day)
    activity = users["true_activity"].to_numpy()
    user_idx = rng.choice(len(activity), size=n, p=activity / activity.sum())

    interest = category_codes(users["main_interest"])[user_idx]
    random_cat = rng.integers(0, len(INTERESTS), size=n)
    category = np.where(rng.random(n) < spec.main_interest_prob, interest, random_cat)

    item_ids = items["item_id"].to_numpy()
    item_cat = category_codes(items["category"])
    is_ad = items["is_ad"].to_numpy()
    n_items = np.bincount(item_cat, minlength=len(INTERESTS))
    n_ads = np.bincount(item_cat[is_ad], minlength=len(INTERESTS))
    # One uniform over the category's n_items slots: the first n_ads are its ads, each as likely
    # as under a uniform pick over the category, so an ad's probability is 1 / n_items(c) exactly.
    slot = rng.random(n) * n_items[category]
    ad_event = slot < n_ads[category]
    ads = np.argsort(np.where(is_ad, item_cat, len(INTERESTS)), kind="stable")
    ad_offsets = np.concatenate([[0], np.cumsum(n_ads)[:-1]])
    picked = np.empty(n, dtype=np.int64)
    picked[ad_event] = ads[ad_offsets[category[ad_event]] + slot[ad_event].astype(np.int64)]

    organic = np.flatnonzero(~ad_event)
    picked[organic] = _organic_picks(spec, users, items, user_idx[organic], category[organic],
                                     rng.random(len(organic)), rng.random(len(organic)))
    return pl.DataFrame(
        {"user_id": users["user_id"].to_numpy()[user_idx], "item_id": item_ids[picked]},
        schema={"user_id": pl.Int64, "item_id": pl.Int64},
    ).with_columns(day=pl.lit(day, dtype=pl.Date))


def _organic_picks(spec: WorldSpec, users: pl.DataFrame, items: pl.DataFrame, user_idx: np.ndarray,
                   category: np.ndarray, style_u: np.ndarray, item_u: np.ndarray) -> np.ndarray:
    """Item rows of organic picks: a (category, style) cell by the softmax of ``log W[c, k] +
    taste_strength * t_u . P_k`` (inverse CDF with ``style_u``), then a pin of the cell in proportion
    to its popularity (inverse CDF with ``item_u``). Both uniforms are drawn by the caller, so the
    chunking below never changes a pick."""
    num_styles = spec.num_styles
    weights = style_weights(spec, user_taste(users))
    cell_weight = cell_popularity(spec, items)

    # Organic pins sorted by cell; a cell's pins are a slice of the running popularity sum.
    item_cell = category_codes(items["category"]) * num_styles + items["style"].to_numpy()
    item_cell = np.where(items["is_ad"].to_numpy(), -1, item_cell)
    order = np.argsort(item_cell, kind="stable")
    order = order[item_cell[order] >= 0]
    sorted_cell = item_cell[order]
    running = np.cumsum(items["popularity"].to_numpy()[order])
    cells = np.arange(len(INTERESTS) * num_styles)
    start = np.searchsorted(sorted_cell, cells, side="left")
    end = np.searchsorted(sorted_cell, cells, side="right")
    before = np.where(start > 0, running[np.maximum(start - 1, 0)], 0.0)
    in_cell = np.where(end > start, running[np.maximum(end - 1, 0)] - before, 0.0)

    picks = np.empty(len(user_idx), dtype=np.int64)
    step = max(1, _CHUNK_CELLS // num_styles)
    for lo in range(0, len(user_idx), step):
        part = slice(lo, lo + step)
        cum = np.cumsum(weights[user_idx[part]] * cell_weight[category[part]], axis=1)
        # 1 - u lies in (0, 1]: the target is never 0, so a cell of weight 0 is never picked.
        target = (1.0 - style_u[part]) * cum[:, -1]
        style = np.minimum((cum < target[:, None]).sum(axis=1), num_styles - 1)
        cell = category[part] * num_styles + style
        pos = np.searchsorted(running, before[cell] + (1.0 - item_u[part]) * in_cell[cell], side="left")
        picks[part] = order[np.clip(pos, start[cell], end[cell] - 1)]
    return picks


def generate_interactions(
    spec: WorldSpec, users: pl.DataFrame, items: pl.DataFrame, days: Sequence[dt.date]
) -> pl.DataFrame:
    """The interaction log over ``days``, oldest first: the days generated one by one, concatenated."""
    frames = [generate_day(spec, users, items, day) for day in sorted(days)]
    return pl.concat(frames) if frames else pl.DataFrame(schema=INTERACTION_SCHEMA)
