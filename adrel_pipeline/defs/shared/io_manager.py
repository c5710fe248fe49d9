"""IO manager: tables as parquet, tensors/graphs/models as weights-only ``torch.save`` files, each
stamped with the fingerprint of the world it was computed from.

A partitioned asset stores one file per partition (``<asset>/<partition>.<suffix>``). A run over a
range of partitions (a single-run backfill) hands over ``{partition_key: value}`` and each
partition is written on its own; a downstream input that spans several partitions (a rolling
window) gets the tables concatenated in partition order.

Every value is written with its world's fingerprint (in the same file, so a value and its
provenance are replaced together) and shown as ``world_fingerprint`` metadata. Reading a value of
another world fails, naming both fingerprints and the command that rematerializes it: one
Launchpad run with a custom world followed by a scheduled tick must not silently mix users of one
world with interactions of another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from adrel_pipeline.mlops import serialization

_SUFFIXES = (".parquet", ".pt")
WORLD_TAG = "world_fingerprint"


class WorldMismatch(dg.Failure):
    """An input was materialized for another world than this run's."""


class LocalArtifactIOManager(dg.IOManager):
    def __init__(self, base_dir: Path, world_fingerprint: str):
        self.base_dir = base_dir
        self.world_fingerprint = world_fingerprint

    def _stem(self, asset_key: dg.AssetKey, partition_key: str | None) -> Path:
        path = self.base_dir.joinpath(*asset_key.path)
        return path if partition_key is None else path / partition_key

    def _write(self, stem: Path, obj: Any) -> Path:
        path = stem.with_suffix(serialization.suffix_for(obj))
        serialization.save(obj, path, tags={WORLD_TAG: self.world_fingerprint})
        # A type change (table <-> tensors) must not leave a stale sibling to be loaded later.
        for other in _SUFFIXES:
            if other != path.suffix:
                stem.with_suffix(other).unlink(missing_ok=True)
        return path

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if not context.has_asset_partitions:
            path = self._write(self._stem(context.asset_key, None), obj)
            context.add_output_metadata({"path": dg.MetadataValue.path(str(path)),
                                         WORLD_TAG: self.world_fingerprint})
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
        context.add_output_metadata({"path": dg.MetadataValue.path(str(paths[0].parent)),
                                     WORLD_TAG: self.world_fingerprint})

    def _load(self, asset_key: dg.AssetKey, partition_key: str | None) -> tuple[Any, str | None] | None:
        stem = self._stem(asset_key, partition_key)
        for suffix in _SUFFIXES:
            if stem.with_suffix(suffix).exists():
                value, tags = serialization.load_with_tags(stem.with_suffix(suffix))
                return value, tags.get(WORLD_TAG)
        return None

    def _check_world(self, name: str, stored: dict[str | None, str | None]) -> None:
        """``stored``: partition key (None when unpartitioned) -> the fingerprint it was written with."""
        foreign = sorted((k or "", f) for k, f in stored.items() if f != self.world_fingerprint)
        if not foreign:
            return
        worlds = sorted({f or "none (written before world fingerprints)" for _, f in foreign})
        keys = [k for k, _ in foreign if k]
        which = f" partitions {keys[0]}...{keys[-1]} ({len(keys)})" if keys else ""
        select = f"--assets {name}" + (f" --partition-range {keys[0]}...{keys[-1]}" if keys else "")
        raise WorldMismatch(
            description=(
                f"{name}{which} was materialized for world {', '.join(worlds)}, but this run's world is "
                f"{self.world_fingerprint} (ADREL_WORLD, or resources.world.config in run config): values of "
                f"two worlds must not be mixed. Rematerialize it (and what else it depends on) for this "
                f"world first: `dg launch {select}` with this "
                f"run's world, or run with the world it was made for."),
            metadata={"this_world": self.world_fingerprint, "stored_worlds": ", ".join(worlds)},
            allow_retries=False,
        )

    def load_input(self, context: dg.InputContext) -> Any:
        name = context.asset_key.to_user_string()
        if not context.has_asset_partitions:
            loaded = self._load(context.asset_key, None)
            if loaded is None:
                raise FileNotFoundError(
                    f"no stored value for asset {name} under {self._stem(context.asset_key, None)}: materialize it first"
                )
            self._check_world(name, {None: loaded[1]})
            return loaded[0]
        keys = list(context.asset_partition_keys)
        loaded = {key: self._load(context.asset_key, key) for key in keys}
        missing = [key for key, value in loaded.items() if value is None]
        # An input declared optional (AssetIn metadata) is None when its days do not exist yet.
        if (context.definition_metadata or {}).get("optional") and (missing or not keys):
            return None
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise FileNotFoundError(
                f"{len(missing)} of the {len(keys)} partitions of {name} this step reads are not materialized: "
                f"{shown}. Backfill them first, e.g. `dg launch "
                f"--assets {name} --partition-range {missing[0]}...{missing[-1]}`"
            )
        self._check_world(name, {key: fingerprint for key, (_, fingerprint) in loaded.items()})
        values = {key: value for key, (value, _) in loaded.items()}
        if len(keys) == 1:
            return values[keys[0]]
        if all(isinstance(v, pl.DataFrame) for v in values.values()):
            return pl.concat([values[key] for key in sorted(keys)])
        return values


@dg.io_manager(
    required_resource_keys={"world", "source"},
    config_schema={"base_dir": dg.Field(dg.Noneable(str), default_value=None,
                                        description="Where values are stored. Default: the instance's storage folder.")},
    description="Parquet tables and weights-only torch files, stamped with the run's world fingerprint.",
)
def artifact_io_manager(init_context: dg.InitResourceContext) -> LocalArtifactIOManager:
    # The world resource as this run configured it (run-config overrides included): a nested
    # resource would see only the code location's defaults. A team's own data: its source's stamp.
    base = init_context.resource_config["base_dir"] or init_context.instance.storage_directory()
    resources = init_context.resources
    return LocalArtifactIOManager(Path(base), resources.source.fingerprint(resources.world.spec()))


def stored_value(instance: dg.DagsterInstance, asset: str) -> Any | None:
    """The stored value of a not-partitioned asset in the instance's default storage folder, or
    None: for sensors, which run outside any step and so have no IO manager."""
    loaded = LocalArtifactIOManager(Path(instance.storage_directory()), "")._load(dg.AssetKey(asset), None)
    return None if loaded is None else loaded[0]
