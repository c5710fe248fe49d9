"""Calibration, ranking and drift metrics of probability scores (ECE on equal-mass bins, Brier,
nDCG, PSI, histograms, coverage) and the contextual model's evaluation built on them."""

import math
from math import log2

import numpy as np
import polars as pl
import pytest

from adrel_pipeline.evaluation.calibration import (
    PSI_FLOOR,
    SCORE_EDGES,
    brier,
    coverage,
    ece,
    histogram,
    ndcg_at_k,
    paired_brier,
    psi,
    reliability,
)
from adrel_pipeline.evaluation.contextual import calibration_metrics, ranking_metrics, relative_difference

# --- ECE and reliability --------------------------------------------------------------------------


def test_ece_hand_worked_on_two_equal_mass_bins():
    # Sorted scores 0.1 0.2 | 0.3 0.4 (given shuffled): bins of two rows each, errors of both signs.
    scores, targets = np.array([0.3, 0.1, 0.4, 0.2]), np.array([0, 1, 0, 0])
    # Bin 1: rows 0.1 (y=1), 0.2 (y=0): mean score 0.15, mean target 0.5 -> 0.35 (under-confident).
    # Bin 2: rows 0.3 (y=0), 0.4 (y=0): mean score 0.35, mean target 0 -> 0.35 (over-confident).
    assert ece(scores, targets, bins=2) == pytest.approx(0.5 * 0.35 + 0.5 * 0.35, abs=1e-12)
    # A single bin: the errors cancel, |0.25 - 0.25| (and so would equal-width bins of [0, 1], which
    # put all four scores in [0, 0.5)).
    assert ece(scores, targets, bins=1) == pytest.approx(0.0, abs=1e-12)
    # One row per bin: the mean absolute error (0.9 + 0.2 + 0.3 + 0.4) / 4.
    assert ece(scores, targets, bins=4) == pytest.approx(1.8 / 4, abs=1e-12)
    # More bins than rows: one row per bin as well.
    assert ece(scores, targets, bins=10) == pytest.approx(1.8 / 4, abs=1e-12)


def test_ece_hand_worked_with_unequal_bins_weighted_by_size():
    # Five rows in two bins: sizes 3 and 2 (numpy's array_split puts the extra row first).
    scores, targets = np.array([0.1, 0.2, 0.3, 0.4, 0.5]), np.array([1, 1, 0, 0, 0])
    # Bin 1 (0.1 0.2 0.3): mean score 0.2, mean target 2/3 -> 7/15, weight 3/5 (0.28);
    # bin 2 (0.4 0.5): 0.45 vs 0 -> 0.45, weight 2/5 (0.18). (Bins of 2 and 3 would give 0.58.)
    assert ece(scores, targets, bins=2) == pytest.approx(3 / 5 * 7 / 15 + 2 / 5 * 0.45, abs=1e-12)
    curve = reliability(scores, targets, bins=2)
    np.testing.assert_allclose(curve["mean_score"], [0.2, 0.45])
    np.testing.assert_allclose(curve["mean_target"], [2 / 3, 0.0])
    assert curve["count"].tolist() == [3, 2]


def test_ece_takes_probabilities_as_targets_and_nothing_for_no_rows():
    scores = np.array([0.2, 0.4, 0.6, 0.8])
    assert ece(scores, scores, bins=2) == 0.0
    assert ece(scores, scores + 0.1, bins=2) == pytest.approx(0.1)
    assert math.isnan(ece(np.array([]), np.array([])))


def test_a_calibrated_scorer_has_a_small_ece_and_a_distorted_one_a_large_one():
    rng = np.random.default_rng(0)
    n, bins = 200_000, 10
    p = rng.random(n)
    y = (rng.random(n) < p).astype(float)
    # Each bin's mean label is off its mean score by a binomial error of at most 0.5 / sqrt(n / bins).
    bound = 3 * 0.5 / math.sqrt(n / bins)
    assert ece(p, y, bins) < bound
    # p**3 under-predicts: ECE >= |mean(p**3) - mean(y)| = |1/4 - 1/2| (up to sampling).
    assert ece(p**3, y, bins) > 0.25 - bound
    # An overconfident logit (x3): ECE well above the calibrated scorer's.
    logit = np.log(p / (1 - p))
    assert ece(1 / (1 + np.exp(-3 * logit)), y, bins) > 0.05 > bound


def test_calibration_by_isotonic_regression_lowers_the_ece():
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(1)
    p = rng.random(40_000)
    y = (rng.random(len(p)) < p).astype(float)
    distorted = p**3
    fit, held = slice(0, 20_000), slice(20_000, None)
    calibrated = IsotonicRegression(out_of_bounds="clip").fit(distorted[fit], y[fit]).predict(distorted[held])
    assert ece(calibrated, y[held]) < ece(distorted[held], y[held]) / 10


