"""Evaluation metrics: ROC AUC and ROC curve, full-catalogue ranking metrics, and the oracle's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
from torch_geometric.data import HeteroData

from adrel_pipeline.evaluation.spec import RankingSpec
from adrel_pipeline.graph.build import AD, USER, USER_AD
from adrel_pipeline.world import WorldSpec, interaction_probability
from adrel_pipeline.world.oracle import OracleRows


def auc(labels: torch.Tensor | np.ndarray, scores: torch.Tensor | np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney U statistic, ties counted half (equals sklearn's roc_auc_score).

    Computed in torch: it runs every epoch, and importing scikit-learn's metrics (scipy) would
    cost more start-up time than the whole world generation.
    """
    labels = torch.as_tensor(labels).reshape(-1).bool()
    scores = torch.as_tensor(scores).reshape(-1).double()
    n_pos = int(labels.sum())
    n_neg = labels.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both positive and negative labels")
    _, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    avg_rank = counts.cumsum(0).double() - (counts.double() - 1) / 2  # 1-based, ties averaged
    rank_sum = avg_rank[inverse][labels].sum().item()
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _midranks(x: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts - 1) / 2)[inverse]


@dataclass(frozen=True)
class PairedAUC:
    """Two scorers' AUCs on the same labelled pairs and the standard error of their difference."""

    auc_a: float
    auc_b: float
    se_difference: float

    @property
    def difference(self) -> float:
        return self.auc_a - self.auc_b


def paired_auc(labels, scores_a, scores_b) -> PairedAUC:
    """DeLong's paired comparison of two scorers on the same pairs (DeLong, DeLong & Clarke-Pearson
    1988): each AUC from its placement values, and the standard error of their difference from the
    placements' covariance. Correlated scorers (a model and the oracle, a challenger and the
    champion) get a far smaller error than two independent AUCs would."""
    y = np.asarray(torch.as_tensor(labels).reshape(-1).bool())
    pos, neg = int(y.sum()), int((~y).sum())
    if pos < 2 or neg < 2:
        raise ValueError("a paired AUC comparison needs at least two positive and two negative labels")
    placements = []
    for scores in (scores_a, scores_b):
        s = np.asarray(torch.as_tensor(scores).reshape(-1).double())
        ranks, ranks_pos, ranks_neg = _midranks(s), _midranks(s[y]), _midranks(s[~y])
        v10 = (ranks[y] - ranks_pos) / neg           # per positive: share of negatives below it
        v01 = 1.0 - (ranks[~y] - ranks_neg) / pos    # per negative: share of positives above it
        placements.append((v10, v01))
    (a10, a01), (b10, b01) = placements
    var = (np.var(a10 - b10, ddof=1) / pos) + (np.var(a01 - b01, ddof=1) / neg)
    return PairedAUC(float(a10.mean()), float(b10.mean()), float(np.sqrt(max(var, 0.0))))


def oracle_scores(spec: WorldSpec, users: pl.DataFrame, items: pl.DataFrame, data: HeteroData) -> np.ndarray:
    """The generator's true interaction probability for each labelled (user, ad) pair of ``data``."""
    pairs = data[USER_AD].edge_label_index
    user_ids = data[USER].node_id[pairs[0]].numpy()
    ad_ids = data[AD].node_id[pairs[1]].numpy()
    return interaction_probability(spec, users, items, user_ids, ad_ids)


def oracle_auc(spec: WorldSpec, users: pl.DataFrame, items: pl.DataFrame, data: HeteroData) -> float:
    """The best AUC any model can reach on ``data``'s labelled pairs: a model above it has leaked."""
    return auc(data[USER_AD].edge_label, oracle_scores(spec, users, items, data))


