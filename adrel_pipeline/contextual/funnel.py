"""The serving funnel, as far as the labels need it: retrieval, then the zero-relevance holdout's
ranking (bid x pCTR, no relevance) and its winners. Every candidate carries the stage that
dropped it (``dropped_at``; null for a winner), so the candidate sampler
(:mod:`adrel_pipeline.contextual.sampling`) logs from every stage without knowing which stages
exist: the funnel issue inserts its relevance trim and auction here, and the sampler is unchanged.

Retrieval draws ``candidates_per_context`` ads per context: half uniformly among the ads of the
context's category, half by topic, a style in proportion to ``exp(4 topic . style prototype)``
then an ad of that style uniformly; repeats within a context are dropped. numpy and polars only.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from adrel_pipeline.world.contexts import (
    PairFactors,
    click_probability,
    observe_signals,
    true_grade,
)
from adrel_pipeline.world.simulation import category_codes, style_prototypes
from adrel_pipeline.world.spec import INTERESTS, WorldSpec

# The funnel's stages, in order: a candidate's dropped_at names one of them (so far only ranking drops any).
STAGES: tuple[str, ...] = ("retrieval", "ranking")
RETRIEVAL_SHARPNESS = 4.0
PCTR_NOISE = 0.3  # log-normal error of the engagement model's pCTR
_STREAM_RETRIEVAL = 31
# Context rows x draws x styles comparisons held at once while retrieving (~4 M booleans).
_CHUNK_CELLS = 2**22

CANDIDATE_COLUMNS = ("context_id", "ad_id", "surface", "context_category", "query_intent", "ad_category",
                     "content_type", "bid", "text_match", "embedding_similarity", "image_similarity",
                     "category_match", "pctr", "dropped_at", "true_grade", "click_probability")


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


def run_funnel(spec: WorldSpec, contexts: pl.DataFrame, inventory: pl.DataFrame, day: dt.date,
               slots: int) -> pl.DataFrame:
    """Every retrieved candidate of the day with its signals, the engagement model's pCTR, the
    stage that dropped it (``ranking``: not among the context's ``slots`` best by bid x pCTR; null:
    served), and the generator's truth (``true_grade``, ``click_probability``: never features)."""
    context_row, ad_row = retrieve(spec, contexts, inventory, day)
    factors = PairFactors(spec, contexts, inventory, context_row, ad_row)
    grade = true_grade(factors)
    ctr = click_probability(factors)
    signals = observe_signals(spec, factors, day)
    rng = spec.rng(_STREAM_RETRIEVAL, day.toordinal(), 1)
    pctr = ctr * np.exp(PCTR_NOISE * rng.standard_normal(len(ctr)) - PCTR_NOISE**2 / 2)
    bid = inventory["bid"].to_numpy()[ad_row]
    # Rank within each context by bid x pCTR (ties by ad id): the holdout knows no relevance.
    ad_ids = inventory["ad_id"].to_numpy()[ad_row]
    order = np.lexsort((ad_ids, -(bid * pctr), context_row))
    first = np.searchsorted(context_row[order], context_row[order], side="left")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - first
    return pl.DataFrame({
        "context_id": contexts["context_id"].to_numpy()[context_row],
        "ad_id": ad_ids,
        "surface": contexts["surface"].gather(context_row),
        "context_category": contexts["category"].gather(context_row),
        "query_intent": contexts["query_intent"].gather(context_row),
        "ad_category": inventory["category"].gather(ad_row),
        "content_type": inventory["content_type"].gather(ad_row),
        "bid": bid,
        **signals,
        "pctr": pctr,
        "rank": rank,
        "true_grade": grade,
        "click_probability": ctr,
    }).with_columns(
        # Absent signals are nulls in the table (NaN only inside the model's feature matrix).
        *[pl.col(name).fill_nan(None) for name in signals],
        dropped_at=pl.when(pl.col("rank") >= slots).then(pl.lit("ranking"))).select(CANDIDATE_COLUMNS)
