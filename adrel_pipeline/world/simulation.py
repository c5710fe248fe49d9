"""The synthetic ad platform: users, items and their interactions.

The generative process is the seed notebook's, vectorised and made reproducible:

* users have an age group (fixed probabilities), a main interest (uniform) and a latent
  activity level ``true_activity ~ Beta(2, 7)``;
* items have a category (uniform) and an ``is_ad`` flag (exactly
  ``round(ad_fraction * num_items)`` of them are ads, so tiny worlds still have both kinds);
* interactions arrive day by day, ``num_interactions`` in every 7 consecutive days (the
  default training window); each day's events are drawn from their own random stream keyed by
  (seed, date), so any day can be regenerated alone, byte for byte;
* each interaction picks a user with probability proportional to activity, then a category:
  the user's main interest with probability ``main_interest_prob``, otherwise a uniformly
  random category (which may again be the main interest), then an item uniformly within it.

The true per-draw probability of a (user, item) pair is therefore
``activity_u / sum(activity) * (p * [cat_i == interest_u] + (1 - p) / K) / n_items(cat_i)``,
which :func:`interaction_probability` exposes for the Bayes-optimal (oracle) AUC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import polars as pl

from adrel_pipeline.world.spec import ACTIVITY_BETA, AGE_GROUPS, AGE_PROBS, INTERESTS, WorldConfigError, WorldSpec

# Independent random streams per table, so regenerating one table never shifts another.
_STREAM_USERS, _STREAM_ITEMS, _STREAM_INTERACTIONS = 1, 2, 3


def generate_users(spec: WorldSpec) -> pl.DataFrame:
    """One row per user. ``true_activity`` is the generator's latent truth: never a model feature."""
    rng = spec.rng(_STREAM_USERS)
    n = spec.num_users
    return pl.DataFrame(
        {
            "user_id": np.arange(n, dtype=np.int64),
            "age_group": np.asarray(AGE_GROUPS)[rng.choice(len(AGE_GROUPS), size=n, p=AGE_PROBS)],
            "main_interest": np.asarray(INTERESTS)[rng.integers(0, len(INTERESTS), size=n)],
            "true_activity": rng.beta(*ACTIVITY_BETA, size=n),
        },
        schema={"user_id": pl.Int64, "age_group": pl.Utf8, "main_interest": pl.Utf8,
                "true_activity": pl.Float64},
    )


def generate_items(spec: WorldSpec) -> pl.DataFrame:
    """One row per item: organic pins and ads, with a category each."""
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
    return pl.DataFrame(
        {
            "item_id": np.arange(n, dtype=np.int64),
            "category": np.asarray(INTERESTS)[category_idx],
            "is_ad": is_ad,
        },
        schema={"item_id": pl.Int64, "category": pl.Utf8, "is_ad": pl.Boolean},
    )


def category_codes(values: pl.Series) -> np.ndarray:
    return values.cast(pl.Enum(INTERESTS)).to_physical().to_numpy().astype(np.int64)


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

    # Items grouped by category: an item is drawn uniformly inside its category's slice.
    item_cat = category_codes(items["category"])
    order = np.argsort(item_cat, kind="stable")
    counts = np.bincount(item_cat, minlength=len(INTERESTS))
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pick = offsets[category] + (rng.random(n) * counts[category]).astype(np.int64)
    item_ids = items["item_id"].to_numpy()[order[pick]]

    return pl.DataFrame(
        {"user_id": users["user_id"].to_numpy()[user_idx], "item_id": item_ids, "day": [day] * n},
        schema=INTERACTION_SCHEMA,
    )


def generate_interactions(
    spec: WorldSpec, users: pl.DataFrame, items: pl.DataFrame, days: Sequence[dt.date]
) -> pl.DataFrame:
    """The interaction log over ``days``, oldest first: the days generated one by one, concatenated."""
    frames = [generate_day(spec, users, items, day) for day in sorted(days)]
    return pl.concat(frames) if frames else pl.DataFrame(schema=INTERACTION_SCHEMA)
