"""The funnel group: the day's relevance model in the serving funnel (retrieval -> trim -> ranking
-> auction) beside the zero-relevance holdout, the launch checks that decide whether it is
registered as ``adrel-relevance``, the daily trend on a fixed query set, and A/A and A/B tests.

Each asset serves the day's traffic as production served it that day (home's pCTR from the
``adrel-gat`` champion as of the day's start, as ``candidate_log`` does) with the relevance model
swapped for the day's new ``relevance_model``: what shipping it would change. The registry's
history, not the order of a run's steps, decides which GAT that is, so a re-run or a backfill
gives the same figures. Each logs into the relevance model's MLflow run and keeps its figures as
metadata (charts inline). The library does the work (:mod:`adrel_pipeline.contextual.funnel`,
``.measurement``, ``.engagement``); these functions wire it.
"""


import datetime as dt

import dagster as dg
import polars as pl

from adrel_pipeline.contextual import rules
from adrel_pipeline.contextual.spec import ExperimentSpec, FunnelCheckSpec, TrendSpec
from adrel_pipeline.defs.contextual.assets import (
    MODEL_NAME,
    PROFILE_KEY,
    RETRY,
    day_metadata,
    failure,
    partition_day,
    previous_profile,
)
from adrel_pipeline.defs.contextual.resources import FunnelResource
from adrel_pipeline.defs.shared import checks
from adrel_pipeline.defs.shared.checks import Check
from adrel_pipeline.defs.shared.params import config_for
from adrel_pipeline.defs.shared.partitions import daily
from adrel_pipeline.defs.shared.resources import MlflowTracking, WorldResource
from adrel_pipeline.mlops import registry, store
from adrel_pipeline.mlops.code_version import asset_code_version

GROUP = "funnel"
_STREAM_EXPERIMENTS = 81

FunnelMetricsConfig = config_for(FunnelCheckSpec, "FunnelMetricsConfig")
ExperimentConfig = config_for(ExperimentSpec, "ExperimentConfig")
TrendConfig = config_for(TrendSpec, "TrendConfig")


def _serving_pctr(world: WorldResource, mlflow: MlflowTracking, cands: pl.DataFrame, day: dt.date):
    """``(Engagement, which GAT)``: the candidates' pCTR as production served it on ``day``, home's
    from the adrel-gat champion as of the day's start; too few home clicks to calibrate it fail the
    step without retries."""
    from adrel_pipeline.contextual.engagement import serving_pctr
    from adrel_pipeline.serving.contextual import production_models

    gat = production_models(day.isoformat(), world.fingerprint, mlflow.uri, relevance=False)
    try:
        return serving_pctr(cands, gat.gat, world.spec(), day), gat.gat_source
    except ValueError as err:
        raise failure(err) from err


def _models(relevance_model: dict) -> dict:
    from adrel_pipeline.contextual.model import RelevanceModel
    from adrel_pipeline.contextual.training import MODELS

    missing = sorted(set(MODELS) - set(relevance_model["models"]))
    if missing:
        raise dg.Failure(f"the stored relevance_model lacks the models {missing} (written by older code): "
                         "rematerialize relevance_model for this day first", allow_retries=False)
    return {name: RelevanceModel.from_payload(payload) for name, payload in relevance_model["models"].items()}


def champion_comparison(test: pl.DataFrame, scores):
    """Scores the champion on this day's labelled test set beside the new model (1 - Brier: higher is better)."""
    from adrel_pipeline.evaluation.calibration import paired_brier
    from adrel_pipeline.mlops import packaging
    from adrel_pipeline.mlops.promotion import Comparison

    labels = test["relevant"].to_numpy()

    def compare(champion_version: str, model_uri: str):
        try:
            theirs = packaging.load_pyfunc(model_uri).model.predict(test)
        except Exception as err:  # noqa: BLE001 - a version registered by older code may fail in any way
            return None, f"it cannot be loaded or scored by this code ({type(err).__name__}: {err})"
        ours_brier, their_brier, se = paired_brier(labels, scores, theirs)
        return Comparison(champion_version, 1.0 - ours_brier, 1.0 - their_brier, se,
                          f"the day's candidate-level test set ({test.height} labelled rows)",
                          metric="1 - Brier score", se_method="paired over rows"), ""

    return compare


def _markdown_table(frame: pl.DataFrame) -> str:
    lines = ["| " + " | ".join(frame.columns) + " |", "|---" * frame.width + "|"]
    lines += ["| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |"
              for row in frame.iter_rows()]
    return "\n".join(lines)


