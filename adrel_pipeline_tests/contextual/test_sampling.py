"""Candidate logging (the same share of every funnel stage, served ads and whole lists of a few
contexts kept) and the day's labelling jobs drawn from the log."""

import math

import numpy as np
import polars as pl
import pytest

from adrel_pipeline.contextual.sampling import JOBS, draw_jobs, log_candidates
from adrel_pipeline.contextual.spec import CandidateLogSpec, ContextualConfigError, LabelSpec

LOG_RATE = 0.2
FULL_LISTS = 50
LOG = CandidateLogSpec(log_rate=LOG_RATE, full_list_contexts=FULL_LISTS)
JOB_SPEC = LabelSpec(labelling_budget=2000, test_rows=1500)


@pytest.fixture(scope="module")
def log(candidates):
    return log_candidates(candidates, LOG, (7,))


@pytest.fixture(scope="module")
def jobs(log):
    return draw_jobs(log, JOB_SPEC, (7,))


def _binomial_ok(count: int, n: int, p: float, sds: float = 5.0) -> bool:
    return abs(count - n * p) <= sds * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("field, value, expected", [
    ("log_rate", 0.0, "log_rate=0.0 is out of range: must be a number in (0, 1]"),
    ("full_list_contexts", 0, "full_list_contexts=0 is out of range"),
])
def test_invalid_log_fields_name_field_and_range(field, value, expected):
    with pytest.raises(ContextualConfigError) as err:
        CandidateLogSpec(**{field: value})
    assert expected in str(err.value)


def test_every_stage_is_logged_at_the_log_rate(candidates, log):
    # Per stage (served included): the logged share of that stage's candidates is binomial(log_rate).
    stages = candidates.group_by(pl.col("dropped_at").fill_null("served")).len()
    logged = log.filter(pl.col("sampled")).group_by(pl.col("dropped_at").fill_null("served")).len()
    counts = dict(logged.iter_rows())
    assert set(counts) == {"served", "trim", "ranking", "auction"}
    for stage, n in stages.iter_rows():
        assert _binomial_ok(counts[stage], n, LOG_RATE), (stage, counts[stage], n)


def test_the_draw_looks_at_no_column(candidates, log):
    # A funnel with a new stage (a second trim after the ranking): the sampled rows are the same
    # rows, and the new stage is logged at the same rate as the others.
    trimmed = candidates.with_columns(dropped_at=pl.when((pl.col("dropped_at") == "ranking") & (pl.col("bid") < 0.8))
                                      .then(pl.lit("second_trim")).otherwise(pl.col("dropped_at")))
    again = log_candidates(trimmed, LOG, (7,))
    assert again.select("context_id", "ad_id", "sampled").equals(log.select("context_id", "ad_id", "sampled"))
    n = int((trimmed["dropped_at"] == "relevance_trim").sum())
    assert _binomial_ok(int(again.filter(pl.col("dropped_at") == "relevance_trim")["sampled"].sum()), n, LOG_RATE)


def test_served_ads_are_all_logged_and_flagged(candidates, log):
    served = candidates.filter(pl.col("dropped_at").is_null())
    assert log["served"].equals(log["dropped_at"].is_null(), check_names=False)
    assert log.filter(pl.col("served")).select("context_id", "ad_id").sort("context_id", "ad_id").equals(
        served.select("context_id", "ad_id").sort("context_id", "ad_id"))


def test_full_lists_keep_every_candidate_of_the_first_contexts(candidates, log):
    first = candidates["context_id"].unique().sort().head(FULL_LISTS)
    whole = candidates.filter(pl.col("context_id").is_in(first.implode()))
    kept = log.filter(pl.col("full_list"))
    assert kept.height == whole.height
    assert kept.select(candidates.columns).sort("context_id", "ad_id").equals(whole.sort("context_id", "ad_id"))
    assert set(log.filter(~pl.col("context_id").is_in(first.implode()))["full_list"]) == {False}


def test_the_log_holds_exactly_the_flagged_candidates(candidates, log):
    flagged = log.select(pl.col("sampled") | pl.col("served") | pl.col("full_list") | pl.col("holdout_served"))
    assert flagged.to_series().all()
    # The other candidates (none of the flags) are left out: about (1 - log_rate) of the dropped ones
    # outside the whole lists.
    first = candidates["context_id"].unique().sort().head(FULL_LISTS).implode()
    droppable = candidates.filter(pl.col("dropped_at").is_not_null() & ~pl.col("holdout_served")
                                  & ~pl.col("context_id").is_in(first)).height
    assert _binomial_ok(candidates.height - log.height, droppable, 1 - LOG_RATE)
    assert log.columns == [*candidates.columns, "sampled", "served", "full_list"]


def test_the_log_reproduces_from_its_key(candidates, log):
    assert log_candidates(candidates, LOG, (7,)).equals(log)
    other = log_candidates(candidates, LOG, (8,))
    assert not other["sampled"].equals(log["sampled"])
    assert not log_candidates(candidates, CandidateLogSpec(log_rate=LOG_RATE, full_list_contexts=FULL_LISTS, seed=1),
                              (7,))["sampled"].equals(log["sampled"])


