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
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

AGE_GROUPS: tuple[str, ...] = ("18-25", "26-34", "35-43", "44+")
AGE_PROBS: tuple[float, ...] = (0.5, 0.3, 0.1, 0.1)
INTERESTS: tuple[str, ...] = ("Fashion", "Food", "Exercise", "Home", "Animals", "Sports", "Movies")
ACTIVITY_BETA: tuple[float, float] = (2.0, 7.0)

# Below this many items a category is likely to come out empty (7 categories), and a world
# that small says nothing about ad relevance anyway.
MIN_ITEMS = 100
MAX_SEED = 2**63 - 1
# num_interactions is a weekly volume: the default 7-day training window holds exactly that many.
DAYS_PER_VOLUME = 7

# Independent random streams per table, so regenerating one table never shifts another.
_STREAM_USERS, _STREAM_ITEMS, _STREAM_INTERACTIONS = 1, 2, 3


class WorldConfigError(ValueError):
    """A world parameter is outside its allowed range."""


@dataclass(frozen=True)
class WorldSpec:
    """All parameters of a synthetic world. Defaults reproduce the seed notebook's world."""

    seed: int = 0
    num_users: int = 10_000
    num_items: int = 50_000
    ad_fraction: float = 0.1
    num_interactions: int = 200_000  # per 7 consecutive days
    main_interest_prob: float = 0.4 / 1.4

    def __post_init__(self) -> None:
        _check_int("seed", self.seed, 0, MAX_SEED)
        _check_int("num_users", self.num_users, 1, None)
        _check_int("num_items", self.num_items, MIN_ITEMS, None)
        if not (isinstance(self.ad_fraction, (int, float)) and 0.0 < self.ad_fraction < 1.0):
            raise WorldConfigError(
                f"ad_fraction={self.ad_fraction!r} is out of range: must be in the open interval (0, 1)"
            )
        if not 1 <= self.num_ads <= self.num_items - 1:
            raise WorldConfigError(
                f"ad_fraction={self.ad_fraction!r} gives {self.num_ads} ads out of "
                f"num_items={self.num_items}: round(ad_fraction * num_items) must be between 1 "
                f"and num_items - 1 so that the world has both ads and organic items"
            )
        _check_int("num_interactions", self.num_interactions, self.num_users, None,
                   hint=" (at least one interaction per user: num_interactions >= num_users)")
        if not (isinstance(self.main_interest_prob, (int, float)) and 0.0 <= self.main_interest_prob <= 1.0):
            raise WorldConfigError(
                f"main_interest_prob={self.main_interest_prob!r} is out of range: must be in [0, 1]"
            )

    @property
    def num_ads(self) -> int:
        return round(self.ad_fraction * self.num_items)

    def rng(self, stream: int, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, stream, *key])

    def interactions_on(self, day: dt.date) -> int:
        """Events on ``day``: ``num_interactions / 7`` spread so that every run of 7 consecutive
        days holds exactly ``num_interactions`` (days differ by at most one event)."""
        n, o = self.num_interactions, day.toordinal()
        return (o + 1) * n // DAYS_PER_VOLUME - o * n // DAYS_PER_VOLUME

    def as_dict(self) -> dict:
        return asdict(self)


def _check_int(name: str, value: object, low: int, high: int | None, hint: str = "") -> None:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    ok = ok and value >= low and (high is None or value <= high)
    if not ok:
        allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise WorldConfigError(f"{name}={value!r} is out of range: must be {allowed}{hint}")


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


def _category_codes(values: pl.Series) -> np.ndarray:
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

    interest = _category_codes(users["main_interest"])[user_idx]
    random_cat = rng.integers(0, len(INTERESTS), size=n)
    category = np.where(rng.random(n) < spec.main_interest_prob, interest, random_cat)

    # Items grouped by category: an item is drawn uniformly inside its category's slice.
    item_cat = _category_codes(items["category"])
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
    interest = _category_codes(users["main_interest"])[user_row]
    item_cat = _category_codes(items["category"])
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
