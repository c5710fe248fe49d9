"""Assets that train the GAT, evaluate it against the generator's Bayes-optimal ceiling, and record
both in MLflow: one MLflow run per training, its evaluation, and a registered model version.

Modules that import torch (and pandas) are imported inside the asset bodies: loading the code
location (each CLI command, the webserver, the daemon) then costs ~1 s instead of ~5 s.
"""


import dagster as dg
import polars as pl

from adrel_pipeline.defs.shared import checks
from adrel_pipeline.defs.shared.checks import Check
from adrel_pipeline.defs.shared.params import config_for
from adrel_pipeline.defs.shared.partitions import daily, next_day_mapping, window_days
from adrel_pipeline.defs.shared.resources import MlflowTracking, WorldResource
from adrel_pipeline.defs.shared.source import DataSource
from adrel_pipeline.evaluation import rules
from adrel_pipeline.evaluation.spec import RankingSpec
from adrel_pipeline.mlops import packaging, registry, store
from adrel_pipeline.mlops.code_version import CODE_VERSION, asset_code_version
from adrel_pipeline.relevance.spec import ModelCheckSpec, TrainSpec

GROUP = "model"
RANKING_KEYS = ("mrr", "hits_at_10", "hits_at_100")
# Transient failures (a busy tracking server, a killed worker) are retried after 2 s, then 4 s.
# Bad config and failed checks raise dg.Failure(allow_retries=False): retrying cannot fix them.
RETRY = dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL)
# The training code's version; test_auc carries CODE_VERSION, the whole model's (evaluation and packaging too).
TRAINED_GAT_VERSION = asset_code_version("trained_gat")


TrainGATConfig = config_for(TrainSpec, "TrainGATConfig")


def _input_example(test, n: int = 5):
    import pandas as pd

    from adrel_pipeline.graph.build import AD, USER, USER_AD

    pairs = test[USER_AD].edge_label_index[:, :n]
    return pd.DataFrame({"user_id": test[USER].node_id[pairs[0]].numpy(),
                         "ad_id": test[AD].node_id[pairs[1]].numpy()})


@dg.asset(group_name=GROUP, kinds={"pytorch", "mlflow"}, code_version=TRAINED_GAT_VERSION,
          partitions_def=daily, retry_policy=RETRY)
def trained_gat(context: dg.AssetExecutionContext, config: TrainGATConfig, world: WorldResource,
                mlflow: MlflowTracking, link_split: dict) -> dg.Output[dict]:
    """The GAT's best-validation weights (``state_dict`` + config) and its training history.

    Opens this training's MLflow run: parameters, per-epoch metrics, learning curves, the
    resolved config, the split's statistics and the model (weights + scoring graph).
    """
    from adrel_pipeline.evaluation.plots import learning_curves_png, markdown_image
    from adrel_pipeline.graph.split import split_summary, without_labels
    from adrel_pipeline.relevance.training import train_gat

    spec = config.spec(seed=world.seed)
    dagster_run = context.run.run_id

    # A training killed outright (kill -9, out of memory) left its MLflow run RUNNING: end such runs
    # KILLED once their Dagster run is over (failed by run monitoring, canceled) or unknown here.
    def is_alive(run_id: str) -> bool:
        if run_id == dagster_run:  # this run's own earlier attempts are never orphans
            return True
        owner = context.instance.get_run_by_id(run_id)
        return owner is not None and not owner.is_finished

    orphaned = store.end_orphaned_runs(mlflow.experiment_id, is_alive, found_by=dagster_run)
    if orphaned:
        context.log.warning(f"Marked {len(orphaned)} orphaned MLflow run(s) KILLED (their Dagster run is no "
                            f"longer running): {', '.join(orphaned)}")
    description = (f"Trained by Dagster run [{dagster_run[:8]}]({mlflow.dagster_run_url(dagster_run)}), "
                   f"asset `{context.asset_key.to_user_string()}`.")
    with store.run(mlflow.experiment_id, run_name=f"trained_gat-{dagster_run[:8]}",
                   tags=mlflow.dagster_tags(context), description=description) as run_id:
        resolved = {"world": world.spec().as_dict(), "split": link_split["spec"], "train": spec.as_dict()}
        store.log_params(resolved)

        epochs: list[dict] = []

        def on_epoch(row: dict) -> None:
            epochs.append(row)
            if row["epoch"] == 1 or row["epoch"] % 5 == 0:
                context.log.info(f"epoch {row['epoch']}: train_loss={row['train_loss']:.4f} "
                                 f"train_auc={row['train_auc']:.4f} val_auc={row['val_auc']:.4f}")

        try:
            result = train_gat(link_split, spec, on_epoch=on_epoch)
        finally:
            # The curves in one write, also those of a training that failed half-way.
            store.log_curves({k: [row[k] for row in epochs] for k in ("epoch", "train_loss", "train_auc", "val_auc")},
                             ("train_loss", "train_auc", "val_auc"))
        n_params = sum(v.numel() for v in result.checkpoint["state_dict"].values())
        summary = {"epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
                   "best_val_auc": result.best_val_auc, "train_seconds": round(result.seconds, 2),
                   "seconds_per_epoch": round(result.seconds / result.epochs_run, 3), "num_parameters": n_params}
        store.log_metrics(summary)
        curves = learning_curves_png(result.history, result.best_epoch)
        store.log_bytes(curves, "plots/learning_curves.png")
        store.log_dict({**resolved, "model": result.checkpoint["config"], "code_version": TRAINED_GAT_VERSION},
                       "config.json")
        store.log_dict(split_summary(link_split), "split_stats.json")
        logged = packaging.log_model(result.checkpoint, without_labels(link_split["test"]),
                                     _input_example(link_split["test"]))

    record = {"run_id": run_id, "experiment_id": mlflow.experiment_id,
              "model_uri": logged.model_uri, "model_id": logged.model_id or ""}
    return dg.Output({**result.to_payload(), "mlflow": record}, metadata={
        **summary,
        "hyperparameters": dg.MetadataValue.json(spec.as_dict()),
        "mlflow_run_id": run_id,
        "mlflow_orphaned_runs_killed": len(orphaned),
        "mlflow_run_url": dg.MetadataValue.url(mlflow.run_url(run_id)),
        "learning_curves": dg.MetadataValue.md(markdown_image(curves, "learning curves")),
    })


