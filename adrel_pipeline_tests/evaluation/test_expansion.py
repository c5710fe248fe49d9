"""The blog's offline evaluation of audience expansion: metrics, splits, summaries, plots."""

import numpy as np
import polars as pl
import pytest

from adrel_pipeline.evaluation.audience_plots import absolute_bars_png, gain_bars_png
from adrel_pipeline.evaluation.expansion import (
    draw_holdout_split,
    evaluate_advertiser,
    evaluation_rows,
    expansion_sizes,
    ground_truth_precision,
    paired_mean_difference,
    precision_at_k,
    random_non_seed,
    rank_eligible,
    recall_at_k,
    summarise,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RANKED = [5, 3, 9, 1, 7, 2]
HOLDOUT = [3, 7, 8, 4]
RANDOM = [9, 2, 6, 0]


def test_recall_at_k_by_hand():
    # E@2 = {5, 3}: one of H = {3, 7, 8, 4} -> 1/4.
    assert recall_at_k(RANKED, HOLDOUT, 2) == 0.25
    # E@5 = {5, 3, 9, 1, 7}: 3 and 7 -> 2/4.
    assert recall_at_k(RANKED, HOLDOUT, 5) == 0.5
    # k beyond the ranking: all 6 ranked, still 2/4.
    assert recall_at_k(RANKED, HOLDOUT, 100) == 0.5


def test_precision_at_k_by_hand():
    # E@3 = {5, 3, 9}: H hits {3} = 1, R hits {9} = 1 -> 1 / (1 + 1) = 0.5.
    assert precision_at_k(RANKED, HOLDOUT, RANDOM, 3) == 0.5
    # E@5 = {5, 3, 9, 1, 7}: H hits {3, 7} = 2, R hits {9} = 1 -> 2/3.
    assert precision_at_k(RANKED, HOLDOUT, RANDOM, 5) == pytest.approx(2 / 3)
    # E@6 adds 2 (in R): 2 / (2 + 2) = 0.5.
    assert precision_at_k(RANKED, HOLDOUT, RANDOM, 6) == 0.5
    # E@1 = {5}: in neither -> 0/0, undefined.
    assert np.isnan(precision_at_k(RANKED, HOLDOUT, RANDOM, 1))
    # |R| = 2 = |H| / 2: R hits count double. E@3 = {5, 3, 9}: 1 / (1 + 1 * 4/2) = 1/3.
    assert precision_at_k(RANKED, HOLDOUT, [9, 6], 3) == pytest.approx(1 / 3)


def test_ground_truth_precision_by_hand():
    audience = np.zeros(10, dtype=bool)
    audience[[5, 9, 7]] = True
    # E@4 = {5, 3, 9, 1}: 5 and 9 in the audience -> 2/4.
    assert ground_truth_precision(RANKED, audience, 4) == 0.5
    assert ground_truth_precision(RANKED, audience, 100) == pytest.approx(3 / 6)
    assert np.isnan(ground_truth_precision([], audience, 3))


def test_ranking_is_by_score_then_row_over_eligible_rows_only():
    scores = np.array([0.2, 0.9, 0.2, 0.5, 0.2])
    eligible = np.array([True, False, True, True, True])
    np.testing.assert_array_equal(rank_eligible(scores, eligible), [3, 0, 2, 4])


def test_holdout_split_and_random_set():
    train, held = draw_holdout_split(np.arange(100, 150), 0.1, seed=0)
    assert len(held) == 5 and len(train) == 45
    assert set(train) | set(held) == set(range(100, 150)) and not set(train) & set(held)
    again = draw_holdout_split(np.arange(100, 150), 0.1, seed=0)
    assert np.array_equal(again[1], held)
    assert len(draw_holdout_split([1, 2], 0.1, seed=0)[1]) == 1  # at least one held out, never all
    with pytest.raises(ValueError, match="cannot be split"):
        draw_holdout_split([1], 0.1, seed=0)
    r = random_non_seed(np.arange(20), np.arange(5), 10, seed=1)
    assert len(r) == 10 and r.min() >= 5
    assert len(random_non_seed(np.arange(8), np.arange(5), 10, seed=1)) == 3


def test_evaluate_advertiser_averages_over_k():
    n = 20
    eligible = np.ones(n, dtype=bool)
    eligible[[0, 1]] = False                          # training seeds
    holdout, random_set = np.array([2, 3]), np.array([10, 11])
    perfect = np.zeros(n)
    perfect[[2, 3]] = 1.0
    reverse = -np.arange(n, dtype=float)              # ranks 2, 3, 4, ...
    audience = np.zeros(n, dtype=bool)
    audience[[2, 3, 4, 5]] = True
    # seed size 4: k = 1, 2, 4 for multipliers 0.25, 0.5, 1.
    assert expansion_sizes(4, (0.25, 0.5, 1.0)) == [1, 2, 4]
    out = evaluate_advertiser({"perfect": perfect, "row": reverse}, eligible, holdout, random_set, audience, 4,
                              (0.25, 0.5, 1.0))
    # Both rank 2 then 3 first (ties in "perfect" go by row): recall 1/2, 1, 1.
    assert out["perfect"]["recall"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert out["perfect"]["precision"] == 1.0
    # gt precision: k=1 {2} 1; k=2 {2,3} 1; k=4 {2,3,4,5} for both.
    assert out["row"]["gt_precision"] == 1.0
    assert out["row"]["per_k"][1.0] == {"recall": 1.0, "precision": 1.0, "gt_precision": 1.0}
    unknown = evaluate_advertiser({"perfect": perfect}, eligible, holdout, random_set, None, 4, (1.0,))
    assert np.isnan(unknown["perfect"]["gt_precision"])


def per_advertiser() -> pl.DataFrame:
    rows = []
    values = {  # (advertiser, bucket): {method: recall}
        ("a", 30): {"lr": 0.1, "nn": 0.3, "oracle": 0.5},
        ("b", 30): {"lr": 0.3, "nn": 0.3, "oracle": 0.5},
        ("c", 300): {"lr": 0.4, "nn": 0.2, "oracle": 0.6},
    }
    for (advertiser, bucket), by_method in values.items():
        evaluation = {m: {"recall": r, "precision": r + 0.5, "gt_precision": r, "per_k": {1.0: {
            "recall": r, "precision": r + 0.5, "gt_precision": r}}} for m, r in by_method.items()}
        rows += evaluation_rows(advertiser, bucket, evaluation)
    return pl.DataFrame(rows)


def test_summarise_gains_are_ratios_of_means():
    summary = summarise(per_advertiser())
    assert summary.columns == ["method", "bucket", "recall", "precision", "gt_precision", "recall_gain_vs_lr",
                               "precision_gain_vs_lr", "gt_precision_gain_vs_lr", "n_advertisers"]
    assert summary["method"].to_list() == ["lr"] * 3 + ["nn"] * 3 + ["oracle"] * 3
    assert summary["bucket"].to_list()[:3] == ["30", "300", "all"]
    nn = {r["bucket"]: r for r in summary.filter(pl.col("method") == "nn").iter_rows(named=True)}
    # Bucket 30: nn mean 0.3, lr mean 0.2 -> gain 0.3 / 0.2 - 1 = +50%.
    assert nn["30"]["recall_gain_vs_lr"] == pytest.approx(0.5)
    # All: nn (0.3 + 0.3 + 0.2) / 3 over lr (0.1 + 0.3 + 0.4) / 3 -> 0.8 / 0.8 - 1 = 0
    # (the mean of per-advertiser ratios would be (2 + 0 - 0.5) / 3 = +50%).
    assert nn["all"]["recall_gain_vs_lr"] == pytest.approx(0.0)
    assert nn["all"]["n_advertisers"] == 3
    # Precision: nn 0.8 over lr 0.7 in bucket 30.
    assert nn["30"]["precision_gain_vs_lr"] == pytest.approx(0.8 / 0.7 - 1)


def test_summarise_leaves_undefined_precision_out():
    frame = per_advertiser().with_columns(
        pl.when(pl.col("advertiser_id") == "a").then(float("nan")).otherwise(pl.col("precision")).alias("precision"))
    lr = summarise(frame).filter((pl.col("method") == "lr") & (pl.col("bucket") == "30")).row(0, named=True)
    assert lr["precision"] == pytest.approx(0.8)  # advertiser b alone


def test_paired_mean_difference():
    # d = [0.2, 0.0, -0.2]: mean 0, sd 0.2 -> se 0.2 / sqrt 3.
    mean, se = paired_mean_difference([0.3, 0.3, 0.2], [0.1, 0.3, 0.4])
    assert mean == pytest.approx(0.0, abs=1e-12)
    assert se == pytest.approx(0.2 / np.sqrt(3))
    mean, se = paired_mean_difference([0.3, np.nan], [0.1, 0.2])
    assert mean == pytest.approx(0.2) and np.isnan(se)


def test_plots_are_png():
    summary = summarise(per_advertiser())
    for png in (gain_bars_png(summary, "recall"), gain_bars_png(summary, "precision"),
                absolute_bars_png(summary, "gt_precision"), absolute_bars_png(summary, "precision")):
        assert png.startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="unknown metric"):
        absolute_bars_png(summary, "auc")


def test_a_gain_over_a_zero_baseline_is_undefined():
    frame = per_advertiser().with_columns(
        pl.when(pl.col("method") == "lr").then(0.0).otherwise(pl.col("recall")).alias("recall"))
    summary = summarise(frame)
    assert summary.filter(pl.col("method") == "nn")["recall_gain_vs_lr"].null_count() == 3
    assert gain_bars_png(summary, "recall").startswith(PNG_MAGIC)
