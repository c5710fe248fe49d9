"""The audience system's steps over a batch of advertisers: the offline evaluation of every
method, the production heads, and the expansions. What the Dagster assets call.

Every draw for an advertiser (its 90/10 split, random set, negatives, head initialisation) is
seeded by the spec's seed and the advertiser's id alone, so an advertiser gets the same split,
the same head and the same expansion whether it runs with the whole roster or alone.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from adrel_pipeline.audience.features import active_users, raw_features, user_rows
from adrel_pipeline.audience.methods import (
    LSHIndex,
    head_rows,
    head_seed,
    lr_scores,
    sample_weights,
    score_heads,
    top_k,
    train_heads,
)
from adrel_pipeline.audience.spec import K_MULTIPLIERS, AudienceSpec
from adrel_pipeline.evaluation.expansion import (
    draw_holdout_split,
    evaluate_advertiser,
    evaluation_rows,
    random_non_seed,
)
from adrel_pipeline.graph.features import FeatureSpec
from adrel_pipeline.world.simulation import row_positions


@dataclass
class AudienceData:
    """What every method reads, aligned on the users' rows (sorted by user_id)."""

    user_ids: np.ndarray        # (N,)
    embeddings: torch.Tensor    # (N, dim), L2-normalised
    features: np.ndarray        # (N, F) raw features, for the regression baseline
    active: np.ndarray          # (N,) bool: interacted in the window (the blog's MAUs)

    @classmethod
    def build(cls, users: pl.DataFrame, items: pl.DataFrame, interactions: pl.DataFrame,
              user_embeddings: Mapping, features: FeatureSpec | None = None) -> AudienceData:
        """``features``: the source's (default: the synthetic world's), for the regression baseline."""
        users = users.sort("user_id")
        rows = user_rows(users, user_embeddings["user_ids"].numpy())
        if len(rows) != users.height:
            raise ValueError(f"user_embeddings holds {len(rows)} users, users {users.height}: rematerialize "
                             "user_embeddings for this world")
        embeddings = torch.empty_like(user_embeddings["embeddings"])
        embeddings[torch.from_numpy(rows)] = user_embeddings["embeddings"]
        ids, x = raw_features(users, items, interactions, features)
        return cls(ids, embeddings, x, np.isin(ids, active_users(users, interactions)))

    def rows(self, user_ids) -> np.ndarray:
        return row_positions(self.user_ids, user_ids)


def advertiser_seed(seed: int, advertiser_id: str) -> int:
    """A 64-bit seed from the spec's seed and the advertiser's id: stable across runs and rosters."""
    return head_seed(seed, int(hashlib.sha256(advertiser_id.encode()).hexdigest()[:8], 16))


# The blog's random set R has |H| users. With a 3-user holdout (a 30-user seed list) precision@k is
# then 0/0 for most k; R holds at least this many users instead, its hits scaled by |H| / |R|
# (evaluation.expansion.precision_at_k): the same quantity, less noise.
MIN_RANDOM_SET = 100


@dataclass(frozen=True)
class _Split:
    seed_rows: np.ndarray
    train: np.ndarray
    holdout: np.ndarray
    random: np.ndarray
    train_weights: np.ndarray


def _split(data: AudienceData, seed: pl.DataFrame, spec: AudienceSpec, advertiser_id: str) -> _Split:
    s = advertiser_seed(spec.seed, advertiser_id)
    seed = seed.sort("user_id")
    seed_rows = data.rows(seed["user_id"])
    train, holdout = draw_holdout_split(seed_rows, spec.holdout_fraction, [s, 0])
    random = random_non_seed(np.flatnonzero(data.active), seed_rows, max(len(holdout), MIN_RANDOM_SET), [s, 1])
    weights = sample_weights(seed["impressions"].to_numpy(), seed["clicks"].to_numpy())
    return _Split(seed_rows, train, holdout, random, weights[np.searchsorted(seed_rows, train)])


