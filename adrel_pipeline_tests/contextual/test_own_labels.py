"""A team's own relevance labels (issue 17): the label table's checks, its pairs and their quality,
the synthetic world's labels in the same form, and the models trained and evaluated on them."""

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from adrel_pipeline.contextual.engagement import serving_pctr
from adrel_pipeline.contextual.funnel import candidates as retrieved_candidates
from adrel_pipeline.contextual.funnel import run_funnel
from adrel_pipeline.contextual.labels import label_rows
from adrel_pipeline.contextual.own_labels import (
    LABEL_COLUMNS,
    LABEL_OPTIONAL,
    LABEL_REQUIRED,
    aggregate_ratings,
    check_ratings,
    quality_of,
    simulated_ratings,
)
from adrel_pipeline.contextual.sampling import draw_jobs, log_candidates
from adrel_pipeline.contextual.spec import CandidateLogSpec, FunnelSpec, LabelSpec, RelevanceModelSpec
from adrel_pipeline.contextual.training import OWN_MODELS, train_and_evaluate_own
from adrel_pipeline.sources.validate import SourceDataError
from adrel_pipeline.world.contexts import generate_contexts

from .conftest import DAY

WHERE = "labels.csv"
LABELS = LabelSpec(labelling_budget=3000, test_rows=4000)
LOG = CandidateLogSpec(log_rate=0.3, full_list_contexts=100)
QUICK = RelevanceModelSpec(max_iter=30, min_samples_leaf=20)


def table(**overrides) -> pl.DataFrame:
    """Six valid ratings of three pairs (two raters each), ``overrides`` replacing columns."""
    columns = {
        "context_id": [1, 1, 1, 1, 2, 2],
        "item_id": [10, 10, 11, 11, 10, 10],
        "rater_id": ["a", "b", "a", "b", "a", "c"],
        "label": [4, 5, 1, 2, 3, 3],
        "day": ["2026-01-02"] * 6,
        "surface": ["search"] * 4 + ["home"] * 2,
        "content_type": ["shopping", "shopping", "video", "video", "shopping", "shopping"],
        "category_match": [1.0, 1.0, 0.0, 0.0, None, None],
        "query_intent": ["shop"] * 4 + [None, None],
    }
    columns.update(overrides)
    return pl.DataFrame(columns)


def error(df: pl.DataFrame, **kwargs) -> str:
    with pytest.raises(SourceDataError) as caught:
        check_ratings(df, WHERE, **kwargs)
    message = str(caught.value)
    assert message.startswith(WHERE)
    return message


# --- check_ratings ---------------------------------------------------------------------------------


def test_a_valid_table_is_normalised_with_every_optional_column():
    out = check_ratings(table(rater_id=[7, 8, 7, 8, 7, 9], context_id=["1", "1", "1", "1", "2", "2"]), WHERE,
                        ad_ids=pl.Series([10, 11, 12]))
    assert out.columns == list(LABEL_COLUMNS) == [*LABEL_REQUIRED, *LABEL_OPTIONAL]
    assert out.schema["context_id"] == pl.Int64 and out.schema["item_id"] == pl.Int64
    assert out.schema["rater_id"] == pl.Utf8 and out["rater_id"].to_list()[:2] == ["7", "8"]
    assert out.schema["label"] == pl.Int8 and out.schema["day"] == pl.Date
    assert out["day"].unique().to_list() == [dt.date(2026, 1, 2)]
    assert out.schema["text_match"] == pl.Float64 and out["text_match"].null_count() == 6  # absent: all null
    assert out.schema["query_intent"] == pl.Utf8


def test_a_missing_required_column_is_named():
    message = error(table().drop("surface"))
    assert "'surface'" in message and "missing required column" in message


def test_a_table_without_rows_is_an_error():
    assert "no rows" in error(table().head(0))


