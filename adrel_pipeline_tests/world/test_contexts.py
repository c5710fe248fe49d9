"""Contextual traffic: the ad inventory, the day's contexts, the true grade of a (context, ad) pair
with its click probability, and the signals a model sees; each reproducible from (seed, day) alone."""

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from adrel_pipeline.world import INTERESTS, WorldConfigError, WorldSpec, generate_items, generate_users
from adrel_pipeline.world.contexts import (
    BID_MEDIAN,
    BID_SIGMA,
    CONTENT_TYPE_PROBS,
    CONTENT_TYPES,
    EMBEDDING_COVERAGE,
    INTENT_PROBS,
    QUERY_INTENTS,
    RELEVANT_GRADE,
    SURFACE_PROBS,
    SURFACES,
    VIDEO_IMAGE_COVERAGE,
    PairFactors,
    click_probability,
    generate_ad_inventory,
    generate_contexts,
    observe_signals,
    true_grade,
)
from adrel_pipeline.world.simulation import style_prototypes
from adrel_pipeline.world.spec import MAX_CONTEXTS_PER_DAY

WORLD = {"seed": 0, "num_users": 1000, "num_items": 4000, "num_interactions": 30000, "num_styles": 8,
         "contexts_per_day": 2000, "candidates_per_context": 40}
DAY, OTHER_DAY = dt.date(2026, 1, 13), dt.date(2026, 1, 14)


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def _within(share, p, n, sds=5.0):
    """A binomial share of ``n`` draws is within ``sds`` standard deviations of ``p``."""
    return abs(share - p) <= sds * math.sqrt(p * (1 - p) / n)


@pytest.fixture(scope="module")
def tables():
    spec = WorldSpec(**WORLD)
    users, items = generate_users(spec), generate_items(spec)
    return spec, users, items, generate_ad_inventory(spec, items)


@pytest.fixture(scope="module")
def contexts(tables):
    spec, users, items, _ = tables
    return generate_contexts(spec, users, items, DAY)


@pytest.mark.parametrize("field, value, expected", [
    ("contexts_per_day", 0, "contexts_per_day=0 is out of range: must be an integer in [1, 10000000]"),
    ("contexts_per_day", MAX_CONTEXTS_PER_DAY + 1, "contexts_per_day=10000001 is out of range"),
    ("candidates_per_context", 0, "candidates_per_context=0 is out of range: must be an integer in [1, 10000]"),
])
def test_invalid_traffic_fields_name_field_and_range(field, value, expected):
    with pytest.raises(WorldConfigError) as err:
        WorldSpec(**{field: value})
    assert expected in str(err.value)


def test_ad_inventory_is_deterministic_and_follows_the_items(tables):
    spec, _, items, inventory = tables
    assert generate_ad_inventory(spec, items).equals(inventory)
    # Row order of the items does not matter: the inventory is sorted by ad id.
    assert generate_ad_inventory(spec, items.sample(fraction=1.0, shuffle=True, seed=3)).equals(inventory)
    other = WorldSpec(**{**WORLD, "seed": 1})
    assert not generate_ad_inventory(other, items)["bid"].equals(inventory["bid"])

    ads = items.filter(pl.col("is_ad")).sort("item_id")
    assert inventory.height == ads.height == spec.num_ads
    assert inventory["ad_id"].to_list() == ads["item_id"].to_list()
    assert inventory["category"].equals(ads["category"], check_names=False)
    assert inventory["style"].equals(ads["style"], check_names=False)
    assert set(inventory["content_type"]) <= set(CONTENT_TYPES)
    # image_kind exists on shopping ads only.
    shopping = inventory["content_type"] == "shopping"
    assert inventory["image_kind"].is_null().equals(~shopping, check_names=False)
    assert set(inventory.filter(shopping)["image_kind"]) == {"lifestyle", "product"}


def test_ad_inventory_mix_and_bids_follow_their_distributions(tables):
    _, _, _, inventory = tables
    n = inventory.height
    for content, p in zip(CONTENT_TYPES, CONTENT_TYPE_PROBS):
        assert _within(float((inventory["content_type"] == content).mean()), p, n), content
    assert _within(float(inventory["has_embedding"].mean()), EMBEDDING_COVERAGE, n)
    assert (inventory["bid"] > 0).all()
    # log(bid / median of its content type) ~ N(0, BID_SIGMA).
    medians = inventory["content_type"].replace_strict(BID_MEDIAN, return_dtype=pl.Float64).to_numpy()
    log_ratio = np.log(inventory["bid"].to_numpy() / medians)
    assert abs(log_ratio.mean()) < 5 * BID_SIGMA / math.sqrt(n)
    assert log_ratio.std() == pytest.approx(BID_SIGMA, rel=0.2)
    assert _within(float((inventory["quality"] > 0).mean()), 0.5, n)


