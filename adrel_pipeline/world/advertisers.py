"""Advertisers and their seed lists: the audience-expansion truth.

Each advertiser ``a`` has a true affinity for every user,
``P(u in audience_a) = sigmoid(b_a + l_trait (w_age[age_u] + w_int[interest_u] + w_act z(activity_u))
+ l_taste k max_m t_u . v_m)``, a mix of visible traits and the latent taste (which only organic
interactions reveal). Three kinds, in turn (advertiser ``i`` is of kind ``ADVERTISER_KINDS[i % 3]``):

* ``taste``: one taste direction, traits a little (l_taste 1, l_trait 0.3): raw features miss
  most of the audience, embeddings of organic interactions can find it;
* ``multimodal``: the union of two taste groups (two directions 120 degrees apart), so a single
  centroid of the seed users' embeddings misses part of the audience;
* ``traits``: mostly visible traits (l_taste 0.2, l_trait 1): raw features suffice.

``b_a`` is solved so that the expected audience is ``seed_size / coverage`` (coverage ~ U(0.4, 0.8),
the share of the audience the advertiser knows of), at most 80% of the users. The true audience
is one Bernoulli draw of the affinities; the seed list is ``seed_size`` of its members, drawn
uniformly (so users enter it in proportion to their affinity), each with engagement metrics:
``impressions = 1 + Poisson(200 activity_u)``, ``clicks ~ Binomial(impressions, ctr_u)``, with
``ctr_u`` proportional to the user's affinity (2% at the audience's mean affinity).

Seed-list sizes fall into ``num_seed_buckets`` geometric buckets from ``smallest_seed_fraction`` to
``largest_seed_fraction`` of the users (advertiser ``i`` in bucket ``i % buckets``, so each bucket
holds every kind), jittered by a factor ``exp(U(-0.25, 0.25))``. Every advertiser's parameters
come from its own random stream: any one of them can be regenerated alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from adrel_pipeline.params import out_of_range
from adrel_pipeline.world.simulation import category_codes, sigmoid, user_taste
from adrel_pipeline.world.spec import ACTIVITY_BETA, AGE_GROUPS, INTERESTS, WorldConfigError, WorldSpec

STREAM_ADVERTISERS, STREAM_AUDIENCE, STREAM_SEEDS = 11, 12, 13
# A seed list this small says little about an audience; below it no bucket is allowed.
MIN_SEED_USERS = 10
ADVERTISER_KINDS: tuple[str, ...] = ("taste", "multimodal", "traits")
# (l_taste, l_trait) per kind.
_MIX = {"taste": (1.0, 0.3), "multimodal": (1.0, 0.3), "traits": (0.2, 1.0)}
# Weight scales: a trait weight ~ N(0, 1.5) and a taste cosine times 6 give logits of similar
# spread (~2.5 and ~2 in 8 dimensions), so each kind's dominant part dominates without the other
# vanishing, and audiences are sharp enough to be findable, loose enough not to be one rule.
TRAIT_SCALE = 1.5
TASTE_SCALE = 6.0
# Cosine between a multimodal advertiser's two taste directions: far enough apart that their
# mean is a poor summary of either.
MODE_COSINE = -0.5
SEED_JITTER = 0.25
COVERAGE = (0.4, 0.8)
MAX_AUDIENCE_SHARE = 0.8
IMPRESSIONS_PER_ACTIVITY = 200.0
BASE_CTR, MAX_CTR = 0.02, 0.5
# Advertisers x users x taste_dim floats held at once while computing affinities (~32 MB).
_CHUNK = 2**22


def seed_bucket_sizes(spec: WorldSpec) -> list[int]:
    """The seed-list size buckets, ascending: ``round(f * num_users)`` (at least ``MIN_SEED_USERS``)
    for ``num_seed_buckets`` fractions ``f`` geometrically spaced from ``smallest_seed_fraction`` to
    ``largest_seed_fraction``; buckets that coincide (tiny worlds) are merged.

    Raises :class:`WorldConfigError` when the largest bucket is below ``MIN_SEED_USERS`` or above
    half the users (a seed list must leave users outside it to expand into)."""
    n = spec.num_users
    largest = round(spec.largest_seed_fraction * n)
    if not MIN_SEED_USERS <= largest <= n // 2:
        low, high = MIN_SEED_USERS / n, (n // 2) / n
        allowed = (f"a number in [{low:g}, {high:g}] for num_users={n}" if low <= high
                   else f"impossible for num_users={n}: num_users must be at least {2 * MIN_SEED_USERS}")
        raise WorldConfigError(
            out_of_range("largest_seed_fraction", spec.largest_seed_fraction, allowed)
            + f" (it gives seed lists of {largest} of the {n} users: at least {MIN_SEED_USERS} seed users, "
              f"at most half the users, so that users remain to expand into)")
    fractions = np.geomspace(spec.smallest_seed_fraction, spec.largest_seed_fraction, spec.num_seed_buckets)
    return sorted({max(MIN_SEED_USERS, round(f * n)) for f in fractions})


def advertiser_ids(spec: WorldSpec) -> list[str]:
    return [_advertiser_id(spec, i) for i in range(spec.num_advertisers)]


def advertiser_range(spec: WorldSpec) -> str:
    """The world's advertisers as a partition range, ``FIRST...LAST`` (``dg launch --partition-range``)."""
    ids = advertiser_ids(spec)
    return f"{ids[0]}...{ids[-1]}"


