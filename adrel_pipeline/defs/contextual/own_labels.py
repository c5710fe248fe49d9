"""Contextual relevance on a team's own human labels ($ADREL_SOURCE's ``labels`` table): the labels
collected up to each day, and one calibrated relevance model for every content type trained on them,
recorded in MLflow and registered as ``adrel-relevance``.

Loaded instead of :mod:`.assets` and :mod:`.funnel` when the source is a team's own data with labels
(``definitions.py``): the candidate log, the funnel and its A/A and holdout measurement simulate the
synthetic world's traffic, which a team's logs do not replay. Same asset keys, so the UI, jobs and
schedule read the same.
"""

import datetime as dt

import dagster as dg
import polars as pl

from adrel_pipeline.contextual import rules
from adrel_pipeline.contextual.spec import LabelSpec, RelevanceCheckSpec, RelevanceModelSpec
from adrel_pipeline.defs.contextual.assets import (
    GROUP,
    LABEL_CHECKS,
    MODEL_NAME,
    RETRY,
    failure,
    label_distribution,
    label_outcomes,
)
from adrel_pipeline.defs.contextual.funnel import champion_comparison
from adrel_pipeline.defs.shared import checks
from adrel_pipeline.defs.shared.checks import Check
from adrel_pipeline.defs.shared.params import config_for_specs
from adrel_pipeline.defs.shared.partitions import daily
from adrel_pipeline.defs.shared.resources import MlflowTracking, WorldResource
from adrel_pipeline.defs.shared.source import DataSource
from adrel_pipeline.mlops import registry, store
from adrel_pipeline.mlops.code_version import asset_code_version

OwnLabelConfig = config_for_specs("OwnLabelConfig", LabelSpec)
OwnRelevanceModelConfig = config_for_specs("OwnRelevanceModelConfig", RelevanceModelSpec, RelevanceCheckSpec)


@dg.asset(name="relevance_labels", group_name=GROUP, kinds={"polars"}, partitions_def=daily,
          code_version=asset_code_version("relevance_labels"),
          check_specs=checks.specs("relevance_labels", LABEL_CHECKS, daily))
def relevance_labels(context: dg.AssetExecutionContext, config: OwnLabelConfig, world: WorldResource,
                     source: DataSource, items: pl.DataFrame):
    """Every (context, ad) pair the team's raters labelled on this day or before, one row per pair:
    its signals, its raters' ratings and the label (their lower median, also on the 3-point scale);
    ``relevant`` when the label is 4 or 5."""
    from adrel_pipeline.contextual.own_labels import aggregate_ratings, quality_of
    from adrel_pipeline.sources import SourceDataError

    day = dt.date.fromisoformat(context.partition_key)
    try:
        ratings = source.open(world.spec(), items=items).labels(until=day)
    except SourceDataError as err:
        raise failure(err) from err
    if ratings is None:
        raise dg.Failure(f"{source.source}: no labels table: add labels.csv (README: Your own data) to train the "
                         "relevance model", allow_retries=False)
    pairs = aggregate_ratings(ratings)
    qc = quality_of(pairs)
    outcomes = label_outcomes(pairs, qc, config.spec(LabelSpec, seed=world.seed))
    yield from checks.emit(dg.Output(pairs, metadata={
        "dagster/row_count": pairs.height,
        "ratings": ratings.height,
        "days": ratings["day"].n_unique(),
        "contexts": pairs["context_id"].n_unique(),
        **qc,
        "label_distribution": label_distribution(pairs),
    }), LABEL_CHECKS, outcomes)


MODEL_CHECKS = [Check("ece_within_limit", "The production model's ECE on every content type is at most max_ece.")]


@dg.asset(name="relevance_model", group_name=GROUP, kinds={"scikitlearn", "mlflow"}, partitions_def=daily,
          retry_policy=RETRY, code_version=asset_code_version("relevance_model"),
          check_specs=checks.specs("relevance_model", MODEL_CHECKS, daily))
