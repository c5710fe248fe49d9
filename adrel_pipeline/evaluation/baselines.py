"""Simple baselines a trained model must beat, scored on the same labelled pairs as the model.

* **popularity**: user degree × ad degree in the message-passing graph: no learning at all.
* **logistic regression** on observed features only: log user degree, log ad degree,
  the cross feature (whether the user's main interest is the ad's category) and the user's other
  features (the synthetic world: the age group). Fitted on the
  train split (its supervision positives against sampled non-edges, degrees from the train
  message-passing graph), so it never sees a held-out edge; scored with the degrees of the graph
  each split is evaluated on, exactly like the model.

The generator's truth is activity × interest match, so the regression is close to a plug-in of
the right functional form: a model that loses to it has not learned what the data allows.

The regression is scikit-learn's default ``LogisticRegression`` (L2, C = 1, intercept unpenalised),
fitted by L-BFGS in torch to the same optimum: importing scikit-learn cost ``test_auc`` ~1.5 s of its
~2.5 s on the default world, for a 7-coefficient convex fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch_geometric.data import HeteroData

from adrel_pipeline.graph.build import AD, USER, USER_AD, cross_columns, in_degree, interest_matches_category

BASELINES = ("popularity", "logreg")


def _degrees(graph: HeteroData, node_type: str) -> torch.Tensor:
    return in_degree(graph.edge_index_dict, node_type, graph[node_type].num_nodes)


def popularity_scores(graph: HeteroData, pairs: torch.Tensor) -> np.ndarray:
    """User degree × ad degree of each (user, ad) node-index pair in ``graph``."""
    return (_degrees(graph, USER)[pairs[0]] * _degrees(graph, AD)[pairs[1]]).numpy().astype(np.float64)


def pair_features(graph: HeteroData, pairs: torch.Tensor) -> np.ndarray:
    """``[log1p user degree, log1p ad degree, cross, the user's features but the cross block]`` per pair.

    The cross is the product of the graph's aligned one-hots (:func:`~adrel_pipeline.graph.build.cross_columns`);
    the user's cross block is left out as the cross already carries it. For the synthetic world
    (users ``[age group, main interest]``, ads the category): ``[.., interest == category, age group one-hot]``.
    """
    user_x, ad_x = graph[USER].x[pairs[0]], graph[AD].x[pairs[1]]
    degrees = torch.stack([torch.log1p(_degrees(graph, USER)[pairs[0]]),
                           torch.log1p(_degrees(graph, AD)[pairs[1]])], dim=1)
    columns = cross_columns(graph)
    user_col, _, width = columns
    match = interest_matches_category(user_x, ad_x, columns)
    own = torch.cat([user_x[:, :user_col], user_x[:, user_col + width:]], dim=1)
    return torch.cat([degrees, match, own], dim=1).numpy().astype(np.float64)


@dataclass
class LogisticBaseline:
    """A logistic regression over :func:`pair_features`: ``coef`` and ``intercept``."""

    coef: np.ndarray
    intercept: float

    @classmethod
    def fit(cls, train: HeteroData, pairs: torch.Tensor, labels: torch.Tensor, c: float = 1.0) -> LogisticBaseline:
        """Minimise ``0.5·|w|² + c·Σ log-loss`` (scikit-learn's objective; the intercept is not
        penalised). Convex and smooth, so L-BFGS from zero reaches the unique optimum: no seed."""
        x = torch.from_numpy(pair_features(train, pairs))
        y = labels.double().reshape(-1)
        if x.shape[0] != y.numel():
            raise ValueError(f"pairs ({x.shape[0]}) and labels ({y.numel()}) differ in length")
        w = torch.zeros(x.shape[1] + 1, dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([w], max_iter=500, tolerance_grad=1e-10, tolerance_change=1e-14,
                                      history_size=20, line_search_fn="strong_wolfe")
        n = float(y.numel())

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            # Divided by n: the same optimum, with gradients of order one for the stopping rule.
            logits = x @ w[:-1] + w[-1]
            loss = (c * F.binary_cross_entropy_with_logits(logits, y, reduction="sum")
                    + 0.5 * w[:-1].square().sum()) / n
            loss.backward()
            return loss

        optimizer.step(closure)
        w = w.detach()
        return cls(w[:-1].numpy().copy(), float(w[-1]))

    def scores(self, graph: HeteroData, pairs: torch.Tensor) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(pair_features(graph, pairs) @ self.coef + self.intercept)))


def baseline_scores(split: dict[str, HeteroData], train_pairs: torch.Tensor, train_labels: torch.Tensor,
                    on: str = "test") -> dict[str, np.ndarray]:
    """Each baseline's scores on ``split[on]``'s labelled pairs, the regression fitted on the train
    split's ``train_pairs`` (supervision positives and sampled negatives, see
    :func:`adrel_pipeline.relevance.training.train_eval_pairs`)."""
    graph = split[on]
    pairs = graph[USER_AD].edge_label_index
    logistic = LogisticBaseline.fit(split["train"], train_pairs, train_labels)
    return {"popularity": popularity_scores(graph, pairs), "logreg": logistic.scores(graph, pairs)}
