"""Asset checks, evaluated inside the asset that produces the value they check.

Each asset declares its checks with :func:`specs` and ends with :func:`emit`. The rules are the
plain functions of :mod:`adrel_pipeline.validation`; this module only turns their outcomes into
Dagster check results. A failed *blocking* check fails the step before the value is handed to
the IO manager: nothing is written, the previous good value stays, downstream assets do not
run, and the failed check is recorded against the asset (and partition) in the UI.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import dagster as dg

from adrel_pipeline.outcomes import CheckOutcome


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    blocking: bool = True


def specs(asset: str, checks: Sequence[Check]) -> list[dg.AssetCheckSpec]:
    # Not partitioned (partitioned checks are a Dagster preview feature): a check's latest result
    # belongs to the asset's latest materialization, whose partition the UI links to.
    return [dg.AssetCheckSpec(c.name, asset=asset, description=c.description, blocking=c.blocking) for c in checks]


def emit(output: dg.Output | None, checks: Sequence[Check], outcomes: Mapping[str, CheckOutcome]) -> Iterator:
    """The asset's output followed by its check results, or only the results and a failure when a
    blocking check did not pass. Non-blocking checks fail with WARN severity.

    When a blocking check fails, checks that were not evaluated yet (they need a step that the
    failure skips) may be missing from ``outcomes``, and ``output`` may be None.
    """
    by_name = {c.name: c for c in checks}
    if not set(outcomes) <= set(by_name):
        raise ValueError(f"check outcomes {sorted(outcomes)} include undeclared checks; declared: {sorted(by_name)}")
    results = [
        dg.AssetCheckResult(
            check_name=name, passed=o.passed, description=o.description, metadata=dict(o.metadata),
            severity=dg.AssetCheckSeverity.ERROR if by_name[name].blocking else dg.AssetCheckSeverity.WARN,
        )
        for name, o in outcomes.items()
    ]
    failed = [name for name, o in outcomes.items() if not o.passed and by_name[name].blocking]
    if failed:
        yield from results
        raise dg.Failure(
            description="blocking check failed, nothing was written (the previous value is kept): "
            + "; ".join(f"{name}: {outcomes[name].description}" for name in failed),
            # Bad data is deterministic: retrying cannot fix it.
            allow_retries=False,
        )
    if output is None or set(outcomes) != set(by_name):
        raise ValueError(f"an output and outcomes of all checks {sorted(by_name)} are needed, got {sorted(outcomes)}")
    yield output
    yield from results
