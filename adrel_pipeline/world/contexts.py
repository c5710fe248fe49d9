"""Contextual relevance: the contexts that request ads, the ads' contextual attributes, the true
relevance of a (context, ad) pair, and the signals a relevance model sees.

* **Ad inventory** (:func:`generate_ad_inventory`): every ad of ``items`` gets a content type
  (``regular`` 40%, ``video`` 20%, ``shopping`` 25%, ``carousel`` 15%), a bid (log-normal, by
  content type), for shopping ads an image kind (``product`` or ``lifestyle``, half each), a
  latent ``quality ~ N(0, 0.5)`` and whether it has a graph embedding (90%). Its category and
  style are the item's; the style's prototype (the world's taste space) is its latent topic.
* **Contexts** (:func:`generate_contexts`), ``contexts_per_day`` a day from the day's own stream:
  a user picked in proportion to activity, on a surface (``home`` 40%, ``search`` 35%,
  ``closeup`` 25%). ``home``: the user's feed, category = main interest, topic = the user's taste.
  ``search``: a query of intent ``browse``/``shop``/``learn`` (50/30/20%), category = the main
  interest with probability ``main_interest_prob`` else uniform, topic = normalize(taste + N(0, I)).
  ``closeup``: an organic pin picked by popularity, its category, its style's prototype as topic.
* **True relevance** (:func:`true_grade`): ``z = -1.6 + 1.6 [same category] + 2.2 topic . ad topic
  + quality + shopping terms + intent terms`` where a shopping ad gains 1.4 more from a category
  match and loses 1.0 without one (a product in the wrong category is irrelevant whatever it looks
  like), a ``shop`` query adds 0.8 to shopping ads and a ``learn`` query 0.6 to videos; the true
  grade on the 5-point scale is ``g* = 1 + 4 sigmoid(z)``, and a pair is truly relevant when
  ``g* >= 3.5`` (what a noiseless, unbiased rater labels 4 or 5).
* **Signals** (:func:`observe_signals`), what a model sees, each with its own noise and coverage:
  ``category_match`` (always present); ``text_match`` (search and closeup only: home has no text;
  for shopping ads, whose product titles rarely name the category, it carries 0.25 of the
  category match instead of 0.6); ``embedding_similarity`` (the topics' cosine + noise; missing for ads without a
  graph embedding); ``image_similarity``, whose meaning depends on the content type: a regular
  ad's image tracks the topic, a video thumbnail weakly (and is missing for 30% of videos), a
  carousel shows the best of three images, and a shopping ad's product image scores high whatever
  the context while its lifestyle image tracks the topic (the seed's example: the same product
  fares differently on image similarity by image alone).
* **Engagement** (:func:`click_probability`): ``sigmoid(-4 + 0.4 z + content type effect)``,
  video +0.5, carousel +0.3, shopping -0.2: relevance helps clicks, but not only relevance.

Contexts and signals are drawn per day from streams keyed by (seed, date): any day regenerates
alone, byte for byte. numpy and polars only.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from adrel_pipeline.world.simulation import _normalize, category_codes, sigmoid, style_prototypes, user_taste
from adrel_pipeline.world.spec import INTERESTS, MAX_CONTEXTS_PER_DAY, WorldSpec

SURFACES: tuple[str, ...] = ("home", "search", "closeup")
SURFACE_PROBS = (0.4, 0.35, 0.25)
CONTENT_TYPES: tuple[str, ...] = ("regular", "video", "shopping", "carousel")
CONTENT_TYPE_PROBS = (0.4, 0.2, 0.25, 0.15)
QUERY_INTENTS: tuple[str, ...] = ("browse", "shop", "learn")
INTENT_PROBS = (0.5, 0.3, 0.2)
IMAGE_KINDS: tuple[str, ...] = ("lifestyle", "product")
# The signals a relevance model sees (NaN where a signal is absent).
SIGNALS: tuple[str, ...] = ("text_match", "embedding_similarity", "image_similarity", "category_match")
RELEVANT_GRADE = 3.5  # g* at or above: truly relevant (a perfect rater's 4 or 5)

_STREAM_INVENTORY, _STREAM_CONTEXTS, _STREAM_SIGNALS = 21, 22, 23
_SHOPPING, _VIDEO, _CAROUSEL = CONTENT_TYPES.index("shopping"), CONTENT_TYPES.index("video"), CONTENT_TYPES.index(
    "carousel")
# Relevance logit weights (see the module docstring).
BIAS, W_CATEGORY, W_TOPIC = -1.6, 1.6, 2.2
W_SHOPPING_CATEGORY, W_SHOPPING_MISMATCH = 1.4, -1.0
W_SHOP_INTENT_SHOPPING, W_LEARN_INTENT_VIDEO = 0.8, 0.6
QUALITY_SD = 0.5
BID_MEDIAN = {"regular": 1.0, "video": 1.4, "shopping": 0.7, "carousel": 1.1}
BID_SIGMA = 0.5
EMBEDDING_COVERAGE = 0.9
VIDEO_IMAGE_COVERAGE = 0.7
CTR_BIAS, CTR_RELEVANCE = -4.0, 0.4
CTR_CONTENT = {"regular": 0.0, "video": 0.5, "shopping": -0.2, "carousel": 0.3}


def generate_ad_inventory(spec: WorldSpec, items: pl.DataFrame) -> pl.DataFrame:
    """One row per ad: ad_id (its item_id), category, style, content_type, bid, image_kind (shopping
    only), and the latent ``quality`` and ``has_embedding`` (generator truth, never features)."""
    ads = items.filter(pl.col("is_ad")).sort("item_id")
    rng = spec.rng(_STREAM_INVENTORY)
    n = ads.height
    content = rng.choice(len(CONTENT_TYPES), size=n, p=CONTENT_TYPE_PROBS)
    median = np.array([BID_MEDIAN[c] for c in CONTENT_TYPES])[content]
    bid = median * np.exp(rng.normal(0.0, BID_SIGMA, n))
    kind = rng.integers(0, len(IMAGE_KINDS), n)
    quality = rng.normal(0.0, QUALITY_SD, n)
    has_embedding = rng.random(n) < EMBEDDING_COVERAGE
    return pl.DataFrame({
        "ad_id": ads["item_id"],
        "category": ads["category"],
        "style": ads["style"],
        "content_type": np.asarray(CONTENT_TYPES)[content],
        "bid": bid,
        "image_kind": np.asarray(IMAGE_KINDS)[kind],
        "quality": quality,
        "has_embedding": has_embedding,
    }, schema={"ad_id": pl.Int64, "category": pl.Utf8, "style": pl.Int64, "content_type": pl.Utf8,
               "bid": pl.Float64, "image_kind": pl.Utf8, "quality": pl.Float64, "has_embedding": pl.Boolean}
    ).with_columns(image_kind=pl.when(pl.col("content_type") == "shopping").then(pl.col("image_kind")))


def context_ids(day: dt.date, n: int) -> np.ndarray:
    return day.toordinal() * MAX_CONTEXTS_PER_DAY + np.arange(n, dtype=np.int64)


def generate_contexts(spec: WorldSpec, users: pl.DataFrame, items: pl.DataFrame, day: dt.date) -> pl.DataFrame:
    """The day's contexts: context_id, day, surface, user_id, pin_id (closeup), category,
    query_intent (search), and the latent ``topic`` (a unit vector in the taste space)."""
    rng = spec.rng(_STREAM_CONTEXTS, day.toordinal())
    n = spec.contexts_per_day
    surface = rng.choice(len(SURFACES), size=n, p=SURFACE_PROBS)
    activity = users["true_activity"].to_numpy()
    user_row = rng.choice(users.height, size=n, p=activity / activity.sum())
    taste = user_taste(users)[user_row]
    interest = category_codes(users["main_interest"])[user_row]

    # Every draw is made for every context, whatever its surface: the stream's layout is fixed.
    random_category = rng.integers(0, len(INTERESTS), n)
    query_category = np.where(rng.random(n) < spec.main_interest_prob, interest, random_category)
    query_topic = _normalize(taste + rng.standard_normal(taste.shape))
    intent = rng.choice(len(QUERY_INTENTS), size=n, p=INTENT_PROBS)
    organic = items.filter(~pl.col("is_ad"))
    popularity = organic["popularity"].to_numpy()
    pin_row = rng.choice(organic.height, size=n, p=popularity / popularity.sum())
    prototypes = style_prototypes(spec)

    home, search = surface == 0, surface == 1
    category = np.where(home, interest, np.where(search, query_category,
                                                   category_codes(organic["category"])[pin_row]))
    topic = np.where(home[:, None], taste, np.where(search[:, None], query_topic,
                                                    prototypes[organic["style"].to_numpy()[pin_row]]))
    return pl.DataFrame({
        "context_id": context_ids(day, n),
        "surface": np.asarray(SURFACES)[surface],
        "user_id": users["user_id"].to_numpy()[user_row],
        "pin_id": organic["item_id"].to_numpy()[pin_row],
        "category": np.asarray(INTERESTS)[category],
        "query_intent": np.asarray(QUERY_INTENTS)[intent],
        "topic": topic,
    }, schema={"context_id": pl.Int64, "surface": pl.Utf8, "user_id": pl.Int64, "pin_id": pl.Int64,
               "category": pl.Utf8, "query_intent": pl.Utf8, "topic": pl.Array(pl.Float64, spec.taste_dim)}
    ).with_columns(day=pl.lit(day, dtype=pl.Date),
                   pin_id=pl.when(pl.col("surface") == "closeup").then(pl.col("pin_id")),
                   query_intent=pl.when(pl.col("surface") == "search").then(pl.col("query_intent"))
                   ).select("context_id", "day", "surface", "user_id", "pin_id", "category", "query_intent", "topic")


def _codes(values: pl.Series, vocabulary: tuple[str, ...]) -> np.ndarray:
    return values.cast(pl.Enum(vocabulary)).to_physical().to_numpy().astype(np.int64)


class PairFactors:
    """The latent factors of aligned (context, ad) pairs, looked up once for the truth, the signals
    and engagement: ``context_row`` and ``ad_row`` index ``contexts`` and ``inventory``."""

    def __init__(self, spec: WorldSpec, contexts: pl.DataFrame, inventory: pl.DataFrame,
                 context_row: np.ndarray, ad_row: np.ndarray):
        self.surface = _codes(contexts["surface"], SURFACES)[context_row]
        intent = contexts["query_intent"].fill_null("browse")
        self.intent = _codes(intent, QUERY_INTENTS)[context_row]
        self.same_category = category_codes(contexts["category"])[context_row] == category_codes(
            inventory["category"])[ad_row]
        ad_topic = style_prototypes(spec)[inventory["style"].to_numpy()[ad_row]]
        # Elementwise product and sum (not a batched BLAS call): the same bits however pairs are grouped.
        self.topic_similarity = (contexts["topic"].to_numpy()[context_row] * ad_topic).sum(axis=1)
        self.content = _codes(inventory["content_type"], CONTENT_TYPES)[ad_row]
        self.quality = inventory["quality"].to_numpy()[ad_row]
        self.product_image = (inventory["image_kind"] == "product").fill_null(False).to_numpy()[ad_row]
        self.has_embedding = inventory["has_embedding"].to_numpy()[ad_row]

    def logit(self) -> np.ndarray:
        shopping = self.content == _SHOPPING
        search = self.surface == SURFACES.index("search")
        return (BIAS + W_CATEGORY * self.same_category + W_TOPIC * self.topic_similarity + self.quality
                + shopping * np.where(self.same_category, W_SHOPPING_CATEGORY, W_SHOPPING_MISMATCH)
                + search * (self.intent == QUERY_INTENTS.index("shop")) * shopping * W_SHOP_INTENT_SHOPPING
                + search * (self.intent == QUERY_INTENTS.index("learn")) * (self.content == _VIDEO)
                * W_LEARN_INTENT_VIDEO)


def true_grade(factors: PairFactors) -> np.ndarray:
    """``g* = 1 + 4 sigmoid(z)``: the pair's true relevance on the 5-point scale."""
    return 1.0 + 4.0 * sigmoid(factors.logit())


