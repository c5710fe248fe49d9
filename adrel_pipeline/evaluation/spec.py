"""The full-catalogue ranking metrics' parameters (torch-free: the Dagster code location builds the
``oracle_metrics`` config from them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from adrel_pipeline.params import check_ranges, param

MAX_SEED = 2**63 - 1


class RankingConfigError(ValueError):
    """A ranking-metrics parameter is outside its allowed range."""


@dataclass(frozen=True)
class RankingSpec:
    exact_cells: int = param(
        2**28, "Most score-matrix cells (users x ads) the ranking metrics score per scorer. When the users "
               "of all test positives times the ads fit, every positive is ranked (exact); otherwise a "
               "uniform sample of exact_cells // ads positives, each ranked exactly against every ad (an "
               "unbiased estimate with its standard error).", integer=True, low=1)
    batch_cells: int = param(
        2**23, "Score-matrix cells held at once while ranking (8 bytes each for the oracle's float64 "
               "scores): bounds the memory, not the result.", integer=True, low=1)
    seed: int = param(0, "Seed of the sampled positives (the world's seed).", integer=True, low=0, high=MAX_SEED)

    def __post_init__(self) -> None:
        check_ranges(self, RankingConfigError)

    def as_dict(self) -> dict:
        return asdict(self)
