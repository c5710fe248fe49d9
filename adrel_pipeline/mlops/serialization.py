"""Safe on-disk formats: parquet for tables, ``torch.save`` of plain containers for the rest.

Everything written as ``.pt`` loads with ``torch.load(weights_only=True)``: tensors, numbers,
strings, lists, tuples and dicts only. A ``HeteroData`` is stored as its ``to_dict()``, tagged
so it comes back as a ``HeteroData``. Writes go to a temporary file that replaces the target
in one ``os.replace``, so a crash never leaves a half-written file behind.

torch is imported only when a ``.pt`` file is read or written: the Dagster IO manager imports
this module, and the steps that move only tables should not pay for torch.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

_HETERO_TAG = "__heterodata__"
# A .pt file with tags holds {_TAGS: {...}, _VALUE: value}; parquet files keep tags as key-value metadata.
_TAGS, _VALUE = "__adrel_tags__", "__adrel_value__"


def _hetero_data_if_imported() -> type | None:
    """PyG's ``HeteroData`` if PyG is loaded, else None: then no value can be one, and a process that
    only moves tensors (the audience steps) does not pay PyG's ~2.5 s import."""
    module = sys.modules.get("torch_geometric.data")
    return getattr(module, "HeteroData", None)


def _has_hetero(obj: Any) -> bool:
    if isinstance(obj, dict):
        return set(obj) == {_HETERO_TAG} or any(_has_hetero(v) for v in obj.values())
    return False


def _encode(obj: Any, hetero_data: type | None) -> Any:
    if hetero_data is not None and isinstance(obj, hetero_data):
        return {_HETERO_TAG: obj.to_dict()}
    if isinstance(obj, dict):
        return {k: _encode(v, hetero_data) for k, v in obj.items()}
    return obj


def _decode(obj: Any, hetero_data: type) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_HETERO_TAG}:
            return hetero_data.from_dict(obj[_HETERO_TAG])
        return {k: _decode(v, hetero_data) for k, v in obj.items()}
    return obj


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(obj: Any, path: Path, tags: dict[str, str] | None = None) -> None:
    """Write ``obj`` to ``path``: ``.parquet`` for a polars DataFrame, ``.pt`` otherwise. ``tags``
    (strings) are stored in the same file, so a value and its provenance are written atomically."""
    tags = dict(tags or {})
    if path.suffix == ".parquet":
        atomic_write(path, lambda p: obj.write_parquet(p, metadata=tags or None))
        return
    import torch

    payload = _encode(obj, _hetero_data_if_imported())
    if tags:
        payload = {_TAGS: tags, _VALUE: payload}
    atomic_write(path, lambda p: torch.save(payload, p))


def load_with_tags(path: Path) -> tuple[Any, dict[str, str]]:
    """The value at ``path`` and the tags saved with it (empty when none were)."""
    if path.suffix == ".parquet":
        tags = {k: v for k, v in pl.read_parquet_metadata(path).items() if not k.startswith("ARROW:")}
        return pl.read_parquet(path), tags
    import torch

    payload = torch.load(path, weights_only=True)
    tags = {}
    if isinstance(payload, dict) and set(payload) == {_TAGS, _VALUE}:
        tags, payload = payload[_TAGS], payload[_VALUE]
    if not _has_hetero(payload):
        return payload, tags
    from torch_geometric.data import HeteroData

    return _decode(payload, HeteroData), tags


def load(path: Path) -> Any:
    return load_with_tags(path)[0]


def suffix_for(obj: Any) -> str:
    return ".parquet" if isinstance(obj, pl.DataFrame) else ".pt"
