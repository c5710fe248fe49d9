"""Contextual relevance on one or more worlds, without Dagster, through the library the assets call.

    python benchmarks/contextual.py [--seeds 0 1 2] [--quick]

Per world seed (``WorldSpec(seed=s)``, every spec's seed the world's, as ``config.spec(..., seed=world.seed)``
in the assets), what the contextual group of ``make run`` does for 2026-01-07, in-process and in its
order: ``generate_ad_inventory``, ``generate_contexts``, ``candidates``, ``serving_pctr`` and ``run_funnel``
with the default ``FunnelSpec`` and no relevance model (the first contextual day: no champion yet),
``log_candidates(key=(day.toordinal(),))``, ``draw_jobs``, ``label_rows``, and ``train_and_evaluate`` on
the labels and ``log.filter(full_list)``. Printed, per seed and as the mean over seeds:

1. ECE against the labelling budget. The same day's candidates logged at ``log_rate=0.25`` (this table
   only: the default 0.1 does not hold the largest budget's heuristic job), jobs drawn with
   ``labelling_budget`` = the largest budget and the default 40,000 test rows; for each budget B a
   seeded random subsample of B rows of the ``candidates`` job (nested: each budget's rows hold the
   smaller budgets'; ``draw_jobs`` returns its rows sorted, so ``head`` would take the first contexts
   only) trains the production model (``model.fit``, FEATURES, default RelevanceModelSpec), scored on
   the fixed test job: ECE on the labels and the true ECE (against ``relevance_probability``), overall,
   per content type and their max. Beside it the label-noise floor: the oracle's ECE on the labels of
   the same test rows, with the seed's crowd's mean bias (``crowd_biases``). A PNG of the means goes
   to ``benchmarks/results/contextual_ece_budget.png``.
2. Calibration methods at the default budget (default log and jobs): isotonic (``train_and_evaluate``'s
   ``full``), none (its ``uncalibrated``: the trees fitted on every row, no held-out fold) and sigmoid
   (``fit(calibration="sigmoid")`` on the same rows), on the same test job.
3. ``train_and_evaluate``'s models and the oracle (ECE, max content-type ECE, true ECE, Brier, AUC, nDCG@10,
   the top-k shopping relevant share and click probability) and the ablation's relative differences
   (full vs no_category_match), as the ``relevance_model`` asset records them.
4. Label quality (``labels.quality``) of the day's job per seed; the disagreement rate for several
   ``rater_noise`` values on the first seed's job rows.
5. Speed, on the first seed: each step as the assets run it (``candidate_log``: contexts + funnel +
   log; ``relevance_labels``: draw_jobs + label_rows + quality; ``relevance_model``: train_and_evaluate,
   no MLflow), each repeat of each step in a fresh process (this script with ``--step``) reading its
   inputs from parquet; wall time of the step (imports and reading the inputs excluded), the process's
   peak RSS (``VmHWM``, read right after the step: it includes the interpreter, the imports and the
   inputs; not ``ru_maxrss``, see :func:`child_step`) and its RSS before the step; medians of 3
   repeats. Then the production model's scoring throughput (``RelevanceModel.predict``, feature matrix
   included, on 2,000,000 candidate rows: the day's funnel output repeated) and ``label_rows``'
   throughput on 100,000 rows, medians of 3.

``--quick``: one seed, a small world (2,000 users, 10,000 items, 40,000 interactions, 5,000 contexts a
day), budgets 2,500 and 10,000, 10,000 labels and 10,000 test rows, 200,000 scored rows, one repeat of
each timing, the figure to ``contextual_ece_budget_quick.png``: a smoke run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# What the timed steps import lazily, imported up front: the timings exclude imports.
import krippendorff  # noqa: F401
import numpy as np
import polars as pl
import scipy.special  # noqa: F401
import sklearn.calibration
import sklearn.ensemble
import sklearn.frozen
import sklearn.metrics  # noqa: F401

from adrel_pipeline.contextual.engagement import serving_pctr
from adrel_pipeline.contextual.funnel import candidates as retrieved_candidates
from adrel_pipeline.contextual.funnel import run_funnel
from adrel_pipeline.contextual.labels import crowd_biases, label_rows, quality
from adrel_pipeline.contextual.model import FEATURES, feature_matrix, fit
from adrel_pipeline.contextual.sampling import JOBS, draw_jobs, log_candidates
from adrel_pipeline.contextual.spec import CandidateLogSpec, FunnelSpec, LabelSpec, RelevanceModelSpec
from adrel_pipeline.contextual.training import MODELS, ORACLE, job, train_and_evaluate
from adrel_pipeline.evaluation.contextual import calibration_metrics, relative_difference
from adrel_pipeline.world import WorldSpec, generate_items, generate_users
from adrel_pipeline.world.contexts import CONTENT_TYPES, generate_ad_inventory, generate_contexts

DAY = dt.date(2026, 1, 7)
KEY = (DAY.toordinal(),)
BUDGETS = (2_500, 5_000, 10_000, 20_000, 30_000, 50_000)
BUDGET_LOG_RATE = 0.25
ECE_GOAL = 0.02
RATER_NOISES = (0.3, 0.45, 0.7, 1.0)
REPEATS = 3
SCORING_ROWS = 2_000_000
LABELLING_ROWS = 100_000
CALIBRATIONS = ("isotonic", "sigmoid", "none")
STEPS = ("candidate_log", "relevance_labels", "relevance_model")
STEP_WHAT = {"candidate_log": "contexts + funnel + log", "relevance_labels": "draw_jobs + label_rows + quality",
             "relevance_model": "train_and_evaluate (4 models + oracle), no MLflow"}
QUICK_WORLD = {"num_users": 2_000, "num_items": 10_000, "num_interactions": 40_000, "contexts_per_day": 5_000}
QUICK_LABELS = {"labelling_budget": 10_000, "test_rows": 10_000}
QUICK_BUDGETS = (2_500, 10_000)
QUICK_SCORING_ROWS = 200_000
_STREAM_SUBSAMPLE = 71
PLOT = Path(__file__).resolve().parent / "results" / "contextual_ece_budget.png"
QUICK_PLOT = PLOT.with_name("contextual_ece_budget_quick.png")  # a smoke run leaves the full run's figure alone


@dataclass(frozen=True)
class Setup:
    """The world's fields besides the seed, the label spec's overrides and the budgets."""

    world: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    budgets: tuple[int, ...] = BUDGETS
    scoring_rows: int = SCORING_ROWS
    repeats: int = REPEATS
    plot: Path = PLOT

    @classmethod
    def of(cls, quick: bool) -> Setup:
        return (cls(QUICK_WORLD, QUICK_LABELS, QUICK_BUDGETS, QUICK_SCORING_ROWS, repeats=1, plot=QUICK_PLOT) if quick
                else cls())

    def world_spec(self, seed: int) -> WorldSpec:
        return WorldSpec(**self.world, seed=seed)

    def label_spec(self, seed: int, **extra) -> LabelSpec:
        return LabelSpec(**(self.labels | extra), seed=seed)


# --- the steps, as the assets run them ------------------------------------------------------------

def world_tables(world: WorldSpec) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """users, items and ad_inventory (the world assets and ``ad_inventory``)."""
    users, items = generate_users(world), generate_items(world)
    return users, items, generate_ad_inventory(world, items)


def candidate_log_step(world: WorldSpec, users: pl.DataFrame, items: pl.DataFrame, inventory: pl.DataFrame,
                       log_spec: CandidateLogSpec, seconds: dict) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The ``candidate_log`` asset's library calls: (the day's candidates, the log)."""
    start = time.perf_counter()
    contexts = generate_contexts(world, users, items, DAY)
    seconds["contexts"] = time.perf_counter() - start
    start = time.perf_counter()
    retrieved = retrieved_candidates(world, contexts, inventory, DAY)
    candidates = run_funnel(retrieved, serving_pctr(retrieved, None, world, DAY).pctr, None, FunnelSpec())
    seconds["funnel"] = time.perf_counter() - start
    start = time.perf_counter()
    log = log_candidates(candidates, log_spec, KEY)
    seconds["log"] = time.perf_counter() - start
    return candidates, log