def offline_evaluation(data: AudienceData, seeds: Mapping[str, pl.DataFrame], buckets: Mapping[str, int],
                       truth: Mapping[str, tuple[np.ndarray, np.ndarray]], spec: AudienceSpec,
                       log: Callable[[str], None] = lambda _: None,
                       seconds: dict[str, float] | None = None) -> pl.DataFrame:
    """The blog's offline evaluation of ``lr``, ``lsh``, ``nn`` and ``nn_unweighted`` (plus ``oracle``
    where ``truth`` has the advertiser's (affinity, true audience)) on each advertiser's 90/10 split:
    one row per (advertiser, method) with recall, precision and gt_precision averaged over
    :data:`K_MULTIPLIERS` and per multiplier (:func:`evaluation_rows`). ``seconds``, when given,
    receives each method's time over all advertisers (training and scoring)."""
    seconds = {} if seconds is None else seconds
    keys = list(seeds)
    splits = {k: _split(data, seeds[k], spec, k) for k in keys}
    pool = np.flatnonzero(data.active)
    head_seeds = [advertiser_seed(spec.seed, k) for k in keys]
    scores = {}
    for name, weighted in (("nn", True), ("nn_unweighted", False)):
        start = time.perf_counter()
        state, _ = train_heads(data.embeddings, [splits[k].train for k in keys],
                               [splits[k].train_weights if weighted else None for k in keys], pool, spec, head_seeds)
        scores[name] = score_heads(state, data.embeddings).numpy()
        seconds[name] = time.perf_counter() - start
    log(f"trained {len(keys)} heads twice (weighted, unweighted) on the 90% splits")
    start = time.perf_counter()
    lsh_index = LSHIndex(data.embeddings, spec.lsh_tables, spec.lsh_bits, spec.seed)
    lsh = {k: lsh_index.scores(splits[k].train) for k in keys}
    seconds["lsh"] = time.perf_counter() - start
    start = time.perf_counter()
    # The regression sees the same negatives as the head.
    lr = {k: lr_scores(data.features, splits[k].train, head_rows(splits[k].train, None, pool, spec, head_seeds[h])[2],
                       spec.seed) for h, k in enumerate(keys)}
    seconds["lr"] = time.perf_counter() - start
    rows = []
    for h, k in enumerate(keys):
        split = splits[k]
        methods = {"lr": lr[k], "lsh": lsh[k], "nn": scores["nn"][h], "nn_unweighted": scores["nn_unweighted"][h]}
        audience = None
        if k in truth:
            methods["oracle"], audience = truth[k]
        eligible = data.active.copy()
        eligible[split.train] = False
        result = evaluate_advertiser(methods, eligible, split.holdout, split.random, audience,
                                     len(split.seed_rows), K_MULTIPLIERS)
        rows += evaluation_rows(k, buckets[k], result)
    log(f"evaluated {len(keys)} advertisers: lr, lsh, nn, nn_unweighted" + (", oracle" if truth else ""))
    return pl.DataFrame(rows)


def split_heads(state: Mapping[str, torch.Tensor], keys: Sequence[str]) -> dict[str, dict[str, torch.Tensor]]:
    """A multi-head state dict as one single-head state dict per advertiser (heads in ``keys`` order)."""
    return {k: {name: value[h:h + 1].clone() for name, value in state.items()} for h, k in enumerate(keys)}


def stack_heads(states: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Single-head state dicts as one multi-head state dict, scored in one pass."""
    return {name: torch.cat([s[name] for s in states]) for name in states[0]}


def train_production(data: AudienceData, seeds: Mapping[str, pl.DataFrame], spec: AudienceSpec) -> dict[str, dict]:
    """The served model: each advertiser's weighted head trained on its whole seed list."""
    keys = list(seeds)
    positives, weights = [], []
    for k in keys:
        seed = seeds[k].sort("user_id")
        positives.append(data.rows(seed["user_id"]))
        weights.append(sample_weights(seed["impressions"].to_numpy(), seed["clicks"].to_numpy()))
    state, _ = train_heads(data.embeddings, positives, weights, np.flatnonzero(data.active), spec,
                           [advertiser_seed(spec.seed, k) for k in keys])
    return split_heads(state, keys)


def expand(data: AudienceData, heads: Mapping[str, Mapping[str, torch.Tensor]], seeds: Mapping[str, pl.DataFrame],
           sizes: Mapping[str, int]) -> dict[str, pl.DataFrame]:
    """Each advertiser's top ``sizes[k]`` active users outside its seed list, by its head: every
    advertiser scored over every user in one batched pass. (advertiser_id, user_id, score, rank)."""
    keys = list(heads)
    scores = score_heads(stack_heads([heads[k] for k in keys]), data.embeddings)
    exclude = np.repeat(~data.active[None, :], len(keys), axis=0)
    for h, k in enumerate(keys):
        exclude[h, data.rows(seeds[k]["user_id"])] = True
    out = {}
    for h, (k, rows) in enumerate(zip(keys, top_k(scores, exclude, [sizes[k] for k in keys]), strict=True)):
        out[k] = pl.DataFrame({"advertiser_id": [k] * len(rows), "user_id": data.user_ids[rows],
                               "score": scores[h, rows].numpy().astype(np.float64),
                               "rank": np.arange(1, len(rows) + 1, dtype=np.int64)},
                              schema={"advertiser_id": pl.Utf8, "user_id": pl.Int64, "score": pl.Float64,
                                      "rank": pl.Int64})
    return out
