"""The serving funnel: retrieval (by category and by topic, de-duplicated), the relevance trim,
the ranking and the generalised second-price auction, and the stage that dropped each candidate."""

import numpy as np
import polars as pl
import pytest

from adrel_pipeline.contextual.funnel import (
    CANDIDATE_COLUMNS,
    DROP_STAGES,
    SERVED_COLUMNS,
    context_groups,
    retrieve,
    run_funnel,
    run_funnel_and_holdout,
    serve,
)
from adrel_pipeline.contextual.spec import ContextualConfigError, FunnelSpec
from adrel_pipeline.world import INTERESTS
from adrel_pipeline.world.contexts import SIGNALS
from adrel_pipeline_tests.contextual.conftest import DAY, FUNNEL, SLOTS, grade_relevance


def _stages(served) -> list:
    return served.stage_names().to_list()


# --- the auction, worked by hand -----------------------------------------------------------------

def test_gsp_charges_each_winner_the_next_bid_without_quality_or_reserve():
    # Three bidders, equal pCTR, no relevance, two slots: the textbook GSP. Slot 0 goes to the bid of
    # 3 at the runner-up's 2 per click, slot 1 to the bid of 2 at the third's 1; the third loses.
    spec = FunnelSpec(slots=2, auction_candidates=3, reserve_price=0.0, position_decay=0.5)
    ctr = np.array([0.1, 0.2, 0.3])
    served = serve(np.zeros(3, dtype=np.int64), np.array([2.0, 3.0, 1.0]), np.full(3, 0.1), None, ctr, spec)
    assert served.slot.tolist() == [1, 0, -1]
    assert served.price[:2] == pytest.approx([1.0, 2.0])
    assert np.isnan(served.price[2])
    assert _stages(served) == [None, None, "auction"]
    # Slot 1 is clicked at half its pair's rate (position_decay 0.5): expected revenue 2 x 0.2 + 1 x 0.1 x 0.5.
    assert served.expected_clicks.tolist() == pytest.approx([0.1 * 0.5, 0.2, 0.0])
    assert served.revenue.sum() == pytest.approx(2 * 0.2 + 1 * 0.1 * 0.5)


def test_the_funnel_trims_ranks_and_prices_by_quality_with_a_reserve():
    # One context, tau 0.2, alpha 1, 3 auction candidates, 2 slots, reserve 0.5 per click:
    #   ad   bid   pCTR  P(rel)  quality = pCTR x P(rel)  score = bid x quality
    #   A    2.0   0.10  0.9     0.090                    0.180
    #   B    1.0   0.20  0.5     0.100                    0.100
    #   C    4.0   0.05  0.1     -> trimmed (0.1 < tau)
    #   D    0.4   0.50  1.0     0.500                    0.200  (bids below the reserve: cannot win)
    #   E    3.0   0.02  0.8     0.016                    0.048
    #   F    1.0   0.01  0.5     0.005                    0.005
    # Ranking keeps D, A, B (the best 3 kept by score); E and F drop there. D enters the auction but
    # is ineligible; A takes slot 0 and pays B's score over its own quality, 0.100 / 0.090 = 1.111;
    # B takes slot 1, and with no eligible entrant behind it pays the reserve, 0.5.
    spec = FunnelSpec(trim_threshold=0.2, relevance_exponent=1.0, auction_candidates=3, slots=2, reserve_price=0.5,
                      position_decay=0.5)
    bid = np.array([2.0, 1.0, 4.0, 0.4, 3.0, 1.0])
    pctr = np.array([0.10, 0.20, 0.05, 0.50, 0.02, 0.01])
    relevance = np.array([0.9, 0.5, 0.1, 1.0, 0.8, 0.5])
    ctr = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    served = serve(np.zeros(6, dtype=np.int64), bid, pctr, relevance, ctr, spec)
    assert _stages(served) == [None, None, "trim", "auction", "ranking", "ranking"]
    assert served.slot.tolist() == [0, 1, -1, -1, -1, -1]
    assert served.price[:2] == pytest.approx([0.100 / 0.090, 0.5])
    assert served.rank_score == pytest.approx(bid * pctr * relevance)
    assert served.expected_clicks[:2] == pytest.approx([0.1, 0.2 * 0.5])
    assert served.revenue.sum() == pytest.approx(0.100 / 0.090 * 0.1 + 0.5 * 0.1)


