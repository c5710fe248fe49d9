"""Audience expansion on one or more worlds, without Dagster, through the library the assets call.

    python benchmarks/audience.py [--seeds 0 1 2] [--num-users 10000 ...] [--embedding-epochs 40 ...]
                                  [--min-random-set 100] [--plots DIR]

Per world seed, what the audience group of ``make run`` does, in-process and in its order: the
world's first 7 days (window ending 2026-01-07); ``train_user_embeddings`` (timed; held-out
organic-link AUC, linear-probe R² of the latent taste from the embeddings and from the raw
features); ``AudienceData.build``; every advertiser's seed list (``generate_seed_list``, as the
``seed_lists`` asset), its bucket (``generate_advertisers``) and truth (``audience_affinity`` /
``true_audience``, as the assets' ``_truth``); ``training.offline_evaluation`` (lr, lsh, nn,
nn_unweighted and the oracle on each advertiser's 90/10 split, per-method seconds);
``train_production`` (timed); scoring every user for every advertiser in one pass
(``score_heads``, best of 3) and ``expand`` (top k = expansion_multiplier x seed size).

The audience spec's seed is the world's, as in the pipeline (``config.spec(seed=world.seed)``).
Printed: per seed the overall row of each method, then the mean over seeds per method x bucket
and per advertiser kind, and the paired differences nn - lr, nn - lsh, nn - nn_unweighted and
nn - oracle (mean over advertisers with its paired SE) per seed and averaged over seeds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import polars as pl

# sklearn and torch_geometric, which the timed steps import lazily, imported up front: the timings exclude imports.
import sklearn.linear_model  # noqa: F401
import torch
import torch_geometric.nn.models  # noqa: F401

import adrel_pipeline.evaluation.metrics
import adrel_pipeline.relevance.training  # noqa: F401
from adrel_pipeline.audience import training
from adrel_pipeline.audience.embeddings import linear_probe_r2, train_user_embeddings
from adrel_pipeline.audience.features import raw_features
from adrel_pipeline.audience.methods import score_heads
from adrel_pipeline.audience.spec import K_MULTIPLIERS, AudienceSpec
from adrel_pipeline.audience.training import (
    AudienceData,
    expand,
    offline_evaluation,
    stack_heads,
    train_production,
)
from adrel_pipeline.evaluation.expansion import BASELINE, METRICS, paired_mean_difference, summarise
from adrel_pipeline.world import WorldSpec, generate_interactions, generate_items, generate_users, window
from adrel_pipeline.world.advertisers import audience_affinity, generate_advertisers, generate_seed_list, true_audience
from adrel_pipeline.world.simulation import user_taste

DAY = dt.date(2026, 1, 7)
WORLD_FIELDS = ("num_users", "num_items", "num_interactions", "num_advertisers")
PAIRS = (("nn", "lr"), ("nn", "lsh"), ("nn", "nn_unweighted"), ("nn", "oracle"))
SCORING_REPEATS = 3


def timed(label: str, timings: dict, fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    timings[label] = time.perf_counter() - start
    return out


def run(world: WorldSpec, spec: AudienceSpec) -> dict:
    """One world: per-advertiser rows (with kind), their summary, embedding quality, timings."""
    timings: dict[str, float] = {}
    users, items = generate_users(world), generate_items(world)
    interactions = generate_interactions(world, users, items, window(DAY, 7))
    # The truth (audience_affinity, true_audience) comes in the frame's row order, AudienceData's
    # rows are sorted by user_id: the assets rely on the users asset being sorted too.
    if not users["user_id"].is_sorted():
        raise SystemExit("users are not sorted by user_id: the truth would not align with AudienceData's rows")

    result = timed("embeddings", timings, train_user_embeddings, users, items, interactions, spec)
    taste = user_taste(users)  # rows as the embeddings' (users' row order)
    _, raw = raw_features(users, items, interactions)
    quality = {"link_auc": result.link_auc, "num_edges": result.num_edges,
               "users_without_edges": result.users_without_edges,
               "probe_r2_embeddings": timed("probe", timings, linear_probe_r2, result.embeddings.numpy(), taste,
                                            spec.seed),
               "probe_r2_raw": linear_probe_r2(raw, taste, spec.seed),
               "embedding_final_loss": result.history["loss"][-1]}

    data = timed("audience_data", timings, AudienceData.build, users, items, interactions,
                 {"user_ids": torch.from_numpy(result.user_ids.astype(np.int64)), "embeddings": result.embeddings})
    advertisers = generate_advertisers(world, users)
    keys = advertisers["advertiser_id"].to_list()
    start = time.perf_counter()
    seeds = {k: generate_seed_list(world, users, k).select(pl.lit(k).alias("advertiser_id"), "user_id", "impressions",
                                                           "clicks") for k in keys}
    timings["seed_lists"] = time.perf_counter() - start
    buckets = {k: int(b) for k, b in zip(keys, advertisers["bucket"], strict=True)}
    start = time.perf_counter()
    affinity = audience_affinity(world, users, keys)
    truth = {k: (affinity[i], true_audience(world, users, k)) for i, k in enumerate(keys)}
    timings["truth"] = time.perf_counter() - start

    seconds: dict[str, float] = {}
    per_advertiser = timed("offline_evaluation", timings, offline_evaluation, data, seeds, buckets, truth, spec,
                           seconds=seconds)
    timings |= {f"  {k}": v for k, v in seconds.items()}
    heads = timed("production_heads", timings, train_production, data, seeds, spec)

    state = stack_heads([heads[k] for k in keys])
    scoring = []
    for _ in range(SCORING_REPEATS):
        start = time.perf_counter()
        scores = score_heads(state, data.embeddings)
        scoring.append(time.perf_counter() - start)
    timings["score_heads"] = min(scoring)
    sizes = {k: max(1, round(spec.expansion_multiplier * seeds[k].height)) for k in keys}
    expansions = timed("expand", timings, expand, data, heads, seeds, sizes)
    scored_per_second = scores.numel() / timings["score_heads"]
    expanded_users = sum(t.height for t in expansions.values())

    per_advertiser = per_advertiser.join(advertisers.select("advertiser_id", "kind"), on="advertiser_id")
    return {"per_advertiser": per_advertiser, "summary": summarise(per_advertiser), "quality": quality,
            "timings": timings, "scored_per_second": scored_per_second, "expanded_users": expanded_users,
            "num_users": data.user_ids.size, "active": int(data.active.sum()),
            "advertisers": len(keys)}


def _fmt(value, spec: str) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def mean_summary(summaries: list[pl.DataFrame]) -> pl.DataFrame:
    """``summarise``'s frame averaged over seeds per (method, bucket) (null values left out), its
    gains over lr recomputed from those means (a ratio of means, as ``summarise``), in its row order;
    ``recall_per_seed``: the seeds' recalls."""
    order = summaries[0].select("method", "bucket").with_row_index("_order")
    stacked = pl.concat([s.with_columns(pl.lit(i).alias("_seed")) for i, s in enumerate(summaries)])
    means = stacked.group_by("method", "bucket").agg(
        *(pl.col(m).mean() for m in METRICS), pl.col("n_advertisers").mean(),
        pl.col("recall").sort_by("_seed").alias("recall_per_seed"))
    baseline = means.filter(pl.col("method") == BASELINE).select(
        "bucket", *(pl.col(m).alias(f"{m}_lr") for m in METRICS))
    means = means.join(baseline, on="bucket", how="left").with_columns(
        pl.when(pl.col(f"{m}_lr") > 0).then(pl.col(m) / pl.col(f"{m}_lr") - 1.0).alias(f"{m}_gain_vs_lr")
        for m in METRICS)
    return (order.join(means, on=["method", "bucket"], how="left").sort("_order")
            .select("method", "bucket", *METRICS, *(f"{m}_gain_vs_lr" for m in METRICS), "n_advertisers",
                    "recall_per_seed"))


