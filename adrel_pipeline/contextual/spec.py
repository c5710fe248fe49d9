"""The contextual-relevance parameters: candidate logging, the labelling job, the model and its
checks, and monitoring. Each declared once, with its range (:mod:`adrel_pipeline.params`).

Torch- and scikit-learn-free: the Dagster code location builds its run config from these.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from adrel_pipeline.graph.spec import MAX_SEED
from adrel_pipeline.params import check_ranges, choice, out_of_range, param

CALIBRATIONS = ("isotonic", "sigmoid", "none")


class ContextualConfigError(ValueError):
    """A contextual-relevance parameter is outside its allowed range."""


class _Spec:
    def __post_init__(self) -> None:
        check_ranges(self, ContextualConfigError)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CandidateLogSpec(_Spec):
    """What the serving funnel logs each day for labelling and evaluation."""

    log_rate: float = param(
        0.1, "Share of candidates logged at every funnel stage, whatever the stage. The seed logs 1% of Pinterest's "
             "traffic; this world's 20,000 contexts a day need 10% to fill a day's labelling job.",
        low=0.0, high=1.0, low_open=True)
    served_slots: int = param(3, "Ads served per context (the auction's winners).", integer=True, low=1, high=100)
    full_list_contexts: int = param(
        500, "Contexts whose every candidate is kept, to measure ranking (nDCG) and the top-ranked share.",
        integer=True, low=1, high=1_000_000)
    seed: int = param(0, "Seed of the draws (the world's seed).", integer=True, low=0, high=MAX_SEED)


@dataclass(frozen=True)
class LabelSpec(_Spec):
    """The day's labelling job: the training sample within the budget, a candidate-level test set,
    the old heuristic's sample, and the crowd that labels them."""

    labelling_budget: int = param(
        30_000, "Rows labelled for training each day (the candidate sample; the old heuristic gets the same).",
        integer=True, low=100, high=10_000_000)
    test_rows: int = param(40_000, "Rows of the candidate-level test set (contexts disjoint from training).",
                           integer=True, low=100, high=10_000_000)
    raters_per_row: int = param(3, "Raters per row; the row's label is their median (lower median if even).",
                                integer=True, low=2, high=15,
                                hint=" (agreement, and so quality control, needs two raters of a row)")
    rater_pool: int = param(60, "Raters in the crowd; each row's raters are distinct members.",
                            integer=True, low=1, high=100_000)
    rater_noise: float = param(0.45, "Standard deviation of a rater's per-row noise, in grade points.",
                               low=0.0, high=5.0)
    rater_bias_sd: float = param(0.2, "Standard deviation of the raters' personal biases, in grade points.",
                                 low=0.0, high=5.0)
    max_disagreement_rate: float = param(
        0.1, "Warning: the share of rows whose raters are more than one point apart, at most this (the seed's "
             "production jobs stay below 10%).", low=0.0, high=1.0)
    seed: int = param(0, "Seed of the draws (the world's seed).", integer=True, low=0, high=MAX_SEED)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rater_pool < self.raters_per_row:
            raise ContextualConfigError(out_of_range("rater_pool", self.rater_pool,
                                                     f"an integer >= raters_per_row={self.raters_per_row}")
                                        + " (each row's raters are distinct)")


@dataclass(frozen=True)
class RelevanceModelSpec(_Spec):
    """One gradient-boosted model for every content type, calibrated on a held-out fold."""

    # 40 trees at 0.25 instead of 100 at 0.1: on the default world (seeds 0-2) the same ECE within noise,
    # Brier +0.0003, and 1.8x the scoring speed (benchmarks/contextual.py).
    max_iter: int = param(40, "Boosting iterations.", integer=True, low=1, high=10_000)
    learning_rate: float = param(0.25, "Boosting learning rate.", low=0.0, high=1.0, low_open=True)
    max_leaf_nodes: int = param(31, "Leaves per tree.", integer=True, low=2, high=4096)
    min_samples_leaf: int = param(100, "Rows per leaf at least.", integer=True, low=1, high=100_000)
    l2_regularization: float = param(0.0, "L2 penalty on leaf values.", low=0.0, high=1000.0)
    calibration: str = choice("isotonic", "How the held-out fold maps scores to probabilities "
                                          "(CalibratedClassifierCV on the frozen model; none: the raw model).",
                              CALIBRATIONS)
    calibration_fraction: float = param(
        0.25, "Share of the labelled contexts held out to fit the calibration.", low=0.0, high=0.9, low_open=True)
    ece_bins: int = param(10, "Equal-mass bins of the expected calibration error and reliability curves.",
                          integer=True, low=2, high=100)
    top_k: int = param(3, "Top-ranked candidates per context in the ablation's relevant share (the slots).",
                       integer=True, low=1, high=100)
    seed: int = param(0, "Seed of the fit and the folds (the world's seed).", integer=True, low=0, high=MAX_SEED)


@dataclass(frozen=True)
class RelevanceCheckSpec(_Spec):
    """Bounds of the relevance model's checks."""

    max_ece: float = param(0.05, "Blocking: the ECE on every content type must be at most this.",
                           low=0.0, high=1.0)
    oracle_tolerance_se: float = param(
        3.0, "Blocking: the model's Brier score may beat the oracle's on the same rows by at most this many paired "
             "standard errors; more means it saw the truth.", low=0.0, high=10.0)


@dataclass(frozen=True)
class MonitoringSpec(_Spec):
    """Thresholds of the monitoring checks (WARN): drift against the previous day."""

    max_psi: float = param(0.2, "Warning: the population stability index of a signal or score against the "
                                "previous day, per surface and content type, at most this (0.2: a shift worth a "
                                "look).", low=0.0, high=10.0)
    max_coverage_drop: float = param(
        0.05, "Warning: a signal's coverage (share present) may fall by at most this against the previous day, "
              "per surface and content type.", low=0.0, high=1.0)
