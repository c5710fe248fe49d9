"""Rules behind the model checks: better than chance, not above the Bayes-optimal ceiling (or, on
real data without the generator's truth, not suspiciously far above every reference), and no
clearly worse than the serving champion."""

from __future__ import annotations

import math

from adrel_pipeline.outcomes import CheckOutcome, Metadata


def _auc(value: float) -> str:
    return "NaN" if math.isnan(value) else f"{value:.4f}"


def auc_above_chance(test_auc: float, minimum: float) -> CheckOutcome:
    """A model that is not clearly better than chance must not be promoted (NaN fails too)."""
    meta: Metadata = {"test_auc": float(test_auc), "min_test_auc": float(minimum)}
    if not test_auc >= minimum:
        return CheckOutcome(False, f"test AUC {_auc(test_auc)} is below the minimum {minimum:.4f}: "
                                   "the model is not clearly better than chance", meta)
    return CheckOutcome(True, f"test AUC {_auc(test_auc)} >= {minimum:.4f}", meta)


def auc_within_ceiling(test_auc: float, oracle_auc: float, se_difference: float, max_se: float) -> CheckOutcome:
    """No honest model beats the Bayes-optimal scorer on the same test pairs by more than noise:
    ``max_se`` paired standard errors (DeLong) of the difference between the two AUCs."""
    tolerance = max_se * se_difference
    meta: Metadata = {"test_auc": float(test_auc), "oracle_auc": float(oracle_auc), "tolerance": float(tolerance),
                      "se_difference": float(se_difference), "max_se": float(max_se),
                      "excess": float(test_auc - oracle_auc)}
    if not test_auc <= oracle_auc + tolerance:
        return CheckOutcome(False, f"test AUC {_auc(test_auc)} exceeds the Bayes-optimal AUC {_auc(oracle_auc)} by "
                                   f"more than {max_se:g} paired standard errors ({tolerance:.4f}): scoring above the "
                                   "Bayes-optimal ceiling means test information leaked into training "
                                   "(or the oracle has a bug)", meta)
    return CheckOutcome(True, f"test AUC {_auc(test_auc)} <= oracle {_auc(oracle_auc)} + {max_se:g} SE "
                              f"({tolerance:.4f})", meta)


def auc_without_leak(test_auc: float, val_auc: float, baseline: str, baseline_auc: float,
                     margin_over_baseline: float, margin_over_val: float) -> CheckOutcome:
    """The leak check's non-oracle form, for data without the generator's truth (no ceiling to
    compare with): a model far above the best simple baseline on the same pairs *and* far above its
    own validation AUC is flagged. Each alone happens honestly (a model that learns what counting
    cannot; a noisy validation AUC on few positives), both at once is what test information that
    leaked into training looks like. It cannot see a leak that lifts validation too."""
    meta: Metadata = {"test_auc": float(test_auc), "val_auc": float(val_auc), "baseline": baseline,
                      "baseline_auc": float(baseline_auc), "margin_over_baseline": float(margin_over_baseline),
                      "margin_over_val": float(margin_over_val), "excess_over_baseline": float(test_auc - baseline_auc),
                      "excess_over_val": float(test_auc - val_auc)}
    shown = (f"test AUC {_auc(test_auc)} vs best baseline ({baseline}) {_auc(baseline_auc)} + {margin_over_baseline:.4f} "
             f"and validation AUC {_auc(val_auc)} + {margin_over_val:.4f}")
    # Not (within either margin): NaN fails, as in the other rules.
    if not (test_auc <= baseline_auc + margin_over_baseline or test_auc <= val_auc + margin_over_val):
        return CheckOutcome(False, f"no oracle (the data has no generator truth), leak check against the references: "
                                   f"{shown}: far above every baseline and its own validation AUC means test "
                                   "information leaked into training", meta)
    return CheckOutcome(True, f"no oracle (the data has no generator truth), leak check against the references: "
                              f"{shown}: not above both", meta)


def auc_vs_champion(test_auc: float, champion_auc: float | None, margin: float) -> CheckOutcome:
    """A challenger clearly worse than the serving champion deserves a look (a WARN, not a block)."""
    if champion_auc is None:
        return CheckOutcome(True, "no champion to compare with: nothing to beat",
                            {"test_auc": float(test_auc), "margin": float(margin)})
    meta: Metadata = {"test_auc": float(test_auc), "champion_test_auc": float(champion_auc), "margin": float(margin),
                      "difference": float(test_auc - champion_auc)}
    if not test_auc >= champion_auc - margin:
        return CheckOutcome(False, f"test AUC {_auc(test_auc)} trails the champion's {_auc(champion_auc)} on the "
                                   f"same test split by more than {margin:.4f}", meta)
    return CheckOutcome(True, f"test AUC {_auc(test_auc)} vs champion {_auc(champion_auc)} (margin {margin:.4f})",
                        meta)


def auc_beats_baseline(test_auc: float, baseline: str, baseline_auc: float, se_difference: float) -> CheckOutcome:
    """A trained model that loses to counting (a simple baseline on the same pairs) by more than the
    paired standard error has not learned what the data allows: a WARN, for a person to look at."""
    meta: Metadata = {"test_auc": float(test_auc), "baseline_auc": float(baseline_auc), "baseline": baseline,
                      "se_difference": float(se_difference), "difference": float(test_auc - baseline_auc)}
    if not test_auc >= baseline_auc - se_difference:
        return CheckOutcome(False, f"test AUC {_auc(test_auc)} is below the {baseline} baseline's "
                                   f"{_auc(baseline_auc)} on the same pairs by more than the paired standard error "
                                   f"{se_difference:.4f}", meta)
    return CheckOutcome(True, f"test AUC {_auc(test_auc)} vs best baseline ({baseline}) {_auc(baseline_auc)}, "
                              f"paired SE {se_difference:.4f}", meta)
