"""The funnel's measurements: the truly relevant share per stage, the served slate's nDCG, revenue,
and the A/A and A/B comparisons with their intervals."""

import math

import numpy as np
import polars as pl
import pytest

from adrel_pipeline.contextual.funnel import SURVIVOR_STAGES
from adrel_pipeline.contextual.measurement import (
    Arm,
    Traffic,
    aa_test,
    ab_test,
    compare,
    fixed_contexts,
    fixed_query_set,
    fraction_relevant,
    funnel_metrics,
    ideal_dcg,
    measure,
    overconfident,
    slate_ndcg,
    sweep,
)
from adrel_pipeline.contextual.spec import FunnelSpec
from adrel_pipeline_tests.contextual.conftest import FUNNEL, SLOTS, grade_relevance


def _served(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["context_id", "true_grade", "dropped_at"], orient="row")


# --- hand-worked -------------------------------------------------------------------------------

def test_fraction_relevant_counts_the_survivors_of_each_stage():
    # Context 1: a relevant winner, an irrelevant ad dropped at the auction, a relevant ad dropped by
    # the ranking, an irrelevant one trimmed. Context 2: an irrelevant winner, a relevant one trimmed.
    frame = _served([(1, 4.0, None), (1, 2.0, "auction"), (1, 3.6, "ranking"), (1, 1.5, "trim"),
                     (2, 3.0, None), (2, 4.5, "trim")])
    shares = fraction_relevant(frame).row(0, named=True)
    assert list(shares) == list(SURVIVOR_STAGES)
    assert shares == pytest.approx({"retrieval": 3 / 6, "trim": 2 / 4, "ranking": 1 / 3, "auction_winners": 1 / 2})
    by = fraction_relevant(frame.with_columns(seg=pl.when(pl.col("context_id") == 1).then(pl.lit("a"))
                                              .otherwise(pl.lit("b"))), "seg")
    assert by.filter(pl.col("seg") == "b").row(0, named=True)["trim"] == 0.0  # its relevant ad was trimmed


def test_slate_ndcg_against_the_true_grade():
    # Context 0: grades 5, 3, 1; the auction serves the 3 in slot 0 and the 5 in slot 1 (2 slots).
    # DCG = (3-1)/log2(2) + (5-1)/log2(3); ideal = (5-1)/log2(2) + (3-1)/log2(3).
    # Context 1: nothing relevant at all (every grade 1): no ideal, NaN. Context 2: served nothing: 0.
    groups = np.array([0, 0, 0, 1, 1, 2])
    grade = np.array([5.0, 3.0, 1.0, 1.0, 1.0, 4.0])
    slot = np.array([1, 0, -1, 0, 1, -1])
    ideal = ideal_dcg(groups, grade, slots=2)
    assert ideal == pytest.approx([4 + 2 / math.log2(3), 0.0, 3.0])
    ndcg = slate_ndcg(groups, grade, slot, ideal)
    assert ndcg[0] == pytest.approx((2 + 4 / math.log2(3)) / (4 + 2 / math.log2(3)))
    assert math.isnan(ndcg[1]) and ndcg[2] == 0.0


def test_funnel_metrics_on_a_served_funnel(candidates):
    metrics = funnel_metrics(candidates, FUNNEL)
    winners = candidates.filter(pl.col("dropped_at").is_null())
    contexts = candidates["context_id"].n_unique()
    assert metrics["fraction_relevant/auction_winners"] == pytest.approx(float((winners["true_grade"] >= 3.5).mean()))
    assert metrics["revenue_per_context"] == pytest.approx(float((winners["price"] * winners["expected_clicks"]).sum())
                                                           / contexts)
    assert metrics["ctr"] == pytest.approx(float(winners["expected_clicks"].sum()) / winners.height)
    assert metrics["trim_rate"] == pytest.approx(float((candidates["dropped_at"] == "trim").fill_null(False).mean()))
    assert metrics["contexts"] == contexts and metrics["served_per_context"] == winners.height / contexts
    for stage in SURVIVOR_STAGES:
        for category in candidates["ad_category"].unique():
            assert 0 <= metrics[f"fraction_relevant/{stage}/{category}"] <= 1
    # A relevance score that knows the truth raises the relevant share at every stage.
    shares = [metrics[f"fraction_relevant/{s}"] for s in SURVIVOR_STAGES]
    assert shares == sorted(shares) and shares[-1] > shares[0] + 0.3
    assert 0 < metrics["ndcg"] <= 1


