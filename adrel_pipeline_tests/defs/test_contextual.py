"""The contextual and funnel groups in Dagster on a small world: two days of candidate logs, labels,
models and funnel measurements (metadata, MLflow, the registry and its gate, drift against the
previous day, the second day served by the first day's champion), a model that fails the
calibration check and a funnel day that fails a launch check (neither registered, the previous
value kept), a bad labelling config, and the GAT serving home's pCTR once the relevance pipeline ran."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from adrel_pipeline_tests.conftest import SMALL_WORLD, failure_messages, materialize, metadata, sqlite_uri

pytestmark = pytest.mark.slow  # each test materializes the group (seconds)

CONTEXT_WORLD = {**SMALL_WORLD, "contexts_per_day": 3000, "candidates_per_context": 40}
ASSETS = ["users", "items", "ad_inventory", "candidate_log", "relevance_labels", "relevance_model", "funnel_metrics",
          "relevance_trend", "relevance_experiments"]
DAY_ASSETS = ASSETS[3:]
DAYS = ("2026-01-07", "2026-01-08")
# Small jobs: the wiring is under test, not the model's quality. With ~450 test rows of the rarest
# content type, a calibrated model's ECE on labels is ~0.05-0.08 from label noise alone: the limit
# is loosened to match (the tests of a too-high ECE set it far below instead).
RUN_CONFIG = {"ops": {
    "candidate_log": {"config": {"log_rate": 0.2, "full_list_contexts": 100}},
    "relevance_labels": {"config": {"labelling_budget": 3000, "test_rows": 3000}},
    "relevance_model": {"config": {"max_iter": 50, "max_ece": 0.2}},
    "funnel_metrics": {"config": {"sweep_contexts": 500}},
    "relevance_trend": {"config": {"trend_contexts": 300}},
    "relevance_experiments": {"config": {"experiment_pool": 2000, "experiment_contexts": 300, "aa_repeats": 20}},
}}


def _run(instance, uri, day, run_config=RUN_CONFIG, selection=ASSETS, **kwargs):
    # Only the selected assets' config: Dagster refuses config for ops outside the run.
    run_config = {"ops": {op: c for op, c in run_config["ops"].items() if op in selection}}
    return materialize(instance, uri, world=CONTEXT_WORLD, run_config=run_config, selection=selection,
                       partition_key=day, **kwargs)


def _check_results(result) -> dict:
    return {e.event_specific_data.check_name: e.event_specific_data
            for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}


def _with(config: dict, op: str, **values) -> dict:
    ops = {k: {"config": dict(v["config"])} for k, v in config["ops"].items()}
    ops.setdefault(op, {"config": {}})["config"].update(values)
    return {"ops": ops}


@pytest.fixture(scope="module")
def two_days(tmp_path_factory):
    """A fresh instance and store with both days of the group materialized: (instance, uri, results)."""
    import dagster as dg

    folder = tmp_path_factory.mktemp("contextual")
    uri = sqlite_uri(folder)
    with dg.instance_for_test() as instance:
        first = _run(instance, uri, DAYS[0])
        after_first = {k: metadata(instance, k) for k in DAY_ASSETS}
        second = _run(instance, uri, DAYS[1], selection=DAY_ASSETS)
        yield instance, uri, first, second, after_first


def test_the_group_records_label_quality_calibration_and_the_ablation(two_days):
    from adrel_pipeline.world.contexts import CONTENT_TYPES, SIGNALS, SURFACES

    _, _, first, _, md = two_days
    assert first.success
    labels, model, log = md["relevance_labels"], md["relevance_model"], md["candidate_log"]
    assert 0 <= labels["disagreement_rate"] <= 1 and -1 <= labels["krippendorff_alpha"] <= 1
    assert labels["rows/candidates"] == labels["rows/heuristic"] == 3000 and labels["rows/test"] == 3000
    assert "label_distribution" in labels
    for key in ("ece", "true_ece", "brier", "auc", "ndcg_at_10", *(f"ece/{c}" for c in CONTENT_TYPES),
                *(f"ece/{s}" for s in SURFACES), "no_category_match/ece/shopping", "heuristic/ece",
                "ablation/shopping_relevant_share_gain", "ablation/shopping_ctr_gain", "oracle/brier"):
        assert isinstance(model[key], float) and model[key] == model[key], key  # present and not NaN
    assert all(0 <= model[f"ece/{c}"] <= 1 for c in CONTENT_TYPES)
    # The oracle is the ceiling: no model ranks whole lists better or scores the labels better.
    assert model["ndcg_at_10"] <= model["oracle/ndcg_at_10"] == 1.0
    assert model["brier"] > model["oracle/brier"]
    for signal in SIGNALS:
        assert 0 <= log[f"coverage/{signal}"] <= 1
    assert log["coverage/category_match"] == 1.0 and log["coverage/text_match"] < 1.0  # home has no text
    for key in ("reliability_by_content_type", "reliability_by_surface"):
        assert "data:image/png;base64," in model[key]
    assert {"hist/score/full/home/regular"} <= set(model["monitoring_profile"])


def test_the_funnel_day_registers_the_model_with_its_run_and_plots_and_the_gate_decides_the_second_day(two_days):
    import mlflow

    from adrel_pipeline.mlops import registry, store

    _, uri, _, second, first_md = two_days
    assert second.success
    store.use_store(uri)
    client = mlflow.MlflowClient()
    versions = sorted(client.search_model_versions(f"name='{registry.RELEVANCE_MODEL_NAME}'"),
                      key=lambda v: int(v.version))
    assert [v.tags["partition"] for v in versions] == list(DAYS)
    assert versions[0].tags["promotion"] == "champion"
    assert versions[1].tags["promotion"] in ("champion", "challenger")
    assert "1 - Brier score" in versions[1].tags["promotion_reason"]
    # relevance_model logs the run and the model; funnel_metrics registers it into the same run.
    run_id = first_md["relevance_model"]["mlflow_run_id"]
    assert first_md["funnel_metrics"]["mlflow_run_id"] == run_id == versions[0].run_id
    assert first_md["funnel_metrics"]["mlflow_model_version"] == 1
    run = client.get_run(run_id)
    assert run.data.metrics["ece"] == pytest.approx(first_md["relevance_model"]["ece"])
    assert run.data.metrics["funnel/fraction_relevant/auction_winners"] == pytest.approx(
        first_md["funnel_metrics"]["fraction_relevant/auction_winners"])
    assert "model.max_iter" in run.data.params and "funnel.relevance_exponent" in run.data.params
    assert run.data.tags["adrel.promotion"] == "champion"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/reliability_by_content_type.png", "plots/reliability_by_surface.png", "plots/funnel.png",
            "plots/revenue_vs_relevance.png", "plots/trend.png", "plots/aa_test.png"} <= artifacts


def test_the_second_day_measures_drift_against_the_first(two_days):
    instance, _, _, second, first_md = two_days
    log, model = metadata(instance, "candidate_log"), metadata(instance, "relevance_model")
    assert log["monitoring_profile"] != first_md["candidate_log"]["monitoring_profile"]  # another day's traffic
    assert 0 <= log["max_feature_psi"] < float("inf")
    assert 0 <= model["max_score_psi"] < float("inf")
    results = _check_results(second)
    assert "compared" in results["feature_drift"].metadata and results["feature_drift"].metadata["compared"].value > 0
    assert results["score_drift"].metadata["compared"].value > 0


def test_drift_beyond_the_threshold_warns_without_blocking(two_days, tmp_path):
    instance, uri, *_ = two_days
    strict = _with(_with(RUN_CONFIG, "candidate_log", max_psi=0.0, max_coverage_drop=0.0), "relevance_model",
                   max_psi=0.0)
    # Day 2 again, against day 1's stored profile: any drift at all is over a zero threshold.
    result = _run(instance, uri, DAYS[1], run_config=strict, selection=["candidate_log", "relevance_labels",
                                                                      "relevance_model"])
    assert result.success
    checks = _check_results(result)
    assert checks["feature_drift"].passed is False and checks["score_drift"].passed is False
    assert "against the previous day" in checks["feature_drift"].description


def test_a_model_over_the_ece_limit_is_not_registered_and_the_previous_value_stays(two_days):
    import mlflow

    from adrel_pipeline.mlops import registry, store

    instance, uri, *_ = two_days
    stored_file = Path_of(metadata(instance, "relevance_model")["path"]) / f"{DAYS[1]}.pt"
    before = stored_file.read_bytes()
    store.use_store(uri)
    count = len(mlflow.MlflowClient().search_model_versions(f"name='{registry.RELEVANCE_MODEL_NAME}'"))
    result = _run(instance, uri, DAYS[1], run_config=_with(RUN_CONFIG, "relevance_model", max_ece=1e-6),
                  selection=["relevance_model"], raise_on_error=False)
    assert not result.success
    assert any("ece_within_limit" in m and "ECE above" in m for m in failure_messages(result))
    assert _check_results(result)["ece_within_limit"].passed is False
    assert len(mlflow.MlflowClient().search_model_versions(f"name='{registry.RELEVANCE_MODEL_NAME}'")) == count
    assert stored_file.read_bytes() == before


def test_a_labelling_budget_the_log_cannot_fill_fails_naming_the_field(two_days):
    instance, uri, *_ = two_days
    before = metadata(instance, "relevance_labels")
    result = _run(instance, uri, DAYS[1], run_config=_with(RUN_CONFIG, "relevance_labels", labelling_budget=10**6),
                  selection=["relevance_labels"], raise_on_error=False)
    assert not result.success
    assert any("labelling_budget=1000000 is out of range" in m for m in failure_messages(result))
    assert metadata(instance, "relevance_labels") == before  # no new materialization


def test_the_champion_scores_in_a_fresh_interpreter_without_dagster(two_days, tmp_path):
    """The registered model loads from MLflow alone and scores as the asset's stored model does."""
    import polars as pl

    from adrel_pipeline.contextual.model import RelevanceModel
    from adrel_pipeline.mlops import registry, serialization

    instance, uri, *_ = two_days
    stored = serialization.load(Path_of(metadata(instance, "relevance_labels")["path"]) / f"{DAYS[1]}.parquet")
    rows = stored.filter(pl.col("job") == "test").head(50)
    frame = tmp_path / "rows.parquet"
    rows.write_parquet(frame)
    code = (
        "import sys, json, mlflow, polars as pl\n"
        f"mlflow.set_tracking_uri({uri!r}); mlflow.set_registry_uri({uri!r})\n"
        f"model = mlflow.pyfunc.load_model('models:/{registry.RELEVANCE_MODEL_NAME}@champion')\n"
        f"rows = pl.read_parquet({str(frame)!r}).select('text_match', 'embedding_similarity', 'image_similarity',"
        " 'category_match', 'surface', 'content_type', 'query_intent').to_pandas()\n"
        "print(json.dumps({'scores': [float(s) for s in model.predict(rows)],"
        " 'dagster': any(m.startswith('dagster') for m in sys.modules)}))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["dagster"] is False
    import mlflow

    champion = mlflow.MlflowClient(uri, registry_uri=uri).get_model_version_by_alias(
        registry.RELEVANCE_MODEL_NAME, "champion")
    day = champion.tags["partition"]
    value = serialization.load(Path_of(metadata(instance, "relevance_model")["path"]) / f"{day}.pt")
    expected = RelevanceModel.from_payload(value["models"]["full"]).predict(rows)
    assert report["scores"] == pytest.approx(expected.tolist(), abs=1e-12)


def Path_of(value):
    from pathlib import Path

    return Path(getattr(value, "path", value))


def test_funnel_metrics_hold_every_stage_category_and_the_holdout(two_days):
    from adrel_pipeline.contextual.funnel import SURVIVOR_STAGES
    from adrel_pipeline.world import INTERESTS
    from adrel_pipeline.world.contexts import CONTENT_TYPES

    instance, *_ = two_days
    md = metadata(instance, "funnel_metrics")
    for stage in SURVIVOR_STAGES:
        assert 0 <= md[f"fraction_relevant/{stage}"] <= 1, stage
        assert 0 <= md[f"holdout/fraction_relevant/{stage}"] <= 1, stage
        for category in INTERESTS:
            assert 0 <= md[f"fraction_relevant/{stage}/{category}"] <= 1, (stage, category)
        for content_type in CONTENT_TYPES:
            assert 0 <= md[f"fraction_relevant_by_content_type/{stage}/{content_type}"] <= 1
    # The relevance model raises the served share above the holdout's, which does not trim.
    assert md["holdout_gap/fraction_relevant/auction_winners"] == pytest.approx(
        md["fraction_relevant/auction_winners"] / md["holdout/fraction_relevant/auction_winners"] - 1)
    assert md["holdout_gap/fraction_relevant/auction_winners"] > 0
    assert md["trim_rate"] > 0 == md["holdout/trim_rate"]
    for key in ("ndcg", "ctr", "revenue_per_context", "holdout_gap/revenue_per_context"):
        assert isinstance(md[key], float) and md[key] == md[key], key
    for key in ("funnel", "revenue_vs_relevance"):
        assert "data:image/png;base64," in md[key]
    assert "reseeded (equal calibration)" in md["sweep"] and "overconfident" in md["sweep"]
    assert md["pctr_home"].startswith("none: no adrel-gat version")  # no relevance pipeline in this store
    assert {"trim_rate/full/home/regular", "trim_rate/reseeded/search/video"} <= set(md["monitoring_profile"])


def test_the_second_day_is_served_by_the_first_days_champion(two_days):
    import polars as pl

    from adrel_pipeline.mlops import serialization

    instance, _, _, _, first_md = two_days
    assert first_md["candidate_log"]["serving/relevance_model"].startswith("none: no adrel-relevance version")
    log_md = metadata(instance, "candidate_log")
    assert log_md["serving/relevance_model"] == f"adrel-relevance v1 (trained for {DAYS[0]})"
    folder = Path_of(log_md["path"])
    first, later = (serialization.load(folder / f"{day}.parquet") for day in DAYS)
    # The first day had no relevance model: served as the holdout (no trim); the second trims.
    assert not (first["dropped_at"] == "trim").any() and (later["dropped_at"] == "trim").any()
    assert first.filter(pl.col("served"))["holdout_served"].all()
    assert log_md["truly_relevant/served"] > log_md["truly_relevant/holdout_served"]
    # The trend has both days; the experiments their intervals.
    trend = metadata(instance, "relevance_trend")
    assert trend["days"] == 2 and "data:image/png;base64," in trend["trend"]
    experiments = metadata(instance, "relevance_experiments")
    for design in ("controlled", "uncontrolled"):
        assert 0 <= experiments[f"aa/{design}/coverage"] <= 1 and experiments[f"aa/{design}/sd"] > 0
    launch = [experiments[f"ab/category_match_launch/fraction_relevant/{k}"] for k in ("low", "relative", "high")]
    assert launch == sorted(launch)
    assert "| production_vs_holdout | fraction_relevant |" in experiments["ab_tests"]


def test_a_funnel_day_that_fails_a_launch_check_is_not_registered(two_days):
    import mlflow

    from adrel_pipeline.mlops import registry, store

    instance, uri, *_ = two_days
    day = "2026-01-09"
    strict = _with(RUN_CONFIG, "funnel_metrics", max_revenue_cost=0.0)
    result = _run(instance, uri, day, run_config=strict, selection=DAY_ASSETS[:4], raise_on_error=False)
    assert not result.success
    assert any("revenue_cost_within_limit" in m and "relevance costs" in m for m in failure_messages(result))
    assert _check_results(result)["revenue_cost_within_limit"].passed is False
    store.use_store(uri)
    client = mlflow.MlflowClient()
    days = [v.tags["partition"] for v in client.search_model_versions(f"name='{registry.RELEVANCE_MODEL_NAME}'")]
    assert day not in days
    run = client.get_run(metadata(instance, "relevance_model")["mlflow_run_id"])
    assert run.data.tags["adrel.promotion"] == "rejected"
    assert day not in instance.get_materialized_partitions(dg_key("funnel_metrics"))


def test_the_champion_gat_serves_home_once_the_relevance_pipeline_ran(tmp_path):
    import datetime as dt

    from adrel_pipeline_tests.conftest import WEEK, week_in_a_fresh_store

    with week_in_a_fresh_store(tmp_path, CONTEXT_WORLD) as (instance, uri):
        trained, served = WEEK[-1].isoformat(), (WEEK[-1] + dt.timedelta(days=1)).isoformat()
        # The GAT of the week's window (registered by test_auc) serves the next day: its log and its funnel.
        result = _run(instance, uri, served, selection=["ad_inventory", *DAY_ASSETS[:4]])
        assert result.success
        md = metadata(instance, "funnel_metrics")
        assert md["pctr_home"] == metadata(instance, "candidate_log")["serving/pctr_home"] == (
            f"adrel-gat v1 (trained for {trained})")
        assert serialization_value(md["path"], served)["home_calibration"]["clicks"] > 0
        # The week's own last day was served before that model existed.
        assert _run(instance, uri, trained, selection=DAY_ASSETS[:1]).success
        assert metadata(instance, "candidate_log")["serving/pctr_home"].startswith("none: no adrel-gat version")


def dg_key(name):
    import dagster as dg

    return dg.AssetKey(name)


def serialization_value(path, day):
    from adrel_pipeline.mlops import serialization

    return serialization.load(Path_of(path) / f"{day}.pt")
