"""Audience expansion (Actalike): universal user embeddings, one seed list and one classifier head
per advertiser (a dynamic partition), the expanded audiences, and their evaluation beside the
regression- and similarity-based baselines and the generator's oracle.

A run over several advertisers (``--partition-range``, a single-run backfill) trains their heads
together in one multi-head model; an advertiser added later (``audience_inbox_sensor``) runs
alone. Heads are independent, so both give the same head for the same seed list.
"""


import hashlib
import time

import dagster as dg
import polars as pl

from adrel_pipeline.audience import rules as audience_rules
from adrel_pipeline.audience.spec import AudienceSpec
from adrel_pipeline.defs.audience.resources import AudienceResource
from adrel_pipeline.defs.shared import checks
from adrel_pipeline.defs.shared.checks import Check
from adrel_pipeline.defs.shared.params import config_for
from adrel_pipeline.defs.shared.partitions import advertisers as ADVERTISERS
from adrel_pipeline.defs.shared.partitions import asset_backfilled_in_one_run, embedding_days, embedding_window_mapping
from adrel_pipeline.defs.shared.resources import MlflowTracking, WorldResource
from adrel_pipeline.defs.shared.source import DataSource
from adrel_pipeline.mlops import registry, store
from adrel_pipeline.mlops.code_version import asset_code_version

GROUP = "audience"
MODEL_NAME = registry.ACTALIKE_MODEL_NAME
METHODS = ("lr", "lsh", "nn", "nn_unweighted", "oracle")
RETRY = dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL)
# nn above the oracle's ground-truth precision by more than this many standard errors is a leak.
ORACLE_TOLERANCE_SE = 3.0

AudienceConfig = config_for(AudienceSpec, "AudienceConfig")
WINDOW = {"interaction_edges": dg.AssetIn(partition_mapping=embedding_window_mapping())}


def _by_key(context: dg.AssetExecutionContext, values: dict):
    """The output of a run over the context's partitions: the value itself for one partition."""
    keys = context.partition_keys
    return values[keys[0]] if len(keys) == 1 else values


def _own_seed_lists(world: WorldResource, source: DataSource, users: pl.DataFrame) -> pl.DataFrame:
    """A team's seed lists ($ADREL_SOURCE), checked against the pipeline's users."""
    from adrel_pipeline.sources import SourceDataError

    seeds = source.open(world.spec(), users=users).seed_lists()
    if seeds is None:
        raise SourceDataError(f"{source.source}: no seed_lists table: add seed_lists.csv (advertiser_id, user_id[, "
                              "impressions, clicks]) or seed_lists/<advertiser_id>.csv to run audience expansion")
    return seeds


def _own_advertisers(world: WorldResource, source: DataSource, users: pl.DataFrame) -> pl.DataFrame:
    from adrel_pipeline.audience.seed_lists import advertisers_of

    return advertisers_of(_own_seed_lists(world, source, users))


def _per_advertiser(value) -> list[dict]:
    """A per-advertiser input as a list: one partition loads as the value itself, several as a dict."""
    return [value] if "advertiser_id" in value else [value[k] for k in sorted(value)]