# --- Brier ----------------------------------------------------------------------------------------


def test_brier_hand_worked():
    assert brier([0.2, 0.9], [0, 1]) == pytest.approx((0.04 + 0.01) / 2)
    assert brier([1.0, 0.0], [1, 0]) == 0.0


def test_paired_brier_hand_worked():
    # Squared errors: a = (0, 0, 1), b = (0.25, 0.25, 0.25); d = a - b = (-1/4, -1/4, 3/4), mean 1/12,
    # deviations (-1/3, -1/3, 2/3): sample variance (1/9 + 1/9 + 4/9) / 2 = 1/3, SE sqrt(1/3) / sqrt(3) = 1/3.
    a, b, se = paired_brier([1, 0, 1], [1, 0, 0], [0.5, 0.5, 0.5])
    assert (a, b, se) == pytest.approx((1 / 3, 0.25, 1 / 3))
    one = paired_brier([1], [0.5], [0.5])
    assert one[:2] == (0.25, 0.25) and math.isnan(one[2])


# --- nDCG -----------------------------------------------------------------------------------------

# Group "a": gains 3, 2, 0; group "b": gains 1, 0 (rows interleaved).
GROUPS = np.array(["a", "b", "a", "b", "a"])
GAINS = np.array([3.0, 1.0, 2.0, 0.0, 0.0])


def test_ndcg_of_a_perfect_ranking_is_one():
    assert ndcg_at_k(GROUPS, GAINS, GAINS, k=10) == pytest.approx(1.0)
    assert ndcg_at_k(GROUPS, GAINS * 10 - 5, GAINS, k=2) == pytest.approx(1.0)


def test_ndcg_of_a_reversed_ranking_hand_worked():
    reversed_scores = -GAINS
    # a ranked 0, 2, 3: DCG = 0 / log2(2) + 2 / log2(3) + 3 / log2(4); ideal 3 + 2 / log2(3) + 0.
    a = (2 / log2(3) + 3 / 2) / (3 + 2 / log2(3))
    # b ranked 0, 1: DCG = 1 / log2(3); ideal 1.
    b = 1 / log2(3)
    assert ndcg_at_k(GROUPS, reversed_scores, GAINS, k=10) == pytest.approx((a + b) / 2, abs=1e-12)
    # k = 2: a keeps 0 + 2 / log2(3) against 3 + 2 / log2(3); b is whole.
    a2 = (2 / log2(3)) / (3 + 2 / log2(3))
    assert ndcg_at_k(GROUPS, reversed_scores, GAINS, k=2) == pytest.approx((a2 + b) / 2, abs=1e-12)
    # k = 1: both groups put a zero gain first.
    assert ndcg_at_k(GROUPS, reversed_scores, GAINS, k=1) == 0.0


def test_ndcg_skips_groups_without_gain_and_breaks_ties_by_row_order():
    groups = np.array([1, 1, 2, 2, 3, 3])
    gains = np.array([0.0, 1.0, 2.0, 0.0, 0.0, 0.0])
    ties = np.zeros(6)
    # Ties keep row order: group 1 ranks the zero first (1 / log2(3)), group 2 is ideal, group 3 is skipped.
    assert ndcg_at_k(groups, ties, gains) == pytest.approx((1 / log2(3) + 1) / 2, abs=1e-12)
    assert math.isnan(ndcg_at_k(groups[4:], ties[4:], gains[4:]))


# --- PSI, histograms, coverage --------------------------------------------------------------------


def test_psi_hand_worked():
    assert psi([10, 20, 30], [10, 20, 30]) == 0.0
    assert psi([1, 2, 3], [100, 200, 300]) == pytest.approx(0.0, abs=1e-15)  # shares, not counts
    # Shares (0.5, 0.5) -> (0.8, 0.2): 0.3 ln(1.6) - 0.3 ln(0.4) = 0.3 ln 4.
    assert psi([50, 50], [80, 20]) == pytest.approx(0.3 * math.log(4), abs=1e-12)
    assert psi([80, 20], [50, 50]) == pytest.approx(0.3 * math.log(4), abs=1e-12)  # symmetric
    # An empty bin counts as PSI_FLOOR: (0.5 - 1) ln(0.5 / 1) + (0.5 - 1e-4) ln(0.5 / 1e-4).
    assert PSI_FLOOR == 1e-4
    expected = -0.5 * math.log(0.5) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert psi([100, 0], [50, 50]) == pytest.approx(expected, abs=1e-12)
    assert math.isnan(psi([1, 2], [1, 2, 3])) and math.isnan(psi([0, 0], [1, 2])) and math.isnan(psi([1, 2], [0, 0]))


