"""Contextual relevance: the ad inventory's contextual attributes, the day's logged candidates
(every funnel stage), the day's human labelling job, and one calibrated relevance model for every
content type, recorded in MLflow (``adrel_pipeline.defs.contextual.funnel`` measures it in the
funnel and registers it as ``adrel-relevance``).

The daily assets compare their monitoring profile (signal coverage and histograms, score
histograms, per surface and content type) with the previous day's materialization and warn on drift.
"""

import datetime as dt

import dagster as dg
import polars as pl

from adrel_pipeline.contextual import rules
from adrel_pipeline.contextual.spec import (
    CandidateLogSpec,
    LabelSpec,
    MonitoringSpec,
    RelevanceCheckSpec,
    RelevanceModelSpec,
)
from adrel_pipeline.defs.contextual.resources import FunnelResource
from adrel_pipeline.defs.shared import checks
from adrel_pipeline.defs.shared.checks import Check
from adrel_pipeline.defs.shared.params import config_for_specs
from adrel_pipeline.defs.shared.partitions import asset_backfilled_in_one_run, daily
from adrel_pipeline.defs.shared.resources import MlflowTracking, WorldResource
from adrel_pipeline.defs.world.assets import table_metadata
from adrel_pipeline.mlops import registry, store
from adrel_pipeline.mlops.code_version import asset_code_version

GROUP = "contextual"
MODEL_NAME = registry.RELEVANCE_MODEL_NAME
PROFILE_KEY = "monitoring_profile"
RETRY = dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL)

CandidateLogConfig = config_for_specs("CandidateLogConfig", CandidateLogSpec, MonitoringSpec)
LabelConfig = config_for_specs("LabelConfig", LabelSpec)
RelevanceModelConfig = config_for_specs("RelevanceModelConfig", RelevanceModelSpec, RelevanceCheckSpec, MonitoringSpec)


def partition_day(context: dg.AssetExecutionContext) -> dt.date:
    return dt.date.fromisoformat(context.partition_key)


def day_key(day: dt.date) -> tuple[int]:
    return (day.toordinal(),)


def failure(err: ValueError) -> dg.Failure:
    return dg.Failure(str(err), allow_retries=False)


