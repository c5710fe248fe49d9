"""The leak check's non-oracle form (data without the generator's truth) and its bounds."""

import math
import re

import pytest

from adrel_pipeline.evaluation import rules as v
from adrel_pipeline.relevance.spec import ModelCheckSpec
from adrel_pipeline_tests.helpers import assert_fails, assert_passes, assert_scalar_metadata

DEFAULTS = ModelCheckSpec()


def leak(test_auc, val_auc, baseline_auc, over_baseline=DEFAULTS.leak_margin_over_baseline,
         over_val=DEFAULTS.leak_margin_over_val):
    return v.auc_without_leak(test_auc, val_auc, "logreg", baseline_auc, over_baseline, over_val)


def test_a_leaky_model_far_above_its_validation_and_every_baseline_fails():
    outcome = leak(0.95, 0.70, 0.70)
    assert_fails(outcome, "no oracle", "leaked into training", "logreg", "0.9500", "0.7000")
    assert_scalar_metadata(outcome)
    assert outcome.metadata["excess_over_val"] == pytest.approx(0.25)
    assert outcome.metadata["excess_over_baseline"] == pytest.approx(0.25)


# Honest runs of the synthetic worlds (benchmarks/worlds.py's worlds, seeds 0-2): test, validation and
# best-baseline AUCs. The widest honest gaps seen: test - val +0.057 (sparse, seed 0), test - best
# baseline +0.010 (few ads, seed 2).
@pytest.mark.parametrize("test_auc, val_auc, baseline_auc", [
    (0.7087, 0.7208, 0.7061),  # small (the tests' world), seed 0
    (0.7020, 0.6455, 0.7020),  # sparse, seed 0
    (0.7082, 0.7095, 0.7001),  # sparse, seed 1
    (0.7139, 0.7167, 0.7135),  # default, seed 0
    (0.7206, 0.7325, 0.7204),  # dense, seed 2
    (0.7140, 0.7071, 0.7038),  # few ads, seed 2
])
def test_honest_models_of_the_synthetic_worlds_pass_with_the_defaults(test_auc, val_auc, baseline_auc):
    outcome = leak(test_auc, val_auc, baseline_auc)
    assert_passes(outcome)
    assert "no oracle" in outcome.description


def test_either_reference_alone_does_not_flag():
    # Far above every baseline with a validation AUC alike: a model that learned what counting cannot.
    assert_passes(leak(0.90, 0.89, 0.70))
    # Far above a noisy validation AUC but level with the baseline: noise, not leakage.
    assert_passes(leak(0.72, 0.55, 0.71))


@pytest.mark.parametrize("reference, slack", [(0.70, 0.05), (0.63, 0.1), (0.5, 0.25), (0.8, 0.0)])
def test_inclusive_at_the_computed_margins(reference, slack):
    # Exactly at one margin and beyond the other passes; just beyond both fails.
    assert_passes(v.auc_without_leak(reference + slack, reference, "logreg", reference, slack, slack))
    assert_passes(v.auc_without_leak(reference + slack, reference - 1, "logreg", reference, slack, slack))
    assert_fails(v.auc_without_leak(reference + slack + 1e-6, reference, "logreg", reference, slack, slack),
                 "leaked into training")


def test_nan_test_auc_fails():
    assert_fails(leak(math.nan, 0.70, 0.70), "NaN")


def test_leak_margins_defaults_and_bounds():
    assert (DEFAULTS.leak_margin_over_baseline, DEFAULTS.leak_margin_over_val) == (0.05, 0.10)
    ModelCheckSpec(leak_margin_over_baseline=0.0, leak_margin_over_val=0.5)
    for field, value in (("leak_margin_over_baseline", -0.01), ("leak_margin_over_val", 0.51)):
        with pytest.raises(ValueError, match=rf"^{field}=.* out of range: .*{re.escape('[0, 0.5]')}"):
            ModelCheckSpec(**{field: value})
