"""The model rules and the bounds of the model checks."""

import math
import re

import pytest

from adrel_pipeline.evaluation import rules as v
from adrel_pipeline.relevance.spec import ModelCheckSpec
from adrel_pipeline_tests.helpers import assert_fails, assert_passes, assert_scalar_metadata

# --- model ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("auc, passed", [(0.55, True), (0.5501, True), (0.9, True), (0.5499, False),
                                         (0.5, False), (math.nan, False)])
def test_auc_above_chance_is_inclusive_at_the_minimum(auc, passed):
    outcome = v.auc_above_chance(auc, 0.55)
    assert outcome.passed is passed
    assert_scalar_metadata(outcome)
    if not passed:
        assert "below the minimum 0.5500" in outcome.description


@pytest.mark.parametrize("auc, passed", [(0.80, True), (0.82, True), (0.70, True), (0.8201, False),
                                         (0.95, False), (math.nan, False)])
def test_auc_within_ceiling_is_inclusive_at_oracle_plus_k_standard_errors(auc, passed):
    # 0.5 + 1 x 0.25 == 0.75 exactly in binary floating point: the boundary is tested without rounding noise.
    assert v.auc_within_ceiling(0.75, 0.5, 0.25, 1.0).passed
    outcome = v.auc_within_ceiling(auc, 0.80, 0.01, 2.0)
    assert outcome.passed is passed
    assert_scalar_metadata(outcome)
    if not passed:
        assert "above the Bayes-optimal ceiling" in outcome.description and "leak" in outcome.description


def test_the_ceilings_tolerance_scales_with_the_standard_error_not_a_fixed_slack():
    # A +0.03 leak passes a fixed 0.02 + noise, not 3 standard errors of 0.005.
    assert_fails(v.auc_within_ceiling(0.73, 0.70, 0.005, 3.0), "3 paired standard errors")
    assert_passes(v.auc_within_ceiling(0.73, 0.70, 0.02, 3.0))


@pytest.mark.parametrize("auc, passed", [(0.70, True), (0.69, True), (0.6901, True), (0.75, True),
                                         (0.6899, False), (0.5, False)])
def test_auc_vs_champion_is_inclusive_at_champion_minus_margin(auc, passed):
    assert v.auc_vs_champion(0.5, 0.75, 0.25).passed  # exact boundary, no rounding noise
    outcome = v.auc_vs_champion(auc, 0.70, 0.01)
    assert outcome.passed is passed
    assert_scalar_metadata(outcome)
    if not passed:
        assert "trails the champion's 0.7000" in outcome.description


# The boundaries exactly as the rules compute them (oracle + tolerance, champion - margin), whatever the
# floating-point rounding of the sum: the rules are inclusive there.
@pytest.mark.parametrize("reference, slack", [(0.80, 0.02), (0.7, 0.01), (0.9, 0.0), (0.63, 0.05), (0.75, 0.25)])
def test_auc_rules_are_inclusive_at_their_computed_boundaries(reference, slack):
    assert_passes(v.auc_above_chance(reference, reference))
    assert_passes(v.auc_within_ceiling(reference + slack, reference, slack, 1.0))
    assert_passes(v.auc_vs_champion(reference - slack, reference, slack))
    assert_fails(v.auc_above_chance(reference - 1e-6, reference), "below the minimum")
    assert_fails(v.auc_within_ceiling(reference + slack + 1e-6, reference, slack, 1.0), "exceeds the Bayes-optimal AUC")
    assert_fails(v.auc_vs_champion(reference - slack - 1e-6, reference, slack), "trails the champion's")


def test_auc_vs_champion_passes_without_a_champion():
    outcome = v.auc_vs_champion(0.51, None, 0.01)
    assert_passes(outcome)
    assert "no champion" in outcome.description
    assert_scalar_metadata(outcome)


def test_model_check_spec_defaults_and_bounds():
    spec = ModelCheckSpec()
    assert (spec.min_test_auc, spec.oracle_tolerance_se, spec.champion_margin) == (0.55, 3.0, 0.01)
    ModelCheckSpec(min_test_auc=0.5, oracle_tolerance_se=0.0, champion_margin=0.0)
    ModelCheckSpec(min_test_auc=1, oracle_tolerance_se=10, champion_margin=0.5)


@pytest.mark.parametrize("field, value, allowed", [
    ("min_test_auc", 0.49, "a number in [0.5, 1]"), ("min_test_auc", 1.01, "[0.5, 1]"),
    ("min_test_auc", math.nan, "[0.5, 1]"), ("min_test_auc", "0.6", "[0.5, 1]"),
    ("oracle_tolerance_se", -0.01, "[0, 10]"), ("oracle_tolerance_se", 10.5, "[0, 10]"),
    ("champion_margin", -1e-9, "[0, 0.5]"), ("champion_margin", True, "[0, 0.5]"),
])
def test_model_check_spec_rejects_out_of_range_values(field, value, allowed):
    with pytest.raises(ValueError, match=rf"^{field}=.* out of range: .*{re.escape(allowed)}"):
        ModelCheckSpec(**{field: value})


def test_beats_baseline_allows_one_standard_error_and_no_more():
    assert_passes(v.auc_beats_baseline(0.70, "logreg", 0.70, 0.0))
    assert_passes(v.auc_beats_baseline(0.695, "logreg", 0.70, 0.01))
    outcome = v.auc_beats_baseline(0.68, "logreg", 0.70, 0.01)
    assert_fails(outcome, "below the logreg baseline's 0.7000", "paired standard error 0.0100")
    assert_scalar_metadata(outcome)
