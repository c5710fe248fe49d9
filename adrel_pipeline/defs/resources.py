"""Dagster resources: the synthetic world's parameters."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from adrel_pipeline.world import WorldSpec

_DEFAULT = WorldSpec()


class WorldResource(dg.ConfigurableResource):
    """Parameters of the synthetic ad platform; set with ``resources.world.config`` in run config."""

    seed: int = Field(default=_DEFAULT.seed, description="Seed of every random draw (world, split, model).")
    num_users: int = Field(default=_DEFAULT.num_users, description="Number of users (>= 1).")
    num_items: int = Field(default=_DEFAULT.num_items, description="Number of items, ads and organic pins (>= 100).")
    ad_fraction: float = Field(default=_DEFAULT.ad_fraction, description="Share of items that are ads, in (0, 1).")
    num_interactions: int = Field(
        default=_DEFAULT.num_interactions, description="Interaction events to draw (>= num_users)."
    )
    main_interest_prob: float = Field(
        default=_DEFAULT.main_interest_prob,
        description="Probability that an interaction is forced to the user's main interest, in [0, 1].",
    )

    def spec(self) -> WorldSpec:
        """The validated world; raises ``WorldConfigError`` naming the bad field and its range."""
        return WorldSpec(
            seed=self.seed, num_users=self.num_users, num_items=self.num_items, ad_fraction=self.ad_fraction,
            num_interactions=self.num_interactions, main_interest_prob=self.main_interest_prob,
        )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Resources initialise before any step runs: a bad world fails the run before anything is written.
        self.spec()
