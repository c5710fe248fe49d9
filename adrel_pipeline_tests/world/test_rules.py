"""The table rules: each passes on the pipeline's real values and fails, naming the problem, on a
corrupted copy."""

import datetime as dt

import polars as pl
import pytest

from adrel_pipeline.world import AGE_GROUPS, INTERESTS
from adrel_pipeline.world import rules as v
from adrel_pipeline_tests.conftest import WEEK
from adrel_pipeline_tests.helpers import assert_fails, assert_passes, assert_scalar_metadata

D1, D2, D3 = dt.date(2026, 1, 1), dt.date(2026, 1, 2), dt.date(2026, 1, 3)


# --- tables ---------------------------------------------------------------------------------------


def test_ids_unique_passes_on_the_world(world):
    users, items, _ = world
    for table, column in ((users, "user_id"), (items, "item_id")):
        outcome = v.ids_unique(table, column)
        assert_passes(outcome)
        assert_scalar_metadata(outcome)
        assert outcome.metadata == {"rows": table.height, "duplicated_ids": 0, "null_ids": 0}


def test_ids_unique_names_duplicated_ids(world):
    users = world[0]
    ids = users["user_id"].to_list()
    ids[5], ids[9], ids[10] = 4, 4, 8
    outcome = v.ids_unique(users.with_columns(pl.Series("user_id", ids)), "user_id")
    assert_fails(outcome, "2 duplicated user_id values, e.g. [4, 8]")
    assert outcome.metadata["duplicated_ids"] == 2


def test_ids_unique_rejects_null_ids(world):
    users = world[0]
    corrupted = users.with_columns(pl.when(pl.col("user_id") == 3).then(None).otherwise(pl.col("user_id"))
                                   .alias("user_id"))
    outcome = v.ids_unique(corrupted, "user_id")
    assert_fails(outcome, "1 null user_id values")
    assert outcome.metadata["null_ids"] == 1 and outcome.metadata["duplicated_ids"] == 0


def test_values_in_vocabulary_passes_on_the_world(world):
    users, items, _ = world
    for table, column, vocabulary in ((users, "age_group", AGE_GROUPS), (users, "main_interest", INTERESTS),
                                      (items, "category", INTERESTS)):
        outcome = v.values_in_vocabulary(table, column, vocabulary)
        assert_passes(outcome)
        assert_scalar_metadata(outcome)
        assert outcome.metadata["outside_vocabulary"] == 0


def test_values_in_vocabulary_names_unknown_values(world):
    items = world[1]
    categories = items["category"].to_list()
    categories[0] = "Cooking"
    outcome = v.values_in_vocabulary(items.with_columns(pl.Series("category", categories)), "category", INTERESTS)
    assert_fails(outcome, "1 category values outside", "Cooking")
    assert outcome.metadata["outside_vocabulary"] == 1


def test_values_in_vocabulary_counts_nulls_as_violations(world):
    users = world[0]
    corrupted = users.with_columns(pl.when(pl.col("user_id") < 2).then(None).otherwise(pl.col("age_group"))
                                   .alias("age_group"))
    outcome = v.values_in_vocabulary(corrupted, "age_group", AGE_GROUPS)
    assert_fails(outcome, "2 age_group values outside", "None")
    assert outcome.metadata["nulls"] == 2


def test_references_known_passes_on_the_world(world):
    outcome = v.references_known(world[2], world[0], world[1])
    assert_passes(outcome)
    assert_scalar_metadata(outcome)
    assert outcome.metadata["unknown_user_id"] == outcome.metadata["unknown_item_id"] == 0


def _with_extra_interactions(interactions, user_ids, item_ids):
    extra = pl.DataFrame({"user_id": user_ids, "item_id": item_ids},
                         schema={"user_id": pl.Int64, "item_id": pl.Int64})
    return pl.concat([interactions.select("user_id", "item_id"), extra])


def test_references_known_names_unknown_users(world):
    users, items, interactions = world
    bad = _with_extra_interactions(interactions, [10**6, 10**6 + 1], [0, 1])
    outcome = v.references_known(bad, users, items)
    assert_fails(outcome, "2 interactions reference an unknown or null user_id", str(10**6))
    assert outcome.metadata["unknown_user_id"] == 2 and outcome.metadata["unknown_item_id"] == 0


def test_references_known_names_unknown_and_null_items(world):
    users, items, interactions = world
    bad = _with_extra_interactions(interactions, [0, 1], [123_456_789, None])
    outcome = v.references_known(bad, users, items)
    assert_fails(outcome, "2 interactions reference an unknown or null item_id", "123456789", "None")
    assert outcome.metadata["unknown_item_id"] == 2 and outcome.metadata["unknown_user_id"] == 0


# --- daily counts ---------------------------------------------------------------------------------