def day_metadata(context: dg.AssetExecutionContext, day: str):
    """The metadata of this asset's latest materialization of ``day`` (None: never materialized)."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=context.asset_key, asset_partitions=[day]), limit=1).records
    return records[0].event_log_entry.asset_materialization.metadata if records else None


def previous_profile(context: dg.AssetExecutionContext) -> dict | None:
    """The monitoring profile of this asset's previous day, from its latest materialization (None
    when that day was never materialized, or by code that recorded none)."""
    metadata = day_metadata(context, (partition_day(context) - dt.timedelta(days=1)).isoformat())
    value = None if metadata is None else metadata.get(PROFILE_KEY)
    return None if value is None else dict(value.value)


def markdown_block(frame: pl.DataFrame) -> dg.MetadataValue:
    return dg.MetadataValue.md(f"```\n{frame}\n```")


@asset_backfilled_in_one_run(group_name=GROUP, kinds={"polars"}, code_version=asset_code_version("ad_inventory"))
def ad_inventory(world: WorldResource, items: pl.DataFrame) -> dg.Output[pl.DataFrame]:
    """Every ad's contextual attributes: content type, bid, image kind (shopping), category and style,
    and the latent ``quality`` and ``has_embedding`` (generator truth, never features)."""
    from adrel_pipeline.world.contexts import generate_ad_inventory

    table = generate_ad_inventory(world.spec(), items)
    mix = table.group_by("content_type").agg(pl.len().alias("ads"), pl.col("bid").median().alias("median_bid"))
    return dg.Output(table, metadata={**table_metadata(table), "content_types": markdown_block(mix.sort("content_type"))})


LOG_CHECKS = [
    Check("stages_recorded", "Every logged candidate names the funnel stage that dropped it, or none (served)."),
    Check("feature_coverage_stable", "No signal's coverage fell by more than max_coverage_drop against the previous "
                                     "day, per surface and content type.", blocking=False),
    Check("feature_drift", "No signal's PSI against the previous day exceeds max_psi, per surface and content type.",
          blocking=False),
]


@dg.asset(group_name=GROUP, kinds={"polars"}, partitions_def=daily, code_version=asset_code_version("candidate_log"),
          check_specs=checks.specs("candidate_log", LOG_CHECKS, daily))
def candidate_log(context: dg.AssetExecutionContext, config: CandidateLogConfig, world: WorldResource,
                  funnel: FunnelResource, mlflow: MlflowTracking, users: pl.DataFrame, items: pl.DataFrame,
                  ad_inventory: pl.DataFrame):
    """The day's traffic through the production funnel (retrieval, the relevance trim, ranking, the
    auction), served with the models that were champions when the day began (``adrel-relevance``;
    ``adrel-gat`` for home's pCTR), logged for labelling: ``log_rate`` of the candidates at every
    stage (``sampled``), every served ad (``served``), every ad the zero-relevance holdout would
    serve (``holdout_served``, the old heuristic's pool) and whole candidate lists of a few contexts
    (``full_list``), each row with its signals, the stage that dropped it and the generator's truth.
    Before any relevance champion exists, production serves as the holdout (no trim, alpha = 0)."""
    from adrel_pipeline.contextual.engagement import serving_pctr
    from adrel_pipeline.contextual.funnel import DROP_STAGES, candidates, run_funnel
    from adrel_pipeline.contextual.monitoring import compare, signal_profile
    from adrel_pipeline.contextual.sampling import log_candidates
    from adrel_pipeline.evaluation.calibration import coverage
    from adrel_pipeline.serving.contextual import production_models
    from adrel_pipeline.world.contexts import RELEVANT_GRADE, SIGNALS, generate_contexts

    spec, log_spec, bounds = world.spec(), config.spec(CandidateLogSpec, seed=world.seed), config.spec(MonitoringSpec)
    day = partition_day(context)
    contexts = generate_contexts(spec, users, items, day)
    cands = candidates(spec, contexts, ad_inventory, day)
    serving = production_models(day.isoformat(), world.fingerprint, mlflow.uri)
    relevance = serving.relevance.predict(cands) if serving.relevance is not None else None
    try:
        pctr = serving_pctr(cands, serving.gat, spec, day).pctr
    except ValueError as err:
        raise failure(err) from err
    served = run_funnel(cands, pctr, relevance, funnel.spec())
    log = log_candidates(served, log_spec, day_key(day))
    sampled = log.filter(pl.col("sampled"))
    profile = signal_profile(sampled)
    changes = compare(previous_profile(context), profile)
    relevant = (pl.col("true_grade") >= RELEVANT_GRADE).mean()
    by_stage = log.group_by(pl.col("dropped_at").fill_null("served")).agg(
        pl.col("sampled").sum().alias("logged"), pl.col("served").sum().alias("served"), relevant.alias("truly_relevant"))
    outcomes = {
        "stages_recorded": rules.stages_known(log, DROP_STAGES),
        "feature_coverage_stable": rules.drift_within(
            {k: v for k, v in changes.items() if k.startswith("coverage_drop/")}, bounds.max_coverage_drop,
            "coverage drops"),
        "feature_drift": rules.drift_within({k: v for k, v in changes.items() if k.startswith("psi/")},
                                            bounds.max_psi, "signal PSIs"),
    }
    coverage_table = sampled.group_by("surface", "content_type").agg(
        *[(pl.col(s).is_not_null().mean()).round(3).alias(s) for s in SIGNALS]).sort("surface", "content_type")
    yield from checks.emit(dg.Output(log, metadata={
        **table_metadata(log),
        "contexts": contexts.height,
        "candidates": served.height,
        "logged_candidates": sampled.height,
        "served": int(log["served"].sum()),
        "full_list_rows": int(log["full_list"].sum()),
        "serving/relevance_model": serving.relevance_source,
        "serving/pctr_home": serving.gat_source,
        **{f"coverage/{k}": v for k, v in coverage(sampled, SIGNALS).items()},
        "truly_relevant/candidates": float(served.select(relevant).item()),
        "truly_relevant/served": float(log.filter(pl.col("served")).select(relevant).item()),
        "truly_relevant/holdout_served": float(log.filter(pl.col("holdout_served")).select(relevant).item()),
        "stages": markdown_block(by_stage.sort("dropped_at")),
        "coverage_by_segment": markdown_block(coverage_table),
        "max_feature_psi": max((v for k, v in changes.items() if k.startswith("psi/")), default=float("nan")),
        PROFILE_KEY: dg.MetadataValue.json(profile),
    }), LOG_CHECKS, outcomes)


LABEL_CHECKS = [
    Check("labels_on_scale", "Every rating is on the 5-point scale and each row's label is its raters' median."),
    Check("disagreement_within_limit", "The row-level disagreement rate is at most max_disagreement_rate.",
          blocking=False),
]


def label_distribution(labels: pl.DataFrame) -> dg.MetadataValue:
    """Rows per content type and surface, the share of each 5-point label and of relevant rows."""
    return markdown_block(labels.group_by("content_type", "surface").agg(
        pl.len().alias("rows"), *[(pl.col("label") == g).mean().round(3).alias(str(g)) for g in range(1, 6)],
        pl.col("relevant").mean().round(3).alias("relevant")).sort("content_type", "surface"))


def label_outcomes(labels: pl.DataFrame, qc: dict, spec: LabelSpec) -> dict:
    """The outcomes of :data:`LABEL_CHECKS`."""
    return {"labels_on_scale": rules.labels_on_scale(labels),
            "disagreement_within_limit": rules.disagreement_within(qc["disagreement_rate"], spec.max_disagreement_rate)}


@dg.asset(group_name=GROUP, kinds={"polars"}, partitions_def=daily, code_version=asset_code_version("relevance_labels"),
          check_specs=checks.specs("relevance_labels", LABEL_CHECKS, daily))
def relevance_labels(context: dg.AssetExecutionContext, config: LabelConfig, world: WorldResource,
                     candidate_log: pl.DataFrame):
    """The day's labelling job: ``labelling_budget`` logged candidates (job ``candidates``), as many
    post-auction ads of the zero-relevance holdout (``heuristic``, the old sampling) and a
    candidate-level test set (``test``), each row rated by ``raters_per_row`` crowd raters on the
    5-point scale; the row label is their median, also on the 3-point scale."""
    from adrel_pipeline.contextual.labels import label_rows, quality
    from adrel_pipeline.contextual.sampling import draw_jobs

    spec = config.spec(LabelSpec, seed=world.seed)
    day = partition_day(context)
    try:
        rows = draw_jobs(candidate_log, spec, day_key(day))
    except ValueError as err:
        raise failure(err) from err
    labels = label_rows(rows, spec, day_key(day))
    qc = quality(labels)
    per_job = {job: quality(part) for (job,), part in labels.partition_by("job", as_dict=True).items()}
    distribution = label_distribution(labels)
    outcomes = label_outcomes(labels, qc, spec)
    yield from checks.emit(dg.Output(labels, metadata={
        **table_metadata(labels.drop("rater_ids", "ratings")),
        **qc,
        **{f"rows/{job}": int((labels["job"] == job).sum()) for job in per_job},
        **{f"relevant_share/{job}": q["relevant_share"] for job, q in per_job.items()},
        "label_distribution": distribution,
        "raters_per_row": spec.raters_per_row,
    }), LABEL_CHECKS, outcomes)


MODEL_CHECKS = [
    Check("ece_within_limit", "The production model's ECE on every content type is at most max_ece."),
    Check("brier_not_below_oracle", "The Brier score is not below the oracle's by more than oracle_tolerance_se "
                                    "paired standard errors: beating the truth means leakage."),
    Check("score_drift", "No score histogram's PSI against the previous day exceeds max_psi, per model, surface "
                         "and content type.", blocking=False),
]


def _metrics_table(metrics: dict) -> str:
    from adrel_pipeline.contextual.training import MODELS, ORACLE
    from adrel_pipeline.world.contexts import CONTENT_TYPES

    columns = ["ece", *[f"ece/{c}" for c in CONTENT_TYPES], "true_ece", "brier", "auc", "ndcg_at_10",
               "top_k_shopping_relevant_share"]
    lines = ["| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name in (*MODELS, ORACLE):
        lines.append(f"| {name} | " + " | ".join(f"{metrics[name][c]:.4f}" for c in columns) + " |")
    return "\n".join(lines)


@dg.asset(group_name=GROUP, kinds={"scikitlearn", "mlflow"}, partitions_def=daily, retry_policy=RETRY,
          code_version=asset_code_version("relevance_model"),
          check_specs=checks.specs("relevance_model", MODEL_CHECKS, daily))
def relevance_model(context: dg.AssetExecutionContext, config: RelevanceModelConfig, world: WorldResource,
                    mlflow: MlflowTracking, relevance_labels: pl.DataFrame, candidate_log: pl.DataFrame):
    """One calibrated model of P(relevant) for every content type, trained on the day's candidate
    sample, beside the seed's ablation (no category match), the old heuristic's training sample, the
    uncalibrated trees, a second fit of the production recipe (``reseeded``) and the oracle, all on
    the candidate-level test set: ECE per content type and surface (labels, and the oracle's
    probabilities), Brier, AUC, nDCG of whole candidate lists, the top-ranked share of relevant
    shopping ads. One MLflow run with the reliability plots and the logged model; the funnel day
    (``funnel_metrics``) registers it as ``adrel-relevance`` once the launch checks pass."""
    import pandas as pd

    from adrel_pipeline.contextual.monitoring import compare, score_profile
    from adrel_pipeline.contextual.pyfunc_model import INPUT_COLUMNS, MODEL, PYFUNC_FILE, model_signature
    from adrel_pipeline.contextual.training import MODELS, ORACLE, train_and_evaluate
    from adrel_pipeline.evaluation.calibration import paired_brier
    from adrel_pipeline.evaluation.contextual import relative_difference
    from adrel_pipeline.evaluation.contextual_plots import reliability_png
    from adrel_pipeline.evaluation.plots import markdown_image
    from adrel_pipeline.mlops import packaging
    from adrel_pipeline.world.contexts import CONTENT_TYPES, SURFACES

    spec = config.spec(RelevanceModelSpec, seed=world.seed)
    bounds, monitoring = config.spec(RelevanceCheckSpec), config.spec(MonitoringSpec)
    lists = candidate_log.filter(pl.col("full_list"))
    try:
        result = train_and_evaluate(relevance_labels, lists, spec)
    except ValueError as err:
        raise failure(err) from err
    full, metrics, test = result.metrics["full"], result.metrics, result.test
    oracle_brier = metrics[ORACLE]["brier"]
    _, _, oracle_se = paired_brier(test["relevant"].to_numpy(), result.test_scores["full"], result.test_scores[ORACLE])
    ablation = {
        "shopping_relevant_share_gain": relative_difference(full, metrics["no_category_match"],
                                                            "top_k_shopping_relevant_share"),
        "shopping_ctr_gain": relative_difference(full, metrics["no_category_match"], "top_k_shopping_ctr"),
    }
    profile = score_profile(test, {name: result.test_scores[name] for name in MODELS})
    changes = compare(previous_profile(context), profile)
    plots = {
        "reliability_by_content_type": reliability_png(
            {name: result.reliability[name]["content_type"] for name in ("full", "no_category_match", "heuristic")},
            "reliability by content type (candidate-level test set)",
            {name: {c: metrics[name].get(f"ece/{c}", float("nan")) for c in CONTENT_TYPES}
             for name in ("full", "no_category_match", "heuristic")}),
        "reliability_by_surface": reliability_png(
            {"full": result.reliability["full"]["surface"]}, "reliability by surface (production model)",
            {"full": {s: full.get(f"ece/{s}", float("nan")) for s in SURFACES}}),
    }
    flat = dict(full) | {f"{name}/{k}": v for name in (*MODELS[1:], ORACLE)
                                               for k, v in metrics[name].items()}
    flat |= {f"ablation/{k}": v for k, v in ablation.items()}
    flat |= {f"heuristic_minus_full/{k}": metrics["heuristic"][k] - full[k] for k in ("ece", "true_ece", "brier", "auc",
                                                                                        "ndcg_at_10")}
    outcomes = {
        "ece_within_limit": rules.ece_within({c: full[f"ece/{c}"] for c in CONTENT_TYPES if f"ece/{c}" in full},
                                             bounds.max_ece),
        "brier_not_below_oracle": rules.brier_not_below_oracle(full["brier"], oracle_brier, oracle_se,
                                                               bounds.oracle_tolerance_se),
        "score_drift": rules.drift_within(changes, monitoring.max_psi, "score PSIs"),
    }
    rejected = [outcomes[c.name].description for c in MODEL_CHECKS if c.blocking and not outcomes[c.name].passed]
    table = _metrics_table(metrics)
    dagster_run = context.run.run_id
    with store.run(mlflow.experiment_id, run_name=f"relevance_model-{dagster_run[:8]}",
                   tags=mlflow.dagster_tags(context)) as run_id:
        store.log_params({"world": world.spec().as_dict(), "model": spec.as_dict(), "checks": bounds.as_dict(),
                          "labels": {"rows": relevance_labels.height}})
        store.log_metrics(flat | {f"seconds/{k}": v for k, v in result.seconds.items()})
        for name, png in plots.items():
            store.log_bytes(png, f"plots/{name}.png")
        store.log_text(table, "relevance_eval.md")
        if rejected:
            store.set_tags({"adrel.promotion": "rejected", "adrel.promotion_reason": "; ".join(rejected)})
            context.log.error(f"{MODEL_NAME}: not registered, the model failed a blocking check: {'; '.join(rejected)}")
            yield from checks.emit(None, MODEL_CHECKS, outcomes)
        example = pd.DataFrame(test.head(3).select(INPUT_COLUMNS).to_dicts())
        payloads = {name: model.to_payload() for name, model in result.models.items()}
        logged = packaging.log_pyfunc(PYFUNC_FILE, {MODEL: payloads["full"]}, model_signature(), example)
        store.set_tags({"adrel.promotion": "pending", "adrel.world_fingerprint": world.fingerprint,
                        "adrel.promotion_reason": "the funnel day (funnel_metrics) registers the model once its "
                                                  "launch checks pass"})
    context.log.info(f"{MODEL_NAME}: logged to MLflow run {run_id}; funnel_metrics registers it after its checks")
    value = {"models": payloads,
             "metrics": {name: dict(m) for name, m in metrics.items()},
             "mlflow": {"run_id": run_id, "model_uri": logged.model_uri, "model_id": logged.model_id}}
    yield from checks.emit(dg.Output(value, metadata={
        **{k: float(v) for k, v in flat.items()},
        "oracle_brier": oracle_brier,
        "test_rows": test.height,
        "table": dg.MetadataValue.md(table),
        **{name: dg.MetadataValue.md(markdown_image(png, name.replace("_", " "))) for name, png in plots.items()},
        **{f"seconds/{k}": round(v, 3) for k, v in result.seconds.items()},
        "max_score_psi": max(changes.values(), default=float("nan")),
        PROFILE_KEY: dg.MetadataValue.json(profile),
        **mlflow.run_metadata(run_id),
        "mlflow_model_uri": logged.model_uri,
    }), MODEL_CHECKS, outcomes)
