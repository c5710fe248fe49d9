"""The relevance library path at a world size: per-stage wall time and peak memory (issue 15).

    python benchmarks/scale.py [--scale 10] [--seed 0] [--batch-size N --fanout N --epochs N ...]

In-process and without Dagster, as ``benchmarks/worlds.py``: users and items, the 7-day window's
interactions, the graph, the link split, training, the test scores (in batches of users when
``--batch-size`` is set) and their AUC beside the oracle's on the same test pairs. ``--scale k`` is
the default world times k (users, items and weekly interactions). Each stage's peak RSS is the
process's high-water mark while it ran (reset through ``/proc/self/clear_refs`` before it, so it
includes what earlier stages left resident); the process's peak is the largest of them. (The reset
also lowers what ``/usr/bin/time -v`` reports: it reads the same high-water mark at exit.) The CPU
time of other processes shows up as wall time: on a shared machine, check the load first.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import re
import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adrel_pipeline.evaluation.metrics import auc, oracle_scores
from adrel_pipeline.graph.build import USER_AD, build_hetero_graph, graph_summary
from adrel_pipeline.graph.spec import SplitSpec
from adrel_pipeline.graph.split import split_links
from adrel_pipeline.relevance.model import load_model
from adrel_pipeline.relevance.spec import TrainSpec
from adrel_pipeline.relevance.training import predict, train_gat
from adrel_pipeline.world import WorldSpec, generate_interactions, generate_items, generate_users, window

DAY = dt.date(2026, 1, 7)
HWM = re.compile(r"VmHWM:\s+(\d+) kB")
ROWS: list[tuple[str, float, float]] = []


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:  # not Linux, or not permitted: the stage's peak is then the process's so far
        return False


def _peak_gib() -> float:
    status = Path("/proc/self/status")
    if status.exists():
        return int(HWM.search(status.read_text()).group(1)) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


@contextmanager
def stage(name: str):
    gc.collect()
    _reset_peak()
    start = time.perf_counter()
    yield
    seconds, peak = time.perf_counter() - start, _peak_gib()
    ROWS.append((name, seconds, peak))
    print(f"{name:>28}: {seconds:7.1f} s  peak RSS {peak:5.2f} GiB", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="the default world's size times this")
    parser.add_argument("--seed", type=int, default=0)
    for name, default in TrainSpec().as_dict().items():
        if name != "seed":
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    args = parser.parse_args(argv)
    train_spec = TrainSpec(**{k: getattr(args, k) for k in TrainSpec().as_dict() if k != "seed"}, seed=args.seed)
    base = WorldSpec()
    spec = WorldSpec(seed=args.seed, **{k: round(getattr(base, k) * args.scale)
                                        for k in ("num_users", "num_items", "num_interactions")})
    print(f"world: {spec.num_users:,} users, {spec.num_items:,} items, {spec.num_interactions:,} interactions "
          f"a week; training {train_spec.as_dict()}", flush=True)
    total = time.perf_counter()
    print(f"load average before: {Path('/proc/loadavg').read_text().split()[:3]}", flush=True)
    with stage("users + items"):
        users, items = generate_users(spec), generate_items(spec)
    with stage("interactions (7 days)"):
        interactions = generate_interactions(spec, users, items, window(DAY, 7))
    with stage("hetero_graph"):
        graph = build_hetero_graph(users, items, interactions)
    del interactions
    print("   ", graph_summary(graph), flush=True)
    with stage("link_split"):
        split = split_links(graph, SplitSpec(seed=args.seed))
    del graph
    with stage("train_gat"):
        result = train_gat(split, replace(train_spec, seed=args.seed), on_epoch=lambda row: print(
            f"    epoch {row['epoch']}: loss {row['train_loss']:.4f}, val AUC {row['val_auc']:.4f} "
            f"({time.perf_counter() - total:.0f} s)", flush=True))
    print(f"    {result.epochs_run} epochs, best {result.best_epoch}, val AUC {result.best_val_auc:.4f}", flush=True)
    test = split["test"]
    labels = test[USER_AD].edge_label
    with stage("test scores"):
        gat = auc(labels, predict(load_model(result.checkpoint), test, batch_size=train_spec.batch_size))
    with stage("oracle on the test pairs"):
        oracle = auc(labels, oracle_scores(spec, users, items, test))
    seconds = time.perf_counter() - total
    print(f"\ntest AUC: GAT {gat:.4f}, oracle {oracle:.4f}, GAT / oracle {gat / oracle:.3f} "
          f"({int(labels.sum()):,} test positives)")
    print(f"total {seconds:.1f} s; process peak RSS {max(peak for _, _, peak in ROWS):.2f} GiB")
    print("\n| stage | seconds | peak RSS (GiB) |\n|---|---|---|")
    for name, s, peak in ROWS:
        print(f"| {name} | {s:.1f} | {peak:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
