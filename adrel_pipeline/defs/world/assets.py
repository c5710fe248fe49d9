"""Users, items, and the interaction log (one partition per day), from the deployment's data source
(``$ADREL_SOURCE``): the synthetic world by default, or a team's own files or database."""

import datetime as dt

import dagster as dg
import polars as pl

from adrel_pipeline.defs.shared import checks
from adrel_pipeline.defs.shared.checks import Check
from adrel_pipeline.defs.shared.partitions import asset_backfilled_in_one_run, daily
from adrel_pipeline.defs.shared.resources import WorldResource
from adrel_pipeline.defs.shared.source import DataSource, is_synthetic
from adrel_pipeline.mlops.code_version import asset_code_version
from adrel_pipeline.world import AGE_GROUPS, INTERESTS
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


# Value shares of the categorical feature columns with at most this many values (metadata).
MAX_SHARED_VALUES = 50


def feature_shares(df: pl.DataFrame, columns) -> dict:
    out = {}
    for column in columns:
        if df.schema[column].is_numeric() or df[column].n_unique() > MAX_SHARED_VALUES:
            continue
        out[f"{column}_share"] = dg.MetadataValue.json(shares(df, column))
    return out


# The synthetic world's checks name its fixed vocabularies; a team's own data gets the same checks
# over whatever vocabularies its source declares.
SYNTHETIC = is_synthetic()
USER_CHECKS = [
    Check("user_ids_unique", "Every user_id appears once and none is null."),
    *([Check("age_groups_in_vocabulary", f"age_group is one of {list(AGE_GROUPS)}."),
       Check("main_interests_in_vocabulary", f"main_interest is one of {list(INTERESTS)}.")] if SYNTHETIC else
      [Check("user_features_in_vocabulary", "Every user feature with a declared vocabulary takes only its values.")]),
]


# Not partitioned, but single-run too: one command (and one process) can materialize them with a
# range of days of interactions (`make run`).
@asset_backfilled_in_one_run(group_name=GROUP, kinds={"polars"}, code_version=asset_code_version("users"),
                             check_specs=checks.specs("users", USER_CHECKS))
def users(world: WorldResource, source: DataSource):
    """One row per user: ``user_id`` and the source's feature columns. The synthetic world's are age
    group and main interest, plus the generator's latent ``true_activity`` and ``taste`` (its truth,
    never features: taste shapes organic interactions and audiences)."""
    data = source.open(world.spec())
    df = data.users()
    features = data.features
    metadata = {**table_metadata(df), **feature_shares(df, features.user_columns), "source": data.name}
    if "true_activity" in df.columns:
        metadata["mean_true_activity"] = float(df["true_activity"].mean())
    outcomes = {"user_ids_unique": validation.ids_unique(df, "user_id")}
    if SYNTHETIC:
        outcomes |= {"age_groups_in_vocabulary": validation.values_in_vocabulary(df, "age_group", AGE_GROUPS),
                     "main_interests_in_vocabulary": validation.values_in_vocabulary(df, "main_interest", INTERESTS)}
    else:
        outcomes["user_features_in_vocabulary"] = validation.features_in_vocabularies(
            df.select(features.user_columns), features.vocabularies)
    yield from checks.emit(dg.Output(df, metadata=metadata), USER_CHECKS, outcomes)


ITEM_CHECKS = [
    Check("item_ids_unique", "Every item_id appears once and none is null."),
    Check("categories_in_vocabulary", f"category is one of {list(INTERESTS)}.") if SYNTHETIC else
    Check("item_features_in_vocabulary", "Every item feature with a declared vocabulary takes only its values."),
]


@asset_backfilled_in_one_run(group_name=GROUP, kinds={"polars"}, code_version=asset_code_version("items"),
                             check_specs=checks.specs("items", ITEM_CHECKS))
def items(world: WorldResource, source: DataSource):
    """One row per item (organic pin or ad): ``item_id``, ``is_ad`` and the source's feature columns.
    The synthetic world's is the category, plus the latent ``style`` and ``popularity`` that steer
    organic interactions (never features)."""
    data = source.open(world.spec())
    df = data.items()
    features = data.features
    outcomes = {"item_ids_unique": validation.ids_unique(df, "item_id")}
    if SYNTHETIC:
        outcomes["categories_in_vocabulary"] = validation.values_in_vocabulary(df, "category", INTERESTS)
    else:
        outcomes["item_features_in_vocabulary"] = validation.features_in_vocabularies(
            df.select(features.item_columns), features.vocabularies)
    yield from checks.emit(dg.Output(df, metadata={
        **table_metadata(df),
        "num_ads": int(df["is_ad"].sum()),
        "ad_share": float(df["is_ad"].mean()),
        **feature_shares(df, features.item_columns),
        "source": data.name,
    }), ITEM_CHECKS, outcomes)


INTERACTION_CHECKS = [
    Check("references_known_users_and_items", "Every interaction's user_id is in users and item_id in items."),
    Check("daily_counts_as_configured",
          "Each day holds exactly the world's daily volume (num_interactions per 7 days) and only its own date.")
    if SYNTHETIC else Check("day_holds_only_its_own_date", "Each day's rows are of that day, none with a null day."),
]


# A single-run backfill checks each of its days on its own: one result per check and day.
@asset_backfilled_in_one_run(group_name=GROUP, kinds={"polars"}, partitions_def=daily,
                             code_version=asset_code_version("interaction_edges"),
                             check_specs=checks.specs("interaction_edges", INTERACTION_CHECKS, daily))
def interaction_edges(context: dg.AssetExecutionContext, world: WorldResource, source: DataSource,
                      users: pl.DataFrame, items: pl.DataFrame):
    """The day's interaction log: one row per (user_id, item_id, day) event, repeats included.

    The synthetic world generates each day from (world seed, date) alone, so re-materializing a day
    gives the same bytes; a team's source reads that day's rows (its file, or ``WHERE day = :day``).
    Every day of a range is read and validated (known users and items, rows present) before any is
    written; a range (a backfill) runs as one run writing one file per day.
    """
    spec = world.spec()
    data = source.open(spec, users=users, items=items)
    days = [dt.date.fromisoformat(key) for key in context.partition_keys]
    # Every day is read (and a team's checked against users and items: SourceDataError naming the
    # file or table, the day and the ids) before anything is written.
    by_day = {day.isoformat(): data.interactions(day) for day in days}
    df = pl.concat(list(by_day.values()))
    with_ads = df.join(items.select("item_id", "is_ad"), on="item_id")
    # In a range run the same metadata lands on every day's materialization: say what it covers.
    metadata = table_metadata(df) if len(days) == 1 else {
        "days_in_run": len(days), "rows_in_run": df.height,
        "preview": dg.MetadataValue.md(f"```\n{df.head(5)}\n```"),
    }
    value = by_day[days[0].isoformat()] if len(days) == 1 else by_day

    def day_outcomes(day: dt.date) -> dict:
        rows = by_day[day.isoformat()]
        expected = spec.interactions_on(day) if SYNTHETIC else rows.height
        counts = validation.daily_counts(rows, {day: expected})
        return {"references_known_users_and_items": validation.references_known(rows, users, items),
                INTERACTION_CHECKS[1].name: counts}

    yield from checks.emit_by_partition(context, dg.Output(value, metadata={
        **metadata,
        "distinct_pairs": df.select("user_id", "item_id").unique().height,
        "active_users": df["user_id"].n_unique(),
        "ad_interaction_share": float(with_ads["is_ad"].mean()),
        "source": data.name,
    }), INTERACTION_CHECKS, {day.isoformat(): day_outcomes(day) for day in days})
