"""The ad-relevance model: a logistic "wide" part on observed pair features, plus a GAT whose
dot-product score is added through a learned gate (wide & deep, as ads rankers are built).

    logit(user, ad) = w · [log1p deg(user), log1p deg(ad), cross(user, ad)] + b
                      + gate · z_user · z_ad / sqrt(d)

Each part answers a measured failure (``benchmarks/worlds.py``; issue 16):

* **the wide part** is what a simple baseline gets right and a bare GAT did not: the generator's
  truth is activity × interest match, i.e. user degree and the cross feature "the user's interest
  is the ad's category" (``cross``: the aligned one-hot columns of the two node types). A bare
  GAT had to learn the 7 × 7 interest-category interaction from a few hundred positives on a
  sparse world and lost to a logistic regression by up to 3 standard errors;
* **raw** ``log1p(degree)``: standardising it per graph (as before) gave it another scale on the
  training graph, which holds ~32% of the user→ad edges, than on evaluation graphs (80–90%);
  a log-degree's shift between graphs is a constant, which the wide part absorbs;
* **the GAT** (users attend over the ads they interacted with, two layers, GATConv's residual
  connection keeping each user's own features) learns what the wide part cannot. It enters
  through ``gate``, zero until training shows on validation that it helps (see
  :func:`adrel_pipeline.relevance.training.train_gat`): on worlds without graph signal beyond
  degree and interest, attention only added noise. Ads embed their own features: attention into
  ads, whose training-graph neighbourhoods are tiny, cost 0.008 AUC on sparse worlds;
* organic-pin edges (90% of all edges) enter through degrees only: attending over them cost ~9×
  the epoch time for no measured gain.

The model is saved as ``state_dict`` + :class:`GATConfig` (plain types), never as a pickled
module, so it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.nn import GATConv

from adrel_pipeline.graph.build import (
    AD,
    AD_USER,
    USER,
    USER_AD,
    cross_columns,
    in_degree,
    interest_matches_category,
)

EdgeType = tuple[str, str, str]
# The edge types attention runs over; every edge type still counts toward node degrees.
MESSAGE_EDGE_TYPES: tuple[EdgeType, ...] = (AD_USER,)


@dataclass(frozen=True)
class GATConfig:
    """The architecture of a trained model, saved with its weights. The hyperparameters have no
    defaults here: they come from :class:`~adrel_pipeline.relevance.spec.TrainSpec`, declared once."""

    in_channels: dict[str, int]
    edge_types: tuple[EdgeType, ...]
    # User column, ad column, width of the aligned one-hots whose product is the cross feature (the
    # graph's declaration, see graph.build); width 0: no cross, the feature is 0.
    cross_columns: tuple[int, int, int]
    hidden_channels: int
    out_channels: int
    heads: int
    dropout: float

    @staticmethod
    def graph_shape(graph: HeteroData) -> tuple[dict[str, int], tuple[EdgeType, ...]]:
        """Feature sizes per node type and the attended edge types a model of ``graph`` has."""
        return ({t: int(graph[t].x.shape[1]) for t in graph.node_types},
                tuple(t for t in MESSAGE_EDGE_TYPES if t in graph.edge_types))

    @classmethod
    def for_graph(cls, graph: HeteroData, **hyper) -> GATConfig:
        in_channels, edge_types = cls.graph_shape(graph)
        return cls(in_channels=in_channels, edge_types=edge_types, cross_columns=cross_columns(graph), **hyper)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["edge_types"] = [list(t) for t in self.edge_types]
        d["cross_columns"] = list(self.cross_columns)
        return d

    def mismatch(self, graph: HeteroData) -> str | None:
        """Why this model cannot run on ``graph`` (other feature sizes, edge types or cross columns), else None."""
        in_channels, edge_types = self.graph_shape(graph)
        if self.in_channels != in_channels:
            return f"feature sizes differ: model {self.in_channels}, graph {in_channels}"
        if set(self.edge_types) != set(edge_types):
            return f"edge types differ: model {sorted(self.edge_types)}, graph {sorted(edge_types)}"
        # Same widths but another cross would silently score the wrong columns' product.
        if tuple(self.cross_columns) != cross_columns(graph):
            return f"cross columns differ: model {tuple(self.cross_columns)}, graph {cross_columns(graph)}"
        return None

    @classmethod
    def from_dict(cls, d: dict) -> GATConfig:
        return cls(**{**d, "edge_types": tuple(tuple(t) for t in d["edge_types"]),
                      "cross_columns": tuple(d["cross_columns"])})


def with_log_degree(x_dict: dict[str, Tensor], edge_index_dict: dict[EdgeType, Tensor]) -> dict[str, Tensor]:
    """Append ``log1p(in-degree)`` over all incoming edge types (organic ones included) to every
    node type's features. Not standardised: see the module docstring."""
    return {t: torch.cat([x, torch.log1p(in_degree(edge_index_dict, t, x.shape[0])).unsqueeze(1)], dim=1)
            for t, x in x_dict.items()}


