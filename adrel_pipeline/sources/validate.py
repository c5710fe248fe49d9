"""Checks of a source's tables against the contract (:mod:`.contract`).

Every failure is one :class:`SourceDataError` whose message names the file or table (``where``),
the column and the problem, with counts and up to five example rows, so that bad data is fixed at
its source before the pipeline writes anything.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import polars as pl

from adrel_pipeline.sources.contract import (
    DAY,
    INTERACTION_SCHEMA,
    IS_AD,
    ITEM_ID,
    MAX_EXAMPLES,
    TIMESTAMP,
    USER_ID,
)

# Timestamp spellings tried in turn on text (a CSV file): with and without an offset, 'T' or ' '.
_TIMESTAMP_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%.fZ",
                      "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S")


class SourceDataError(ValueError):
    """A source's data breaks the contract: the message names where, the column and the problem."""


def examples(rows: pl.DataFrame, n: int = MAX_EXAMPLES) -> str:
    """Up to ``n`` rows as ``{col: value, ...}`` dicts, one per line."""
    shown = rows.head(n).to_dicts()
    return "\n".join(f"  {row}" for row in shown)


def fail(where: str, column: str | None, problem: str, rows: pl.DataFrame | None = None) -> SourceDataError:
    """The error for ``problem`` in ``where`` (file or table), ``column``, with example ``rows``."""
    col = f", column {column!r}" if column else ""
    message = f"{where}{col}: {problem}"
    if rows is not None and rows.height:
        message += f"; e.g. (first {min(rows.height, MAX_EXAMPLES)}):\n{examples(rows)}"
    return SourceDataError(message)


def require_columns(columns: Iterable[str], required: Sequence[str], where: str, hint: str = "") -> None:
    columns = list(columns)
    for column in required:
        if column not in columns:
            raise fail(where, column, f"missing required column (columns present: {columns}){hint}")


def _with_row(df: pl.DataFrame) -> pl.DataFrame:
    # 1-based data row numbers, as a spreadsheet shows them below the header.
    return df.with_row_index("row", offset=1)


def cast_id(df: pl.DataFrame, column: str, where: str) -> pl.DataFrame:
    """``column`` as Int64: integers as they are, text and whole floats parsed; anything else is an
    error naming the bad values."""
    dtype = df.schema[column]
    if dtype == pl.Int64:
        return df
    if dtype.is_integer():
        return df.with_columns(pl.col(column).cast(pl.Int64))
    if dtype == pl.Utf8 or dtype.is_float():
        raw = pl.col(column)
        parsed = (raw.str.strip_chars().cast(pl.Int64, strict=False) if dtype == pl.Utf8
                  else pl.when(raw == raw.round()).then(raw).cast(pl.Int64, strict=False))
        out = df.with_columns(parsed.alias(column))
        mask = df[column].is_not_null() & out[column].is_null()
        count = int(mask.sum())
        if count:
            rows = _with_row(df).filter(mask.alias("_m"))
            raise fail(where, column, f"{count} of {df.height} values are not integers", rows)
        return out
    raise fail(where, column, f"wrong type {dtype}: ids must be integers")


def check_not_null(df: pl.DataFrame, column: str, where: str) -> None:
    """``column`` (an id) has no null."""
    nulls = int(df[column].null_count())
    if nulls:
        raise fail(where, column, f"{nulls} of {df.height} ids are null", _with_row(df).filter(pl.col(column).is_null()))


def check_ids(df: pl.DataFrame, column: str, where: str) -> None:
    """``column`` is non-null and unique."""
    check_not_null(df, column, where)
    dup = df[column].is_duplicated()
    if dup.any():
        rows = _with_row(df).filter(dup).sort(column, "row")
        values = rows[column].n_unique()
        raise fail(where, column, f"{values} ids occur more than once ({rows.height} rows of {df.height})", rows)


def cast_bool(df: pl.DataFrame, column: str, where: str) -> pl.DataFrame:
    """``column`` as Boolean: booleans, 0/1, or text true/false/t/f/1/0 (any case)."""
    dtype = df.schema[column]
    src = df[column]
    if dtype == pl.Boolean:
        out = src
    elif dtype.is_integer():
        out = pl.select(pl.when(src == 1).then(True).when(src == 0).then(False).otherwise(None)).to_series()
    elif dtype == pl.Utf8:
        text = src.str.strip_chars().str.to_lowercase()
        out = text.replace_strict({"true": True, "t": True, "1": True, "false": False, "f": False, "0": False},
                                  default=None, return_dtype=pl.Boolean)
    else:
        raise fail(where, column, f"wrong type {dtype}: must be boolean (true/false or 0/1)")
    mask = out.is_null()
    if mask.any():
        bad_values = src.is_not_null() & mask
        problem = (f"{int(bad_values.sum())} of {df.height} values are not booleans (true/false or 0/1)"
                   if bad_values.any() else f"{int(mask.sum())} of {df.height} values are null")
        raise fail(where, column, problem, _with_row(df).filter(mask))
    return df.with_columns(out.alias(column))


def day_expr(dtype: pl.DataType, column: str) -> pl.Expr:
    """The UTC date of ``column`` of ``dtype`` (Date, Datetime, or text)."""
    col = pl.col(column)
    if dtype == pl.Date:
        return col
    if isinstance(dtype, pl.Datetime):
        # Naive timestamps are UTC by the contract.
        return (col.dt.convert_time_zone("UTC") if dtype.time_zone else col).dt.date()
    if dtype == pl.Utf8:
        if column == DAY:
            return col.str.strip_chars().str.to_date("%Y-%m-%d", strict=False)
        text = col.str.strip_chars()
        return pl.coalesce([text.str.to_datetime(f, strict=False, time_zone="UTC") for f in _TIMESTAMP_FORMATS]
                           ).dt.date()
    raise TypeError(dtype)