def summary_table(summary: pl.DataFrame, per_seed: bool = False) -> str:
    head = "| method | bucket | advertisers | recall | precision | gt precision | recall vs lr | precision vs lr |"
    rule = "|---|---|---|---|---|---|---|---|"
    if per_seed:
        head, rule = head + " recall per seed |", rule + "---|"
    lines = [head, rule]
    for r in summary.iter_rows(named=True):
        line = (f"| {r['method']} | {r['bucket']} | {r['n_advertisers']:g} | {_fmt(r['recall'], '.4f')} | "
                f"{_fmt(r['precision'], '.4f')} | {_fmt(r['gt_precision'], '.4f')} | "
                f"{_fmt(r['recall_gain_vs_lr'], '+.1%')} | {_fmt(r['precision_gain_vs_lr'], '+.1%')} |")
        if per_seed:
            line += " " + " / ".join(_fmt(v, ".3f") for v in r["recall_per_seed"]) + " |"
        lines.append(line)
    return "\n".join(lines)


def by_kind(per_advertiser: pl.DataFrame) -> pl.DataFrame:
    return (per_advertiser.with_columns(pl.col(m).cast(pl.Float64).fill_nan(None) for m in METRICS)
            .group_by("kind", "method").agg(pl.len().alias("advertisers"), *(pl.col(m).mean() for m in METRICS)))


