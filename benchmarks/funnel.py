"""The serving funnel and its measurements on the default world, without Dagster, through the
library the funnel group's assets call.

    python benchmarks/funnel.py [--seeds 0 1 2] [--quick]

Per world seed, the contextual day 2026-01-08 as ``make run`` serves it: the day's log as
``candidate_log`` makes it before any relevance champion exists (``candidates``, ``serving_pctr`` with
no GAT, ``run_funnel`` without a relevance model, ``log_candidates``), its labels and
``train_and_evaluate``; then what ``funnel_metrics`` and ``relevance_experiments`` compute with the
day's models (no GAT: home's pCTR is the engagement model's here; ``make bench`` times the assets with
the GAT):

1. The truly relevant share of each stage's survivors, production (the day's ``full`` model, the
   default ``FunnelSpec``) and the zero-relevance holdout on the same 20,000 contexts, overall and per
   ad category and content type; the holdout gap in relevance, nDCG, CTR and revenue; the trim rate.
2. The sweep: revenue per context against the relevant share of served ads over alpha x tau on the
   first 2,000 contexts, and the ``reseeded`` (equal calibration) and overconfident (miscalibrated)
   models over alpha at the default tau.
3. A/B tests on one fixed query set of 500 contexts of a 5,000-context pool (paired, 95% intervals):
   the category-match launch, the swap to ``reseeded``, the miscalibrated copy, production vs holdout.
4. A/A tests: the production treatment against itself, 200 repeats, 100 / 500 / 2,000 contexts per
   arm, with and without the variance controls: the spread of B / A - 1 and the intervals' coverage.
5. Speed, on the first seed: the whole funnel (``candidates``, the production model's scores,
   ``serving_pctr``, ``run_funnel`` for production and holdout, ``funnel_metrics`` twice) on the
   issue's size, 10,000 contexts x 200 candidates, and on the default 20,000 x 100, in a fresh process
   each (inputs from parquet; ``VmHWM`` as peak memory), medians of 3: candidates per second.

``--quick``: one seed, 5,000 contexts a day, 40 A/A repeats, one speed repeat: a smoke run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import sklearn.ensemble  # noqa: F401 - imported up front: the timings exclude imports

from adrel_pipeline.contextual.engagement import serving_pctr
from adrel_pipeline.contextual.funnel import SURVIVOR_STAGES, candidates, run_funnel, run_funnel_and_holdout
from adrel_pipeline.contextual.labels import label_rows
from adrel_pipeline.contextual.measurement import (
    Arm,
    Traffic,
    aa_test,
    ab_test,
    ab_tests,
    fixed_contexts,
    funnel_metrics,
    swap_sweep,
)
from adrel_pipeline.contextual.model import RelevanceModel
from adrel_pipeline.contextual.sampling import draw_jobs, log_candidates
from adrel_pipeline.contextual.spec import (
    CandidateLogSpec,
    ExperimentSpec,
    FunnelCheckSpec,
    FunnelSpec,
    LabelSpec,
    RelevanceModelSpec,
)
from adrel_pipeline.contextual.training import train_and_evaluate
from adrel_pipeline.world import WorldSpec, generate_items, generate_users
from adrel_pipeline.world.contexts import CONTENT_TYPES, generate_ad_inventory, generate_contexts
from adrel_pipeline.world.spec import INTERESTS

DAY = dt.date(2026, 1, 8)
KEY = (DAY.toordinal(),)
AA_SIZES = (100, 500, 2_000)
AA_REPEATS = 200
SPEED_SIZES = {"issue: 10,000 x 200": {"contexts_per_day": 10_000, "candidates_per_context": 200},
               "default: 20,000 x 100": {}}
REPEATS = 3
QUICK_WORLD = {"num_users": 2_000, "num_items": 10_000, "num_interactions": 40_000, "contexts_per_day": 5_000}


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def day_models(world: WorldSpec, users, items, inventory, quick: bool):
    """The day's log (served before any relevance champion), labels and models, as the assets make them."""
    contexts = generate_contexts(world, users, items, DAY)
    cands = candidates(world, contexts, inventory, DAY)
    served = run_funnel(cands, serving_pctr(cands, None, world, DAY).pctr, None, FunnelSpec())
    log = log_candidates(served, CandidateLogSpec(seed=world.seed), KEY)
    label_spec = LabelSpec(seed=world.seed, **({"labelling_budget": 8_000, "test_rows": 8_000} if quick else {}))
    labels = label_rows(draw_jobs(log, label_spec, KEY), label_spec, KEY)
    result = train_and_evaluate(labels, log.filter(pl.col("full_list")), RelevanceModelSpec(seed=world.seed))
    return contexts, cands, result