def test_unparsable_ids_are_counted_with_examples():
    message = error(table(item_id=["10", "10", "eleven", "11", "10", "10"]))
    assert "'item_id'" in message and "1 of 6 values are not integers" in message and "eleven" in message


def test_a_wrong_type_is_named():
    message = error(table(surface=[1, 1, 1, 1, 2, 2]))
    assert "'surface'" in message and "wrong type" in message and "search" in message
    message = error(table(text_match=["0.5", "0.5", "high", "high", None, None]))
    assert "'text_match'" in message and "2 of 6 values are not numbers" in message
    message = error(table(day=["2026-01-02"] * 5 + ["02/01/2026"]))
    assert "'day'" in message and "not dates" in message


def test_nulls_in_a_required_column_are_counted():
    message = error(table(rater_id=["a", None, "a", "b", "a", "c"]))
    assert "'rater_id'" in message and "1 of 6 values are null" in message
    message = error(table(content_type=["shopping", "shopping", None, None, "shopping", "shopping"]))
    assert "'content_type'" in message and "2 of 6 values are null" in message


def test_a_label_off_the_5_point_scale_is_an_error():
    message = error(table(label=[4, 5, 0, 2, 3, 6]))
    assert "'label'" in message and "2 of 6 labels are outside the 5-point scale 1..5" in message


def test_a_value_outside_its_vocabulary_names_the_allowed_values():
    message = error(table(surface=["search"] * 4 + ["feed"] * 2))
    assert "'surface'" in message and "2 of 6 values are not one of ['home', 'search', 'closeup']" in message
    assert "feed" in message
    message = error(table(query_intent=["buy"] * 4 + [None, None]))
    assert "'query_intent'" in message and "['browse', 'shop', 'learn']" in message


def test_items_that_are_not_ads_are_named():
    message = error(table(), ad_ids=pl.Series([10]))
    assert "'item_id'" in message and "2 of 6 ratings name 1 item_ids that are not ads" in message


def test_a_rater_rating_a_pair_twice_is_an_error():
    message = error(table(rater_id=["a", "a", "a", "b", "a", "c"]))
    assert "'rater_id'" in message and "2 of 6 ratings repeat a rater's rating" in message


def test_ratings_of_a_pair_must_agree_on_its_pair_columns():
    message = error(table(category_match=[1.0, 0.0, 0.0, 0.0, None, None]))
    assert "'category_match'" in message and "1 (context_id, item_id) pairs" in message
    message = error(table(day=["2026-01-02"] * 5 + ["2026-01-03"]))
    assert "'day'" in message and "disagree" in message
    # A signal null in one rating and present in another disagrees too.
    message = error(table(category_match=[1.0, 1.0, 0.0, 0.0, None, 1.0]))
    assert "'category_match'" in message and "disagree" in message


# --- aggregate_ratings and quality_of ------------------------------------------------------------------


def pairs_of(panels: list[list[int]]) -> pl.DataFrame:
    rows = [{"context_id": c, "item_id": 1, "rater_id": f"r{j}", "label": g, "day": dt.date(2026, 1, 2),
             "surface": "home", "content_type": "regular"}
            for c, panel in enumerate(panels) for j, g in enumerate(panel)]
    return aggregate_ratings(check_ratings(pl.DataFrame(rows), WHERE))


def test_one_row_per_pair_with_the_lower_median_of_any_panel_size():
    pairs = pairs_of([[4, 5], [2, 5, 4, 3], [3], [1, 5, 2], [4, 4, 5, 5]])
    assert pairs["label"].to_list() == [4, 3, 3, 2, 4]  # even panels: the lower median
    assert pairs["raters"].to_list() == [2, 4, 1, 3, 4]
    assert pairs["relevant"].to_list() == [True, False, False, False, True]
    assert pairs["label_3pt"].to_list() == ["relevant", "somewhat", "somewhat", "irrelevant", "relevant"]
    assert pairs["ratings"].to_list()[1] == [2, 5, 4, 3]  # in rater_id order
    assert pairs.schema["rater_ids"] == pl.List(pl.Utf8) and pairs.schema["ratings"] == pl.List(pl.Int8)


