"""A team's own data ($ADREL_SOURCE): the synthetic world exported to the file contract, then run
through the real CLI from those files, gives the synthetic path's graph and test AUC."""

import math
import os
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from adrel_pipeline_tests.conftest import (
    DG_CLI,
    RUN_CONFIG,
    WEEK,
    dagster_home,
    materialize,
    metadata,
    range_tags,
    sqlite_uri,
    week_in_a_fresh_store,
)
from adrel_pipeline_tests.defs.test_audience import AUDIENCE_WORLD
from adrel_pipeline_tests.sources.test_sources import PG_URL, _pg_unreachable

REPO = Path(__file__).resolve().parents[2]
FIRST, LAST = WEEK[0].isoformat(), WEEK[-1].isoformat()
# Per node and edge type: what the graph is made of.
GRAPH_KEYS = ("num_nodes/user", "num_nodes/ad", "num_nodes/non_ad", "feature_dim/user", "feature_dim/ad")


def run(args: list[str], env: dict, what: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    assert proc.returncode == 0, f"{what} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def pipeline_env(source: str, tmp: Path) -> dict[str, str]:
    """The CLI's environment for ``ADREL_SOURCE=source`` with its DAGSTER_HOME and MLflow store under
    ``tmp``; no ADREL_WORLD, so nothing can fall back to the generator."""
    return {k: v for k, v in os.environ.items() if k not in ("ADREL_WORLD", "ADREL_EMBEDDING_DAY")} | {
        "VIRTUAL_ENV": sys.prefix, "ADREL_SOURCE": source, "DAGSTER_HOME": str(tmp / "home"),
        "ADREL_STATE_DIR": str(tmp), "MLFLOW_TRACKING_URI": sqlite_uri(tmp)}


def run_pipeline(source: str, tmp: Path) -> Path:
    """`make run`'s relevance commands with ``ADREL_SOURCE=source``, in a fresh DAGSTER_HOME and MLflow
    store under ``tmp``. Returns the home."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "run.yaml").write_text(yaml.safe_dump(RUN_CONFIG))
    home = dagster_home(tmp / "home")
    env = pipeline_env(source, tmp)
    run([DG_CLI, "launch", "--assets", "users,items,interaction_edges", "--partition-range", f"{FIRST}...{LAST}"],
        env, f"the week from {source}")
    run([DG_CLI, "launch", "--assets", "hetero_graph*", "--partition", LAST, "-c", str(tmp / "run.yaml")],
        env, f"the model from {source}")
    return home


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """The small world in the file contract (``python -m adrel_pipeline.export``)."""
    tmp = tmp_path_factory.mktemp("export")
    (tmp / "world.yaml").write_text(yaml.safe_dump(AUDIENCE_WORLD))
    run([sys.executable, "-m", "adrel_pipeline.export", "--to", str(tmp / "data"), "--first-day", FIRST,
         "--last-day", LAST], {**os.environ, "ADREL_WORLD": str(tmp / "world.yaml")}, "export")
    return tmp / "data"


@pytest.fixture(scope="module")
def from_files(exported, tmp_path_factory):
    """The pipeline run from the export's files: (DAGSTER_HOME, the export's directory)."""
    tmp = tmp_path_factory.mktemp("from_files")
    return run_pipeline(str(exported), tmp), exported


def advertiser_range(data: Path) -> str:
    keys = sorted(pl.read_parquet(data / "seed_lists.parquet")["advertiser_id"].unique())
    return f"{keys[0]}...{keys[-1]}"


def stored_metadata(home: Path, monkeypatch, *keys: str) -> list[dict]:
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # the project's dagster.yaml places storage by it
    with dg.DagsterInstance.from_config(str(home)) as instance:
        out = [metadata(instance, key) for key in keys]
    monkeypatch.undo()
    return out


@pytest.mark.slow
def test_the_exported_world_run_from_files_gives_the_synthetic_graph_and_test_auc(from_files, tmp_path,
                                                                                 monkeypatch):
    home, data = from_files
    graph, evaluation, users = stored_metadata(home, monkeypatch, "hetero_graph", "test_auc", "users")
    with week_in_a_fresh_store(tmp_path) as (instance, _):
        synthetic_graph, synthetic = metadata(instance, "hetero_graph"), metadata(instance, "test_auc")
    assert {k: graph[k] for k in GRAPH_KEYS} == {k: synthetic_graph[k] for k in GRAPH_KEYS}
    for key in ("test_auc", "val_auc", "train_auc", "baseline_logreg_auc", "baseline_popularity_auc"):
        assert evaluation[key] == pytest.approx(synthetic[key], abs=1e-9), key
    # The files carry no generator truth: the oracle is reported unavailable, never made up.
    assert "oracle_auc" in synthetic and "oracle_auc" not in evaluation
    assert not evaluation["oracle_available"] and synthetic["oracle_available"]
    assert str(data) in users["source"]


@pytest.mark.deployment
@pytest.mark.slow
def test_the_export_loaded_into_postgresql_gives_the_same_result_as_the_files(from_files, tmp_path, monkeypatch):
    reason = _pg_unreachable()
    if reason:
        pytest.skip(reason)
    import sqlalchemy as sa

    from adrel_pipeline.sources import load_directory

    files_home, data = from_files
    schema = f"adrel_e2e_{uuid.uuid4().hex[:10]}"
    tables = {name: f"{schema}.{name}" for name in ("users", "items", "interactions")}
    engine = sa.create_engine(PG_URL)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        load_directory(data, PG_URL, tables)
        # The database's config: its URL and tables, and the export's feature declaration.
        config = {"url": PG_URL, "tables": tables, **yaml.safe_load((data / "adrel.yaml").read_text())}
        (tmp_path / "db.yaml").write_text(yaml.safe_dump(config))
        db_home = run_pipeline(str(tmp_path / "db.yaml"), tmp_path / "from_db")
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        engine.dispose()
    db_graph, db_eval, db_users = stored_metadata(db_home, monkeypatch, "hetero_graph", "test_auc", "users")
    file_graph, file_eval = stored_metadata(files_home, monkeypatch, "hetero_graph", "test_auc")
    assert {k: db_graph[k] for k in GRAPH_KEYS} == {k: file_graph[k] for k in GRAPH_KEYS}
    for key in ("test_auc", "val_auc", "train_auc", "baseline_logreg_auc"):
        assert db_eval[key] == pytest.approx(file_eval[key], abs=1e-9), key
    assert schema in db_users["source"]


@pytest.mark.slow
def test_the_exported_seed_lists_and_labels_run_from_files(exported, tmp_path, monkeypatch):
    """Audience: the synthetic path's figures, the oracle aside. Contextual: a registered, calibrated
    relevance model of the labels up to the day, with nothing of the truth reported."""
    from adrel_pipeline_tests.defs.test_audience import GROUP, SETUP

    data, tmp = exported, tmp_path / "own"
    tmp.mkdir()
    home, env = dagster_home(tmp / "home"), pipeline_env(str(exported), tmp)
    run([DG_CLI, "launch", "--assets", "users,items,advertisers,interaction_edges", "--partition-range",
         f"{FIRST}...{LAST}"], env, "the week and the advertisers from files")
    run([DG_CLI, "launch", "--assets", "user_embeddings,seed_lists*", "--partition-range", advertiser_range(data)],
        env, "the audience group from files")
    run([DG_CLI, "launch", "--assets", "relevance_labels*", "--partition", LAST], env, "the labels' model from files")
    own, advertisers, labels, model = stored_metadata(home, monkeypatch, "audience_eval", "advertisers",
                                                      "relevance_labels", "relevance_model")

    uri = sqlite_uri(tmp_path)
    with dg.instance_for_test() as instance:
        assert materialize(instance, uri, world=AUDIENCE_WORLD, selection=SETUP, run_config={},
                           tags=range_tags(FIRST, LAST)).success
        keys = instance.get_dynamic_partitions("advertisers")
        assert materialize(instance, uri, world=AUDIENCE_WORLD, selection=GROUP, run_config={},
                           tags=range_tags(keys[0], keys[-1])).success
        synthetic = metadata(instance, "audience_eval")
    assert own["advertisers"] == synthetic["advertisers"] == AUDIENCE_WORLD["num_advertisers"]
    # The same seed lists, embeddings, features and draws: every method's figures, to the last digit.
    for method in ("lr", "lsh", "nn", "nn_unweighted"):
        for metric in ("recall_at_k", "precision_at_k"):
            assert own[f"{metric}/{method}"] == pytest.approx(synthetic[f"{metric}/{method}"], abs=1e-9)
    # No generator truth in the files: no oracle and no ground-truth precision, never made up.
    assert "recall_at_k/oracle" in synthetic and "recall_at_k/oracle" not in own
    assert math.isnan(own["gt_precision_at_k/nn"]) and not math.isnan(synthetic["gt_precision_at_k/nn"])
    assert advertisers["dagster/row_count"] == AUDIENCE_WORLD["num_advertisers"]

    ratings = pl.read_parquet(data / "labels.parquet")
    assert ratings["day"].max().isoformat() == LAST and ratings["day"].n_unique() == len(WEEK)
    assert labels["ratings"] == ratings.height
    assert labels["dagster/row_count"] == ratings.select("context_id", "item_id").n_unique()
    assert model["auc"] > 0.8 and model["ece"] < 0.05  # the labels carry the signal; calibrated on held-out contexts
    assert not model["oracle_available"] and math.isnan(model["true_ece"])
    assert model["promotion"] == "champion" and model["mlflow_model_version"] == 1


def load_code_location(source: str, code: str) -> subprocess.CompletedProcess:
    """``code`` run in a fresh process whose ``ADREL_SOURCE`` is ``source`` (it is read at load)."""
    env = {k: v for k, v in os.environ.items() if k != "ADREL_WORLD"} | {"ADREL_SOURCE": source}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO,
                          check=False)


@pytest.mark.slow
def test_the_daily_partitions_start_on_the_datas_first_day_and_the_groups_follow_its_tables(tmp_path):
    (tmp_path / "interactions").mkdir()
    (tmp_path / "users.csv").write_text("user_id,country\n1,FR\n2,DE\n")
    (tmp_path / "items.csv").write_text("item_id,is_ad,topic\n10,true,a\n11,false,b\n")
    for day in ("2025-03-10", "2025-03-11"):
        (tmp_path / "interactions" / f"{day}.csv").write_text("user_id,item_id\n1,10\n2,11\n")
    code = ("from adrel_pipeline.definitions import defs\n"
            "from adrel_pipeline.defs.shared.partitions import daily\n"
            "graph = defs.resolve_asset_graph()\n"
            "groups = {graph.get(key).group_name for key in graph.get_all_asset_keys()}\n"
            "keys = sorted(k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).group_name == "
            "'contextual')\n"
            "print(daily.get_first_partition_key(), sorted(groups), keys, sep='|')")
    proc = load_code_location(str(tmp_path), code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, groups, _ = proc.stdout.strip().split("|")
    assert first == "2025-03-10"
    assert groups == str(["graph", "model", "world"])  # no seed lists, no labels: no audience or contextual group

    # With seed lists and labels: the audience group and the labels' relevance model, never the funnel.
    (tmp_path / "seed_lists.csv").write_text("advertiser_id,user_id\nacme,1\n")
    (tmp_path / "labels.csv").write_text("context_id,item_id,rater_id,label,day,surface,content_type\n")
    proc = load_code_location(str(tmp_path), code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, groups, contextual = proc.stdout.strip().split("|")
    assert groups == str(["audience", "contextual", "graph", "model", "world"])
    assert contextual == str(["relevance_labels", "relevance_model"])


@pytest.mark.slow
def test_a_source_that_cannot_be_read_fails_the_code_location_naming_the_setting(tmp_path):
    proc = load_code_location(str(tmp_path / "nowhere"), "import adrel_pipeline.definitions")
    assert proc.returncode != 0
    assert "ADREL_SOURCE" in proc.stderr and str(tmp_path / "nowhere") in proc.stderr


@pytest.mark.slow
def test_bad_data_fails_the_step_naming_file_and_ids_and_writes_no_day(tmp_path):
    data = tmp_path / "data"
    (data / "interactions").mkdir(parents=True)
    (data / "users.csv").write_text("user_id,country\n1,FR\n2,DE\n")
    (data / "items.csv").write_text("item_id,is_ad,topic\n10,true,a\n11,false,b\n")
    (data / "interactions" / "2025-03-10.csv").write_text("user_id,item_id\n1,10\n2,11\n")
    (data / "interactions" / "2025-03-11.csv").write_text("user_id,item_id\n1,10\n99,11\n")  # user 99 unknown
    home = dagster_home(tmp_path / "home")
    env = {k: v for k, v in os.environ.items() if k != "ADREL_WORLD"} | {
        "VIRTUAL_ENV": sys.prefix, "ADREL_SOURCE": str(data), "DAGSTER_HOME": str(home),
        "ADREL_STATE_DIR": str(tmp_path), "MLFLOW_TRACKING_URI": sqlite_uri(tmp_path)}
    proc = subprocess.run([DG_CLI, "launch", "--assets", "users,items,interaction_edges",
                           "--partition-range", "2025-03-10...2025-03-11"],
                          capture_output=True, text=True, env=env, cwd=REPO, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "2025-03-11.csv" in output and "user_id" in output and "99" in output, output[-3000:]
    # The range is one run: its good first day is not written either.
    stored = home / "storage" / "interaction_edges"
    assert not stored.exists() or not any(stored.iterdir())
