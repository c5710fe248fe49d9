"""The three audience-expansion methods of the blog, each scoring every user for an advertiser.

* **Regression-based** (:func:`lr_scores`): a logistic regression per advertiser on raw features,
  trained on all of its positives.
* **Similarity-based** (:class:`LSHIndex`): random-hyperplane LSH on the user embeddings; a user
  scores by how much denser the seed list is in its buckets than the population (deWet & Ou,
  KDD'19; Ma et al. 2016).
* **Combined NN** (:class:`MultiHeadMLP`, :func:`train_heads`, :func:`score_heads`): one MLP head
  per advertiser on the normalised embeddings, all heads trained together and scored in one pass,
  with the blog's engagement sample weights (:func:`sample_weights`).

Rows are positions in the user table (the embeddings' rows); every method returns scores over
all of them, higher = more like the seed list.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from adrel_pipeline.audience.embeddings import flush_denormal
from adrel_pipeline.audience.spec import AudienceSpec

# LSH: pseudo-users at the seed list's base rate added to every bucket (see LSHIndex.scores).
LSH_PRIOR_USERS = 10.0
# CTR is upscaled by 10^6 before its log (the blog): 1 click per million impressions -> log 1 = 0.
CTR_SCALE = 1e6
# Heads whose row counts differ by at most this factor train in one padded batch.
GROUP_RATIO = 1.5


# ---------------------------------------------------------------------------- sample weights

def _log_above_one(x: np.ndarray) -> np.ndarray:
    """``log(x)`` for ``x > 1``, 0 below: the blog logs the metrics greater than 1. What is still at
    most 1 (no impressions; CTR below one in a million, zero clicks included) would have a log
    <= 0, or -inf at 0: it takes the floor, log 1 = 0, instead."""
    return np.log(np.maximum(x, 1.0))


def _min_max(x: np.ndarray) -> np.ndarray:
    low, high = x.min(), x.max()
    return np.ones_like(x) if high <= low else (x - low) / (high - low)


def sample_weights(impressions, clicks) -> np.ndarray:
    """The blog's engagement weights of seed users, in [0, 1].

    Metrics: impressions and CTR (clicks / impressions, 0 without impressions). Impressions > 1 are
    logged; CTR (< 1) is multiplied by 10^6, then logged (:func:`_log_above_one` guards log 0).
    Each metric is min-max scaled to [0, 1] over the seed list (a constant metric: all 1), and a
    user's weight is the mean over the metrics.

    :func:`train_heads` rescales a head's weights to mean 1, so weighting moves emphasis between
    seed users without changing the positives' total weight against the negatives.
    """
    impressions = np.asarray(impressions, dtype=np.float64)
    clicks = np.asarray(clicks, dtype=np.float64)
    if impressions.shape != clicks.shape or impressions.ndim != 1:
        raise ValueError(f"impressions {impressions.shape} and clicks {clicks.shape} must be 1-d of one length")
    if len(impressions) == 0:
        return np.ones(0)
    ctr = np.divide(clicks, impressions, out=np.zeros_like(impressions), where=impressions > 0)
    metrics = [_log_above_one(impressions), _log_above_one(ctr * CTR_SCALE)]
    return np.mean([_min_max(m) for m in metrics], axis=0)


# ---------------------------------------------------------------------------- training rows

def _rng(seed) -> np.random.Generator:
    return np.random.default_rng(seed)


def head_seed(seed: int, index: int) -> int:
    """A head's seed from the run's ``seed`` and the advertiser's ``index`` (a 32-bit hash, so any
    spec seed works): give a head the same one in every training for the same advertiser."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def sample_negatives(pool: np.ndarray, exclude: np.ndarray, count: int, seed) -> np.ndarray:
    """``count`` rows drawn without replacement from ``pool`` minus ``exclude`` (all of them if fewer), sorted."""
    candidates = np.setdiff1d(pool, exclude)
    count = min(count, len(candidates))
    return np.sort(_rng(seed).choice(candidates, size=count, replace=False))


def negative_count(num_positives: int, spec: AudienceSpec) -> int:
    """Negatives for a head of ``num_positives``: ``negatives_per_positive`` each, at least ``min_negatives``."""
    return max(spec.min_negatives, math.ceil(spec.negatives_per_positive * num_positives))


