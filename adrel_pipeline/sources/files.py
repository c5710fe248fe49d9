"""A directory of parquet or CSV files as a source (the contract: :mod:`.contract`).

Layout: ``users.parquet|csv``, ``items.parquet|csv``, optionally ``ads.parquet|csv``, and either
``interactions/<YYYY-MM-DD>.parquet|csv`` (a file per day) or one ``interactions.parquet|csv``
with ``day`` or ``timestamp``; optionally ``adrel.yaml`` declaring the features, ``seed_lists``
(one file, or ``seed_lists/<advertiser_id>.parquet|csv``) and ``labels.parquet|csv``. A day is read by
a polars scan: its one file, or the single file filtered on the day (parquet pushes the filter
down to its row groups).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from adrel_pipeline.sources.base import Source, features_from_config, normalise_items, normalise_users
from adrel_pipeline.sources.contract import (
    ADS,
    CONFIG_FILE,
    DAY,
    INTERACTIONS,
    ITEM_ID,
    ITEMS,
    SEED_LISTS,
    TIMESTAMP,
    USER_ID,
    USERS,
)
from adrel_pipeline.sources.validate import (
    SourceDataError,
    day_expr,
    empty_day,
    fail,
    parse_days,
    to_interactions,
)

SUFFIXES = (".parquet", ".csv")
_DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(parquet|csv)$")
# Id columns a CSV is parsed with as integers (the fast path; a bad value falls back to text so that
# the error can name it).
_ID_COLUMNS = (USER_ID, ITEM_ID)
# Rows polars reads to guess the other CSV columns' types.
_INFER_ROWS = 10_000


def find_table(directory: Path, stem: str, required: bool = True) -> Path | None:
    """``directory/stem.parquet`` or ``.csv``; both present is ambiguous, neither is an error when required."""
    found = [directory / f"{stem}{suffix}" for suffix in SUFFIXES if (directory / f"{stem}{suffix}").is_file()]
    if len(found) > 1:
        raise SourceDataError(f"{directory}: both {found[0].name} and {found[1].name}: keep one of them")
    if not found and required:
        raise SourceDataError(f"{directory}: missing table {stem!r}: expected {stem}.parquet or {stem}.csv")
    return found[0] if found else None


def _scan(path: Path, ids_as_text: bool = False) -> pl.LazyFrame:
    if path.suffix == ".parquet":
        return pl.scan_parquet(path)
    header = pl.read_csv(path, n_rows=0).columns
    dtype = pl.Utf8 if ids_as_text else pl.Int64
    # Days and timestamps stay text: validate.day_expr parses them (and names the values it cannot).
    overrides = {c: dtype for c in _ID_COLUMNS if c in header} | {c: pl.Utf8 for c in (DAY, TIMESTAMP) if c in header}
    return pl.scan_csv(path, schema_overrides=overrides, infer_schema_length=_INFER_ROWS)


def read_table(path: Path, query=None) -> pl.DataFrame:
    """The file at ``path`` (``query`` applied to its lazy frame): CSV ids parsed as integers, or, when
    one is not an integer, as text for the caller's checks to name."""
    query = query or (lambda lf: lf)
    try:
        return query(_scan(path)).collect()
    except pl.exceptions.ComputeError:
        if path.suffix != ".csv":
            raise
        return query(_scan(path, ids_as_text=True)).collect()


def columns_of(path: Path) -> list[str]:
    return _scan(path).collect_schema().names()


