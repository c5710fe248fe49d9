"""The synthetic ad platform: its parameters (:mod:`.spec`), its generative process
(:mod:`.simulation`), its ground truth (:mod:`.oracle`), its advertisers and their audiences
(:mod:`.advertisers`) and the rules its tables obey (:mod:`.rules`).
numpy and polars only: the Dagster code location imports this package."""

from adrel_pipeline.world.advertisers import (
    ADVERTISER_KINDS,
    MIN_SEED_USERS,
    SEED_LIST_SCHEMA,
    advertiser_ids,
    audience_affinity,
    generate_advertisers,
    generate_seed_list,
    seed_bucket_sizes,
    true_audience,
)
from adrel_pipeline.world.oracle import interaction_probability
from adrel_pipeline.world.simulation import (
    INTERACTION_SCHEMA,
    generate_day,
    generate_interactions,
    generate_items,
    generate_users,
    style_prototypes,
    user_taste,
    window,
)
from adrel_pipeline.world.spec import AGE_GROUPS, AGE_PROBS, INTERESTS, WorldConfigError, WorldSpec, deployment_world

__all__ = ["ADVERTISER_KINDS", "AGE_GROUPS", "AGE_PROBS", "INTERACTION_SCHEMA", "INTERESTS", "MIN_SEED_USERS",
           "SEED_LIST_SCHEMA", "WorldConfigError", "WorldSpec", "advertiser_ids", "audience_affinity",
           "deployment_world", "generate_advertisers", "generate_day", "generate_interactions", "generate_items",
           "generate_seed_list", "generate_users", "interaction_probability", "seed_bucket_sizes",
           "style_prototypes", "true_audience", "user_taste", "window"]