def _log(counts):
    days = [day for day, n in counts.items() for _ in range(n)]
    return pl.DataFrame({"user_id": list(range(len(days))), "item_id": [0] * len(days), "day": days},
                        schema={"user_id": pl.Int64, "item_id": pl.Int64, "day": pl.Date})


def test_daily_counts_passes_when_days_and_counts_match():
    expected = {D1: 3, D2: 2, D3: 4}
    outcome = v.daily_counts(_log(expected), expected)
    assert_passes(outcome)
    assert_scalar_metadata(outcome)
    assert {k: outcome.metadata[k] for k in ("days", "rows", "expected_rows")} == \
        {"days": 3, "rows": 9, "expected_rows": 9}


def _week_counts(spec):
    return {d: spec.interactions_on(d) for d in WEEK}


def test_daily_counts_passes_on_the_world(spec, world):
    expected = _week_counts(spec)
    outcome = v.daily_counts(world[2], expected)
    assert_passes(outcome)
    assert_scalar_metadata(outcome)
    assert outcome.metadata["days"] == len(WEEK)
    assert outcome.metadata["rows"] == outcome.metadata["expected_rows"] == spec.num_interactions


def _drop_day(interactions, day):
    return interactions.filter(pl.col("day") != day)


def _add_day(interactions, day):
    return pl.concat([interactions, interactions.head(3).with_columns(pl.lit(day, dtype=pl.Date).alias("day"))])


def _drop_one_row_of(interactions, day):
    first = interactions.with_row_index("row").filter(pl.col("day") == day)["row"][0]
    return interactions.with_row_index("row").filter(pl.col("row") != first).drop("row")


@pytest.mark.parametrize("corrupt, fragment, counter", [
    (lambda log: _drop_day(log, WEEK[3]), f"1 day missing: e.g. ['{WEEK[3]} (expected", "missing_days"),
    (lambda log: _add_day(log, WEEK[-1] + dt.timedelta(days=1)),
     f"1 unexpected day: e.g. ['{WEEK[-1] + dt.timedelta(days=1)} (3 rows)']", "unexpected_days"),
    (lambda log: _drop_one_row_of(log, WEEK[2]), f"1 day with the wrong count: e.g. ['{WEEK[2]}: ", "wrong_count_days"),
], ids=["missing_day", "extra_day", "wrong_count"])
def test_daily_counts_fails_on_a_corrupted_week(spec, world, corrupt, fragment, counter):
    outcome = v.daily_counts(corrupt(world[2]), _week_counts(spec))
    assert_fails(outcome, fragment)
    assert outcome.metadata[counter] == 1
    assert sum(outcome.metadata[k] for k in ("missing_days", "unexpected_days", "wrong_count_days")) == 1
    assert world[2].height == spec.num_interactions  # the fixture is untouched


def test_daily_counts_wrong_count_names_found_and_expected(spec, world):
    n = spec.interactions_on(WEEK[2])
    outcome = v.daily_counts(_drop_one_row_of(world[2], WEEK[2]), _week_counts(spec))
    assert_fails(outcome, f"{WEEK[2]}: {n - 1} rows, expected {n}")


def test_daily_counts_accepts_an_absent_day_expected_empty():
    assert_passes(v.daily_counts(_log({D1: 3}), {D1: 3, D2: 0}))


def test_daily_counts_names_a_missing_day():
    outcome = v.daily_counts(_log({D1: 3, D3: 4}), {D1: 3, D2: 2, D3: 4})
    assert_fails(outcome, "1 day missing", "2026-01-02 (expected 2 rows)")
    assert outcome.metadata["missing_days"] == 1 and outcome.metadata["days"] == 2


def test_daily_counts_names_an_unexpected_day():
    outcome = v.daily_counts(_log({D1: 3, D2: 2, D3: 1}), {D1: 3, D2: 2})
    assert_fails(outcome, "1 unexpected day", "2026-01-03 (1 rows)")
    assert outcome.metadata["unexpected_days"] == 1


def test_daily_counts_names_a_wrong_count():
    outcome = v.daily_counts(_log({D1: 3, D2: 1}), {D1: 3, D2: 2})
    assert_fails(outcome, "1 day with the wrong count", "2026-01-02: 1 rows, expected 2")
    assert outcome.metadata["wrong_count_days"] == 1 and outcome.metadata["rows"] == 4


def test_daily_counts_rejects_null_days_and_a_missing_day_column():
    log = _log({D1: 2})
    with_null = pl.concat([log, log.head(1).with_columns(pl.lit(None, dtype=pl.Date).alias("day"))])
    assert_fails(v.daily_counts(with_null, {D1: 2}), "1 row with a null day")
    assert_fails(v.daily_counts(log.drop("day"), {D1: 2}), "no day column")
    assert_fails(v.daily_counts(log.with_columns(pl.col("day").cast(pl.Datetime)), {D1: 2}), "expected Date")


