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
    style_prototypes,
    user_taste,
    window,
)
from adrel_pipeline_tests.conftest import WEEK


def test_defaults_are_the_seed_world():
    spec = WorldSpec()
    assert (spec.seed, spec.num_users, spec.num_items, spec.num_interactions) == (0, 10_000, 50_000, 200_000)
    assert spec.ad_fraction == 0.1 and spec.main_interest_prob == pytest.approx(0.4 / 1.4)
    assert (spec.taste_dim, spec.num_styles, spec.taste_strength, spec.popularity_exponent) == (8, 32, 4.0, 1.0)
    assert (spec.num_advertisers, spec.smallest_seed_fraction, spec.largest_seed_fraction,
            spec.num_seed_buckets) == (40, 0.003, 0.3, 5)


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
    taste = user_taste(users)
    assert users.schema["taste"] == pl.Array(pl.Float64, spec.taste_dim)
    assert np.allclose(np.linalg.norm(taste, axis=1), 1.0)
    assert np.allclose(np.linalg.norm(style_prototypes(spec), axis=1), 1.0)
    assert style_prototypes(spec).shape == (spec.num_styles, spec.taste_dim)
    assert items["style"].min() >= 0 and items["style"].max() == spec.num_styles - 1
    # Popularity: 1 for ads; within each organic (category, style) cell exactly 1/rank^exponent.
    assert (items.filter("is_ad")["popularity"] == 1.0).all()
    cells = items.filter(~pl.col("is_ad")).group_by("category", "style").agg(
        pl.col("popularity").sort(descending=True), pl.len())
    for popularity, n in zip(cells["popularity"], cells["len"]):
        assert np.allclose(popularity.to_numpy(), np.arange(1, n + 1) ** -spec.popularity_exponent)


def test_latent_columns_leave_the_earlier_draws_unchanged():
    """taste, style and popularity come from their own streams: changing how they are drawn
    changes none of the visible columns (nor the notebook's draws of them)."""
    spec = WorldSpec(num_users=500, num_items=1000, num_interactions=500)
    other = WorldSpec(**{**spec.as_dict(), "taste_dim": 3, "num_styles": 5, "popularity_exponent": 2.0})
    visible_users, visible_items = ["user_id", "age_group", "main_interest", "true_activity"], ["item_id", "category",
                                                                                                "is_ad"]
    assert generate_users(spec).select(visible_users).equals(generate_users(other).select(visible_users))
    assert generate_items(spec).select(visible_items).equals(generate_items(other).select(visible_items))
    assert user_taste(generate_users(other)).shape == (500, 3)


def _raw_features(users: pl.DataFrame) -> np.ndarray:
    return np.hstack([users["age_group"].to_dummies().to_numpy(), users["main_interest"].to_dummies().to_numpy(),
                      users["true_activity"].to_numpy()[:, None], np.ones((users.height, 1))]).astype(float)


def _r2(features: np.ndarray, target: np.ndarray) -> float:
    coef, *_ = np.linalg.lstsq(features, target, rcond=None)
    return 1 - ((target - features @ coef) ** 2).sum() / ((target - target.mean(axis=0)) ** 2).sum()


@pytest.fixture(scope="module")
def taste_world():
    """2,000 users with ~50 organic events each: enough for taste to show in who engages with what."""
    spec = WorldSpec(num_users=2000, num_items=5000, num_interactions=100_000)
    users, items = generate_users(spec), generate_items(spec)
    organic = generate_interactions(spec, users, items, WEEK).join(items, on="item_id").filter(~pl.col("is_ad"))
    return spec, users, items, organic


def test_taste_is_latent_yet_shows_in_organic_interactions(taste_world):
    spec, users, _, organic = taste_world
    taste = user_taste(users)
    # Raw features say little about taste (age a little, by design) ...
    raw = _r2(_raw_features(users), taste)
    assert 0.01 < raw < 0.25
    # ... while the styles a user engages with point at it: a crude estimate from a week of organic
    # events (the style histogram times the prototypes) beats the raw features' best linear guess.
    styles = np.zeros((spec.num_users, spec.num_styles))
    np.add.at(styles, (organic["user_id"].to_numpy(), organic["style"].to_numpy()), 1)
    from_events = styles @ style_prototypes(spec)
    coef, *_ = np.linalg.lstsq(_raw_features(users), taste, rcond=None)
    from_raw = _raw_features(users) @ coef

    seen = styles.sum(axis=1) >= 10  # a direction needs a few events (the least active have none)
    assert seen.mean() > 0.5

    def median_cosine(estimate):
        return np.median((estimate * taste)[seen].sum(axis=1) / np.linalg.norm(estimate[seen], axis=1))

    assert median_cosine(from_events) > 0.5 and median_cosine(from_events) > median_cosine(from_raw) + 0.2