def run_seed(seed: int, quick: bool) -> dict:
    world = WorldSpec(seed=seed, **(QUICK_WORLD if quick else {}))
    users, items = generate_users(world), generate_items(world)
    inventory = generate_ad_inventory(world, items)
    contexts, cands, result = day_models(world, users, items, inventory, quick)
    models = result.models
    spec, checks, experiment = FunnelSpec(), FunnelCheckSpec(), ExperimentSpec(seed=seed)
    relevance = models["full"].predict(cands)
    engagement = serving_pctr(cands, None, world, DAY)
    ours, theirs = (funnel_metrics(frame, spec) for frame in run_funnel_and_holdout(cands, engagement.pctr,
                                                                                     relevance, spec))

    head_rows = np.flatnonzero(cands["context_id"].is_in(contexts["context_id"].head(checks.sweep_contexts).implode()))
    head = cands[head_rows]
    traffic = Traffic.of(head, engagement.base[head_rows], {"full": relevance[head_rows],
                                                           "reseeded": models["reseeded"].predict(head)})
    points = swap_sweep(traffic, spec, np.arange(traffic.contexts), (seed, 81, DAY.toordinal()))

    pool = contexts["context_id"].head(experiment.experiment_pool).implode()
    pool_rows = np.flatnonzero(cands["context_id"].is_in(pool))
    pool_cands = cands[pool_rows]
    pool_traffic = Traffic.of(pool_cands, engagement.base[pool_rows],
                              {name: (relevance[pool_rows] if name == "full" else models[name].predict(pool_cands))
                               for name in ("full", "no_category_match", "reseeded")})
    fixed = fixed_contexts(pool_traffic, experiment.experiment_contexts, (seed, 81, DAY.toordinal(), 2))
    ab = {name: {m: vars(d) for m, d in ab_test(pool_traffic, a, b, fixed, 0.95, (seed, 3, i)).items()}
          for i, (name, (a, b)) in enumerate(ab_tests(spec).items())}
    repeats = 40 if quick else AA_REPEATS
    aa = {}
    for size in AA_SIZES:
        if 2 * size > pool_traffic.contexts:
            continue
        start = time.perf_counter()
        result_aa = aa_test(pool_traffic, Arm("full", spec), size, repeats, 0.95, (seed, 9, size))
        aa[size] = result_aa.summary() | {"seconds": time.perf_counter() - start,
                                          "first": [d.relative for d in result_aa.uncontrolled[:3]]}
    ece = {name: result.metrics[name]["ece"] for name in ("full", "reseeded", "uncalibrated")}
    return {"seed": seed, "ours": ours, "theirs": theirs, "sweep": points.to_dicts(), "ab": ab, "aa": aa,
            "ece": ece, "repeats": repeats, "auc": {n: result.metrics[n]["auc"] for n in ("full", "reseeded")}}


# --- speed: the whole funnel in a fresh process ----------------------------------------------------