def test_relevance_exponent_weighs_relevance_and_zero_is_the_holdout():
    # A: bid 1, P(rel) 0.9; B: bid 1.5, P(rel) 0.3; equal pCTR. alpha 0 ranks by bid (B first);
    # alpha 1 by bid x P(rel) (0.9 vs 0.45: A first). No relevance at all equals alpha 0 without the trim.
    bid, pctr, rel, ctr = np.array([1.0, 1.5]), np.full(2, 0.1), np.array([0.9, 0.3]), np.full(2, 0.1)
    groups = np.zeros(2, dtype=np.int64)
    base = FunnelSpec(slots=1, auction_candidates=2, reserve_price=0.0, trim_threshold=0.0)
    assert serve(groups, bid, pctr, rel, ctr, FunnelSpec(**{**base.as_dict(), "relevance_exponent": 0.0})).slot.tolist() == [-1, 0]
    assert serve(groups, bid, pctr, rel, ctr, base).slot.tolist() == [0, -1]
    holdout = serve(groups, bid, pctr, None, ctr, FunnelSpec(trim_threshold=0.5, slots=1, reserve_price=0.0))
    assert holdout.slot.tolist() == [-1, 0] and DROP_STAGES.index("trim") not in holdout.dropped_at


def test_the_trim_drops_exactly_the_candidates_below_the_threshold(retrieved, candidates):
    relevance = grade_relevance(retrieved)
    trimmed = (candidates["dropped_at"] == "trim").fill_null(False).to_numpy()
    np.testing.assert_array_equal(trimmed, relevance < FUNNEL.trim_threshold)
    assert 0 < trimmed.mean() < 1
    # Tau 0 trims nothing; without a relevance model nothing is trimmed whatever tau is.
    pctr = candidates["pctr"].to_numpy()
    for spec, rel in ((FunnelSpec(slots=SLOTS, trim_threshold=0.0), relevance), (FUNNEL, None)):
        again = run_funnel(retrieved, pctr, rel, spec)
        assert not (again["dropped_at"] == "trim").any()


def test_equal_scores_are_broken_by_row_order():
    served = serve(np.zeros(3, dtype=np.int64), np.ones(3), np.full(3, 0.1), None, np.full(3, 0.1),
                   FunnelSpec(slots=2, reserve_price=0.0))
    assert served.slot.tolist() == [0, 1, -1]


def test_contexts_are_auctioned_independently(candidates):
    # Serving every context at once gives each context what serving it alone gives.
    pctr, bid = candidates["pctr"].to_numpy(), candidates["bid"].to_numpy()
    rel, ctr = candidates["relevance"].to_numpy(), candidates["click_probability"].to_numpy()
    groups = context_groups(candidates["context_id"].to_numpy())
    together = serve(groups, bid, pctr, rel, ctr, FUNNEL)
    for g in (0, 7, int(groups.max())):
        rows = groups == g
        alone = serve(np.zeros(rows.sum(), dtype=np.int64), bid[rows], pctr[rows], rel[rows], ctr[rows], FUNNEL)
        assert alone.slot.tolist() == together.slot[rows].tolist()
        np.testing.assert_allclose(alone.price, together.price[rows])


# --- stage bookkeeping on the day's traffic ------------------------------------------------------

def test_every_candidate_carries_one_stage_and_the_served_columns(candidates):
    assert candidates.columns == [*CANDIDATE_COLUMNS, *SERVED_COLUMNS]
    assert set(candidates["dropped_at"].drop_nulls()) == set(DROP_STAGES)
    winners = candidates.filter(pl.col("dropped_at").is_null())
    assert winners["slot"].is_not_null().all() and winners["price"].is_not_null().all()
    losers = candidates.filter(pl.col("dropped_at").is_not_null())
    assert losers.select(pl.col("slot", "price", "expected_clicks").is_null().all()).row(0) == (True, True, True)
    # Absent signals are nulls in the table, never NaN.
    for name in SIGNALS:
        assert not candidates[name].is_nan().any(), name
    assert candidates["category_match"].is_not_null().all()


def test_each_context_sends_at_most_its_auction_candidates_and_fills_its_slots_in_score_order(candidates):
    per_context = candidates.group_by("context_id").agg(
        (pl.col("dropped_at").is_null() | (pl.col("dropped_at") == "auction")).sum().alias("entrants"),
        pl.col("dropped_at").is_null().sum().alias("winners"),
        pl.col("rank_score").filter(pl.col("dropped_at").is_null()).sort_by(
            pl.col("slot").filter(pl.col("dropped_at").is_null())).alias("scores"),
        pl.col("rank_score").filter(pl.col("dropped_at") == "ranking").max().alias("best_dropped_by_ranking"),
        pl.col("rank_score").filter(pl.col("dropped_at").is_null() | (pl.col("dropped_at") == "auction")).min()
        .alias("worst_entrant"))
    assert (per_context["entrants"] <= FUNNEL.auction_candidates).all()
    assert (per_context["winners"] <= SLOTS).all() and (per_context["winners"] == SLOTS).mean() > 0.9
    assert all(s == sorted(s, reverse=True) for s in per_context["scores"].to_list())
    ranked = per_context.filter(pl.col("best_dropped_by_ranking").is_not_null())
    assert ranked.height > 0 and (ranked["worst_entrant"] >= ranked["best_dropped_by_ranking"]).all()
    winners = candidates.filter(pl.col("dropped_at").is_null())
    assert ((winners["price"] >= FUNNEL.reserve_price - 1e-12) & (winners["price"] <= winners["bid"] + 1e-12)).all()
    assert (winners["bid"] >= FUNNEL.reserve_price).all()


