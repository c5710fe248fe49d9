"""The one interface of every data source, and what sources share: the features declaration and
the normalisation of users and items to the contract's frames."""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import polars as pl

from adrel_pipeline.graph.features import FeatureSpec
from adrel_pipeline.sources.contract import CONFIG_KEYS, IS_AD, ITEM_ID, LABELS, SEED_LISTS, USER_ID
from adrel_pipeline.sources.validate import (
    SourceDataError,
    cast_bool,
    cast_id,
    check_feature_types,
    check_features,
    check_ids,
    check_interactions,
    fail,
    require_columns,
)


class Source(ABC):
    """Users, items and the interactions of each day, in the contract's frames (:mod:`.contract`)."""

    name: str
    features: FeatureSpec

    @abstractmethod
    def users(self) -> pl.DataFrame: ...

    @abstractmethod
    def items(self) -> pl.DataFrame: ...

    @abstractmethod
    def days(self) -> list[dt.date]:
        """The days that have interactions, oldest first."""

    def first_day(self) -> dt.date:
        days = self.days()
        if not days:
            raise fail(self.name, "day", "the source has no interactions at all (no days)")
        return days[0]

    @abstractmethod
    def interactions(self, day: dt.date) -> pl.DataFrame:
        """That day's interactions only (:data:`~.contract.INTERACTION_SCHEMA`), checked."""

    def _raw(self, table: str, until: dt.date | None = None) -> tuple[pl.DataFrame, str] | None:
        """An optional table (:data:`~.contract.PIPELINE_TABLES`) as read (``labels``: the rows of
        days up to ``until``, and those whose day is not a date, for the checks to name), and where
        it was read from; None when the source has none. The synthetic world has none: its own
        assets generate advertisers and labels with their truth."""
        return None

    def has(self, table: str) -> bool:
        """Whether the source provides the optional ``table`` (without reading its rows)."""
        return False

    def seed_lists(self) -> pl.DataFrame | None:
        """Every advertiser's seed list (advertiser_id, user_id, impressions, clicks), checked
        against the users; None when the source has no ``seed_lists``."""
        from adrel_pipeline.audience.seed_lists import SeedListError, check_seed_lists
        from adrel_pipeline.world.advertisers import MIN_SEED_USERS

        raw = self._raw(SEED_LISTS)
        if raw is None:
            return None
        try:
            if getattr(self, "_user_ids", None) is None:
                self._user_ids = self.users().select(USER_ID)
            return check_seed_lists(raw[0], raw[1], self._user_ids[USER_ID].to_numpy(), MIN_SEED_USERS)
        except SeedListError as err:
            raise SourceDataError(str(err)) from err

    def labels(self, until: dt.date | None = None) -> pl.DataFrame | None:
        """Every human rating (:mod:`adrel_pipeline.contextual.own_labels`) of a day up to ``until``
        (filtered where the data lies: a scan's predicate, SQL's ``WHERE``), checked against the
        ads; None when the source has no ``labels``."""
        from adrel_pipeline.contextual.own_labels import check_ratings

        raw = self._raw(LABELS, until)
        if raw is None:
            return None
        if until is not None and raw[0].height == 0:
            raise SourceDataError(f"{raw[1]}: no labels of a day on or before {until}: choose a later day")
        items = self._known_ids()[1]
        return check_ratings(raw[0], raw[1], ad_ids=items.filter(pl.col(IS_AD))[ITEM_ID])

    def with_known(self, users: pl.DataFrame | None = None, items: pl.DataFrame | None = None) -> Source:
        """Check each day's interactions (and the seed lists and labels) against these users and
        items (the pipeline's materialized tables) instead of reading the source's again."""
        if users is not None:
            self._user_ids = users.select(USER_ID)
        if items is not None:
            self._item_ids = items.select(ITEM_ID, IS_AD)
        return self

    def _known_ids(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        # Read once per source: every day's interactions are checked against the same ids.
        if getattr(self, "_user_ids", None) is None:
            self._user_ids = self.users().select(USER_ID)
        if getattr(self, "_item_ids", None) is None:
            self._item_ids = self.items().select(ITEM_ID, IS_AD)
        return self._user_ids, self._item_ids

    def _checked(self, day_df: pl.DataFrame, where: str) -> pl.DataFrame:
        users, items = self._known_ids()
        check_interactions(day_df, users, items, where)
        return day_df

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def _names(value, where: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise fail(where, None, f"{key} must be a list of column names, got {value!r}")
    return tuple(value)


def features_from_config(config: Mapping | None, user_columns: Sequence[str], item_columns: Sequence[str],
                         where: str, extra_keys: Sequence[str] = ()) -> FeatureSpec:
    """The :class:`FeatureSpec` a config mapping declares (``users: {features: [...]}``, ``items:
    {features: [...]}``, ``cross: [ucol, icol]``, ``vocabularies: {col: [...]}``), checked against
    the tables' columns. Undeclared: every non-required column is a feature, no cross."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(CONFIG_KEYS) - set(extra_keys))
    if unknown:
        raise fail(where, None, f"unknown keys {unknown}; allowed: {sorted([*CONFIG_KEYS, *extra_keys])}")
    declared = {}
    for table, columns, required in (("users", user_columns, (USER_ID,)), ("items", item_columns, (ITEM_ID, IS_AD))):
        section = config.get(table)
        if section is None:
            declared[table] = tuple(c for c in columns if c not in required)
            continue
        if not isinstance(section, Mapping) or set(section) - {"features"}:
            raise fail(where, None, f"{table} must be a mapping {{features: [columns]}}, got {section!r}")
        declared[table] = _names(section.get("features") or [], where, f"{table}.features")
    cross = config.get("cross")
    if cross is not None:
        cross = _names(cross, where, "cross")
        if len(cross) != 2:
            raise fail(where, None, f"cross must be [user column, item column], got {list(cross)}")
    vocab = config.get("vocabularies") or {}
    if not isinstance(vocab, Mapping):
        raise fail(where, None, f"vocabularies must be a mapping {{column: [values]}}, got {vocab!r}")
    vocabularies = {}
    for column, values in vocab.items():
        if column not in (*declared["users"], *declared["items"]):
            raise fail(where, column, "a vocabulary for a column that is not a declared feature")
        if not isinstance(values, list) or not values:
            raise fail(where, column, f"a vocabulary must be a non-empty list of values, got {values!r}")
        vocabularies[column] = tuple(str(v) for v in values)
    spec = FeatureSpec(user_columns=declared["users"], item_columns=declared["items"], cross=cross,
                       vocabularies=vocabularies)
    check_features(spec, user_columns, item_columns, where)
    return spec


def features_to_config(features: FeatureSpec) -> dict:
    """The config mapping (an ``adrel.yaml``) that declares ``features``."""
    config = {"users": {"features": list(features.user_columns)}, "items": {"features": list(features.item_columns)}}
    if features.cross is not None:
        config["cross"] = list(features.cross)
    if features.vocabularies:
        config["vocabularies"] = {k: list(v) for k, v in features.vocabularies.items()}
    return config


def normalise_users(raw: pl.DataFrame, features: FeatureSpec, where: str) -> pl.DataFrame:
    """``user_id: Int64`` (unique, non-null) and the declared features, in order."""
    require_columns(raw.columns, (USER_ID,), where)
    df = cast_id(raw, USER_ID, where)
    check_ids(df, USER_ID, where)
    check_feature_types(df, features.user_columns, where)
    return df.select(USER_ID, *features.user_columns)


def normalise_items(raw: pl.DataFrame, features: FeatureSpec, where: str, ads: pl.DataFrame | None = None,
                    ads_where: str = "ads") -> pl.DataFrame:
    """``item_id: Int64`` (unique, non-null), ``is_ad: Boolean`` (the column, or membership of the
    ``ads`` table) and the declared features, in order."""
    require_columns(raw.columns, (ITEM_ID,), where)
    df = cast_id(raw, ITEM_ID, where)
    check_ids(df, ITEM_ID, where)
    if ads is not None:
        if IS_AD in df.columns:
            raise fail(where, IS_AD, f"items has an is_ad column and {ads_where} names ads too: give one of them")
        require_columns(ads.columns, (ITEM_ID,), ads_where)
        ads = cast_id(ads, ITEM_ID, ads_where)
        check_ids(ads, ITEM_ID, ads_where)
        unknown = ads.join(df.select(ITEM_ID), on=ITEM_ID, how="anti")
        if unknown.height:
            raise fail(ads_where, ITEM_ID, f"{unknown.height} of {ads.height} ads are not in items ({where})", unknown)
        df = df.with_columns(pl.col(ITEM_ID).is_in(ads[ITEM_ID].implode()).alias(IS_AD))
    else:
        require_columns(df.columns, (IS_AD,), where, hint=" (or name the ads in an ads table of item_ids)")
        df = cast_bool(df, IS_AD, where)
    check_feature_types(df, features.item_columns, where)
    return df.select(ITEM_ID, IS_AD, *features.item_columns)
