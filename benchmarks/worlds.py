"""The GAT beside both baselines and the oracle, over several kinds of world and seeds.

    python benchmarks/worlds.py [--seeds 4 6 7] [--worlds default sparse ...] [--epochs N ...]

Each (world, seed) runs what the pipeline runs for one day, in-process and without Dagster: the
world's first 7 days, the graph, the split, training, and the test AUCs of the GAT, the popularity
and logistic-regression baselines and the oracle, on the same test pairs. Prints one row per run,
then the means per world; ``--markdown`` prints the table for ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adrel_pipeline.evaluation.baselines import baseline_scores
from adrel_pipeline.evaluation.metrics import auc, oracle_scores, paired_auc
from adrel_pipeline.graph.build import USER_AD, build_hetero_graph
from adrel_pipeline.graph.spec import SplitSpec
from adrel_pipeline.graph.split import split_links
from adrel_pipeline.relevance.spec import TrainSpec
from adrel_pipeline.relevance.training import predict, train_eval_pairs, train_gat
from adrel_pipeline.world import WorldSpec, generate_interactions, generate_items, generate_users, window

WORLDS = {
    "default": {},
    "sparse": {"num_users": 2000, "num_items": 10_000, "num_interactions": 20_000},
    "dense": {"num_users": 2000, "num_items": 10_000, "num_interactions": 200_000},
    "weak interest": {"num_users": 5000, "num_items": 20_000, "num_interactions": 100_000,
                      "main_interest_prob": 0.05},
    "many ads": {"num_users": 5000, "num_items": 20_000, "num_interactions": 100_000, "ad_fraction": 0.4},
    "few ads": {"num_users": 5000, "num_items": 20_000, "num_interactions": 100_000, "ad_fraction": 0.02},
}
DAY = dt.date(2026, 1, 7)


def evaluate(world: dict, seed: int, train: TrainSpec) -> dict:
    spec = WorldSpec(**{**world, "seed": seed})
    users, items = generate_users(spec), generate_items(spec)
    graph = build_hetero_graph(users, items, generate_interactions(spec, users, items, window(DAY, 7)))
    split = split_links(graph, SplitSpec(seed=seed))
    start = time.perf_counter()
    result = train_gat(split, replace(train, seed=seed))
    seconds = time.perf_counter() - start
    from adrel_pipeline.relevance.model import load_model

    model = load_model(result.checkpoint)
    test = split["test"]
    labels = test[USER_AD].edge_label
    scores = predict(model, test)
    pairs, train_labels = train_eval_pairs(split["train"], seed)
    baselines = baseline_scores(split, pairs, train_labels)
    oracle = auc(labels, oracle_scores(spec, users, items, test))
    row = {"gat": auc(labels, scores), "oracle": oracle, "epochs": result.epochs_run, "seconds": seconds,
           "positives": int(labels.sum())}
    row |= {name: auc(labels, b) for name, b in baselines.items()}
    best = max(baselines, key=lambda name: row[name])
    row["best_baseline_se"] = paired_auc(labels, scores, baselines[best]).se_difference
    row["gat_minus_best_in_se"] = (row["gat"] - row[best]) / row["best_baseline_se"]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worlds", nargs="*", default=list(WORLDS), choices=list(WORLDS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[4, 6, 7])
    parser.add_argument("--markdown", action="store_true")
    for name, default in TrainSpec().as_dict().items():
        if name != "seed":
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    args = parser.parse_args(argv)
    train = TrainSpec(**{k: getattr(args, k) for k in TrainSpec().as_dict() if k != "seed"})
    rows = []
    for name in args.worlds:
        for seed in args.seeds:
            row = {"world": name, "seed": seed, **evaluate(WORLDS[name], seed, train)}
            rows.append(row)
            print(f"{name:>13} seed {seed}: GAT {row['gat']:.4f}  popularity {row['popularity']:.4f}  "
                  f"logreg {row['logreg']:.4f}  oracle {row['oracle']:.4f}  GAT/oracle {row['gat'] / row['oracle']:.3f}"
                  f"  GAT-best {row['gat_minus_best_in_se']:+.1f} SE  ({row['epochs']} epochs, "
                  f"{row['seconds']:.1f} s)", flush=True)
    print()
    header = "| world | seeds | GAT | popularity | logreg | oracle | GAT / oracle | GAT − best baseline (SE) |"
    print(header)
    print("|---|---|---|---|---|---|---|---|")
    for name in args.worlds:
        group = [r for r in rows if r["world"] == name]
        mean = {k: statistics.mean(r[k] for r in group) for k in ("gat", "popularity", "logreg", "oracle")}
        ratio = statistics.mean(r["gat"] / r["oracle"] for r in group)
        worst = min(r["gat_minus_best_in_se"] for r in group)
        print(f"| {name} | {' '.join(str(r['seed']) for r in group)} | {mean['gat']:.4f} | {mean['popularity']:.4f} "
              f"| {mean['logreg']:.4f} | {mean['oracle']:.4f} | {ratio:.3f} | worst {worst:+.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
