"""The parameters of each stage after the world: the link split, training, and the model checks.

Plain frozen dataclasses, validated on construction (an out-of-range field raises a ``ValueError``
naming the field and its allowed range). They import nothing heavy: the Dagster code location
builds its config schema from their defaults, and loading it (every CLI command, the webserver,
the daemon) should not cost a torch import. The world's own parameters are
:class:`adrel_pipeline.world.WorldSpec`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


class SplitConfigError(ValueError):
    """A split parameter is outside its allowed range."""


@dataclass(frozen=True)
class SplitSpec:
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    disjoint_train_ratio: float = 0.6
    neg_ratio: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 < value < 0.5:
                raise SplitConfigError(f"{name}={value!r} is out of range: must be in (0, 0.5)")
        if self.val_fraction + self.test_fraction >= 0.9:
            raise SplitConfigError(
                "val_fraction + test_fraction must be below 0.9 to leave edges for training"
            )
        if not 0.0 < self.disjoint_train_ratio < 1.0:
            raise SplitConfigError(
                f"disjoint_train_ratio={self.disjoint_train_ratio!r} is out of range: must be in (0, 1)"
            )
        if not 0.0 < self.neg_ratio <= 10.0:
            raise SplitConfigError(f"neg_ratio={self.neg_ratio!r} is out of range: must be in (0, 10]")
        if not 0 <= self.seed < 2**63:
            raise SplitConfigError(f"seed={self.seed!r} is out of range: must be in [0, 2**63)")

    def as_dict(self) -> dict:
        return asdict(self)


class TrainConfigError(ValueError):
    """A training hyperparameter is outside its allowed range."""


@dataclass(frozen=True)
class TrainSpec:
    hidden_channels: int = 32
    out_channels: int = 16
    heads: int = 2
    dropout: float = 0.0
    epochs: int = 50
    lr: float = 0.01
    weight_decay: float = 0.0
    patience: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("hidden_channels", "out_channels", "heads", "epochs", "patience"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise TrainConfigError(f"{name}={value!r} is out of range: must be an integer >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise TrainConfigError(f"dropout={self.dropout!r} is out of range: must be in [0, 1)")
        if not 0.0 < self.lr <= 1.0:
            raise TrainConfigError(f"lr={self.lr!r} is out of range: must be in (0, 1]")
        if not 0.0 <= self.weight_decay <= 1.0:
            raise TrainConfigError(f"weight_decay={self.weight_decay!r} is out of range: must be in [0, 1]")
        if not 0 <= self.seed < 2**63:
            raise TrainConfigError(f"seed={self.seed!r} is out of range: must be in [0, 2**63)")

    def as_dict(self) -> dict:
        return asdict(self)


class ModelCheckConfigError(ValueError):
    """A model-check bound is outside its allowed range."""


@dataclass(frozen=True)
class ModelCheckSpec:
    """Bounds of the model checks: ``min_test_auc`` and ``oracle_tolerance`` block, the champion
    margin only warns."""

    min_test_auc: float = 0.55
    oracle_tolerance: float = 0.02
    champion_margin: float = 0.01

    def __post_init__(self) -> None:
        for name, low, high in (("min_test_auc", 0.5, 1.0), ("oracle_tolerance", 0.0, 0.5),
                                ("champion_margin", 0.0, 0.5)):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                    and low <= value <= high):
                raise ModelCheckConfigError(f"{name}={value!r} is out of range: must be a number in [{low}, {high}]")