class AdRelevanceGAT(torch.nn.Module):
    """Encoder: users attend over their ads (two GAT layers); ads embed their own features."""

    def __init__(self, config: GATConfig):
        super().__init__()
        self.config = config
        in_user, in_ad = config.in_channels[USER] + 1, config.in_channels[AD] + 1  # +1: log-degree
        hidden = config.hidden_channels * config.heads
        self.conv1 = GATConv((in_ad, in_user), config.hidden_channels, heads=config.heads,
                             add_self_loops=False, residual=True)
        self.conv2 = GATConv((hidden, hidden), config.out_channels, heads=1, add_self_loops=False, residual=True)
        self.ad1 = torch.nn.Linear(in_ad, hidden)
        self.ad2 = torch.nn.Linear(hidden, config.out_channels)

    def forward(self, x: dict[str, Tensor], edge_index_dict: dict[EdgeType, Tensor]) -> dict[str, Tensor]:
        edges = edge_index_dict[AD_USER]
        drop = lambda h: F.dropout(F.elu(h), p=self.config.dropout, training=self.training)
        user, ad = drop(self.conv1((x[AD], x[USER]), edges)), drop(self.ad1(x[AD]))
        return {USER: self.conv2((ad, user), edges), AD: self.ad2(ad)}

    def ads(self, x_ad: Tensor) -> Tensor:
        """The ads' embeddings alone: an ad reads only its own features (no message passing)."""
        return self.ad2(F.dropout(F.elu(self.ad1(x_ad)), p=self.config.dropout, training=self.training))


class AdRelevanceModel(torch.nn.Module):
    """Wide part + gated GAT dot product (see the module docstring)."""

    def __init__(self, config: GATConfig):
        super().__init__()
        self.config = config
        self.encoder = AdRelevanceGAT(config)
        # Counts and crosses only: one-hot main effects in the wide part overfit where data is scarce
        # (0.693 instead of 0.707 test AUC on a world of 400 ads); the GAT sees the features.
        self.wide = torch.nn.Linear(3, 1)
        self.gate = torch.nn.Parameter(torch.zeros(()))
        # The first training stage fits the wide part alone and skips the encoder (not saved).
        self.use_encoder = True

    def embed(self, data: HeteroData) -> dict[str, Tensor]:
        """Per node: its features with log-degree (``x``) and, when used, its GAT embedding (``z``)."""
        return self.encode(with_log_degree({t: data[t].x for t in (USER, AD)}, data.edge_index_dict),
                           data.edge_index_dict)

    def encode(self, x: dict[str, Tensor], edge_index_dict: dict[EdgeType, Tensor]) -> dict[str, Tensor]:
        """:meth:`embed` from features that already carry their log-degree: a sampled subgraph's rows
        of the full graph's (:mod:`adrel_pipeline.graph.sampling`), as degrees counted in a sample
        would have another scale. A user's embedding reads its ads one hop away, an ad's only itself."""
        return {"x": x, "z": self.encoder(x, edge_index_dict) if self.use_encoder else None}

    def decode(self, e: dict, pairs: Tensor) -> Tensor:
        xu, xa = e["x"][USER][pairs[0]], e["x"][AD][pairs[1]]
        cross = interest_matches_category(xu, xa, self.config.cross_columns)
        logit = self.wide(torch.cat([xu[:, -1:], xa[:, -1:], cross], dim=1)).squeeze(-1)  # log-degrees are last
        if e["z"] is None:
            return logit
        d = self.config.out_channels
        # Scaled like attention logits: an unscaled dot product makes early Adam steps overshoot.
        return logit + self.gate * (e["z"][USER][pairs[0]] * e["z"][AD][pairs[1]]).sum(dim=-1) / d ** 0.5

    def forward(self, data: HeteroData, pairs: Tensor | None = None) -> Tensor:
        """Logits for ``pairs`` (2 x N user/ad node indices), by default the data's label pairs."""
        return self.decode(self.embed(data), data[USER_AD].edge_label_index if pairs is None else pairs)

    @torch.no_grad()
    def score_matrix(self, e: dict, user_index: Tensor) -> Tensor:
        """Logits of ``user_index``'s users against every ad, ``(len(user_index), num_ads)``: the
        decoder for all pairs at once, for full-catalogue ranking."""
        xu, xa = e["x"][USER][user_index], e["x"][AD]
        w = self.wide.weight[0]
        user_col, ad_col, width = self.config.cross_columns
        logit = w[0] * xu[:, -1:] + w[1] * xa[:, -1][None, :] + self.wide.bias
        if width:  # width 0: no cross declared, the feature is 0
            logit = logit + w[2] * (xu[:, user_col:user_col + width] @ xa[:, ad_col:ad_col + width].T)
        if e["z"] is not None:
            logit = logit + self.gate * (e["z"][USER][user_index] @ e["z"][AD].T) / self.config.out_channels ** 0.5
        return logit

    def wide_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.wide.parameters())

    def deep_parameters(self) -> list[torch.nn.Parameter]:
        return [*self.encoder.parameters(), self.gate]


def model_checkpoint(model: AdRelevanceModel) -> dict:
    """What gets saved: plain config + tensors, loadable with ``torch.load(weights_only=True)``."""
    return {"config": model.config.as_dict(),
            "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()}}


def load_model(checkpoint: dict) -> AdRelevanceModel:
    model = AdRelevanceModel(GATConfig.from_dict(checkpoint["config"]))
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()
