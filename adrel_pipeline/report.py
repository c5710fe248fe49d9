"""Print the latest evaluation: ``python -m adrel_pipeline.report`` (uses $DAGSTER_HOME)."""

import sys

import dagster as dg


def main() -> int:
    instance = dg.DagsterInstance.get()
    event = instance.get_latest_materialization_event(dg.AssetKey("test_auc"))
    if event is None:
        print("test_auc has not been materialized in this DAGSTER_HOME yet", file=sys.stderr)
        return 1
    md = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    for key in ("test_auc", "val_auc", "train_auc", "oracle_auc", "auc_to_oracle",
                "test_mrr", "oracle_mrr", "test_hits_at_100", "oracle_hits_at_100"):
        print(f"{key:>18}: {md[key]:.4f}")
    print(f"{'model version':>18}: v{md['mlflow_model_version']} -> {md['promotion']} ({md['promotion_reason']})")
    print(f"{'mlflow run':>18}: {md['mlflow_run_url']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