RankingConfig = config_for(RankingSpec, "RankingConfig")


def ranking_metadata(ranking: dict, prefix: str = "") -> dict[str, float]:
    """The ranking metrics under ``prefix``, each with its standard error (``_se``; 0 when exact)."""
    return {f"{prefix}{k}{se}": ranking[f"{k}{se}"] for k in RANKING_KEYS for se in ("", "_se")}


def ranking_coverage(ranking: dict) -> dict[str, float]:
    """Whether the ranking metrics are exact (every positive ranked) or a sampled estimate, and of how many."""
    return {"ranking_exact": ranking["exact"], "ranked_positives": ranking["ranked_positives"],
            "ranking_positives": ranking["positives"]}


@dg.asset(group_name=GROUP, partitions_def=daily, code_version=asset_code_version("oracle_metrics"))
def oracle_metrics(config: RankingConfig, world: WorldResource, users: pl.DataFrame, items: pl.DataFrame,
                   link_split: dict) -> dg.Output[dict]:
    """The Bayes-optimal scorer (the generator's true probabilities) on the test split: the
    ceiling no honest model exceeds. AUC, full-catalogue ranking metrics, and its test scores.

    The ranking metrics are exact when the test positives' users x ads fit in ``exact_cells``;
    otherwise an unbiased estimate from a uniform sample of positives, with standard errors
    (:func:`adrel_pipeline.evaluation.metrics.ranking_sample`). The sample is part of the value:
    ``test_auc`` ranks the model on the same positives.

    On data without the generator's truth (real data: users/items lack its latent columns) there
    is no ceiling to compute: the value says so (``available`` False and why), with the ranking
    sample alone, and ``test_auc`` takes the baselines as the reference instead.
    """
    import torch

    from adrel_pipeline.evaluation.metrics import (
        auc,
        oracle_auc,
        oracle_score_matrix,
        oracle_scores,
        ranking_metrics,
        ranking_sample,
    )
    from adrel_pipeline.graph.build import USER_AD
    from adrel_pipeline.world.oracle import missing_truth

    spec = world.spec()
    ranking_spec = config.spec(seed=world.seed)
    test = link_split["test"]
    sample = ranking_sample(test, ranking_spec)
    missing = missing_truth(users, items)
    if missing:
        # Unavailable, not estimated: no stand-in number (0.5, NaN) that could pass for an oracle AUC.
        reason = f"the data has no generator truth (users/items lack {', '.join(missing)})"
        value = {"available": False, "reason": reason, "ranking_positives": sample.population}
        return dg.Output({**value, "ranking_sample": sample.index, "ranking_spec": ranking_spec.as_dict()},
                         metadata={"oracle_available": False, "oracle_unavailable_reason": reason,
                                   "ranking_positives": sample.population,
                                   "ranking_spec": dg.MetadataValue.json(ranking_spec.as_dict())})
    scores = torch.from_numpy(oracle_scores(spec, users, items, test))
    ranking = ranking_metrics(test, oracle_score_matrix(spec, users, items, test), sample=sample,
                              batch_cells=ranking_spec.batch_cells)
    value = {"auc": auc(test[USER_AD].edge_label, scores),
             "val_auc": oracle_auc(spec, users, items, link_split["val"]),
             **ranking_metadata(ranking), **ranking_coverage(ranking)}
    return dg.Output({**value, "available": True, "test_scores": scores, "ranking_sample": sample.index,
                      "ranking_spec": ranking_spec.as_dict()},
                     metadata={**value, "oracle_available": True,
                               "ranking_spec": dg.MetadataValue.json(ranking_spec.as_dict())})