def labels_step(log: pl.DataFrame, spec: LabelSpec, seconds: dict | None = None) -> tuple[pl.DataFrame, dict]:
    """The ``relevance_labels`` asset's library calls: the labelled jobs and their quality."""
    seconds = {} if seconds is None else seconds
    start = time.perf_counter()
    rows = draw_jobs(log, spec, KEY)
    seconds["draw_jobs"] = time.perf_counter() - start
    start = time.perf_counter()
    labels = label_rows(rows, spec, KEY)
    seconds["label_rows"] = time.perf_counter() - start
    start = time.perf_counter()
    qc = quality(labels)
    seconds["quality"] = time.perf_counter() - start
    return labels, qc


def model_step(labels: pl.DataFrame, log: pl.DataFrame, spec: RelevanceModelSpec):
    """The ``relevance_model`` asset's library calls (without MLflow)."""
    return train_and_evaluate(labels, log.filter(pl.col("full_list")), spec)


# --- one seed -----------------------------------------------------------------------------------

def max_content_type(metrics: dict, prefix: str) -> float:
    return max(metrics[f"{prefix}/{c}"] for c in CONTENT_TYPES if f"{prefix}/{c}" in metrics)


def worst_content_type(metrics: dict, prefix: str) -> str:
    return max((c for c in CONTENT_TYPES if f"{prefix}/{c}" in metrics), key=lambda c: metrics[f"{prefix}/{c}"])


