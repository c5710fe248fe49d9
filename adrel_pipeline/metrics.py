"""Evaluation metrics: ROC AUC of a scorer, and the oracle (Bayes-optimal) AUC."""

from __future__ import annotations

import numpy as np
import polars as pl
import torch
from torch_geometric.data import HeteroData

from adrel_pipeline.graph import AD, USER, USER_AD
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


def oracle_scores(spec: WorldSpec, users: pl.DataFrame, items: pl.DataFrame, data: HeteroData) -> np.ndarray:
    """The generator's true interaction probability for each labelled (user, ad) pair of ``data``."""
    pairs = data[USER_AD].edge_label_index
    user_ids = data[USER].node_id[pairs[0]].numpy()
    ad_ids = data[AD].node_id[pairs[1]].numpy()
    return interaction_probability(spec, users, items, user_ids, ad_ids)


def oracle_auc(spec: WorldSpec, users: pl.DataFrame, items: pl.DataFrame, data: HeteroData) -> float:
    """The best AUC any model can reach on ``data``'s labelled pairs: a model above it has leaked."""
    return auc(data[USER_AD].edge_label, oracle_scores(spec, users, items, data))
