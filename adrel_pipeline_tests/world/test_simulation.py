import datetime as dt

import numpy as np
import polars as pl
import pytest

from adrel_pipeline.world import (
    AGE_GROUPS,
    AGE_PROBS,
    INTERESTS,
    WorldConfigError,
    WorldSpec,
    generate_day,
    generate_interactions,
    generate_items,
    generate_users,
    interaction_probability,
    window,
)
from adrel_pipeline_tests.conftest import WEEK


def test_defaults_are_the_seed_world():
    spec = WorldSpec()
    assert (spec.seed, spec.num_users, spec.num_items, spec.num_interactions) == (0, 10_000, 50_000, 200_000)
    assert spec.ad_fraction == 0.1 and spec.main_interest_prob == pytest.approx(0.4 / 1.4)


def test_same_seed_same_world_other_seed_other_world(spec, world):
    again = (generate_users(spec), generate_items(spec))
    again += (generate_interactions(spec, *again, WEEK),)
    for a, b in zip(world, again):
        assert a.equals(b)
    other = WorldSpec(**{**spec.as_dict(), "seed": 1})
    assert not generate_users(other).equals(world[0])


def test_user_and_item_distributions():
    spec = WorldSpec(num_users=20_000, num_items=20_000, num_interactions=20_000)
    users, items = generate_users(spec), generate_items(spec)
    age = users["age_group"].value_counts()
    for group, p in zip(AGE_GROUPS, AGE_PROBS):
        share = age.filter(pl.col("age_group") == group)["count"][0] / spec.num_users
        assert share == pytest.approx(p, abs=0.015)
    assert set(users["main_interest"]) == set(INTERESTS)
    # Beta(2, 7): mean 2/9, variance ab/((a+b)^2 (a+b+1)) = 14/810
    assert users["true_activity"].mean() == pytest.approx(2 / 9, abs=0.005)
    assert users["true_activity"].var() == pytest.approx(14 / 810, rel=0.05)
    assert int(items["is_ad"].sum()) == spec.num_ads == 2000
    assert users["user_id"].is_unique().all() and items["item_id"].is_unique().all()


@pytest.mark.parametrize("n", [200_000, 30_000, 1_000, 7, 13])
def test_every_seven_consecutive_days_hold_num_interactions(n):
    spec = WorldSpec(num_users=1, num_interactions=n)
    start = dt.date(2026, 1, 1)
    counts = [spec.interactions_on(start + dt.timedelta(days=i)) for i in range(400)]
    assert all(sum(counts[i:i + 7]) == n for i in range(len(counts) - 6))
    assert max(counts) - min(counts) <= 1


def test_a_day_depends_only_on_seed_and_date(spec, world):
    users, items, week = world
    day = WEEK[3]
    alone = generate_day(spec, users, items, day)
    assert alone.equals(week.filter(pl.col("day") == day))
    assert alone.height == spec.interactions_on(day) and alone["day"].unique().to_list() == [day]
    # A window that starts elsewhere holds the very same day.
    assert generate_interactions(spec, users, items, window(day, 2)).filter(pl.col("day") == day).equals(alone)
    assert not generate_day(spec, users, items, WEEK[4]).head(100).equals(alone.head(100))
    other_seed = WorldSpec(**{**spec.as_dict(), "seed": 1})
    assert not generate_day(other_seed, users, items, day).head(100).equals(alone.head(100))


def test_window_is_the_days_ending_at_its_end():
    assert window(dt.date(2026, 1, 7), 7) == [dt.date(2026, 1, d) for d in range(1, 8)]
    assert window(dt.date(2026, 3, 1), 2) == [dt.date(2026, 2, 28), dt.date(2026, 3, 1)]


def test_interactions_follow_activity_and_interest():
    spec = WorldSpec(num_users=2000, num_items=5000, num_interactions=200_000)
    users, items = generate_users(spec), generate_items(spec)
    inter = generate_interactions(spec, users, items, WEEK)
    assert inter.height == spec.num_interactions
    joined = inter.join(users, on="user_id").join(items, on="item_id")
    p = spec.main_interest_prob
    match_share = (joined["main_interest"] == joined["category"]).mean()
    assert match_share == pytest.approx(p + (1 - p) / len(INTERESTS), abs=0.01)
    # A user's share of events tracks their activity share.
    counts = inter["user_id"].value_counts().join(users, on="user_id")
    corr = np.corrcoef(counts["count"].to_numpy(), counts["true_activity"].to_numpy())[0, 1]
    assert corr > 0.95


def test_interaction_probability_is_a_distribution_over_pairs():
    spec = WorldSpec(num_users=30, num_items=100, num_interactions=30)
    users, items = generate_users(spec), generate_items(spec)
    uu, ii = np.meshgrid(users["user_id"].to_numpy(), items["item_id"].to_numpy(), indexing="ij")
    at_least_once = interaction_probability(spec, users, items, uu.ravel(), ii.ravel())
    per_draw = -np.expm1(np.log1p(-at_least_once) / spec.num_interactions)
    assert per_draw.sum() == pytest.approx(1.0, rel=1e-9)
    with pytest.raises(KeyError, match="user_id"):
        interaction_probability(spec, users, items, np.array([10_000]), np.array([0]))


