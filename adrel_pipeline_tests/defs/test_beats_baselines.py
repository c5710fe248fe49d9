"""The beats_baselines WARN check: quiet on the default model, firing on a crippled one."""

import dagster as dg
import pytest
import torch

from adrel_pipeline.relevance import model as model_module
from adrel_pipeline_tests.conftest import materialize, materialize_week, metadata, sqlite_uri

pytestmark = pytest.mark.slow


def check(result, name="beats_baselines"):
    [evaluation] = [c for c in result.get_asset_check_evaluations() if c.check_name == name]
    return evaluation


@pytest.fixture
def week(tmp_path):
    uri = sqlite_uri(tmp_path)
    with dg.instance_for_test() as instance:
        world, _ = materialize_week(instance, uri, selection=["hetero_graph", "link_split", "oracle_metrics"],
                                    run_config={})
        assert world.success
        yield instance, uri


def test_quiet_on_the_default_model(week):
    instance, uri = week
    result = materialize(instance, uri, run_config={}, selection=["trained_gat", "test_auc"])
    assert result.success
    evaluation = check(result)
    assert evaluation.passed, evaluation.description
    md = metadata(instance, "test_auc")
    assert md["test_auc"] >= max(md["baseline_popularity_auc"], md["baseline_logreg_auc"]) - \
        md["test_auc_minus_best_baseline_se"]


def test_fires_on_a_model_without_degrees_trained_one_epoch(week, monkeypatch):
    instance, uri = week
    real = model_module.with_log_degree

    def no_degree(x_dict, edge_index_dict):
        return {t: torch.cat([x[:, :-1], torch.zeros_like(x[:, -1:])], dim=1)
                for t, x in real(x_dict, edge_index_dict).items()}

    monkeypatch.setattr(model_module, "with_log_degree", no_degree)
    crippled = {"ops": {"trained_gat": {"config": {"epochs": 1}}, "test_auc": {"config": {"min_test_auc": 0.5}}}}
    result = materialize(instance, uri, run_config=crippled, selection=["trained_gat", "test_auc"])
    assert result.success, "a WARN check does not fail the run"
    evaluation = check(result)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert "below the logreg baseline's" in evaluation.description
