"""The wiring: every asset materialized in an ephemeral Dagster instance on a small world."""

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import torch

from adrel_pipeline.definitions import defs
from adrel_pipeline_tests.conftest import SMALL_WORLD, WEEK, materialize_week, metadata, sqlite_uri
from adrel_pipeline_tests.conftest import materialize as _materialize

DAY = WEEK[-1].isoformat()

RELEVANCE = ["users", "items", "interaction_edges", "hetero_graph", "link_split", "trained_gat", "oracle_metrics",
             "test_auc"]
AUDIENCE = ["advertisers", "user_embeddings", "seed_lists", "audience_models", "audience_expansions", "audience_eval"]
CONTEXTUAL = ["ad_inventory", "candidate_log", "relevance_labels", "relevance_model"]
FUNNEL = ["funnel_metrics", "relevance_trend", "relevance_experiments"]
ASSETS = RELEVANCE + AUDIENCE + CONTEXTUAL + FUNNEL


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    return sqlite_uri(tmp_path_factory.mktemp("mlflow"))


@pytest.fixture(scope="module")
def materialize(tracking_uri):
    return lambda instance, **kwargs: _materialize(instance, tracking_uri, **kwargs)


@pytest.fixture(scope="module")
def instance(tracking_uri):
    with dg.instance_for_test() as inst:
        world, model = materialize_week(inst, tracking_uri)
        assert world.success and model.success
        yield inst


def test_definitions_load_with_all_assets_in_dependency_order():
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == set(ASSETS)
    parents = {k: {p.to_user_string() for p in graph.get(dg.AssetKey(k)).parent_keys} for k in ASSETS}
    assert parents["interaction_edges"] == {"users", "items"}
    assert parents["hetero_graph"] == {"users", "items", "interaction_edges"}
    assert parents["link_split"] == {"hetero_graph"}
    assert parents["trained_gat"] == {"link_split"}
    assert parents["oracle_metrics"] == {"users", "items", "link_split"}
    # interaction_edges: the next day's, for next_day_auc (users and items for its oracle).
    assert parents["test_auc"] == {"trained_gat", "link_split", "oracle_metrics", "interaction_edges", "users",
                                   "items"}
    # The audience group: the embeddings read the window's interactions; the per-advertiser assets
    # read the embeddings and the seed lists; the evaluation follows the expansions.
    assert parents["advertisers"] == {"users"}
    assert parents["user_embeddings"] == {"users", "items", "interaction_edges"}
    assert parents["seed_lists"] == {"users", "advertisers"}
    assert {"user_embeddings", "seed_lists"} <= parents["audience_models"]
    assert {"user_embeddings", "audience_models", "seed_lists"} <= parents["audience_expansions"]
    assert parents["audience_eval"] == {"audience_models", "audience_expansions"}
    # The contextual group: the day's log from the world's users, pins and ads; labels from the log;
    # the model from the labels and the log's whole candidate lists. No interactions needed.
    assert parents["ad_inventory"] == {"items"}
    assert parents["candidate_log"] == {"users", "items", "ad_inventory"}
    assert parents["relevance_labels"] == {"candidate_log"}
    assert parents["relevance_model"] == {"relevance_labels", "candidate_log"}
    # The funnel group serves the day's traffic with the day's relevance model (home's pCTR from the
    # registry's GAT champion as of the day, not a step of this graph); funnel_metrics registers the
    # model, re-scoring the champion on the labelled test set.
    world = {"users", "items", "ad_inventory"}
    assert parents["funnel_metrics"] == world | {"relevance_model", "relevance_labels"}
    assert parents["relevance_trend"] == parents["relevance_experiments"] == world | {"relevance_model"}


