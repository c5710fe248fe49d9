"""Where ``users``, ``items`` and ``interaction_edges`` come from: ``$ADREL_SOURCE``.

A deployment setting next to ``$ADREL_WORLD``, read when the code location loads (the first daily
partition is the data's first day, and the asset graph depends on the source):

* unset or ``synthetic``: the synthetic world (the ``world`` resource, overridable per run);
* a directory of files, or a PostgreSQL database (a SQLAlchemy URL, or a YAML file naming the URL
  and tables): a team's own data, in the contract of :mod:`adrel_pipeline.sources`.

Everything downstream of the three assets reads them as it reads the synthetic world's.
"""

from __future__ import annotations

import functools
import hashlib
import os

import dagster as dg
from pydantic import Field

from adrel_pipeline.sources.env import SOURCE_ENV
from adrel_pipeline.world.spec import WorldSpec

SYNTHETIC = "synthetic"


def source_setting(environ: dict[str, str] | None = None) -> str:
    """``$ADREL_SOURCE`` as given, ``synthetic`` when unset."""
    return (os.environ if environ is None else environ).get(SOURCE_ENV, "").strip() or SYNTHETIC


def is_synthetic(environ: dict[str, str] | None = None) -> bool:
    return source_setting(environ) == SYNTHETIC


def open_source(setting: str, world: WorldSpec, **tables):
    """The :mod:`adrel_pipeline.sources` source that ``setting`` names. Given the pipeline's ``users``
    and ``items``, the synthetic world generates its days from them, and any other source checks its
    days' ids against them, instead of producing them again."""
    from adrel_pipeline.sources import SyntheticSource, source_from_env

    if setting == SYNTHETIC:
        return SyntheticSource(world, **tables)
    source = source_from_env({**os.environ, SOURCE_ENV: setting})
    return source.with_known(**tables) if tables else source


def source_has(setting: str, table: str) -> bool:
    """Whether the own-data source ``setting`` provides the optional ``table``; False for synthetic
    (the world generates its advertisers and labels itself) and for a source that cannot be opened
    (:func:`data_days` says why)."""
    return table in _optional_tables(setting)


@functools.cache
def _optional_tables(setting: str) -> frozenset[str]:
    # Once per setting: the code location asks for each table when it loads.
    from adrel_pipeline.sources.contract import PIPELINE_TABLES

    if setting == SYNTHETIC:
        return frozenset()
    try:
        source = open_source(setting, None)
    except Exception:  # noqa: BLE001 - an unreadable source fails the load in data_days, with its reason
        return frozenset()
    return frozenset(t for t in PIPELINE_TABLES if source.has(t))


def data_days(environ: dict[str, str] | None = None) -> tuple[str, str] | None:
    """The data's first and last day, for a source of a team's own data (the first is the first
    daily partition; the last is where the audience embeddings' window ends unless
    ``$ADREL_EMBEDDING_DAY`` says otherwise); None for the synthetic world, whose days start at a
    fixed date."""
    if is_synthetic(environ):
        return None
    from adrel_pipeline.sources import source_from_env

    try:
        days = source_from_env(dict(os.environ if environ is None else environ)).days()
        if not days:
            raise ValueError("the source has no interactions at all (no days)")
    except Exception as err:
        raise RuntimeError(f"{SOURCE_ENV}={source_setting(environ)!r}: cannot read the data's days "
                           f"({type(err).__name__}: {err}). Fix the source, or unset {SOURCE_ENV} for the "
                           "synthetic world.") from err
    return days[0].isoformat(), days[-1].isoformat()


class DataSource(dg.ConfigurableResource):
    """The deployment's data source (``$ADREL_SOURCE``): ``synthetic``, a directory, or a database."""

    source: str = Field(default=source_setting(), description=(
        "synthetic (the world resource's generator), a directory of files (users, items, "
        "interactions/<day>), a PostgreSQL SQLAlchemy URL, or a YAML file naming one and its tables. "
        "Default: $ADREL_SOURCE when the code location loaded."))

    @property
    def synthetic(self) -> bool:
        return self.source == SYNTHETIC

    def open(self, world: WorldSpec, **tables):
        return open_source(self.source, world, **tables)

    def features(self, world: WorldSpec):
        """The source's :class:`~adrel_pipeline.graph.features.FeatureSpec` (the world's when synthetic)."""
        return self.open(world).features

    def fingerprint(self, world: WorldSpec) -> str:
        """What the data is: the synthetic world's fingerprint, else the source setting's hash. Stored
        values, model versions and reports carry it, so values of one source are never read as
        another's."""
        if self.synthetic:
            return world.fingerprint
        return "source-" + hashlib.sha256(self.source.encode()).hexdigest()[:12]
