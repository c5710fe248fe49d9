"""Advertisers, their true audiences and seed lists: sizes as configured, audiences shaped as each
kind promises, seed lists drawn by affinity, every advertiser reproducible alone."""

import math

import numpy as np
import polars as pl
import pytest

from adrel_pipeline.world import (
    ADVERTISER_KINDS,
    MIN_SEED_USERS,
    SEED_LIST_SCHEMA,
    WorldConfigError,
    WorldSpec,
    advertiser_ids,
    audience_affinity,
    generate_advertisers,
    generate_seed_list,
    generate_users,
    seed_bucket_sizes,
    true_audience,
    user_taste,
)
from adrel_pipeline.world.advertisers import SEED_JITTER, advertiser_range

# Users only matter here (advertisers never look at items or interactions).
WORLD = {"seed": 3, "num_users": 2000, "num_items": 1000, "num_interactions": 2000, "num_advertisers": 30}


@pytest.fixture(scope="module")
def roster():
    spec = WorldSpec(**WORLD)
    users = generate_users(spec)
    advertisers = generate_advertisers(spec, users)
    return spec, users, advertisers, audience_affinity(spec, users, advertisers["advertiser_id"].to_list())


def _auc(score: np.ndarray, positive: np.ndarray) -> float:
    ranks = np.empty(len(score))
    ranks[np.argsort(score, kind="stable")] = np.arange(1, len(score) + 1)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return (ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _r2(features: np.ndarray, target: np.ndarray) -> float:
    design = np.hstack([features, np.ones((len(features), 1))])
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    return 1 - np.var(target - design @ coef) / np.var(target)


def _traits(users: pl.DataFrame) -> np.ndarray:
    return np.hstack([users["age_group"].to_dummies().to_numpy(), users["main_interest"].to_dummies().to_numpy(),
                      users["true_activity"].to_numpy()[:, None]]).astype(float)


def test_seed_buckets_span_the_configured_range_at_the_default_world():
    spec = WorldSpec()
    sizes = seed_bucket_sizes(spec)
    assert len(sizes) == spec.num_seed_buckets >= 4 and sizes == sorted(sizes)
    assert sizes[0] == round(spec.smallest_seed_fraction * spec.num_users)
    assert sizes[-1] == round(spec.largest_seed_fraction * spec.num_users)
    assert sizes[-1] / sizes[0] >= 100  # two decades of the user base
    ratios = np.diff(np.log(sizes))
    assert ratios.max() - ratios.min() < 0.05  # geometric, up to rounding


def test_tiny_worlds_clamp_and_merge_buckets():
    spec = WorldSpec(num_users=100, num_interactions=100, smallest_seed_fraction=0.01, largest_seed_fraction=0.5)
    sizes = seed_bucket_sizes(spec)
    assert sizes[0] == MIN_SEED_USERS and sizes[-1] == 50
    assert len(sizes) == len(set(sizes)) <= spec.num_seed_buckets


@pytest.mark.parametrize("world, expected", [
    ({"num_users": 10_000, "largest_seed_fraction": 0.9},
     "largest_seed_fraction=0.9 is out of range: must be a number in [0.001, 0.5] for num_users=10000"),
    ({"num_users": 1000, "largest_seed_fraction": 0.005, "smallest_seed_fraction": 0.001},
     ("largest_seed_fraction=0.005 is out of range: must be a number in [0.01, 0.5] for num_users=1000 "
      "(it gives seed lists of 5 of the 1000 users")),
    ({"num_users": 15, "largest_seed_fraction": 0.5}, "num_users must be at least 20"),
])
def test_seed_sizes_impossible_for_the_users_name_field_and_range(world, expected):
    spec = WorldSpec(**{"num_interactions": world["num_users"], **world})
    for make in (lambda: seed_bucket_sizes(spec), lambda: generate_advertisers(spec, generate_users(spec))):
        with pytest.raises(WorldConfigError) as err:
            make()
        assert expected in str(err.value)


@pytest.mark.parametrize("field, value, expected", [
    ("num_advertisers", 0, "num_advertisers=0 is out of range: must be an integer in [1, 100000]"),
    ("smallest_seed_fraction", 0.0, "smallest_seed_fraction=0.0 is out of range: must be a number in (0, 1)"),
    ("largest_seed_fraction", 1.0, "largest_seed_fraction=1.0 is out of range: must be a number in (0, 1)"),
    ("num_seed_buckets", 0, "num_seed_buckets=0 is out of range: must be an integer in [1, 50]"),
    ("largest_seed_fraction", 0.001,
     "smallest_seed_fraction=0.003 is above largest_seed_fraction=0.001: the smallest seed-list bucket"),
])
def test_invalid_advertiser_fields_name_field_and_range(field, value, expected):
    with pytest.raises(WorldConfigError) as err:
        WorldSpec(**{field: value})
    assert expected in str(err.value)


def test_roster_sizes_kinds_and_buckets(roster):
    spec, _, advertisers, _ = roster
    sizes = seed_bucket_sizes(spec)
    assert advertisers.schema == {"advertiser_id": pl.Utf8, "kind": pl.Utf8, "bucket": pl.Int64,
                                  "seed_size": pl.Int64, "audience_size": pl.Int64}
    assert advertisers["advertiser_id"].to_list() == advertiser_ids(spec) == [f"adv_{i:03d}" for i in range(30)]
    # The partition range `make run` launches covers exactly the roster.
    assert advertiser_range(spec) == "adv_000...adv_029"
    assert set(advertisers["bucket"]) == set(sizes)
    # Every bucket holds every kind.
    assert advertisers.group_by("bucket").agg(pl.col("kind").n_unique())["kind"].to_list() == [3] * len(sizes)
    low = np.maximum(MIN_SEED_USERS, np.floor(advertisers["bucket"].to_numpy() * math.exp(-SEED_JITTER)))
    high = np.minimum(spec.num_users // 2, np.ceil(advertisers["bucket"].to_numpy() * math.exp(SEED_JITTER)))
    seed = advertisers["seed_size"].to_numpy()
    assert np.all((low <= seed) & (seed <= high))
    assert len(set(seed)) > len(sizes)  # jittered, not the bucket sizes themselves
    # The advertiser knows of part of its audience only: the audience is larger than the seed list.
    audience = advertisers["audience_size"].to_numpy()
    assert np.median(audience / seed) > 1.2 and np.all(audience <= spec.num_users)


def test_seed_lists_are_drawn_from_the_audience_by_affinity(roster):
    spec, users, advertisers, affinity = roster
    activity = users["true_activity"].to_numpy()
    aucs = []
    for row, (adv, seed_size, audience_size) in enumerate(advertisers.select(
            "advertiser_id", "seed_size", "audience_size").iter_rows()):
        seeds = generate_seed_list(spec, users, adv)
        assert seeds.schema == SEED_LIST_SCHEMA and seeds["user_id"].is_sorted() and seeds["user_id"].is_unique().all()
        assert seeds.height == min(seed_size, audience_size)
        audience = true_audience(spec, users, adv)
        assert audience.sum() == audience_size and audience[seeds["user_id"].to_numpy()].all()
        in_seed = np.isin(users["user_id"].to_numpy(), seeds["user_id"].to_numpy())
        # Ranking every user by the true affinity finds the seed users better than chance; least
        # so for the largest lists, whose audiences hold most users.
        aucs.append(_auc(affinity[row], in_seed))
        assert aucs[-1] > 0.6, adv
        if seed_size < 0.05 * spec.num_users:
            assert affinity[row][in_seed].mean() > 2 * affinity[row].mean(), adv
        assert (seeds["impressions"] >= 1).all() and (seeds["clicks"] <= seeds["impressions"]).all()
        if seeds.height >= 100:
            # Engagement comes from the latent truth: impressions from activity, CTR from affinity.
            assert np.corrcoef(np.argsort(np.argsort(activity[in_seed])),
                               np.argsort(np.argsort(seeds["impressions"].to_numpy())))[0, 1] > 0.5
            ctr = seeds["clicks"].to_numpy() / seeds["impressions"].to_numpy()
            assert np.corrcoef(affinity[row][in_seed], ctr)[0, 1] > 0.1, adv
    assert np.median(aucs) > 0.8


def test_each_kind_mixes_traits_and_taste_as_promised(roster):
    spec, users, advertisers, affinity = roster
    logit = np.log(affinity / (1 - affinity))
    traits, taste = _traits(users), user_taste(users)
    kinds = advertisers["kind"].to_list()
    for row, kind in enumerate(kinds):
        by_traits, by_taste = _r2(traits, logit[row]), _r2(taste, logit[row])
        if kind == "traits":
            assert by_traits > 0.8 and by_taste < 0.3
        else:
            # Raw features miss most of a taste-driven audience.
            assert by_traits < 0.5 and by_taste > by_traits

    def centroid_auc(row):
        audience = true_audience(spec, users, advertisers["advertiser_id"][row])
        return _auc(taste @ taste[audience].mean(axis=0), audience)

    # A single taste centroid finds a one-direction audience nearly as well as the truth does, and
    # misses part of a two-group one.
    single = [centroid_auc(r) for r, k in enumerate(kinds) if k == "taste"]
    double = [centroid_auc(r) for r, k in enumerate(kinds) if k == "multimodal"]
    assert np.mean(double) < np.mean(single) - 0.08


def _two_means_cosine(x: np.ndarray) -> tuple[float, float]:
    """Spherical 2-means (deterministic start: the first row and the row least like it): the
    cosine between the two centroids and the smaller cluster's share."""
    centroids = x[[0, int(np.argmin(x @ x[0]))]]
    for _ in range(30):
        label = np.argmax(x @ centroids.T, axis=1)
        centroids = np.stack([x[label == j].mean(axis=0) for j in range(2)])
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    return float(centroids[0] @ centroids[1]), np.bincount(label, minlength=2).min() / len(x)


def test_multimodal_audiences_split_into_two_taste_groups(roster):
    _, users, advertisers, affinity = roster
    taste = user_taste(users)
    for row, kind in enumerate(advertisers["kind"]):
        if kind == "traits":
            continue
        core = taste[np.argsort(-affinity[row], kind="stable")[:200]]
        cosine, smaller = _two_means_cosine(core)
        if kind == "multimodal":
            assert cosine < 0.2 and smaller > 0.25
        else:
            assert cosine > 0.3


def test_an_advertiser_alone_equals_the_same_in_the_roster(roster):
    spec, users, advertisers, affinity = roster
    ids = advertisers["advertiser_id"].to_list()
    assert generate_advertisers(spec, users).equals(advertisers)
    for row in (0, 7, 29):
        assert np.array_equal(audience_affinity(spec, users, [ids[row]])[0], affinity[row])
        assert true_audience(spec, users, ids[row]).sum() == advertisers["audience_size"][row]
    assert generate_seed_list(spec, users, ids[4]).equals(generate_seed_list(spec, users, ids[4]))
    # A world with fewer advertisers holds the very same ones.
    fewer = WorldSpec(**{**WORLD, "num_advertisers": 8})
    assert generate_advertisers(fewer, users).equals(advertisers.head(8))
    assert generate_seed_list(fewer, users, ids[5]).equals(generate_seed_list(spec, users, ids[5]))
    # Outcomes belong to user ids, not to frame rows.
    shuffled = users.sample(fraction=1.0, shuffle=True, seed=1)
    position = shuffled["user_id"].to_numpy()
    assert generate_seed_list(spec, shuffled, ids[2]).equals(generate_seed_list(spec, users, ids[2]))
    assert np.array_equal(true_audience(spec, shuffled, ids[2]), true_audience(spec, users, ids[2])[position])
    np.testing.assert_allclose(audience_affinity(spec, shuffled, ids[:3]), affinity[:3, position], rtol=1e-12)
    other_seed = WorldSpec(**{**WORLD, "seed": 4})
    assert not np.array_equal(audience_affinity(other_seed, users, ids[:1]), affinity[:1])


@pytest.mark.parametrize("bad", ["adv_030", "adv_30", "adv_0000", "ADV_001", "foo", ""])
def test_unknown_advertiser_ids_are_named(roster, bad):
    spec, users, _, _ = roster
    for call in (lambda: generate_seed_list(spec, users, bad), lambda: true_audience(spec, users, bad),
                 lambda: audience_affinity(spec, users, ["adv_000", bad])):
        with pytest.raises(KeyError, match=repr(bad)):
            call()


def test_ids_widen_with_the_roster():
    spec = WorldSpec(num_advertisers=1500)
    ids = advertiser_ids(spec)
    assert ids[0] == "adv_0000" and ids[-1] == "adv_1499" and len(set(ids)) == 1500
    assert ADVERTISER_KINDS == ("taste", "multimodal", "traits")
