"""Evaluation metrics: ROC AUC and ROC curve, full-catalogue ranking metrics, and the oracle's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
from torch_geometric.data import HeteroData

from adrel_pipeline.graph.build import AD, USER, USER_AD
from adrel_pipeline.world import WorldSpec, interaction_probability


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


def ranking_metrics(
    data: HeteroData,
    score_matrix: Callable[[torch.Tensor], torch.Tensor],
    ks: tuple[int, ...] = RANKING_KS,
    batch_size: int = 1024,
) -> dict[str, float]:
    """How high each held-out positive ad ranks among *all* ads for its user.

    For every positive (user, ad) label pair of ``data``, the candidates are every ad the user
    has no known interaction with: ads in ``data``'s message-passing edges and the user's other
    positives are filtered out, as in the filtered link-prediction protocol. ``score_matrix``
    maps a batch of user node indices to a ``(batch, num_ads)`` score matrix.

    Ties are broken uniformly at random *in expectation*, so a scorer with tied scores (the
    oracle ranks a user's ads only by category) gets its exact expected ``hits@k`` and MRR
    rather than an arbitrary tie order.
    """
    store = data[USER_AD]
    positives = store.edge_label_index[:, store.edge_label.bool()]
    if positives.shape[1] == 0:
        raise ValueError("ranking metrics need at least one positive label pair")
    num_ads = data[AD].num_nodes
    known = torch.cat([store.edge_index, positives], dim=1)
    users = torch.unique(positives[0])
    hits = {k: 0.0 for k in ks}
    reciprocal_rank = 0.0
    for start in range(0, users.numel(), batch_size):
        batch = users[start:start + batch_size]
        row_of = torch.full((data[USER].num_nodes,), -1, dtype=torch.long)
        row_of[batch] = torch.arange(batch.numel())
        scores = score_matrix(batch).double()

        pos = positives[:, row_of[positives[0]] >= 0]
        pos_rows = row_of[pos[0]]
        pos_scores = scores[pos_rows, pos[1]]
        seen = known[:, row_of[known[0]] >= 0]
        scores[row_of[seen[0]], seen[1]] = float("-inf")

        # higher: candidates strictly ahead; tied: candidates with the same score.
        higher = (scores[pos_rows] > pos_scores[:, None]).sum(dim=1).double()
        tied = (scores[pos_rows] == pos_scores[:, None]).sum(dim=1).double()
        # Uniform over the tie group, the positive's rank is h+1 ... h+t+1.
        for k in ks:
            hits[k] += ((k - higher) / (tied + 1)).clamp(0, 1).sum().item()
        harmonic = torch.special.digamma(higher + tied + 2) - torch.special.digamma(higher + 1)
        reciprocal_rank += (harmonic / (tied + 1)).sum().item()
    n = positives.shape[1]
    out = {f"hits_at_{k}": hits[k] / n for k in ks}
    out["mrr"] = reciprocal_rank / n
    out["ranked_positives"] = float(n)
    out["candidate_ads"] = float(num_ads)
    return out


def oracle_score_matrix(spec: WorldSpec, users: pl.DataFrame, items: pl.DataFrame,
                        data: HeteroData) -> Callable[[torch.Tensor], torch.Tensor]:
    """Score matrix of the generator's true interaction probabilities."""
    ad_ids = data[AD].node_id.numpy()
    user_ids = data[USER].node_id.numpy()
    return lambda user_index: torch.from_numpy(
        interaction_probability(spec, users, items, user_ids[user_index.numpy()], ad_ids, outer=True))
