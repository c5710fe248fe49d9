"""Time in the pipeline: one partition per day, and the rolling training window over them.

Interactions arrive day by day (``interaction_edges`` is partitioned by day). The graph, split,
model and evaluation are partitioned by the same days: the partition ``D`` is the model trained
on the window of the ``WINDOW_DAYS`` days ending at ``D``. Days before ``FIRST_DAY`` do not exist,
so the first partitions train on shorter windows (``2026-01-01`` on one day).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import dagster as dg

from adrel_pipeline.defs.shared.source import data_days
from adrel_pipeline.sources.contract import SYNTHETIC_FIRST_DAY

FIRST_DAY = SYNTHETIC_FIRST_DAY.isoformat()
DEFAULT_WINDOW_DAYS = 7
MAX_WINDOW_DAYS = 365
WINDOW_DAYS_ENV = "ADREL_WINDOW_DAYS"

# A team's own data starts on its first day ($ADREL_SOURCE, read when the code location loads).
DATA_DAYS = data_days()
daily = dg.DailyPartitionsDefinition(start_date=DATA_DAYS[0] if DATA_DAYS else FIRST_DAY)


def window_days(environ: dict[str, str] | None = None) -> int:
    """The training window in days: ``$ADREL_WINDOW_DAYS``, default 7.

    An environment variable rather than run config because the window is a partition mapping,
    part of the asset graph itself: Dagster needs it to know which days a model depends on
    before any run starts (for backfills, staleness and the UI).
    """
    raw = (os.environ if environ is None else environ).get(WINDOW_DAYS_ENV, "").strip()
    if not raw:
        return DEFAULT_WINDOW_DAYS
    try:
        days = int(raw)
    except ValueError:
        days = 0
    if not 1 <= days <= MAX_WINDOW_DAYS:
        raise ValueError(f"{WINDOW_DAYS_ENV}={raw!r} is out of range: must be an integer in [1, {MAX_WINDOW_DAYS}]")
    return days


@contextmanager
def _beta_api() -> Iterator[None]:
    """For the two Dagster 1.13 beta features the pipeline relies on, named below: without this,
    each emits a BetaWarning on every load of the code location."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=dg.BetaWarning)
        yield


def window_mapping(days: int) -> dg.TimeWindowPartitionMapping:
    """Partition ``D`` of a downstream asset reads days ``D-(days-1) .. D`` of ``interaction_edges``;
    days before the first partition are skipped instead of failing."""
    # allow_nonexistent_upstream_partitions (beta): without it the first days could not be trained.
    with _beta_api():
        return dg.TimeWindowPartitionMapping(start_offset=-(days - 1), allow_nonexistent_upstream_partitions=True)


def asset_backfilled_in_one_run(**kwargs) -> Callable[[Callable], dg.AssetsDefinition]:
    """``dg.asset(..., backfill_policy=BackfillPolicy.single_run())``: a range of days runs as one
    run (one process), as does the CLI's ``--partition-range``, which requires this policy of every
    selected asset, partitioned or not."""
    with _beta_api():  # backfill_policy (beta)
        return dg.asset(backfill_policy=dg.BackfillPolicy.single_run(), **kwargs)


def next_day_mapping() -> dg.TimeWindowPartitionMapping:
    """Partition ``D`` reads day ``D+1`` (the day after its window), when that day exists."""
    with _beta_api():
        return dg.TimeWindowPartitionMapping(start_offset=1, end_offset=1, allow_nonexistent_upstream_partitions=True)


# One partition per advertiser: the world's advertisers (registered by the `advertisers` asset) and
# those whose seed lists arrive in the inbox (registered by `audience_inbox_sensor`).
advertisers = dg.DynamicPartitionsDefinition(name="advertisers")

EMBEDDING_DAY_ENV = "ADREL_EMBEDDING_DAY"
DEFAULT_EMBEDDING_DAY = "2026-01-07"


def embedding_days(environ: dict[str, str] | None = None) -> list[str]:
    """The days of organic history the universal user embeddings are trained on: the training
    window (``$ADREL_WINDOW_DAYS``) ending at ``$ADREL_EMBEDDING_DAY`` (default 2026-01-07, the day
    `make run` trains; on a team's own data its last day), clipped at the first day.

    Fixed per deployment, like the window: the audience group is partitioned by advertiser, not by
    day, and Dagster needs to know which days its embeddings read before any run starts. Moving the
    day is a deployment change that marks the embeddings, and every expansion, stale.
    """
    import datetime as dt

    env = os.environ if environ is None else environ
    # A team's own data: by default its last day, and it starts on its first.
    first_day, last_day = DATA_DAYS or (FIRST_DAY, DEFAULT_EMBEDDING_DAY)
    raw = env.get(EMBEDDING_DAY_ENV, "").strip() or last_day
    try:
        end = dt.date.fromisoformat(raw)
    except ValueError:
        end = None
    first = dt.date.fromisoformat(first_day)
    if end is None or end < first:
        raise ValueError(f"{EMBEDDING_DAY_ENV}={raw!r} is out of range: must be a date YYYY-MM-DD on or after {first_day}")
    days = window_days(environ)
    return [(end - dt.timedelta(days=i)).isoformat() for i in reversed(range(days))
            if end - dt.timedelta(days=i) >= first]


def embedding_window_mapping(environ: dict[str, str] | None = None) -> dg.SpecificPartitionsPartitionMapping:
    """The not-partitioned ``user_embeddings`` reads exactly the days of :func:`embedding_days`."""
    return dg.SpecificPartitionsPartitionMapping(embedding_days(environ))
