"""Deterministic torch kernels for a block of code: every training and scoring runs under it.

Torch only (no PyG): the audience system uses it without paying PyTorch Geometric's ~2.5 s import.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def deterministic() -> Iterator[None]:
    """PyTorch's deterministic kernels, then the caller's setting back.

    Multi-threaded CPU scatter-adds (GAT aggregation and its backward) otherwise differ in the
    last bits from run to run, and the differences grow over epochs.
    """
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)
