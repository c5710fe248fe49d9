"""The serving funnel: retrieval, the relevance trim, ranking and a generalised second-price auction.

* **Retrieval** (:func:`retrieve`) draws ``candidates_per_context`` ads per context: half
  uniformly among the ads of the context's category, half by topic, a style in proportion to
  ``exp(4 topic . style prototype)`` then an ad of that style uniformly; repeats within a
  context are dropped. :func:`candidates` adds each pair's signals, bid and truth.
* **Trim**: a candidate whose calibrated P(relevant) is below ``trim_threshold`` (tau) is dropped.
* **Ranking**: one score over calibrated parts, ``bid x pCTR x P(relevant)^alpha``, multiplicative
  rather than an additive utility: each part is a probability or a price, so the product is an
  expected value per impression, discounted by relevance; alpha = 0 is exactly the zero-relevance
  holdout's ``bid x pCTR``; the quality factor ``pCTR x P(relevant)^alpha`` prices a click in the
  auction; and an additive ``eCPM + lambda x relevance`` would add money to probabilities, so
  lambda would need retuning whenever bids moved. The best ``auction_candidates`` with a positive
  score go to the auction.
* **Auction** (generalised second price, quality-weighted, with a reserve per click): entrants
  bidding at least ``reserve_price`` compete, the best ``slots`` by score win slots in score order,
  and the winner of slot ``s`` pays per click the least it could have bid and kept its slot,
  ``max(reserve, next score / own quality)``, where the next score is the next eligible entrant's
  (0 without one). Slot ``s`` is clicked with the pair's click probability times
  ``position_decay^s``; expected revenue is price x expected clicks.

Every candidate carries the stage that dropped it (``dropped_at``: ``trim``, ``ranking`` or
``auction``; null for a winner), so the candidate sampler
(:mod:`adrel_pipeline.contextual.sampling`) logs from every stage without knowing which exist.
numpy and polars only; one sort per call, no loop over contexts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from adrel_pipeline.contextual.spec import FunnelSpec
from adrel_pipeline.world.contexts import (
    PairFactors,
    click_probability,
    observe_signals,
    true_grade,
)
from adrel_pipeline.world.simulation import category_codes, style_prototypes
from adrel_pipeline.world.spec import INTERESTS, WorldSpec

# The stages a candidate can be dropped at, in order (retrieval returns candidates; it drops none).
DROP_STAGES: tuple[str, ...] = ("trim", "ranking", "auction")
# The stages whose survivors the funnel's metrics describe: retrieved, kept by the trim, sent to
# the auction by the ranking, and the auction's winners.
SURVIVOR_STAGES: tuple[str, ...] = ("retrieval", "trim", "ranking", "auction_winners")
RETRIEVAL_SHARPNESS = 4.0
_STREAM_RETRIEVAL = 31
# Context rows x draws x styles comparisons held at once while retrieving (~4 M booleans).
_CHUNK_CELLS = 2**22

CANDIDATE_COLUMNS = ("context_id", "user_id", "ad_id", "surface", "context_category", "query_intent", "ad_category",
                     "content_type", "bid", "text_match", "embedding_similarity", "image_similarity",
                     "category_match", "true_grade", "click_probability")
SERVED_COLUMNS = ("relevance", "pctr", "rank_score", "dropped_at", "slot", "price", "expected_clicks",
                  "holdout_served")


def _grouped(codes: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows sorted by group, each group's first position and its size."""
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=groups)
    return order, np.concatenate([[0], np.cumsum(counts)[:-1]]), counts