def test_histogram_clips_to_the_end_bins_and_skips_nan():
    edges = np.array([0.0, 0.5, 1.0])
    # -1 -> 0 (bin 1), 0.2 (bin 1), 0.5 (bin 2), 0.7 (bin 2), 2 -> 1 (bin 2, the last bin is closed); NaN skipped.
    counts = histogram([-1.0, 0.2, 0.5, 0.7, 2.0, np.nan], edges)
    assert counts == [2, 3] and all(type(c) is int for c in counts)
    assert histogram([np.nan]) == [0] * (len(SCORE_EDGES) - 1)
    # The default bins are SCORE_EDGES, tenths of [0, 1]: one value at each bin's centre, and 1.0 in the last.
    assert histogram(np.append(np.arange(10) / 10 + 0.05, 1.0)) == [1] * 9 + [2]


def test_coverage_counts_null_and_nan_as_absent():
    frame = pl.DataFrame({"a": [1.0, None, np.nan, 2.0], "b": [1.0, 2.0, 3.0, 4.0]})
    assert coverage(frame, ["a", "b"]) == {"a": 0.5, "b": 1.0}
    assert all(math.isnan(v) for v in coverage(frame.head(0), ["a"]).values())


# --- the contextual model's evaluation ------------------------------------------------------------


def _lists() -> pl.DataFrame:
    return pl.DataFrame({
        "context_id": [1, 1, 1, 2, 2],
        "surface": ["search", "search", "search", "home", "home"],
        "content_type": ["shopping", "regular", "shopping", "video", "shopping"],
        "true_grade": [4.0, 2.0, 3.0, 5.0, 3.6],
        "click_probability": [0.1, 0.05, 0.02, 0.2, 0.03],
    })


def test_ranking_metrics_hand_worked():
    lists = _lists()
    scores = np.array([0.9, 0.5, 0.1, 0.2, 0.8])
    one = ranking_metrics(scores, lists, top_k=1)
    # Top 1: context 1's shopping ad (grade 4), context 2's shopping ad (grade 3.6): both relevant.
    assert one["top_k_relevant_share"] == 1.0 and one["top_k_shopping_share"] == 1.0
    assert one["top_k_shopping_relevant_share"] == 1.0
    assert one["top_k_shopping_ctr"] == pytest.approx((0.1 + 0.03) / 2)
    two = ranking_metrics(scores, lists, top_k=2)
    # Top 2: grades 4, 2 | 3.6, 5: three of four relevant; two shopping ads, both relevant.
    assert two["top_k_relevant_share"] == 0.75 and two["top_k_shopping_share"] == 0.5
    assert two["top_k_shopping_relevant_share"] == 1.0
    # nDCG on gains grade - 1: context 1 (3, 1, 2) ranked as given, context 2 (4, 2.6) reversed.
    first = (3 + 1 / log2(3) + 2 / 2) / (3 + 2 / log2(3) + 1 / 2)
    second = (2.6 + 4 / log2(3)) / (4 + 2.6 / log2(3))
    assert one["ndcg_at_10"] == pytest.approx((first + second) / 2, abs=1e-12)
    assert one["ndcg_at_10/search"] == pytest.approx(first, abs=1e-12)
    assert one["ndcg_at_10/home"] == pytest.approx(second, abs=1e-12)
    assert "ndcg_at_10/closeup" not in one


def test_ranking_metrics_without_shopping_ads_in_the_top():
    lists = _lists()
    out = ranking_metrics(np.array([0.1, 0.9, 0.2, 0.9, 0.1]), lists, top_k=1)
    assert out["top_k_shopping_share"] == 0.0
    assert math.isnan(out["top_k_shopping_relevant_share"]) and math.isnan(out["top_k_shopping_ctr"])


def test_calibration_metrics_per_segment():
    rng = np.random.default_rng(2)
    n = 400
    test = pl.DataFrame({
        "relevant": rng.random(n) < 0.4,
        "relevance_probability": rng.random(n),
        "content_type": rng.choice(["regular", "video", "shopping"], n),
        "surface": rng.choice(["home", "search"], n),
    })
    scores = rng.random(n)
    out = calibration_metrics(scores, test, bins=5)
    y = test["relevant"].to_numpy().astype(float)
    assert out["ece"] == ece(scores, y, 5)
    assert out["true_ece"] == ece(scores, test["relevance_probability"].to_numpy(), 5)
    assert out["brier"] == brier(scores, y)
    video = (test["content_type"] == "video").to_numpy()
    assert out["ece/video"] == ece(scores[video], y[video], 5)
    assert "ece/carousel" not in out and "ece/closeup" not in out
    assert 0.4 < out["auc"] < 0.6  # random scores
    assert math.isnan(calibration_metrics(scores, test.with_columns(relevant=pl.lit(False)), 5)["auc"])


def test_relative_difference():
    assert relative_difference({"x": 1.5}, {"x": 1.0}, "x") == pytest.approx(0.5)
    assert math.isnan(relative_difference({"x": 1.5}, {"x": 0.0}, "x"))