def test_users_of_similar_taste_share_organic_pins(taste_world):
    _, users, _, organic = taste_world
    taste = user_taste(users)
    pins = organic.select("user_id", "item_id").unique()
    matrix = np.zeros((users.height, int(organic["item_id"].max()) + 1))
    matrix[pins["user_id"].to_numpy(), pins["item_id"].to_numpy()] = 1
    shared = matrix @ matrix.T
    cosine = taste @ taste.T
    # Same main interest only, so that shared categories do not explain the overlap.
    same = users["main_interest"].to_numpy()[:, None] == users["main_interest"].to_numpy()[None, :]
    off_diagonal = ~np.eye(users.height, dtype=bool) & same
    similar, dissimilar = off_diagonal & (cosine > 0.8), off_diagonal & (cosine < 0.0)
    assert similar.sum() > 500 and dissimilar.sum() > 500
    assert shared[similar].mean() > 2 * shared[dissimilar].mean()


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


def _notebook_per_draw(spec, users, items):
    """The seed notebook's per-draw probability of every (user, item): activity share x category
    choice / category size, taste and popularity aside."""
    share = users["true_activity"].to_numpy() / users["true_activity"].sum()
    interest = np.array([INTERESTS.index(c) for c in users["main_interest"]])
    category = np.array([INTERESTS.index(c) for c in items["category"]])
    size = np.bincount(category, minlength=len(INTERESTS))
    p = spec.main_interest_prob
    return share[:, None] * (p * (interest[:, None] == category) + (1 - p) / len(INTERESTS)) / size[category]


@pytest.mark.parametrize("taste_strength, popularity_exponent", [(4.0, 1.0), (20.0, 3.0), (0.0, 0.0)])
def test_ads_keep_the_notebook_oracle(taste_strength, popularity_exponent):
    """Taste and popularity shape organic picks only: an ad's probability is the notebook's closed
    form whatever they are; with neither, organic pins get it too."""
    spec = WorldSpec(num_users=50, num_items=400, num_interactions=500, taste_strength=taste_strength,
                     popularity_exponent=popularity_exponent)
    users, items = generate_users(spec), generate_items(spec)
    oracle = interaction_probability(spec, users, items, users["user_id"].to_numpy(), items["item_id"].to_numpy(),
                                     outer=True)
    per_draw = -np.expm1(np.log1p(-oracle) / spec.num_interactions)
    notebook = _notebook_per_draw(spec, users, items)
    ads = items["is_ad"].to_numpy()
    np.testing.assert_allclose(per_draw[:, ads], notebook[:, ads], rtol=1e-9)
    if taste_strength == popularity_exponent == 0:
        np.testing.assert_allclose(per_draw, notebook, rtol=1e-9)
    else:
        assert not np.allclose(per_draw[:, ~ads], notebook[:, ~ads], rtol=0.01)
    # Aligned pairs give the outer product's entries.
    rows, cols = np.array([0, 3, 49, 3]), np.array([5, 399, 0, 5])
    np.testing.assert_array_equal(
        interaction_probability(spec, users, items, rows, cols), oracle[rows, cols])


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
# Few styles and a strong taste, so that every (user, style) group is drawn often and taste moves
# the frequencies far from uniform.
MC_WORLD = {"seed": 7, "num_users": 20, "num_items": 100, "num_interactions": 700, "num_styles": 4,
            "taste_strength": 8.0}
MC_WINDOWS = 600
# Each group below is compared with |z| < MAX_Z. 340 groups per test (users, user x category,
# items, user x style of organic pins): under the oracle, the chance that any of them exceeds 5
# standard errors is about 340 x 5.7e-7 (normal tails), ~2e-4.
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
    style = np.eye(spec.num_styles)[items["style"].to_numpy()] * ~items["is_ad"].to_numpy()[:, None]
    return spec, oracle, events, windows_hit, (category, style), log.height


def _groups(matrix: np.ndarray, indicators: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """A (user x item) matrix summed per user, per (user, category), per item and per (user, style
    of organic pins)."""
    category, style = indicators
    return np.concatenate([matrix.sum(axis=1), (matrix @ category).ravel(), matrix.sum(axis=0),
                           (matrix @ style).ravel()])


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
    ("taste_dim", 0, "taste_dim=0 is out of range: must be an integer in [1, 64]"),
    ("taste_dim", 65, "taste_dim=65"),
    ("num_styles", 0, "num_styles=0 is out of range: must be an integer in [1, 10000]"),
    ("taste_strength", -1.0, "taste_strength=-1.0 is out of range: must be a number in [0, 50]"),
    ("taste_strength", float("inf"), "taste_strength=inf is out of range"),
    ("popularity_exponent", 6, "popularity_exponent=6 is out of range: must be a number in [0, 5]"),
])
def test_invalid_world_names_field_and_range(field, value, expected):
    params = {"num_users": 100, "num_items": 200, "num_interactions": 1000}
    params[field] = value
    with pytest.raises(WorldConfigError) as err:
        WorldSpec(**params)
    assert expected in str(err.value)
