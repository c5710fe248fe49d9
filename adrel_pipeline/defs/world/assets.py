"""Assets of the synthetic world: users, items, and the interaction log, one partition per day."""

import datetime as dt

import dagster as dg
import polars as pl

from adrel_pipeline.defs.shared import checks
from adrel_pipeline.defs.shared.checks import Check
from adrel_pipeline.defs.shared.partitions import asset_backfilled_in_one_run, daily
from adrel_pipeline.defs.shared.resources import WorldResource
from adrel_pipeline.mlops.code_version import asset_code_version
from adrel_pipeline.world import (
    AGE_GROUPS,
    INTERESTS,
    generate_day,
    generate_items,
    generate_users,
)
from adrel_pipeline.world import rules as validation

GROUP = "world"


def table_metadata(df: pl.DataFrame) -> dict:
    return {
        "dagster/row_count": df.height,
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name, str(dtype)) for name, dtype in df.schema.items()]
        ),
        "preview": dg.MetadataValue.md(f"```\n{df.head(5)}\n```"),
    }


def shares(df: pl.DataFrame, column: str) -> dict[str, float]:
    counts = df[column].value_counts().sort(column)
    return {str(k): round(v / df.height, 4) for k, v in zip(counts[column], counts["count"])}


USER_CHECKS = [
    Check("user_ids_unique", "Every user_id appears once and none is null."),
    Check("age_groups_in_vocabulary", f"age_group is one of {list(AGE_GROUPS)}."),
    Check("main_interests_in_vocabulary", f"main_interest is one of {list(INTERESTS)}."),
]


# Not partitioned, but single-run too: one command (and one process) can materialize them with a
# range of days of interactions (`make run`).
@asset_backfilled_in_one_run(group_name=GROUP, kinds={"polars"}, code_version=asset_code_version("users"),
                             check_specs=checks.specs("users", USER_CHECKS))
def users(world: WorldResource):
    """One row per user: age group, main interest, and the latent ``true_activity`` and ``taste``
    (the generator's truth, never features: taste shapes organic interactions and audiences)."""
    df = generate_users(world.spec())
    yield from checks.emit(dg.Output(df, metadata={
        **table_metadata(df),
        "age_group_share": dg.MetadataValue.json(shares(df, "age_group")),
        "main_interest_share": dg.MetadataValue.json(shares(df, "main_interest")),
        "mean_true_activity": float(df["true_activity"].mean()),
    }), USER_CHECKS, {
        "user_ids_unique": validation.ids_unique(df, "user_id"),
        "age_groups_in_vocabulary": validation.values_in_vocabulary(df, "age_group", AGE_GROUPS),
        "main_interests_in_vocabulary": validation.values_in_vocabulary(df, "main_interest", INTERESTS),
    })


ITEM_CHECKS = [
    Check("item_ids_unique", "Every item_id appears once and none is null."),
    Check("categories_in_vocabulary", f"category is one of {list(INTERESTS)}."),
]


@asset_backfilled_in_one_run(group_name=GROUP, kinds={"polars"}, code_version=asset_code_version("items"),
                             check_specs=checks.specs("items", ITEM_CHECKS))
def items(world: WorldResource):
    """One row per item (organic pin or ad) with its category, and the latent ``style`` and
    ``popularity`` that steer organic interactions (never features)."""
    df = generate_items(world.spec())
    yield from checks.emit(dg.Output(df, metadata={
        **table_metadata(df),
        "num_ads": int(df["is_ad"].sum()),
        "ad_share": float(df["is_ad"].mean()),
        "category_share": dg.MetadataValue.json(shares(df, "category")),
    }), ITEM_CHECKS, {
        "item_ids_unique": validation.ids_unique(df, "item_id"),
        "categories_in_vocabulary": validation.values_in_vocabulary(df, "category", INTERESTS),
    })


INTERACTION_CHECKS = [
    Check("references_known_users_and_items", "Every interaction's user_id is in users and item_id in items."),
    Check("daily_counts_as_configured",
          "Each day holds exactly the world's daily volume (num_interactions per 7 days) and only its own date."),
]


# A single-run backfill checks each of its days on its own: one result per check and day.
@asset_backfilled_in_one_run(group_name=GROUP, kinds={"polars"}, partitions_def=daily,
                             code_version=asset_code_version("interaction_edges"),
                             check_specs=checks.specs("interaction_edges", INTERACTION_CHECKS, daily))
def interaction_edges(context: dg.AssetExecutionContext, world: WorldResource, users: pl.DataFrame,
                      items: pl.DataFrame):
    """The day's interaction log: one row per (user_id, item_id, day) event, repeats included.

    Each day is generated from (world seed, date) alone, so re-materializing a day gives the
    same bytes, and a range of days (a backfill) runs as one run writing one file per day.
    """
    spec = world.spec()
    days = [dt.date.fromisoformat(key) for key in context.partition_keys]
    by_day = {day.isoformat(): generate_day(spec, users, items, day) for day in days}
    df = pl.concat(list(by_day.values()))
    with_ads = df.join(items.select("item_id", "is_ad"), on="item_id")
    # In a range run the same metadata lands on every day's materialization: say what it covers.
    metadata = table_metadata(df) if len(days) == 1 else {
        "days_in_run": len(days), "rows_in_run": df.height,
        "preview": dg.MetadataValue.md(f"```\n{df.head(5)}\n```"),
    }
    value = by_day[days[0].isoformat()] if len(days) == 1 else by_day
    yield from checks.emit_by_partition(context, dg.Output(value, metadata={
        **metadata,
        "distinct_pairs": df.select("user_id", "item_id").unique().height,
        "active_users": df["user_id"].n_unique(),
        "ad_interaction_share": float(with_ads["is_ad"].mean()),
    }), INTERACTION_CHECKS, {
        day.isoformat(): {
            "references_known_users_and_items": validation.references_known(by_day[day.isoformat()], users, items),
            "daily_counts_as_configured": validation.daily_counts(by_day[day.isoformat()],
                                                                  {day: spec.interactions_on(day)}),
        }
        for day in days
    })
