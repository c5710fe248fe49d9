"""A PostgreSQL database as a source: a SQLAlchemy URL and the names of its tables.

Users and items are read whole (``polars.read_database``); a day's interactions are filtered on
the server (``WHERE day = %(day)s``, or a half-open range on ``timestamp``, both index-friendly) and
streamed back with ``COPY (SELECT ...) TO STDOUT`` as CSV, which polars parses far faster than
rows fetched through a cursor. :func:`load_directory` loads a directory source into tables with
``COPY ... FROM STDIN``.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Mapping
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from adrel_pipeline.graph.features import FeatureSpec
from adrel_pipeline.sources.base import (
    Source,
    features_from_config,
    features_to_config,
    normalise_items,
    normalise_users,
)
from adrel_pipeline.sources.contract import (
    ADS,
    DAY,
    INTERACTION_SCHEMA,
    INTERACTIONS,
    IS_AD,
    ITEM_ID,
    ITEMS,
    LABELS,
    PIPELINE_TABLES,
    SEED_LISTS,
    TIMESTAMP,
    USER_ID,
    USERS,
)
from adrel_pipeline.sources.validate import SourceDataError, empty_day, fail, to_interactions

DEFAULT_TABLES = {USERS: USERS, ITEMS: ITEMS, INTERACTIONS: INTERACTIONS}


def split_name(name: str) -> tuple[str | None, str]:
    """``schema.table`` or ``table``."""
    schema, _, table = name.rpartition(".")
    return schema or None, table


def check_tables(tables: Mapping[str, str] | None) -> dict[str, str]:
    tables = {**DEFAULT_TABLES, **(tables or {})}
    unknown = sorted(set(tables) - {USERS, ITEMS, INTERACTIONS, ADS, *PIPELINE_TABLES})
    if unknown:
        raise ValueError(f"tables: unknown keys {unknown}; allowed: users, items, interactions, ads, "
                         f"{', '.join(PIPELINE_TABLES)}")
    return tables

# How an optional table is ordered when read: the database keeps no row order, the pipeline needs one.
_ORDER = {USERS: (USER_ID,), ITEMS: (ITEM_ID,), ADS: (ITEM_ID,), SEED_LISTS: ("advertiser_id", USER_ID),
          LABELS: ("day", "context_id", ITEM_ID, "rater_id")}


class PostgresSource(Source):
    """The tables ``tables`` (keys ``users``, ``items``, ``interactions``, optional ``ads``,
    ``seed_lists`` and ``labels``, the last two found by those names when ``tables`` is None; values
    table names, ``schema.table`` allowed) of the database at ``url``. ``features``: a
    :class:`FeatureSpec`, a config mapping as in ``adrel.yaml``, or None (every other column)."""

    def __init__(self, url: str, tables: Mapping[str, str] | None = None,
                 features: FeatureSpec | Mapping | None = None, engine: sa.Engine | None = None):
        defaults = tables is None
        self.tables = check_tables(tables)
        self.engine = engine or sa.create_engine(url)
        inspector = sa.inspect(self.engine)
        # With every table by its default name (a bare URL), the optional ones are found by theirs too;
        # named tables are the only ones read, so another loaded dataset's tables are never picked up.
        for key in PIPELINE_TABLES if defaults else ():
            if inspector.has_table(key):
                self.tables[key] = key
        # Which tables too: one database may hold several teams' (or test runs') tables.
        self.name = (f"postgresql:{self.engine.url.render_as_string(hide_password=True)} "
                     f"({', '.join(f'{k}={v}' for k, v in self.tables.items())})")
        self._columns = {key: self._reflect(inspector, key) for key in self.tables}
        for key, column in ((USERS, USER_ID), (ITEMS, ITEM_ID), (INTERACTIONS, USER_ID), (INTERACTIONS, ITEM_ID),
                            (ADS, ITEM_ID)):
            if key in self._columns:
                self._require_integer(key, column)
        self._time = self._time_column()
        user_columns, item_columns = list(self._columns[USERS]), list(self._columns[ITEMS])
        if isinstance(features, FeatureSpec):
            features = features_to_config(features)
        self.features = features_from_config(features, user_columns, item_columns, self.where(USERS))
        self._days: list[dt.date] | None = None
        self._users: pl.DataFrame | None = None
        self._items: pl.DataFrame | None = None

    def where(self, key: str) -> str:
        return f"table {self.tables[key]} ({key}) of {self.engine.url.render_as_string(hide_password=True)}"

    def _reflect(self, inspector, key: str) -> dict[str, sa.types.TypeEngine]:
        schema, table = split_name(self.tables[key])
        if not inspector.has_table(table, schema=schema):
            raise SourceDataError(f"{self.where(key)}: no such table")
        return {c["name"]: c["type"] for c in inspector.get_columns(table, schema=schema)}

    def _require_integer(self, key: str, column: str) -> None:
        columns = self._columns[key]
        if column not in columns:
            raise fail(self.where(key), column, f"missing required column (columns present: {list(columns)})")
        if not isinstance(columns[column], sa.Integer):
            raise fail(self.where(key), column, f"wrong type {columns[column]}: ids must be integers (BIGINT)")

    def _time_column(self) -> tuple[str, bool]:
        """The interactions' time column and whether it holds timestamps with a time zone."""
        columns = self._columns[INTERACTIONS]
        if DAY in columns:
            if not isinstance(columns[DAY], sa.Date) or isinstance(columns[DAY], sa.DateTime):
                raise fail(self.where(INTERACTIONS), DAY, f"wrong type {columns[DAY]}: must be DATE")
            return DAY, False
        if TIMESTAMP in columns:
            if not isinstance(columns[TIMESTAMP], sa.DateTime):
                raise fail(self.where(INTERACTIONS), TIMESTAMP, f"wrong type {columns[TIMESTAMP]}: must be TIMESTAMP")
            return TIMESTAMP, bool(columns[TIMESTAMP].timezone)
        raise fail(self.where(INTERACTIONS), DAY, f"missing required column: {DAY!r} (DATE) or {TIMESTAMP!r} "
                                                  f"(TIMESTAMP) (columns present: {list(columns)})")

    def _table(self, key: str) -> str:
        prep = self.engine.dialect.identifier_preparer
        schema, table = split_name(self.tables[key])
        return prep.quote(table) if schema is None else f"{prep.quote_schema(schema)}.{prep.quote(table)}"

    def _day_sql(self) -> str:
        """The UTC date of the time column, in SQL."""
        column, tz = self._time
        quoted = self.engine.dialect.identifier_preparer.quote(column)
        if column == DAY:
            return quoted
        return f"({quoted} AT TIME ZONE 'UTC')::date" if tz else f"{quoted}::date"

    def _read(self, key: str) -> pl.DataFrame:
        """Table ``key`` through a cursor (the features keep their SQL types), ordered."""
        prep = self.engine.dialect.identifier_preparer
        quoted = ", ".join(prep.quote(c) for c in self._columns[key])
        # Ordered: a table's row order is not stable in PostgreSQL, the pipeline's must be.
        order = ", ".join(prep.quote(c) for c in _ORDER[key] if c in self._columns[key]) or "1"
        with self.engine.connect() as conn:
            return pl.read_database(f"SELECT {quoted} FROM {self._table(key)} ORDER BY {order}", conn)

    def has(self, table: str) -> bool:
        return table in self.tables

    def _copy_out(self, query: str, params: Mapping, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
        """``query``'s rows streamed back with ``COPY (...) TO STDOUT`` as CSV, parsed by polars with
        ``schema``: far faster than fetching rows through a cursor."""
        raw = self.engine.raw_connection()
        try:
            with raw.cursor() as cur:
                # psycopg2 binds the parameters (mogrify); the filter runs on the server.
                sql = cur.mogrify(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER true)", params).decode()
                buffer = io.BytesIO()
                cur.copy_expert(sql, buffer)
        finally:
            raw.close()
        buffer.seek(0)
        return pl.read_csv(buffer, schema=schema)

    def _raw(self, table: str, until: dt.date | None = None) -> tuple[pl.DataFrame, str] | None:
        """An optional table through COPY (the labels run to millions of ratings): integers and
        numbers as such, every other column as text for the contract's checks to parse and name."""
        if table not in self.tables:
            return None
        prep = self.engine.dialect.identifier_preparer
        columns = self._columns[table]
        order = ", ".join(prep.quote(c) for c in _ORDER[table] if c in columns) or "1"
        where, params = "", {}
        if until is not None and DAY in columns:
            # Rows without a day stay, for the checks to name.
            where, params = f" WHERE {prep.quote(DAY)} <= %(until)s OR {prep.quote(DAY)} IS NULL", {"until": until}
        query = (f"SELECT {', '.join(prep.quote(c) for c in columns)} FROM {self._table(table)}{where} "
                 f"ORDER BY {order}")
        return self._copy_out(query, params, {c: _polars_type(t) for c, t in columns.items()}), self.where(table)

    def users(self) -> pl.DataFrame:
        if self._users is None:
            self._users = normalise_users(self._read(USERS), self.features, self.where(USERS))
        return self._users

    def items(self) -> pl.DataFrame:
        if self._items is None:
            ads = self._read(ADS) if ADS in self.tables else None
            self._items = normalise_items(self._read(ITEMS), self.features, self.where(ITEMS), ads=ads,
                                          ads_where=self.where(ADS) if ads is not None else "ads")
        return self._items

    def days(self) -> list[dt.date]:
        if self._days is None:
            day = self._day_sql()
            with self.engine.connect() as conn:
                rows = conn.exec_driver_sql(f"SELECT DISTINCT {day} FROM {self._table(INTERACTIONS)} "
                                            f"WHERE {day} IS NOT NULL ORDER BY 1").all()
            self._days = [r[0] for r in rows]
        return self._days

    def interactions(self, day: dt.date) -> pl.DataFrame:
        column, tz = self._time
        prep = self.engine.dialect.identifier_preparer
        quoted = prep.quote(column)
        if column == DAY:
            condition, params = f"{quoted} = %(day)s", {"day": day}
        else:
            # A half-open range on the raw column, so that an index on it serves the filter.
            start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC if tz else None)
            condition, params = f"{quoted} >= %(start)s AND {quoted} < %(end)s", {
                "start": start, "end": start + dt.timedelta(days=1)}
        query = (f"SELECT {prep.quote(USER_ID)}, {prep.quote(ITEM_ID)}, {self._day_sql()} AS day "
                 f"FROM {self._table(INTERACTIONS)} WHERE {condition}")
        df = self._copy_out(query, params, {USER_ID: pl.Int64, ITEM_ID: pl.Int64, DAY: pl.Utf8})
        where = self.where(INTERACTIONS)
        # Sorted: the server returns rows in no stable order, and the pipeline must be deterministic.
        df = to_interactions(df, where).sort(USER_ID, ITEM_ID)
        if df.height == 0:
            raise empty_day(day, self.days(), where)
        return self._checked(df, where)


