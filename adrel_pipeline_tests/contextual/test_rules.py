"""The contextual group's check rules (stages, labels, disagreement, ECE, Brier against the oracle,
drift) and the monitoring profiles they compare."""

import math

import numpy as np
import polars as pl
import pytest

from adrel_pipeline.contextual import monitoring
from adrel_pipeline.contextual import rules as r
from adrel_pipeline.contextual.funnel import DROP_STAGES as STAGES
from adrel_pipeline.contextual.labels import label_rows
from adrel_pipeline.contextual.sampling import log_candidates
from adrel_pipeline.contextual.spec import CandidateLogSpec, LabelSpec, MonitoringSpec
from adrel_pipeline.evaluation.calibration import SCORE_EDGES
from adrel_pipeline.world.contexts import SIGNALS
from adrel_pipeline_tests.helpers import assert_fails, assert_passes, assert_scalar_metadata


@pytest.fixture(scope="module")
def log(candidates):
    return log_candidates(candidates, CandidateLogSpec(log_rate=0.1, full_list_contexts=20), (3,))


@pytest.fixture(scope="module")
def labels(log):
    return label_rows(log.head(600), LabelSpec(), (3,))


# --- stages ---------------------------------------------------------------------------------------


def test_stages_known_passes_on_the_funnels_log(log):
    outcome = r.stages_known(log, STAGES)
    assert_passes(outcome)
    assert_scalar_metadata(outcome)
    assert outcome.metadata["served"] == int(log["served"].sum())
    for stage in STAGES:
        assert outcome.metadata[f"logged_at/{stage}"] == int((log["dropped_at"] == stage).sum()) > 0


def test_stages_known_names_an_unknown_stage(log):
    bad = log.with_columns(dropped_at=pl.when(pl.int_range(pl.len()) < 4).then(pl.lit("retrieval"))
                           .otherwise(pl.col("dropped_at")))
    # The served flag is recomputed too, so only the stage is wrong.
    bad = bad.with_columns(served=pl.col("dropped_at").is_null())
    outcome = r.stages_known(bad, STAGES)
    assert_fails(outcome, "4 candidates dropped at unknown stages e.g. ['retrieval']", "'trim', 'ranking', 'auction'")
    assert "served flag" not in outcome.description


def test_stages_known_names_a_served_flag_that_disagrees(log):
    bad = log.with_columns(served=pl.when(pl.int_range(pl.len()) < 3).then(~pl.col("served")).otherwise(pl.col("served")))
    assert_fails(r.stages_known(bad, STAGES), "3 candidates whose served flag disagrees with dropped_at")


# --- labels ---------------------------------------------------------------------------------------


def test_labels_on_scale_passes_on_simulated_labels(labels):
    outcome = r.labels_on_scale(labels)
    assert_passes(outcome)
    assert_scalar_metadata(outcome)
    assert outcome.metadata == {"rows": labels.height, "off_scale_rows": 0, "wrong_label_rows": 0}


def _with_ratings(labels: pl.DataFrame, ratings: np.ndarray, label: np.ndarray | None = None) -> pl.DataFrame:
    k = ratings.shape[1]
    out = labels.with_columns(pl.Series("ratings", ratings, dtype=pl.Array(pl.Int8, k)))
    return out if label is None else out.with_columns(pl.Series("label", label, dtype=pl.Int8))


def test_labels_on_scale_names_an_off_scale_rating(labels):
    ratings = labels["ratings"].to_numpy().copy()
    ratings[0, 0], ratings[1, 2] = 6, 0
    # Labels kept consistent with the (bad) ratings' medians: only the scale is wrong.
    from adrel_pipeline.contextual.labels import aggregate

    outcome = r.labels_on_scale(_with_ratings(labels, ratings, aggregate(ratings)))
    assert_fails(outcome, "2 rows with a rating outside 1..5")
    assert "median" not in outcome.description


