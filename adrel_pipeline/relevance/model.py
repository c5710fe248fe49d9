"""The ad-relevance GAT: a 2-layer heterogeneous GAT encoder and a dot-product decoder.

Changes from the seed's architecture, each needed for an honest, near-oracle AUC:

* every node also gets ``log1p(degree)`` in the graph it is given. Attention is a softmax, so
  a GAT cannot count neighbours; yet a user's activity (how often they interact) is half of
  the generator's truth. Computing it inside ``forward`` from the message-passing edges means
  it can never see held-out edges;
* GATConv's residual (root) connection, so a node keeps its own features: without it a user's
  age and interest would vanish after the first layer (``add_self_loops`` is meaningless on
  bipartite edges);
* dropout between the layers;
* attention runs over user<->ad edges only. Organic-pin edges (90% of all edges) enter through
  the users' degree alone: what they could add beyond it is the user's interest, which is a
  user feature already. Measured on the default world: 0.05 s per epoch instead of 0.46 s, and
  test AUC 0.7001 instead of 0.6965 (oracle 0.7075).

The model is saved as ``state_dict`` + :class:`GATConfig` (plain types), never as a pickled
module, so it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.nn import GATConv, HeteroConv

from adrel_pipeline.graph.build import AD, AD_USER, USER, USER_AD

EdgeType = tuple[str, str, str]
# The edge types attention runs over; every edge type still counts toward node degrees.
MESSAGE_EDGE_TYPES: tuple[EdgeType, ...] = (USER_AD, AD_USER)


@dataclass(frozen=True)
class GATConfig:
    """The architecture of a trained model, saved with its weights. The hyperparameters have no
    defaults here: they come from :class:`~adrel_pipeline.relevance.spec.TrainSpec`, declared once."""

    in_channels: dict[str, int]
    edge_types: tuple[EdgeType, ...]
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
        return cls(in_channels=in_channels, edge_types=edge_types, **hyper)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["edge_types"] = [list(t) for t in self.edge_types]
        return d

    def mismatch(self, graph: HeteroData) -> str | None:
        """Why this model cannot run on ``graph`` (other feature sizes or edge types), else None."""
        in_channels, edge_types = self.graph_shape(graph)
        if self.in_channels != in_channels:
            return f"feature sizes differ: model {self.in_channels}, graph {in_channels}"
        if set(self.edge_types) != set(edge_types):
            return f"edge types differ: model {sorted(self.edge_types)}, graph {sorted(edge_types)}"
        return None

    @classmethod
    def from_dict(cls, d: dict) -> GATConfig:
        return cls(**{**d, "edge_types": tuple(tuple(t) for t in d["edge_types"])})


def log_degree(x_dict: dict[str, Tensor], edge_index_dict: dict[EdgeType, Tensor]) -> dict[str, Tensor]:
    """Append standardised ``log1p(in-degree)`` (over all incoming edge types) to every node type.

    Standardised over the graph's own nodes: a raw log-degree (mean ~3 for users) next to
    one-hot features makes the first Adam steps overshoot.
    """
    out = {}
    for node_type, x in x_dict.items():
        degree = torch.zeros(x.shape[0])
        for (_, _, dst), edge_index in edge_index_dict.items():
            if dst == node_type:
                degree += torch.bincount(edge_index[1], minlength=x.shape[0]).float()
        ld = torch.log1p(degree)
        ld = (ld - ld.mean()) / ld.std().clamp_min(1e-6) if ld.numel() > 1 else ld - ld.mean()
        out[node_type] = torch.cat([x, ld.unsqueeze(1)], dim=1)
    return out


class AdRelevanceGAT(torch.nn.Module):
    """Encoder: user and ad embeddings from a heterogeneous graph."""

    def __init__(self, config: GATConfig):
        super().__init__()
        self.config = config
        in_ch = {t: c + 1 for t, c in config.in_channels.items()}  # +1: log-degree
        hidden = config.hidden_channels * config.heads

        def gat(src: int, dst: int, out: int, heads: int) -> GATConv:
            return GATConv((src, dst), out, heads=heads, add_self_loops=False, residual=True)

        self.conv1 = HeteroConv(
            {t: gat(in_ch[t[0]], in_ch[t[2]], config.hidden_channels, config.heads)
             for t in config.edge_types},
            aggr="sum",
        )
        self.conv2 = HeteroConv(
            {t: gat(hidden, hidden, config.out_channels, 1) for t in config.edge_types},
            aggr="sum",
        )

    def forward(self, x_dict: dict[str, Tensor], edge_index_dict: dict[EdgeType, Tensor]) -> dict[str, Tensor]:
        x_dict = log_degree(x_dict, edge_index_dict)  # degrees over every edge type, organic included
        edges = {t: e for t, e in edge_index_dict.items() if t in self.config.edge_types}
        h = self.conv1({t: x_dict[t] for t in (USER, AD)}, edges)
        h = {t: F.dropout(F.elu(v), p=self.config.dropout, training=self.training) for t, v in h.items()}
        return self.conv2(h, edges)


class AdRelevanceModel(torch.nn.Module):
    """Encoder + dot-product decoder: ``logit(user, ad) = z_user · z_ad / sqrt(d)``."""

    def __init__(self, config: GATConfig):
        super().__init__()
        self.config = config
        self.encoder = AdRelevanceGAT(config)

    def embed(self, data: HeteroData) -> dict[str, Tensor]:
        return self.encoder(data.x_dict, data.edge_index_dict)

    def decode(self, z: dict[str, Tensor], pairs: Tensor) -> Tensor:
        # Scaled like attention logits: an unscaled dot product makes early Adam steps overshoot.
        return (z[USER][pairs[0]] * z[AD][pairs[1]]).sum(dim=-1) / self.config.out_channels ** 0.5

    def forward(self, data: HeteroData, pairs: Tensor | None = None) -> Tensor:
        """Logits for ``pairs`` (2 x N user/ad node indices), by default the data's label pairs."""
        return self.decode(self.embed(data), data[USER_AD].edge_label_index if pairs is None else pairs)


def model_checkpoint(model: AdRelevanceModel) -> dict:
    """What gets saved: plain config + tensors, loadable with ``torch.load(weights_only=True)``."""
    return {"config": model.config.as_dict(),
            "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()}}


def load_model(checkpoint: dict) -> AdRelevanceModel:
    model = AdRelevanceModel(GATConfig.from_dict(checkpoint["config"]))
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()