_PG_TYPES = {pl.Boolean: sa.Boolean, pl.Date: sa.Date, pl.Utf8: sa.Text}


def _polars_type(sql: sa.types.TypeEngine) -> pl.DataType:
    """How a column read through COPY's CSV is parsed: integers and numbers as such, the rest as text."""
    if isinstance(sql, sa.Integer):
        return pl.Int64
    if isinstance(sql, (sa.Float, sa.Numeric)):
        return pl.Float64
    return pl.Utf8


def _sql_type(dtype: pl.DataType) -> sa.types.TypeEngine:
    if dtype.is_integer():
        return sa.BigInteger()
    if dtype.is_float():
        return sa.Double()
    if dtype in (pl.Categorical,) or isinstance(dtype, pl.Enum):
        return sa.Text()
    for polars_type, sql in _PG_TYPES.items():
        if dtype == polars_type:
            return sql()
    raise ValueError(f"no SQL type for a feature of type {dtype}")


def create_schema(engine: sa.Engine, tables: Mapping[str, str] | None = None,
                  user_features: Mapping[str, pl.DataType] | None = None,
                  item_features: Mapping[str, pl.DataType] | None = None) -> dict[str, sa.Table]:
    """Creates the contract's tables (ids BIGINT, ``is_ad`` BOOLEAN, ``day`` DATE indexed, the
    features' columns typed from their polars types) unless they exist; returns them."""
    tables = check_tables(tables)
    metadata = sa.MetaData()

    def table(key: str, *columns) -> sa.Table:
        schema, name = split_name(tables[key])
        return sa.Table(name, metadata, *columns, schema=schema)

    def features(spec):
        return [sa.Column(name, _sql_type(dtype)) for name, dtype in (spec or {}).items()]

    out = {
        USERS: table(USERS, sa.Column(USER_ID, sa.BigInteger, primary_key=True, autoincrement=False),
                     *features(user_features)),
        ITEMS: table(ITEMS, sa.Column(ITEM_ID, sa.BigInteger, primary_key=True, autoincrement=False),
                     sa.Column(IS_AD, sa.Boolean, nullable=False), *features(item_features)),
        INTERACTIONS: table(INTERACTIONS, sa.Column(USER_ID, sa.BigInteger, nullable=False),
                            sa.Column(ITEM_ID, sa.BigInteger, nullable=False),
                            sa.Column(DAY, sa.Date, nullable=False)),
    }
    sa.Index(f"{split_name(tables[INTERACTIONS])[1]}_day", out[INTERACTIONS].c[DAY])
    if ADS in tables:
        out[ADS] = table(ADS, sa.Column(ITEM_ID, sa.BigInteger, primary_key=True, autoincrement=False))
    metadata.create_all(engine)
    return out


