"""Per-asset wall time and peak memory of ``make run``, via the real CLI.

    python benchmarks/asset_timings.py [--repeats 3] [--num-users N --num-items N --num-interactions N
                                        --num-advertisers N --seed N --ad-fraction F --epochs N]
                                       [--relevance-only]

Each repeat does what ``make run`` does, in a fresh DAGSTER_HOME, in its order, each process under
``/usr/bin/time -v``:

1. ``dg launch`` of ``users``, ``items``, ``advertisers``, ``ad_inventory`` and ``interaction_edges``
   for the 7 days 2026-01-01..07 as one single-run backfill;
2. ``dg launch`` of ``hetero_graph*`` (graph, split, model, oracle, evaluation) for 2026-01-07;
3. the advertiser partition range, from the deployment world without Dagster (the Makefile's
   ``ADVERTISER_RANGE``);
4. ``dg launch`` of ``user_embeddings,seed_lists*`` over that advertiser partition range (the
   audience group: embeddings, seed lists, models, expansions, evaluation; one run);
5. ``dg launch`` of ``candidate_log*`` for 2026-01-08, the day the week's models serve (the contextual
   group: candidate log, labels, relevance model; and the funnel group: funnel metrics and the
   registration, trend, A/A and A/B tests);
6. ``python -m adrel_pipeline.defs.report --partition 2026-01-07 --audience --contextual 2026-01-08``:
   the reports in one process (counted with the relevance part: the relevance pipeline alone needs its
   report too).

``$ADREL_EMBEDDING_DAY`` is 2026-01-07, as the Makefile exports it. Unlike ``make run`` the launches
keep Dagster's default (DEBUG) console: the step times are read from its STEP_SUCCESS lines.

Printed, as medians over the repeats: each step's time; each step's peak RSS (the run process's
high-water mark while the step ran: reset at the step's STEP_START line through
``/proc/PID/clear_refs``, read at its STEP_SUCCESS line, so it includes what earlier steps and
imports left resident) and its RSS at the start; each process's wall time (start to exit) and peak
RSS; the relevance total (1 + 2 + 6), the audience total (3 + 4; what the audience group adds to
``make run``, besides its ``advertisers`` step inside 1), the contextual total (5, besides its
``ad_inventory`` step inside 1), and the whole. Then the last
run's AUCs and overall audience metrics.

``--relevance-only``: only the relevance pipeline (``users``, ``items`` and ``interaction_edges`` in the
backfill, without ``advertisers`` and ``ad_inventory``; the model; ``report --partition``), for worlds
where the audience and contextual groups are not what is measured.

All repeats record to one sqlite MLflow store, created before the first timed run: a scheduled
retrain finds its store in place, so creating the schema (a one-off) is timed separately.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Dagster writes a step's duration as 533ms, 5.6s, 4m52s or 1h4m.
STEP = re.compile(r'STEP_SUCCESS - Finished execution of step "(\w+)" in (?:(\d+)h)?(?:(\d+)m)?(?:([\d.]+)(ms|s))?\.')
# "... - <run id> - <pid> - <step> - STEP_START - ...": the pid is the process running the step.
EVENT = re.compile(r" - (\d+) - (\w+) - (STEP_START|STEP_SUCCESS) - ")
MAXRSS = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")
RANGE = re.compile(r"^(\S+\.\.\.\S+)$", re.MULTILINE)
DAY = "2026-01-07"
SERVE_DAY = "2026-01-08"  # the Makefile's SERVE_DAY
REPORT = ["-m", "adrel_pipeline.defs.report"]

# The Makefile's ADVERTISER_RANGE.
RANGE_CODE = ("from adrel_pipeline.world import deployment_world; "
              "from adrel_pipeline.world.advertisers import advertiser_range; "
              "print(advertiser_range(deployment_world()))")
# (name, part, kind, arguments); kind: "dg" (dg launch) or "py" (python); "{range}" is filled in.
COMMANDS = [
    ("world + 7 days (backfill)", "relevance", "dg",
     ["--assets", "users,items,advertisers,ad_inventory,interaction_edges", "--partition-range",
      f"2026-01-01...{DAY}"]),
    (f"model of {DAY}", "relevance", "dg", ["--assets", "hetero_graph*", "--partition", DAY]),
    ("advertiser range", "audience", "py", ["-c", RANGE_CODE]),
    ("audience (advertiser range)", "audience", "dg",
     ["--assets", "user_embeddings,seed_lists*", "--partition-range", "{range}"]),
    (f"contextual of {SERVE_DAY}", "contextual", "dg", ["--assets", "candidate_log*", "--partition", SERVE_DAY]),
    ("report --partition --audience --contextual", "relevance", "py",
     [*REPORT, "--partition", DAY, "--audience", "--contextual", SERVE_DAY]),
]
AUDIENCE_STEPS = ("advertisers", "user_embeddings", "seed_lists", "audience_models", "audience_expansions",
                  "audience_eval")
CONTEXTUAL_STEPS = ("ad_inventory", "candidate_log", "relevance_labels", "relevance_model", "funnel_metrics",
                    "relevance_trend", "relevance_experiments")


def relevance_only(commands: list) -> list:
    """The relevance part of ``commands``: the backfill without the audience's and contextual group's
    assets, the model, and the report of the model alone."""
    out = []
    for name, part, kind, args in commands:
        if part != "relevance":
            continue
        if kind == "dg" and "--partition-range" in args:
            args = ["--assets", "users,items,interaction_edges", *args[2:]]
        elif args[:len(REPORT)] == REPORT:
            name, args = "report --partition", [*REPORT, "--partition", DAY]
        out.append((name, part, kind, args))
    return out


def part_of(step: str) -> str:
    return "audience" if step in AUDIENCE_STEPS else "contextual" if step in CONTEXTUAL_STEPS else "relevance"

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "dagster.yaml"


def _status_mib(pid: int, field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of a live process, in MiB (NaN once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _reset_peak(pid: int) -> None:
    """Resets the process's high-water RSS (VmHWM) to its current RSS (Linux >= 4.0)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError as err:
        raise SystemExit(f"cannot reset the peak RSS of pid {pid} ({err}): per-step peaks need /proc/PID/clear_refs")