def test_holdout_served_is_what_the_zero_relevance_funnel_serves(retrieved, candidates):
    holdout = run_funnel(retrieved, candidates["pctr"].to_numpy(), None, FUNNEL)
    # Served together (the holdout served once for both), the same two frames.
    both = run_funnel_and_holdout(retrieved, candidates["pctr"].to_numpy(), grade_relevance(retrieved), FUNNEL)
    assert both[0].equals(candidates) and both[1].equals(holdout)
    assert holdout["dropped_at"].is_null().equals(candidates["holdout_served"], check_names=False)
    assert holdout["holdout_served"].equals(holdout["dropped_at"].is_null(), check_names=False)
    assert holdout["relevance"].is_null().all()
    # Relevance in the ranking serves other ads than the holdout does, and more relevant ones.
    assert not candidates["holdout_served"].equals(candidates["dropped_at"].is_null(), check_names=False)
    relevant = pl.col("true_grade") >= 3.5
    assert (candidates.filter(pl.col("dropped_at").is_null()).select(relevant.mean()).item()
            > candidates.filter(pl.col("holdout_served")).select(relevant.mean()).item())


def test_more_slots_serve_more_and_keep_the_winners(retrieved, candidates):
    pctr, rel = candidates["pctr"].to_numpy(), grade_relevance(retrieved)
    wider = run_funnel(retrieved, pctr, rel, FunnelSpec(**{**FUNNEL.as_dict(), "slots": SLOTS + 2}))
    assert wider.select(CANDIDATE_COLUMNS).equals(candidates.select(CANDIDATE_COLUMNS))
    assert wider["dropped_at"].is_null().sum() > candidates["dropped_at"].is_null().sum()
    assert wider.filter(candidates["dropped_at"].is_null())["dropped_at"].is_null().all()


def test_the_funnel_is_deterministic_per_day(ctx_spec, ctx_tables, retrieved, candidates):
    from adrel_pipeline.contextual.engagement import serving_pctr
    from adrel_pipeline.contextual.funnel import candidates as retrieved_candidates

    _, _, inventory, contexts = ctx_tables
    again = retrieved_candidates(ctx_spec, contexts, inventory, DAY)
    assert again.equals(retrieved)
    assert run_funnel(again, serving_pctr(again, None, ctx_spec, DAY).pctr, grade_relevance(again),
                      FUNNEL).equals(candidates)


@pytest.mark.parametrize("fields, expected", [
    ({"slots": 11}, "slots=11 is out of range: must be an integer <= auction_candidates=10"),
    ({"trim_threshold": 1.5}, "trim_threshold=1.5 is out of range: must be a number in [0, 1]"),
    ({"position_decay": 0.0}, "position_decay=0.0 is out of range: must be a number in (0, 1]"),
    ({"reserve_price": -1.0}, "reserve_price=-1.0 is out of range"),
])
def test_invalid_funnel_settings_name_the_field_and_range(fields, expected):
    with pytest.raises(ContextualConfigError) as err:
        FunnelSpec(**fields)
    assert expected in str(err.value)


# --- retrieval -----------------------------------------------------------------------------------

def test_retrieval_keeps_each_ad_once_and_at_most_the_configured_number(ctx_spec, ctx_tables, retrieved):
    _, _, inventory, contexts = ctx_tables
    assert not retrieved.select("context_id", "ad_id").is_duplicated().any()
    per_context = retrieved.group_by("context_id").len()["len"]
    assert per_context.max() <= ctx_spec.candidates_per_context
    # Every context gets candidates (each category has ads in this world).
    assert per_context.len() == contexts.height
    assert set(retrieved["ad_id"]) <= set(inventory["ad_id"])

    context_row, ad_row = retrieve(ctx_spec, contexts, inventory, DAY)
    order = np.lexsort((ad_row, context_row))
    np.testing.assert_array_equal(order, np.arange(len(order)))  # sorted by context, then ad
    assert len(context_row) == retrieved.height


def test_half_of_retrieval_is_by_category(ctx_tables, retrieved):
    _, _, inventory, _ = ctx_tables
    by_category = retrieved.group_by("context_id").agg(
        (pl.col("ad_category") == pl.col("context_category")).sum().alias("same"))
    # Half the draws come from the context's own category: every context holds some of its ads.
    assert (by_category["same"] > 0).all()
    # A uniform retrieval would match the category 1/7 of the time; by-category draws (half of them,
    # fewer after de-duplication among the ~57 ads of a category) push that far up.
    share = float((retrieved["ad_category"] == retrieved["context_category"]).mean())
    assert share > 0.3 > 1 / len(INTERESTS)
    assert inventory.group_by("category").len().height == len(INTERESTS)
    assert ((retrieved["true_grade"] > 1) & (retrieved["true_grade"] < 5)).all()
