"""The relevance chain on data without the generator's truth (real data): the oracle's metrics are
unavailable, never faked; the baselines are the reference and the leak check runs its non-oracle form.

The world's users/items are materialized as usual, then their stored values are replaced by the same
tables without the generator's latent columns (as a real-data source would hand them over), written
with the same world fingerprint; the model's assets run on those."""

from pathlib import Path

import dagster as dg
import pytest
from mlflow import MlflowClient

from adrel_pipeline.defs import report
from adrel_pipeline.mlops import serialization
from adrel_pipeline.mlops.registry import DEFAULT_MODEL_NAME
from adrel_pipeline.world.oracle import TRUTH_COLUMNS
from adrel_pipeline_tests.conftest import WEEK, WORLD_ASSETS, materialize, metadata, range_tags, sqlite_uri

LEAK_CHECK = dg.AssetCheckKey(dg.AssetKey("test_auc"), "test_auc_within_oracle_ceiling")


def _strip_truth(storage: Path) -> None:
    for table, columns in TRUTH_COLUMNS.items():
        path = storage / f"{table}.parquet"
        value, tags = serialization.load_with_tags(path)
        serialization.save(value.drop(*columns), path, tags=tags)


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    uri = sqlite_uri(tmp_path_factory.mktemp("mlflow"))
    with dg.instance_for_test() as instance:
        world = materialize(instance, uri, selection=WORLD_ASSETS, run_config={},
                            tags=range_tags(WEEK[0].isoformat(), WEEK[-1].isoformat()))
        assert world.success
        _strip_truth(Path(instance.storage_directory()))
        assert materialize(instance, uri).success
        yield instance, uri


@pytest.mark.slow
def test_oracle_metrics_says_unavailable_with_no_numbers(real):
    instance, _ = real
    md = metadata(instance, "oracle_metrics")
    assert md["oracle_available"] is False
    assert "no generator truth" in md["oracle_unavailable_reason"] and "users.true_activity" in \
        md["oracle_unavailable_reason"]
    assert not {"auc", "val_auc", "mrr", "hits_at_10", "hits_at_100"} & set(md)
    value, _ = serialization.load_with_tags(next((Path(instance.storage_directory()) / "oracle_metrics").iterdir()))
    assert value["available"] is False and "test_scores" not in value and "auc" not in value
    assert value["ranking_sample"].numel() > 0  # the positives test_auc ranks the model on


@pytest.mark.slow
def test_test_auc_has_no_oracle_keys_the_fallback_check_passed_and_the_model_registered(real):
    instance, uri = real
    md = metadata(instance, "test_auc")
    assert md["oracle_available"] == 0
    assert not [k for k in md if "oracle" in k and k != "oracle_available"], md.keys()
    for key in ("test_auc", "val_auc", "baseline_logreg_auc", "baseline_popularity_auc", "test_mrr",
                "test_auc_minus_best_baseline", "test_auc_minus_best_baseline_se"):
        assert isinstance(md[key], float), key
    assert md["test_auc_minus_best_baseline"] == pytest.approx(
        md["test_auc"] - max(md["baseline_logreg_auc"], md["baseline_popularity_auc"]))

    run = MlflowClient(uri).get_run(md["mlflow_run_id"])
    assert run.data.metrics["oracle_available"] == 0
    assert not [k for k in run.data.metrics if "oracle" in k and k != "oracle_available"]
    assert run.data.metrics["test_auc_minus_best_baseline"] == pytest.approx(md["test_auc_minus_best_baseline"])

    record = instance.event_log_storage.get_latest_asset_check_execution_by_key([LEAK_CHECK])[LEAK_CHECK]
    assert record.status.value == "SUCCEEDED"
    evaluation = record.event.dagster_event.event_specific_data
    assert evaluation.description.startswith("no oracle (the data has no generator truth)")
    assert evaluation.metadata["margin_over_val"].value == 0.10
    assert "oracle_auc" not in evaluation.metadata

    client = MlflowClient(uri, registry_uri=uri)
    versions = client.search_model_versions(f"name='{DEFAULT_MODEL_NAME}'")
    assert [v.run_id for v in versions] == [md["mlflow_run_id"]]
    assert md["mlflow_model_version"] == 1


@pytest.mark.slow
def test_report_says_the_oracle_is_unavailable(real, monkeypatch, capsys):
    instance, _ = real
    monkeypatch.setattr(report.dg.DagsterInstance, "get", staticmethod(lambda: instance))
    assert report.main([]) == 0
    out = capsys.readouterr().out
    assert "oracle: unavailable (real data" in out
    assert "oracle_auc" not in out and "oracle_mrr" not in out and "auc_to_oracle" not in out
    assert "test_auc:" in out and "baseline_logreg_auc:" in out
