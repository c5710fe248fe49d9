"""Print an evaluation: ``python -m adrel_pipeline.defs.report [--partition DAY]`` (uses $DAGSTER_HOME).

Without ``--partition``, the most recent ``test_auc`` materialization of any day. ``--audience``
adds the latest ``audience_eval`` table.
"""

import argparse
import sys

import dagster as dg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--partition", help="day of the model to report, e.g. 2026-01-07")
    parser.add_argument("--audience", action="store_true", help="also the audience expansion evaluation")
    args = parser.parse_args(argv)
    instance = dg.DagsterInstance.get()
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("test_auc"),
                              asset_partitions=[args.partition] if args.partition else None),
        limit=1,
    ).records
    if not records:
        which = f" for partition {args.partition}" if args.partition else ""
        print(f"test_auc has not been materialized{which} in this DAGSTER_HOME yet", file=sys.stderr)
        return 1
    event = records[0].event_log_entry.asset_materialization
    md = {k: v.value for k, v in event.metadata.items()}
    print(f"{'partition':>24}: {event.partition}")
    for key in ("test_auc", "val_auc", "train_auc", "oracle_auc", "auc_to_oracle", "baseline_popularity_auc",
                "baseline_logreg_auc", "test_mrr", "oracle_mrr", "test_hits_at_100", "oracle_hits_at_100"):
        print(f"{key:>24}: {md[key]:.4f}")
    if "next_day_auc" in md:
        print(f"{'next_day_auc':>24}: {md['next_day_auc']:.4f} (oracle {md['next_day_oracle_auc']:.4f}, "
              f"{int(md['next_day_pairs'])} pairs of the next day)")
    else:
        print(f"{'next_day_auc':>24}: not yet (the next day's interactions are not materialized)")
    print(f"{'model version':>24}: v{md['mlflow_model_version']} -> {md['promotion']} ({md['promotion_reason']})")
    print(f"{'world':>24}: {md['world_fingerprint']}")
    print(f"{'mlflow run':>24}: {md['mlflow_run_url']}")
    return audience(instance) if args.audience else 0


def audience(instance: dg.DagsterInstance) -> int:
    records = instance.fetch_materializations(dg.AssetKey("audience_eval"), limit=1).records
    if not records:
        print("audience_eval has not been materialized in this DAGSTER_HOME yet", file=sys.stderr)
        return 1
    md = {k: v.value for k, v in records[0].event_log_entry.asset_materialization.metadata.items()}
    print(f"\naudience expansion, {md['advertisers']} advertisers: mean over k of recall@k and precision@k "
          "(gain over lr), and the share of the expansion in the true audience")
    print(md["table"])
    print(f"{'mlflow run':>12}: {md['mlflow_run_url']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