def test_pairs_are_sorted_by_day_then_pair_and_do_not_depend_on_row_order():
    ratings = check_ratings(table(day=["2026-01-05"] * 4 + ["2026-01-02"] * 2), WHERE)
    pairs = aggregate_ratings(ratings)
    assert pairs.select("context_id", "item_id").rows() == [(2, 10), (1, 10), (1, 11)]
    assert aggregate_ratings(ratings.reverse()).equals(pairs)


def test_quality_on_a_hand_computed_example():
    # Two-rater panels [1,1], [4,4], [1,4]: coincidences o_11 = o_44 = 2, o_14 = o_41 = 1; n_1 = n_4 = 3.
    # Only two grades occur, so ordinal alpha is nominal alpha: 1 - (2/6) / (2*3*3 / (6*5)) = 4/9.
    pairs = pairs_of([[1, 1], [4, 4], [1, 4]])
    q = quality_of(pairs)
    assert q["krippendorff_alpha"] == pytest.approx(4 / 9)
    assert q["disagreement_rate"] == pytest.approx(1 / 3)
    assert q["relevant_share"] == pytest.approx(1 / 3) and q["single_rater_share"] == 0.0
    # A single rating carries no agreement: alpha and disagreement unchanged.
    q = quality_of(pairs_of([[1, 1], [4, 4], [1, 4], [5]]))
    assert q["krippendorff_alpha"] == pytest.approx(4 / 9) and q["disagreement_rate"] == pytest.approx(1 / 3)
    assert q["single_rater_share"] == 0.25 and q["relevant_share"] == 0.5
    # A panel of three: its unit adds 3 x 2 / (3 - 1) = 3 to o_11; n_1 = 6, n = 9; 1 - (2/9) / (36/72) = 5/9.
    assert quality_of(pairs_of([[1, 1], [4, 4], [1, 4], [1, 1, 1]]))["krippendorff_alpha"] == pytest.approx(5 / 9)


def test_perfect_agreement_has_alpha_one_and_no_disagreement():
    q = quality_of(pairs_of([[1, 1, 1], [5, 5], [3, 3, 3, 3], [2, 2]]))
    assert q["krippendorff_alpha"] == 1.0 and q["disagreement_rate"] == 0.0


def test_alpha_matches_the_packages_reliability_data_for_variable_panels():
    import krippendorff

    rng = np.random.default_rng(0)
    panels = [list(rng.integers(1, 6, size=rng.integers(1, 5))) for _ in range(60)]
    data = np.full((4, len(panels)), np.nan)  # raters x units, NaN: not rated
    for unit, panel in enumerate(panels):
        data[:len(panel), unit] = panel
    expected = krippendorff.alpha(reliability_data=data, value_domain=[1, 2, 3, 4, 5], level_of_measurement="ordinal")
    assert quality_of(pairs_of(panels))["krippendorff_alpha"] == pytest.approx(expected)


# --- simulated_ratings ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulated(ctx_spec, ctx_tables):
    users, items, _, _ = ctx_tables
    return simulated_ratings(ctx_spec, users, items, [DAY], LABELS, log_spec=LOG)


@pytest.fixture(scope="module")
def pairs(simulated):
    return aggregate_ratings(simulated)


def test_simulated_ratings_have_the_contracts_columns_only(simulated):
    assert simulated.columns == list(LABEL_COLUMNS)
    assert not {"true_grade", "relevance_probability", "quality", "click_probability", "job"} & set(simulated.columns)
    assert check_ratings(simulated, WHERE).equals(simulated)
    assert simulated.height == (LABELS.labelling_budget + LABELS.test_rows) * LABELS.raters_per_row