def _newest_day(context: dg.AssetExecutionContext) -> str | None:
    days = context.instance.get_materialized_partitions(context.asset_key)
    return max(days) if days else None


def _stage_panels(metrics: dict, prefix: str, segments, stages) -> dict:
    return {segment: [metrics[f"{prefix}/{s}/{segment}"] for s in stages] for segment in segments
            if f"{prefix}/{stages[0]}/{segment}" in metrics}


FUNNEL_CHECKS = [
    Check("auction_consistent", "Every context: at most auction_candidates entrants and slots winners, slots in order "
                                "of score, prices between the reserve and the bid, the trim exactly below tau."),
    Check("relevance_above_holdout", "Production's served ads are truly relevant more often than the zero-relevance "
                                     "holdout's by at least min_relevance_gain (relative)."),
    Check("revenue_cost_within_limit", "Production's expected revenue per context is below the holdout's by at most "
                                       "max_revenue_cost."),
    Check("trim_rate_stable", "No model's trim rate per surface and content type moved by more than "
                              "max_trim_rate_change against the previous day.", blocking=False),
]


@dg.asset(group_name=GROUP, kinds={"polars", "mlflow"}, partitions_def=daily, retry_policy=RETRY,
          code_version=asset_code_version("funnel_metrics"),
          check_specs=checks.specs("funnel_metrics", FUNNEL_CHECKS, daily))