def budget_study(seed: int, setup: Setup, candidates: pl.DataFrame, spec: RelevanceModelSpec) -> dict:
    """Table 1 of one seed: per budget the production model's calibration on the fixed test job,
    and the oracle's (the label-noise floor)."""
    log = log_candidates(candidates, CandidateLogSpec(log_rate=BUDGET_LOG_RATE, seed=seed), KEY)
    label_spec = setup.label_spec(seed, labelling_budget=max(setup.budgets))
    labels = label_rows(draw_jobs(log, label_spec, KEY), label_spec, KEY)
    pool, test = job(labels, "candidates"), job(labels, "test")
    order = np.random.default_rng([seed, _STREAM_SUBSAMPLE]).permutation(pool.height)
    per_budget = {}
    for budget in setup.budgets:
        model = fit(pool[np.sort(order[:budget])], spec, FEATURES)
        per_budget[budget] = calibration_metrics(model.predict(test), test, spec.ece_bins) | {
            "fit_seconds": model.fit_seconds}
    floor = calibration_metrics(test["relevance_probability"].to_numpy(), test, spec.ece_bins) | {
        "relevant_share": float(test["relevant"].mean()),
        "mean_probability": float(test["relevance_probability"].mean()),
        "crowd_bias": float(crowd_biases(label_spec).mean())}
    return {"per_budget": per_budget, "floor": floor, "test_rows": test.height, "logged": int(log["sampled"].sum())}


def run_seed(seed: int, setup: Setup, rater_noise_study: bool) -> dict:
    world = setup.world_spec(seed)
    users, items, inventory = world_tables(world)
    log_spec, label_spec, spec = CandidateLogSpec(seed=seed), setup.label_spec(seed), RelevanceModelSpec(seed=seed)
    seconds: dict[str, float] = {}
    candidates, log = candidate_log_step(world, users, items, inventory, log_spec, seconds)
    budgets = budget_study(seed, setup, candidates, spec)

    start = time.perf_counter()
    labels, qc = labels_step(log, label_spec)
    seconds["relevance_labels"] = time.perf_counter() - start
    start = time.perf_counter()
    result = model_step(labels, log, spec)
    seconds["relevance_model"] = time.perf_counter() - start

    train, test = job(labels, "candidates"), job(labels, "test")
    sigmoid = fit(train, spec, FEATURES, calibration="sigmoid")
    calibrations = {"isotonic": result.metrics["full"], "none": result.metrics["uncalibrated"],
                    "sigmoid": calibration_metrics(sigmoid.predict(test), test, spec.ece_bins)}
    per_job = {name: quality(part) | {"rows": part.height} for name in JOBS
               for part in [labels.filter(pl.col("job") == name)]}
    noise = {}
    if rater_noise_study:
        rows = labels.drop("rater_ids", "ratings", "label", "label_3pt", "relevant", "relevance_probability")
        for value in RATER_NOISES:
            noisy = label_rows(rows, replace(label_spec, rater_noise=value), KEY)
            noise[value] = quality(noisy)
    lists = log.filter(pl.col("full_list"))
    list_contexts = lists["context_id"].unique().implode()
    overlap = {name: int(labels.filter((pl.col("job") == name) & pl.col("context_id").is_in(list_contexts)).height)
               for name in JOBS}
    return {"seed": seed, "budgets": budgets, "calibrations": calibrations, "metrics": result.metrics,
            "quality": qc | {"rows": labels.height}, "per_job": per_job, "noise": noise, "seconds": seconds,
            "candidates": candidates.height, "contexts": world.contexts_per_day, "logged": int(log["sampled"].sum()),
            "log_rows": log.height, "list_rows": lists.height, "list_overlap": overlap,
            "result": result, "log": log, "labels": labels, "tables": (users, items, inventory),
            "candidates_frame": candidates}


# --- the speed section: each step in a fresh process ----------------------------------------------