def run_command(cmd: list[str], env: dict) -> dict:
    """Runs ``cmd`` under ``/usr/bin/time -v``, following its output as it comes: wall time, peak RSS,
    output, and per step (from the Dagster event lines) time, peak RSS and RSS at start."""
    steps, peaks, starts, open_steps = {}, {}, {}, {}
    process_peak = 0.0  # the high-water marks the resets discard
    lines = []
    start = time.perf_counter()
    proc = subprocess.Popen(["/usr/bin/time", "-v", *cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1, env=env, cwd=REPO)
    for line in proc.stdout:
        lines.append(line)
        event = EVENT.search(line)
        if event:
            pid, step, kind = int(event[1]), event[2], event[3]
            if kind == "STEP_START":
                process_peak = max(process_peak, _status_mib(pid, "VmHWM"))
                starts[step] = _status_mib(pid, "VmRSS")
                _reset_peak(pid)
                open_steps[step] = pid
            elif step in open_steps:  # a step with asset checks logs STEP_SUCCESS twice
                peaks[step] = _status_mib(open_steps.pop(step), "VmHWM")
        for m in STEP.finditer(line):
            steps[m[1]] = (3600 * float(m[2] or 0) + 60 * float(m[3] or 0)
                           + float(m[4] or 0) / (1000 if m[5] == "ms" else 1))
    proc.wait()
    wall = time.perf_counter() - start
    out = "".join(lines)
    if proc.returncode:
        print("".join(lines[-40:]))
        raise SystemExit(proc.returncode)
    rss = max(process_peak, *peaks.values(), float(MAXRSS.search(out)[1]) / 1024)
    return {"wall": wall, "rss": rss, "out": out, "steps": steps, "peaks": peaks, "starts": starts}


def run_once(world: dict, epochs: int | None, tracking_uri: str, commands: list = COMMANDS) -> dict:
    home = Path(tempfile.mkdtemp(prefix="adrel-bench-"))
    (home / "dagster.yaml").write_text(CONFIG.read_text())
    lines = ["resources:", "  world:", "    config: {" + ", ".join(f"{k}: {v}" for k, v in world.items()) + "}"]
    world_cfg = home / "world.yaml"  # only the model's run takes op config
    world_cfg.write_text("\n".join(lines) + "\n" if world else "{}\n")
    model_cfg = home / "run.yaml"
    model_lines = lines if world else []
    if epochs:
        model_lines = model_lines + ["ops:", "  trained_gat:", f"    config: {{epochs: {epochs}}}"]
    model_cfg.write_text("\n".join(model_lines) + "\n" if model_lines else "{}\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "MLFLOW_TRACKING_URI": tracking_uri,
           "VIRTUAL_ENV": str(Path(sys.executable).parents[1]), "ADREL_EMBEDDING_DAY": DAY}
    if world:  # the advertiser range is read from the deployment world, as the Makefile does
        (home / "adrel_world.yaml").write_text("".join(f"{k}: {v}\n" for k, v in world.items()))
        env["ADREL_WORLD"] = str(home / "adrel_world.yaml")
    dg = str(Path(sys.executable).parent / "dg")
    result = {"steps": {}, "peaks": {}, "starts": {}, "walls": {}, "rss": {}, "home": home, "command_of": {}}
    advertiser_range = None
    for name, _, kind, args in commands:
        args = [advertiser_range if a == "{range}" else a for a in args]
        if kind == "dg":
            cfg = model_cfg if name.startswith("model of") else world_cfg
            cmd = [dg, "launch", *args, "-c", str(cfg)]
        else:
            cmd = [sys.executable, *args]
        r = run_command(cmd, env)
        if name == "advertiser range":
            advertiser_range = RANGE.search(r["out"])[1]
        result["walls"][name], result["rss"][name] = r["wall"], r["rss"]
        for key in ("steps", "peaks", "starts"):
            result[key] |= r[key]
        result["command_of"] |= {step: name for step in r["steps"]}
    result["range"] = advertiser_range
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("seed", "num-users", "num-items", "num-interactions", "num-advertisers"):
        parser.add_argument(f"--{name}", type=int)
    parser.add_argument("--ad-fraction", type=float)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--relevance-only", action="store_true",
                        help="only the relevance pipeline: no audience or contextual group")
    args = parser.parse_args()
    world = {k: v for k, v in vars(args).items()
             if k not in ("epochs", "repeats", "relevance_only") and v is not None}
    commands = relevance_only(COMMANDS) if args.relevance_only else COMMANDS

    tracking_uri = f"sqlite:///{tempfile.mkdtemp(prefix='adrel-bench-mlflow-')}/mlflow.db"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import sys; from adrel_pipeline.mlops.store import connect; connect(sys.argv[1], 'adrel')",
                    tracking_uri], check=True, capture_output=True)
    print(f"new MLflow store (schema + experiment, incl. interpreter start): {time.perf_counter() - start:.1f} s")

    runs = []
    for i in range(args.repeats):
        runs.append(run_once(world, args.epochs, tracking_uri, commands))
        print(f"repeat {i + 1}: " + ", ".join(f"{k} {v:.1f} s" for k, v in runs[-1]["walls"].items()), flush=True)

    def median(values) -> float:
        return statistics.median(values)

    print(f"\nworld: {world or 'defaults'}; advertisers {runs[0]['range']}; median of {args.repeats} run(s)\n")
    print("| step | process | time (s) | peak RSS (MiB) | RSS at start (MiB) |\n|---|---|---|---|---|")
    for step in runs[0]["steps"]:
        label = step if part_of(step) == "relevance" else f"**{step}**"
        print(f"| {label} | {runs[0]['command_of'][step]} | {median(r['steps'][step] for r in runs):.2f} | "
              f"{median(r['peaks'][step] for r in runs):.0f} | {median(r['starts'][step] for r in runs):.0f} |")
    for part in ("relevance", "audience", "contextual"):
        names = [s for s in runs[0]["steps"] if part_of(s) == part]
        print(f"| {part} steps total | | {median(sum(r['steps'][s] for s in names) for r in runs):.2f} | | |")

    print("\n| process | part | wall (s) | all runs (s) | peak RSS (MiB) |\n|---|---|---|---|---|")
    for name, part, _, _ in commands:
        walls = [r["walls"][name] for r in runs]
        print(f"| {name} | {part} | {median(walls):.2f} | " + " / ".join(f"{w:.2f}" for w in walls)
              + f" | {median(r['rss'][name] for r in runs):.0f} |")
    totals = {
        "relevance launches (1 + 2; earlier sections' process total)": lambda r: sum(
            r["walls"][n] for n, p, k, _ in commands if p == "relevance" and k == "dg"),
        "relevance total (1 + 2 + report)": lambda r: sum(r["walls"][n] for n, p, _, _ in commands if p == "relevance"),
        "audience total (range + launch)": lambda r: sum(
            r["walls"][n] for n, p, _, _ in commands if p == "audience"),
        "contextual total (launch)": lambda r: sum(r["walls"][n] for n, p, _, _ in commands if p == "contextual"),
        "all six processes (make run's commands)": lambda r: sum(r["walls"].values()),
    }
    for name, total in totals.items():
        values = [total(r) for r in runs]
        print(f"| **{name}** | | **{median(values):.2f}** | " + " / ".join(f"{v:.2f}" for v in values) + " | |")
    print(f"\npeak RSS over all processes: {median(max(r['rss'].values()) for r in runs):.0f} MiB")

    import dagster as dg
    os.environ["DAGSTER_HOME"] = str(runs[-1]["home"])  # config/dagster.yaml places storage by it
    instance = dg.DagsterInstance.get()
    md = instance.get_latest_materialization_event(dg.AssetKey("test_auc")).asset_materialization.metadata
    print("  " + "  ".join(f"{k}={md[k].value:.4f}" for k in ("test_auc", "val_auc", "oracle_auc", "auc_to_oracle",
                                                             "test_hits_at_100", "oracle_hits_at_100")))
    if args.relevance_only:
        return
    md = instance.get_latest_materialization_event(dg.AssetKey("audience_eval")).asset_materialization.metadata
    for metric in ("recall_at_k", "precision_at_k", "gt_precision_at_k"):
        print(f"  {metric}: " + "  ".join(f"{m}={md[f'{metric}/{m}'].value:.4f}"
                                          for m in ("lr", "lsh", "nn", "nn_unweighted", "oracle")))
    md = instance.get_latest_materialization_event(dg.AssetKey("relevance_model")).asset_materialization.metadata
    print("  relevance_model: " + "  ".join(f"{k}={md[k].value:.4f}" for k in (
        "ece", "ece/regular", "ece/video", "ece/shopping", "ece/carousel", "true_ece", "brier", "ndcg_at_10")))


if __name__ == "__main__":
    main()
