"""The promotion policy as a pure function: which alias a newly registered version takes.

* Only the newest day may take ``champion``. A backfilled older day's model is registered (so it
  can be inspected and served by version) but leaves every alias alone: its window is stale.
* Otherwise the new model and the champion are scored on the same newest held-out pairs, and the
  new model takes ``champion`` only if its AUC beats the champion's by more than the paired
  standard error of the difference (DeLong). A tie, or a gain within noise, does not promote:
  a champion should not flip between two equally good models on noise.
* A champion that cannot run on the new graph (other feature sizes, other edge types) is not
  comparable: the new version becomes ``challenger`` and a person decides.
"""

from __future__ import annotations

from dataclasses import dataclass

CHAMPION, CHALLENGER = "champion", "challenger"
NO_ALIAS = ""


@dataclass(frozen=True)
class Comparison:
    """The new model against the champion on the same labelled pairs."""

    champion_version: str
    new_auc: float
    champion_auc: float
    se_difference: float
    pairs: str  # what was compared, for the reason
    metric: str = "test AUC"  # what new_auc and champion_auc measure, for the reason
    se_method: str = "DeLong"  # how se_difference was computed, for the reason

    @property
    def difference(self) -> float:
        return self.new_auc - self.champion_auc


@dataclass(frozen=True)
class Decision:
    alias: str  # CHAMPION, CHALLENGER, or NO_ALIAS
    reason: str


def decide(partition: str | None, newest_partition: str | None, champion_version: str | None,
           comparison: Comparison | None, incomparable: str | None = None) -> Decision:
    """The alias for a new version of day ``partition``.

    ``newest_partition``: the newest day any model of this name was materialized or registered
    for (None when unpartitioned or the first). ``champion_version``: the version holding
    ``champion`` (None: no champion yet). ``comparison``: the gate's paired comparison, or None with
    ``incomparable`` saying why the champion could not be scored.
    """
    if partition is not None and newest_partition is not None and partition < newest_partition:
        return Decision(NO_ALIAS, f"backfilled day {partition} is older than the newest day {newest_partition}: "
                                  "registered without an alias (only the newest day may take champion)")
    if champion_version is None:
        return Decision(CHAMPION, "first version of the model: no champion yet")
    if comparison is None:
        return Decision(CHALLENGER, f"champion v{champion_version} is not comparable ({incomparable}); "
                                    "promote by hand if this version should serve")
    c = comparison
    versus = (f"{c.metric} {c.new_auc:.4f} vs champion v{c.champion_version}'s {c.champion_auc:.4f} on {c.pairs}: "
              f"difference {c.difference:+.4f}, paired standard error ({c.se_method}) {c.se_difference:.4f}")
    if c.difference > c.se_difference:
        return Decision(CHAMPION, f"{versus}; better by more than one standard error")
    return Decision(CHALLENGER, f"{versus}; not better by more than one standard error (a tie does not promote)")