def test_jobs_have_their_sizes_and_their_rows(log, jobs):
    assert jobs["job"].unique().sort().to_list() == sorted(JOBS)
    sizes = dict(jobs.group_by("job").len().iter_rows())
    assert sizes == {"candidates": JOB_SPEC.labelling_budget, "heuristic": JOB_SPEC.labelling_budget,
                     "test": JOB_SPEC.test_rows}
    assert jobs.columns == [*log.columns, "job"]
    for job, rows in jobs.partition_by("job", as_dict=True).items():
        assert not rows.select("context_id", "ad_id").is_duplicated().any(), job
    by_job = {job: rows for (job,), rows in jobs.partition_by("job", as_dict=True).items()}
    # Candidates and test rows come from the stage-agnostic sample; the heuristic's are the
    # zero-relevance holdout's winners (the old post-auction scraping), whatever production did.
    assert by_job["candidates"]["sampled"].all() and by_job["test"]["sampled"].all()
    assert by_job["heuristic"]["holdout_served"].all()
    assert not by_job["heuristic"]["served"].all()  # production, which ranks by relevance, served others
    # The candidate sample holds dropped candidates at the training pool's share of them.
    assert set(by_job["candidates"]["dropped_at"].drop_nulls()) == {"trim", "ranking", "auction"}
    test_contexts = by_job["test"]["context_id"].unique().implode()
    pool = log.filter(pl.col("sampled") & ~pl.col("context_id").is_in(test_contexts))
    served_share = float(pool["served"].mean())
    assert _binomial_ok(int(by_job["candidates"]["served"].sum()), JOB_SPEC.labelling_budget, served_share)


def test_test_contexts_are_disjoint_from_training(jobs):
    contexts = {job: set(rows["context_id"]) for (job,), rows in jobs.partition_by("job", as_dict=True).items()}
    assert contexts["test"].isdisjoint(contexts["candidates"])
    assert contexts["test"].isdisjoint(contexts["heuristic"])
    # The heuristic's sample comes from the training contexts' winners (the same day's traffic).
    assert contexts["candidates"] & contexts["heuristic"]


def test_no_job_holds_a_whole_list_context(log, jobs):
    # The whole lists measure ranking (nDCG, the top-ranked shares): a model trained on their
    # contexts' rows would be measured on what it saw.
    lists = log.filter(pl.col("full_list"))["context_id"].unique()
    assert lists.len() == FULL_LISTS
    assert not jobs["context_id"].is_in(lists.implode()).any()
    assert not jobs["full_list"].any()


def test_jobs_reproduce_from_their_key(log, jobs):
    assert draw_jobs(log, JOB_SPEC, (7,)).equals(jobs)
    assert not draw_jobs(log, JOB_SPEC, (8,)).select("context_id", "ad_id").equals(jobs.select("context_id", "ad_id"))


@pytest.mark.parametrize("budget, test_rows, field, what", [
    (10_000_000, 1500, "labelling_budget", "logged candidates of training contexts"),
    (2000, 10_000_000, "test_rows", "logged candidates of test contexts"),
    # Enough logged training candidates, not enough holdout winners for the heuristic's sample.
    (9000, 1500, "labelling_budget", "holdout-served ads of training contexts"),
])
def test_too_large_jobs_fail_naming_the_field_before_labelling(log, monkeypatch, budget, test_rows, field, what):
    from adrel_pipeline.contextual import labels

    sampled = int(log["sampled"].sum())
    served = int(log["holdout_served"].sum())
    assert served < 9000 < sampled - 1.2 * JOB_SPEC.test_rows  # the third case's premise
    monkeypatch.setattr(labels, "rate", lambda *a, **k: pytest.fail("labelled before the jobs were checked"))
    with pytest.raises(ContextualConfigError) as err:
        draw_jobs(log, LabelSpec(labelling_budget=budget, test_rows=test_rows), (7,))
    message = str(err.value)
    assert message.startswith(f"{field}=") and f"lower {field}" in message and what in message, message
    assert "log_rate" in message


def test_the_test_set_takes_just_enough_contexts(log, jobs):
    # Test contexts are a draw of share = 1.1 x test_rows / logged of the contexts: their logged rows
    # number about 1.1 x test_rows (a sum of Bernoulli(share) x rows per context), the rest train.
    sampled = log.filter(pl.col("sampled"))
    rows_per_context = sampled.group_by("context_id").len()["len"].to_numpy().astype(float)
    share = 1.1 * JOB_SPEC.test_rows / sampled.height
    sd = np.sqrt(share * (1 - share) * (rows_per_context**2).sum())
    test_contexts = jobs.filter(pl.col("job") == "test")["context_id"].unique().implode()
    # Every test context with a logged row is in the test job unless the draw of rows missed all of it.
    in_test_contexts = sampled.filter(pl.col("context_id").is_in(test_contexts)).height
    assert JOB_SPEC.test_rows <= in_test_contexts <= 1.1 * JOB_SPEC.test_rows + 5 * sd


def test_the_test_contexts_always_hold_the_test_set_when_the_log_does(log):
    # The test contexts are drawn at random; however the draw falls, they hold test_rows logged
    # candidates whenever the log has them (a proportional draw fell short on ~1 key in 3 here).
    for key in range(20):
        jobs = draw_jobs(log, LabelSpec(labelling_budget=100, test_rows=100), (key,))
        assert (jobs["job"] == "test").sum() == 100