def _frame_table(engine: sa.Engine, name: str, frame: pl.DataFrame) -> sa.Table:
    """A new table with ``frame``'s columns, typed from their polars types."""
    schema, table_name = split_name(name)
    metadata = sa.MetaData()
    table = sa.Table(table_name, metadata, *(sa.Column(c, _sql_type(frame.schema[c])) for c in frame.columns),
                     schema=schema)
    metadata.create_all(engine)
    return table


def _copy(cursor, prep, table: sa.Table, df: pl.DataFrame) -> None:
    name = prep.format_table(table)
    columns = ", ".join(prep.quote(c) for c in df.columns)
    buffer = io.BytesIO()
    df.write_csv(buffer)
    buffer.seek(0)
    cursor.copy_expert(f"COPY {name} ({columns}) FROM STDIN WITH (FORMAT csv, HEADER true)", buffer)


def load_directory(directory: str | Path, url: str, tables: Mapping[str, str] | None = None,
                   replace: bool = False, progress=None) -> PostgresSource:
    """Loads the directory source at ``directory`` (checked first, as the pipeline reads it) into
    ``tables`` of the database at ``url`` and returns that database as a source. Existing tables are
    an error unless ``replace`` (then they are dropped first). ``progress``: called with a line per step."""
    from adrel_pipeline.sources.files import FileSource

    say = progress or (lambda _line: None)
    tables = check_tables(tables)
    source = FileSource(directory)
    # The optional tables beside users (in its schema), unless named.
    schema = split_name(tables[USERS])[0]
    tables |= {k: tables.get(k, f"{schema}.{k}" if schema else k) for k in PIPELINE_TABLES if source.has(k)}
    users, items = source.users(), source.items()
    engine = sa.create_engine(url)
    inspector = sa.inspect(engine)
    existing = [tables[k] for k in tables if inspector.has_table(split_name(tables[k])[1],
                                                                 schema=split_name(tables[k])[0])]
    if existing and not replace:
        raise ValueError(f"tables {existing} already exist in {engine.url.render_as_string(hide_password=True)}: "
                         f"drop them or pass replace=True")
    if existing:
        metadata = sa.MetaData()
        for name in existing:
            schema, table = split_name(name)
            sa.Table(table, metadata, schema=schema)
        metadata.drop_all(engine)
    # The ads are loaded as items' is_ad: an ads table, when named, is created and left empty.
    load_tables = {k: v for k, v in tables.items() if k != ADS}
    defs = create_schema(engine, load_tables, {c: users.schema[c] for c in users.columns[1:]},
                         {c: items.schema[c] for c in items.columns[2:]})
    prep = engine.dialect.identifier_preparer
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            _copy(cur, prep, defs[USERS], users)
            _copy(cur, prep, defs[ITEMS], items)
            say(f"users: {users.height} rows, items: {items.height} rows")
            total = 0
            for day in source.days():
                df = source.interactions(day)
                _copy(cur, prep, defs[INTERACTIONS], df)
                total += df.height
            say(f"interactions: {total} rows over {len(source.days())} days")
            for key, frame in ((SEED_LISTS, source.seed_lists()), (LABELS, source.labels())):
                if frame is None:
                    continue
                frame = frame.select(c for c in frame.columns if frame.schema[c] != pl.List)
                defs[key] = _frame_table(engine, tables.get(key, key), frame)
                _copy(cur, prep, defs[key], frame)
                load_tables[key] = tables.get(key, key)
                say(f"{key}: {frame.height} rows")
            # Fresh statistics, so that the planner uses the day index from the first read.
            cur.execute(f"ANALYZE {prep.format_table(defs[INTERACTIONS])}")
        raw.commit()
    finally:
        raw.close()
    return PostgresSource(url, load_tables, features=source.features, engine=engine)


__all__ = ["DEFAULT_TABLES", "INTERACTION_SCHEMA", "PostgresSource", "create_schema", "load_directory"]