def test_labels_on_scale_names_a_label_that_is_not_the_median(labels):
    label = labels["label"].to_numpy().copy()
    label[:5] = np.where(label[:5] == 5, 1, 5)
    outcome = r.labels_on_scale(labels.with_columns(pl.Series("label", label, dtype=pl.Int8)))
    assert_fails(outcome, "5 rows whose label is not their raters' median")
    assert outcome.metadata["wrong_label_rows"] == 5


def test_labels_on_scale_of_panels_of_any_size():
    # A team's own labels: one to four raters a pair; the label is the lower median.
    ratings = pl.Series("ratings", [[5], [1, 5], [4, 2, 3], [5, 1, 4, 3]], dtype=pl.List(pl.Int8))
    good = pl.DataFrame([ratings, pl.Series("label", [5, 1, 3, 3], dtype=pl.Int8)])
    assert_passes(r.labels_on_scale(good))
    upper = good.with_columns(pl.Series("label", [5, 5, 3, 4], dtype=pl.Int8))  # upper medians of the even panels
    assert_fails(r.labels_on_scale(upper), "2 rows whose label is not their raters' median")


def test_labels_on_scale_of_no_rows():
    empty = pl.DataFrame({"ratings": pl.Series([], dtype=pl.Array(pl.Int8, 3)), "label": pl.Series([], dtype=pl.Int8)})
    assert_passes(r.labels_on_scale(empty))


# --- disagreement, ECE, Brier ---------------------------------------------------------------------


@pytest.mark.parametrize("rate, passed", [(0.05, True), (0.1, True), (0.1001, False), (0.4, False),
                                          (math.nan, False)])
def test_disagreement_within_is_inclusive_at_the_limit(rate, passed):
    outcome = r.disagreement_within(rate, 0.1)
    assert outcome.passed is passed
    assert_scalar_metadata(outcome)
    if not passed:
        assert_fails(outcome, "above 0.1: raters disagree by more than one point")


def test_ece_within_names_the_segments_over_the_limit():
    assert_passes(r.ece_within({"regular": 0.01, "shopping": 0.05}, 0.05))
    outcome = r.ece_within({"regular": 0.01, "shopping": 0.08, "video": 0.06}, 0.05)
    assert_fails(outcome, "ECE above 0.05 on shopping 0.0800, video 0.0600")
    assert "regular" not in outcome.description
    assert_scalar_metadata(outcome)
    # A NaN ECE (a segment without rows scored) is not within the limit.
    assert_fails(r.ece_within({"carousel": math.nan}, 0.05), "carousel nan")
    assert "worst: video" in r.ece_within({"regular": 0.01, "video": 0.02}, 0.05).description


def test_brier_not_below_the_oracle_beyond_the_tolerance():
    # 0.125 - 3 x 0.0078125 = 0.1015625 exactly: the boundary without rounding noise.
    assert_passes(r.brier_not_below_oracle(0.1015625, 0.125, 0.0078125, 3.0))
    assert_passes(r.brier_not_below_oracle(0.15, 0.125, 0.001, 3.0))  # worse than the oracle: fine
    outcome = r.brier_not_below_oracle(0.1, 0.125, 0.0078125, 3.0)
    assert_fails(outcome, "below the oracle's 0.1250 by more than 3 paired SE", "leakage")
    assert_scalar_metadata(outcome)


# --- drift and monitoring -------------------------------------------------------------------------


def test_drift_within_without_a_previous_day_passes():
    outcome = r.drift_within({}, 0.2, "signal PSIs")
    assert_passes(outcome)
    assert "no previous day" in outcome.description
    assert_passes(r.drift_within({"psi/a": math.nan}, 0.2, "signal PSIs"))