class FileSource(Source):
    """The files of ``directory``; ``config`` (the mapping of an ``adrel.yaml``) overrides the
    directory's own ``adrel.yaml``."""

    def __init__(self, directory: str | Path, config: Mapping | None = None):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise SourceDataError(f"{self.directory}: not a directory")
        self.name = f"files:{self.directory.resolve()}"
        self._users_path = find_table(self.directory, USERS)
        self._items_path = find_table(self.directory, ITEMS)
        self._ads_path = find_table(self.directory, ADS, required=False)
        self._day_files = self._find_day_files()
        self._interactions_path = None if self._day_files is not None else find_table(self.directory, INTERACTIONS)
        where = str(self.directory / CONFIG_FILE)
        if config is None and (self.directory / CONFIG_FILE).is_file():
            import yaml

            try:
                config = yaml.safe_load((self.directory / CONFIG_FILE).read_text()) or {}
            except yaml.YAMLError as err:
                raise SourceDataError(f"{where}: not valid YAML ({err})") from err
            if not isinstance(config, Mapping):
                raise SourceDataError(f"{where}: must be a mapping, got {type(config).__name__}")
        self.features = features_from_config(config, columns_of(self._users_path), columns_of(self._items_path), where)
        self._days: list[dt.date] | None = None
        self._users: pl.DataFrame | None = None
        self._items: pl.DataFrame | None = None

    def _find_day_files(self) -> dict[dt.date, Path] | None:
        folder = self.directory / INTERACTIONS
        if not folder.is_dir():
            return None
        if find_table(self.directory, INTERACTIONS, required=False) is not None:
            raise SourceDataError(f"{self.directory}: both {INTERACTIONS}/ (a file per day) and an {INTERACTIONS} "
                                  f"file: keep one of them")
        files: dict[dt.date, Path] = {}
        for path in sorted(folder.iterdir()):
            if path.name.startswith("."):
                continue
            match = _DAY_FILE.match(path.name)
            try:
                day = dt.date.fromisoformat(match.group(1)) if match else None
            except ValueError:
                day = None
            if day is None:
                raise SourceDataError(f"{path}: not a day's file: expected {INTERACTIONS}/<YYYY-MM-DD>.parquet|csv")
            if day in files:
                raise SourceDataError(f"{path}: day {day} has two files ({files[day].name} too): keep one of them")
            files[day] = path
        return files

    def has(self, table: str) -> bool:
        folder = table == SEED_LISTS and (self.directory / SEED_LISTS).is_dir()
        return folder or find_table(self.directory, table, required=False) is not None

    def _raw(self, table: str, until: dt.date | None = None) -> tuple[pl.DataFrame, str] | None:
        folder = self.directory / table
        if table == SEED_LISTS and folder.is_dir():
            if find_table(self.directory, table, required=False) is not None:
                raise SourceDataError(f"{self.directory}: both {table}/ (a file per advertiser) and a {table} "
                                      "file: keep one of them")
            from adrel_pipeline.audience.seed_lists import SeedListError, advertiser_id_of

            parts = []
            for path in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
                try:
                    advertiser = advertiser_id_of(path)
                except SeedListError as err:
                    raise SourceDataError(f"{folder}/{err}") from err
                parts.append(read_table(path).with_columns(pl.lit(advertiser).alias("advertiser_id")))
            if not parts:
                raise SourceDataError(f"{folder}: no seed lists: add <advertiser_id>.parquet|csv files or remove it")
            return pl.concat(parts, how="diagonal_relaxed"), str(folder)
        path = find_table(self.directory, table, required=False)
        if path is None:
            return None
        schema = _scan(path).collect_schema()
        if until is None or DAY not in schema:
            return read_table(path), str(path)
        day = day_expr(schema[DAY], DAY)
        return read_table(path, lambda lf: lf.filter((day <= until) | day.is_null())), str(path)

    def users(self) -> pl.DataFrame:
        if self._users is None:
            self._users = normalise_users(read_table(self._users_path), self.features, str(self._users_path))
        return self._users

    def items(self) -> pl.DataFrame:
        if self._items is None:
            ads = None if self._ads_path is None else read_table(self._ads_path)
            self._items = normalise_items(read_table(self._items_path), self.features, str(self._items_path),
                                          ads=ads, ads_where=str(self._ads_path))
        return self._items

    def _time_column(self) -> tuple[str, pl.DataType]:
        schema = _scan(self._interactions_path).collect_schema()
        for column in (DAY, TIMESTAMP):
            if column in schema:
                return column, schema[column]
        raise fail(str(self._interactions_path), DAY, f"missing required column: {DAY!r} (a date) or {TIMESTAMP!r} "
                                                      f"(a datetime) (columns present: {schema.names()})")

    def days(self) -> list[dt.date]:
        if self._days is None:
            if self._day_files is not None:
                self._days = sorted(self._day_files)
            else:
                self._days = self._scan_days()
        return self._days

    def _scan_days(self) -> list[dt.date]:
        # Only the time column is read; a value that is no day fails here, naming it, not later.
        path = self._interactions_path
        column, dtype = self._time_column()
        days = read_table(path, lambda lf: lf.select(day_expr(dtype, column).alias(DAY)).unique())[DAY]
        if days.null_count():
            # The slow path, for the error only: the rows, counted, with their row numbers.
            parse_days(read_table(path, lambda lf: lf.select(column)), column, str(path))
        return sorted(days.drop_nulls().to_list())

    def interactions(self, day: dt.date) -> pl.DataFrame:
        if self._day_files is not None:
            path = self._day_files.get(day)
            if path is None:
                raise empty_day(day, self.days(), str(self.directory / INTERACTIONS))
            df = to_interactions(read_table(path), str(path), day=day)
            where = str(path)
        else:
            path, where = self._interactions_path, str(self._interactions_path)
            column, dtype = self._time_column()
            df = to_interactions(read_table(path, lambda lf: lf.filter(day_expr(dtype, column) == day)), where)
        if df.height == 0:
            raise empty_day(day, self.days(), where)
        return self._checked(df, where)
