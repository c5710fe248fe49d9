"""The rules behind the contextual group's asset checks, as plain functions (no Dagster): each
returns a :class:`~adrel_pipeline.outcomes.CheckOutcome`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from adrel_pipeline.contextual.labels import GRADES
from adrel_pipeline.outcomes import CheckOutcome, outcome, show_examples


def stages_known(log: pl.DataFrame, stages: Sequence[str]) -> CheckOutcome:
    """Every logged candidate names the stage that dropped it from ``stages``, or none (served),
    and the served flag agrees: a candidate with an unknown stage would be trained and tested in
    the wrong stage's set."""
    dropped = log["dropped_at"]
    unknown = dropped.filter(dropped.is_not_null() & ~dropped.is_in(pl.Series(list(stages)).implode()))
    mismatched = int((log["served"] != dropped.is_null()).sum())
    counts = {f"logged_at/{s}": int((dropped == s).sum()) for s in stages} | {"served": int(dropped.is_null().sum())}
    problems = []
    if unknown.len():
        problems.append(f"{unknown.len()} candidates dropped at unknown stages "
                        f"{show_examples(unknown.unique().sort())} (stages: {list(stages)})")
    if mismatched:
        problems.append(f"{mismatched} candidates whose served flag disagrees with dropped_at")
    return outcome(problems, f"{log.height} logged candidates, each dropped at one of {list(stages)} or served", counts)


