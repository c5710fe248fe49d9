"""Print the latest materialized AUCs: ``python -m adrel_pipeline.report`` (uses $DAGSTER_HOME)."""

import sys

import dagster as dg


def main() -> int:
    instance = dg.DagsterInstance.get()
    event = instance.get_latest_materialization_event(dg.AssetKey("test_auc"))
    if event is None:
        print("test_auc has not been materialized in this DAGSTER_HOME yet", file=sys.stderr)
        return 1
    md = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    for key in ("test_auc", "val_auc", "train_auc", "oracle_auc", "auc_to_oracle"):
        print(f"{key:>14}: {md[key]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