def kind_table(runs: list[dict]) -> str:
    methods = list(dict.fromkeys(runs[0]["summary"]["method"].to_list()))
    frame = (pl.concat([by_kind(r["per_advertiser"]) for r in runs])
             .group_by("kind", "method").agg(pl.col("advertisers").mean(), *(pl.col(m).mean() for m in METRICS))
             .with_columns(pl.col("method").replace_strict({m: i for i, m in enumerate(methods)},
                                                           return_dtype=pl.Int64).alias("_m"))
             .sort("kind", "_m"))
    lines = ["| kind | method | advertisers | " + " | ".join(METRICS) + " |",
             "|---|---|---|" + "---|" * len(METRICS)]
    for r in frame.iter_rows(named=True):
        lines.append(f"| {r['kind']} | {r['method']} | {r['advertisers']:g} | "
                     + " | ".join(_fmt(r[m], ".4f") for m in METRICS) + " |")
    return "\n".join(lines)


def paired(per_advertiser: pl.DataFrame) -> dict[tuple[str, str, str], tuple[float, float]]:
    """``(metric, a, b) -> (mean of a - b over advertisers, paired SE)``."""
    out = {}
    for metric in METRICS:
        wide = per_advertiser.pivot(on="method", index="advertiser_id", values=metric)
        for a, b in PAIRS:
            out[metric, a, b] = paired_mean_difference(wide[a], wide[b])
    return out