def funnel_metrics(context: dg.AssetExecutionContext, config: FunnelMetricsConfig, world: WorldResource,
                   funnel: FunnelResource, mlflow: MlflowTracking, users: pl.DataFrame, items: pl.DataFrame,
                   ad_inventory: pl.DataFrame, relevance_labels: pl.DataFrame, relevance_model: dict):
    """The day's contexts through the funnel with the day's relevance model, beside the
    zero-relevance holdout on the same contexts: the truly relevant share of each stage's survivors
    (``fraction_relevant/<stage>``, ``.../<category>``, by content type and surface), trim rates,
    nDCG of the served slates, CTR and revenue, the holdout gap; revenue against relevance over a
    sweep of alpha and tau, with a second model of equal calibration and a miscalibrated one. When
    the launch checks pass, the model is registered as ``adrel-relevance`` and the promotion gate runs."""
    import numpy as np

    from adrel_pipeline.contextual.funnel import SURVIVOR_STAGES, candidates, run_funnel_and_holdout
    from adrel_pipeline.contextual.measurement import Traffic, swap_sweep
    from adrel_pipeline.contextual.measurement import funnel_metrics as measure_funnel
    from adrel_pipeline.contextual.monitoring import compare, trim_profile
    from adrel_pipeline.evaluation.funnel_plots import funnel_png, tradeoff_png
    from adrel_pipeline.evaluation.plots import markdown_image
    from adrel_pipeline.mlops import packaging
    from adrel_pipeline.world.contexts import CONTENT_TYPES, generate_contexts
    from adrel_pipeline.world.spec import INTERESTS

    spec, funnel_spec, bounds = world.spec(), funnel.spec(), config.spec()
    day = partition_day(context)
    models = _models(relevance_model)
    contexts = generate_contexts(spec, users, items, day)
    cands = candidates(spec, contexts, ad_inventory, day)
    relevance = models["full"].predict(cands)
    engagement, gat_source = _serving_pctr(world, mlflow, cands, day)
    production, holdout = run_funnel_and_holdout(cands, engagement.pctr, relevance, funnel_spec)
    ours, theirs = measure_funnel(production, funnel_spec), measure_funnel(holdout, funnel_spec)
    gap = {f"holdout_gap/{k}": ours[k] / theirs[k] - 1.0 if theirs[k] else float("nan")
           for k in ("fraction_relevant/auction_winners", "ndcg", "ctr", "revenue_per_context")}

    # The sweep and the per-model trim rates: the first sweep_contexts contexts, every model scored.
    first = np.flatnonzero(cands["context_id"].is_in(contexts["context_id"].head(bounds.sweep_contexts).implode()))
    head = cands[first]
    scores = {name: (relevance[first] if name == "full" else model.predict(head)) for name, model in models.items()}
    traffic = Traffic.of(head, engagement.base[first], scores)
    points = swap_sweep(traffic, funnel_spec, np.arange(traffic.contexts),
                        (world.seed, _STREAM_EXPERIMENTS, day.toordinal()))
    profile = trim_profile(head, scores, funnel_spec.trim_threshold)
    changes = compare(previous_profile(context), profile)

    stages = list(SURVIVOR_STAGES)
    by_category = {"all": [ours[f"fraction_relevant/{s}"] for s in stages],
                   "all, holdout": [theirs[f"fraction_relevant/{s}"] for s in stages],
                   **_stage_panels(ours, "fraction_relevant", INTERESTS, stages)}
    by_type = {"all": by_category["all"],
               **_stage_panels(ours, "fraction_relevant_by_content_type", CONTENT_TYPES, stages)}
    plots = {
        "funnel": funnel_png({"ad category": by_category, "content type": by_type}, stages,
                             f"truly relevant share through the funnel, {day} ({int(ours['contexts'])} contexts, "
                             f"tau {funnel_spec.trim_threshold:g}, alpha {funnel_spec.relevance_exponent:g})"),
        "revenue_vs_relevance": tradeoff_png(points, (funnel_spec.relevance_exponent, funnel_spec.trim_threshold),
                                             f"revenue against relevance, {traffic.contexts} contexts of {day}"),
    }
    outcomes = {
        "auction_consistent": rules.auction_consistent(production, funnel_spec.slots, funnel_spec.auction_candidates,
                                                       funnel_spec.reserve_price, funnel_spec.trim_threshold),
        "relevance_above_holdout": rules.relevance_gain_at_least(
            ours["fraction_relevant/auction_winners"], theirs["fraction_relevant/auction_winners"],
            bounds.min_relevance_gain),
        "revenue_cost_within_limit": rules.revenue_cost_within(ours["revenue_per_context"],
                                                               theirs["revenue_per_context"], bounds.max_revenue_cost),
        "trim_rate_stable": rules.drift_within(changes, bounds.max_trim_rate_change, "trim-rate changes"),
    }
    rejected = [outcomes[c.name].description for c in FUNNEL_CHECKS if c.blocking and not outcomes[c.name].passed]
    flat = ours | {f"holdout/{k}": v for k, v in theirs.items()} | gap
    record = relevance_model["mlflow"]
    with store.run(run_id=record["run_id"]):
        store.log_params({"funnel": funnel_spec.as_dict(), "funnel_checks": bounds.as_dict()})
        store.log_metrics({f"funnel/{k}": v for k, v in flat.items()})
        for name, png in plots.items():
            store.log_bytes(png, f"plots/{name}.png")
        store.log_text(points.write_csv(), "funnel_sweep.csv")
        test = relevance_labels.filter(pl.col("job") == "test")
        promotion = registry.register_once(MODEL_NAME, record["run_id"], rejected, lambda: registry.register_and_promote(
            MODEL_NAME, record["run_id"], packaging.LoggedModel(record["model_uri"], record["model_id"] or None),
            1.0 - relevance_model["metrics"]["full"]["brier"],  # on the same test job
            champion_comparison(test, models["full"].predict(test)),
            tags={"dagster.run_id": context.run.run_id, "world_fingerprint": world.fingerprint,
                  "code_version": asset_code_version("relevance_model")},
            partition=context.partition_key, newest_materialized=_newest_day(context), score_name="one_minus_brier"),
            context.log)
        if promotion is None:
            yield from checks.emit(None, FUNNEL_CHECKS, outcomes)
    context.log.info(f"{MODEL_NAME} v{promotion.version} -> {promotion.alias}: {promotion.reason}")
    context.log.info("fraction relevant " + ", ".join(f"{s} {ours[f'fraction_relevant/{s}']:.3f}" for s in stages)
                     + f"; holdout's winners {theirs['fraction_relevant/auction_winners']:.3f}; revenue per context "
                       f"{ours['revenue_per_context']:.4f} vs {theirs['revenue_per_context']:.4f}")
    value = {"metrics": ours, "holdout": theirs, "holdout_gap": gap, "sweep": points.to_dicts(),
             "trim_profile": profile, "pctr_home": gat_source,
             "home_calibration": None if engagement.calibration is None else vars(engagement.calibration)}
    yield from checks.emit(dg.Output(value, metadata={
        **{k: float(v) for k, v in flat.items()},
        "pctr_home": gat_source,
        **{name: dg.MetadataValue.md(markdown_image(png, name.replace("_", " "))) for name, png in plots.items()},
        "sweep": dg.MetadataValue.md(_markdown_table(points)),
        "max_trim_rate_change": max(changes.values(), default=float("nan")),
        PROFILE_KEY: dg.MetadataValue.json(profile),
        **mlflow.run_metadata(record["run_id"]),
        **mlflow.promotion_metadata(promotion, MODEL_NAME),
    }), FUNNEL_CHECKS, outcomes)