def speed_step(directory: Path, fields: dict, seed: int) -> dict:
    """In this (fresh) process: the day's contexts through the whole funnel with the saved model."""
    world = WorldSpec(seed=seed, **fields)
    users, items, inventory = (pl.read_parquet(directory / f"{t}.parquet") for t in ("users", "items", "ad_inventory"))
    import torch  # the model payload is a weights-only .pt; imported before the clock starts

    model = RelevanceModel.from_payload(torch.load(directory / "model.pt", weights_only=True))
    spec = FunnelSpec()
    before = _status_mib("VmRSS")
    parts: dict[str, float] = {}
    start = lap = time.perf_counter()

    def mark(name: str) -> None:
        nonlocal lap
        now = time.perf_counter()
        parts[name] = now - lap
        lap = now

    contexts = generate_contexts(world, users, items, DAY)
    cands = candidates(world, contexts, inventory, DAY)
    mark("contexts + retrieval + signals")
    relevance = model.predict(cands)
    mark("relevance scores")
    pctr = serving_pctr(cands, None, world, DAY).pctr
    mark("pCTR")
    production, holdout = run_funnel_and_holdout(cands, pctr, relevance, spec)
    mark("trim + ranking + auction (production, holdout)")
    metrics = funnel_metrics(production, spec), funnel_metrics(holdout, spec)
    mark("metrics (both)")
    wall = time.perf_counter() - start
    return {"seconds": wall, "parts": parts, "candidates": cands.height, "contexts": contexts.height,
            "peak_mib": _status_mib("VmHWM"), "rss_before_mib": before,
            "served_relevant": metrics[0]["fraction_relevant/auction_winners"]}


def speed(seed: int, quick: bool) -> dict:
    import torch

    world = WorldSpec(seed=seed, **(QUICK_WORLD if quick else {}))
    users, items = generate_users(world), generate_items(world)
    inventory = generate_ad_inventory(world, items)
    _, _, result = day_models(world, users, items, inventory, quick)
    sizes = {"quick": {"contexts_per_day": 5_000}} if quick else SPEED_SIZES
    out = {}
    with tempfile.TemporaryDirectory(prefix="funnel-bench-") as tmp:
        directory = Path(tmp)
        for name, frame in (("users", users), ("items", items), ("ad_inventory", inventory)):
            frame.write_parquet(directory / f"{name}.parquet")
        torch.save(result.models["full"].to_payload(), directory / "model.pt")
        for label, fields in sizes.items():
            runs = []
            for _ in range(1 if quick else REPEATS):
                command = [sys.executable, str(Path(__file__).resolve()), "--speed-step", tmp, "--fields",
                           json.dumps({**(QUICK_WORLD if quick else {}), **fields}), "--seeds", str(seed)]
                done = subprocess.run(command, check=False, capture_output=True, text=True)
                if done.returncode != 0:
                    raise SystemExit(f"speed step failed:\n{done.stderr[-3000:]}")
                runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            out[label] = runs
    return out


# --- printing ------------------------------------------------------------------------------------

def _mean(values) -> float:
    values = [v for v in values if not np.isnan(v)]
    return sum(values) / len(values) if values else float("nan")


def _row(cells) -> str:
    return "| " + " | ".join(f"{c:.4f}" if isinstance(c, float) else str(c) for c in cells) + " |"


def _table(head: list[str], rows) -> None:
    print(_row(head))
    print("|---" * len(head) + "|")
    for r in rows:
        print(_row(r))
    print()