# Monte Carlo check of the oracle against the generator itself. A tiny world, so that every pair is
# drawn often: MC_WINDOWS disjoint 7-day windows (each holds exactly num_interactions events, and
# each day is its own random stream, so windows are independent samples of the generator).
MC_WORLD = {"seed": 7, "num_users": 20, "num_items": 100, "num_interactions": 700}
MC_WINDOWS = 600
# Each group below is compared with |z| < MAX_Z. 260 groups per test (users, user x category,
# items): under the oracle, the chance that any of them exceeds 5 standard errors is about
# 260 x 5.7e-7 (normal tails), ~1.5e-4.
MAX_Z = 5.0


@pytest.fixture(scope="module")
def monte_carlo():
    """The tiny world, its oracle, per-pair event counts over all the days, and per-pair counts of
    the windows in which the pair interacted at least once."""
    spec = WorldSpec(**MC_WORLD)
    users, items = generate_users(spec), generate_items(spec)
    assert users["user_id"].to_list() == list(range(spec.num_users))
    assert items["item_id"].to_list() == list(range(spec.num_items))
    first = dt.date(2030, 1, 1)
    days = window(first + dt.timedelta(days=7 * MC_WINDOWS - 1), 7 * MC_WINDOWS)
    log = generate_interactions(spec, users, items, days).with_columns(
        window=(pl.col("day") - first).dt.total_days() // 7)
    events = np.zeros((spec.num_users, spec.num_items))
    np.add.at(events, (log["user_id"].to_numpy(), log["item_id"].to_numpy()), 1)
    seen = log.unique(["window", "user_id", "item_id"])
    windows_hit = np.zeros_like(events)
    np.add.at(windows_hit, (seen["user_id"].to_numpy(), seen["item_id"].to_numpy()), 1)
    oracle = interaction_probability(spec, users, items, users["user_id"].to_numpy(),
                                     items["item_id"].to_numpy(), outer=True)
    category = np.eye(len(INTERESTS))[[INTERESTS.index(c) for c in items["category"]]]
    return spec, oracle, events, windows_hit, category, log.height


def _groups(matrix: np.ndarray, category: np.ndarray) -> np.ndarray:
    """A (user x item) matrix summed per user, per (user, category) and per item."""
    return np.concatenate([matrix.sum(axis=1), (matrix @ category).ravel(), matrix.sum(axis=0)])


def test_oracle_per_draw_probability_matches_event_frequencies(monte_carlo):
    """Every event is one independent draw of the generator, so a group of pairs' event count is
    Binomial(total events, sum of the oracle's per-draw probabilities) exactly."""
    spec, oracle, events, _, category, total = monte_carlo
    assert total == MC_WINDOWS * spec.num_interactions
    per_draw = -np.expm1(np.log1p(-oracle) / spec.num_interactions)
    q = _groups(per_draw, category)
    z = (_groups(events, category) - total * q) / np.sqrt(total * q * (1 - q))
    assert np.abs(z).max() < MAX_Z, f"worst group off by {np.abs(z).max():.1f} standard errors"


def test_oracle_matches_at_least_once_per_window_frequencies(monte_carlo):
    """The oracle's value itself, P(at least one interaction in a 7-day window), against the share
    of the windows in which each pair interacted. A pair's count is Binomial(windows, P); summed
    over a group, the pairs of one window are negatively associated (balls into bins), so the sum
    of the binomial variances bounds the group's variance and the z-scores are conservative."""
    _, oracle, _, windows_hit, category, _ = monte_carlo
    expected = MC_WINDOWS * _groups(oracle, category)
    variance = MC_WINDOWS * _groups(oracle * (1 - oracle), category)
    z = (_groups(windows_hit, category) - expected) / np.sqrt(variance)
    assert np.abs(z).max() < MAX_Z, f"worst group off by {np.abs(z).max():.1f} standard errors"
    # The pairs span rare to common: the check is not confined to one end of the range.
    assert oracle.min() < 0.1 and oracle.max() > 0.5


@pytest.mark.parametrize("field, value, expected", [
    ("num_users", 0, "num_users=0 is out of range: must be an integer >= 1"),
    ("num_users", -5, "num_users=-5"),
    ("num_items", 10, "num_items=10 is out of range: must be an integer >= 100"),
    ("ad_fraction", 0.0, "ad_fraction=0.0 is out of range: must be a number in (0, 1)"),
    ("ad_fraction", 1.0, "ad_fraction=1.0 is out of range"),
    ("ad_fraction", 0.001, "must be between 1 and num_items - 1"),
    ("num_interactions", 99, "num_interactions=99 is out of range: must be an integer >= num_users=100"),
    ("main_interest_prob", 1.5, "main_interest_prob=1.5 is out of range: must be a number in [0, 1]"),
    ("main_interest_prob", -0.1, "main_interest_prob=-0.1"),
    ("seed", -1, "seed=-1 is out of range"),
])
def test_invalid_world_names_field_and_range(field, value, expected):
    params = {"num_users": 100, "num_items": 200, "num_interactions": 1000}
    params[field] = value
    with pytest.raises(WorldConfigError) as err:
        WorldSpec(**params)
    assert expected in str(err.value)
