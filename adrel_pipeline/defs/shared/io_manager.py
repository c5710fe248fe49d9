"""IO manager: tables as parquet, tensors/graphs/models as weights-only ``torch.save`` files.

A partitioned asset stores one file per partition (``<asset>/<partition>.<suffix>``). A run over a
range of partitions (a single-run backfill) hands over ``{partition_key: value}`` and each
partition is written on its own; a downstream input that spans several partitions (a rolling
window) gets the tables concatenated in partition order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from adrel_pipeline.mlops import serialization

_SUFFIXES = (".parquet", ".pt")


class LocalArtifactIOManager(dg.IOManager):
    def __init__(self, base_dir: Path):
        self.base_dir = base_dir

    def _stem(self, asset_key: dg.AssetKey, partition_key: str | None) -> Path:
        path = self.base_dir.joinpath(*asset_key.path)
        return path if partition_key is None else path / partition_key

    def _write(self, stem: Path, obj: Any) -> Path:
        path = stem.with_suffix(serialization.suffix_for(obj))
        serialization.save(obj, path)
        # A type change (table <-> tensors) must not leave a stale sibling to be loaded later.
        for other in _SUFFIXES:
            if other != path.suffix:
                stem.with_suffix(other).unlink(missing_ok=True)
        return path

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if not context.has_asset_partitions:
            path = self._write(self._stem(context.asset_key, None), obj)
            context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})
            return
        keys = context.asset_partition_keys
        if len(keys) == 1:
            values = {keys[0]: obj}
        elif isinstance(obj, dict) and set(obj) == set(keys):
            values = obj
        else:
            raise TypeError(
                f"{context.asset_key.to_user_string()}: a run over {len(keys)} partitions must return a dict "
                f"keyed by partition key ({keys[0]} .. {keys[-1]}), got {type(obj).__name__}"
            )
        # Each day is written atomically; days are independent, so a crash between two days
        # leaves every file either the old or the new (identical) value, never a torn one.
        paths = [self._write(self._stem(context.asset_key, key), values[key]) for key in keys]
        context.add_output_metadata({"path": dg.MetadataValue.path(str(paths[0].parent))})

    def _load(self, asset_key: dg.AssetKey, partition_key: str | None) -> Any:
        stem = self._stem(asset_key, partition_key)
        for suffix in _SUFFIXES:
            if stem.with_suffix(suffix).exists():
                return serialization.load(stem.with_suffix(suffix))
        return None

    def load_input(self, context: dg.InputContext) -> Any:
        name = context.asset_key.to_user_string()
        if not context.has_asset_partitions:
            value = self._load(context.asset_key, None)
            if value is None:
                raise FileNotFoundError(
                    f"no stored value for asset {name} under {self._stem(context.asset_key, None)}: materialize it first"
                )
            return value
        keys = list(context.asset_partition_keys)
        values = {key: self._load(context.asset_key, key) for key in keys}
        missing = [key for key, value in values.items() if value is None]
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise FileNotFoundError(
                f"{len(missing)} of the {len(keys)} partitions of {name} this step reads are not materialized: "
                f"{shown}. Backfill them first, e.g. `dagster asset materialize -m adrel_pipeline --select {name} "
                f"--partition-range {missing[0]}...{missing[-1]}`"
            )
        if len(keys) == 1:
            return values[keys[0]]
        if all(isinstance(v, pl.DataFrame) for v in values.values()):
            return pl.concat([values[key] for key in sorted(keys)])
        return values


class ArtifactIOManager(dg.ConfigurableIOManagerFactory):
    """Stores asset values under ``base_dir`` (default: the Dagster instance's storage folder)."""

    base_dir: str | None = None

    def create_io_manager(self, context: dg.InitResourceContext) -> LocalArtifactIOManager:
        base = self.base_dir or context.instance.storage_directory()
        return LocalArtifactIOManager(Path(base))
