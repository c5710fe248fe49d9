"""The synthetic world's parameters, its vocabularies, and its identity (fingerprint).

A deployment names its world in a YAML file (``$ADREL_WORLD``, the fields of :class:`WorldSpec`);
unset means the built-in default world. Every stored value carries the world's fingerprint, a
hash of the full spec, so values of different worlds never mix silently.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from adrel_pipeline.params import check_ranges, out_of_range, param

AGE_GROUPS: tuple[str, ...] = ("18-25", "26-34", "35-43", "44+")
AGE_PROBS: tuple[float, ...] = (0.5, 0.3, 0.1, 0.1)
INTERESTS: tuple[str, ...] = ("Fashion", "Food", "Exercise", "Home", "Animals", "Sports", "Movies")
ACTIVITY_BETA: tuple[float, float] = (2.0, 7.0)

# Below this many items a category is likely to come out empty (7 categories), and a world
# that small says nothing about ad relevance anyway.
MIN_ITEMS = 100
MAX_SEED = 2**63 - 1
WORLD_ENV = "ADREL_WORLD"
# Context ids are day ordinal x this + index: a day's contexts never share an id with another day's.
MAX_CONTEXTS_PER_DAY = 10_000_000
# num_interactions is a weekly volume: the default 7-day training window holds exactly that many.
DAYS_PER_VOLUME = 7


class WorldConfigError(ValueError):
    """A world parameter is outside its allowed range."""


@dataclass(frozen=True)
class WorldSpec:
    """All parameters of a synthetic world. Defaults reproduce the seed notebook's world."""

    seed: int = param(0, "Seed of every random draw (world, split, model).", integer=True, low=0, high=MAX_SEED)
    num_users: int = param(10_000, "Number of users.", integer=True, low=1)
    num_items: int = param(50_000, "Number of items, ads and organic pins.", integer=True, low=MIN_ITEMS)
    ad_fraction: float = param(0.1, "Share of items that are ads.", low=0.0, high=1.0, low_open=True, high_open=True)
    num_interactions: int = param(
        200_000, "Interaction events per 7 consecutive days, the default training window (>= num_users).",
        integer=True, low=1)
    main_interest_prob: float = param(
        0.4 / 1.4, "Probability that an interaction is forced to the user's main interest.", low=0.0, high=1.0)
    # The latent taste: shapes organic interactions only (never ads, never a raw feature).
    taste_dim: int = param(8, "Dimension of the users' latent taste (unit vectors).", integer=True, low=1, high=64)
    num_styles: int = param(32, "Latent styles of organic pins, each with a prototype taste.",
                            integer=True, low=1, high=10_000)
    taste_strength: float = param(
        4.0, "How strongly taste steers organic picks: weight exp(taste_strength * taste . style prototype) "
             "(0: taste plays no part).", low=0.0, high=50.0)
    popularity_exponent: float = param(
        1.0, "Zipf exponent of organic-pin popularity within each (category, style) cell (0: all equal).",
        low=0.0, high=5.0)
    # Advertisers and their seed lists: the audience-expansion truth.
    num_advertisers: int = param(40, "Advertisers, each with a true audience and a seed list.",
                                 integer=True, low=1, high=100_000)
    smallest_seed_fraction: float = param(
        0.003, "Smallest seed-list bucket, as a share of num_users (at least 10 users).",
        low=0.0, high=1.0, low_open=True, high_open=True)
    largest_seed_fraction: float = param(
        0.3, "Largest seed-list bucket, as a share of num_users (at most half of them).",
        low=0.0, high=1.0, low_open=True, high_open=True)
    num_seed_buckets: int = param(
        5, "Seed-list size buckets, geometrically spaced from the smallest to the largest.",
        integer=True, low=1, high=50)
    # Contextual traffic: the contexts (home feeds, searches, closeups) ads are retrieved for each day.
    contexts_per_day: int = param(20_000, "Contexts (home feeds, searches, closeups) that request ads each day.",
                                  integer=True, low=1, high=MAX_CONTEXTS_PER_DAY)
    candidates_per_context: int = param(100, "Ads retrieved per context (before de-duplication).",
                                        integer=True, low=1, high=10_000)

    def __post_init__(self) -> None:
        check_ranges(self, WorldConfigError)
        if not 1 <= self.num_ads <= self.num_items - 1:
            raise WorldConfigError(
                f"ad_fraction={self.ad_fraction!r} gives {self.num_ads} ads out of "
                f"num_items={self.num_items}: round(ad_fraction * num_items) must be between 1 "
                f"and num_items - 1 so that the world has both ads and organic items"
            )
        if self.num_interactions < self.num_users:
            raise WorldConfigError(out_of_range("num_interactions", self.num_interactions,
                                                f"an integer >= num_users={self.num_users}")
                                   + " (at least one interaction per user)")
        if self.smallest_seed_fraction > self.largest_seed_fraction:
            raise WorldConfigError(
                f"smallest_seed_fraction={self.smallest_seed_fraction!r} is above "
                f"largest_seed_fraction={self.largest_seed_fraction!r}: the smallest seed-list bucket "
                f"must be at most the largest")

    @property
    def num_ads(self) -> int:
        return round(self.ad_fraction * self.num_items)

    @property
    def fingerprint(self) -> str:
        """A hash of the full spec: the world's identity, recorded with every stored value."""
        canonical = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def rng(self, stream: int, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, stream, *key])

    def interactions_on(self, day: dt.date) -> int:
        """Events on ``day``: ``num_interactions / 7`` spread so that every run of 7 consecutive
        days holds exactly ``num_interactions`` (days differ by at most one event)."""
        n, o = self.num_interactions, day.toordinal()
        return (o + 1) * n // DAYS_PER_VOLUME - o * n // DAYS_PER_VOLUME

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_file(cls, path: str | Path) -> WorldSpec:
        """The world of a YAML file holding (some of) the spec's fields; the rest keep their defaults."""
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise WorldConfigError(f"world file {path}: cannot be read as YAML ({err})") from err
        if not isinstance(data, dict):
            raise WorldConfigError(f"world file {path}: must be a mapping of world fields, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise WorldConfigError(f"world file {path}: unknown fields {unknown}; allowed: {sorted(known)}")
        try:
            return cls(**data)
        except WorldConfigError as err:
            raise WorldConfigError(f"world file {path}: {err}") from err


def deployment_world(environ: dict[str, str] | None = None) -> WorldSpec:
    """The deployment's world: the YAML file named by ``$ADREL_WORLD``, else the default world."""
    path = (os.environ if environ is None else environ).get(WORLD_ENV, "").strip()
    return WorldSpec.from_file(path) if path else WorldSpec()