def _champion_comparison(test, scores):
    """Scores the champion on *this* test split beside the new model: the gate compares like with like."""
    from adrel_pipeline.evaluation.metrics import paired_auc
    from adrel_pipeline.graph.build import USER_AD
    from adrel_pipeline.mlops.promotion import Comparison
    from adrel_pipeline.relevance.training import predict

    labels = test[USER_AD].edge_label

    def compare(champion_version: str, model_uri: str) -> tuple[Comparison | None, str]:
        try:
            champion = packaging.load_pyfunc(model_uri).model
        except Exception as err:  # noqa: BLE001 - a version registered by older code may fail in any way
            return None, f"it cannot be loaded by this code ({type(err).__name__}: {err})"
        why = champion.config.mismatch(test)
        if why:
            return None, why
        paired = paired_auc(labels, scores, predict(champion, test))
        return Comparison(champion_version, paired.auc_a, paired.auc_b, paired.se_difference,
                          f"this run's test split ({labels.numel()} labelled pairs)"), ""

    return compare


def _next_day_metrics(model, link_split: dict, next_day, world: WorldResource, users, items,
                      with_oracle: bool = True) -> dict:
    """Day D's model on day D+1's new user→ad pairs (against sampled non-edges), beside the oracle
    when the data has the generator's truth."""
    from adrel_pipeline.evaluation.metrics import auc
    from adrel_pipeline.graph.build import AD, USER
    from adrel_pipeline.graph.split import next_day_pairs
    from adrel_pipeline.relevance.training import predict
    from adrel_pipeline.world import interaction_probability

    test = link_split["test"]
    pairs, labels = next_day_pairs(test, next_day, link_split["spec"]["neg_ratio"], world.seed)
    positives = int(labels.sum())
    if positives == 0 or positives == labels.numel():
        return {"next_day_pairs": labels.numel()}
    metrics = {"next_day_auc": auc(labels, predict(model, test, pairs)), "next_day_pairs": labels.numel(),
               "next_day_new_positives": positives}
    if not with_oracle:
        return metrics
    oracle = interaction_probability(world.spec(), users, items, test[USER].node_id[pairs[0]].numpy(),
                                     test[AD].node_id[pairs[1]].numpy())
    return {**metrics, "next_day_oracle_auc": auc(labels, oracle)}


ModelChecksConfig = config_for(ModelCheckSpec, "ModelChecksConfig")


MODEL_CHECKS = [
    Check("test_auc_above_chance", "The test AUC reaches min_test_auc: the model learned something."),
    Check("test_auc_within_oracle_ceiling",
          "The test AUC is at most the Bayes-optimal AUC on the same pairs + oracle_tolerance_se paired standard "
          "errors (DeLong) of their difference: above the ceiling means leakage. On data without the generator's "
          "truth (no oracle) its non-oracle form runs instead: a test AUC more than leak_margin_over_baseline above "
          "the best baseline's and more than leak_margin_over_val above the model's validation AUC means leakage."),
    Check("no_worse_than_champion",
          "The test AUC trails the champion's on the same test split by at most champion_margin.", blocking=False),
    Check("beats_baselines",
          "The test AUC is not below the best simple baseline's (popularity, logistic regression on observed "
          "features) on the same pairs by more than the paired standard error.", blocking=False),
]


