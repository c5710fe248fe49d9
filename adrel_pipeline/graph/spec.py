"""The link split's parameters (torch-free: the Dagster code location builds its config from them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from adrel_pipeline.params import check_ranges, param

MAX_SEED = 2**63 - 1


class SplitConfigError(ValueError):
    """A split parameter is outside its allowed range."""


@dataclass(frozen=True)
class SplitSpec:
    val_fraction: float = param(0.1, "Share of user→ad edges for validation.", low=0.0, high=0.5,
                                low_open=True, high_open=True)
    test_fraction: float = param(0.1, "Share of user→ad edges for test.", low=0.0, high=0.5,
                                 low_open=True, high_open=True)
    disjoint_train_ratio: float = param(
        0.6, "Share of train edges used only as supervision, hidden from message passing.",
        low=0.0, high=1.0, low_open=True, high_open=True)
    neg_ratio: float = param(1.0, "Val/test negatives per positive.", low=0.0, high=10.0, low_open=True)
    seed: int = param(0, "Seed of the split's random draws (the world's seed).", integer=True, low=0, high=MAX_SEED)

    def __post_init__(self) -> None:
        check_ranges(self, SplitConfigError)
        if self.val_fraction + self.test_fraction >= 0.9:
            raise SplitConfigError(
                f"val_fraction + test_fraction = {self.val_fraction + self.test_fraction!r} is out of range: "
                "must be below 0.9 to leave edges for training"
            )

    def as_dict(self) -> dict:
        return asdict(self)