def test_code_location_loads_without_torch_mlflow_or_pandas():
    # Every CLI command, the webserver and the daemon load the code location; the steps that
    # need torch import it themselves (about 4 s of the 5 s it used to take to load).
    code = ("import sys, adrel_pipeline.definitions\n"
            "print(sorted(m for m in ('torch', 'torch_geometric', 'mlflow', 'pandas', 'sklearn', 'matplotlib')"
            " if m in sys.modules))\n"
            "from adrel_pipeline import rank_ads\n"
            "print(rank_ads.__module__)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split("\n")
    assert out[0] == "[]", f"loading the code location imported {out[0]}"
    assert out[1] == "adrel_pipeline.serving.champion"  # the lazy attribute still resolves


@pytest.mark.slow
def test_metadata_tells_the_story(instance):
    assert metadata(instance, "users")["dagster/row_count"] == SMALL_WORLD["num_users"]
    graph_md = metadata(instance, "hetero_graph")
    # The model of the week's last day sees the whole week: exactly num_interactions events.
    assert graph_md["interactions"] == SMALL_WORLD["num_interactions"]
    assert (graph_md["window_start"], graph_md["window_end"], graph_md["window_days"]) == (
        WEEK[0].isoformat(), DAY, 7)
    assert graph_md["num_nodes/user"] == SMALL_WORLD["num_users"]
    assert graph_md["num_nodes/ad"] + graph_md["num_nodes/non_ad"] == SMALL_WORLD["num_items"]
    assert metadata(instance, "link_split")["test/positive_share"] == 0.5
    trained = metadata(instance, "trained_gat")
    assert 0 <= trained["best_epoch"] <= trained["epochs_run"] <= 12
    aucs = metadata(instance, "test_auc")
    for key in ("test_auc", "val_auc", "train_auc", "oracle_auc", "auc_to_oracle"):
        assert isinstance(aucs[key], float), key
    assert 0.6 < aucs["test_auc"] <= aucs["oracle_auc"] + 0.03
    assert aucs["oracle_auc"] == metadata(instance, "oracle_metrics")["auc"]


@pytest.mark.slow
def test_the_synthetic_world_has_every_oracle_metric_and_the_oracle_leak_check(instance, tracking_uri):
    from mlflow import MlflowClient

    assert metadata(instance, "oracle_metrics")["oracle_available"] is True
    aucs = metadata(instance, "test_auc")
    oracle_keys = {"oracle_auc", "auc_to_oracle", "test_auc_minus_oracle_se",
                   *(f"oracle_{k}{se}" for k in ("mrr", "hits_at_10", "hits_at_100") for se in ("", "_se"))}
    assert aucs["oracle_available"] == 1
    assert oracle_keys <= set(aucs), oracle_keys - set(aucs)
    # The baselines' reference is there too, with or without the oracle.
    assert {"test_auc_minus_best_baseline", "test_auc_minus_best_baseline_se"} <= set(aucs)
    logged = MlflowClient(tracking_uri).get_run(aucs["mlflow_run_id"]).data.metrics
    assert oracle_keys | {"oracle_available"} <= set(logged)
    key = dg.AssetCheckKey(dg.AssetKey("test_auc"), "test_auc_within_oracle_ceiling")
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
    assert "oracle_auc" in record.event.dagster_event.event_specific_data.metadata
    assert "no oracle" not in record.event.dagster_event.event_specific_data.description


@pytest.mark.slow
def test_outputs_are_parquet_and_weights_only_torch(instance):
    storage = Path(instance.storage_directory())
    for key in ("users", "items"):
        assert (storage / f"{key}.parquet").exists()
    assert sorted(p.name for p in (storage / "interaction_edges").iterdir()) == [f"{d}.parquet" for d in WEEK]
    for key in ("hetero_graph", "link_split", "trained_gat", "test_auc"):
        torch.load(storage / key / f"{DAY}.pt", weights_only=True)
    assert not list(storage.rglob(".*.tmp")), "temporary files left behind"


@pytest.mark.slow
def test_every_check_ran_and_every_blocking_check_passed(instance):
    graph = defs.resolve_asset_graph()
    # The relevance pipeline's checks (the audience group's run in defs/test_audience.py).
    checks = [k for k in graph.asset_check_keys if k.asset_key.to_user_string() in RELEVANCE]
    assert len(checks) >= 12
    for key in checks:
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
        assert record is not None and record.status.value in ("SUCCEEDED", "FAILED"), key
        if graph.get_check_spec(key).blocking:
            assert record.status.value == "SUCCEEDED", (key, record.event.dagster_event.event_specific_data)


@pytest.mark.slow
def test_rerun_is_deterministic(instance, tracking_uri):
    first = metadata(instance, "test_auc")
    with dg.instance_for_test() as other:
        assert all(r.success for r in materialize_week(other, tracking_uri))
        second = metadata(other, "test_auc")
    for key in ("test_auc", "val_auc", "train_auc", "oracle_auc", "test_mrr", "test_hits_at_100"):
        assert first[key] == second[key], key


def test_invalid_world_fails_before_anything_is_written(materialize):
    with dg.instance_for_test() as inst:
        result = materialize(inst, world={**SMALL_WORLD, "num_users": 0}, raise_on_error=False,
                             selection=["users", "items", "interaction_edges"], run_config={})
        assert not result.success
        assert "num_users=0 is out of range: must be an integer >= 1" in str(result.all_events)
        assert not result.get_asset_materialization_events()
        assert not list(Path(inst.storage_directory()).glob("*"))


@pytest.mark.slow
def test_invalid_training_config_fails_without_retry_and_keeps_previous_model(instance, materialize):
    storage = Path(instance.storage_directory())
    before = (storage / "trained_gat" / f"{DAY}.pt").read_bytes()
    n_events = len(instance.fetch_materializations(dg.AssetKey("trained_gat"), limit=100).records)
    bad = {"ops": {"trained_gat": {"config": {"lr": 0.0}}}}
    result = materialize(instance, run_config=bad, selection=["trained_gat"], raise_on_error=False)
    assert not result.success
    assert "lr=0.0 is out of range: must be a number in (0, 1]" in str(result.all_events)
    assert (storage / "trained_gat" / f"{DAY}.pt").read_bytes() == before
    # A config error is not worth retrying: the step failed once, without a retry.
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(instance.fetch_materializations(dg.AssetKey("trained_gat"), limit=100).records) == n_events


@pytest.mark.slow
def test_training_that_fails_after_some_epochs_keeps_previous_model(instance, materialize, tracking_uri,
                                                                      monkeypatch):
    """A training that really trains, then dies (on every attempt, retries included), leaves the stored
    model, its materializations and the registry's champion as they were; its MLflow runs end FAILED."""
    from mlflow import MlflowClient

    from adrel_pipeline.mlops.registry import CHAMPION, DEFAULT_MODEL_NAME
    from adrel_pipeline.mlops.store import DEFAULT_EXPERIMENT
    from adrel_pipeline.relevance import training

    die_at, real_train_gat, epochs = 3, training.train_gat, []

    def train_then_die(split, spec, on_epoch=None):
        def on_epoch_then_die(row):
            on_epoch(row)  # the asset's own callback: per-epoch MLflow metrics and log lines
            epochs.append(row["epoch"])
            if row["epoch"] == die_at:
                raise RuntimeError(f"injected failure after epoch {die_at}")
        return real_train_gat(split, spec, on_epoch=on_epoch_then_die)

    monkeypatch.setattr(training, "train_gat", train_then_die)
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    path = Path(instance.storage_directory()) / "trained_gat" / f"{DAY}.pt"
    before = path.read_bytes()

    def materializations(key):
        return len(instance.fetch_materializations(dg.AssetKey(key), limit=1000).records)

    counts = {key: materializations(key) for key in ("trained_gat", "test_auc")}
    champion = client.get_model_version_by_alias(DEFAULT_MODEL_NAME, CHAMPION).version
    versions = {v.version for v in client.search_model_versions(f"name='{DEFAULT_MODEL_NAME}'")}

    # test_auc is selected too: had a model come out of the failed training, it would be registered.
    result = materialize(instance, selection=["trained_gat", "test_auc"], raise_on_error=False)

    assert not result.success
    # Three attempts (the retry policy's two retries), each trained die_at epochs before it died.
    assert epochs == list(range(die_at + 1)) * 3  # epoch 0: the wide part, fitted first
    assert len([e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]) == 2
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failures] == ["trained_gat"]
    assert f"injected failure after epoch {die_at}" in str(failures[0].event_specific_data.error)
    experiment = client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id
    runs = client.search_runs([experiment], filter_string=f"tags.`dagster.run_id` = '{result.run_id}'")
    assert len(runs) == 3
    for run in runs:
        assert run.info.status == "FAILED"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_auc")] == list(range(die_at + 1))

    assert path.read_bytes() == before
    assert {key: materializations(key) for key in counts} == counts
    assert client.get_model_version_by_alias(DEFAULT_MODEL_NAME, CHAMPION).version == champion
    assert {v.version for v in client.search_model_versions(f"name='{DEFAULT_MODEL_NAME}'")} == versions