def roc_curve(labels: torch.Tensor | np.ndarray, scores: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold, from (0, 0) to (1, 1).

    Tied scores move both rates at once, so the trapezoid area under the curve equals :func:`auc`.
    """
    labels = torch.as_tensor(labels).reshape(-1).bool()
    scores = torch.as_tensor(scores).reshape(-1).double()
    distinct, inverse = torch.unique(scores, return_inverse=True)
    pos = torch.zeros(distinct.numel(), dtype=torch.float64).index_add_(0, inverse, labels.double())
    neg = torch.zeros(distinct.numel(), dtype=torch.float64).index_add_(0, inverse, (~labels).double())
    # Thresholds from the highest score down.
    tpr = torch.cat([torch.zeros(1, dtype=torch.float64), pos.flip(0).cumsum(0) / pos.sum()])
    fpr = torch.cat([torch.zeros(1, dtype=torch.float64), neg.flip(0).cumsum(0) / neg.sum()])
    return fpr.numpy(), tpr.numpy()


RANKING_KS: tuple[int, ...] = (10, 100)


def _positives(data: HeteroData) -> torch.Tensor:
    store = data[USER_AD]
    positives = store.edge_label_index[:, store.edge_label.bool()]
    if positives.shape[1] == 0:
        raise ValueError("ranking metrics need at least one positive label pair")
    return positives


@dataclass(frozen=True)
class RankingSample:
    """The positive test pairs the ranking metrics rank: all of them, or a uniform sample without
    replacement. Both scorers compared (a model and the oracle) rank the same sample."""

    index: torch.Tensor  # sorted columns of the positive label pairs
    population: int  # how many positive label pairs there are

    @property
    def exact(self) -> bool:
        return self.index.numel() == self.population


def ranking_sample(data: HeteroData, spec: RankingSpec | None = None) -> RankingSample:
    """Every positive when their users x all ads fit in ``spec.exact_cells`` score-matrix cells;
    otherwise ``exact_cells // ads`` of them (at least 2, for a standard error), uniformly without
    replacement, seeded by ``spec.seed``.

    Why sample positives rather than candidate ads: each sampled positive is still ranked exactly
    against the whole catalogue, so its hits@k and reciprocal rank are the exact per-positive values
    and their sample mean is an exactly unbiased estimate of the mean over all positives, with the
    usual standard error. Sampling *candidates* instead (rank ~ 1 + N/m x #higher among m sampled
    ads) is unbiased for the rank, but hits@k and MRR are nonlinear in it: the estimate is biased, and
    from m < N - 1 sampled candidates no estimator of 1[rank <= k] is unbiased for every possible
    rank (Krichene & Rendle 2020's corrections reduce that bias, they do not remove it).
    """
    spec = spec or RankingSpec()
    positives = _positives(data)
    total = positives.shape[1]
    num_ads = data[AD].num_nodes
    if torch.unique(positives[0]).numel() * num_ads <= spec.exact_cells:
        return RankingSample(torch.arange(total), total)
    n = min(total, max(2, spec.exact_cells // num_ads))
    generator = torch.Generator().manual_seed(spec.seed)
    return RankingSample(torch.randperm(total, generator=generator)[:n].sort().values, total)


def positive_ranks(
    data: HeteroData,
    score_matrix: Callable[[torch.Tensor], torch.Tensor],
    sample: RankingSample | None = None,
    batch_cells: int | None = None,
    batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each positive (user, ad) label pair of ``sample`` (default: all), in the sample's order:
    how many candidate ads score strictly higher, and how many tie with it.

    The candidates are every ad the user has no known interaction with: ads in ``data``'s
    message-passing edges and the user's other positives are filtered out, as in the filtered
    link-prediction protocol. ``score_matrix`` maps a batch of user node indices (ascending) to a
    fresh ``(batch, num_ads)`` score matrix (it is written to); batches hold at most
    ``batch_cells`` cells (``batch_size`` users, when given).
    """
    positives = _positives(data)
    sample = sample or RankingSample(torch.arange(positives.shape[1]), positives.shape[1])
    num_ads = data[AD].num_nodes
    ranked = positives[:, sample.index]
    by_user = torch.argsort(ranked[0], stable=True)
    pos_user, pos_ad = ranked[0, by_user], ranked[1, by_user]
    users, counts = torch.unique_consecutive(pos_user, return_counts=True)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)]).tolist()
    # Known ads sorted by user once: a batch's are then one contiguous slice, not a scan of them all.
    store = data[USER_AD]
    known = torch.cat([store.edge_index, positives], dim=1)
    known_order = torch.argsort(known[0], stable=True)
    known_user, known_ad = known[0, known_order], known[1, known_order]

    rows = batch_size or max(1, (batch_cells or RankingSpec().batch_cells) // max(num_ads, 1))
    higher = torch.empty(len(pos_user), dtype=torch.float64)
    tied = torch.empty(len(pos_user), dtype=torch.float64)
    for start in range(0, users.numel(), rows):
        batch = users[start:start + rows]
        lo, hi = offsets[start], offsets[start + batch.numel()]
        row = torch.searchsorted(batch, pos_user[lo:hi])
        scores = torch.as_tensor(score_matrix(batch))
        if not scores.is_floating_point():
            scores = scores.double()
        pos_scores = scores[row, pos_ad[lo:hi]]
        k_lo = int(torch.searchsorted(known_user, batch[:1]))
        k_hi = int(torch.searchsorted(known_user, batch[-1:], right=True))
        k_user, k_ad = known_user[k_lo:k_hi], known_ad[k_lo:k_hi]
        k_row = torch.searchsorted(batch, k_user).clamp(max=batch.numel() - 1)
        mine = batch[k_row] == k_user  # users in the slice's range without a sampled positive are not in the batch
        scores[k_row[mine], k_ad[mine]] = float("-inf")
        # One positive per user (the usual case): compare the batch as it is, without a gathered
        # copy. Counted in numpy: its comparison and count run ~10x faster than torch's here.
        candidates = scores.numpy() if row.numel() == batch.numel() else scores[row].numpy()
        threshold = pos_scores.numpy()[:, None]
        higher[lo:hi] = torch.from_numpy(np.count_nonzero(candidates > threshold, axis=1))
        tied[lo:hi] = torch.from_numpy(np.count_nonzero(candidates == threshold, axis=1))
    back = torch.empty_like(by_user)
    back[by_user] = torch.arange(by_user.numel())
    return higher[back], tied[back]


def per_positive_metrics(higher: torch.Tensor, tied: torch.Tensor,
                         ks: tuple[int, ...] = RANKING_KS) -> dict[str, torch.Tensor]:
    """Each positive's expected hits@k and reciprocal rank, ties broken uniformly at random *in
    expectation*: a scorer with tied scores (the oracle ranks a user's ads only by category) gets
    its exact expected values rather than an arbitrary tie order's."""
    # Uniform over the tie group, the positive's rank is h+1 ... h+t+1.
    out = {f"hits_at_{k}": ((k - higher) / (tied + 1)).clamp(0, 1) for k in ks}
    out["mrr"] = (torch.special.digamma(higher + tied + 2) - torch.special.digamma(higher + 1)) / (tied + 1)
    return out


def ranking_metrics(
    data: HeteroData,
    score_matrix: Callable[[torch.Tensor], torch.Tensor],
    ks: tuple[int, ...] = RANKING_KS,
    batch_size: int | None = None,
    sample: RankingSample | None = None,
    batch_cells: int | None = None,
) -> dict[str, float]:
    """How high each held-out positive ad ranks among *all* ads for its user: mean hits@k and MRR
    over the positives of ``sample`` (default: every positive), each with its standard error.

    Exact when the sample is every positive (standard errors 0). Otherwise the sample mean of the
    exact per-positive values (see :func:`ranking_sample`: unbiased for the mean over all
    positives), with standard error ``sd / sqrt(n) * sqrt(1 - n / N)`` (sample sd, n of N positives
    drawn without replacement). Ranks are those of :func:`positive_ranks`, values those of
    :func:`per_positive_metrics`. Also returned: ``ranked_positives`` (n), ``positives`` (N),
    ``exact`` (1.0 or 0.0) and ``candidate_ads``.
    """
    higher, tied = positive_ranks(data, score_matrix, sample, batch_cells, batch_size)
    n = higher.numel()
    total = sample.population if sample is not None else n
    out: dict[str, float] = {}
    for name, values in per_positive_metrics(higher, tied, ks).items():
        out[name] = values.mean().item()
        out[f"{name}_se"] = 0.0 if n == total else (
            values.var(correction=1).item() / n * (1 - n / total)) ** 0.5 if n > 1 else float("nan")
    out["ranked_positives"] = float(n)
    out["positives"] = float(total)
    out["exact"] = float(n == total)
    out["candidate_ads"] = float(data[AD].num_nodes)
    return out


def oracle_score_matrix(spec: WorldSpec, users: pl.DataFrame, items: pl.DataFrame,
                        data: HeteroData) -> Callable[[torch.Tensor], torch.Tensor]:
    """Score matrix of the generator's true per-draw interaction probabilities: a monotone function
    of the window's probabilities (:func:`~adrel_pipeline.world.oracle.window_probability` of them),
    so it ranks every user's ads as they do, without a log and an exp per cell. What depends only on
    the ads or the users' table is computed once (:class:`~adrel_pipeline.world.oracle.OracleRows`)."""
    rows = OracleRows(spec, users, items, data[AD].node_id.numpy())
    user_ids = data[USER].node_id.numpy()
    return lambda user_index: torch.from_numpy(rows.per_draw(user_ids[user_index.numpy()]))