def retrieve(spec: WorldSpec, contexts: pl.DataFrame, inventory: pl.DataFrame, day: dt.date) -> tuple[np.ndarray, np.ndarray]:
    """``(context_row, ad_row)`` of the day's retrieved candidates, sorted by context then ad."""
    rng = spec.rng(_STREAM_RETRIEVAL, day.toordinal())
    n, per = contexts.height, spec.candidates_per_context
    by_category = per // 2
    ad_category = category_codes(inventory["category"])
    cat_order, cat_start, cat_count = _grouped(ad_category, len(INTERESTS))
    style_order, style_start, style_count = _grouped(inventory["style"].to_numpy(), spec.num_styles)

    context_category = category_codes(contexts["category"])
    u_cat = rng.random((n, by_category))
    u_style, u_ad = rng.random((n, per - by_category)), rng.random((n, per - by_category))
    counts = cat_count[context_category][:, None]
    # A category without ads retrieves nothing by category (its slots come back as -1, dropped).
    picked_cat = np.where(counts > 0, cat_order[np.minimum(cat_start[context_category][:, None]
                                                           + (u_cat * counts).astype(np.int64),
                                                           len(cat_order) - 1)], -1)

    topics = contexts["topic"].to_numpy()
    prototypes = style_prototypes(spec)
    picked_topic = np.empty((n, per - by_category), dtype=np.int64)
    step = max(1, _CHUNK_CELLS // (spec.num_styles * max(1, per - by_category)))
    for lo in range(0, n, step):
        part = slice(lo, lo + step)
        logits = RETRIEVAL_SHARPNESS * (topics[part] @ prototypes.T)
        weights = np.exp(logits - logits.max(axis=1, keepdims=True)) * (style_count > 0)
        cum = np.cumsum(weights, axis=1)
        target = (1.0 - u_style[part]) * cum[:, -1:]
        style = np.minimum((cum[:, None, :] < target[:, :, None]).sum(axis=2), spec.num_styles - 1)
        offset = (u_ad[part] * style_count[style]).astype(np.int64)
        picked_topic[part] = style_order[style_start[style] + np.minimum(offset, style_count[style] - 1)]

    # Sorted within each context, a repeat sits next to its first draw (and -1, nothing, sorts first).
    picked = np.sort(np.concatenate([picked_cat, picked_topic], axis=1), axis=1)
    keep = picked >= 0
    keep[:, 1:] &= picked[:, 1:] != picked[:, :-1]
    context_row = np.broadcast_to(np.arange(n)[:, None], picked.shape)
    return context_row[keep], picked[keep]


def candidates(spec: WorldSpec, contexts: pl.DataFrame, inventory: pl.DataFrame, day: dt.date) -> pl.DataFrame:
    """Every retrieved candidate of ``contexts`` with its signals (null where absent), bid, and the
    generator's truth (``true_grade``, ``click_probability``: never features), sorted by context
    then ad. Deterministic per (world, contexts, day)."""
    context_row, ad_row = retrieve(spec, contexts, inventory, day)
    factors = PairFactors(spec, contexts, inventory, context_row, ad_row)
    signals = observe_signals(spec, factors, day)
    return pl.DataFrame({
        "context_id": contexts["context_id"].to_numpy()[context_row],
        "user_id": contexts["user_id"].to_numpy()[context_row],
        "ad_id": inventory["ad_id"].to_numpy()[ad_row],
        "surface": contexts["surface"].gather(context_row),
        "context_category": contexts["category"].gather(context_row),
        "query_intent": contexts["query_intent"].gather(context_row),
        "ad_category": inventory["category"].gather(ad_row),
        "content_type": inventory["content_type"].gather(ad_row),
        "bid": inventory["bid"].to_numpy()[ad_row],
        **signals,
        "true_grade": true_grade(factors),
        "click_probability": click_probability(factors),
    }).with_columns(
        # Absent signals are nulls in the table (NaN only inside the model's feature matrix).
        *[pl.col(name).fill_nan(None) for name in signals]).select(CANDIDATE_COLUMNS)


def context_groups(context_ids: np.ndarray) -> np.ndarray:
    """Each row's context as 0, 1, ... in order of first appearance, for rows sorted by context."""
    context_ids = np.asarray(context_ids)
    starts = np.ones(len(context_ids), dtype=bool)
    starts[1:] = context_ids[1:] != context_ids[:-1]
    return np.cumsum(starts) - 1


def position_in_group(group: np.ndarray) -> np.ndarray:
    """0, 1, ... within each run of equal ``group`` values."""
    n = len(group)
    starts = np.ones(n, dtype=bool)
    starts[1:] = group[1:] != group[:-1]
    first = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    return np.arange(n) - first


@dataclass(frozen=True)
class Served:
    """What the funnel did with each candidate, aligned with its inputs."""

    rank_score: np.ndarray  # bid x pCTR x relevance^alpha
    dropped_at: np.ndarray  # index into DROP_STAGES, -1 for a winner
    slot: np.ndarray  # 0-based slot of a winner, -1 otherwise
    price: np.ndarray  # price per click of a winner, NaN otherwise
    expected_clicks: np.ndarray  # click probability x position_decay^slot for a winner, 0 otherwise

    @property
    def won(self) -> np.ndarray:
        return self.slot >= 0

    @property
    def revenue(self) -> np.ndarray:
        return np.where(self.won, self.price, 0.0) * self.expected_clicks

    def stage_names(self) -> pl.Series:
        """``dropped_at`` as names (null for a winner)."""
        return pl.Series("dropped_at", np.asarray(DROP_STAGES, dtype=object)[np.maximum(self.dropped_at, 0)],
                         dtype=pl.Utf8).scatter(np.flatnonzero(self.dropped_at < 0), None)


def serve(groups: np.ndarray, bid: np.ndarray, pctr: np.ndarray, relevance: np.ndarray | None,
          click_probability: np.ndarray, spec: FunnelSpec) -> Served:
    """Trim, rank and auction the candidates of each context (see the module).

    ``groups``: each candidate's context, rows grouped by context (contiguous), ties within a
    context broken by row order; ``relevance``: calibrated P(relevant), or None for a funnel
    without a relevance model (no trim, alpha = 0: the holdout, or a day with no model yet).
    """
    n = len(groups)
    trimmed = np.zeros(n, dtype=bool) if relevance is None else relevance < spec.trim_threshold
    alpha = 0.0 if relevance is None else spec.relevance_exponent
    quality = pctr * (1.0 if relevance is None else np.power(relevance, alpha))
    score = bid * quality
    # One sort: by context, the trimmed last, then score (best first), then row order. The score's
    # rank among all rows stands in for the score, so a single integer key does it.
    by_score = np.argsort(-score, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[by_score] = np.arange(n)
    order = np.argsort((groups.astype(np.int64) * 2 + trimmed) * n + rank, kind="stable")
    g, kept = groups[order], ~trimmed[order]
    position = position_in_group(g)  # the trimmed sort after the kept: a kept row's position among the kept
    enter = kept & (position < spec.auction_candidates) & (score[order] > 0)
    eligible = enter & (bid[order] >= spec.reserve_price)
    idx = np.flatnonzero(eligible)  # the auction's competitors, by context then score
    place = position_in_group(g[idx])
    win = place < spec.slots
    same_next = np.zeros(len(idx), dtype=bool)
    same_next[:-1] = g[idx[1:]] == g[idx[:-1]]
    next_score = np.zeros(len(idx))
    next_score[:-1] = score[order][idx[1:]]
    next_score = np.where(same_next, next_score, 0.0)

    slot = np.full(n, -1, dtype=np.int64)
    price = np.full(n, np.nan)
    winners = order[idx[win]]
    slot[winners] = place[win]
    with np.errstate(divide="ignore", invalid="ignore"):
        price[winners] = np.maximum(spec.reserve_price, next_score[win] / quality[winners])
    dropped = np.full(n, DROP_STAGES.index("auction"), dtype=np.int8)
    dropped[order[kept & ~enter]] = DROP_STAGES.index("ranking")
    dropped[trimmed] = DROP_STAGES.index("trim")
    dropped[winners] = -1
    clicks = np.where(slot >= 0, click_probability * np.power(spec.position_decay, np.maximum(slot, 0)), 0.0)
    return Served(score, dropped, slot, price, clicks)


def _served_frame(cands: pl.DataFrame, served: Served, pctr: np.ndarray, relevance: np.ndarray | None,
                  holdout_won: np.ndarray) -> pl.DataFrame:
    won = served.won
    return cands.with_columns(
        relevance=pl.Series(relevance, dtype=pl.Float64) if relevance is not None else pl.lit(None, pl.Float64),
        pctr=pl.Series(pctr, dtype=pl.Float64),
        rank_score=pl.Series(served.rank_score),
        dropped_at=served.stage_names(),
        slot=pl.Series(served.slot, dtype=pl.Int16).set(pl.Series(~won), None),
        price=pl.Series(served.price).fill_nan(None),
        expected_clicks=pl.Series(served.expected_clicks).set(pl.Series(~won), None),
        holdout_served=pl.Series(holdout_won),
    )


def _serve_both(cands: pl.DataFrame, pctr: np.ndarray, relevance: np.ndarray | None, spec: FunnelSpec
                ) -> tuple[Served, Served]:
    groups = context_groups(cands["context_id"].to_numpy())
    bid, ctr = cands["bid"].to_numpy(), cands["click_probability"].to_numpy()
    holdout = serve(groups, bid, pctr, None, ctr, spec)
    return (holdout if relevance is None else serve(groups, bid, pctr, relevance, ctr, spec)), holdout


def run_funnel(cands: pl.DataFrame, pctr: np.ndarray, relevance: np.ndarray | None, spec: FunnelSpec) -> pl.DataFrame:
    """``cands`` (from :func:`candidates`) served by the funnel, with :data:`SERVED_COLUMNS`:
    ``relevance`` (null without a model), ``pctr``, ``rank_score``, ``dropped_at``, ``slot``,
    ``price`` and ``expected_clicks`` (null unless served), and ``holdout_served``: whether the
    zero-relevance holdout (no trim, alpha = 0) would have served the candidate."""
    production, holdout = _serve_both(cands, pctr, relevance, spec)
    return _served_frame(cands, production, pctr, relevance, holdout.won)


def run_funnel_and_holdout(cands: pl.DataFrame, pctr: np.ndarray, relevance: np.ndarray | None, spec: FunnelSpec
                           ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """:func:`run_funnel`, and the same requests served by the zero-relevance holdout, as a frame of
    its own (the holdout is served once for both)."""
    production, holdout = _serve_both(cands, pctr, relevance, spec)
    return (_served_frame(cands, production, pctr, relevance, holdout.won),
            _served_frame(cands, holdout, pctr, None, holdout.won))
