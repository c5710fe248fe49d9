"""Safe on-disk formats: parquet for tables, ``torch.save`` of plain containers for the rest.

Everything written as ``.pt`` loads with ``torch.load(weights_only=True)``: tensors, numbers,
strings, lists, tuples and dicts only. A ``HeteroData`` is stored as its ``to_dict()``, tagged
so it comes back as a ``HeteroData``. Writes go to a temporary file that replaces the target
in one ``os.replace``, so a crash never leaves a half-written file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import torch
from torch_geometric.data import HeteroData

_HETERO_TAG = "__heterodata__"


def encode(obj: Any) -> Any:
    if isinstance(obj, HeteroData):
        return {_HETERO_TAG: obj.to_dict()}
    if isinstance(obj, dict):
        return {k: encode(v) for k, v in obj.items()}
    return obj


def decode(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_HETERO_TAG}:
            return HeteroData.from_dict(obj[_HETERO_TAG])
        return {k: decode(v) for k, v in obj.items()}
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


def save(obj: Any, path: Path) -> None:
    """Write ``obj`` to ``path``: ``.parquet`` for a polars DataFrame, ``.pt`` otherwise."""
    if path.suffix == ".parquet":
        atomic_write(path, lambda p: obj.write_parquet(p))
    else:
        atomic_write(path, lambda p: torch.save(encode(obj), p))


def load(path: Path) -> Any:
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    return decode(torch.load(path, weights_only=True))


def suffix_for(obj: Any) -> str:
    return ".parquet" if isinstance(obj, pl.DataFrame) else ".pt"
