"""Audience expansion on one world, without Dagster: embeddings, the three methods, the oracle.

    python benchmarks/audience.py [--num-users 10000] [--seed 0] [--embedding-epochs 60 ...] [--plots DIR]

What the audience pipeline runs, in-process: the world's first 7 days; LightGCN user embeddings
(time, held-out organic-link AUC, linear-probe R² of the latent taste from the embeddings and from
the raw features); for every advertiser a 90/10 split of its seed list, the logistic regression on
raw features, LSH on the embeddings, the multi-head NN with and without the engagement weights, and
the oracle (true affinity); then the blog's recall@k and precision@k and the ground-truth precision,
averaged over k = K_MULTIPLIERS x seed size, per method x seed-size bucket. Also timed: training all
heads a third time on the full seed lists (what serving needs) and scoring every user for every
advertiser in one pass.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import polars as pl

# Modules the timed steps import lazily, imported up front: the timings exclude imports.
import sklearn.linear_model  # noqa: F401
import torch_geometric.nn.models  # noqa: F401

import adrel_pipeline.evaluation.metrics
import adrel_pipeline.relevance.training  # noqa: F401
from adrel_pipeline.audience.embeddings import linear_probe_r2, train_user_embeddings
from adrel_pipeline.audience.features import active_users, raw_features, user_rows
from adrel_pipeline.audience.methods import (
    LSHIndex,
    head_rows,
    head_seed,
    lr_scores,
    sample_weights,
    score_heads,
    train_heads,
)
from adrel_pipeline.audience.spec import K_MULTIPLIERS, AudienceSpec
from adrel_pipeline.evaluation.expansion import (
    METRICS,
    draw_holdout_split,
    evaluate_advertiser,
    evaluation_rows,
    paired_mean_difference,
    random_non_seed,
    summarise,
)
from adrel_pipeline.world import WorldSpec, generate_interactions, generate_items, generate_users, window
from adrel_pipeline.world.advertisers import audience_affinity, generate_advertisers, generate_seed_list, true_audience
from adrel_pipeline.world.simulation import user_taste

DAY = dt.date(2026, 1, 7)
WORLD_FIELDS = ("num_users", "num_items", "num_interactions", "num_advertisers", "seed")


def timed(label: str, timings: dict, fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    timings[label] = time.perf_counter() - start
    return out


def run(world: WorldSpec, spec: AudienceSpec, min_random: int = 100) -> tuple[pl.DataFrame, pl.DataFrame, dict, dict]:
    timings: dict[str, float] = {}
    users, items = generate_users(world), generate_items(world)
    interactions = generate_interactions(world, users, items, window(DAY, 7))
    n = users.height
    active = np.sort(user_rows(users, active_users(users, interactions)))
    is_active = np.zeros(n, dtype=bool)
    is_active[active] = True

    emb = timed("embeddings", timings, train_user_embeddings, users, items, interactions, spec)
    _, raw = raw_features(users, items, interactions)
    taste = user_taste(users)
    quality = {"link_auc": emb.link_auc, "num_edges": emb.num_edges, "users_without_edges": emb.users_without_edges,
               "probe_r2_embeddings": timed("probe", timings, linear_probe_r2, emb.embeddings.numpy(), taste, spec.seed),
               "probe_r2_raw": linear_probe_r2(raw, taste, spec.seed)}

    advertisers = generate_advertisers(world, users)
    ids = advertisers["advertiser_id"].to_list()
    seeds, train, holdout, randoms, audiences, weights, full_weights = [], [], [], [], [], [], []
    for index, advertiser in enumerate(ids):
        seed_list = generate_seed_list(world, users, advertiser)
        rows = user_rows(users, seed_list["user_id"].to_numpy())
        order = np.argsort(rows)
        rows = rows[order]
        tr, ho = draw_holdout_split(rows, spec.holdout_fraction, [spec.seed, index, 0])
        w = sample_weights(seed_list["impressions"].to_numpy()[order], seed_list["clicks"].to_numpy()[order])
        seeds.append(rows)
        train.append(tr)
        holdout.append(ho)
        weights.append(w[np.isin(rows, tr)])
        full_weights.append(w)
        randoms.append(random_non_seed(active, rows, max(len(ho), min_random), [spec.seed, index, 1]))
        audiences.append(true_audience(world, users, advertiser))
    head_seeds = [head_seed(spec.seed, i) for i in range(len(ids))]

    start = time.perf_counter()
    # The regression sees the same negatives as the heads.
    lr = [lr_scores(raw, tr, head_rows(tr, None, active, spec, hs)[2], spec.seed)
          for tr, hs in zip(train, head_seeds, strict=True)]
    timings["lr"] = time.perf_counter() - start
    start = time.perf_counter()
    index = LSHIndex(emb.embeddings, spec.lsh_tables, spec.lsh_bits, spec.seed)
    lsh = [index.scores(tr) for tr in train]
    timings["lsh"] = time.perf_counter() - start

    x = emb.embeddings
    weighted, history = timed("nn", timings, train_heads, x, train, weights, active, spec, head_seeds)
    unweighted, _ = timed("nn_unweighted", timings, train_heads, x, train, [None] * len(ids), active, spec, head_seeds)
    timed("nn_full_lists", timings, train_heads, x, seeds, full_weights, active, spec, head_seeds)
    nn = timed("score_heads", timings, score_heads, weighted, x).numpy()
    nn_unweighted = score_heads(unweighted, x).numpy()
    oracle = timed("oracle", timings, audience_affinity, world, users, ids)

    rows = []
    for i, advertiser in enumerate(ids):
        eligible = is_active.copy()
        eligible[train[i]] = False
        scores = {"lr": lr[i], "lsh": lsh[i], "nn": nn[i], "nn_unweighted": nn_unweighted[i], "oracle": oracle[i]}
        evaluation = evaluate_advertiser(scores, eligible, holdout[i], randoms[i], audiences[i], len(seeds[i]),
                                         K_MULTIPLIERS)
        rows += evaluation_rows(advertiser, advertisers["bucket"][i], evaluation)
    per_advertiser = pl.DataFrame(rows).join(advertisers.select("advertiser_id", "kind"), on="advertiser_id")
    quality["nn_final_loss"] = history["loss"][-1]
    quality["scored_per_second"] = len(ids) * n / timings["score_heads"]
    return per_advertiser, summarise(per_advertiser), quality, timings


def markdown(summary: pl.DataFrame) -> str:
    head = ("| method | bucket | advertisers | recall | precision | gt precision | recall vs lr | precision vs lr |\n"
            "|---|---|---|---|---|---|---|---|")
    lines = [head]

    def fmt(value, spec: str) -> str:
        return "–" if value is None or np.isnan(value) else format(value, spec)

    for r in summary.iter_rows(named=True):
        lines.append(f"| {r['method']} | {r['bucket']} | {r['n_advertisers']} | {fmt(r['recall'], '.4f')} | "
                     f"{fmt(r['precision'], '.4f')} | {fmt(r['gt_precision'], '.4f')} | "
                     f"{fmt(r['recall_gain_vs_lr'], '+.1%')} | {fmt(r['precision_gain_vs_lr'], '+.1%')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = WorldSpec()
    for name in WORLD_FIELDS:
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    for name, default in AudienceSpec().as_dict().items():
        if name != "seed":
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    parser.add_argument("--min-random-set", type=int, default=100,
                        help="R holds max(|H|, this) users, its hits scaled by |H| / |R| (the pipeline's choice: "
                             "with |R| = |H| = 3, precision@k is 0/0 for most k); 0: the blog's |R| = |H|")
    parser.add_argument("--plots", type=Path, help="write the gain and absolute bar charts (PNG) here")
    args = parser.parse_args(argv)
    world = WorldSpec(**{name: getattr(args, name) for name in WORLD_FIELDS})
    spec = AudienceSpec(**{k: getattr(args, k) for k in AudienceSpec().as_dict() if k != "seed"}, seed=args.seed)

    per_advertiser, summary, quality, timings = run(world, spec, args.min_random_set)
    print(f"world: {world.num_users} users, {world.num_items} items, {world.num_interactions} interactions / 7 days, "
          f"{world.num_advertisers} advertisers, seed {world.seed}; k = {K_MULTIPLIERS} x seed size; "
          f"|R| = max(|H|, {args.min_random_set})\n")
    print("embeddings: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                     for k, v in quality.items()) + "\n")
    print(markdown(summary) + "\n")
    by_kind = (per_advertiser.with_columns(pl.col(m).fill_nan(None) for m in METRICS)
               .group_by("kind", "method").agg(pl.len().alias("advertisers"), *(pl.col(m).mean() for m in METRICS))
               .sort("kind", "method"))
    print("| kind | method | advertisers | " + " | ".join(METRICS) + " |\n|---|---|---|" + "---|" * len(METRICS))
    for r in by_kind.iter_rows(named=True):
        print(f"| {r['kind']} | {r['method']} | {r['advertisers']} | " + " | ".join(
            "–" if r[m] is None else f"{r[m]:.4f}" for m in METRICS) + " |")
    print()
    for metric in METRICS:
        wide = per_advertiser.pivot(on="method", index="advertiser_id", values=metric)
        for a, b in (("nn", "lr"), ("nn", "lsh"), ("nn", "nn_unweighted"), ("nn", "oracle")):
            mean, se = paired_mean_difference(wide[a], wide[b])
            print(f"{metric:>12}: {a} - {b} = {mean:+.4f} (paired SE {se:.4f}, {mean / se:+.1f} SE)")
    print("\ntimings (s): " + ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
    print(f"scoring: {quality['scored_per_second']:,.0f} user x advertiser scores per second")
    if args.plots:
        from adrel_pipeline.evaluation.audience_plots import absolute_bars_png, gain_bars_png

        args.plots.mkdir(parents=True, exist_ok=True)
        for metric in METRICS:
            (args.plots / f"gain_{metric}.png").write_bytes(gain_bars_png(summary, metric))
            (args.plots / f"absolute_{metric}.png").write_bytes(absolute_bars_png(summary, metric))
        print(f"plots: {args.plots}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
