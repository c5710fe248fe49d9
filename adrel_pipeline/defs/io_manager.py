"""IO manager: tables as parquet, tensors/graphs/models as weights-only ``torch.save`` files."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import dagster as dg

from adrel_pipeline import serialization


class LocalArtifactIOManager(dg.IOManager):
    def __init__(self, base_dir: Path):
        self.base_dir = base_dir

    def _stem(self, context: dg.OutputContext | dg.InputContext) -> Path:
        path = self.base_dir.joinpath(*context.asset_key.path)
        if context.has_asset_partitions:
            path = path / context.asset_partition_key
        return path

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        stem = self._stem(context)
        path = stem.with_suffix(serialization.suffix_for(obj))
        serialization.save(obj, path)
        # A type change (table <-> tensors) must not leave a stale sibling to be loaded later.
        for other in (".parquet", ".pt"):
            if other != path.suffix:
                stem.with_suffix(other).unlink(missing_ok=True)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> Any:
        stem = self._stem(context)
        for suffix in (".parquet", ".pt"):
            if stem.with_suffix(suffix).exists():
                return serialization.load(stem.with_suffix(suffix))
        raise FileNotFoundError(
            f"no stored value for asset {context.asset_key.to_user_string()} under {stem}: "
            "materialize it first"
        )


class ArtifactIOManager(dg.ConfigurableIOManagerFactory):
    """Stores asset values under ``base_dir`` (default: the Dagster instance's storage folder)."""

    base_dir: Optional[str] = None

    def create_io_manager(self, context: dg.InitResourceContext) -> LocalArtifactIOManager:
        base = self.base_dir or context.instance.storage_directory()
        return LocalArtifactIOManager(Path(base))
