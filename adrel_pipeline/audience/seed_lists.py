"""Seed lists that advertisers upload: the file contract and its validation.

A seed list is a CSV or parquet file named ``<advertiser_id>.csv`` / ``.parquet`` with a column
``user_id`` (integers, the platform's ids) and optionally ``impressions`` and ``clicks``
(non-negative integers, clicks <= impressions: the engagement the weighted model learns from).
Without them every seed user weighs the same.

:func:`read_seed_list` either returns the normalised table or raises :class:`SeedListError` naming
the file and the problem, with counts and a few example rows; it writes nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl

SUFFIXES = (".csv", ".parquet")
ADVERTISER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
METRICS = ("impressions", "clicks")
SCHEMA = {"advertiser_id": pl.Utf8, "user_id": pl.Int64, "impressions": pl.Int64, "clicks": pl.Int64}
EXAMPLES = 5


class SeedListError(ValueError):
    """An uploaded seed list breaks the contract; the message names the file and the problem."""


def advertiser_id_of(path: Path) -> str:
    """The advertiser a file is for: its name without the suffix."""
    name = path.name.removesuffix(path.suffix)
    if path.suffix not in SUFFIXES:
        raise SeedListError(f"{path.name}: unsupported file type {path.suffix or '(none)'}: "
                            f"upload a {' or '.join(SUFFIXES)} file named <advertiser_id>{SUFFIXES[0]}")
    if not ADVERTISER_ID.match(name):
        raise SeedListError(f"{path.name}: the file name must be the advertiser id, 1-64 letters, digits, "
                            f"'_' or '-' (got {name!r})")
    return name


def _examples(values) -> str:
    shown = list(values)[:EXAMPLES]
    return ", ".join(str(v) for v in shown)


def read_seed_list(path: Path, known_user_ids: np.ndarray, min_users: int) -> pl.DataFrame:
    """The validated seed list of ``path``: (advertiser_id, user_id, impressions, clicks), sorted by user.

    Raises :class:`SeedListError` for an unreadable file, a missing or non-integer ``user_id``,
    nulls, duplicate users, ids that are not platform users, metrics that are negative or have
    more clicks than impressions, or fewer than ``min_users`` users.
    """
    path = Path(path)
    advertiser = advertiser_id_of(path)
    try:
        df = pl.read_csv(path) if path.suffix == ".csv" else pl.read_parquet(path)
    except Exception as err:
        raise SeedListError(f"{path.name}: cannot be read as {path.suffix[1:]} ({type(err).__name__}: {err})") from err
    if "user_id" not in df.columns:
        raise SeedListError(f"{path.name}: missing column user_id (columns: {df.columns}); "
                            f"required: user_id; optional: {', '.join(METRICS)}")
    for column in ("user_id", *(m for m in METRICS if m in df.columns)):
        dtype = df.schema[column]
        if not dtype.is_integer():
            raise SeedListError(f"{path.name}: column {column} must hold integers, got {dtype} "
                                f"(e.g. {_examples(df[column].drop_nulls().head(EXAMPLES))})")
        nulls = df[column].null_count()
        if nulls:
            rows = df.with_row_index("row").filter(pl.col(column).is_null())["row"]
            raise SeedListError(f"{path.name}: column {column} has {nulls} empty values (rows {_examples(rows)})")
    if "clicks" in df.columns and "impressions" not in df.columns:
        raise SeedListError(f"{path.name}: clicks without impressions: give both engagement columns or neither")
    df = df.with_columns(
        *(pl.lit(1 if m == "impressions" else 0, dtype=pl.Int64).alias(m) for m in METRICS if m not in df.columns)
    ).select(pl.col("user_id").cast(pl.Int64), *(pl.col(m).cast(pl.Int64) for m in METRICS))

    duplicated = df.filter(pl.col("user_id").is_duplicated())["user_id"].unique().sort()
    if duplicated.len():
        raise SeedListError(f"{path.name}: {duplicated.len()} user_ids appear more than once "
                            f"(e.g. {_examples(duplicated)}); list each seed user once")
    bad = df.filter((pl.col("impressions") < 0) | (pl.col("clicks") < 0) | (pl.col("clicks") > pl.col("impressions")))
    if bad.height:
        raise SeedListError(f"{path.name}: {bad.height} rows have negative impressions or clicks, or more clicks "
                            f"than impressions, e.g. {bad.head(EXAMPLES).rows()}")
    unknown = df.filter(~pl.col("user_id").is_in(pl.Series(known_user_ids)))["user_id"].sort()
    if unknown.len():
        raise SeedListError(f"{path.name}: {unknown.len()} of {df.height} user_ids are not platform users "
                            f"(e.g. {_examples(unknown)}); remove them or map them to platform ids first")
    if df.height < min_users:
        raise SeedListError(f"{path.name}: {df.height} users, fewer than the minimum of {min_users}: a seed list "
                            f"this small cannot be split into training and holdout users")
    return df.sort("user_id").select(pl.lit(advertiser).alias("advertiser_id"), pl.all()).cast(SCHEMA)
