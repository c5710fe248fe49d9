"""A leak-free user→ad link split, following PyG's ``RandomLinkSplit`` conventions.

The distinct user→ad edges are shuffled into train / val / test. Message passing sees:

* train: the train edges minus a disjoint set of train *supervision* edges (so the model is
  scored on links it cannot see, which stops it from memorising them; training re-draws
  this disjoint subset every epoch, see :func:`adrel_pipeline.training.train_gat`);
* val:   all train edges;
* test:  train and val edges.

Reverse edges (``ad -rev_to-> user``) always mirror the forward ones. Organic user→non_ad
edges are never supervised and stay in every graph. Val/test negatives are uniform random
(user, ad) pairs among real nodes that are not edges of the full graph; train negatives are
drawn fresh every epoch by :func:`sample_negatives`.
"""

from __future__ import annotations

import copy

import polars as pl
import torch
from torch_geometric.data import HeteroData

from adrel_pipeline.graph.build import AD, AD_USER, USER, USER_AD
from adrel_pipeline.graph.spec import SplitSpec

SPLITS = ("train", "val", "test")


def _keys(edge_index: torch.Tensor, num_dst: int) -> torch.Tensor:
    return edge_index[0] * num_dst + edge_index[1]


def sample_negatives(
    num_src: int,
    num_dst: int,
    count: int,
    exclude: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """``count`` distinct (src, dst) pairs drawn uniformly among pairs not in ``exclude``.

    ``exclude`` is a 2 x E edge index. Rejection sampling: the graphs here are sparse, so a
    couple of rounds suffice.
    """
    total = num_src * num_dst
    excluded = torch.unique(_keys(exclude, num_dst))
    if count > total - excluded.numel():
        raise ValueError(f"cannot draw {count} negatives: only {total - excluded.numel()} non-edges exist")
    chosen = torch.empty(0, dtype=torch.long)
    while chosen.numel() < count:
        need = count - chosen.numel()
        draw = torch.randint(0, total, (int(need * 1.2) + 16,), generator=generator)
        draw = torch.unique(draw[~torch.isin(draw, excluded) & ~torch.isin(draw, chosen)])
        # unique() sorts; shuffle again so that truncating to `need` stays uniform.
        draw = draw[torch.randperm(draw.numel(), generator=generator)][:need]
        chosen = torch.cat([chosen, draw])
    return torch.stack([chosen // num_dst, chosen % num_dst])


def with_message_passing(graph: HeteroData, edges: torch.Tensor) -> HeteroData:
    """A shallow copy of ``graph`` whose user→ad message-passing edges (and reverses) are ``edges``."""
    data = copy.copy(graph)
    data[USER_AD].edge_index = edges
    data[AD_USER].edge_index = edges.flip(0)
    return data


def without_labels(data: HeteroData) -> HeteroData:
    """``data``'s graph without its supervision pairs: what a model sees when scoring."""
    graph = with_message_passing(data, data[USER_AD].edge_index)
    for key in ("edge_label_index", "edge_label"):
        if key in graph[USER_AD]:
            del graph[USER_AD][key]
    return graph


def _with_edges(graph: HeteroData, message_passing: torch.Tensor, label_index: torch.Tensor,
                label: torch.Tensor) -> HeteroData:
    data = with_message_passing(graph, message_passing)
    data[USER_AD].edge_label_index = label_index
    data[USER_AD].edge_label = label
    return data


def split_links(graph: HeteroData, spec: SplitSpec) -> dict[str, HeteroData]:
    """Split ``graph``'s user→ad edges into train / val / test graphs (see module docstring)."""
    generator = torch.Generator().manual_seed(spec.seed)
    edges = graph[USER_AD].edge_index
    num_users, num_ads = graph[USER].num_nodes, graph[AD].num_nodes
    num_edges = edges.shape[1]
    n_val = int(spec.val_fraction * num_edges)
    n_test = int(spec.test_fraction * num_edges)
    n_train = num_edges - n_val - n_test
    if min(n_val, n_test) < 1 or n_train < 2:
        raise ValueError(f"too few user→ad edges ({num_edges}) to split into train, val and test")

    perm = torch.randperm(num_edges, generator=generator)
    train_e = edges[:, perm[:n_train]]
    val_e = edges[:, perm[n_train:n_train + n_val]]
    test_e = edges[:, perm[n_train + n_val:]]

    n_sup = min(max(round(spec.disjoint_train_ratio * n_train), 1), n_train - 1)
    train_mp, train_sup = train_e[:, : n_train - n_sup], train_e[:, n_train - n_sup:]

    def labelled(pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        neg = sample_negatives(num_users, num_ads, round(spec.neg_ratio * pos.shape[1]), edges, generator)
        label = torch.cat([torch.ones(pos.shape[1]), torch.zeros(neg.shape[1])])
        return torch.cat([pos, neg], dim=1), label

    return {
        # Train supervision is positives only: negatives are sampled fresh each epoch.
        "train": _with_edges(graph, train_mp, train_sup, torch.ones(train_sup.shape[1])),
        "val": _with_edges(graph, train_e, *labelled(val_e)),
        "test": _with_edges(graph, torch.cat([train_e, val_e], dim=1), *labelled(test_e)),
    }


def split_summary(split: dict[str, HeteroData]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in SPLITS:
        store = split[name][USER_AD]
        out[f"{name}/message_passing_edges"] = int(store.edge_index.shape[1])
        out[f"{name}/supervision_positives"] = int(store.edge_label.sum())
        out[f"{name}/supervision_negatives"] = int((store.edge_label == 0).sum())
    return out


def next_day_pairs(window: HeteroData, next_day: pl.DataFrame, neg_ratio: float,
                   seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Labelled (user, ad) node-index pairs for scoring a window's model forward in time.

    Positives: the distinct user→ad pairs of ``next_day``'s interactions that are *new*: not an
    edge of ``window`` (message passing or held-out labels alike) and between nodes the window's
    graph has. Negatives: ``round(neg_ratio × positives)`` uniform user × ad pairs that are neither a
    window edge nor a next-day pair. Returns ``(pairs [2, N], labels [N])``; empty when the day
    brings no new pair.
    """
    store = window[USER_AD]
    known = [store.edge_index]
    if "edge_label_index" in store:
        known.append(store.edge_label_index[:, store.edge_label.bool()])
    known = torch.cat(known, dim=1)
    user_row = {int(u): i for i, u in enumerate(window[USER].node_id.tolist())}
    ad_row = {int(a): i for i, a in enumerate(window[AD].node_id.tolist())}
    pairs = next_day.select("user_id", "item_id").unique()
    rows = [(user_row[u], ad_row[a]) for u, a in pairs.iter_rows() if u in user_row and a in ad_row]
    if not rows:
        return torch.empty((2, 0), dtype=torch.long), torch.empty(0)
    candidates = torch.tensor(rows, dtype=torch.long).T
    num_ads = window[AD].num_nodes
    is_new = ~torch.isin(_keys(candidates, num_ads), _keys(known, num_ads))
    positives = candidates[:, is_new]
    positives = positives[:, torch.argsort(_keys(positives, num_ads))]  # deterministic order
    generator = torch.Generator().manual_seed(seed)
    negatives = sample_negatives(window[USER].num_nodes, num_ads, round(neg_ratio * positives.shape[1]),
                                 torch.cat([known, candidates], dim=1), generator)
    labels = torch.cat([torch.ones(positives.shape[1]), torch.zeros(negatives.shape[1])])
    return torch.cat([positives, negatives], dim=1), labels
