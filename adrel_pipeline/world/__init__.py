"""The synthetic ad platform: its parameters (:mod:`.spec`), its generative process
(:mod:`.simulation`), its ground truth (:mod:`.oracle`) and the rules its tables obey (:mod:`.rules`).
numpy and polars only: the Dagster code location imports this package."""

from adrel_pipeline.world.oracle import interaction_probability
from adrel_pipeline.world.simulation import (
    INTERACTION_SCHEMA,
    generate_day,
    generate_interactions,
    generate_items,
    generate_users,
    window,
)
from adrel_pipeline.world.spec import AGE_GROUPS, AGE_PROBS, INTERESTS, WorldConfigError, WorldSpec, deployment_world

__all__ = ["AGE_GROUPS", "AGE_PROBS", "INTERACTION_SCHEMA", "INTERESTS", "WorldConfigError", "WorldSpec", "deployment_world",
           "generate_day", "generate_interactions", "generate_items", "generate_users", "interaction_probability",
           "window"]
