"""Data-quality rules behind the pipeline's asset checks, as plain functions (no Dagster).

Each rule guards a way the pipeline could go silently wrong, most of them defects the seed
notebook had: duplicated or unknown ids (features misaligned with nodes, edges silently dropped
by a join), values outside the one-hot vocabularies (an all-zero feature row), days lost or
duplicated by a backfill, NaN features, edge indices past the node count (PyG indexes out of
range or, worse, wraps), reverse edges that do not mirror forward ones, held-out edges left in
the message-passing graph (the leak that inflated the notebook's AUC), class balance other than
configured (AUC still fine, but precision-style numbers shift), and a test AUC above the
Bayes-optimal ceiling (only possible with leakage).

Every rule returns a :class:`CheckOutcome`: passed or not, one line saying what was found (with
up to five examples on failure) and a few scalar numbers for metadata. The Dagster wiring
(:mod:`adrel_pipeline.defs.checks`) turns outcomes into asset check results. This module holds
the table and model rules (no torch); the graph and split rules are in
:mod:`adrel_pipeline.graph_validation`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import polars as pl

from adrel_pipeline.outcomes import CheckOutcome, Metadata, outcome, plural, show_examples


def ids_unique(df: pl.DataFrame, column: str) -> CheckOutcome:
    """No duplicated and no null ids: graph nodes are keyed by id, a duplicate would give one id two
    feature rows and make every later row misaligned with its node."""
    ids = df[column]
    nulls = ids.null_count()
    present = ids.drop_nulls()
    dup = present.filter(present.is_duplicated()).unique().sort()
    meta: Metadata = {"rows": df.height, "duplicated_ids": dup.len(), "null_ids": nulls}
    problems = []
    if dup.len():
        problems.append(f"{dup.len()} duplicated {column} values, {show_examples(dup)}")
    if nulls:
        problems.append(f"{nulls} null {column} values")
    return outcome(problems, f"{df.height} {column} values, all unique and non-null", meta)


def values_in_vocabulary(df: pl.DataFrame, column: str, vocabulary: Sequence[str]) -> CheckOutcome:
    """Every value (nulls included) is in ``vocabulary``: the one-hot encoders map anything else to an
    all-zero row or fail, depending on the cast."""
    values = df[column]
    vocab = list(vocabulary)
    # is_in gives null for a null value; `is_null() | ...` turns that into a violation.
    # Compared as strings, so an Enum/Categorical column cannot fail the cast of the vocabulary.
    bad = values.is_null() | ~values.cast(pl.Utf8).is_in(pl.Series(vocab, dtype=pl.Utf8).implode())
    n_bad = int(bad.sum())
    meta: Metadata = {"rows": df.height, "outside_vocabulary": n_bad, "nulls": values.null_count()}
    if n_bad:
        offenders = values.filter(bad).unique(maintain_order=True)
        return CheckOutcome(False, f"{n_bad} {column} values outside {vocab} (nulls included), "
                                   f"{show_examples(offenders)}", meta)
    return CheckOutcome(True, f"all {df.height} {column} values in the {len(vocab)}-value vocabulary", meta)


def references_known(interactions: pl.DataFrame, users: pl.DataFrame, items: pl.DataFrame) -> CheckOutcome:
    """Every interaction names a known user and item: the graph builder's joins would otherwise drop
    (items) or reject (users) them, and the edge counts would no longer match the log."""
    meta: Metadata = {"interactions": interactions.height}
    problems = []
    for column, table in (("user_id", users), ("item_id", items)):
        refs = interactions[column]
        unknown = refs.filter(refs.is_null() | ~refs.is_in(table[column].drop_nulls().implode()))
        meta[f"unknown_{column}"] = unknown.len()
        if unknown.len():
            problems.append(f"{unknown.len()} interactions reference an unknown or null {column}, "
                            f"{show_examples(unknown.unique(maintain_order=True))}")
    return outcome(problems, f"all {interactions.height} interactions reference known users and items", meta)


def daily_counts(interactions: pl.DataFrame, expected: Mapping[dt.date, int]) -> CheckOutcome:
    """The days present are exactly ``expected``'s and each holds its expected number of rows: a
    backfill that lost, repeated or mixed up a day would otherwise train on the wrong window.

    A day expected to hold 0 rows cannot be present in the frame, so it is not reported missing.
    """
    expected_rows = int(sum(expected.values()))
    meta: Metadata = {"days": 0, "rows": interactions.height, "expected_rows": expected_rows}
    if "day" not in interactions.columns:
        return CheckOutcome(False, f"no day column in the interactions (columns: {interactions.columns})", meta)
    if interactions.schema["day"] != pl.Date:
        # A Datetime day would compare unequal to every expected date: say so instead.
        return CheckOutcome(False, f"day column has dtype {interactions.schema['day']}, expected Date", meta)
    null_days = interactions["day"].null_count()
    counts = interactions.filter(pl.col("day").is_not_null()).group_by("day").len()
    found = dict(zip(counts["day"].to_list(), counts["len"].to_list()))
    missing = sorted(d for d, n in expected.items() if n > 0 and d not in found)
    unexpected = sorted(d for d in found if d not in expected)
    wrong = sorted(d for d in found if d in expected and found[d] != expected[d])
    meta |= {"days": len(found), "missing_days": len(missing), "unexpected_days": len(unexpected),
             "wrong_count_days": len(wrong), "null_days": null_days}
    problems = []
    if missing:
        problems.append(f"{plural(len(missing), 'day')} missing: "
                        f"{show_examples(f'{d} (expected {expected[d]} rows)' for d in missing)}")
    if unexpected:
        problems.append(f"{plural(len(unexpected), 'unexpected day')}: "
                        f"{show_examples(f'{d} ({found[d]} rows)' for d in unexpected)}")
    if wrong:
        problems.append(f"{plural(len(wrong), 'day')} with the wrong count: "
                        f"{show_examples(f'{d}: {found[d]} rows, expected {expected[d]}' for d in wrong)}")
    if null_days:
        problems.append(f"{plural(null_days, 'row')} with a null day")
    return outcome(problems, f"{len(found)} days, {interactions.height} rows, each day as configured "
                              f"({expected_rows} rows expected)", meta)


def features_in_vocabularies(df: pl.DataFrame, vocabularies: Mapping[str, Sequence[str]]) -> CheckOutcome:
    """Every column of ``df`` with a declared vocabulary takes only its values: a value outside it
    would have no one-hot column (the graph builder refuses it)."""
    declared = {c: v for c, v in vocabularies.items() if c in df.columns}
    results = {c: values_in_vocabulary(df, c, v) for c, v in declared.items()}
    meta: Metadata = {"columns_checked": len(results)}
    for column, result in results.items():
        meta |= {f"{column}/{k}": v for k, v in result.metadata.items()}
    problems = [r.description for r in results.values() if not r.passed]
    checked = ", ".join(results) or "no column with a declared vocabulary"
    return outcome(problems, f"{df.height} rows; in vocabulary: {checked}", meta)
