"""The serving funnel: retrieval (by category and by topic, de-duplicated), the zero-relevance
holdout's ranking by bid x pCTR, and the stage that dropped each candidate."""

import numpy as np
import polars as pl
import pytest

from adrel_pipeline.contextual.funnel import CANDIDATE_COLUMNS, PCTR_NOISE, STAGES, retrieve, run_funnel
from adrel_pipeline.world import INTERESTS
from adrel_pipeline.world.contexts import SIGNALS
from adrel_pipeline_tests.contextual.conftest import DAY, SLOTS


def test_candidates_carry_the_columns_and_one_stage_each(candidates):
    assert candidates.columns == list(CANDIDATE_COLUMNS)
    assert STAGES == ("retrieval", "ranking")
    # Retrieval drops nothing it returns: every candidate is served or dropped by the ranking.
    assert set(candidates["dropped_at"].drop_nulls()) == {"ranking"}
    assert candidates.filter(pl.col("dropped_at").is_null()).height > 0
    # Absent signals are nulls in the table, never NaN.
    for name in SIGNALS:
        assert not candidates[name].is_nan().any(), name
    assert candidates["category_match"].is_not_null().all()


def test_retrieval_keeps_each_ad_once_and_at_most_the_configured_number(ctx_spec, ctx_tables, candidates):
    _, _, inventory, contexts = ctx_tables
    assert not candidates.select("context_id", "ad_id").is_duplicated().any()
    per_context = candidates.group_by("context_id").len()["len"]
    assert per_context.max() <= ctx_spec.candidates_per_context
    # Every context gets candidates (each category has ads in this world).
    assert per_context.len() == contexts.height
    assert set(candidates["ad_id"]) <= set(inventory["ad_id"])

    context_row, ad_row = retrieve(ctx_spec, contexts, inventory, DAY)
    order = np.lexsort((ad_row, context_row))
    np.testing.assert_array_equal(order, np.arange(len(order)))  # sorted by context, then ad
    assert len(context_row) == candidates.height


def test_half_of_retrieval_is_by_category(ctx_spec, ctx_tables, candidates):
    _, _, inventory, _ = ctx_tables
    by_category = candidates.group_by("context_id").agg(
        (pl.col("ad_category") == pl.col("context_category")).sum().alias("same"))
    # Half the draws come from the context's own category: every context holds some of its ads.
    assert (by_category["same"] > 0).all()
    # A uniform retrieval would match the category 1/7 of the time; by-category draws (half of them,
    # fewer after de-duplication among the ~57 ads of a category) push that far up.
    share = float((candidates["ad_category"] == candidates["context_category"]).mean())
    assert share > 0.3 > 1 / len(INTERESTS)
    assert inventory.group_by("category").len().height == len(INTERESTS)


def test_served_ads_are_each_contexts_top_slots_by_bid_times_pctr(candidates):
    ranked = candidates.with_columns(value=pl.col("bid") * pl.col("pctr"), served=pl.col("dropped_at").is_null())
    per_context = ranked.group_by("context_id").agg(
        pl.len().alias("n"), pl.col("served").sum().alias("served"),
        pl.col("value").filter(pl.col("served")).min().alias("lowest_served"),
        pl.col("value").filter(~pl.col("served")).max().alias("highest_dropped"))
    assert (per_context["served"] == np.minimum(per_context["n"], SLOTS)).all()
    beaten = per_context.filter(pl.col("highest_dropped").is_not_null())
    assert beaten.height > 0 and (beaten["lowest_served"] >= beaten["highest_dropped"]).all()


def test_more_slots_serve_more_and_drop_the_rest(ctx_spec, ctx_tables, candidates):
    _, _, inventory, contexts = ctx_tables
    wider = run_funnel(ctx_spec, contexts, inventory, DAY, SLOTS + 2)
    # The same candidates, signals and pCTR: only the dropped stage changes.
    assert wider.drop("dropped_at").equals(candidates.drop("dropped_at"))
    served = wider.group_by("context_id").agg(pl.col("dropped_at").is_null().sum().alias("served"),
                                              pl.len().alias("n"))
    assert (served["served"] == np.minimum(served["n"], SLOTS + 2)).all()
    # A winner with 3 slots still wins with 5.
    assert (wider.filter(candidates["dropped_at"].is_null())["dropped_at"].is_null()).all()


def test_the_funnel_is_deterministic_per_day(ctx_spec, ctx_tables, candidates):
    _, _, inventory, contexts = ctx_tables
    assert run_funnel(ctx_spec, contexts, inventory, DAY, SLOTS).equals(candidates)


def test_pctr_is_an_unbiased_noisy_click_probability(candidates):
    ratio = (candidates["pctr"] / candidates["click_probability"]).to_numpy()
    # log-normal with mean 1 (the -sigma^2/2 shift): sd sqrt(exp(sigma^2) - 1).
    sd = np.sqrt(np.exp(PCTR_NOISE**2) - 1)
    assert abs(ratio.mean() - 1) < 5 * sd / np.sqrt(len(ratio))
    assert np.log(ratio).std() == pytest.approx(PCTR_NOISE, rel=0.05)
    assert ((candidates["true_grade"] > 1) & (candidates["true_grade"] < 5)).all()