def _by_advertiser(seed_lists: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The run's seed lists (one table over its partitions) as ``{advertiser_id: seed list}``."""
    return {key: table for (key,), table in seed_lists.partition_by("advertiser_id", as_dict=True).items()}


def _seed_hash(seed: pl.DataFrame) -> str:
    """Identifies a seed list's content: two models are compared only on identical lists."""
    return hashlib.sha256(seed.select("user_id", "impressions", "clicks").write_csv().encode()).hexdigest()[:12]


@asset_backfilled_in_one_run(group_name=GROUP, kinds={"polars"}, code_version=asset_code_version("advertisers"))
def advertisers(context: dg.AssetExecutionContext, world: WorldResource, source: DataSource, users: pl.DataFrame):
    """The world's advertisers: kind (taste, multimodal, traits), size bucket, seed-list and true
    audience size; on a team's own data, the advertisers of its ``seed_lists`` (size bucket and
    seed-list size; kind and audience unknown). Materializing it registers each as a partition of
    ``advertisers``."""
    from adrel_pipeline.sources import SourceDataError
    from adrel_pipeline.world import WorldConfigError
    from adrel_pipeline.world.advertisers import generate_advertisers

    try:
        table = generate_advertisers(world.spec(), users) if source.synthetic else _own_advertisers(world, source, users)
    except (WorldConfigError, SourceDataError) as err:
        raise dg.Failure(str(err), allow_retries=False) from err
    counts = table.group_by("bucket", "kind").len().sort("bucket", "kind")
    yield dg.Output(table, metadata={
        "dagster/row_count": table.height,
        "buckets": dg.MetadataValue.json(sorted({int(b) for b in table["bucket"]})),
        "advertisers_by_bucket_and_kind": dg.MetadataValue.md(f"```\n{counts}\n```"),
    })
    # After the table is written: a partition never exists without its advertiser's truth.
    new = [a for a in table["advertiser_id"] if not context.instance.has_dynamic_partition(ADVERTISERS.name, a)]
    if new:
        context.instance.add_dynamic_partitions(ADVERTISERS.name, new)
        context.log.info(f"registered {len(new)} advertiser partitions ({new[0]} .. {new[-1]})")


@asset_backfilled_in_one_run(group_name=GROUP, kinds={"pytorch", "mlflow"}, ins=WINDOW, retry_policy=RETRY,
                             code_version=asset_code_version("user_embeddings"))
def user_embeddings(context: dg.AssetExecutionContext, config: AudienceConfig, world: WorldResource,
                    source: DataSource, mlflow: MlflowTracking, users: pl.DataFrame, items: pl.DataFrame,
                    interaction_edges: pl.DataFrame) -> dg.Output[dict]:
    """Universal user embeddings (LightGCN on organic user→pin interactions of the embedding window,
    ``$ADREL_EMBEDDING_DAY``), L2-normalised, with how good they are: held-out organic-link AUC, and
    the share of the latent taste a linear probe recovers from them versus from raw features (the
    generator's truth: NaN, unavailable, on a team's own data)."""
    from adrel_pipeline.audience.embeddings import linear_probe_r2, train_user_embeddings
    from adrel_pipeline.audience.features import raw_features
    from adrel_pipeline.evaluation.audience_plots import embedding_loss_png
    from adrel_pipeline.evaluation.plots import markdown_image
    from adrel_pipeline.world.simulation import user_taste

    spec = config.spec(seed=world.seed)
    with store.run(mlflow.experiment_id, run_name=f"user_embeddings-{context.run.run_id[:8]}",
                   tags=mlflow.dagster_tags(context)) as run_id:
        store.log_params({"world": world.spec().as_dict(), "audience": spec.as_dict()})
        result = train_user_embeddings(users, items, interaction_edges, spec)
        quality = {"link_auc": result.link_auc, "taste_probe_r2": float("nan"),
                   "raw_features_taste_probe_r2": float("nan"), "train_seconds": round(result.seconds, 2)}
        if "taste" in users.columns:  # the generator's latent taste: the synthetic world only
            taste = user_taste(users.sort("user_id"))
            _, raw = raw_features(users.sort("user_id"), items, interaction_edges, source.features(world.spec()))
            quality["taste_probe_r2"] = linear_probe_r2(result.embeddings.numpy(), taste, world.seed)
            quality["raw_features_taste_probe_r2"] = linear_probe_r2(raw, taste, world.seed)
        store.log_metrics(quality)
        store.log_curves(result.history, ("loss",))
        curve = embedding_loss_png(result.history["loss"])
        store.log_bytes(curve, "plots/embedding_loss.png")
    import torch

    value = {"user_ids": torch.from_numpy(result.user_ids.astype("int64")), "embeddings": result.embeddings,
             "state_dict": result.state, "quality": quality}
    return dg.Output(value, metadata={
        **quality,
        "dimension": int(result.embeddings.shape[1]),
        "organic_pairs": result.num_edges,
        "days": dg.MetadataValue.json(embedding_days()),
        "mlflow_run_id": run_id,
        "mlflow_run_url": dg.MetadataValue.url(mlflow.run_url(run_id)),
        "loss_curve": dg.MetadataValue.md(markdown_image(curve, "embedding training loss")),
    })


# One check per advertiser partition each: with the default sqlite event storage every check result
# is an event written to disk (~20 ms), per advertiser. Uniqueness is enforced where lists come in:
# the world draws without replacement, uploads are validated by audience_inbox_sensor.
SEED_LIST_CHECKS = [Check("seed_users_known", "Every seed user is a user of the platform.")]


@asset_backfilled_in_one_run(group_name=GROUP, kinds={"polars"}, partitions_def=ADVERTISERS,
                             code_version=asset_code_version("seed_lists"),
                             check_specs=checks.specs("seed_lists", SEED_LIST_CHECKS, ADVERTISERS))
def seed_lists(context: dg.AssetExecutionContext, world: WorldResource, source: DataSource,
               audience: AudienceResource, users: pl.DataFrame, advertisers: pl.DataFrame):
    """An advertiser's seed list (advertiser_id, user_id, impressions, clicks): drawn by the
    world's true affinity for the world's advertisers (on a team's own data: its ``seed_lists``),
    else the accepted upload."""
    from adrel_pipeline.sources import SourceDataError
    from adrel_pipeline.world.advertisers import generate_seed_list

    spec = world.spec()
    roster = set(advertisers["advertiser_id"])
    own = {}
    if not source.synthetic and roster & set(context.partition_keys):
        try:
            own = _by_advertiser(_own_seed_lists(world, source, users))
        except SourceDataError as err:
            raise dg.Failure(str(err), allow_retries=False) from err
    tables = {}
    for key in context.partition_keys:
        if key in own:
            tables[key] = own[key]
        elif key in roster and source.synthetic:
            tables[key] = generate_seed_list(spec, users, key).select(
                pl.lit(key).alias("advertiser_id"), "user_id", "impressions", "clicks")
        elif audience.accepted_path(key).exists():
            tables[key] = pl.read_parquet(audience.accepted_path(key))
        else:
            raise dg.Failure(
                f"advertiser {key} is not one of the source's advertisers and has no accepted seed list at "
                f"{audience.accepted_path(key)}: drop {key}.csv into {audience.inbox} (audience_inbox_sensor "
                f"validates it), or remove the partition", allow_retries=False)
    sizes = {k: t.height for k, t in tables.items()}
    yield from checks.emit_by_partition(context, dg.Output(_by_key(context, tables), metadata={
        "seed_users": sum(sizes.values()),
        "advertisers_in_run": len(tables),
        "smallest_list": min(sizes.values()),
        "largest_list": max(sizes.values()),
    }), SEED_LIST_CHECKS, {
        key: {"seed_users_known": audience_rules.seed_users_known(t, users)} for key, t in tables.items()
    })


def _buckets(keys, advertisers: pl.DataFrame, seeds: dict[str, pl.DataFrame]) -> dict[str, int]:
    """Each advertiser's size bucket: the world's, or for an uploaded list the nearest bucket (log scale)."""
    import math

    world = dict(zip(advertisers["advertiser_id"], advertisers["bucket"]))
    sizes = sorted(set(world.values()))
    return {k: int(world[k]) if k in world else
            min(sizes, key=lambda b: abs(math.log(b) - math.log(seeds[k].height))) for k in keys}


def _truth(spec, users: pl.DataFrame, keys, advertisers: pl.DataFrame) -> dict:
    """The generator's truth for the world's advertisers (affinity, true audience); none for uploads."""
    from adrel_pipeline.world.advertisers import audience_affinity, true_audience

    known = [k for k in keys if k in set(advertisers["advertiser_id"])]
    if not known:
        return {}
    affinity = audience_affinity(spec, users, known)
    return {k: (affinity[i], true_audience(spec, users, k)) for i, k in enumerate(known)}


@asset_backfilled_in_one_run(group_name=GROUP, kinds={"pytorch", "scikitlearn", "mlflow"},
                             partitions_def=ADVERTISERS, ins=WINDOW, retry_policy=RETRY,
                             code_version=asset_code_version("audience_models"))
def audience_models(context: dg.AssetExecutionContext, config: AudienceConfig, world: WorldResource,
                    source: DataSource, mlflow: MlflowTracking, user_embeddings: dict, seed_lists: pl.DataFrame,
                    advertisers: pl.DataFrame, users: pl.DataFrame, items: pl.DataFrame,
                    interaction_edges: pl.DataFrame):
    """Per advertiser: the offline evaluation of every method (90/10 split of the seed list, the
    blog's recall@k and precision@k, ground-truth precision, the oracle) and the production head
    (the combined NN trained on the whole list). One MLflow run per training; the heads are
    registered as a version of ``adrel-actalike`` and go through the promotion gate."""
    from adrel_pipeline.audience.training import AudienceData, offline_evaluation, train_production
    from adrel_pipeline.evaluation.audience_plots import gain_bars_png
    from adrel_pipeline.evaluation.expansion import summarise
    from adrel_pipeline.evaluation.plots import markdown_image

    spec = config.spec(seed=world.seed)
    keys = list(context.partition_keys)
    seeds = _by_advertiser(seed_lists)
    buckets = _buckets(keys, advertisers, seeds)
    data = AudienceData.build(users, items, interaction_edges, user_embeddings, source.features(world.spec()))
    # The generator's truth (oracle, ground-truth precision): the synthetic world's advertisers only.
    truth = _truth(world.spec(), users, keys, advertisers) if source.synthetic else {}

    with store.run(mlflow.experiment_id, run_name=f"audience_models-{context.run.run_id[:8]}",
                   tags=mlflow.dagster_tags(context)) as run_id:
        store.log_params({"world": world.spec().as_dict(), "audience": spec.as_dict(),
                          "run": {"advertisers": len(keys)}})
        seconds: dict[str, float] = {}
        per_advertiser = offline_evaluation(data, seeds, buckets, truth, spec,
                                            log=lambda message: context.log.info(message), seconds=seconds)
        start = time.perf_counter()
        heads = train_production(data, seeds, spec)
        seconds["production_heads"] = time.perf_counter() - start
        summary = summarise(per_advertiser)
        metrics = _summary_metrics(summary)
        store.log_metrics(metrics | {f"seconds/{k}": v for k, v in seconds.items()})
        plots = {metric: gain_bars_png(summary, metric) for metric in ("recall", "precision")}
        for metric, png in plots.items():
            store.log_bytes(png, f"plots/{metric}_gain_vs_lr.png")
        store.log_text(_markdown_table(summary), "audience_eval.md")
        recorded = {k: {"seed_hash": _seed_hash(seeds[k]), "bucket": buckets[k],
                        "nn_recall": float(per_advertiser.filter((pl.col("advertiser_id") == k)
                                                                 & (pl.col("method") == "nn"))["recall"][0])}
                    for k in keys}
        store.log_dict(recorded, "per_advertiser.json")
        logged = _log_actalike(heads, user_embeddings, keys)
        promotion = _register(context, mlflow, source.fingerprint(world.spec()), run_id, logged, recorded)

    values = {}
    for k in keys:
        rows = per_advertiser.filter(pl.col("advertiser_id") == k)
        values[k] = {"advertiser_id": k, "bucket": buckets[k], "seed_size": seeds[k].height, "head": heads[k],
                     "metrics": {m: {c: float(v) for c, v in zip(("recall", "precision", "gt_precision"), r)}
                                 for m, *r in rows.select("method", "recall", "precision", "gt_precision").rows()}}
    context.log.info(f"{MODEL_NAME} v{promotion.version} -> {promotion.alias}: {promotion.reason}")
    return dg.Output(_by_key(context, values), metadata={
        **metrics,
        **{f"seconds/{k}": round(v, 3) for k, v in seconds.items()},
        "advertisers_in_run": len(keys),
        **mlflow.run_metadata(run_id),
        **mlflow.promotion_metadata(promotion, MODEL_NAME),
        "table": dg.MetadataValue.md(_markdown_table(summary)),
        "recall_gain_vs_lr": dg.MetadataValue.md(markdown_image(plots["recall"], "recall@k gain over lr")),
    })


def _summary_metrics(summary: pl.DataFrame) -> dict[str, float]:
    """``recall_at_k/<method>`` and ``precision_at_k/<method>`` overall, ``.../<bucket>`` per size bucket,
    and ground-truth precision beside them. NaN where a value is undefined: ground truth for uploaded
    lists, precision for a bucket whose expansions met neither holdout nor random users."""
    out = {}
    for row in summary.iter_rows(named=True):
        suffix = "" if row["bucket"] == "all" else f"/{row['bucket']}"
        for metric, name in (("recall", "recall_at_k"), ("precision", "precision_at_k"),
                             ("gt_precision", "gt_precision_at_k")):
            value = row[metric]
            out[f"{name}/{row['method']}{suffix}"] = float("nan") if value is None else float(value)
    return out


def _markdown_table(summary: pl.DataFrame) -> str:
    """Methods × buckets: recall@k, precision@k (their gain over lr) and ground-truth precision."""
    def cell(value, gain=None):
        if value is None:
            return "–"
        return f"{value:.3f}" + ("" if gain is None else f" ({gain:+.0%})")

    lines = ["| bucket | method | recall@k (vs lr) | precision@k (vs lr) | gt precision@k | advertisers |",
             "|---|---|---|---|---|---|"]
    for row in summary.iter_rows(named=True):
        baseline = row["method"] == "lr"
        lines.append(f"| {row['bucket']} | {row['method']} | "
                     f"{cell(row['recall'], None if baseline else row['recall_gain_vs_lr'])} | "
                     f"{cell(row['precision'], None if baseline else row['precision_gain_vs_lr'])} | "
                     f"{cell(row['gt_precision'])} | {row['n_advertisers']} |")
    return "\n".join(lines)


def _log_actalike(heads: dict, user_embeddings: dict, keys) -> object:
    import pandas as pd

    from adrel_pipeline.audience.pyfunc_model import PYFUNC_FILE, model_signature
    from adrel_pipeline.mlops import packaging

    example = pd.DataFrame({"advertiser_id": [keys[0]] * 3,
                            "user_id": user_embeddings["user_ids"][:3].numpy().astype("int64")})
    artifacts = {"heads": {k: heads[k] for k in keys},
                 "embeddings": {"user_ids": user_embeddings["user_ids"], "embeddings": user_embeddings["embeddings"]}}
    return packaging.log_pyfunc(PYFUNC_FILE, artifacts, model_signature(), example)


def _register(context, mlflow: MlflowTracking, data_fingerprint: str, run_id: str, logged, recorded: dict):
    """The promotion gate of ``adrel-gat`` on the audience metric: the new heads take ``champion``
    only if their holdout recall beats the champion's on the same advertisers' identical seed lists
    by more than the paired standard error; a version covering other advertisers is not comparable."""
    from adrel_pipeline.evaluation.expansion import paired_mean_difference
    from adrel_pipeline.mlops.promotion import Comparison

    def compare(champion_version: str, model_uri: str):
        version = store.client().get_model_version(MODEL_NAME, champion_version)
        try:
            theirs = store.load_dict(version.run_id, "per_advertiser.json")
        except Exception as err:  # noqa: BLE001 - a version logged by older code may lack the record
            return None, f"its per-advertiser record cannot be read ({type(err).__name__})"
        shared = sorted(k for k in recorded if k in theirs and theirs[k]["seed_hash"] == recorded[k]["seed_hash"])
        if not shared:
            return None, "it covers no advertiser of this run with the same seed list"
        ours = [recorded[k]["nn_recall"] for k in shared]
        champion = [theirs[k]["nn_recall"] for k in shared]
        _, se = paired_mean_difference(ours, champion)
        return Comparison(champion_version, sum(ours) / len(ours), sum(champion) / len(champion), se,
                          f"the holdouts of {len(shared)} advertisers", metric="mean holdout recall@k",
                          se_method="over advertisers"), ""

    # Each training (each attempt too) opens its own MLflow run, so its run is never registered yet.
    mean_recall = sum(r["nn_recall"] for r in recorded.values()) / len(recorded)
    promotion = registry.register_and_promote(
        MODEL_NAME, run_id, logged, mean_recall, compare,
        tags={"dagster.run_id": context.run.run_id, "world_fingerprint": data_fingerprint,
              "advertisers": ",".join(sorted(recorded))[:5000], "embedding_days": ",".join(embedding_days())},
        score_name="mean_holdout_recall")
    store.set_tags({"adrel.model_version": promotion.version, "adrel.promotion": promotion.alias,
                    "adrel.promotion_reason": promotion.reason})
    return promotion


EXPANSION_CHECKS = [Check("expansion_excludes_seed_users", "No seed user is in its advertiser's expansion.")]


@asset_backfilled_in_one_run(group_name=GROUP, kinds={"polars"}, partitions_def=ADVERTISERS, ins=WINDOW,
                             code_version=asset_code_version("audience_expansions"),
                             check_specs=checks.specs("audience_expansions", EXPANSION_CHECKS, ADVERTISERS))
def audience_expansions(context: dg.AssetExecutionContext, config: AudienceConfig, world: WorldResource,
                        source: DataSource, user_embeddings: dict,
                        audience_models, seed_lists: pl.DataFrame, users: pl.DataFrame, items: pl.DataFrame,
                        interaction_edges: pl.DataFrame):
    """The top-k active users per advertiser (k = expansion_multiplier × seed size), excluding the
    seed list, by the production head: (advertiser_id, user_id, score, rank), one vectorised pass."""
    from adrel_pipeline.audience.training import AudienceData, expand

    spec = config.spec()
    models = {m["advertiser_id"]: m for m in _per_advertiser(audience_models)}
    seeds = _by_advertiser(seed_lists)
    data = AudienceData.build(users, items, interaction_edges, user_embeddings, source.features(world.spec()))
    sizes = {k: max(1, round(spec.expansion_multiplier * seeds[k].height)) for k in context.partition_keys}
    tables = expand(data, {k: models[k]["head"] for k in context.partition_keys}, seeds, sizes)
    empty = [k for k, t in tables.items() if t.height == 0]
    if empty:  # so that a materialized expansion is never empty (every_advertiser_has_expansion)
        raise dg.Failure(f"no eligible users left to expand for {empty[:5]}: every active user is in their seed "
                         "lists", allow_retries=False)
    yield from checks.emit_by_partition(context, dg.Output(_by_key(context, tables), metadata={
        "expanded_users": sum(t.height for t in tables.values()),
        "advertisers_in_run": len(tables),
        "expansion_multiplier": spec.expansion_multiplier,
    }), EXPANSION_CHECKS, {
        k: {"expansion_excludes_seed_users": audience_rules.expansion_excludes_seeds(t, seeds[k])}
        for k, t in tables.items()
    })


EVAL_CHECKS = [
    Check("metrics_in_unit_interval", "Every recall@k and precision@k is within [0, 1]."),
    Check("nn_not_above_oracle",
          f"The combined NN's ground-truth precision is not above the oracle's by more than {ORACLE_TOLERANCE_SE:g} "
          "paired standard errors over advertisers: above the ceiling means it saw the truth."),
    Check("every_advertiser_has_expansion", "Every registered advertiser has a materialized, non-empty expansion."),
]


@asset_backfilled_in_one_run(group_name=GROUP, kinds={"mlflow"}, code_version=asset_code_version("audience_eval"),
                             deps=["audience_expansions"], check_specs=checks.specs("audience_eval", EVAL_CHECKS),
                             ins={"audience_models": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())})