def test_contexts_regenerate_alone_and_differ_between_days(tables, contexts):
    spec, users, items, _ = tables
    other = generate_contexts(spec, users, items, OTHER_DAY)
    # Regenerated after another day, or by a fresh spec: the same bits.
    assert generate_contexts(WorldSpec(**WORLD), users, items, DAY).equals(contexts)
    assert contexts.height == other.height == spec.contexts_per_day
    assert contexts["context_id"].to_list() == list(DAY.toordinal() * MAX_CONTEXTS_PER_DAY + np.arange(2000))
    assert set(contexts["context_id"]).isdisjoint(other["context_id"])
    assert (contexts["day"] == DAY).all() and (other["day"] == OTHER_DAY).all()
    assert not np.array_equal(contexts["topic"].to_numpy(), other["topic"].to_numpy())
    assert not contexts["surface"].equals(other["surface"])
    seeded = generate_contexts(WorldSpec(**{**WORLD, "seed": 1}), users, items, DAY)
    assert not np.array_equal(seeded["topic"].to_numpy(), contexts["topic"].to_numpy())


def test_contexts_follow_their_surface(tables, contexts):
    spec, users, items, _ = tables
    n = contexts.height
    for surface, p in zip(SURFACES, SURFACE_PROBS):
        assert _within(float((contexts["surface"] == surface).mean()), p, n), surface
    topic = contexts["topic"].to_numpy()
    np.testing.assert_allclose(np.linalg.norm(topic, axis=1), 1.0, atol=1e-12)

    home, search, closeup = (contexts["surface"] == s for s in SURFACES)
    assert contexts["pin_id"].is_not_null().equals(closeup, check_names=False)
    assert contexts["query_intent"].is_not_null().equals(search, check_names=False)

    with_user = contexts.join(users.select("user_id", "main_interest", "taste"), on="user_id", how="left")
    assert with_user["main_interest"].is_not_null().all()
    # Home: the user's feed, with the user's main interest and taste.
    feed = with_user.filter(home)
    assert (feed["category"] == feed["main_interest"]).all()
    np.testing.assert_array_equal(feed["topic"].to_numpy(), feed["taste"].to_numpy())
    # Search: the main interest with probability main_interest_prob, else a uniform category.
    queries = with_user.filter(search)
    p = spec.main_interest_prob + (1 - spec.main_interest_prob) / len(INTERESTS)
    assert _within(float((queries["category"] == queries["main_interest"]).mean()), p, queries.height)
    for intent, q in zip(QUERY_INTENTS, INTENT_PROBS):
        assert _within(float((queries["query_intent"] == intent).mean()), q, queries.height), intent
    # Closeup: an organic pin, its category and its style's prototype.
    pins = contexts.filter(closeup).join(items.select(pl.col("item_id").alias("pin_id"), "is_ad", "style",
                                                      pl.col("category").alias("pin_category")), on="pin_id")
    assert pins.height == int(closeup.sum()) and not pins["is_ad"].any()
    assert (pins["category"] == pins["pin_category"]).all()
    np.testing.assert_array_equal(pins["topic"].to_numpy(), style_prototypes(spec)[pins["style"].to_numpy()])


def _pairs(spec):
    """Hand-built contexts and ads: every context's topic is style 0's prototype and every ad is of
    style 0, so the topic similarity is exactly 1 (up to rounding)."""
    topic = style_prototypes(spec)[0]
    contexts = pl.DataFrame({
        "context_id": [0, 1, 2, 3, 4],
        "surface": ["home", "search", "search", "closeup", "search"],
        # A closeup carrying "learn" gets no learn bonus: intents act on searches only.
        "query_intent": [None, "shop", "learn", "learn", "browse"],
        "category": ["Fashion", "Food", "Food", "Fashion", "Food"],
        "topic": [topic.tolist()] * 5,
    }, schema_overrides={"topic": pl.Array(pl.Float64, spec.taste_dim)})
    inventory = pl.DataFrame({
        "ad_id": [10, 11, 12, 13, 14],
        "category": ["Fashion", "Food", "Fashion", "Food", "Fashion"],
        "style": [0, 0, 0, 0, 0],
        "content_type": ["regular", "shopping", "shopping", "video", "video"],
        "quality": [0.3, 0.0, 0.0, -0.2, 0.0],
        "image_kind": [None, "product", "lifestyle", None, None],
        "has_embedding": [True, True, False, True, True],
    })
    # (context row, ad row, hand-worked logit z, content type's click effect)
    cases = [
        (0, 0, -1.6 + 1.6 + 2.2 + 0.3, 0.0),          # home, same category, regular: 2.5
        (1, 1, -1.6 + 1.6 + 2.2 + 1.4 + 0.8, -0.2),   # shop query, shopping in category: 4.4
        (1, 2, -1.6 + 2.2 - 1.0 + 0.8, -0.2),         # shop query, shopping in the wrong category: 0.4
        (2, 3, -1.6 + 1.6 + 2.2 - 0.2 + 0.6, 0.5),    # learn query, video in category: 2.6
        (3, 4, -1.6 + 1.6 + 2.2, 0.5),                # closeup "learn", video: no bonus: 2.2
        (0, 1, -1.6 + 2.2 + 0.0 - 1.0, -0.2),         # home Fashion, shopping Food ad: -0.4
        (4, 1, -1.6 + 1.6 + 2.2 + 1.4, -0.2),         # browse query, shopping in category: 3.6
        (4, 3, -1.6 + 1.6 + 2.2 - 0.2, 0.5),          # browse query, video: 2.0
    ]
    return contexts, inventory, cases