def test_compare_gives_the_ratio_and_an_interval_from_per_context_values():
    # A: 1 relevant of 2 served in each of 100 contexts (0.5); B: 2 of 2 in half the contexts, 1 of 2
    # in the rest (0.75): B / A - 1 = +50%.
    a = {"m": (np.ones(100), np.full(100, 2.0))}
    b = {"m": (np.where(np.arange(100) < 50, 2.0, 1.0), np.full(100, 2.0))}
    paired = compare(a, b, "m", 0.95, paired=True)
    assert (paired.a, paired.b, paired.relative) == pytest.approx((0.5, 0.75, 0.5))
    # On the log scale: per-context terms (x - r n) / (r mean n); B's are +-1/3, A's are all 0.
    se = np.std(np.where(np.arange(100) < 50, 1 / 3, -1 / 3), ddof=1) / 10
    assert (paired.low, paired.high) == pytest.approx((1.5 * math.exp(-1.959964 * se) - 1,
                                                       1.5 * math.exp(1.959964 * se) - 1), rel=1e-5)
    assert not paired.covers_zero
    same = compare(a, a, "m", 0.95, paired=False)
    assert same.relative == 0.0 and same.low == same.high == 0.0 and same.covers_zero


# --- on the small world's traffic --------------------------------------------------------------

@pytest.fixture(scope="module")
def traffic(retrieved, candidates):
    """The day's candidates, scored by three relevance models: one that knows the truth, the same
    with noise, and pure noise."""
    rng = np.random.default_rng(5)
    truth = grade_relevance(retrieved)
    return Traffic.of(retrieved, retrieved["click_probability"].to_numpy(),
                      {"truth": truth, "noisy": np.clip(truth + rng.normal(0, 0.15, len(truth)), 0, 1),
                       "noise": rng.random(len(truth))})


def test_traffic_rows_of_contexts_follow_the_contexts_order(traffic):
    rows, groups = traffic.rows_of(np.array([3, 0]))
    first, second = np.flatnonzero(traffic.groups == 3), np.flatnonzero(traffic.groups == 0)
    np.testing.assert_array_equal(rows, np.concatenate([first, second]))
    np.testing.assert_array_equal(groups, np.repeat([0, 1], [len(first), len(second)]))


def test_measure_serves_as_the_funnel_does(retrieved, candidates, traffic):
    # All contexts, the funnel's own pCTR as the "fresh" request draw: the funnel's figures exactly.
    contexts = np.arange(traffic.contexts)
    pinned = Traffic.of(retrieved, candidates["pctr"].to_numpy(), {"truth": grade_relevance(retrieved)})

    class NoNoise:
        def standard_normal(self, n):
            return np.full(n, 0.5 * 0.3)  # exp(0.3 e - 0.3^2 / 2) = 1

    values = measure(pinned, Arm("truth", FUNNEL), contexts, NoNoise())
    metrics = funnel_metrics(candidates, FUNNEL)
    for name, key in (("fraction_relevant", "fraction_relevant/auction_winners"), ("revenue", "revenue_per_context"),
                      ("ctr", "ctr"), ("ndcg", "ndcg"), ("trim_rate", "trim_rate")):
        numerator, denominator = values[name]
        assert numerator.sum() / denominator.sum() == pytest.approx(metrics[key]), name