def head_rows(positives: np.ndarray, weights: np.ndarray | None, pool: np.ndarray, spec: AudienceSpec,
              head_seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One head's training data: ``(positive rows, their loss weights, negative rows)``.

    Positives beyond ``max_positives`` are a seeded subsample (the blog caps at 200,000); their
    weights (``None``: all equal) are rescaled to mean 1, so the weighted and unweighted models put
    the same total weight on the seed list and differ only in where, within it. Negatives are
    sampled from ``pool`` without any of the given positives. Everything is drawn from
    ``head_seed`` alone: a head's data does not depend on which other heads train beside it.
    """
    positives = np.asarray(positives, dtype=np.int64)
    if len(positives) == 0:
        raise ValueError("a head needs at least one positive")
    w = np.ones(len(positives)) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(w) != len(positives):
        raise ValueError(f"{len(w)} weights for {len(positives)} positives")
    rng = _rng([head_seed, 0])
    known = positives
    if len(positives) > spec.max_positives:
        keep = np.sort(rng.choice(len(positives), size=spec.max_positives, replace=False))
        positives, w = positives[keep], w[keep]
    w = w / w.mean() if w.mean() > 0 else np.ones_like(w)
    negatives = sample_negatives(pool, known, negative_count(len(positives), spec), [head_seed, 1])
    return positives, w, negatives


# ---------------------------------------------------------------------------- regression-based

def lr_scores(features: np.ndarray, train_rows: np.ndarray, negative_rows: np.ndarray, seed: int) -> np.ndarray:
    """One advertiser's logistic regression on raw ``features``: ``train_rows`` (all of its training
    positives) against ``negative_rows``; returns the probability of every row.

    Features are standardised over all rows (the log counts and the one-hots get comparable
    penalties); classes are balanced so a small seed list is not drowned by its negatives.
    """
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(features, dtype=np.float64)
    x = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
    negative_rows = np.setdiff1d(negative_rows, train_rows)
    rows = np.concatenate([train_rows, negative_rows])
    labels = np.r_[np.ones(len(train_rows)), np.zeros(len(negative_rows))]
    model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000, random_state=seed % 2**32)
    model.fit(x[rows], labels)
    return model.predict_proba(x)[:, 1]


# ---------------------------------------------------------------------------- similarity-based

class LSHIndex:
    """Random-hyperplane LSH of the embeddings: ``tables`` tables of ``bits`` hyperplanes each.

    A user's code in a table is the sign pattern of its embedding against the table's hyperplanes
    (users at a small angle agree on most signs). Codes and bucket populations are computed once;
    :meth:`scores` then costs one ``bincount`` per seed list.
    """

    def __init__(self, embeddings, tables: int, bits: int, seed: int):
        x = torch.as_tensor(embeddings).double().numpy()
        n, dim = x.shape
        planes = _rng([seed, 2]).standard_normal((dim, tables * bits))
        signs = (x @ planes > 0).reshape(n, tables, bits)
        codes = signs.astype(np.int64) @ (np.int64(1) << np.arange(bits, dtype=np.int64))
        # One id space for all tables (table t's codes shifted past table t-1's), made dense.
        keys = codes + (np.arange(tables, dtype=np.int64) << bits)
        _, dense = np.unique(keys, return_inverse=True)
        self.buckets = dense.reshape(n, tables)          # (users, tables): bucket id of each
        self.population = np.bincount(dense.ravel())     # users per bucket
        self.num_rows, self.tables, self.bits = n, tables, bits

    def scores(self, seed_rows: np.ndarray, prior_users: float = LSH_PRIOR_USERS) -> np.ndarray:
        """Each row's mean over tables of its bucket's seed-list lift: the bucket's share of the seed
        list over its share of the population, ``(s_b / |S|) / (n_b / N)``.

        ``s_b`` is smoothed with ``prior_users`` pseudo-users at the base rate ``|S| / N``: raw, a
        bucket of one user who happens to be a seed would get lift ``N / |S|`` and outrank a bucket
        of 40 with 10 seeds; smoothed, small buckets shrink toward lift 1 (the population's).
        """
        seed_rows = np.asarray(seed_rows, dtype=np.int64)
        if len(seed_rows) == 0:
            raise ValueError("LSH scores need at least one seed row")
        base = len(seed_rows) / self.num_rows
        seeds = np.bincount(self.buckets[seed_rows].ravel(), minlength=len(self.population))
        lift = (seeds + prior_users * base) / (self.population + prior_users) / base
        return lift[self.buckets].mean(axis=1)


def lsh_scores(embeddings, seed_rows: np.ndarray, tables: int, bits: int, seed: int) -> np.ndarray:
    """:meth:`LSHIndex.scores` of one seed list (build the index once to score many)."""
    return LSHIndex(embeddings, tables, bits, seed).scores(seed_rows)


# ---------------------------------------------------------------------------- combined NN

class MultiHeadMLP(torch.nn.Module):
    """``num_heads`` independent one-hidden-layer MLPs with batched parameters.

    ``forward(x)`` scores the same users under every head at once, ``(H, N)`` logits: scoring all
    advertisers is one batched matrix product over the embeddings. ``forward_rows(x)`` takes each
    head's own rows, ``(H, M, in_dim)``, for training.
    """

    def __init__(self, num_heads: int, in_dim: int, hidden: int, head_seeds: Sequence[int] | None = None):
        super().__init__()
        self.w1 = torch.nn.Parameter(torch.empty(num_heads, in_dim, hidden))
        self.b1 = torch.nn.Parameter(torch.empty(num_heads, hidden))
        self.w2 = torch.nn.Parameter(torch.empty(num_heads, hidden))
        self.b2 = torch.nn.Parameter(torch.empty(num_heads))
        seeds = list(range(num_heads)) if head_seeds is None else list(head_seeds)
        if len(seeds) != num_heads:
            raise ValueError(f"{len(seeds)} head seeds for {num_heads} heads")
        with torch.no_grad():
            for h, seed in enumerate(seeds):
                # nn.Linear's default ranges, drawn from the head's own generator: a head starts the
                # same whichever heads are beside it.
                g = torch.Generator().manual_seed(int(seed) % 2**63)
                for tensor, fan_in in ((self.w1[h], in_dim), (self.b1[h], in_dim), (self.w2[h], hidden),
                                       (self.b2[h : h + 1], hidden)):
                    bound = 1.0 / math.sqrt(fan_in)
                    tensor.copy_(torch.rand(tensor.shape, generator=g) * 2 * bound - bound)

    @property
    def num_heads(self) -> int:
        return self.w1.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(torch.matmul(x, self.w1) + self.b1[:, None, :])   # (H, N, hidden)
        return (hidden * self.w2[:, None, :]).sum(-1) + self.b2[:, None]

    def forward_rows(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(torch.baddbmm(self.b1[:, None, :], x, self.w1))    # (H, M, hidden)
        return torch.bmm(hidden, self.w2[:, :, None]).squeeze(-1) + self.b2[:, None]


def _groups(sizes: Sequence[int]) -> list[list[int]]:
    """Head indices grouped by row count (ascending; a group's largest at most GROUP_RATIO x its
    smallest), so padding every head of a group to its largest wastes little."""
    order = np.argsort(np.asarray(sizes), kind="stable")
    groups: list[list[int]] = []
    for h in order:
        if groups and sizes[h] <= GROUP_RATIO * sizes[groups[-1][0]]:
            groups[-1].append(int(h))
        else:
            groups.append([int(h)])
    return groups


def train_heads(embeddings, positives: Sequence[np.ndarray], weights: Sequence[np.ndarray | None],
                negative_pool: np.ndarray, spec: AudienceSpec, head_seeds: Sequence[int]) -> tuple[dict, dict]:
    """Train one head per advertiser on ``embeddings`` rows: ``(state_dict, history)``.

    Head ``h``: ``positives[h]`` (capped at ``max_positives``) weighted by ``weights[h]`` (``None``:
    unweighted) against negatives from ``negative_pool`` (:func:`head_rows`), weighted BCE with the
    classes balanced (the positives' weights sum to the negatives' count), full-batch Adam for
    ``nn_epochs`` steps at ``nn_lr``. The state dict is a :class:`MultiHeadMLP`'s, heads in
    input order; ``history``: per epoch the mean over heads of their loss, and per head its
    positives, negatives and final loss.

    Heads are independent: each draws its initial weights and data from its own seed, the loss is
    the sum of the heads' weighted mean losses (a head's gradient is its own loss's) and Adam is elementwise;
    so a head comes out the same trained alone or in any group (up to float rounding). Heads are
    trained in groups of similar row counts, padded to the group's largest, padding masked out.
    """
    x = torch.as_tensor(embeddings).float()
    if not (len(positives) == len(weights) == len(head_seeds)):
        raise ValueError(f"{len(positives)} positive sets, {len(weights)} weight sets, {len(head_seeds)} seeds")
    num_heads = len(positives)
    data = [head_rows(p, w, np.asarray(negative_pool), spec, s)
            for p, w, s in zip(positives, weights, head_seeds, strict=True)]
    sizes = [len(p) + len(n) for p, _, n in data]
    state = {"w1": torch.empty(num_heads, x.shape[1], spec.hidden_units), "b1": torch.empty(num_heads, spec.hidden_units),
             "w2": torch.empty(num_heads, spec.hidden_units), "b2": torch.empty(num_heads)}
    epoch_loss = np.zeros((spec.nn_epochs, num_heads))
    for group in _groups(sizes):
        rows = max(sizes[h] for h in group)
        index = torch.zeros(len(group), rows, dtype=torch.long)
        target = torch.zeros(len(group), rows)
        weight = torch.zeros(len(group), rows)  # 0 on padding
        for g, h in enumerate(group):
            pos, w, neg = data[h]
            n = len(pos) + len(neg)
            index[g, :n] = torch.from_numpy(np.concatenate([pos, neg]))
            target[g, : len(pos)] = 1.0
            # Classes balanced, as the regression's class_weight="balanced": the positives weigh as much
            # in total as the negatives. Unbalanced, a 27-user list against 1,000 negatives learns
            # little beyond its bias and ranks near random.
            balance = len(neg) / len(pos)
            weight[g, :n] = torch.from_numpy(np.concatenate([w * balance, np.ones(len(neg))])).float()
        count = weight.sum(1)
        inputs = x[index]  # (G, rows, dim)
        model = MultiHeadMLP(len(group), x.shape[1], spec.hidden_units, [head_seeds[h] for h in group])
        optimizer = torch.optim.Adam(model.parameters(), lr=spec.nn_lr)
        with flush_denormal():
            for epoch in range(spec.nn_epochs):
                logits = model.forward_rows(inputs)
                per_row = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
                head_loss = (per_row * weight).sum(1) / count
                optimizer.zero_grad()
                head_loss.sum().backward()
                optimizer.step()
                epoch_loss[epoch, group] = head_loss.detach().numpy()
        for name, value in model.state_dict().items():
            state[name][group] = value
    history = {
        "epoch": list(range(1, spec.nn_epochs + 1)),
        "loss": epoch_loss.mean(axis=1).tolist(),
        "head_final_loss": epoch_loss[-1].tolist() if spec.nn_epochs else [],
        "head_positives": [len(p) for p, _, _ in data],
        "head_negatives": [len(n) for _, _, n in data],
    }
    return state, history


def load_heads(state_dict: dict) -> MultiHeadMLP:
    num_heads, in_dim, hidden = state_dict["w1"].shape
    model = MultiHeadMLP(num_heads, in_dim, hidden)
    model.load_state_dict(state_dict)
    return model.eval()


@torch.no_grad()
def score_heads(state_dict: dict, embeddings, batch_size: int = 16_384) -> torch.Tensor:
    """``(H, N)`` probabilities of every user under every head: one batched product per batch of
    users (batches bound the ``(H, batch, hidden)`` activations' memory)."""
    model = load_heads(state_dict)
    x = torch.as_tensor(embeddings).float()
    batches = [torch.sigmoid(model(x[i:i + batch_size])) for i in range(0, len(x), batch_size)]
    return torch.cat(batches, dim=1) if batches else torch.zeros(model.num_heads, 0)


def top_k(scores, exclude, k: Sequence[int]) -> list[np.ndarray]:
    """Per head, the rows of its ``k[h]`` highest scores among rows not in ``exclude[h]`` (fewer if
    fewer are eligible), best first.

    ``scores`` and ``exclude`` are ``(H, N)``. A stable descending sort of all heads at once: ties go
    to the lower row, the same every run (``torch.topk`` leaves tie order unspecified).
    """
    s = torch.as_tensor(scores).double().masked_fill(torch.as_tensor(exclude, dtype=torch.bool), -math.inf)
    if len(k) != s.shape[0]:
        raise ValueError(f"{len(k)} k values for {s.shape[0]} heads")
    order = torch.sort(s, dim=1, descending=True, stable=True).indices.numpy()
    eligible = (~torch.as_tensor(exclude, dtype=torch.bool)).sum(1).numpy()
    return [order[h, : min(int(k[h]), int(eligible[h]))] for h in range(s.shape[0])]
