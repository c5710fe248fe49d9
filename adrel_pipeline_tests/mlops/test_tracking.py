"""MLflow: every training's run, its registered version, the promotion gate, serving by alias."""

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from adrel_pipeline.defs.relevance.assets import TrainGATConfig
from adrel_pipeline.evaluation.metrics import auc
from adrel_pipeline.graph.build import AD, USER, USER_AD
from adrel_pipeline.graph.spec import SplitSpec
from adrel_pipeline.mlops import registry, serialization
from adrel_pipeline.serving import load_champion, rank_ads
from adrel_pipeline.world import WorldSpec
from adrel_pipeline_tests.conftest import SMALL_WORLD, WEEK, materialize, materialize_week, metadata, sqlite_uri

MODEL = registry.DEFAULT_MODEL_NAME
MODEL_ASSETS = ["trained_gat", "test_auc"]
DAY = WEEK[-1].isoformat()


def week(instance, uri) -> bool:
    return all(r is not None and r.success for r in materialize_week(instance, uri))


def epochs(n):
    return {"ops": {"trained_gat": {"config": {"epochs": n}}}}


def client(uri):
    return MlflowClient(uri, registry_uri=uri)


def alias_version(uri, alias):
    return str(client(uri).get_model_version_by_alias(MODEL, alias).version)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One full materialization tracked in a fresh sqlite store: (uri, instance)."""
    uri = sqlite_uri(tmp_path_factory.mktemp("mlflow"))
    with dg.instance_for_test() as instance:
        assert week(instance, uri)
        yield uri, instance


@pytest.mark.slow
def test_run_records_params_curves_metrics_and_artifacts(store):
    uri, instance = store
    trained, evaluated = metadata(instance, "trained_gat"), metadata(instance, "test_auc")
    run_id = trained["mlflow_run_id"]
    assert evaluated["mlflow_run_id"] == run_id
    assert run_id in trained["mlflow_run_url"] and run_id in evaluated["mlflow_run_url"]
    run = client(uri).get_run(run_id)
    assert run.info.status == "FINISHED"

    # Every world, split and training parameter.
    expected = {**{f"world.{k}": v for k, v in WorldSpec(**SMALL_WORLD).as_dict().items()},
                **{f"split.{k}": v for k, v in SplitSpec(seed=SMALL_WORLD["seed"]).as_dict().items()},
                **{f"train.{k}": v for k, v in TrainGATConfig(epochs=12).spec(seed=SMALL_WORLD["seed"]).as_dict().items()}}
    assert run.data.params == {k: str(v) for k, v in expected.items()}

    # Per-epoch curves, one point per epoch run (epoch 0: the wide part alone); the kept model's evaluation
    # one step after.
    epochs_run = trained["epochs_run"]
    for key, extra in (("train_loss", []), ("train_auc", [epochs_run + 1]), ("val_auc", [epochs_run + 1])):
        history = client(uri).get_metric_history(run_id, key)
        assert sorted(m.step for m in history) == list(range(epochs_run + 1)) + extra, key  # 0: the wide fit
    val_curve = {m.step: m.value for m in client(uri).get_metric_history(run_id, "val_auc")}
    assert val_curve[trained["best_epoch"]] == pytest.approx(evaluated["val_auc"], abs=1e-12)

    # Final metrics are the Dagster materialization's numbers.
    for key in ("test_auc", "val_auc", "train_auc", "oracle_auc", "auc_to_oracle", "test_mrr", "test_hits_at_10",
                "test_hits_at_100", "oracle_mrr", "oracle_hits_at_100"):
        assert run.data.metrics[key] == pytest.approx(evaluated[key], abs=1e-12), key
    assert 0 < evaluated["test_mrr"] <= 1 and evaluated["test_hits_at_10"] <= evaluated["test_hits_at_100"]

    tags = run.data.tags
    assert tags["dagster.run_id"] == instance.get_latest_materialization_event(
        dg.AssetKey("trained_gat")).run_id
    assert tags["dagster.asset_key"] == "trained_gat"
    assert tags["dagster.code_version"] and tags["dagster.code_version"] in json.dumps(
        mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/config.json"))
    assert tags["adrel.model_version"] == str(evaluated["mlflow_model_version"])

    artifacts = client(uri).list_artifacts(run_id, "plots")
    assert {Path(a.path).name for a in artifacts} == {"learning_curves.png", "roc_test.png"}
    png = Path(mlflow.artifacts.download_artifacts(f"{run.info.artifact_uri}/plots/roc_test.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/config.json")
    assert config["train"]["epochs"] == 12 and config["model"]["heads"] == 2
    stats = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/split_stats.json")
    assert stats["test/supervision_positives"] == stats["test/supervision_negatives"] > 0

    # The plots are in the Dagster UI too, as inline images.
    for md in (trained["learning_curves"], evaluated["roc_curve"]):
        assert md.startswith("![") and "(data:image/png;base64,iVBORw0KGgo" in md


@pytest.mark.slow
def test_registered_champion_reproduces_the_pipelines_test_auc(store):
    uri, instance = store
    evaluated = metadata(instance, "test_auc")
    assert alias_version(uri, registry.CHAMPION) == str(evaluated["mlflow_model_version"])

    champion = load_champion(uri)
    split = serialization.load(Path(instance.storage_directory()) / "link_split" / f"{DAY}.pt")
    test = split["test"]
    pairs = test[USER_AD]["edge_label_index"]
    user_ids = test[USER]["node_id"][pairs[0]].tolist()
    ad_ids = test[AD]["node_id"][pairs[1]].tolist()
    # Through the pyfunc interface, by ids, in a process that never saw the training.
    probs = champion.score(user_ids, ad_ids)
    assert auc(test[USER_AD]["edge_label"], torch.as_tensor(probs)) == pytest.approx(evaluated["test_auc"], abs=1e-12)

    ranked = rank_ads(user_ids[0], ad_ids[:20], tracking_uri=uri)
    assert sorted(a for a, _ in ranked) == sorted(ad_ids[:20])
    assert [p for _, p in ranked] == sorted((p for _, p in ranked), reverse=True)
    by_ad = dict(zip(ad_ids[:20], champion.score([user_ids[0]] * 20, ad_ids[:20]).tolist()))
    assert all(p == pytest.approx(by_ad[a]) for a, p in ranked)
    with pytest.raises(Exception, match="not in the trained graph"):
        champion.score([user_ids[0]], [10**9])

    # The vectorised ranking of every ad: the same probabilities as the pyfunc's, best first.
    top, top_probs = champion.top_ads(user_ids[:2], k=5)
    assert top.shape == top_probs.shape == (2, 5)
    for row, user in enumerate(user_ids[:2]):
        pyfunc = champion.score([user] * 5, top[row].tolist())
        np.testing.assert_allclose(top_probs[row].numpy(), pyfunc, rtol=1e-5)
        assert (top_probs[row][:-1] >= top_probs[row][1:]).all()


@pytest.mark.slow
def test_registered_model_loads_in_a_fresh_process(store):
    uri, instance = store
    code = ("import sys, mlflow.pyfunc, pandas as pd\n"
            f"mlflow.set_registry_uri({uri!r})\n"
            f"m = mlflow.pyfunc.load_model('models:/{MODEL}@champion')\n"
            "print(m.predict(pd.DataFrame({'user_id': [0, 1], 'ad_id': [int(sys.argv[1])] * 2})).tolist())")
    graph = serialization.load(Path(instance.storage_directory()) / "hetero_graph" / f"{DAY}.pt")
    ad = int(graph[AD].node_id[0])
    out = subprocess.run([sys.executable, "-c", code, str(ad)], capture_output=True, text=True, check=True)
    expected = load_champion(uri).score([0, 1], [ad, ad]).tolist()
    assert json.loads(out.stdout.strip().splitlines()[-1]) == pytest.approx(expected)


@pytest.mark.slow
def test_failed_registration_leaves_registry_and_outputs_as_they_were(store, monkeypatch):
    uri, instance = store
    versions_before = {str(v.version) for v in client(uri).search_model_versions(f"name='{MODEL}'")}
    champion_before = alias_version(uri, registry.CHAMPION)
    storage = Path(instance.storage_directory())
    test_auc_before = (storage / "test_auc" / f"{DAY}.pt").read_bytes()

    def broken(self, name, alias, version):
        raise ConnectionError("registry went away")

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", broken)
    result = materialize(instance, uri, selection=MODEL_ASSETS, raise_on_error=False)
    monkeypatch.undo()
    assert not result.success and "registry went away" in str(result.all_events)
    # The version created before the failure was deleted again: no version without its decision.
    assert {str(v.version) for v in client(uri).search_model_versions(f"name='{MODEL}'")} == versions_before
    assert alias_version(uri, registry.CHAMPION) == champion_before
    assert (storage / "test_auc" / f"{DAY}.pt").read_bytes() == test_auc_before
    failed = client(uri).search_runs([client(uri).get_experiment_by_name("adrel").experiment_id],
                                     order_by=["attributes.start_time DESC"], max_results=1)[0]
    assert failed.info.status == "FAILED"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("uri", [f"http://127.0.0.1:{_free_port()}", "nosuchscheme://tracking"])
def test_unusable_tracking_store_fails_fast_naming_the_uri(uri):
    with dg.instance_for_test() as instance:
        start = time.perf_counter()
        result = materialize(instance, uri, raise_on_error=False)
        elapsed = time.perf_counter() - start
        assert not result.success
        assert "MLflow tracking s" in str(result.all_events) and uri in str(result.all_events)
        assert elapsed < 30, f"took {elapsed:.0f}s to give up"
        # The resource fails at run start: nothing was written.
        assert not result.get_asset_materialization_events()
        assert not list(Path(instance.storage_directory()).glob("*"))


CONCURRENT = """
import sys, dagster as dg
from adrel_pipeline_tests.conftest import materialize_week
with dg.instance_for_test() as instance:
    results = materialize_week(instance, sys.argv[1], run_config={"ops": {"trained_gat": {"config": {"epochs": int(sys.argv[2])}}}})
    ok = all(r is not None and r.success for r in results)
