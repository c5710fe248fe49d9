"""What a data-quality or model rule returns: passed or not, one line saying what was found (with
up to five examples on failure) and a few scalar numbers for metadata.

The rules themselves live by domain (:mod:`adrel_pipeline.world.rules`,
:mod:`adrel_pipeline.graph.rules`, :mod:`adrel_pipeline.evaluation.rules`); the Dagster wiring
(``adrel_pipeline.defs.shared.checks``) turns outcomes into asset check results.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

MAX_EXAMPLES = 5

Metadata = dict[str, int | float | str]


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    description: str
    metadata: Metadata = field(default_factory=dict)


def show_examples(values: Iterable) -> str:
    values = list(values)
    return f"e.g. {values[:MAX_EXAMPLES]}"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def outcome(problems: list[str], success: str, metadata: Metadata) -> CheckOutcome:
    if problems:
        return CheckOutcome(False, "; ".join(problems), metadata)
    return CheckOutcome(True, success, metadata)
