"""Which columns of the users and items tables are node features, and how they are encoded.

A data source declares its :class:`FeatureSpec` (the synthetic world's is :data:`SYNTHETIC_FEATURES`;
a directory or database declares its own, see :mod:`adrel_pipeline.sources`); the graph builder
encodes whatever it names, so nothing downstream knows which source the tables came from.

* categorical columns (strings, booleans, categoricals) become one-hots over ``vocabularies[column]``
  when declared (fixed columns whatever values occur), else over the sorted values observed;
* numeric columns become one standardised column each;
* ``cross`` = (user column, item column) names two categorical columns over one vocabulary ("the
  user's main interest is the ad's category"): their one-hots are aligned so that their product is
  the model's cross feature. None: no cross feature.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FeatureSpec:
    user_columns: tuple[str, ...] = ()
    item_columns: tuple[str, ...] = ()
    cross: tuple[str, str] | None = None
    vocabularies: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"user_columns": list(self.user_columns), "item_columns": list(self.item_columns),
                "cross": None if self.cross is None else list(self.cross),
                "vocabularies": {k: list(v) for k, v in self.vocabularies.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSpec:
        return cls(user_columns=tuple(d.get("user_columns") or ()), item_columns=tuple(d.get("item_columns") or ()),
                   cross=None if not d.get("cross") else tuple(d["cross"]),
                   vocabularies={k: tuple(v) for k, v in (d.get("vocabularies") or {}).items()})


def synthetic_features() -> FeatureSpec:
    """The synthetic world's features: age group and main interest per user, category per item, the
    cross "main interest = category", over the world's fixed vocabularies."""
    from adrel_pipeline.world.spec import AGE_GROUPS, INTERESTS

    return FeatureSpec(user_columns=("age_group", "main_interest"), item_columns=("category",),
                       cross=("main_interest", "category"),
                       vocabularies={"age_group": AGE_GROUPS, "main_interest": INTERESTS, "category": INTERESTS})
