"""Candidate-level sampling for labelling, as the seed does it, and the old heuristic it replaced.

* :func:`log_candidates`: the serving funnel logs a share ``log_rate`` of its candidates at
  every stage, each with the stage that dropped it (``dropped_at``, null for a served ad). The
  draw looks at no column, so it needs no list of stages: any funnel's candidates log the same way,
  and the log's mix of stages is the funnel's.
* :func:`draw_jobs`: the day's labelling jobs from the log, outside the whole-list contexts (kept
  for ranking metrics). Contexts are split first (a context's
  candidates are all in one job), then ``test_rows`` of the test contexts' logged candidates
  form the candidate-level test set and ``labelling_budget`` of the other contexts' form the
  training sample; the old heuristic's sample is ``labelling_budget`` of the ads the zero-relevance
  holdout serves (its auction winners, the post-auction scraping the seed replaced) in those same
  training contexts.
  The test contexts are the shortest prefix of a random order of the contexts whose logged
  candidates reach ``test_rows``: enough for the test set, the rest left to training.

Too small a log for the jobs fails, naming the fields, before anything is labelled.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from adrel_pipeline.contextual.spec import CandidateLogSpec, ContextualConfigError, LabelSpec

JOBS: tuple[str, ...] = ("candidates", "heuristic", "test")
_STREAM_LOG, _STREAM_JOBS = 51, 52


def log_candidates(candidates: pl.DataFrame, spec: CandidateLogSpec, key: tuple[int, ...] = ()) -> pl.DataFrame:
    """The funnel's candidates with the logging flags: ``sampled`` (the stage-agnostic ``log_rate``
    sample), ``served`` (dropped nowhere: impressions are always logged), ``full_list`` (every
    candidate of the first ``full_list_contexts`` contexts, kept whole for ranking metrics); only
    the rows with at least one flag, or that the holdout serves (``holdout_served``, the heuristic's pool)."""
    rng = np.random.default_rng([spec.seed, _STREAM_LOG, *key])
    contexts = candidates["context_id"].unique().sort()
    kept_whole = contexts.head(spec.full_list_contexts).implode()
    return candidates.with_columns(
        sampled=pl.Series(rng.random(candidates.height) < spec.log_rate),
        served=pl.col("dropped_at").is_null(),
        full_list=pl.col("context_id").is_in(kept_whole),
    ).filter(pl.col("sampled") | pl.col("served") | pl.col("full_list") | pl.col("holdout_served"))


def _take(frame: pl.DataFrame, n: int, rng: np.random.Generator) -> pl.DataFrame:
    return frame[np.sort(rng.choice(frame.height, size=n, replace=False))]


def draw_jobs(log: pl.DataFrame, spec: LabelSpec, key: tuple[int, ...] = ()) -> pl.DataFrame:
    """The rows of the day's three labelling jobs (see the module), with a ``job`` column."""
    rng = np.random.default_rng([spec.seed, _STREAM_JOBS, *key])
    # The whole lists measure ranking: none of their contexts' rows may train or test a model.
    sampled = log.filter(pl.col("sampled") & ~pl.col("full_list"))
    # Contexts in a random order; the test set's are the shortest prefix holding test_rows logged
    # candidates: just enough for it, the rest left to training.
    per_context = sampled.group_by("context_id").len().sort("context_id")
    order = rng.permutation(per_context.height)
    enough = int(np.searchsorted(np.cumsum(per_context["len"].to_numpy()[order]), spec.test_rows)) + 1
    test_contexts = per_context["context_id"].to_numpy()[order[:enough]]
    is_test = pl.col("context_id").is_in(pl.Series(test_contexts).implode())
    test_pool, train_pool = sampled.filter(is_test), sampled.filter(~is_test)
    served_pool = log.filter(pl.col("holdout_served") & ~pl.col("full_list") & ~is_test)
    for field, wanted, pool, what in (("test_rows", spec.test_rows, test_pool, "logged candidates of test contexts"),
                                      ("labelling_budget", spec.labelling_budget, train_pool,
                                       "logged candidates of training contexts"),
                                      ("labelling_budget", spec.labelling_budget, served_pool,
                                       "holdout-served ads of training contexts (the heuristic's sample)")):
        if pool.height < wanted:
            raise ContextualConfigError(
                f"{field}={wanted} is out of range: the day's log holds only {pool.height} {what} "
                f"({sampled.height} logged candidates in all); lower {field}, or log more (log_rate, "
                f"contexts_per_day)")
    return pl.concat([
        _take(train_pool, spec.labelling_budget, rng).with_columns(job=pl.lit("candidates")),
        _take(served_pool, spec.labelling_budget, rng).with_columns(job=pl.lit("heuristic")),
        _take(test_pool, spec.test_rows, rng).with_columns(job=pl.lit("test")),
    ])