def labels_on_scale(labels: pl.DataFrame) -> CheckOutcome:
    """Every rating is on the 5-point scale and every row's label is its raters' (lower) median,
    whatever the size of a row's panel."""
    ratings = labels["ratings"].cast(pl.List(pl.Int64))
    off = int(((ratings.list.min() < GRADES[0]) | (ratings.list.max() > GRADES[-1])).sum())
    # Exploded and sorted as a frame: polars' per-row list.sort is ~40x slower at 10^5 rows.
    grades = (pl.DataFrame({"row": pl.int_range(labels.height, eager=True), "r": ratings}).explode("r")
              .sort("row", "r").group_by("row", maintain_order=True).agg(pl.col("r").get((pl.len() - 1) // 2)))
    medians = pl.Series(np.full(labels.height, -1, dtype=np.int64))
    medians.scatter(grades["row"], grades["r"].fill_null(-1))
    wrong = int((medians != labels["label"].cast(pl.Int64)).sum())
    problems = []
    if off:
        problems.append(f"{off} rows with a rating outside {GRADES[0]}..{GRADES[-1]}")
    if wrong:
        problems.append(f"{wrong} rows whose label is not their raters' median")
    return outcome(problems, f"{labels.height} rows, every rating on the 5-point scale, labels the raters' medians",
                   {"rows": labels.height, "off_scale_rows": off, "wrong_label_rows": wrong})


def disagreement_within(rate: float, limit: float) -> CheckOutcome:
    """The row-level disagreement rate is at most ``limit`` (the seed's production level: 10%)."""
    meta = {"disagreement_rate": rate, "limit": limit}
    if not rate <= limit:
        return CheckOutcome(False, f"disagreement rate {rate:.3f} is above {limit:g}: raters disagree by more than "
                                   "one point on too many rows (guidelines or rater quality)", meta)
    return CheckOutcome(True, f"disagreement rate {rate:.3f} <= {limit:g}", meta)


def ece_within(eces: Mapping[str, float], limit: float) -> CheckOutcome:
    """The ECE of every segment (content type) is at most ``limit``."""
    over = {k: v for k, v in eces.items() if not v <= limit}
    meta = {f"ece/{k}": v for k, v in eces.items()} | {"limit": limit}
    if over:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(over.items()))
        return CheckOutcome(False, f"ECE above {limit:g} on {shown}: the model's scores are not probabilities there", meta)
    worst = max(eces, key=eces.get)
    return CheckOutcome(True, f"ECE <= {limit:g} on every content type (worst: {worst} {eces[worst]:.4f})", meta)


def brier_not_below_oracle(model: float, oracle: float, se: float, tolerance_se: float) -> CheckOutcome:
    """The model's Brier score is not below the oracle's (the labels' true probabilities) by more
    than ``tolerance_se`` paired standard errors: beating the truth means it saw the labels."""
    meta = {"brier": model, "oracle_brier": oracle, "se_difference": se}
    if model < oracle - tolerance_se * se:
        return CheckOutcome(False, f"Brier {model:.4f} is below the oracle's {oracle:.4f} by more than "
                                   f"{tolerance_se:g} paired SE ({se:.4f}): leakage", meta)
    return CheckOutcome(True, f"Brier {model:.4f} vs the oracle's {oracle:.4f} (paired SE {se:.4f})", meta)


def drift_within(values: Mapping[str, float], limit: float, what: str) -> CheckOutcome:
    """Every drift measure (PSI, coverage drop) against the previous day is at most ``limit``."""
    finite = {k: v for k, v in values.items() if np.isfinite(v)}
    if not finite:
        return CheckOutcome(True, f"no previous day to compare {what} with", {"compared": 0})
    over = {k: v for k, v in finite.items() if v > limit}
    worst = max(finite, key=finite.get)
    meta = {"compared": len(finite), "worst": finite[worst], "limit": limit, "over_limit": len(over)}
    if over:
        shown = show_examples(f"{k} {v:.3f}" for k, v in sorted(over.items(), key=lambda kv: -kv[1]))
        return CheckOutcome(False, f"{len(over)} {what} above {limit:g} against the previous day, {shown}", meta)
    return CheckOutcome(True, f"{len(finite)} {what} within {limit:g} of the previous day (worst {worst} "
                              f"{finite[worst]:.3f})", meta)


def auction_consistent(frame: pl.DataFrame, slots: int, auction_candidates: int, reserve: float,
                       trim_threshold: float | None) -> CheckOutcome:
    """The funnel's bookkeeping holds on every context: at most ``auction_candidates`` entrants and
    ``slots`` winners, slots numbered 0.. in order of the winners' scores, every price per click
    between the reserve and the winner's bid, and (with a relevance model) the trim dropping
    exactly the candidates below ``trim_threshold``."""
    tol = 1e-9
    stage = pl.col("dropped_at")
    per_context = frame.group_by("context_id").agg(
        (stage.is_null() | (stage == "auction")).sum().alias("entrants"),
        stage.is_null().sum().alias("winners"),
        pl.col("slot").drop_nulls().sort().alias("slots"),
        pl.col("rank_score").filter(stage.is_null()).sort_by(pl.col("slot").filter(stage.is_null())).alias("by_slot"))
    too_many = per_context.filter((pl.col("entrants") > auction_candidates) | (pl.col("winners") > slots))
    misnumbered = per_context.filter(pl.col("slots") != pl.int_ranges(0, pl.col("winners")).cast(pl.List(pl.Int16)))
    disordered = per_context.filter(pl.col("by_slot").list.diff(null_behavior="drop").list.max() > tol)
    winners = frame.filter(stage.is_null())
    mispriced = winners.filter((pl.col("price") < reserve - tol) | (pl.col("price") > pl.col("bid") + tol))
    problems = [f"{bad.height} contexts {what}, {show_examples(bad['context_id'])}" for bad, what in (
        (too_many, f"with more than {auction_candidates} auction entrants or {slots} winners"),
        (misnumbered, "whose slots are not 0..k-1"),
        (disordered, "whose slots are not in order of score")) if bad.height]
    if mispriced.height:
        problems.append(f"{mispriced.height} winners paying outside [reserve {reserve:g}, their bid], "
                        f"{show_examples(mispriced.select('context_id', 'ad_id', 'bid', 'price').rows())}")
    mistrimmed = 0
    if trim_threshold is not None:
        wrong = frame.filter((stage == "trim").fill_null(False) != (pl.col("relevance") < trim_threshold))
        mistrimmed = wrong.height
        if mistrimmed:
            problems.append(f"{mistrimmed} candidates trimmed against the threshold {trim_threshold:g}, "
                            f"{show_examples(wrong.select('context_id', 'ad_id', 'relevance', 'dropped_at').rows())}")
    return outcome(problems, f"{per_context.height} contexts: entrants, slots, prices and the trim as configured",
                   {"contexts": per_context.height, "winners": winners.height, "mispriced": mispriced.height,
                    "mistrimmed": mistrimmed})


def relevance_gain_at_least(production: float, holdout: float, minimum: float) -> CheckOutcome:
    """Production serves a truly relevant share above the zero-relevance holdout's by at least
    ``minimum`` (relative): a relevance model that does not raise served relevance is no launch."""
    gain = production / holdout - 1.0 if holdout else float("nan")
    meta = {"production": production, "holdout": holdout, "gain": gain, "minimum": minimum}
    if not gain >= minimum:
        return CheckOutcome(False, f"served ads are {production:.3f} truly relevant against the holdout's "
                                   f"{holdout:.3f} ({gain:+.1%}): below the minimum gain {minimum:+.1%}", meta)
    return CheckOutcome(True, f"served relevance {production:.3f} vs the holdout's {holdout:.3f} ({gain:+.1%})", meta)


def revenue_cost_within(production: float, holdout: float, maximum: float) -> CheckOutcome:
    """Production's expected revenue falls short of the holdout's by at most ``maximum`` (a share)."""
    cost = 1.0 - production / holdout if holdout else float("nan")
    meta = {"production": production, "holdout": holdout, "cost": cost, "maximum": maximum}
    if not cost <= maximum:
        return CheckOutcome(False, f"expected revenue per context {production:.4f} against the holdout's {holdout:.4f}: "
                                   f"relevance costs {cost:.1%}, more than {maximum:.0%}", meta)
    return CheckOutcome(True, f"relevance costs {cost:.1%} of the holdout's revenue (at most {maximum:.0%})", meta)
