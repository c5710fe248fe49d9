"""Rules the audience assets' checks apply: plain functions returning :class:`CheckOutcome`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import polars as pl

from adrel_pipeline.outcomes import CheckOutcome

EXAMPLES = 5


def seed_users_known(seed_list: pl.DataFrame, users: pl.DataFrame) -> CheckOutcome:
    unknown = seed_list.join(users.select("user_id"), on="user_id", how="anti")["user_id"]
    meta = {"unknown_user_ids": unknown.len(), "seed_users": seed_list.height}
    if unknown.len():
        return CheckOutcome(False, f"{unknown.len()} of {seed_list.height} seed users are not in users, "
                                   f"e.g. {unknown.head(EXAMPLES).to_list()}", meta)
    return CheckOutcome(True, f"all {seed_list.height} seed users are known users", meta)


def expansion_excludes_seeds(expansion: pl.DataFrame, seed_list: pl.DataFrame) -> CheckOutcome:
    leaked = expansion.join(seed_list.select("user_id"), on="user_id", how="semi")["user_id"]
    meta = {"seed_users_in_expansion": leaked.len(), "expansion_size": expansion.height}
    if leaked.len():
        return CheckOutcome(False, f"{leaked.len()} seed users are in the expansion, "
                                   f"e.g. {leaked.head(EXAMPLES).to_list()}", meta)
    return CheckOutcome(True, f"none of the {seed_list.height} seed users is among the {expansion.height} expanded", meta)


def every_advertiser_expanded(advertisers: Iterable[str], expanded: Iterable[str]) -> CheckOutcome:
    advertisers, expanded = set(advertisers), set(expanded)
    missing = sorted(advertisers - expanded)
    meta = {"advertisers": len(advertisers), "without_expansion": len(missing)}
    if missing:
        return CheckOutcome(False, f"{len(missing)} advertisers have no expansion, e.g. {missing[:EXAMPLES]}: "
                                   f"materialize audience_expansions for them", meta)
    return CheckOutcome(True, f"all {len(advertisers)} advertisers have an expansion", meta)


def metrics_in_unit_interval(metrics: Mapping[str, float]) -> CheckOutcome:
    bad = {k: v for k, v in metrics.items() if not (np.isnan(v) or 0.0 <= v <= 1.0)}
    if bad:
        return CheckOutcome(False, f"{len(bad)} metrics outside [0, 1], e.g. {dict(list(bad.items())[:EXAMPLES])}",
                            {"outside": len(bad)})
    return CheckOutcome(True, f"all {len(metrics)} recall and precision values are in [0, 1]", {"checked": len(metrics)})


def not_above_oracle(method: str, mean_difference: float, se: float, tolerance_se: float) -> CheckOutcome:
    """``mean_difference``: the method's mean ground-truth precision minus the oracle's, over advertisers.
    Above the oracle by more than ``tolerance_se`` standard errors means the method saw the truth."""
    meta = {"mean_difference": float(mean_difference), "se": float(se), "tolerance_se": tolerance_se}
    if np.isnan(mean_difference):
        return CheckOutcome(True, "no oracle for these advertisers (uploaded seed lists, or a team's own data): nothing to compare", meta)
    if mean_difference > tolerance_se * se:
        return CheckOutcome(False, f"{method} is above the oracle by {mean_difference:+.4f} "
                                   f"({mean_difference / max(se, 1e-12):.1f} standard errors): a leak", meta)
    return CheckOutcome(True, f"{method} - oracle = {mean_difference:+.4f} (standard error {se:.4f}): "
                              f"not above the ceiling beyond noise", meta)
