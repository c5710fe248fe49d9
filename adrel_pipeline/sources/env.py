"""The deployment's source: ``$ADREL_SOURCE``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from adrel_pipeline.sources.base import Source
from adrel_pipeline.sources.contract import CONFIG_KEYS

SOURCE_ENV = "ADREL_SOURCE"
ALLOWED_FORMS = (
    "unset or 'synthetic' (the world of $ADREL_WORLD)",
    "a directory of files (users, items, interactions)",
    "a PostgreSQL SQLAlchemy URL (postgresql://... or postgresql+psycopg2://...; tables users, items, interactions)",
    "a .yaml file with url: and tables: (PostgreSQL) or directory:, plus optional features, cross, vocabularies",
)


def _error(raw: str, why: str) -> ValueError:
    return ValueError(f"{SOURCE_ENV}={raw!r}: {why}; allowed: " + "; ".join(ALLOWED_FORMS))


def source_from_config(path: str | Path, raw: str | None = None) -> Source:
    """The source a YAML file describes: ``url:`` (and ``tables:``) for PostgreSQL or ``directory:``
    (relative to the file), plus an optional features declaration as in ``adrel.yaml``."""
    import yaml

    path = Path(path)
    raw = str(path) if raw is None else raw
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise _error(raw, f"cannot be read as YAML ({err})") from err
    if not isinstance(config, Mapping) or ("url" in config) == ("directory" in config):
        raise _error(raw, "the file must be a mapping with exactly one of url: or directory:")
    allowed = {"url", "tables", "directory", *CONFIG_KEYS}
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise _error(raw, f"unknown keys {unknown} (allowed: {sorted(allowed)})")
    features = {k: config[k] for k in CONFIG_KEYS if k in config} or None
    if "directory" in config:
        from adrel_pipeline.sources.files import FileSource

        if "tables" in config:
            raise _error(raw, "tables: goes with url:, not directory:")
        directory = path.parent / Path(config["directory"]).expanduser()
        return FileSource(directory, config=features)
    from adrel_pipeline.sources.postgres import PostgresSource

    tables = config.get("tables")
    if tables is not None and not isinstance(tables, Mapping):
        raise _error(raw, f"tables: must map users/items/interactions/ads to table names, got {tables!r}")
    return PostgresSource(str(config["url"]), tables, features=features)


def source_from_env(environ: Mapping[str, str] | None = None) -> Source:
    """``$ADREL_SOURCE``: unset/``synthetic``, a directory, a ``.yaml`` file or a ``postgresql`` URL."""
    env = os.environ if environ is None else environ
    raw = env.get(SOURCE_ENV, "").strip()
    if raw in ("", "synthetic"):
        from adrel_pipeline.sources.synthetic import SyntheticSource
        from adrel_pipeline.world.spec import deployment_world

        return SyntheticSource(deployment_world(dict(env)))
    if raw.startswith("postgresql"):
        from adrel_pipeline.sources.postgres import PostgresSource

        return PostgresSource(raw)
    path = Path(raw).expanduser()
    if path.is_dir():
        from adrel_pipeline.sources.files import FileSource

        return FileSource(path)
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        return source_from_config(path, raw)
    raise _error(raw, "not 'synthetic', an existing directory, a .yaml file or a postgresql URL")

