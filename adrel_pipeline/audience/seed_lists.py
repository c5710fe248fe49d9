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
    return check_seed_list(df, path.name, advertiser, known_user_ids, min_users)


def check_seed_list(df: pl.DataFrame, where: str, advertiser: str, known_user_ids: np.ndarray,
                    min_users: int) -> pl.DataFrame:
    """``df`` (one advertiser's rows: ``user_id`` and optional ``impressions``, ``clicks``) checked
    and normalised as :func:`read_seed_list` does; errors name ``where``."""
    if "user_id" not in df.columns:
        raise SeedListError(f"{where}: missing column user_id (columns: {df.columns}); "
                            f"required: user_id; optional: {', '.join(METRICS)}")
    for column in ("user_id", *(m for m in METRICS if m in df.columns)):
        dtype = df.schema[column]
        if not dtype.is_integer():
            raise SeedListError(f"{where}: column {column} must hold integers, got {dtype} "
                                f"(e.g. {_examples(df[column].drop_nulls().head(EXAMPLES))})")
        nulls = df[column].null_count()
        if nulls:
            rows = df.with_row_index("row").filter(pl.col(column).is_null())["row"]
            raise SeedListError(f"{where}: column {column} has {nulls} empty values (rows {_examples(rows)})")
    if "clicks" in df.columns and "impressions" not in df.columns:
        raise SeedListError(f"{where}: clicks without impressions: give both engagement columns or neither")
    df = df.with_columns(
        *(pl.lit(1 if m == "impressions" else 0, dtype=pl.Int64).alias(m) for m in METRICS if m not in df.columns)
    ).select(pl.col("user_id").cast(pl.Int64), *(pl.col(m).cast(pl.Int64) for m in METRICS))

    duplicated = df.filter(pl.col("user_id").is_duplicated())["user_id"].unique().sort()
    if duplicated.len():
        raise SeedListError(f"{where}: {duplicated.len()} user_ids appear more than once "
                            f"(e.g. {_examples(duplicated)}); list each seed user once")
    bad = df.filter((pl.col("impressions") < 0) | (pl.col("clicks") < 0) | (pl.col("clicks") > pl.col("impressions")))
    if bad.height:
        raise SeedListError(f"{where}: {bad.height} rows have negative impressions or clicks, or more clicks "
                            f"than impressions, e.g. {bad.head(EXAMPLES).rows()}")
    unknown = df.filter(~pl.col("user_id").is_in(pl.Series(known_user_ids)))["user_id"].sort()
    if unknown.len():
        raise SeedListError(f"{where}: {unknown.len()} of {df.height} user_ids are not platform users "
                            f"(e.g. {_examples(unknown)}); remove them or map them to platform ids first")
    if df.height < min_users:
        raise SeedListError(f"{where}: {df.height} users, fewer than the minimum of {min_users}: a seed list "
                            f"this small cannot be split into training and holdout users")
    return df.sort("user_id").select(pl.lit(advertiser).alias("advertiser_id"), pl.all()).cast(SCHEMA)


def check_seed_lists(df: pl.DataFrame, where: str, known_user_ids: np.ndarray, min_users: int) -> pl.DataFrame:
    """Every advertiser's seed list in one table (``advertiser_id`` and the columns of
    :func:`check_seed_list`), each checked; sorted by advertiser and user."""
    if "advertiser_id" not in df.columns:
        raise SeedListError(f"{where}: missing column advertiser_id (columns: {df.columns}); required: "
                            "advertiser_id, user_id; optional: " + ", ".join(METRICS))
    ids = df["advertiser_id"].cast(pl.Utf8)
    bad = ids.filter(ids.is_null() | ~ids.str.contains(ADVERTISER_ID.pattern)).unique(maintain_order=True)
    if bad.len():
        raise SeedListError(f"{where}: column advertiser_id: {bad.len()} values are not advertiser ids of 1-64 "
                            f"letters, digits, '_' or '-' (e.g. {_examples(bad)})")
    if df.height == 0:
        raise SeedListError(f"{where}: no rows: give each advertiser's seed users, or leave the table out")
    df = df.with_columns(ids.alias("advertiser_id"))
    lists = [check_seed_list(part.drop("advertiser_id"), f"{where} (advertiser {key})", key, known_user_ids,
                             min_users)
             for (key,), part in sorted(df.partition_by("advertiser_id", as_dict=True).items())]
    return pl.concat(lists)


def size_bucket(size: int) -> int:
    """A seed list's size bucket on a team's own data: the nearest (on a log scale) of 10, 30, 100,
    300, 1000, ... (the synthetic world's buckets are its own, by design)."""
    exponent = max(1, int(np.floor(np.log10(max(size, 1)))))
    candidates = [10 ** e * m for e in (exponent - 1, exponent, exponent + 1) for m in (1, 3)]
    return min(candidates, key=lambda b: abs(np.log(b) - np.log(max(size, 1))))


def advertisers_of(seed_lists: pl.DataFrame) -> pl.DataFrame:
    """The advertisers of a team's seed lists, in the world's advertisers schema: no ``kind`` and no
    ``audience_size`` (the generator's truth, unknown for real advertisers)."""
    sizes = seed_lists.group_by("advertiser_id").len("seed_size").sort("advertiser_id")
    return sizes.select(
        "advertiser_id", pl.lit(None, dtype=pl.Utf8).alias("kind"),
        pl.col("seed_size").map_elements(size_bucket, return_dtype=pl.Int64).alias("bucket"),
        pl.col("seed_size").cast(pl.Int64), pl.lit(None, dtype=pl.Int64).alias("audience_size"))
