"""Scoring speed: users x every ad through ``AdRanker.top_ads`` (the champion's batch ranking).

    python benchmarks/scoring.py [--num-users N --num-items N --num-interactions N] [--epochs 2]
                                 [--users N] [--k 100 ...] [--repeats 3]

In-process, no Dagster: the world's 7 days, the graph, the split, a short training (the speed of
scoring does not depend on how well the model learned, only on its shape), then the ranker over the
test graph as the registered model holds it (``without_labels``). For each ``--k`` (``0``: every ad,
the full ranking), ``top_ads`` over the first ``--users`` users (default: all) against every ad:
pairs per second = users x ads / seconds, the median of ``--repeats`` runs, beside the per-pair
path (``AdRanker.score`` on 200,000 pairs) for comparison. A full ranking returns every pair (12
bytes each): keep users x ads within memory for ``--k 0``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from adrel_pipeline.graph.build import AD, USER, build_hetero_graph
from adrel_pipeline.graph.spec import SplitSpec
from adrel_pipeline.graph.split import split_links, without_labels
from adrel_pipeline.relevance.model import load_model
from adrel_pipeline.relevance.ranking import AdRanker
from adrel_pipeline.relevance.spec import TrainSpec
from adrel_pipeline.relevance.training import train_gat
from adrel_pipeline.world import WorldSpec, generate_interactions, generate_items, generate_users, window

DAY = dt.date(2026, 1, 7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("num-users", "num-items", "num-interactions"):
        parser.add_argument(f"--{name}", type=int)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--users", type=int, help="rank for the first N users (default: all)")
    parser.add_argument("--k", type=int, nargs="+", default=[100, 0], help="ads kept per user; 0: all")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    world = {k: v for k, v in vars(args).items() if k in ("num_users", "num_items", "num_interactions") and v}

    start = time.perf_counter()
    spec = WorldSpec(**world)
    users, items = generate_users(spec), generate_items(spec)
    graph = build_hetero_graph(users, items, generate_interactions(spec, users, items, window(DAY, 7)))
    split = split_links(graph, SplitSpec(seed=spec.seed))
    model = load_model(train_gat(split, TrainSpec(epochs=args.epochs, patience=args.epochs)).checkpoint)
    scoring_graph = without_labels(split["test"])
    ranker = AdRanker(model, scoring_graph)
    print(f"world {world or 'defaults'}: setup (world, graph, split, {args.epochs} epochs, embeddings) "
          f"{time.perf_counter() - start:.1f} s; torch threads {torch.get_num_threads()}")

    user_ids = scoring_graph[USER].node_id[:args.users].tolist()
    num_ads = scoring_graph[AD].num_nodes
    pairs = len(user_ids) * num_ads
    print(f"{len(user_ids)} users x {num_ads} ads = {pairs:,} pairs; median of {args.repeats}\n")
    print("| ranking | runs (s) | median (s) | pairs/s |\n|---|---|---|---|")
    for k in args.k:
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            ids, _ = ranker.top_ads(user_ids, k or None)
            times.append(time.perf_counter() - t)
            del ids
        median = statistics.median(times)
        label = f"top_ads(users, k={k})" if k else "top_ads(users) (every ad, full order)"
        print(f"| {label} | {' / '.join(f'{s:.2f}' for s in times)} | {median:.2f} | {pairs / median:,.0f} |")

    # The per-pair path, for scale: 200,000 (user, ad) pairs by id.
    n = 200_000
    g = torch.Generator().manual_seed(0)
    u = scoring_graph[USER].node_id[torch.randint(0, scoring_graph[USER].num_nodes, (n,), generator=g)].tolist()
    a = scoring_graph[AD].node_id[torch.randint(0, num_ads, (n,), generator=g)].tolist()
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        ranker.score(u, a)
        times.append(time.perf_counter() - t)
    print(f"| score(user_ids, ad_ids), {n:,} aligned pairs | {' / '.join(f'{s:.2f}' for s in times)} | "
          f"{statistics.median(times):.2f} | {n / statistics.median(times):,.0f} |")


if __name__ == "__main__":
    main()