def relevance_model(context: dg.AssetExecutionContext, config: OwnRelevanceModelConfig, world: WorldResource,
                    source: DataSource, mlflow: MlflowTracking, relevance_labels: pl.DataFrame):
    """One calibrated model of P(relevant) for every content type, trained on the labelled pairs of
    a seeded share of the contexts and tested on the rest (``test_fraction``), beside the seed's
    ablation (no category match), the uncalibrated trees and a second fit (``reseeded``): ECE per
    content type and surface, Brier, AUC and nDCG of the labelled lists. Registered as
    ``adrel-relevance`` when its ECE check passes; ``champion`` when it beats the champion's Brier
    score on the same test pairs. No oracle: the truth of real pairs is unknown."""
    import pandas as pd

    from adrel_pipeline.contextual.pyfunc_model import INPUT_COLUMNS, MODEL, PYFUNC_FILE, model_signature
    from adrel_pipeline.contextual.training import OWN_MODELS, train_and_evaluate_own
    from adrel_pipeline.evaluation.contextual_plots import reliability_png
    from adrel_pipeline.evaluation.plots import markdown_image
    from adrel_pipeline.mlops import packaging
    from adrel_pipeline.mlops.code_version import asset_code_version as version_of
    from adrel_pipeline.world.contexts import CONTENT_TYPES

    spec, bounds = config.spec(RelevanceModelSpec, seed=world.seed), config.spec(RelevanceCheckSpec)
    try:
        result = train_and_evaluate_own(relevance_labels, spec)
    except ValueError as err:
        raise failure(err) from err
    full, metrics, test = result.metrics["full"], result.metrics, result.test
    outcomes = {"ece_within_limit": rules.ece_within({c: full[f"ece/{c}"] for c in CONTENT_TYPES
                                                      if f"ece/{c}" in full}, bounds.max_ece)}
    rejected = [outcomes[c.name].description for c in MODEL_CHECKS if c.blocking and not outcomes[c.name].passed]
    plot = reliability_png({name: result.reliability[name]["content_type"] for name in ("full", "no_category_match")},
                           "reliability by content type (held-out contexts)",
                           {name: {c: metrics[name].get(f"ece/{c}", float("nan")) for c in CONTENT_TYPES}
                            for name in ("full", "no_category_match")})
    flat = dict(full) | {f"{name}/{k}": v for name in OWN_MODELS[1:] for k, v in metrics[name].items()}
    data_fingerprint = source.fingerprint(world.spec())
    with store.run(mlflow.experiment_id, run_name=f"relevance_model-{context.run.run_id[:8]}",
                   tags=mlflow.dagster_tags(context)) as run_id:
        store.log_params({"source": {"setting": source.source}, "model": spec.as_dict(), "checks": bounds.as_dict(),
                          "labels": {"pairs": relevance_labels.height, "test_pairs": test.height}})
        store.log_metrics(flat | {f"seconds/{k}": v for k, v in result.seconds.items()})
        store.log_bytes(plot, "plots/reliability_by_content_type.png")
        example = pd.DataFrame(test.head(3).select(INPUT_COLUMNS).to_dicts())
        payloads = {name: model.to_payload() for name, model in result.models.items()}
        logged = packaging.log_pyfunc(PYFUNC_FILE, {MODEL: payloads["full"]}, model_signature(), example)
        promotion = registry.register_once(MODEL_NAME, run_id, rejected, lambda: registry.register_and_promote(
            MODEL_NAME, run_id, logged, 1.0 - full["brier"],
            champion_comparison(test, result.models["full"].predict(test)),
            tags={"dagster.run_id": context.run.run_id, "world_fingerprint": data_fingerprint,
                  "code_version": version_of("relevance_model")},
            partition=context.partition_key, score_name="one_minus_brier"), context.log)
    if promotion is None:
        yield from checks.emit(None, MODEL_CHECKS, outcomes)
    context.log.info(f"{MODEL_NAME} v{promotion.version} -> {promotion.alias}: {promotion.reason}")
    value = {"models": payloads, "metrics": {name: dict(m) for name, m in metrics.items()},
             "mlflow": {"run_id": run_id, "model_uri": logged.model_uri, "model_id": logged.model_id}}
    yield from checks.emit(dg.Output(value, metadata={
        **{k: float(v) for k, v in flat.items()},
        "oracle_available": False,
        "test_pairs": test.height,
        "train_pairs": relevance_labels.height - test.height,
        "reliability_by_content_type": dg.MetadataValue.md(markdown_image(plot, "reliability by content type")),
        **mlflow.run_metadata(run_id),
        **mlflow.promotion_metadata(promotion, MODEL_NAME),
    }), MODEL_CHECKS, outcomes)