def test_drift_within_names_the_worst_drifts():
    assert_passes(r.drift_within({"psi/a": 0.1, "psi/b": 0.2}, 0.2, "signal PSIs"))
    outcome = r.drift_within({"psi/a": 0.1, "psi/b": 0.5, "psi/c": 0.3, "psi/d": math.nan}, 0.2, "signal PSIs")
    assert_fails(outcome, "2 signal PSIs above 0.2 against the previous day, e.g. ['psi/b 0.500', 'psi/c 0.300']")
    assert outcome.metadata["compared"] == 3 and outcome.metadata["worst"] == 0.5
    assert_scalar_metadata(outcome)


def test_monitoring_spec_bounds():
    assert MonitoringSpec().max_psi == 0.2
    with pytest.raises(ValueError, match="max_coverage_drop=2 is out of range"):
        MonitoringSpec(max_coverage_drop=2)


def test_signal_profile_has_coverage_and_histograms_per_segment(log):
    sampled = log.filter(pl.col("sampled"))
    profile = monitoring.signal_profile(sampled)
    segments = sampled.select("surface", "content_type").unique()
    assert len(profile) == 2 * len(SIGNALS) * segments.height
    home_video = sampled.filter((pl.col("surface") == "home") & (pl.col("content_type") == "video"))
    assert profile["coverage/text_match/home/video"] == 0.0  # no text on home
    assert profile["coverage/category_match/home/video"] == 1.0
    assert profile["coverage/image_similarity/home/video"] == pytest.approx(
        float(home_video["image_similarity"].is_not_null().mean()))
    hist = profile["hist/embedding_similarity/home/video"]
    assert len(hist) == len(monitoring.SIGNAL_EDGES) - 1
    assert sum(hist) == home_video["embedding_similarity"].is_not_null().sum()
    assert sum(profile["hist/text_match/home/video"]) == 0
    assert all(isinstance(v, float) for k, v in profile.items() if k.startswith("coverage/"))


def test_compare_measures_drift_against_the_previous_profile(log):
    profile = monitoring.signal_profile(log.filter(pl.col("sampled")))
    assert monitoring.compare(None, profile) == {} and monitoring.compare({}, profile) == {}
    same = monitoring.compare(profile, profile)
    assert set(same) == ({"psi/" + k.removeprefix("hist/") for k in profile if k.startswith("hist/")}
                         | {"coverage_drop/" + k.removeprefix("coverage/") for k in profile if k.startswith("coverage/")})
    # The same profile: no drift (NaN only for histograms with no values, e.g. text on home).
    assert all(v == 0 for k, v in same.items() if not math.isnan(v))
    assert math.isnan(same["psi/text_match/home/video"])

    lowered = dict(profile)
    lowered["coverage/embedding_similarity/search/regular"] = profile["coverage/embedding_similarity/search/regular"] - 0.3
    lowered["hist/embedding_similarity/search/regular"] = [0] * 9 + [5]
    changes = monitoring.compare(profile, lowered)
    assert changes["coverage_drop/embedding_similarity/search/regular"] == pytest.approx(0.3)
    assert changes["psi/embedding_similarity/search/regular"] > 1.0
    # A key only one day has is not compared.
    assert "coverage_drop/new/x" not in monitoring.compare(profile, {**profile, "coverage/new/x": 1.0})
    outcome = r.drift_within({k: v for k, v in changes.items() if k.startswith("coverage_drop/")}, 0.05,
                             "coverage drops")
    assert_fails(outcome, "1 coverage drops above 0.05", "embedding_similarity/search/regular 0.300")


def test_score_profile_bins_each_models_scores_per_segment(log):
    frame = log.head(500)
    rng = np.random.default_rng(0)
    scores = {"full": rng.random(frame.height), "heuristic": rng.random(frame.height)}
    profile = monitoring.score_profile(frame, scores)
    segments = frame.select("surface", "content_type").unique().height
    assert len(profile) == 2 * segments
    mask = ((frame["surface"] == "search") & (frame["content_type"] == "shopping")).to_numpy()
    expected = np.histogram(scores["full"][mask], bins=SCORE_EDGES)[0].tolist()
    assert profile["hist/score/full/search/shopping"] == expected
    assert sum(sum(v) for k, v in profile.items() if k.startswith("hist/score/full/")) == frame.height