def test_simulated_labels_are_the_pipelines_labels_of_the_same_rows(ctx_spec, ctx_tables, pairs):
    # What candidate_log and relevance_labels compute on a day before any champion.
    users, items, inventory, _ = ctx_tables
    key = (DAY.toordinal(),)
    contexts = generate_contexts(ctx_spec, users, items, DAY)
    cands = retrieved_candidates(ctx_spec, contexts, inventory, DAY)
    served = run_funnel(cands, serving_pctr(cands, None, ctx_spec, DAY).pctr, None, FunnelSpec())
    labels = label_rows(draw_jobs(log_candidates(served, LOG, key), LABELS, key), LABELS, key)
    expected = labels.filter(pl.col("job") != "heuristic").select(
        "context_id", pl.col("ad_id").alias("item_id"), "label", "relevant", "surface", "content_type",
        "category_match").sort("context_id", "item_id")
    got = pairs.select(expected.columns)
    assert got.equals(expected)
    assert (pairs["raters"] == LABELS.raters_per_row).all()


def test_simulated_label_quality_is_the_crowds(pairs):
    q = quality_of(pairs)
    assert q["single_rater_share"] == 0.0 and 0.0 < q["disagreement_rate"] < 0.2
    assert 0.6 < q["krippendorff_alpha"] < 1.0


# --- train_and_evaluate_own --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def result(pairs):
    return train_and_evaluate_own(pairs, QUICK)


def test_train_and_test_contexts_are_disjoint_and_cover_the_pairs(pairs, result):
    test_contexts = set(result.test["context_id"].to_list())
    train_contexts = set(pairs["context_id"].to_list()) - test_contexts
    assert test_contexts and train_contexts
    assert pairs.filter(pl.col("context_id").is_in(list(test_contexts))).height == result.test.height
    assert 0.15 < result.test.height / pairs.height < 0.35  # test_fraction 0.25 of the contexts
    # Another seed draws another split.
    other = train_and_evaluate_own(pairs, RelevanceModelSpec(max_iter=5, min_samples_leaf=20, seed=1))
    assert set(other.test["context_id"].to_list()) != test_contexts


def test_own_models_are_deterministic_for_a_seed(pairs, result):
    again = train_and_evaluate_own(pairs, QUICK)
    assert again.test.equals(result.test)
    for name in OWN_MODELS:
        np.testing.assert_array_equal(again.test_scores[name], result.test_scores[name])
        assert again.metrics[name].keys() == result.metrics[name].keys()
        for key, value in result.metrics[name].items():
            assert again.metrics[name][key] == value or (math.isnan(value) and math.isnan(again.metrics[name][key]))


def test_own_metrics_leave_the_truth_out_and_the_model_ranks_well(result):
    assert set(result.models) == set(OWN_MODELS) == {"full", "no_category_match", "uncalibrated", "reseeded"}
    assert set(result.metrics) == set(OWN_MODELS)  # no heuristic, no oracle
    full = result.metrics["full"]
    truth_only = [k for k in full if k.startswith("true_ece") or k == "top_k_shopping_ctr"]
    assert "true_ece" in truth_only and "true_ece/shopping" in truth_only
    assert all(math.isnan(full[k]) for k in truth_only)
    assert full["auc"] > 0.8
    assert full["ece"] < 0.05 and 0.0 < full["brier"] < 0.25
    assert 0.5 < full["ndcg_at_10"] <= 1.0 and 0.0 < full["top_k_relevant_share"] <= 1.0
    assert {"ece/shopping", "ece/home", "ndcg_at_10/search"} <= full.keys()
    assert set(result.reliability["full"]) == {"content_type", "surface"}


def test_one_class_labels_or_too_few_contexts_raise(pairs):
    with pytest.raises(ValueError, match="one class only"):
        train_and_evaluate_own(pairs.with_columns(relevant=pl.lit(False)), QUICK)
    with pytest.raises(ValueError, match="too few for a test split"):
        train_and_evaluate_own(pairs.filter(pl.col("context_id") == pairs["context_id"][0]), QUICK)
