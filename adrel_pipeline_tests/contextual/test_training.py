"""The day's four relevance models and their evaluation (what relevance_model runs), on a small world."""

import numpy as np
import pytest

from adrel_pipeline.contextual.labels import label_rows
from adrel_pipeline.contextual.sampling import draw_jobs, log_candidates
from adrel_pipeline.contextual.spec import CandidateLogSpec, LabelSpec, RelevanceModelSpec
from adrel_pipeline.contextual.training import MODELS, ORACLE, train_and_evaluate

QUICK = RelevanceModelSpec(max_iter=30, min_samples_leaf=20)
pytestmark = pytest.mark.slow  # four models fit twice: seconds


@pytest.fixture(scope="module")
def day(candidates):
    """The labels of a day's three jobs and the log's whole lists."""
    log = log_candidates(candidates, CandidateLogSpec(log_rate=0.3, full_list_contexts=100), (3,))
    spec = LabelSpec(labelling_budget=3000, test_rows=4000)
    return label_rows(draw_jobs(log, spec, (3,)), spec, (3,)), log.filter(log["full_list"])


@pytest.fixture(scope="module")
def result(day):
    return train_and_evaluate(*day, QUICK)


def test_the_same_labels_and_config_give_the_same_models_and_metrics(day, result):
    again = train_and_evaluate(*day, QUICK)
    assert again.metrics == result.metrics
    for name in MODELS:
        np.testing.assert_array_equal(again.test_scores[name], result.test_scores[name])


def test_every_model_and_the_oracle_is_scored_on_the_same_candidate_level_test_rows(day, result):
    labels, _ = day
    test = labels.filter(labels["job"] == "test")
    assert set(result.metrics) == {*MODELS, ORACLE}
    assert result.test.equals(test)
    assert all(len(result.test_scores[name]) == test.height for name in result.test_scores)
    # The oracle's probabilities are the truth the true ECE is measured against, its ranking the ideal.
    assert result.metrics[ORACLE]["true_ece"] == 0.0 and result.metrics[ORACLE]["ndcg_at_10"] == 1.0
    assert all(result.metrics[name]["ndcg_at_10"] <= 1.0 for name in MODELS)


def test_the_heuristic_sample_miscalibrates_on_candidates(result):
    # Post-auction winners are mostly relevant (the holdout ranks by bid x pCTR, which relevance
    # drives): trained on them, a model over-predicts relevance on the candidates it will score.
    full, heuristic = result.metrics["full"], result.metrics["heuristic"]
    assert heuristic["ece"] > full["ece"] + 0.05
    assert np.mean(result.test_scores["heuristic"]) > np.mean(result.test_scores["full"]) + 0.05