def audience_eval(context: dg.AssetExecutionContext, mlflow: MlflowTracking, audience_models) -> dg.Output:
    """Every advertiser's offline evaluation, by method (lr, lsh, nn, nn_unweighted, oracle) and
    seed-list size bucket: absolute, relative gain over lr (the blog's Figures 4–6), and
    ground-truth precision. Metadata ``recall_at_k/<method>[/<bucket>]``, ``precision_at_k/...``."""
    from adrel_pipeline.evaluation.audience_plots import absolute_bars_png, gain_bars_png
    from adrel_pipeline.evaluation.expansion import paired_mean_difference, summarise
    from adrel_pipeline.evaluation.plots import markdown_image

    models = _per_advertiser(audience_models)
    rows = [{"advertiser_id": m["advertiser_id"], "bucket": m["bucket"], "method": method, **values}
            for m in models for method, values in m["metrics"].items()]
    per_advertiser = pl.DataFrame(rows).with_columns(pl.col("gt_precision").fill_nan(None))
    summary = summarise(per_advertiser)
    metrics = _summary_metrics(summary)
    plots = {"recall_gain_vs_lr": gain_bars_png(summary, "recall"),
             "precision_gain_vs_lr": gain_bars_png(summary, "precision"),
             "recall_by_bucket": absolute_bars_png(summary, "recall"),
             "gt_precision_by_bucket": absolute_bars_png(summary, "gt_precision")}
    table = _markdown_table(summary)
    with store.run(mlflow.experiment_id, run_name=f"audience_eval-{context.run.run_id[:8]}",
                   tags=mlflow.dagster_tags(context)) as run_id:
        store.log_metrics(metrics)
        for name, png in plots.items():
            store.log_bytes(png, f"plots/{name}.png")
        store.log_text(table, "audience_eval.md")

    with_truth = per_advertiser.filter(pl.col("gt_precision").is_not_null())
    nn = with_truth.filter(pl.col("method") == "nn").sort("advertiser_id")["gt_precision"].to_list()
    oracle = with_truth.filter(pl.col("method") == "oracle").sort("advertiser_id")["gt_precision"].to_list()
    difference, se = paired_mean_difference(nn, oracle) if nn else (float("nan"), float("nan"))
    registered = context.instance.get_dynamic_partitions(ADVERTISERS.name)
    expanded = context.instance.get_materialized_partitions(dg.AssetKey("audience_expansions"))
    outcomes = {
        "metrics_in_unit_interval": audience_rules.metrics_in_unit_interval(
            {k: v for k, v in metrics.items() if not k.startswith("gt_")}),
        "nn_not_above_oracle": audience_rules.not_above_oracle("nn", difference, se, ORACLE_TOLERANCE_SE),
        "every_advertiser_has_expansion": audience_rules.every_advertiser_expanded(registered, expanded),
    }
    yield from checks.emit(dg.Output(summary, metadata={
        **metrics,
        "advertisers": len(models),
        "table": dg.MetadataValue.md(table),
        **{name: dg.MetadataValue.md(markdown_image(png, name.replace("_", " "))) for name, png in plots.items()},
        "mlflow_run_id": run_id,
        "mlflow_run_url": dg.MetadataValue.url(mlflow.run_url(run_id)),
    }), EVAL_CHECKS, outcomes)
