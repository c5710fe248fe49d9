"""Bring your own data (issue 17): the users, items and daily interactions the pipeline reads, from
the synthetic world (:class:`SyntheticSource`), a directory of parquet/CSV files
(:class:`FileSource`) or a PostgreSQL database (:class:`PostgresSource`), chosen by
``$ADREL_SOURCE`` (:func:`source_from_env`). The contract (tables, columns, types) is
:mod:`.contract`; bad data raises :class:`SourceDataError` (:mod:`.validate`).

Plain Python (polars, SQLAlchemy): no Dagster, no torch.
"""

from adrel_pipeline.sources.base import Source, features_from_config, features_to_config
from adrel_pipeline.sources.env import SOURCE_ENV, source_from_config, source_from_env
from adrel_pipeline.sources.files import FileSource
from adrel_pipeline.sources.postgres import PostgresSource, create_schema, load_directory
from adrel_pipeline.sources.synthetic import SyntheticSource
from adrel_pipeline.sources.validate import SourceDataError, check_interactions

__all__ = ["SOURCE_ENV", "FileSource", "PostgresSource", "Source", "SourceDataError", "SyntheticSource",
           "check_interactions", "create_schema", "features_from_config", "features_to_config", "load_directory",
           "source_from_config", "source_from_env"]