def test_true_grade_and_click_probability_hand_worked(tables):
    spec = tables[0]
    contexts, inventory, cases = _pairs(spec)
    context_row, ad_row = np.array([c[0] for c in cases]), np.array([c[1] for c in cases])
    factors = PairFactors(spec, contexts, inventory, context_row, ad_row)
    z = np.array([c[2] for c in cases])
    effect = np.array([c[3] for c in cases])
    np.testing.assert_allclose(factors.logit(), z, atol=1e-12)
    grade = true_grade(factors)
    np.testing.assert_allclose(grade, [1 + 4 * _sigmoid(v) for v in z], atol=1e-12)
    np.testing.assert_allclose(click_probability(factors), [_sigmoid(-4 + 0.4 * v + e) for v, e in zip(z, effect)],
                               atol=1e-12)
    # Truly relevant (g* >= 3.5) exactly when z >= ln(0.625 / 0.375) = ln(5/3) ~ 0.511: the product in
    # the wrong category (z = 0.4) is not, whatever its topic.
    assert list(grade >= RELEVANT_GRADE) == list(z >= math.log(5 / 3))
    assert grade[2] < RELEVANT_GRADE < grade[1]
    assert ((1 < grade) & (grade < 5)).all()


@pytest.fixture(scope="module")
def random_pairs(tables, contexts):
    spec, _, _, inventory = tables
    rng = np.random.default_rng(0)
    n = 30_000
    return PairFactors(spec, contexts, inventory, rng.integers(0, contexts.height, n),
                       rng.integers(0, inventory.height, n))


def test_signals_are_present_where_they_exist(tables, random_pairs):
    spec = tables[0]
    factors = random_pairs
    signals = observe_signals(spec, factors, DAY)
    home = factors.surface == SURFACES.index("home")
    assert home.any() and (~home).any()
    # text_match: absent exactly on home contexts.
    np.testing.assert_array_equal(np.isnan(signals["text_match"]), home)
    # embedding_similarity: absent exactly where the ad has no graph embedding.
    assert (~factors.has_embedding).any()
    np.testing.assert_array_equal(np.isnan(signals["embedding_similarity"]), ~factors.has_embedding)
    # category_match: always present, the truth's category match.
    np.testing.assert_array_equal(signals["category_match"], factors.same_category.astype(float))
    # image_similarity: absent on videos only, for about 30% of them.
    video = factors.content == CONTENT_TYPES.index("video")
    missing = np.isnan(signals["image_similarity"])
    assert not missing[~video].any()
    assert _within(float(missing[video].mean()), 1 - VIDEO_IMAGE_COVERAGE, int(video.sum()))


def test_a_shopping_ads_image_similarity_depends_on_its_image(tables, random_pairs):
    spec = tables[0]
    factors = random_pairs
    image = observe_signals(spec, factors, DAY)["image_similarity"]
    shopping = factors.content == CONTENT_TYPES.index("shopping")
    # A product image scores 0.35 + 0.3 sim, a lifestyle image 0.9 sim - 0.05 (plus noise): the
    # slopes on the topic similarity differ, and the product image scores high wherever the topic is off.
    for product, slope in ((True, 0.3), (False, 0.9)):
        rows = shopping & (factors.product_image == product)
        fitted = np.polyfit(factors.topic_similarity[rows], image[rows], 1)[0]
        assert fitted == pytest.approx(slope, abs=0.1), product
    off_topic = shopping & (factors.topic_similarity < 0)
    assert image[off_topic & factors.product_image].mean() > image[off_topic & ~factors.product_image].mean() + 0.3


def test_signals_reproduce_from_day_and_key(tables, random_pairs):
    spec = tables[0]
    first = observe_signals(spec, random_pairs, DAY)
    again = observe_signals(WorldSpec(**WORLD), random_pairs, DAY)
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
    for other in (observe_signals(spec, random_pairs, OTHER_DAY), observe_signals(spec, random_pairs, DAY, key=1)):
        present = ~np.isnan(first["embedding_similarity"])
        assert not np.array_equal(first["embedding_similarity"][present], other["embedding_similarity"][present])
        # The category match is no draw: the same on every stream.
        np.testing.assert_array_equal(first["category_match"], other["category_match"])


def test_pair_factors_do_not_depend_on_how_pairs_are_grouped(tables, contexts, random_pairs):
    spec, _, _, inventory = tables
    rng = np.random.default_rng(1)
    context_row = rng.integers(0, contexts.height, 500)
    ad_row = rng.integers(0, inventory.height, 500)
    whole = true_grade(PairFactors(spec, contexts, inventory, context_row, ad_row))
    parts = np.concatenate([true_grade(PairFactors(spec, contexts, inventory, context_row[s], ad_row[s]))
                            for s in (slice(0, 7), slice(7, 300), slice(300, 500))])
    np.testing.assert_array_equal(whole, parts)
