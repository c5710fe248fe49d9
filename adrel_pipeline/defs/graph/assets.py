"""Assets that turn a window of days into a PyG graph and a leak-free link split (one per day).

Modules that import torch are imported inside the asset bodies: loading the code location
(each CLI command, the webserver, the daemon) then costs ~1 s instead of ~5 s.
"""

import dagster as dg
import polars as pl

from adrel_pipeline.defs.shared import checks
from adrel_pipeline.defs.shared.checks import Check
from adrel_pipeline.defs.shared.params import config_for
from adrel_pipeline.defs.shared.partitions import daily, window_days, window_mapping
from adrel_pipeline.defs.shared.resources import WorldResource
from adrel_pipeline.defs.shared.source import DataSource
from adrel_pipeline.graph.spec import SplitSpec
from adrel_pipeline.mlops.code_version import asset_code_version

GROUP = "graph"
WINDOW_DAYS = window_days()

GRAPH_CHECKS = [
    Check("one_feature_row_per_node", "Every node type has exactly one finite feature row per node."),
    Check("edge_indices_within_node_counts",
          "Every edge index points at an existing node; reverse edges mirror forward ones."),
]


@dg.asset(group_name=GROUP, kinds={"pytorch"}, partitions_def=daily, code_version=asset_code_version("hetero_graph"),
          ins={"interaction_edges": dg.AssetIn(partition_mapping=window_mapping(WINDOW_DAYS))},
          check_specs=checks.specs("hetero_graph", GRAPH_CHECKS, daily),
          description=f"User / ad / organic-pin graph of the {WINDOW_DAYS} days of interactions ending at the "
                      "partition's day: one feature row per node, distinct edges, reverse edges added.")
def hetero_graph(world: WorldResource, source: DataSource, users: pl.DataFrame, items: pl.DataFrame,
                 interaction_edges: pl.DataFrame):
    from adrel_pipeline.graph import rules as validation
    from adrel_pipeline.graph.build import build_hetero_graph, graph_summary

    # The features the data source declares (the synthetic world's: age group, interest, category).
    features = source.open(world.spec()).features
    graph = build_hetero_graph(users, items, interaction_edges, features)
    days = interaction_edges["day"].unique().sort()
    pairs = interaction_edges.select("user_id", "item_id")
    yield from checks.emit(dg.Output(graph, metadata={
        **graph_summary(graph),
        **{f"feature_dim/{t}": int(graph[t].x.shape[1]) for t in graph.node_types},
        "features": dg.MetadataValue.json({**graph.feature_names, "cross": features.as_dict()["cross"]}),
        "window_start": str(days.min()), "window_end": str(days.max()), "window_days": days.len(),
        "interactions": interaction_edges.height,
        "duplicate_events_removed": pairs.height - pairs.unique().height,
    }), GRAPH_CHECKS, {
        "one_feature_row_per_node": validation.graph_features(graph),
        "edge_indices_within_node_counts": validation.graph_edge_indices(graph),
    })


LinkSplitConfig = config_for(SplitSpec, "LinkSplitConfig")


SPLIT_CHECKS = [
    Check("no_supervision_leakage",
          "No val/test positive (or its reverse) is in the training message-passing graph, and no split's "
          "positives are in its own message-passing graph."),
    Check("class_balance_as_configured", "Val/test hold round(neg_ratio x positives) negatives; labels are 0/1."),
]


@dg.asset(group_name=GROUP, kinds={"pytorch"}, partitions_def=daily, code_version=asset_code_version("link_split"),
          check_specs=checks.specs("link_split", SPLIT_CHECKS, daily))
def link_split(config: LinkSplitConfig, world: WorldResource, hetero_graph):
    """Train / val / test graphs (``HeteroData``), and the split's parameters (``spec``); held-out
    user→ad edges (and reverses) are hidden from message passing."""
    from adrel_pipeline.graph import rules as validation
    from adrel_pipeline.graph.split import split_links, split_summary

    spec = config.spec(seed=world.seed)
    split = split_links(hetero_graph, spec)
    summary = split_summary(split)
    yield from checks.emit(dg.Output({**split, "spec": spec.as_dict()}, metadata={
        **summary,
        **{f"{s}/positive_share": summary[f"{s}/supervision_positives"]
           / (summary[f"{s}/supervision_positives"] + summary[f"{s}/supervision_negatives"])
           for s in ("val", "test")},
    }), SPLIT_CHECKS, {
        "no_supervision_leakage": validation.split_without_leakage(split),
        "class_balance_as_configured": validation.class_balance(split, spec.neg_ratio),
    })
