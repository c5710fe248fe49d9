"""Asset checks, evaluated inside the asset that produces the value they check.

Each asset declares its checks with :func:`specs` and ends with :func:`emit` (or, for an asset
that materializes a range of days in one run, :func:`emit_by_partition`). The rules are the plain
functions of the ``rules`` modules; this module only turns their outcomes into Dagster check
results. A failed *blocking* check fails the step before the value is handed to the IO manager:
nothing is written, the previous good value stays, downstream assets do not run, and the failed
check is recorded against the asset and partition in the UI.

The checks of a partitioned asset are partitioned too (Dagster 1.13's partitioned
``AssetCheckSpec``, a preview feature): each day keeps its own result, so a day that failed stays
FAILED after other days pass, instead of being hidden by the latest result of the asset.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import dagster as dg

from adrel_pipeline.outcomes import CheckOutcome


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    blocking: bool = True


@contextmanager
def _preview_api() -> Iterator[None]:
    """``AssetCheckSpec(partitions_def=...)`` is a Dagster 1.13 preview feature: without this it
    emits a PreviewWarning for every check on every load of the code location."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=dg.PreviewWarning)
        yield


def specs(asset: str, checks: Sequence[Check],
          partitions_def: dg.PartitionsDefinition | None = None) -> list[dg.AssetCheckSpec]:
    """The checks of ``asset``; ``partitions_def`` must be the asset's own (None if it has none):
    each partition then has its own check results."""
    with _preview_api():
        return [dg.AssetCheckSpec(c.name, asset=asset, description=c.description, blocking=c.blocking,
                                  partitions_def=partitions_def) for c in checks]


def _severity(check: Check) -> dg.AssetCheckSeverity:
    return dg.AssetCheckSeverity.ERROR if check.blocking else dg.AssetCheckSeverity.WARN


def _declared(checks: Sequence[Check], outcomes: Mapping[str, CheckOutcome]) -> dict[str, Check]:
    by_name = {c.name: c for c in checks}
    if not set(outcomes) <= set(by_name):
        raise ValueError(f"check outcomes {sorted(outcomes)} include undeclared checks; declared: {sorted(by_name)}")
    return by_name


def _failure(failed: Sequence[str]) -> dg.Failure:
    return dg.Failure(
        description="blocking check failed, nothing was written (the previous value is kept): " + "; ".join(failed),
        # Bad data is deterministic: retrying cannot fix it.
        allow_retries=False,
    )


def emit(output: dg.Output | None, checks: Sequence[Check], outcomes: Mapping[str, CheckOutcome]) -> Iterator:
    """The asset's output followed by its check results, or only the results and a failure when a
    blocking check did not pass. Non-blocking checks fail with WARN severity.

    In a run of one partition, Dagster records each result against that partition.

    When a blocking check fails, checks that were not evaluated yet (they need a step that the
    failure skips) may be missing from ``outcomes``, and ``output`` may be None.
    """
    by_name = _declared(checks, outcomes)
    results = [
        dg.AssetCheckResult(check_name=name, passed=o.passed, description=o.description, metadata=dict(o.metadata),
                            severity=_severity(by_name[name]))
        for name, o in outcomes.items()
    ]
    failed = [name for name, o in outcomes.items() if not o.passed and by_name[name].blocking]
    if failed:
        yield from results
        raise _failure([f"{name}: {outcomes[name].description}" for name in failed])
    if output is None or set(outcomes) != set(by_name):
        raise ValueError(f"an output and outcomes of all checks {sorted(by_name)} are needed, got {sorted(outcomes)}")
    yield output
    yield from results


def emit_by_partition(context: dg.AssetExecutionContext, output: dg.Output, checks: Sequence[Check],
                      outcomes: Mapping[str, Mapping[str, CheckOutcome]]) -> Iterator:
    """:func:`emit` for an asset that materializes several partitions in one run (a single-run
    backfill): ``outcomes`` holds every check's outcome for each of the run's partitions, and each
    becomes a result of its own partition. A bad day in a backfill is then FAILED on that day only,
    and stays so when the other days pass.

    A failed blocking check on any day fails the whole run (the days are written together, by one
    output): every day's results are recorded, then nothing is written.
    """
    if set(outcomes) != set(context.partition_keys):
        raise ValueError(f"outcomes for partitions {sorted(outcomes)} do not match the run's "
                         f"{list(context.partition_keys)}")
    by_name: dict[str, Check] = {}
    for day_outcomes in outcomes.values():
        by_name = _declared(checks, day_outcomes)
        if set(day_outcomes) != set(by_name):
            raise ValueError(f"outcomes of all checks {sorted(by_name)} are needed for each partition, "
                             f"got {sorted(day_outcomes)}")
    failed = [f"{key}: {name}: {o.description}" for key, day_outcomes in outcomes.items()
              for name, o in day_outcomes.items() if not o.passed and by_name[name].blocking]
    if not failed:
        yield output
    # One output per check, as an AssetCheckResult would yield (a step must yield all its outputs);
    # the results themselves are evaluations, which name their partition.
    selected = context.selected_asset_check_keys
    for check in checks:
        key = dg.AssetCheckKey(context.asset_key, check.name)
        if key in selected:
            yield dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(key))
    for partition, day_outcomes in outcomes.items():
        # What Dagster records for an AssetCheckResult: the partition's latest materialization (this
        # run's on success, the kept one on failure), so the UI shows the result as current.
        target = _latest_materialization(context, partition)
        for name, o in day_outcomes.items():
            yield dg.AssetCheckEvaluation(
                asset_key=context.asset_key, check_name=name, passed=o.passed, description=o.description,
                metadata=dict(o.metadata), severity=_severity(by_name[name]), blocking=by_name[name].blocking,
                partition=partition, target_materialization_data=target,
            )
    if failed:
        raise _failure(failed)


def _latest_materialization(context: dg.AssetExecutionContext, partition: str):
    from dagster._core.definitions.asset_checks.asset_check_evaluation import (
        AssetCheckEvaluationTargetMaterializationData,
    )

    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=context.asset_key, asset_partitions=[partition]), limit=1).records
    if not records:
        return None
    return AssetCheckEvaluationTargetMaterializationData(
        run_id=records[0].run_id, storage_id=records[0].storage_id, timestamp=records[0].timestamp)