sys.exit(0 if ok else 1)
"""


@pytest.mark.slow
def test_concurrent_trainings_share_a_fresh_sqlite_store(tmp_path):
    uri = sqlite_uri(tmp_path)
    # Both start on a store that does not exist yet: schema creation, experiment and gate all race.
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, uri, str(n)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for n in (12, 2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    mlflow_client = client(uri)
    runs = mlflow_client.search_runs([mlflow_client.get_experiment_by_name("adrel").experiment_id])
    assert len(runs) == 2 and all(r.info.status == "FINISHED" and "test_auc" in r.data.metrics for r in runs)
    versions = mlflow_client.search_model_versions(f"name='{MODEL}'")
    assert sorted(str(v.version) for v in versions) == ["1", "2"]
    assert {v.run_id for v in versions} == {r.info.run_id for r in runs}
    # Whichever registered first, the gate ran serialised: the second saw the first as champion,
    # compared with it, and the alias follows that decision.
    first, second = (mlflow_client.get_model_version(MODEL, v) for v in ("1", "2"))
    assert first.tags["promotion"] == registry.CHAMPION and first.tags["previous_champion"] == ""
    assert second.tags["previous_champion"] == "1" and "champion_test_auc" in second.tags
    expected = "2" if second.tags["promotion"] == registry.CHAMPION else "1"
    assert str(mlflow_client.get_model_version_by_alias(MODEL, registry.CHAMPION).version) == expected