# --- the funnel's launch checks -------------------------------------------------------------------

def _auction(frame):
    from adrel_pipeline_tests.contextual.conftest import FUNNEL

    return r.auction_consistent(frame, FUNNEL.slots, FUNNEL.auction_candidates, FUNNEL.reserve_price,
                                FUNNEL.trim_threshold)


def test_auction_consistent_passes_on_the_funnel(candidates):
    outcome = _auction(candidates)
    assert_passes(outcome)
    assert_scalar_metadata(outcome)
    assert outcome.metadata["winners"] == int(candidates["dropped_at"].is_null().sum())


def _tamper(candidates, row_filter, **columns):
    """The candidates with ``columns`` replaced on the first row that ``row_filter`` selects."""
    first = candidates.with_row_index("i").filter(row_filter)["i"][0]
    return candidates.with_columns(**{k: pl.when(pl.int_range(pl.len()) == first).then(pl.lit(v))
                                      .otherwise(pl.col(k)) for k, v in columns.items()})


@pytest.mark.parametrize("change, expected", [
    (lambda c: _tamper(c, pl.col("dropped_at").is_null(), price=1e6), "1 winners paying outside [reserve 0.2"),
    (lambda c: _tamper(c, pl.col("dropped_at").is_null(), price=0.0), "1 winners paying outside"),
    (lambda c: _tamper(c, pl.col("dropped_at") == "trim", dropped_at="ranking"), "1 candidates trimmed against"),
    (lambda c: _tamper(c, (pl.col("dropped_at") == "ranking") & (pl.col("relevance") > 0.5), dropped_at="trim"),
     "1 candidates trimmed against the threshold 0.2"),
    (lambda c: _tamper(c, pl.col("slot") == 0, slot=1), "slots are not 0..k-1"),
    (lambda c: _tamper(c, pl.col("slot") == 0, rank_score=0.0), "not in order of score"),
    (lambda c: c.with_columns(dropped_at=pl.when(pl.col("dropped_at") == "ranking").then(None)
                              .otherwise(pl.col("dropped_at"))), "more than 10 auction entrants or 3 winners"),
])
def test_auction_consistent_names_what_broke(candidates, change, expected):
    assert_fails(_auction(change(candidates)), expected)


def test_relevance_gain_and_revenue_cost_against_the_holdout():
    assert_passes(r.relevance_gain_at_least(0.9, 0.6, 0.0))
    assert_fails(r.relevance_gain_at_least(0.6, 0.6, 0.05), "(+0.0%): below the minimum gain +5.0%")
    assert_fails(r.relevance_gain_at_least(0.5, 0.6, 0.0), "below the minimum gain")
    assert_passes(r.revenue_cost_within(0.8, 1.0, 0.25))
    outcome = r.revenue_cost_within(0.7, 1.0, 0.25)
    assert_fails(outcome, "relevance costs 30.0%, more than 25%")
    assert outcome.metadata["cost"] == pytest.approx(0.3)


def test_trim_profiles_compare_by_absolute_change():
    frame = pl.DataFrame({"surface": ["home", "home", "search"], "content_type": ["video"] * 3})
    day1 = monitoring.trim_profile(frame, {"m": np.array([0.05, 0.5, 0.5])}, 0.1)
    day2 = monitoring.trim_profile(frame, {"m": np.array([0.05, 0.05, 0.05])}, 0.1)
    assert day1 == {"trim_rate/m/home/video": 0.5, "trim_rate/m/search/video": 0.0}
    changes = monitoring.compare(day1, day2)
    assert changes == {"trim_rate_change/m/home/video": 0.5, "trim_rate_change/m/search/video": 1.0}
    assert_fails(r.drift_within(changes, 0.6, "trim-rate changes"), "1 trim-rate changes above 0.6")
