"""The data contract of a source: the tables adrel reads, their columns and types.

Three tables (a file each, or a database table each):

``users``
    ``user_id``: integer, unique, non-null (required). Every other column is an optional feature.
``items``
    ``item_id``: integer, unique, non-null (required); ``is_ad``: boolean (``true``/``false``, or
    0/1), non-null. Instead of ``is_ad``, an ``ads`` table of ``item_id`` s may name the ads (every
    other item is organic); giving both is an error. Every other column is an optional feature.
``interactions``
    ``user_id``, ``item_id``: integers naming known users and items (required), and the day of the
    event: ``day`` (a date, ``YYYY-MM-DD``) or ``timestamp`` (a datetime; its UTC date is the day,
    a timestamp without a time zone is read as UTC). Other columns are ignored. A directory may
    hold one file per day instead, ``interactions/<YYYY-MM-DD>.parquet|csv``; then ``day`` and
    ``timestamp`` are optional and, when present, must agree with the file's day.

Two optional tables feed the audience and contextual pipelines (leave one out and its pipeline
does not load):

``seed_lists``
    Advertisers' seed lists: ``advertiser_id`` (text, 1-64 letters, digits, ``_`` or ``-``) and
    ``user_id`` (a known user, once per advertiser) required; ``impressions`` and ``clicks``
    (non-negative integers, clicks <= impressions) optional, the engagement the weighted model
    learns from. A directory may hold one file per advertiser instead,
    ``seed_lists/<advertiser_id>.parquet|csv`` without the ``advertiser_id`` column. Each list
    needs at least ten users (its 10% holdout must not be empty).
``labels``
    Human relevance labels, one row per rating: ``context_id`` (integer), ``item_id`` (an ad),
    ``rater_id``, ``label`` (1-5), ``day`` (the date the pair was served), ``surface`` and
    ``content_type`` required; the pair's signals ``text_match``, ``embedding_similarity``,
    ``image_similarity``, ``category_match`` (numbers, null when absent) and ``query_intent``
    optional (see :mod:`adrel_pipeline.contextual.own_labels`). A day's relevance model learns
    from every label of that day and before.

Features: by default every non-required column of users and items is a node feature (strings and
booleans categorical, numbers numeric). A source may declare them instead (a directory's
``adrel.yaml``, or a database's config)::

    users: {features: [age_group, main_interest]}
    items: {features: [category]}
    cross: [main_interest, category]          # optional: "the user's interest is the item's category"
    vocabularies: {category: [Fashion, Food]} # optional: fixed one-hot columns

Days: the partitions are the days that have interactions; the first is the data's first day.

What a source returns (whatever it read): users ``user_id: Int64`` then the feature columns in
declared order; items ``item_id: Int64, is_ad: Boolean`` then the features; a day's interactions
exactly :data:`INTERACTION_SCHEMA` (``user_id: Int64, item_id: Int64, day: Date``), repeats kept.
Bad data raises :class:`~adrel_pipeline.sources.validate.SourceDataError` before anything is
returned.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from adrel_pipeline.world.simulation import INTERACTION_SCHEMA

USERS, ITEMS, INTERACTIONS, ADS = "users", "items", "interactions", "ads"
SEED_LISTS, LABELS = "seed_lists", "labels"
TABLES = (USERS, ITEMS, INTERACTIONS, ADS, SEED_LISTS, LABELS)
# The tables that feed the audience and the contextual pipelines: optional.
PIPELINE_TABLES = (SEED_LISTS, LABELS)
USER_ID, ITEM_ID, IS_AD, DAY, TIMESTAMP = "user_id", "item_id", "is_ad", "day", "timestamp"

# Columns of each table that are never features.
REQUIRED = {USERS: (USER_ID,), ITEMS: (ITEM_ID, IS_AD), INTERACTIONS: (USER_ID, ITEM_ID), ADS: (ITEM_ID,),
            SEED_LISTS: ("advertiser_id", USER_ID)}
ID_COLUMN = {USERS: USER_ID, ITEMS: ITEM_ID, ADS: ITEM_ID}

USERS_BASE_SCHEMA = {USER_ID: pl.Int64}
ITEMS_BASE_SCHEMA = {ITEM_ID: pl.Int64, IS_AD: pl.Boolean}

# The synthetic world's first day: the start of the daily partitions. Re-declared here rather
# than imported because adrel_pipeline.defs.shared.partitions imports Dagster.
SYNTHETIC_FIRST_DAY = dt.date(2026, 1, 1)

# A directory's feature declaration, and its keys.
CONFIG_FILE = "adrel.yaml"
CONFIG_KEYS = ("users", "items", "cross", "vocabularies")

# Examples quoted in an error message.
MAX_EXAMPLES = 5

__all__ = [
            "ADS",
            "CONFIG_FILE",
            "CONFIG_KEYS",
            "DAY",
            "ID_COLUMN",
            "INTERACTIONS",
            "INTERACTION_SCHEMA",
            "IS_AD",
            "ITEMS",
            "ITEMS_BASE_SCHEMA",
            "ITEM_ID",
            "LABELS",
            "MAX_EXAMPLES",
            "PIPELINE_TABLES",
            "REQUIRED",
            "SEED_LISTS",
            "SYNTHETIC_FIRST_DAY",
            "TABLES",
            "TIMESTAMP",
            "USERS",
            "USERS_BASE_SCHEMA",
            "USER_ID",
]