def click_probability(factors: PairFactors) -> np.ndarray:
    """The probability that an impression of the pair is clicked (before any position effect)."""
    content_effect = np.array([CTR_CONTENT[c] for c in CONTENT_TYPES])[factors.content]
    return sigmoid(CTR_BIAS + CTR_RELEVANCE * factors.logit() + content_effect)


def observe_signals(spec: WorldSpec, factors: PairFactors, day: dt.date, key: int = 0) -> dict[str, np.ndarray]:
    """The model's signals for the pairs (NaN where absent), with noise from the day's stream
    (``key`` separates the draws of several candidate sets of one day)."""
    rng = spec.rng(_STREAM_SIGNALS, day.toordinal(), key)
    n = len(factors.content)
    noise = rng.standard_normal((6, n))
    missing = rng.random(n)
    sim, cat = factors.topic_similarity, factors.same_category.astype(np.float64)
    shopping = factors.content == _SHOPPING

    text = np.where(shopping, 0.25 * cat + 0.35 * sim + 0.3 * noise[0], 0.6 * cat + 0.35 * sim + 0.25 * noise[0])
    text = np.where(factors.surface == SURFACES.index("home"), np.nan, text)
    embedding = np.where(factors.has_embedding, sim + 0.25 * noise[1], np.nan)
    carousel_best = np.max(0.8 * sim + 0.25 * noise[2:5], axis=0)
    image = np.select(
        [factors.content == _VIDEO, factors.content == _CAROUSEL, shopping & factors.product_image, shopping],
        [np.where(missing < VIDEO_IMAGE_COVERAGE, 0.4 * sim + 0.35 * noise[5], np.nan), carousel_best,
         0.35 + 0.3 * sim + 0.15 * noise[5], 0.9 * sim - 0.05 + 0.2 * noise[5]],
        default=0.8 * sim + 0.2 * noise[5])
    return {"text_match": text, "embedding_similarity": embedding, "image_similarity": image,
            "category_match": cat}
