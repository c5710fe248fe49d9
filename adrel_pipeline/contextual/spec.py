"""The contextual-relevance parameters: the serving funnel, candidate logging, the labelling job,
the model and its checks, monitoring, and the funnel's measurements. Each declared once, with its
range (:mod:`adrel_pipeline.params`).

Torch- and scikit-learn-free: the Dagster code location builds its run config from these.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

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
class FunnelSpec(_Spec):
    """How production serves a context after retrieval: the relevance trim, one ranking function
    over calibrated parts, and a generalised second-price auction. A deployment setting (the
    ``funnel`` resource): the day's log and the funnel's measurements serve with the same one."""

    trim_threshold: float = param(
        0.1, "tau: a candidate whose calibrated P(relevant) is below this is trimmed before ranking (the seed's trim, "
             "which implicitly controls ad load).", low=0.0, high=1.0)
    relevance_exponent: float = param(
        1.0, "alpha of the ranking score bid x pCTR x P(relevant)^alpha; 0 leaves relevance out (the holdout's "
             "ranking).", low=0.0, high=10.0)
    auction_candidates: int = param(
        10, "Candidates per context the ranking sends to the auction (its best by score).", integer=True, low=1,
        high=1000)
    slots: int = param(3, "Ad slots per context, sold in one generalised second-price auction.", integer=True,
                       low=1, high=100)
    reserve_price: float = param(
        0.2, "Reserve price per click: an ad bidding less cannot win, and no winner pays less.", low=0.0,
        high=1000.0)
    position_decay: float = param(
        0.7, "Slot s (from 0) is clicked with the pair's click probability times position_decay^s.", low=0.0,
        high=1.0, low_open=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.slots > self.auction_candidates:
            raise ContextualConfigError(out_of_range("slots", self.slots,
                                                     f"an integer <= auction_candidates={self.auction_candidates}")
                                        + " (the auction sells slots to the candidates ranking sends it)")

    def holdout(self) -> FunnelSpec:
        """The zero-relevance holdout: the same funnel without the trim and with alpha = 0."""
        return replace(self, trim_threshold=0.0, relevance_exponent=0.0)


@dataclass(frozen=True)
class CandidateLogSpec(_Spec):
    """What the serving funnel logs each day for labelling and evaluation."""

    log_rate: float = param(
        0.1, "Share of candidates logged at every funnel stage, whatever the stage. The seed logs 1% of Pinterest's "
             "traffic; this world's 20,000 contexts a day need 10% to fill a day's labelling job.",
        low=0.0, high=1.0, low_open=True)
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
    test_fraction: float = param(
        0.25, "A team's own labels: the share of their contexts held out as the test set (the synthetic world "
              "labels a test job of its own).", low=0.05, high=0.5)
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


@dataclass(frozen=True)
class FunnelCheckSpec(_Spec):
    """The funnel day's launch criteria (blocking: the day's relevance model is not registered)
    and its monitoring threshold, and the size of the trade-off sweep."""

    min_relevance_gain: float = param(
        0.0, "Blocking: the truly relevant share of production's served ads must exceed the zero-relevance "
             "holdout's by at least this, relative (0.05: +5%).", low=-1.0, high=10.0)
    max_revenue_cost: float = param(
        0.3, "Blocking: production's expected revenue per context may fall short of the holdout's by at most this "
             "share.", low=0.0, high=1.0)
    max_trim_rate_change: float = param(
        0.05, "Warning: the trim rate of each model, per surface and content type, may move by at most this "
              "(absolute) against the previous day.", low=0.0, high=1.0)
    sweep_contexts: int = param(
        2_000, "Contexts of the day served at every (alpha, tau) of the revenue / relevance sweep and in the trim "
               "rates per model.", integer=True, low=10, high=1_000_000)


@dataclass(frozen=True)
class ExperimentSpec(_Spec):
    """A/A and A/B measurements on a pool of the day's contexts."""

    experiment_pool: int = param(
        5_000, "Contexts of the day (its first) that measurements sample from, scored once by every model.",
        integer=True, low=20, high=10_000_000)
    experiment_contexts: int = param(
        500, "Contexts per arm of one measurement (the query set).", integer=True, low=10, high=1_000_000)
    aa_repeats: int = param(100, "A/A measurements of the production treatment against itself, each with fresh "
                                 "randomness, with and without the variance controls.", integer=True, low=2,
                            high=100_000)
    confidence: float = param(0.95, "Confidence level of every interval.", low=0.5, high=0.999)
    seed: int = param(0, "Seed of the draws (the world's seed).", integer=True, low=0, high=MAX_SEED)

    def __post_init__(self) -> None:
        super().__post_init__()
        if 2 * self.experiment_contexts > self.experiment_pool:
            raise ContextualConfigError(out_of_range("experiment_contexts", self.experiment_contexts,
                                                     f"an integer <= experiment_pool / 2 = {self.experiment_pool // 2}")
                                        + " (two arms of fresh contexts must fit in the pool)")


@dataclass(frozen=True)
class TrendSpec(_Spec):
    """The daily trend: a fixed query set with fixed user contexts, served every day."""

    trend_contexts: int = param(
        2_000, "Contexts of the fixed query set (drawn once; the same users and queries every day).",
        integer=True, low=10, high=1_000_000)