def paired_table(runs: list[dict], seeds: list[int]) -> str:
    """Per seed and the mean over seeds; the mean's SE combines the seeds' (independent worlds):
    sqrt(sum SE_s^2) / S."""
    per_seed = [paired(r["per_advertiser"]) for r in runs]

    def cell(mean: float, se: float) -> str:
        z = mean / se if se and not math.isnan(se) else float("nan")
        return f"{mean:+.4f} ({se:.4f}, {z:+.1f} SE)"

    columns = [f"seed {s}" for s in seeds] + (["mean over seeds"] if len(seeds) > 1 else [])
    lines = ["| metric | difference | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for key in per_seed[0]:
        metric, a, b = key
        cells = [cell(*p[key]) for p in per_seed]
        if len(seeds) > 1:
            means, ses = zip(*(p[key] for p in per_seed), strict=True)
            cells.append(cell(float(np.mean(means)), math.sqrt(sum(se**2 for se in ses)) / len(ses)))
        lines.append(f"| {metric} | {a} − {b} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = WorldSpec()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="world seeds (each also the audience spec's seed, as in the pipeline)")
    for name in WORLD_FIELDS:
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    for name, default in AudienceSpec().as_dict().items():
        if name != "seed":
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    parser.add_argument("--min-random-set", type=int, default=training.MIN_RANDOM_SET,
                        help="R holds max(|H|, this) users, its hits scaled by |H| / |R| (the pipeline's choice: "
                             "with |R| = |H| = 3, precision@k is 0/0 for most k); 0: the blog's |R| = |H|")
    parser.add_argument("--plots", type=Path, help="write the gain and absolute bar charts (PNG) of the mean "
                                                   "over seeds here")
    args = parser.parse_args(argv)
    # The evaluation reads this module constant at each split (training._split); set for the
    # benchmark only, so that the random set's size need not be a parameter of the library.
    training.MIN_RANDOM_SET = args.min_random_set
    audience = {k: getattr(args, k) for k in AudienceSpec().as_dict() if k != "seed"}

    runs = []
    for seed in args.seeds:
        world = WorldSpec(**{name: getattr(args, name) for name in WORLD_FIELDS}, seed=seed)
        r = run(world, AudienceSpec(**audience, seed=seed))
        runs.append(r)
        print(f"## seed {seed}: {world.num_users} users ({r['active']} active in the 7 days), {world.num_items} "
              f"items, {world.num_interactions} interactions / 7 days, {r['advertisers']} advertisers; "
              f"k = {K_MULTIPLIERS} x seed size; |R| = max(|H|, {args.min_random_set})\n")
        print("embeddings: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                         for k, v in r["quality"].items()) + "\n")
        print(summary_table(r["summary"].filter(pl.col("bucket") == "all")) + "\n")
        print("timings (s): " + ", ".join(f"{k.strip()} {v:.2f}" for k, v in r["timings"].items())
              + f"  (lr, lsh, nn, nn_unweighted: within offline_evaluation; score_heads best of {SCORING_REPEATS})")
        print(f"scoring: {r['scored_per_second']:,.0f} user x advertiser scores per second "
              f"({r['advertisers']} advertisers x {r['num_users']} users); expand: {r['expanded_users']} users "
              "in all\n", flush=True)

    mean = mean_summary([r["summary"] for r in runs])
    print(f"## mean over seeds {' '.join(map(str, args.seeds))}: methods x buckets "
          "(advertisers per seed; gains are ratios of the means)\n")
    print(summary_table(mean, per_seed=True) + "\n")
    print("## per advertiser kind, mean over seeds\n")
    print(kind_table(runs) + "\n")
    print("## paired differences over advertisers: mean (paired SE, mean / SE)\n")
    print(paired_table(runs, args.seeds) + "\n")
    names = list(runs[0]["timings"])
    print("## timings, mean over seeds (s)\n")
    print("| step | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean |\n|---|" + "---|" * (len(runs) + 1))
    for k in names:
        values = [r["timings"][k] for r in runs]
        print(f"| {'↳ ' + k.strip() if k.startswith(' ') else k} | "
              + " | ".join(f"{v:.2f}" for v in values) + f" | {np.mean(values):.2f} |")
    print("| scores per second | " + " | ".join(f"{r['scored_per_second']:,.0f}" for r in runs)
          + f" | {np.mean([r['scored_per_second'] for r in runs]):,.0f} |")
    print("\n## embedding quality\n")
    keys = ("link_auc", "probe_r2_embeddings", "probe_r2_raw", "users_without_edges")
    print("| seed | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys))
    for seed, r in zip(args.seeds, runs, strict=True):
        print(f"| {seed} | " + " | ".join(f"{r['quality'][k]:.4f}" if isinstance(r['quality'][k], float)
                                          else str(r['quality'][k]) for k in keys) + " |")
    if args.plots:
        from adrel_pipeline.evaluation.audience_plots import absolute_bars_png, gain_bars_png

        args.plots.mkdir(parents=True, exist_ok=True)
        frame = mean.drop("recall_per_seed")
        for metric in METRICS:
            (args.plots / f"gain_{metric}.png").write_bytes(gain_bars_png(frame, metric))
            (args.plots / f"absolute_{metric}.png").write_bytes(absolute_bars_png(frame, metric))
        print(f"plots: {args.plots}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
