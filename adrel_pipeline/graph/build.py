"""The interaction log as a PyG heterogeneous graph.

Node types ``user``, ``ad`` and ``non_ad`` (organic pins). Node ``i`` of a type is row ``i`` of
its feature matrix and has the original id ``node_id[i]``; ids are sorted, so the mapping is
deterministic. Features are the columns a :class:`~adrel_pipeline.graph.features.FeatureSpec`
declares (by default the synthetic world's one-hots over fixed vocabularies), encoded by
:func:`~adrel_pipeline.graph.features.encode`: never the ids, never the generator's latent activity.
The graph carries its declaration: ``cross_columns`` (user column, ad column, width of the aligned
one-hots whose product is the cross feature; width 0 without one) and ``feature_names`` (per node
type, one name per column of ``x``). Edges ``user -to-> ad`` and ``user -to-> non_ad`` are the
distinct interacting pairs, with their reverses ``rev_to`` added for message passing.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch
from torch_geometric import transforms as T
from torch_geometric.data import HeteroData

from adrel_pipeline.graph.features import FeatureSpec, encode, synthetic_features
from adrel_pipeline.world import AGE_GROUPS, INTERESTS

USER, AD, NON_AD = "user", "ad", "non_ad"
USER_AD = (USER, "to", AD)
AD_USER = (AD, "rev_to", USER)
USER_NON_AD = (USER, "to", NON_AD)
NON_AD_USER = (NON_AD, "rev_to", USER)
# The synthetic world's cross columns ([age group, main interest] one-hots per user, the category
# one-hot per ad): for graphs stored before they carried their own ``cross_columns``.
CROSS_COLUMNS = (len(AGE_GROUPS), 0, len(INTERESTS))


def cross_columns(graph: HeteroData) -> tuple[int, int, int]:
    """The graph's (user column, ad column, width) of its aligned cross one-hots; width 0: no cross."""
    return tuple(int(c) for c in graph.cross_columns) if "cross_columns" in graph else CROSS_COLUMNS


def in_degree(edge_index_dict: dict, node_type: str, num_nodes: int) -> torch.Tensor:
    """Each ``node_type`` node's degree over every edge type pointing at it (organic ones included)."""
    degree = torch.zeros(num_nodes)
    for (_, _, dst), edge_index in edge_index_dict.items():
        if dst == node_type:
            degree += torch.bincount(edge_index[1], minlength=num_nodes).float()
    return degree


def interest_matches_category(user_x: torch.Tensor, ad_x: torch.Tensor,
                              columns: tuple[int, int, int] | None = CROSS_COLUMNS) -> torch.Tensor:
    """``[N, 1]``: 1 where a user's main interest is the paired ad's category (rows aligned), from
    the aligned one-hot ``columns`` (user column, ad column, width) of their features; 0 for
    width 0 (no cross declared)."""
    if columns is None or not columns[2]:
        return user_x.new_zeros((user_x.shape[0], 1))
    user_col, ad_col, width = columns
    return (user_x[:, user_col:user_col + width] * ad_x[:, ad_col:ad_col + width]).sum(dim=1, keepdim=True)


def build_hetero_graph(users: pl.DataFrame, items: pl.DataFrame, interactions: pl.DataFrame,
                       features: FeatureSpec | None = None) -> HeteroData:
    """The graph of ``interactions`` with ``features``' columns of ``users`` and ``items`` as node
    features (default: :func:`~adrel_pipeline.graph.features.synthetic_features`)."""
    features = synthetic_features() if features is None else features
    users = users.sort("user_id")
    items = items.sort("item_id")
    encoded = encode(users, items, features)
    is_ad = items["is_ad"].to_numpy()
    ads, non_ads = items.filter(pl.col("is_ad")), items.filter(~pl.col("is_ad"))

    data = HeteroData()
    data[USER].x = torch.from_numpy(encoded.user_x)
    data[USER].node_id = torch.from_numpy(users["user_id"].to_numpy().copy())
    for node_type, table, rows in ((AD, ads, is_ad), (NON_AD, non_ads, ~is_ad)):
        data[node_type].x = torch.from_numpy(np.ascontiguousarray(encoded.item_x[rows]))
        data[node_type].node_id = torch.from_numpy(table["item_id"].to_numpy().copy())

    user_index = users.select("user_id", pl.int_range(pl.len(), dtype=pl.Int64).alias("src"))
    pairs = interactions.select("user_id", "item_id").unique().join(user_index, on="user_id", how="left")
    for edge_type, table in ((USER_AD, ads), (USER_NON_AD, non_ads)):
        item_index = table.select("item_id", pl.int_range(pl.len(), dtype=pl.Int64).alias("dst"))
        edges = pairs.join(item_index, on="item_id", how="inner").sort("src", "dst")
        if edges["src"].null_count():
            raise ValueError("interaction_edges reference user_ids that are not in users")
        data[edge_type].edge_index = torch.from_numpy(edges.select("src", "dst").to_numpy().T.copy())

    known_items = pairs.join(items.select("item_id"), on="item_id", how="anti")
    if known_items.height:
        raise ValueError(
            f"interaction_edges reference {known_items.height} item_ids that are not in items, "
            f"e.g. {known_items['item_id'].head(5).to_list()}"
        )
    data = T.ToUndirected()(data)
    # Plain tuples and lists: they survive the weights-only save of graphs (mlops.serialization).
    data.cross_columns = encoded.cross_columns
    data.feature_names = {USER: list(encoded.user_names), AD: list(encoded.item_names),
                          NON_AD: list(encoded.item_names)}
    return data


def graph_summary(data: HeteroData) -> dict[str, int]:
    """Node and edge counts per type, for metadata and logs."""
    out = {f"num_nodes/{t}": int(data[t].num_nodes) for t in data.node_types}
    out.update({f"num_edges/{'__'.join(t)}": int(data[t].edge_index.shape[1]) for t in data.edge_types})
    return out