def report(runs: list[dict], timing: dict | None) -> None:
    seeds = " ".join(str(r["seed"]) for r in runs)
    print(f"\n## Funnel, day {DAY}, world seeds {seeds} (means over seeds; per seed in brackets)\n")
    rows = []
    for stage in SURVIVOR_STAGES:
        ours = [r["ours"][f"fraction_relevant/{stage}"] for r in runs]
        theirs = [r["theirs"][f"fraction_relevant/{stage}"] for r in runs]
        rows.append([stage, _mean(ours), _mean(theirs), " / ".join(f"{v:.3f}" for v in ours)])
    _table(["stage (survivors)", "production", "holdout", "production per seed"], rows)
    for breakdown, prefix, segments in (("ad category", "fraction_relevant", INTERESTS),
                                        ("content type", "fraction_relevant_by_content_type", CONTENT_TYPES)):
        _table([breakdown, *SURVIVOR_STAGES, "holdout winners"],
               [[seg, *[_mean(r["ours"][f"{prefix}/{s}/{seg}"] for r in runs) for s in SURVIVOR_STAGES],
                 _mean(r["theirs"][f"{prefix}/auction_winners/{seg}"] for r in runs)] for seg in segments])
    gap = lambda key: [r["ours"][key] / r["theirs"][key] - 1 for r in runs]
    _table(["metric", "production", "holdout", "gap (mean)", "gap per seed"],
           [[key, _mean(r["ours"][key] for r in runs), _mean(r["theirs"][key] for r in runs), f"{_mean(gap(key)):+.1%}",
             " / ".join(f"{g:+.1%}" for g in gap(key))]
            for key in ("fraction_relevant/auction_winners", "ndcg", "ctr", "clicks_per_context",
                        "revenue_per_context")])
    print(f"trim rate {_mean(r['ours']['trim_rate'] for r in runs):.3f}; contexts {int(runs[0]['ours']['contexts'])}, "
          f"candidates {int(runs[0]['ours']['candidates'])} (seed {runs[0]['seed']})\n")

    print("### Sweep (first seed): revenue per context against the relevant share of served ads\n")
    points = pl.DataFrame(runs[0]["sweep"])
    _table(list(points.columns), points.iter_rows())

    print("### A/B tests, 500 fixed contexts, paired 95% intervals of B / A - 1 (per seed)\n")
    rows = []
    for name in runs[0]["ab"]:
        for metric in runs[0]["ab"][name]:
            cells = [f"{d['relative']:+.2%} [{d['low']:+.2%}, {d['high']:+.2%}]"
                     for d in (r["ab"][name][metric] for r in runs)]
            rows.append([name, metric, *cells])
    _table(["A/B", "metric", *[f"seed {r['seed']}" for r in runs]], rows)
    print("ECE on labels (full / reseeded / uncalibrated) per seed: "
          + "; ".join(" / ".join(f"{r['ece'][n]:.4f}" for n in ("full", "reseeded", "uncalibrated")) for r in runs)
          + "; AUC full / reseeded: " + "; ".join(f"{r['auc']['full']:.4f} / {r['auc']['reseeded']:.4f}" for r in runs)
          + "\n")

    print(f"### A/A tests of the served relevant share, {runs[0]['repeats']} repeats, 95% intervals\n")
    rows = []
    for size in AA_SIZES:
        present = [r["aa"][size] for r in runs if size in r["aa"]]
        if not present:
            continue
        for design in ("controlled", "uncontrolled"):
            rows.append([size, design, " / ".join(f"{a[f'{design}/sd']:.2%}" for a in present),
                         " / ".join(f"[{a[f'{design}/min']:+.1%}, {a[f'{design}/max']:+.1%}]" for a in present),
                         " / ".join(f"{a[f'{design}/coverage']:.3f}" for a in present),
                         " / ".join(f"{a[f'{design}/mean_interval_width']:.2%}" for a in present)])
        seconds = " / ".join(f"{a['seconds']:.1f}" for a in present)
        print(f"first three uncontrolled A/A differences at {size} contexts: "
              + "; ".join(", ".join(f"{v:+.1%}" for v in a["first"]) for a in present) + f" ({seconds} s)")
    print()
    _table(["contexts per arm", "design", "sd of B / A - 1 (per seed)", "range", "coverage", "mean width"], rows)

    if timing:
        print("### Speed: the whole funnel in a fresh process (medians)\n")
        rows = []
        for label, reps in timing.items():
            wall = statistics.median(r["seconds"] for r in reps)
            parts = {k: statistics.median(r["parts"][k] for r in reps) for k in reps[0]["parts"]}
            rows.append([label, reps[0]["candidates"], " / ".join(f"{r['seconds']:.2f}" for r in reps), f"{wall:.2f}",
                         f"{reps[0]['candidates'] / wall:,.0f}",
                         f"{statistics.median(r['peak_mib'] for r in reps):.0f}",
                         "; ".join(f"{k} {v:.2f}" for k, v in parts.items())])
        _table(["size", "candidates", "runs (s)", "median (s)", "candidates/s", "peak MiB", "parts (s)"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--speed-step", help=argparse.SUPPRESS)
    parser.add_argument("--fields", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.speed_step:
        print(json.dumps(speed_step(Path(args.speed_step), json.loads(args.fields), args.seeds[0])))
        return 0
    seeds = args.seeds[:1] if args.quick else args.seeds
    runs = []
    for seed in seeds:
        start = time.perf_counter()
        runs.append(run_seed(seed, args.quick))
        print(f"seed {seed}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    timing = speed(seeds[0], args.quick)
    report(runs, timing)
    return 0


if __name__ == "__main__":
    sys.exit(main())