def _history(context: dg.AssetExecutionContext, keys: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """``{day: {key: value}}`` of this asset's latest materialization of every day before this one."""
    out: dict[str, dict[str, float]] = {}
    for day in sorted(d for d in context.instance.get_materialized_partitions(context.asset_key)
                      if d < context.partition_key):
        metadata = day_metadata(context, day)
        if metadata is not None:
            out[day] = {k: float(metadata[k].value) for k in keys if k in metadata}
    return out


TREND_KEYS = ("fraction_relevant", "holdout/fraction_relevant", "ndcg", "holdout/ndcg")


@dg.asset(group_name=GROUP, kinds={"polars", "mlflow"}, partitions_def=daily, retry_policy=RETRY,
          code_version=asset_code_version("relevance_trend"))
def relevance_trend(context: dg.AssetExecutionContext, config: TrendConfig, world: WorldResource,
                    funnel: FunnelResource, mlflow: MlflowTracking, users: pl.DataFrame, items: pl.DataFrame,
                    ad_inventory: pl.DataFrame, relevance_model: dict) -> dg.Output[dict]:
    """The trend metrics: a fixed query set with fixed user contexts (drawn once), scraped every day
    through the day's funnel with the day's relevance model and with the holdout: the truly
    relevant share of served ads and their nDCG, and their plot over every day materialized so far."""
    from adrel_pipeline.contextual.funnel import candidates, run_funnel_and_holdout
    from adrel_pipeline.contextual.measurement import fixed_query_set
    from adrel_pipeline.contextual.measurement import funnel_metrics as measure_funnel
    from adrel_pipeline.evaluation.funnel_plots import trend_png
    from adrel_pipeline.evaluation.plots import markdown_image

    spec, funnel_spec, trend_spec = world.spec(), funnel.spec(), config.spec()
    day = partition_day(context)
    cands = candidates(spec, fixed_query_set(spec, users, items, trend_spec.trend_contexts), ad_inventory, day)
    engagement, _ = _serving_pctr(world, mlflow, cands, day)
    served = run_funnel_and_holdout(cands, engagement.pctr, _models(relevance_model)["full"].predict(cands),
                                    funnel_spec)
    ours, theirs = (measure_funnel(frame, funnel_spec) for frame in served)
    today = {"fraction_relevant": ours["fraction_relevant/auction_winners"], "ndcg": ours["ndcg"],
             "holdout/fraction_relevant": theirs["fraction_relevant/auction_winners"], "holdout/ndcg": theirs["ndcg"]}
    today["holdout_gap"] = today["fraction_relevant"] / today["holdout/fraction_relevant"] - 1.0
    history = _history(context, TREND_KEYS) | {context.partition_key: today}
    days = sorted(history)
    series = {"production": "fraction_relevant", "holdout": "holdout/fraction_relevant",
              "production nDCG": "ndcg", "holdout nDCG": "holdout/ndcg"}
    png = trend_png(days, {label: [history[d].get(key, float("nan")) for d in days] for label, key in series.items()},
                    f"trend on a fixed query set ({trend_spec.trend_contexts} contexts, fixed user contexts)")
    with store.run(run_id=relevance_model["mlflow"]["run_id"]):
        store.log_metrics({f"trend/{k}": v for k, v in today.items()})
        store.log_bytes(png, "plots/trend.png")
    return dg.Output(today | {"days": days}, metadata={
        **today, "days": len(days), "trend": dg.MetadataValue.md(markdown_image(png, "trend")),
        **mlflow.run_metadata(relevance_model["mlflow"]["run_id"])})


@dg.asset(group_name=GROUP, kinds={"polars", "mlflow"}, partitions_def=daily, retry_policy=RETRY,
          code_version=asset_code_version("relevance_experiments"))
def relevance_experiments(context: dg.AssetExecutionContext, config: ExperimentConfig, world: WorldResource,
                          funnel: FunnelResource, mlflow: MlflowTracking, users: pl.DataFrame, items: pl.DataFrame,
                          ad_inventory: pl.DataFrame, relevance_model: dict) -> dg.Output[dict]:
    """Whether a measured difference is real: the production treatment against itself
    ``aa_repeats`` times with fresh randomness, with the seed's variance controls (a fixed query set
    and fixed user contexts) and without (fresh contexts per arm), the spread of the relative
    differences and how often the interval covers zero; and A/B tests on one fixed query set with
    their intervals: the category-match launch (legacy features -> full), the swap to a second
    model of equal calibration, a miscalibrated copy, and production against the holdout."""
    from adrel_pipeline.contextual.funnel import candidates
    from adrel_pipeline.contextual.measurement import Arm, Traffic, aa_test, ab_test, ab_tests, fixed_contexts
    from adrel_pipeline.evaluation.funnel_plots import aa_png
    from adrel_pipeline.evaluation.plots import markdown_image
    from adrel_pipeline.world.contexts import generate_contexts

    spec, funnel_spec = world.spec(), funnel.spec()
    experiment = config.spec(seed=world.seed)
    day = partition_day(context)
    contexts = generate_contexts(spec, users, items, day).head(experiment.experiment_pool)
    if contexts.height < experiment.experiment_pool:
        raise failure(ValueError(f"experiment_pool={experiment.experiment_pool} is out of range: the day has only "
                                 f"{contexts.height} contexts (contexts_per_day)"))
    cands = candidates(spec, contexts, ad_inventory, day)
    models = _models(relevance_model)
    engagement, _ = _serving_pctr(world, mlflow, cands, day)
    traffic = Traffic.of(cands, engagement.base,
                         {name: models[name].predict(cands) for name in ("full", "no_category_match", "reseeded")})
    seed = (experiment.seed, _STREAM_EXPERIMENTS, day.toordinal())
    aa = aa_test(traffic, Arm("full", funnel_spec), experiment.experiment_contexts, experiment.aa_repeats, experiment.confidence,
                 seed)
    fixed = fixed_contexts(traffic, experiment.experiment_contexts, (*seed, 2))
    ab = {name: ab_test(traffic, a, b, fixed, experiment.confidence, (*seed, 3, i))
          for i, (name, (a, b)) in enumerate(ab_tests(funnel_spec).items())}
    summary = {f"aa/{k}": v for k, v in aa.summary().items()}
    summary |= {f"aa/uncontrolled/first_{i}": d.relative for i, d in enumerate(aa.uncontrolled[:3])}
    flat = summary | {k: v for name, diffs in ab.items() for d in diffs.values() for k, v in d.as_dict(f"ab/{name}").items()}
    lines = ["| A/B | metric | A | B | B / A - 1 | interval |", "|---|---|---|---|---|---|"]
    for name, diffs in ab.items():
        for metric, d in diffs.items():
            lines.append(f"| {name} | {metric} | {d.a:.4f} | {d.b:.4f} | {d.relative:+.2%} | "
                         f"[{d.low:+.2%}, {d.high:+.2%}]{'' if d.covers_zero else ' *'} |")
    table = "\n".join(lines)
    png = aa_png([d.relative for d in aa.controlled], [d.relative for d in aa.uncontrolled], aa.metric,
                 experiment.experiment_contexts)
    with store.run(run_id=relevance_model["mlflow"]["run_id"]):
        store.log_params({"experiments": experiment.as_dict()})
        store.log_metrics({f"experiments/{k}": v for k, v in flat.items()})
        store.log_bytes(png, "plots/aa_test.png")
        store.log_text(table, "ab_tests.md")
    context.log.info(f"A/A of {aa.metric} over {experiment.aa_repeats} repeats: sd of B / A - 1 "
                     f"{summary['aa/controlled/sd']:.2%} with the variance controls, {summary['aa/uncontrolled/sd']:.2%} "
                     f"without; intervals cover 0 in {summary['aa/controlled/coverage']:.0%} / "
                     f"{summary['aa/uncontrolled/coverage']:.0%}")
    return dg.Output({"aa": summary, "ab": {name: {m: vars(d) for m, d in diffs.items()} for name, diffs in ab.items()},
                      "aa_relative": {"controlled": [d.relative for d in aa.controlled],
                                      "uncontrolled": [d.relative for d in aa.uncontrolled]}},
                     metadata={**{k: float(v) for k, v in flat.items()}, "ab_tests": dg.MetadataValue.md(table),
                               "aa_test": dg.MetadataValue.md(markdown_image(png, "A/A test")),
                               "pool_contexts": traffic.contexts, "pool_candidates": len(traffic.groups),
                               **mlflow.run_metadata(relevance_model["mlflow"]["run_id"])})
