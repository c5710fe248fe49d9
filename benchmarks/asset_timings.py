"""Per-asset wall time and peak memory of one full materialization, via the real CLI.

    python benchmarks/asset_timings.py [--repeats 3] [--num-users N --num-items N --num-interactions N]

Each repeat runs ``dagster asset materialize -m adrel_pipeline --select '*'`` in a fresh
DAGSTER_HOME under ``/usr/bin/time -v``; prints medians of step times (from the STEP_SUCCESS
log lines), process wall time (start to exit) and peak RSS, and the last run's AUCs.
"""

import argparse
import os
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

STEP = re.compile(r'STEP_SUCCESS - Finished execution of step "(\w+)" in ([\d.]+)(ms|s)')


def run_once(world: dict, epochs: int | None) -> tuple[dict, float, float, Path]:
    home = Path(tempfile.mkdtemp(prefix="adrel-bench-"))
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    config = home / "run.yaml"
    lines = ["resources:", "  world:", "    config: {" + ", ".join(f"{k}: {v}" for k, v in world.items()) + "}"]
    if epochs:
        lines += ["ops:", "  trained_gat:", f"    config: {{epochs: {epochs}}}"]
    config.write_text("\n".join(lines) + "\n" if world or epochs else "{}\n")
    cmd = ["/usr/bin/time", "-v", "dagster", "asset", "materialize", "-m", "adrel_pipeline",
           "--select", "*", "-c", str(config)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "DAGSTER_HOME": str(home)})
    wall = time.perf_counter() - start
    out = proc.stdout + proc.stderr
    if proc.returncode:
        print("\n".join(out.splitlines()[-40:]))
        raise SystemExit(proc.returncode)
    steps = {m[1]: float(m[2]) / (1000 if m[3] == "ms" else 1) for m in STEP.finditer(out)}
    rss_kb = float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out)[1])
    return steps, wall, rss_kb / 1024, home


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("seed", "num-users", "num-items", "num-interactions"):
        parser.add_argument(f"--{name}", type=int)
    parser.add_argument("--ad-fraction", type=float)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    world = {k: v for k, v in vars(args).items() if k not in ("epochs", "repeats") and v is not None}

    runs = [run_once(world, args.epochs) for _ in range(args.repeats)]
    print(f"world: {world or 'defaults'}; median of {args.repeats} run(s)")
    for step in runs[0][0]:
        print(f"  {step:<20} {statistics.median(r[0][step] for r in runs):8.2f} s")
    print(f"  {'steps total':<20} {statistics.median(sum(r[0].values()) for r in runs):8.2f} s")
    print(f"  {'process total':<20} {statistics.median(r[1] for r in runs):8.2f} s   (all: "
          + ", ".join(f"{r[1]:.1f}" for r in runs) + ")")
    print(f"  {'peak RSS':<20} {statistics.median(r[2] for r in runs):8.0f} MiB")

    import dagster as dg
    os.environ["DAGSTER_HOME"] = str(runs[-1][3])
    event = dg.DagsterInstance.get().get_latest_materialization_event(dg.AssetKey("test_auc"))
    md = event.asset_materialization.metadata
    print("  " + "  ".join(f"{k}={md[k].value:.4f}" for k in ("test_auc", "val_auc", "oracle_auc", "auc_to_oracle")))


if __name__ == "__main__":
    main()