def test_aa_intervals_cover_zero_at_the_configured_rate_and_the_controls_cut_the_spread(traffic):
    repeats, confidence = 200, 0.9
    result = aa_test(traffic, Arm("noisy", FUNNEL), 300, repeats, confidence, (1, 2))
    summary = result.summary()
    # Coverage is binomial(repeats, confidence) when the intervals are right: within 4 SDs.
    sd = math.sqrt(confidence * (1 - confidence) / repeats)
    for design in ("controlled", "uncontrolled"):
        assert abs(summary[f"{design}/coverage"] - confidence) <= 4 * sd, (design, summary)
        assert summary[f"{design}/min"] < 0 < summary[f"{design}/max"]
    # Fixed contexts leave only the request randomness: a tighter spread than fresh contexts per arm.
    assert summary["controlled/sd"] < summary["uncontrolled/sd"]
    assert summary["controlled/mean_interval_width"] < summary["uncontrolled/mean_interval_width"]
    assert all(d.paired for d in result.controlled) and not any(d.paired for d in result.uncontrolled)


def test_an_ab_test_detects_a_planted_difference_and_not_an_absent_one(traffic):
    contexts = fixed_contexts(traffic, 300, (4,))
    planted = ab_test(traffic, Arm("noise", FUNNEL), Arm("truth", FUNNEL), contexts, 0.95, (5,))
    assert planted["fraction_relevant"].low > 0 and planted["ndcg"].low > 0
    absent = ab_test(traffic, Arm("truth", FUNNEL), Arm("truth", FUNNEL), contexts, 0.95, (6,))
    assert absent["fraction_relevant"].covers_zero


def test_fixed_contexts_refuse_more_than_the_pool():
    traffic = Traffic(np.array([0, 0, 1]), np.ones(3), np.ones(3), np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="experiment_contexts=3 is out of range: the pool holds only 2"):
        fixed_contexts(traffic, 3, (0,))


def test_the_sweep_trades_revenue_for_relevance_and_alpha_zero_is_the_holdout(traffic):
    contexts = np.arange(400)
    points = sweep(traffic, {"truth": Arm("truth", FUNNEL)}, contexts, (7,), alphas=(0.0, 1.0, 4.0), taus=(0.0, 0.3))
    assert points.height == 6 and points.columns[:3] == ["arm", "alpha", "tau"]
    at = {(r["alpha"], r["tau"]): r for r in points.iter_rows(named=True)}
    holdout = measure(traffic, Arm(None, FUNNEL), contexts, np.random.default_rng([7]))
    assert at[(0.0, 0.0)]["fraction_relevant"] == pytest.approx(
        holdout["fraction_relevant"][0].sum() / holdout["fraction_relevant"][1].sum())
    assert at[(0.0, 0.0)]["trim_rate"] == 0.0 < at[(0.0, 0.3)]["trim_rate"]
    shares = [at[(a, 0.0)]["fraction_relevant"] for a in (0.0, 1.0, 4.0)]
    revenue = [at[(a, 0.0)]["revenue"] for a in (0.0, 1.0, 4.0)]
    assert shares == sorted(shares) and revenue == sorted(revenue, reverse=True)


def test_overconfident_keeps_the_order_and_breaks_the_calibration():
    p = np.array([0.05, 0.3, 0.5, 0.7, 0.95])
    q = overconfident(p)
    assert np.all(np.diff(q) > 0) and q[2] == pytest.approx(0.5)
    assert q[0] < p[0] and q[-1] > p[-1]


def test_the_fixed_query_set_is_the_same_every_day(ctx_spec, ctx_tables):
    users, items, _, _ = ctx_tables
    first, again = fixed_query_set(ctx_spec, users, items, 50), fixed_query_set(ctx_spec, users, items, 50)
    assert first.equals(again) and first.height == 50
    assert first["user_id"].n_unique() > 10


def test_slots_limit_what_measure_serves(traffic):
    contexts = np.arange(50)
    one = measure(traffic, Arm("truth", FunnelSpec(slots=1)), contexts, np.random.default_rng(0))
    three = measure(traffic, Arm("truth", FunnelSpec(slots=SLOTS)), contexts, np.random.default_rng(0))
    assert one["fraction_relevant"][1].max() == 1 and three["fraction_relevant"][1].max() == SLOTS