def _newest_model_day(context: dg.AssetExecutionContext) -> str | None:
    days = context.instance.get_materialized_partitions(dg.AssetKey("trained_gat"))
    return max(days) if days else None


@dg.asset(group_name=GROUP, kinds={"mlflow"}, code_version=CODE_VERSION, partitions_def=daily,
          retry_policy=RETRY, check_specs=checks.specs("test_auc", MODEL_CHECKS, daily),
          ins={"next_day": dg.AssetIn("interaction_edges", partition_mapping=next_day_mapping(),
                                      metadata={"optional": True})})
def test_auc(context: dg.AssetExecutionContext, config: ModelChecksConfig, world: WorldResource,
             source: DataSource, mlflow: MlflowTracking, trained_gat: dict, link_split: dict, oracle_metrics: dict,
             users: pl.DataFrame, items: pl.DataFrame, next_day: pl.DataFrame | None):
    """The trained model's AUC and ranking metrics on held-out test links, beside the oracle's, and
    on the next day's new links when that day exists (``next_day_auc``).

    On data without the generator's truth (``oracle_available`` 0) the oracle's metrics are absent,
    not faked: the baselines are the reference, and the leak check runs its non-oracle form.

    Completes the training's MLflow run (final metrics, ROC curve). A model that fails a blocking
    check (no better than chance, or above the Bayes-optimal ceiling) is not registered. Otherwise
    it becomes a new version and the promotion gate runs (:mod:`adrel_pipeline.mlops.promotion`):
    only the newest day may take ``champion``, and only by beating the champion on the same pairs
    by more than the paired standard error. Re-evaluating a registered training re-logs its
    metrics and keeps the registry's decision as it was.
    """
    import torch

    from adrel_pipeline.determinism import deterministic
    from adrel_pipeline.evaluation.baselines import baseline_scores
    from adrel_pipeline.evaluation.metrics import RankingSample, auc, paired_auc, ranking_metrics, roc_curve
    from adrel_pipeline.evaluation.plots import markdown_image, roc_png
    from adrel_pipeline.graph.build import USER_AD
    from adrel_pipeline.relevance.model import load_model
    from adrel_pipeline.relevance.training import TrainResult, predict, train_eval_pairs

    bounds = config.spec()
    model = load_model(TrainResult.from_payload(trained_gat).checkpoint)
    test, val = link_split["test"], link_split["val"]
    labels = test[USER_AD].edge_label
    scores = predict(model, test)
    pairs, train_labels = train_eval_pairs(link_split["train"], world.seed)
    # Stored before the oracle could be unavailable: it was there.
    with_oracle = bool(oracle_metrics.get("available", True))
    versus_oracle = paired_auc(labels, scores, oracle_metrics["test_scores"]) if with_oracle else None
    metrics = {
        "test_auc": versus_oracle.auc_a if with_oracle else auc(labels, scores),
        "val_auc": auc(val[USER_AD].edge_label, predict(model, val)),
        "train_auc": auc(train_labels, predict(model, link_split["train"], pairs)),
        "oracle_available": int(with_oracle),
    }
    if with_oracle:
        metrics |= {"oracle_auc": oracle_metrics["auc"], "test_auc_minus_oracle_se": versus_oracle.se_difference,
                    "auc_to_oracle": metrics["test_auc"] / oracle_metrics["auc"]}
    if "ranking_sample" not in oracle_metrics:
        raise dg.Failure("oracle_metrics was stored by older code, without the ranking sample the model "
                         "must be ranked on: rematerialize oracle_metrics (and test_auc)", allow_retries=False)
    # The oracle's positives, so the two are ranked on the same pairs.
    sample = RankingSample(oracle_metrics["ranking_sample"], int(oracle_metrics["ranking_positives"]))
    with torch.no_grad(), deterministic():
        embedded = model.embed(test)
        ranking = ranking_metrics(test, lambda users: model.score_matrix(embedded, users), sample=sample,
                                  batch_cells=oracle_metrics["ranking_spec"]["batch_cells"])
    metrics |= ranking_metadata(ranking, "test_")
    if with_oracle:
        metrics |= ranking_metadata(oracle_metrics, "oracle_")
    metrics |= ranking_coverage(ranking)
    if next_day is not None:
        metrics |= _next_day_metrics(model, link_split, next_day, world, users, items, with_oracle)
    baselines = baseline_scores(link_split, pairs, train_labels)
    metrics |= {f"baseline_{name}_auc": auc(labels, b) for name, b in baselines.items()}
    best = max(baselines, key=lambda name: metrics[f"baseline_{name}_auc"])
    versus_best = paired_auc(labels, scores, baselines[best])
    # The best baseline on the same pairs: the reference that remains when there is no oracle.
    metrics["test_auc_minus_best_baseline"] = versus_best.difference
    metrics["test_auc_minus_best_baseline_se"] = versus_best.se_difference
    curves = {"GAT": (*roc_curve(labels, scores), metrics["test_auc"])}
    if with_oracle:
        curves["oracle"] = (*roc_curve(labels, oracle_metrics["test_scores"]), metrics["oracle_auc"])
    curves |= {f"baseline: {name}": (*roc_curve(labels, b), metrics[f"baseline_{name}_auc"])
               for name, b in baselines.items()}
    roc = roc_png(curves, title=f"test ROC ({labels.numel()} pairs)")
    if with_oracle:
        leak = rules.auc_within_ceiling(metrics["test_auc"], metrics["oracle_auc"], versus_oracle.se_difference,
                                        bounds.oracle_tolerance_se)
    else:
        leak = rules.auc_without_leak(metrics["test_auc"], metrics["val_auc"], best, versus_best.auc_b,
                                      bounds.leak_margin_over_baseline, bounds.leak_margin_over_val)
    outcomes = {
        "test_auc_above_chance": rules.auc_above_chance(metrics["test_auc"], bounds.min_test_auc),
        "test_auc_within_oracle_ceiling": leak,
    }
    rejected = [o.description for o in outcomes.values() if not o.passed]

    record = trained_gat["mlflow"]
    name = mlflow.registered_model_name
    # Which data the version was trained on: the synthetic world's fingerprint, or the source's.
    data_fingerprint = source.fingerprint(world.spec())
    partition = context.partition_key if context.has_partition_key else None
    with store.run(run_id=record["run_id"]):
        # One step past the last epoch: train_auc and val_auc share names with the per-epoch curves,
        # and MLflow shows the value at the highest step, which must be the kept model's.
        store.log_metrics(metrics, step=trained_gat["epochs_run"] + 1)
        store.log_bytes(roc, "plots/roc_test.png")

        def register() -> registry.Promotion:
            promotion = registry.register_and_promote(
                name, record["run_id"],
                packaging.LoggedModel(record["model_uri"], record["model_id"] or None),
                metrics["test_auc"], _champion_comparison(test, scores),
                tags={"dagster.run_id": context.run.run_id, "code_version": CODE_VERSION,
                      "world_fingerprint": data_fingerprint, "window_days": str(window_days())},
                partition=partition, newest_materialized=_newest_model_day(context),
            )
            store.set_tags({"adrel.world_fingerprint": data_fingerprint})
            if promotion.champion_test_auc is not None:
                store.log_metrics({"champion_test_auc": promotion.champion_test_auc})
            return promotion

        promotion = registry.register_once(name, record["run_id"], rejected, register, context.log)
        if promotion is None:
            yield from checks.emit(None, MODEL_CHECKS, outcomes)

    context.log.info(f"{name} v{promotion.version} -> {promotion.alias}: {promotion.reason}")
    outcomes["no_worse_than_champion"] = rules.auc_vs_champion(
        metrics["test_auc"], promotion.champion_test_auc, bounds.champion_margin)
    outcomes["beats_baselines"] = rules.auc_beats_baseline(metrics["test_auc"], best, versus_best.auc_b,
                                                            versus_best.se_difference)
    extra = {} if promotion.champion_test_auc is None else {"champion_test_auc": promotion.champion_test_auc}
    yield from checks.emit(dg.Output({**metrics, **extra}, metadata={
        **{k: float(v) for k, v in metrics.items()},
        **extra,
        **mlflow.run_metadata(record["run_id"]),
        **mlflow.promotion_metadata(promotion),
        "roc_curve": dg.MetadataValue.md(markdown_image(roc, "ROC curve")),
    }), MODEL_CHECKS, outcomes)
