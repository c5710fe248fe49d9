"""Assets of the synthetic world: users, items and their interaction log."""


import dagster as dg
import polars as pl

from adrel_pipeline.defs.resources import WorldResource
from adrel_pipeline.world import generate_interactions, generate_items, generate_users

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


@dg.asset(group_name=GROUP, kinds={"polars"})
def users(world: WorldResource) -> dg.Output[pl.DataFrame]:
    """One row per user: age group, main interest, and the latent ``true_activity`` (never a feature)."""
    df = generate_users(world.spec())
    return dg.Output(df, metadata={
        **table_metadata(df),
        "age_group_share": dg.MetadataValue.json(shares(df, "age_group")),
        "main_interest_share": dg.MetadataValue.json(shares(df, "main_interest")),
        "mean_true_activity": float(df["true_activity"].mean()),
    })


@dg.asset(group_name=GROUP, kinds={"polars"})
def items(world: WorldResource) -> dg.Output[pl.DataFrame]:
    """One row per item (organic pin or ad) with its category."""
    df = generate_items(world.spec())
    return dg.Output(df, metadata={
        **table_metadata(df),
        "num_ads": int(df["is_ad"].sum()),
        "ad_share": float(df["is_ad"].mean()),
        "category_share": dg.MetadataValue.json(shares(df, "category")),
    })


@dg.asset(group_name=GROUP, kinds={"polars"})
def interaction_edges(world: WorldResource, users: pl.DataFrame, items: pl.DataFrame) -> dg.Output[pl.DataFrame]:
    """The interaction log: one row per (user_id, item_id) event, repeats included."""
    df = generate_interactions(world.spec(), users, items)
    with_ads = df.join(items.select("item_id", "is_ad"), on="item_id")
    return dg.Output(df, metadata={
        **table_metadata(df),
        "distinct_pairs": df.unique().height,
        "active_users": df["user_id"].n_unique(),
        "ad_interaction_share": float(with_ads["is_ad"].mean()),
    })
