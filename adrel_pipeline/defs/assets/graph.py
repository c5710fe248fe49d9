"""Assets that turn the world into a PyG graph and a leak-free link split."""


import dagster as dg
import polars as pl
from pydantic import Field
from torch_geometric.data import HeteroData

from adrel_pipeline.defs.resources import WorldResource
from adrel_pipeline.graph import build_hetero_graph, graph_summary
from adrel_pipeline.split import SplitSpec, split_links, split_summary

GROUP = "graph"
_SPLIT = SplitSpec()


@dg.asset(group_name=GROUP, kinds={"pytorch"})
def hetero_graph(users: pl.DataFrame, items: pl.DataFrame, interaction_edges: pl.DataFrame) -> dg.Output[HeteroData]:
    """User / ad / organic-pin graph: one feature row per node, distinct edges, reverse edges added."""
    graph = build_hetero_graph(users, items, interaction_edges)
    return dg.Output(graph, metadata={
        **graph_summary(graph),
        **{f"feature_dim/{t}": int(graph[t].x.shape[1]) for t in graph.node_types},
        "duplicate_events_removed": interaction_edges.height - interaction_edges.unique().height,
    })


class LinkSplitConfig(dg.Config):
    val_fraction: float = Field(default=_SPLIT.val_fraction, description="Share of user→ad edges for validation.")
    test_fraction: float = Field(default=_SPLIT.test_fraction, description="Share of user→ad edges for test.")
    disjoint_train_ratio: float = Field(
        default=_SPLIT.disjoint_train_ratio,
        description="Share of train edges used only as supervision, hidden from message passing.",
    )
    neg_ratio: float = Field(default=_SPLIT.neg_ratio, description="Val/test negatives per positive.")

    def spec(self, seed: int) -> SplitSpec:
        return SplitSpec(val_fraction=self.val_fraction, test_fraction=self.test_fraction,
                         disjoint_train_ratio=self.disjoint_train_ratio, neg_ratio=self.neg_ratio, seed=seed)


@dg.asset(group_name=GROUP, kinds={"pytorch"})
def link_split(config: LinkSplitConfig, world: WorldResource, hetero_graph: HeteroData) -> dg.Output[dict]:
    """Train / val / test graphs, and the split's parameters (``spec``); held-out user→ad edges (and
    reverses) are hidden from message passing."""
    spec = config.spec(world.seed)
    split = split_links(hetero_graph, spec)
    summary = split_summary(split)
    return dg.Output({**split, "spec": spec.as_dict()}, metadata={
        **summary,
        **{f"{s}/positive_share": summary[f"{s}/supervision_positives"]
           / (summary[f"{s}/supervision_positives"] + summary[f"{s}/supervision_negatives"])
           for s in ("val", "test")},
    })