def to_interactions(df: pl.DataFrame, where: str, day: dt.date | None = None) -> pl.DataFrame:
    """A frame of interactions (``user_id``, ``item_id`` and ``day`` or ``timestamp``, or neither when
    ``day`` is the file's day) as exactly :data:`INTERACTION_SCHEMA`, checked."""
    require_columns(df.columns, (USER_ID, ITEM_ID), where)
    for column in (USER_ID, ITEM_ID):
        df = cast_id(df, column, where)
        check_not_null(df, column, where)
    time_col = DAY if DAY in df.columns else TIMESTAMP if TIMESTAMP in df.columns else None
    if time_col is None:
        if day is None:
            raise fail(where, DAY, f"missing required column: {DAY!r} (a date) or {TIMESTAMP!r} (a datetime) "
                                   f"(columns present: {df.columns})")
        return df.select(USER_ID, ITEM_ID, pl.lit(day, dtype=pl.Date).alias(DAY))
    days = parse_days(df, time_col, where)
    out = df.select(USER_ID, ITEM_ID).with_columns(days)
    if day is not None:
        other = out[DAY] != day
        if other.any():
            raise fail(where, time_col, f"{int(other.sum())} of {df.height} rows are not on {day} (the file's day)",
                       _with_row(df).filter(other))
    return out


def parse_days(df: pl.DataFrame, time_col: str, where: str) -> pl.Series:
    """The UTC dates of ``df[time_col]`` (``day`` or ``timestamp``); a null or unparsable value is an
    error naming the rows."""
    dtype = df.schema[time_col]
    if not (dtype in (pl.Date, pl.Utf8) or isinstance(dtype, pl.Datetime)):
        raise fail(where, time_col, f"wrong type {dtype}: must be a date/datetime or text YYYY-MM-DD[ HH:MM:SS]")
    days = df.select(day_expr(dtype, time_col).alias(DAY)).to_series()
    bad = days.is_null()
    if bad.any():
        unparsable = bad & df[time_col].is_not_null()
        problem = (f"{int(unparsable.sum())} of {df.height} values are not "
                   f"{'dates (YYYY-MM-DD)' if time_col == DAY else 'datetimes'}" if unparsable.any()
                   else f"{int(bad.sum())} of {df.height} values are null")
        raise fail(where, time_col, problem, _with_row(df).filter(bad))
    return days


def check_interactions(day_df: pl.DataFrame, users: pl.DataFrame, items: pl.DataFrame, where: str) -> None:
    """Every interaction of ``day_df`` names a user of ``users`` and an item of ``items``; else an
    error with the count of unknown ids and example rows."""
    for column, table, known in ((USER_ID, "users", users), (ITEM_ID, "items", items)):
        unknown = day_df.join(known.select(column), on=column, how="anti")
        if unknown.height:
            ids = unknown[column].n_unique()
            raise fail(where, column, f"{unknown.height} of {day_df.height} interactions name {ids} {column}s "
                                      f"that are not in {table}", unknown)


def check_features(features, user_columns: Sequence[str], item_columns: Sequence[str], where: str) -> None:
    """Every feature (and cross) column that ``features`` (a FeatureSpec) declares exists."""
    for table, declared, present in (("users", features.user_columns, user_columns),
                                     ("items", features.item_columns, item_columns)):
        missing = [c for c in declared if c not in present]
        if missing:
            raise fail(f"{where} ({table})", missing[0],
                       f"declared feature column(s) {missing} missing from {table} (columns present: {list(present)})")
        reserved = [c for c in declared if c in (USER_ID, ITEM_ID, IS_AD)]
        if reserved:
            raise fail(f"{where} ({table})", reserved[0], "an id or is_ad cannot be a feature")
    if features.cross is not None:
        ucol, icol = features.cross
        if ucol not in features.user_columns or icol not in features.item_columns:
            raise fail(where, ucol if ucol not in features.user_columns else icol,
                       f"cross {list(features.cross)} must name a user feature and an item feature "
                       f"(users: {list(features.user_columns)}, items: {list(features.item_columns)})")


def check_feature_types(df: pl.DataFrame, columns: Sequence[str], where: str) -> None:
    """Features are categorical (text, boolean, categorical) or numeric: one value per row."""
    for column in columns:
        dtype = df.schema[column]
        if not (dtype.is_numeric() or dtype in (pl.Utf8, pl.Boolean, pl.Categorical) or isinstance(dtype, pl.Enum)):
            raise fail(where, column, f"wrong type {dtype} for a feature: must be text, boolean or numeric "
                                      f"(declare the features to leave it out)")


def empty_day(day: dt.date, days: Sequence[dt.date], where: str) -> SourceDataError:
    """The error for a requested ``day`` without interactions, naming the nearest days that have some."""
    before = [d for d in days if d < day][-3:]
    after = [d for d in days if d > day][:3]
    nearby = ", ".join(str(d) for d in [*before, *after]) or "none"
    span = f"{days[0]}..{days[-1]}, {len(days)} days" if days else "no days at all"
    return fail(where, DAY, f"no interactions on {day} (an empty day); the data has {span}; nearest days: {nearby}")


__all__ = [
    "INTERACTION_SCHEMA",
    "SourceDataError",
    "cast_bool",
    "cast_id",
    "check_feature_types",
    "check_features",
    "check_ids",
    "check_interactions",
    "check_not_null",
    "day_expr",
    "empty_day",
    "examples",
    "fail",
    "parse_days",
    "require_columns",
    "to_interactions",
]
