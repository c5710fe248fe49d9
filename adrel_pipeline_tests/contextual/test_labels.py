"""The simulated crowd: distinct raters per row, grades around the truth, median labels, the row
disagreement rate, Krippendorff's ordinal alpha, and the oracle's relevance probability."""

import itertools
import math

import numpy as np
import polars as pl
import pytest

from adrel_pipeline.contextual.labels import (
    THREE_POINT,
    aggregate,
    crowd_biases,
    disagreement_rate,
    krippendorff_alpha,
    label_rows,
    quality,
    rate,
    relevance_probability,
    three_point,
)
from adrel_pipeline.contextual.spec import ContextualConfigError, LabelSpec
from adrel_pipeline.world.contexts import RELEVANT_GRADE

NOISELESS = {"rater_noise": 0.0, "rater_bias_sd": 0.0}


def _grades(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(1.0, 5.0, n)


@pytest.mark.parametrize("fields, expected", [
    ({"raters_per_row": 1}, "raters_per_row=1 is out of range: must be an integer in [2, 15] (agreement"),
    ({"rater_pool": 2, "raters_per_row": 3},
     "rater_pool=2 is out of range: must be an integer >= raters_per_row=3 (each row's raters are distinct)"),
    ({"rater_noise": -0.1}, "rater_noise=-0.1 is out of range: must be a number in [0, 5]"),
    ({"labelling_budget": 99}, "labelling_budget=99 is out of range: must be an integer in [100, 10000000]"),
    ({"test_rows": 0}, "test_rows=0 is out of range"),
    ({"max_disagreement_rate": 1.5}, "max_disagreement_rate=1.5 is out of range: must be a number in [0, 1]"),
])
def test_invalid_label_fields_name_field_and_range(fields, expected):
    with pytest.raises(ContextualConfigError) as err:
        LabelSpec(**fields)
    assert expected in str(err.value)


def test_a_pool_as_large_as_the_panel_is_allowed():
    assert LabelSpec(rater_pool=3, raters_per_row=3).rater_pool == 3


def test_a_noiseless_unbiased_crowd_reproduces_the_truth():
    # Exactly 3.5 (relevant: rint(3.5) = 4) and the scale's ends among random grades.
    grade = np.concatenate([[1.0, 3.5, 3.4999, 5.0], _grades(5000)])
    spec = LabelSpec(raters_per_row=3, rater_pool=10, **NOISELESS)
    raters, ratings = rate(grade, spec)
    expected = np.clip(np.rint(grade), 1, 5)
    np.testing.assert_array_equal(ratings, np.repeat(expected[:, None], 3, axis=1))
    assert raters.shape == ratings.shape == (len(grade), 3)
    labels = label_rows(pl.DataFrame({"true_grade": grade}), spec)
    np.testing.assert_array_equal(labels["label"].to_numpy(), expected)
    np.testing.assert_array_equal(labels["relevant"].to_numpy(), grade >= RELEVANT_GRADE)
    assert labels["relevant"][:4].to_list() == [False, True, False, True]
    # The oracle of a noiseless crowd is the step at 3.5: exactly the labels.
    np.testing.assert_array_equal(labels["relevance_probability"].to_numpy(), (grade >= RELEVANT_GRADE) * 1.0)
    assert disagreement_rate(ratings) == 0.0


def test_the_noiseless_oracle_is_a_step_at_three_and_a_half():
    grade = np.array([1.0, 3.49, 3.4999999, 3.5, 3.5000001, 3.51, 5.0])
    for k in (2, 3, 4, 5):
        p = relevance_probability(grade, LabelSpec(raters_per_row=k, **NOISELESS))
        np.testing.assert_array_equal(p, [0, 0, 0, 1, 1, 1, 1])


def test_disagreement_grows_with_rater_noise():
    grade = _grades(20_000)
    rates = [disagreement_rate(rate(grade, LabelSpec(rater_noise=noise, rater_bias_sd=0.0))[1])
             for noise in (0.0, 0.2, 0.5, 1.0)]
    assert rates[0] == 0.0 <= rates[1]
    # From 0.2 on, each step is beyond four standard errors of the difference of two shares of 20,000 rows.
    n = len(grade)
    assert all(b - a > 4 * math.sqrt((a * (1 - a) + b * (1 - b)) / n) for a, b in itertools.pairwise(rates[1:])), rates
    # Bias alone (no per-row noise) also spreads a panel.
    assert disagreement_rate(rate(grade, LabelSpec(rater_noise=0.0, rater_bias_sd=1.0))[1]) > 0.02


def test_disagreement_rate_hand_worked():
    ratings = np.array([[1, 2, 2], [1, 3, 2], [5, 5, 5], [4, 2, 3]])
    assert disagreement_rate(ratings) == 0.5  # rows 2 and 4 span more than one point
    assert math.isnan(disagreement_rate(np.empty((0, 3), dtype=np.int8)))


@pytest.mark.parametrize("k, pool", [(3, 60), (3, 3), (5, 6), (15, 15)])
def test_each_rows_raters_are_distinct_members_of_the_pool(k, pool):
    n = 6000
    raters, _ = rate(_grades(n), LabelSpec(raters_per_row=k, rater_pool=pool))
    assert raters.shape == (n, k)
    assert raters.min() >= 0 and raters.max() < pool
    assert (np.sort(raters, axis=1)[:, 1:] != np.sort(raters, axis=1)[:, :-1]).all()
    if k == pool:
        np.testing.assert_array_equal(np.sort(raters, axis=1), np.broadcast_to(np.arange(pool), (n, k)))
    # Every member is drawn about equally often, and in every position.
    for position in range(k):
        counts = np.bincount(raters[:, position], minlength=pool)
        p = 1 / pool
        assert (np.abs(counts - n * p) <= 5 * math.sqrt(n * p * (1 - p)) + 1e-9).all(), (position, counts)


def test_the_crowd_is_the_same_for_every_job_of_a_seed():
    spec = LabelSpec(rater_pool=40)
    biases = crowd_biases(spec)
    assert biases.shape == (40,)
    np.testing.assert_array_equal(biases, crowd_biases(LabelSpec(rater_pool=40, labelling_budget=500)))
    assert not np.array_equal(biases, crowd_biases(LabelSpec(rater_pool=40, seed=1)))
    grade = _grades(100)
    a, b = rate(grade, spec, (1,)), rate(grade, spec, (2,))
    assert not np.array_equal(a[0], b[0])
    np.testing.assert_array_equal(rate(grade, spec, (1,))[1], a[1])


def test_a_raters_bias_shifts_all_their_ratings():
    # A two-member pool with large biases, both on every row: each rater's grades are the truth
    # shifted by their own bias, in whichever column they sit.
    spec = LabelSpec(raters_per_row=2, rater_pool=2, rater_noise=0.0, rater_bias_sd=1.0, seed=5)
    biases = crowd_biases(spec)
    grade = np.full(4000, 3.0)
    raters, ratings = rate(grade, spec)
    for j in range(2):
        np.testing.assert_array_equal(ratings[raters == j], np.clip(np.rint(3.0 + biases[j]), 1, 5))


def test_a_single_rater_per_row_is_refused_naming_the_field():
    # Agreement (alpha, disagreement) needs two raters of a row: one would pass the config, then fail in alpha.
    with pytest.raises(ContextualConfigError, match="raters_per_row=1 is out of range"):
        LabelSpec(raters_per_row=1)


@pytest.mark.parametrize("ratings, expected", [
    ([[1, 5, 3]], [3]),
    ([[2, 2, 5], [5, 4, 1]], [2, 4]),
    ([[4, 1]], [1]),              # even panel: the lower median
    ([[1, 2, 3, 4]], [2]),
    ([[5, 4, 4, 1]], [4]),        # sorted 1 4 4 5: the second
    ([[3]], [3]),
    ([[5, 5, 1, 1, 2]], [2]),     # sorted 1 1 2 5 5
])
def test_aggregate_is_the_lower_median(ratings, expected):
    assert aggregate(np.array(ratings, dtype=np.int8)).tolist() == expected


def test_three_point_scale():
    assert three_point(np.array([1, 2, 3, 4, 5])).tolist() == ["irrelevant", "irrelevant", "somewhat", "relevant",
                                                                 "relevant"]
    assert THREE_POINT == ("irrelevant", "somewhat", "relevant")


def test_label_rows_adds_the_panel_and_its_label():
    rows = pl.DataFrame({"true_grade": _grades(300), "context_id": np.arange(300)})
    spec = LabelSpec(raters_per_row=4)
    labels = label_rows(rows, spec, (3,))
    assert labels.columns == ["true_grade", "context_id", "rater_ids", "ratings", "label", "label_3pt", "relevant",
                              "relevance_probability"]
    raters, ratings = rate(rows["true_grade"].to_numpy(), spec, (3,))
    np.testing.assert_array_equal(labels["ratings"].to_numpy(), ratings)
    np.testing.assert_array_equal(labels["rater_ids"].to_numpy(), raters)
    np.testing.assert_array_equal(labels["label"].to_numpy(), aggregate(ratings))
    assert (labels["relevant"] == (labels["label"] >= 4)).all()
    assert (labels["label_3pt"] == pl.Series(three_point(labels["label"].to_numpy()))).all()
    q = quality(labels)
    assert set(q) == {"disagreement_rate", "krippendorff_alpha", "relevant_share"}
    assert q["relevant_share"] == pytest.approx(float(labels["relevant"].mean()))
    assert q["disagreement_rate"] == disagreement_rate(ratings)


def test_the_oracle_hand_worked_for_a_crowd_of_three():
    # Biases b = crowd_biases(spec), one per rater; rater j says >= 4 with p_j = Phi((g + b_j - 3.5) / noise).
    # A panel of 2 of the 3 raters, drawn uniformly (3 panels): the lower median needs both, so
    # P = (p0 p1 + p0 p2 + p1 p2) / 3. A panel of all 3: the median needs 2 of 3.
    from scipy.stats import norm

    for k in (2, 3):
        spec = LabelSpec(raters_per_row=k, rater_pool=3, rater_noise=0.45, rater_bias_sd=0.3, seed=4)
        b = crowd_biases(spec)
        for g in (3.1, 3.5, 3.9):
            p0, p1, p2 = norm.cdf((g + b - 3.5) / 0.45)
            expected = ((p0 * p1 + p0 * p2 + p1 * p2) / 3 if k == 2
                        else p0 * p1 * p2 + p0 * p1 * (1 - p2) + p0 * (1 - p1) * p2 + (1 - p0) * p1 * p2)
            assert relevance_probability(np.array([g]), spec)[0] == pytest.approx(expected, rel=1e-12), (k, g)


def test_the_oracle_of_an_unbiased_crowd_is_the_binomial_tail():
    # No biases: every rater says >= 4 with p = Phi((g - 3.5) / noise); three raters need two.
    spec = LabelSpec(raters_per_row=3, rater_noise=0.6, rater_bias_sd=0.0)
    p = 0.8413447460685429  # Phi(1): one noise sd above the threshold
    assert relevance_probability(np.array([4.1]), spec)[0] == pytest.approx(3 * p**2 * (1 - p) + p**3, rel=1e-9)
    # At the threshold an odd panel's median is relevant half the time, an even panel's lower median
    # needs 3 of 4: (4 + 1) / 16.
    assert relevance_probability(np.array([3.5]), spec)[0] == pytest.approx(0.5)
    four = LabelSpec(raters_per_row=4, rater_noise=0.6, rater_bias_sd=0.0)
    assert relevance_probability(np.array([3.5]), four)[0] == pytest.approx(5 / 16)
    # Monotone in the grade.
    grade = np.linspace(1, 5, 101)
    assert (np.diff(relevance_probability(grade, LabelSpec())) >= 0).all()


@pytest.mark.parametrize("k, pool", [(2, 5), (3, 8), (4, 6), (3, 60)])
def test_the_oracle_matches_its_crowds_labels(k, pool):
    # The oracle is exact for the crowd that labels (its own biases): a Monte Carlo of that crowd's
    # panels agrees within the rows' binomial error, whatever the crowd's mean bias.
    spec = LabelSpec(raters_per_row=k, rater_pool=pool, rater_noise=0.45, rater_bias_sd=0.5, seed=k + pool)
    grades = np.array([2.6, 3.2, 3.45, 3.7, 4.3])
    per_grade = 20_000
    relevant = aggregate(rate(np.repeat(grades, per_grade), spec)[1]) >= 4
    observed = relevant.reshape(len(grades), per_grade).mean(axis=1)
    expected = relevance_probability(grades, spec)
    se = np.sqrt(expected * (1 - expected) / per_grade)
    assert (np.abs(observed - expected) <= 4 * se + 1e-9).all(), (observed, expected, se)


def test_the_oracle_knows_the_crowds_bias():
    # A crowd that rates high labels more rows relevant: the oracle follows it, a fresh crowd's would not.
    base = {"raters_per_row": 3, "rater_pool": 3, "rater_noise": 0.45, "rater_bias_sd": 0.3}
    seeds = range(40)
    biased = max(seeds, key=lambda s: crowd_biases(LabelSpec(**base, seed=s)).mean())
    lenient, strict = LabelSpec(**base, seed=biased), LabelSpec(**base, seed=min(
        seeds, key=lambda s: crowd_biases(LabelSpec(**base, seed=s)).mean()))
    assert relevance_probability(np.array([3.5]), lenient)[0] > 0.5 > relevance_probability(np.array([3.5]), strict)[0]


# --- Krippendorff's alpha -------------------------------------------------------------------------


def test_krippendorff_ordinal_alpha_hand_worked_two_raters():
    # Units (1, 1), (2, 3), (3, 3). Coincidences (each ordered pair of a unit's values, weight
    # 1 / (m_u - 1) = 1): o11 = 2, o23 = o32 = 1, o33 = 2; marginals n1 = 2, n2 = 1, n3 = 3, n = 6.
    # Ordinal distances d(c, k) = (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2:
    #   d12 = (3 - 1.5)^2 = 2.25, d23 = (4 - 2)^2 = 4, d13 = (6 - 2.5)^2 = 12.25.
    # Observed: sum o d = o23 d23 + o32 d32 = 8. Expected: sum_{c != k} n_c n_k d
    #   = 2 (2*1*2.25 + 2*3*12.25 + 1*3*4) = 2 (4.5 + 73.5 + 12) = 180.
    # alpha = 1 - (n - 1) * 8 / 180 = 1 - 40 / 180 = 7 / 9.
    # (The interval metric would give 1 - 5 * 2 / 58 = 0.828, the nominal 1 - 5 * 2 / 22 = 0.545.)
    ratings = np.array([[1, 1], [2, 3], [3, 3]], dtype=np.int8)
    assert krippendorff_alpha(ratings) == pytest.approx(7 / 9, abs=1e-12)
    # Who rated what does not enter: swapping a row's raters changes nothing.
    assert krippendorff_alpha(ratings[:, ::-1]) == pytest.approx(7 / 9, abs=1e-12)


def test_krippendorff_ordinal_alpha_hand_worked_three_raters():
    # Units (1, 1, 2), (3, 3, 3), (2, 3, 3); weight 1 / (m_u - 1) = 1/2 per ordered pair.
    # (1, 1, 2): o11 += 2 * 1/2 = 1, o12 += 1, o21 += 1.  (3, 3, 3): o33 += 6 * 1/2 = 3.
    # (2, 3, 3): o23 += 1, o32 += 1, o33 += 1.
    # Marginals n1 = 2, n2 = 2, n3 = 5, n = 9.
    # d12 = (4 - 2)^2 = 4, d23 = (7 - 3.5)^2 = 12.25, d13 = (9 - 3.5)^2 = 30.25.
    # Observed: o12 d12 + o21 d21 + o23 d23 + o32 d32 = 4 + 4 + 12.25 + 12.25 = 32.5.
    # Expected: 2 (n1 n2 d12 + n1 n3 d13 + n2 n3 d23) = 2 (16 + 302.5 + 122.5) = 882.
    # alpha = 1 - 8 * 32.5 / 882 = 1 - 130 / 441 = 311 / 441.
    ratings = np.array([[1, 1, 2], [3, 3, 3], [2, 3, 3]], dtype=np.int8)
    assert krippendorff_alpha(ratings) == pytest.approx(311 / 441, abs=1e-12)


def test_krippendorff_alpha_is_one_on_perfect_agreement_and_falls_with_noise():
    assert krippendorff_alpha(np.array([[1, 1, 1], [4, 4, 4], [5, 5, 5], [2, 2, 2]])) == pytest.approx(1.0)
    grade = _grades(5000)
    alphas = [krippendorff_alpha(rate(grade, LabelSpec(rater_noise=noise, rater_bias_sd=0.0))[1])
              for noise in (0.0, 0.5, 1.5)]
    assert alphas[0] == pytest.approx(1.0) and alphas[0] > alphas[1] > alphas[2]