def _status_mib(field: str) -> float:
    """A ``/proc/self/status`` memory field (``VmRSS``: resident now; ``VmHWM``: this process image's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_step(name: str, directory: Path, seed: int, setup: Setup) -> dict:
    """One step in this (fresh) process: inputs from parquet, the step timed, RSS before and peak after.

    The peak is ``VmHWM``, not ``ru_maxrss``: on Linux a process's ``ru_maxrss`` keeps the high-water mark
    of the process it was forked from across ``exec`` (the parent's RSS at the fork), so a child of this
    benchmark's main process would report at least the parent's size. Both are returned."""
    world = setup.world_spec(seed)
    seconds: dict[str, float] = {}
    if name == "candidate_log":
        users, items, inventory = (pl.read_parquet(directory / f"{t}.parquet") for t in ("users", "items",
                                                                                          "ad_inventory"))
        before = _status_mib("VmRSS")
        start = time.perf_counter()
        candidates, out = candidate_log_step(world, users, items, inventory, CandidateLogSpec(seed=seed), seconds)
        extra = {"candidates": candidates.height}
    elif name == "relevance_labels":
        log = pl.read_parquet(directory / "candidate_log.parquet")
        before = _status_mib("VmRSS")
        start = time.perf_counter()
        out, _ = labels_step(log, setup.label_spec(seed), seconds)
        extra = {}
    elif name == "relevance_model":
        labels = pl.read_parquet(directory / "relevance_labels.parquet")
        log = pl.read_parquet(directory / "candidate_log.parquet")
        before = _status_mib("VmRSS")
        start = time.perf_counter()
        result = model_step(labels, log, RelevanceModelSpec(seed=seed))
        out = result.test
        seconds |= result.seconds
        extra = {"auc": result.metrics["full"]["auc"]}
    else:
        raise SystemExit(f"unknown step {name!r}: one of {STEPS}")
    wall = time.perf_counter() - start
    peak, maxrss = _status_mib("VmHWM"), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"step": name, "seconds": wall, "peak_mib": peak, "ru_maxrss_mib": maxrss, "rss_before_mib": before,
            "rows": out.height, "sub": seconds} | extra


def speed(first: dict, setup: Setup, quick: bool) -> dict:
    """Each step in a fresh process, ``setup.repeats`` times in turn."""
    runs: dict[str, list[dict]] = {s: [] for s in STEPS}
    with tempfile.TemporaryDirectory(prefix="contextual-bench-") as tmp:
        directory = Path(tmp)
        for name, frame in zip(("users", "items", "ad_inventory"), first["tables"], strict=True):
            frame.write_parquet(directory / f"{name}.parquet")
        first["log"].write_parquet(directory / "candidate_log.parquet")
        first["labels"].write_parquet(directory / "relevance_labels.parquet")
        for _ in range(setup.repeats):
            for name in STEPS:
                command = [sys.executable, str(Path(__file__).resolve()), "--step", name, "--step-dir", tmp,
                           "--seeds", str(first["seed"])] + (["--quick"] if quick else [])
                out = subprocess.run(command, check=False, capture_output=True, text=True)
                if out.returncode != 0:
                    raise SystemExit(f"step {name} failed:\n{out.stderr[-3000:]}")
                runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    expected = {"candidate_log": first["log_rows"], "relevance_labels": first["quality"]["rows"],
                "relevance_model": first["result"].test.height}
    mismatched = [n for n in STEPS if any(r["rows"] != expected[n] for r in runs[n])]
    return {"runs": runs, "mismatched": mismatched}


def throughput(first: dict, setup: Setup) -> dict:
    model = first["result"].models["full"]
    candidates = first["candidates_frame"]
    rows = pl.concat([candidates] * math.ceil(setup.scoring_rows / candidates.height)).head(setup.scoring_rows)
    scoring, features = [], []
    for _ in range(setup.repeats):
        start = time.perf_counter()
        model.predict(rows)
        scoring.append(time.perf_counter() - start)
        start = time.perf_counter()
        feature_matrix(rows, model.features)
        features.append(time.perf_counter() - start)
    sampled = first["log"].filter(pl.col("sampled"))
    to_label = pl.concat([sampled] * math.ceil(LABELLING_ROWS / sampled.height)).head(LABELLING_ROWS)
    spec = setup.label_spec(first["seed"])
    labelling = []
    for _ in range(setup.repeats):
        start = time.perf_counter()
        label_rows(to_label, spec, KEY)
        labelling.append(time.perf_counter() - start)
    return {"scoring_rows": rows.height, "scoring": scoring, "features": features,
            "labelling_rows": to_label.height, "labelling": labelling}


# --- printing -----------------------------------------------------------------------------------

def table(head: list[str], rows: list[list]) -> str:
    def cell(v) -> str:
        if isinstance(v, float):
            return "–" if math.isnan(v) else f"{v:.4f}"
        return str(v)

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _mean(values) -> float:
    return float(np.mean(list(values)))


def _seeds(values, fmt: str = ".4f") -> str:
    return " / ".join(format(v, fmt) for v in values)


BUDGET_COLUMNS = ["ece", *(f"ece/{c}" for c in CONTENT_TYPES), "ece max ct", "true_ece",
                  *(f"true_ece/{c}" for c in CONTENT_TYPES), "true_ece max ct"]


def _budget_row(m: dict) -> list[float]:
    return [m["ece"], *(m[f"ece/{c}"] for c in CONTENT_TYPES), max_content_type(m, "ece"), m["true_ece"],
            *(m[f"true_ece/{c}"] for c in CONTENT_TYPES), max_content_type(m, "true_ece")]


def print_budgets(runs: list[dict], setup: Setup) -> dict:
    seeds = [r["seed"] for r in runs]
    print("## 1. ECE against the labelling budget\n")
    b0 = runs[0]["budgets"]
    print(f"Candidates logged at log_rate={BUDGET_LOG_RATE} (this table only; seed {seeds[0]}: "
          f"{b0['logged']:,} logged candidates), jobs drawn with labelling_budget={max(setup.budgets):,}; each "
          f"budget a seeded random subsample of the `candidates` job; fixed test job of {b0['test_rows']:,} rows; "
          "production model (FEATURES, default RelevanceModelSpec, isotonic); equal-mass 10-bin ECE. "
          "'max ct': the max over the 4 content types. fit (s): one run each.\n")
    for r in runs:
        print(f"### seed {r['seed']}\n")
        print(table(["budget", *BUDGET_COLUMNS, "fit (s)"],
                    [[f"{b:,}", *_budget_row(m), f"{m['fit_seconds']:.2f}"]
                     for b, m in r["budgets"]["per_budget"].items()]) + "\n")
    rows = {b: np.mean([_budget_row(r["budgets"]["per_budget"][b]) for r in runs], axis=0) for b in setup.budgets}
    print(f"### mean over seeds {' '.join(map(str, seeds))} (max ct: the mean of each seed's max)\n")
    print(table(["budget", *BUDGET_COLUMNS], [[f"{b:,}", *map(float, v)] for b, v in rows.items()]) + "\n")
    print("### summary: max content-type ECE per seed\n")
    summary = []
    for b in setup.budgets:
        per_seed = [max_content_type(r["budgets"]["per_budget"][b], "ece") for r in runs]
        true_per_seed = [max_content_type(r["budgets"]["per_budget"][b], "true_ece") for r in runs]
        worst = [worst_content_type(r["budgets"]["per_budget"][b], "ece") for r in runs]
        summary.append([f"{b:,}", " / ".join(f"{v:.4f} {w}" for v, w in zip(per_seed, worst, strict=True)),
                        _mean(per_seed), _seeds(true_per_seed), _mean(true_per_seed),
                        _mean(r["budgets"]["per_budget"][b]["ece"] for r in runs)])
    print(table(["budget", "ece max ct per seed", "mean", "true_ece max ct per seed", "mean", "ece overall mean"],
                summary) + "\n")
    mean_max = {b: _mean(max_content_type(r["budgets"]["per_budget"][b], "ece") for r in runs) for b in setup.budgets}
    every = [b for b in setup.budgets if all(max_content_type(r["budgets"]["per_budget"][b], "ece") <= ECE_GOAL
                                             for r in runs)]
    first_mean = next((b for b in setup.budgets if mean_max[b] <= ECE_GOAL), None)
    first_every = next((b for b in setup.budgets if all(x in every for x in setup.budgets[setup.budgets.index(b):])),
                       None)
    print(f"Goal ECE <= {ECE_GOAL} on every content type: the mean over seeds of the max content-type ECE is "
          f"<= {ECE_GOAL} from budget {first_mean:,} on" if first_mean else
          f"Goal ECE <= {ECE_GOAL} on every content type: the mean max content-type ECE never reaches it", end="")
    print(f"; every seed's max content-type ECE is <= {ECE_GOAL} at every budget from {first_every:,} on."
          if first_every else "; at no budget (and every larger one) is every seed's max within it.")
    print()
    print("### label-noise floor: the oracle (relevance_probability) scored against the labels of the same test "
          "rows\n")
    print("Beside it: the test rows' share labelled relevant, the oracle's mean, and the mean bias of the seed's "
          "crowd (crowd_biases; the oracle is exact for this crowd, whatever its mean bias).\n")
    floor_cols = ["ece", *(f"ece/{c}" for c in CONTENT_TYPES), "ece max ct", "relevant share", "oracle mean",
                  "crowd mean bias"]

    def floor_row(f: dict) -> list[float]:
        return [f["ece"], *(f[f"ece/{c}"] for c in CONTENT_TYPES), max_content_type(f, "ece"), f["relevant_share"],
                f["mean_probability"], f["crowd_bias"]]

    floors = [[r["seed"], *floor_row(r["budgets"]["floor"])] for r in runs]
    floors.append(["mean", *map(float, np.mean([floor_row(r["budgets"]["floor"]) for r in runs], axis=0))])
    print(table(["seed", *floor_cols], floors) + "\n")

    means = {"max content type, labels": [mean_max[b] for b in setup.budgets],
             "max content type, true": [_mean(max_content_type(r["budgets"]["per_budget"][b], "true_ece")
                                              for r in runs) for b in setup.budgets],
             "overall, labels": [_mean(r["budgets"]["per_budget"][b]["ece"] for r in runs) for b in setup.budgets]}
    from adrel_pipeline.evaluation.contextual_plots import ece_budget_png

    setup.plot.parent.mkdir(parents=True, exist_ok=True)
    setup.plot.write_bytes(ece_budget_png(list(setup.budgets), means, goal=ECE_GOAL))
    print(f"plot: {setup.plot}\n")
    return mean_max


def print_calibrations(runs: list[dict], budget: int) -> None:
    print(f"## 2. Calibration methods at the default budget ({budget:,} rows, default log and jobs)\n")
    print("isotonic: train_and_evaluate's `full`; none: its `uncalibrated` (trees on every training row); sigmoid: "
          "`fit(calibration='sigmoid')` on the same rows (trees on the 75% outside the calibration fold, as "
          "isotonic). Same test job.\n")
    head = ["method", "seed", "ece", "ece max ct", "worst ct", "true_ece", "true_ece max ct", "brier", "auc"]

    def row(m: dict) -> list[float]:
        return [m["ece"], max_content_type(m, "ece"), m["true_ece"], max_content_type(m, "true_ece"), m["brier"],
                m["auc"]]

    rows = []
    for method in CALIBRATIONS:
        for r in runs:
            m = r["calibrations"][method]
            values = row(m)
            rows.append([method, r["seed"], *values[:2], worst_content_type(m, "ece"), *values[2:]])
        if len(runs) > 1:
            values = [float(v) for v in np.mean([row(r["calibrations"][method]) for r in runs], axis=0)]
            rows.append([f"**{method}**", "mean", *values[:2], "", *values[2:]])
    print(table(head, rows) + "\n")


METRIC_COLUMNS = ["ece", "ece max ct", "true_ece", "brier", "auc", "ndcg_at_10", "top_k_shopping_relevant_share",
                  "top_k_shopping_ctr"]


def _metric_row(m: dict) -> list[float]:
    return [m["ece"], max_content_type(m, "ece"), m["true_ece"], m["brier"], m["auc"], m["ndcg_at_10"],
            m["top_k_shopping_relevant_share"], m["top_k_shopping_ctr"]]


def print_models(runs: list[dict]) -> None:
    print("## 3. Candidate-level sampling vs the old heuristic, and the ablation (train_and_evaluate)\n")
    r0 = runs[0]
    print(f"Default specs and log; test job {r0['result'].test.height:,} rows; ranking on the logged whole lists "
          f"({r0['list_rows']:,} rows of {CandidateLogSpec().full_list_contexts} contexts, seed {r0['seed']}).\n")
    names = (*MODELS, ORACLE)
    if len(runs) > 1:
        print("### mean over seeds\n")
        print(table(["model", *METRIC_COLUMNS],
                    [[n, *map(float, np.mean([_metric_row(r["metrics"][n]) for r in runs], axis=0))] for n in names])
              + "\n")
    print("### per seed\n")
    print(table(["model", "seed", *METRIC_COLUMNS[:2], "worst ct", *METRIC_COLUMNS[2:]],
                [[n, r["seed"], *_metric_row(r["metrics"][n])[:2], worst_content_type(r["metrics"][n], "ece"),
                  *_metric_row(r["metrics"][n])[2:]] for n in names for r in runs]) + "\n")
    print("### heuristic − full (mean over seeds)\n")
    diff = {k: _mean(r["metrics"]["heuristic"][k] - r["metrics"]["full"][k] for r in runs)
            for k in ("ece", "true_ece", "brier", "auc", "ndcg_at_10")}
    print(", ".join(f"{k} {v:+.4f}" for k, v in diff.items()) + "\n")

    print("### the ablation: full vs no_category_match (relative differences as the asset's ablation/*)\n")
    rows, gains = [], {"top_k_shopping_relevant_share": [], "top_k_shopping_ctr": []}
    for r in runs:
        full, ablated = r["metrics"]["full"], r["metrics"]["no_category_match"]
        row = [r["seed"]]
        for key, values in gains.items():
            values.append(relative_difference(full, ablated, key))
            row += [full[key], ablated[key], f"{values[-1]:+.2%}"]
        row += [full["ece/shopping"], ablated["ece/shopping"], full["true_ece/shopping"], ablated["true_ece/shopping"]]
        rows.append(row)
    if len(runs) > 1:
        row = ["mean"]
        for key, values in gains.items():
            row += [_mean(r["metrics"]["full"][key] for r in runs),
                    _mean(r["metrics"]["no_category_match"][key] for r in runs), f"{_mean(values):+.2%}"]
        row += [_mean(r["metrics"][n][k] for r in runs) for k in ("ece/shopping", "true_ece/shopping")
                for n in ("full", "no_category_match")]
        rows.append(row)
    print(table(["seed", "shopping relevant share full", "no_category_match", "gain", "shopping ctr full",
                 "no_category_match", "gain", "ece/shopping full", "no_category_match", "true_ece/shopping full",
                 "no_category_match"], rows) + "\n")
    print(f"Mean of the per-seed gains: relevant share {_mean(gains['top_k_shopping_relevant_share']):+.2%}, "
          f"clicks (ctr) {_mean(gains['top_k_shopping_ctr']):+.2%} (the seed blog: +4.25% relevant, +1.45% clicks). "
          "Share of shopping ads among the top-k: full "
          f"{_mean(r['metrics']['full']['top_k_shopping_share'] for r in runs):.3f}, no_category_match "
          f"{_mean(r['metrics']['no_category_match']['top_k_shopping_share'] for r in runs):.3f}.\n")
    overlap = [f"seed {r['seed']}: " + ", ".join(f"{n} {v:,}" for n, v in r["list_overlap"].items()) for r in runs]
    print("Labelled rows whose context is one of the whole-list contexts (the ranking metrics' contexts): "
          + "; ".join(overlap) + ".\n")


def print_quality(runs: list[dict]) -> None:
    print("## 4. Label quality (labels.quality)\n")
    rows = []
    for r in runs:
        rows.append([r["seed"], "all", r["quality"]["rows"], r["quality"]["disagreement_rate"],
                     r["quality"]["krippendorff_alpha"], r["quality"]["relevant_share"]])
        for name, q in r["per_job"].items():
            rows.append([r["seed"], name, q["rows"], q["disagreement_rate"], q["krippendorff_alpha"],
                         q["relevant_share"]])
    print(table(["seed", "job", "rows", "disagreement_rate", "krippendorff_alpha", "relevant_share"], rows) + "\n")
    r = next(r for r in runs if r["noise"])
    print(f"rater_noise on seed {r['seed']}'s job rows (the same rows, raters and crowd; default "
          f"{LabelSpec().rater_noise}, rater_bias_sd {LabelSpec().rater_bias_sd}, max_disagreement_rate "
          f"{LabelSpec().max_disagreement_rate}):\n")
    print(table(["rater_noise", "disagreement_rate", "krippendorff_alpha", "relevant_share"],
                [[v, q["disagreement_rate"], q["krippendorff_alpha"], q["relevant_share"]]
                 for v, q in r["noise"].items()]) + "\n")


def print_speed(first: dict, timing: dict, rates: dict, repeats: int) -> None:
    print(f"## 5. Speed (seed {first['seed']}; measured on a shared 2-core machine: other work may have been "
          f"running; medians of {repeats})\n")
    print("Each repeat of each step in a fresh process (this script's --step), inputs read from parquet; time: the "
          "step's library calls (imports and reading the inputs excluded); peak RSS: the process's VmHWM "
          "right after the step (interpreter, imports and inputs included); RSS before: after reading the inputs.\n")
    rows = []
    for name in STEPS:
        runs = timing["runs"][name]
        rows.append([name, STEP_WHAT[name], f"{statistics.median(r['seconds'] for r in runs):.2f}",
                     _seeds([r["seconds"] for r in runs], ".2f"),
                     f"{statistics.median(r['peak_mib'] for r in runs):.0f}",
                     f"{statistics.median(r['rss_before_mib'] for r in runs):.0f}"])
        for sub in runs[0]["sub"]:
            rows.append([f"↳ {sub}", "", f"{statistics.median(r['sub'][sub] for r in runs):.2f}",
                         _seeds([r["sub"][sub] for r in runs], ".2f"), "", ""])
    total = [sum(timing["runs"][n][i]["seconds"] for n in STEPS) for i in range(repeats)]
    rows.append(["**total**", "", f"{statistics.median(total):.2f}", _seeds(total, ".2f"), "", ""])
    print(table(["step", "what", "time (s)", "runs (s)", "peak RSS (MiB)", "RSS before (MiB)"], rows) + "\n")
    funnel = timing["runs"]["candidate_log"]
    per_second = [r["candidates"] / r["sub"]["funnel"] for r in funnel]
    print(f"funnel: {funnel[0]['candidates']:,} candidates of {first['contexts']:,} contexts, "
          f"{statistics.median(per_second):,.0f} candidates/s (runs {_seeds(per_second, ',.0f')})")
    maxrss = {n: statistics.median(r["ru_maxrss_mib"] for r in timing["runs"][n]) for n in STEPS}
    print("(the same processes' ru_maxrss, which on Linux keeps the forking parent's high-water mark across exec: "
          + ", ".join(f"{n} {v:.0f} MiB" for n, v in maxrss.items()) + "; not used)")
    if timing["mismatched"]:
        print(f"WARNING: the step processes' outputs differ in rows from the in-process run: {timing['mismatched']}")
    else:
        print("each step process's output has the in-process run's row count")
    scoring = [rates["scoring_rows"] / s for s in rates["scoring"]]
    labelling = [rates["labelling_rows"] / s for s in rates["labelling"]]
    print(f"scoring: RelevanceModel.predict (production model, feature matrix included) on {rates['scoring_rows']:,} "
          f"candidate rows: {statistics.median(scoring):,.0f} pairs/s (runs {_seeds(scoring, ',.0f')}; "
          f"{statistics.median(rates['scoring']):.2f} s, of which building the feature matrix "
          f"{statistics.median(rates['features']):.2f} s, timed apart); goal >= 1,000,000 pairs/s")
    print(f"labelling: label_rows on {rates['labelling_rows']:,} rows: {statistics.median(labelling):,.0f} rows/s "
          f"(runs {_seeds(labelling, ',.0f')})\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="world seeds (each also the specs')")
    parser.add_argument("--quick", action="store_true", help="one seed, a small world and budgets: a smoke run")
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--step-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    setup = Setup.of(args.quick)
    if args.step:
        print(json.dumps(child_step(args.step, args.step_dir, args.seeds[0], setup)))
        return 0
    seeds = args.seeds[:1] if args.quick else args.seeds
    started = time.perf_counter()
    world = setup.world_spec(seeds[0])
    budget = setup.label_spec(0).labelling_budget
    print(f"# Contextual relevance, day {DAY}, world seeds {' '.join(map(str, seeds))}"
          + (" (--quick)" if args.quick else "") + "\n")
    print(f"World: {world.num_users:,} users, {world.num_items:,} items ({world.num_ads:,} ads), "
          f"{world.contexts_per_day:,} contexts/day, {world.candidates_per_context} candidates/context; "
          f"labelling_budget {budget:,}, test_rows {setup.label_spec(0).test_rows:,}, log_rate "
          f"{CandidateLogSpec().log_rate} (table 1: {BUDGET_LOG_RATE}). Timings on a shared 2-core machine.\n",
          flush=True)
    runs = []
    for i, seed in enumerate(seeds):
        start = time.perf_counter()
        runs.append(run_seed(seed, setup, rater_noise_study=i == 0))
        r = runs[-1]
        print(f"seed {seed}: {r['candidates']:,} candidates, {r['logged']:,} logged, {r['log_rows']:,} log rows; "
              f"in-process: " + ", ".join(f"{k} {v:.2f} s" for k, v in r["seconds"].items())
              + f"; seed total {time.perf_counter() - start:.1f} s", flush=True)
        if i:  # only the first seed's frames are needed later
            for key in ("result", "log", "labels", "tables", "candidates_frame"):
                r.pop(key)
    print()
    print_budgets(runs, setup)
    print_calibrations(runs, budget)
    print_models(runs)
    print_quality(runs)
    first = runs[0]
    timing = speed(first, setup, args.quick)
    rates = throughput(first, setup)
    print_speed(first, timing, rates, setup.repeats)
    print(f"benchmark wall time: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