def _advertiser_id(spec: WorldSpec, index: int) -> str:
    return f"adv_{index:0{max(3, len(str(spec.num_advertisers - 1)))}d}"


def _index(spec: WorldSpec, advertiser_id: str) -> int:
    match = re.fullmatch(r"adv_(\d+)", str(advertiser_id))
    index = int(match.group(1)) if match else -1
    if not 0 <= index < spec.num_advertisers or _advertiser_id(spec, index) != advertiser_id:
        raise KeyError(f"unknown advertiser_id {advertiser_id!r}: this world has "
                       f"{_advertiser_id(spec, 0)}..{_advertiser_id(spec, spec.num_advertisers - 1)}")
    return index


@dataclass(frozen=True)
class _Advertiser:
    """One advertiser's hidden parameters (drawn from its own stream)."""

    index: int
    kind: str
    bucket: int
    seed_size: int
    expected_audience: float
    w_age: np.ndarray
    w_interest: np.ndarray
    w_activity: float
    directions: np.ndarray  # (modes, taste_dim)


def _advertiser(spec: WorldSpec, index: int, buckets: Sequence[int]) -> _Advertiser:
    rng = spec.rng(STREAM_ADVERTISERS, index)
    kind = ADVERTISER_KINDS[index % len(ADVERTISER_KINDS)]
    bucket = buckets[index % len(buckets)]
    seed_size = int(np.clip(round(bucket * np.exp(rng.uniform(-SEED_JITTER, SEED_JITTER))),
                            MIN_SEED_USERS, spec.num_users // 2))
    expected = min(seed_size / rng.uniform(*COVERAGE), MAX_AUDIENCE_SHARE * spec.num_users)
    w_age = rng.normal(0.0, TRAIT_SCALE, len(AGE_GROUPS))
    w_interest = rng.normal(0.0, TRAIT_SCALE, len(INTERESTS))
    w_activity = rng.normal(0.0, TRAIT_SCALE)
    # Every kind draws both directions, so the stream's layout does not depend on the kind.
    first = _unit(rng.standard_normal(spec.taste_dim))
    other = rng.standard_normal(spec.taste_dim)
    other -= (other @ first) * first
    second = (MODE_COSINE * first + np.sqrt(1 - MODE_COSINE**2) * _unit(other)
              if np.linalg.norm(other) > 1e-9 else -first)  # taste_dim 1: the only other direction
    directions = np.stack([first, second]) if kind == "multimodal" else first[None]
    return _Advertiser(index, kind, bucket, seed_size, expected, w_age, w_interest, w_activity, directions)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x)


def _affinity(spec: WorldSpec, users: pl.DataFrame, advertisers: Sequence[_Advertiser]) -> np.ndarray:
    """``(len(advertisers), num_users)`` audience probabilities. Row by row the same arithmetic
    whichever advertisers are asked for together, so one advertiser alone gets identical values."""
    age = users["age_group"].cast(pl.Enum(AGE_GROUPS)).to_physical().to_numpy().astype(np.int64)
    interest = category_codes(users["main_interest"])
    a, b = ACTIVITY_BETA
    activity_z = (users["true_activity"].to_numpy() - a / (a + b)) / np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    taste = user_taste(users)
    out = np.empty((len(advertisers), users.height))
    for row, adv in enumerate(advertisers):
        l_taste, l_trait = _MIX[adv.kind]
        # Elementwise product and sum over taste_dim (not a BLAS product, whose kernel may depend
        # on the batch): the same bits for an advertiser alone or in a roster.
        cosine = (taste[None, :, :] * adv.directions[:, None, :]).sum(axis=2).max(axis=0)
        out[row] = (l_trait * (adv.w_age[age] + adv.w_interest[interest] + adv.w_activity * activity_z)
                    + l_taste * TASTE_SCALE * cosine)
    # The intercept per advertiser: bisection on the expected audience size (monotone in it).
    target = np.array([adv.expected_audience for adv in advertisers])[:, None]
    low = -out.max(axis=1, keepdims=True) - 40.0
    high = -out.min(axis=1, keepdims=True) + 40.0
    for _ in range(64):
        mid = 0.5 * (low + high)
        above = sigmoid(out + mid).sum(axis=1, keepdims=True) > target
        high, low = np.where(above, mid, high), np.where(above, low, mid)
    return sigmoid(out + 0.5 * (low + high))


def _by_id(users: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray]:
    """The users sorted by id (every draw is made in that order, so a user's outcome never depends
    on how the frame is ordered) and the positions of the frame's rows in it."""
    order = np.argsort(users["user_id"].to_numpy(), kind="stable")
    rows = np.empty_like(order)
    rows[order] = np.arange(len(order))
    return users[order], rows


def audience_affinity(spec: WorldSpec, users: pl.DataFrame, advertiser_ids: Sequence[str]) -> np.ndarray:
    """``(len(advertiser_ids), num_users)``: each user's true probability of belonging to each
    advertiser's audience, columns in the frame's row order. The oracle ranking for audience
    expansion. Unknown ids raise ``KeyError``."""
    buckets = seed_bucket_sizes(spec)
    roster = [_advertiser(spec, _index(spec, a), buckets) for a in advertiser_ids]
    ordered, rows = _by_id(users)
    return _affinity(spec, ordered, roster)[:, rows]


def true_audience(spec: WorldSpec, users: pl.DataFrame, advertiser_id: str) -> np.ndarray:
    """``(num_users,)`` booleans: the advertiser's audience, one Bernoulli draw of the affinities
    (frame row order)."""
    index = _index(spec, advertiser_id)
    ordered, rows = _by_id(users)
    affinity = _affinity(spec, ordered, [_advertiser(spec, index, seed_bucket_sizes(spec))])[0]
    return _audience(spec, ordered, index, affinity)[rows]


def _audience(spec: WorldSpec, users: pl.DataFrame, index: int, affinity: np.ndarray) -> np.ndarray:
    """The Bernoulli draw, users sorted by id."""
    return spec.rng(STREAM_AUDIENCE, index).random(users.height) < affinity


def generate_advertisers(spec: WorldSpec, users: pl.DataFrame) -> pl.DataFrame:
    """One row per advertiser: id, kind, size bucket, seed-list size and realised audience size."""
    buckets = seed_bucket_sizes(spec)
    roster = [_advertiser(spec, i, buckets) for i in range(spec.num_advertisers)]
    users, _ = _by_id(users)
    step = max(1, _CHUNK // max(1, users.height * spec.taste_dim))
    audience = np.empty(len(roster), dtype=np.int64)
    for lo in range(0, len(roster), step):
        chunk = roster[lo:lo + step]
        for adv, affinity in zip(chunk, _affinity(spec, users, chunk)):
            audience[adv.index] = _audience(spec, users, adv.index, affinity).sum()
    return pl.DataFrame(
        {
            "advertiser_id": advertiser_ids(spec),
            "kind": [adv.kind for adv in roster],
            "bucket": [adv.bucket for adv in roster],
            "seed_size": [adv.seed_size for adv in roster],
            "audience_size": audience,
        },
        schema={"advertiser_id": pl.Utf8, "kind": pl.Utf8, "bucket": pl.Int64, "seed_size": pl.Int64,
                "audience_size": pl.Int64},
    )


SEED_LIST_SCHEMA = {"user_id": pl.Int64, "impressions": pl.Int64, "clicks": pl.Int64}


def generate_seed_list(spec: WorldSpec, users: pl.DataFrame, advertiser_id: str) -> pl.DataFrame:
    """The advertiser's seed list, sorted by user_id: ``seed_size`` members of its true audience
    drawn uniformly (all of them if the audience is smaller), with their impressions and clicks."""
    index = _index(spec, advertiser_id)
    adv = _advertiser(spec, index, seed_bucket_sizes(spec))
    users, _ = _by_id(users)
    affinity = _affinity(spec, users, [adv])[0]
    members = np.flatnonzero(_audience(spec, users, index, affinity))
    rng = spec.rng(STREAM_SEEDS, index)
    chosen = np.sort(rng.choice(members, size=min(adv.seed_size, len(members)), replace=False))
    impressions = 1 + rng.poisson(IMPRESSIONS_PER_ACTIVITY * users["true_activity"].to_numpy()[chosen])
    # Users closer to the audience's core engage more: what engagement-weighted training exploits.
    mean = affinity[members].mean() if len(members) else 1.0
    clicks = rng.binomial(impressions, np.clip(BASE_CTR * affinity[chosen] / mean, 0.0, MAX_CTR))
    return pl.DataFrame(
        {"user_id": users["user_id"].to_numpy()[chosen], "impressions": impressions, "clicks": clicks},
        schema=SEED_LIST_SCHEMA,
    ).sort("user_id")
