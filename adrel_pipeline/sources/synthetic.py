"""The synthetic world as a source: the generator's tables, latent truth columns included."""

from __future__ import annotations

import datetime as dt

import polars as pl

from adrel_pipeline.graph.features import synthetic_features
from adrel_pipeline.sources.base import Source
from adrel_pipeline.sources.contract import SYNTHETIC_FIRST_DAY
from adrel_pipeline.sources.validate import empty_day
from adrel_pipeline.world import WorldSpec, generate_day, generate_items, generate_users


class SyntheticSource(Source):
    """``spec``'s world. Its days run from :data:`~.contract.SYNTHETIC_FIRST_DAY` to ``last_day``
    (default: yesterday, UTC, the last complete day of the daily partitions); any day from the first
    on can be generated, so :meth:`interactions` never needs ``last_day``."""

    def __init__(self, spec: WorldSpec | None = None, last_day: dt.date | None = None,
                 users: pl.DataFrame | None = None, items: pl.DataFrame | None = None):
        """``users`` and ``items``: the world's tables when the caller already has them (the pipeline's
        upstream assets), so that a day's interactions do not generate them again."""
        self.spec = spec or WorldSpec()
        self.last_day = last_day
        self.features = synthetic_features()
        self.name = f"synthetic:{self.spec.fingerprint}"
        self._users: pl.DataFrame | None = users
        self._items: pl.DataFrame | None = items

    def users(self) -> pl.DataFrame:
        if self._users is None:
            self._users = generate_users(self.spec)
        return self._users

    def items(self) -> pl.DataFrame:
        if self._items is None:
            self._items = generate_items(self.spec)
        return self._items

    def first_day(self) -> dt.date:
        return SYNTHETIC_FIRST_DAY

    def days(self) -> list[dt.date]:
        last = self.last_day or dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
        return [SYNTHETIC_FIRST_DAY + dt.timedelta(days=i) for i in range((last - SYNTHETIC_FIRST_DAY).days + 1)]

    def interactions(self, day: dt.date) -> pl.DataFrame:
        if day < SYNTHETIC_FIRST_DAY:
            raise empty_day(day, [SYNTHETIC_FIRST_DAY], self.name)
        # The generator's ids are its own users' and items': nothing to check.
        return generate_day(self.spec, self.users(), self.items(), day)
