"""Per-asset wall time and peak memory of the README's main command, via the real CLI.

    python benchmarks/asset_timings.py [--repeats 3] [--num-users N --num-items N --num-interactions N]

Each repeat does what ``make run`` does, in a fresh DAGSTER_HOME, each command under
``/usr/bin/time -v``: ``users``, ``items`` and ``interaction_edges`` for the 7 days 2026-01-01..07
as one single-run backfill; ``hetero_graph*`` (graph, split, model, oracle, evaluation) for 2026-01-07.
Prints medians of step times (from the STEP_SUCCESS log lines), of each command's and the total
process wall time (start to exit), the peak RSS, and the last run's AUCs.

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

STEP = re.compile(r'STEP_SUCCESS - Finished execution of step "(\w+)" in ([\d.]+)(ms|s)')


COMMANDS = {
    "world + 7 days (backfill)": ["--assets", "users,items,interaction_edges",
                                  "--partition-range", "2026-01-01...2026-01-07"],
    "model of 2026-01-07": ["--assets", "hetero_graph*", "--partition", "2026-01-07"],
}
REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "dagster.yaml"


def run_once(world: dict, epochs: int | None, tracking_uri: str) -> tuple[dict, dict, float, Path]:
    home = Path(tempfile.mkdtemp(prefix="adrel-bench-"))
    (home / "dagster.yaml").write_text(CONFIG.read_text())
    config = home / "run.yaml"
    lines = ["resources:", "  world:", "    config: {" + ", ".join(f"{k}: {v}" for k, v in world.items()) + "}"]
    if epochs:
        lines += ["ops:", "  trained_gat:", f"    config: {{epochs: {epochs}}}"]
    config.write_text("\n".join(lines) + "\n" if world or epochs else "{}\n")
    steps, walls, rss = {}, {}, 0.0
    for name, args in COMMANDS.items():
        if name != "model of 2026-01-07":
            cfg = home / "world.yaml"  # only the model's run takes op config
            cfg.write_text("\n".join(lines[:3]) + "\n" if world else "{}\n")
        else:
            cfg = config
        cmd = ["/usr/bin/time", "-v", str(Path(sys.executable).parent / "dg"), "launch", *args, "-c", str(cfg)]
        start = time.perf_counter()
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True,
                              env={**os.environ, "DAGSTER_HOME": str(home), "MLFLOW_TRACKING_URI": tracking_uri,
                                   "VIRTUAL_ENV": str(Path(sys.executable).parents[1])}, cwd=REPO)
        walls[name] = time.perf_counter() - start
        out = proc.stdout + proc.stderr
        if proc.returncode:
            print("\n".join(out.splitlines()[-40:]))
            raise SystemExit(proc.returncode)
        steps |= {m[1]: float(m[2]) / (1000 if m[3] == "ms" else 1) for m in STEP.finditer(out)}
        rss = max(rss, float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out)[1]) / 1024)
    return steps, walls, rss, home


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("seed", "num-users", "num-items", "num-interactions"):
        parser.add_argument(f"--{name}", type=int)
    parser.add_argument("--ad-fraction", type=float)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    world = {k: v for k, v in vars(args).items() if k not in ("epochs", "repeats") and v is not None}

    tracking_uri = f"sqlite:///{tempfile.mkdtemp(prefix='adrel-bench-mlflow-')}/mlflow.db"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import sys; from adrel_pipeline.mlops.store import connect; connect(sys.argv[1], 'adrel')",
                    tracking_uri], check=True, capture_output=True)
    print(f"new MLflow store (schema + experiment, incl. interpreter start): {time.perf_counter() - start:.1f} s")

    runs = [run_once(world, args.epochs, tracking_uri) for _ in range(args.repeats)]
    print(f"world: {world or 'defaults'}; median of {args.repeats} run(s)")
    for step in runs[0][0]:
        print(f"  {step:<20} {statistics.median(r[0][step] for r in runs):8.2f} s")
    print(f"  {'steps total':<20} {statistics.median(sum(r[0].values()) for r in runs):8.2f} s")
    for name in COMMANDS:
        print(f"  {'process ' + name:<28} {statistics.median(r[1][name] for r in runs):8.2f} s")
    totals = [sum(r[1].values()) for r in runs]
    print(f"  {'process total':<20} {statistics.median(totals):8.2f} s   (all: "
          + ", ".join(f"{t:.1f}" for t in totals) + ")")
    print(f"  {'peak RSS':<20} {statistics.median(r[2] for r in runs):8.0f} MiB")

    import dagster as dg
    os.environ["DAGSTER_HOME"] = str(runs[-1][3])  # config/dagster.yaml places storage by it
    event = dg.DagsterInstance.get().get_latest_materialization_event(dg.AssetKey("test_auc"))
    md = event.asset_materialization.metadata
    print("  " + "  ".join(f"{k}={md[k].value:.4f}" for k in ("test_auc", "val_auc", "oracle_auc", "auc_to_oracle",
                                                             "test_hits_at_100", "oracle_hits_at_100")))


if __name__ == "__main__":
    main()
