"""Rules behind the graph and split checks (see :mod:`adrel_pipeline.validation` for the tables,
the model, and :class:`CheckOutcome`): one finite feature row per node, edge indices within node
counts with reverse edges mirroring forward ones, no held-out supervision edge (or its reverse)
in a message-passing graph, and the configured class balance.

A module of its own because it needs torch, and the table checks, which run in the steps that
generate the world, should not pay for importing it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch_geometric.data import HeteroData

from adrel_pipeline.graph.build import AD, AD_USER, NON_AD_USER, USER_AD, USER_NON_AD
from adrel_pipeline.outcomes import MAX_EXAMPLES, CheckOutcome, Metadata, outcome, show_examples

_SPLITS = ("train", "val", "test")
_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
# (forward, reverse) pairs whose reverse must be the flipped forward edge set.
_MIRRORED = ((USER_AD, AD_USER), (USER_NON_AD, NON_AD_USER))


def graph_features(graph: HeteroData) -> CheckOutcome:
    """Every node type has a 2-D, finite feature matrix with exactly one row per node (and per
    ``node_id``): an extra or missing row shifts every node's features, a NaN poisons the whole
    model after one message-passing step."""
    problems = []
    meta: Metadata = {}
    for node_type in graph.node_types:
        store = graph[node_type]
        x = store.get("x")
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            shape = None if not isinstance(x, torch.Tensor) else list(x.shape)
            problems.append(f"{node_type}: no 2-D feature matrix x (got shape {shape})")
            continue
        # PyG infers num_nodes from x when it is not set, so node_id is the independent witness.
        n = store.num_nodes
        ids = store.get("node_id")
        meta[f"rows/{node_type}"] = int(x.shape[0])
        meta[f"num_nodes/{node_type}"] = int(n)
        if x.shape[0] != n or (ids is not None and ids.numel() != x.shape[0]):
            problems.append(f"{node_type}: {x.shape[0]} feature rows for {n} nodes"
                            + ("" if ids is None else f" and {ids.numel()} node ids"))
        bad_rows = (~torch.isfinite(x)).any(dim=1).nonzero().flatten()
        meta[f"non_finite_rows/{node_type}"] = bad_rows.numel()
        if bad_rows.numel():
            problems.append(f"{node_type}: {bad_rows.numel()} feature rows with NaN/inf, "
                            f"{show_examples(bad_rows.tolist())}")
    return outcome(problems, f"{len(graph.node_types)} node types, one finite feature row per node", meta)


def _key_set(edge_index: torch.Tensor, num_dst: int) -> torch.Tensor:
    # int64 so that src * num_dst cannot overflow an int32 edge index.
    edge_index = edge_index.long()
    return torch.unique(edge_index[0] * num_dst + edge_index[1])


def _pairs(keys: torch.Tensor, num_dst: int) -> list[tuple[int, int]]:
    return [(int(k) // num_dst, int(k) % num_dst) for k in keys[:MAX_EXAMPLES]]


def _name(edge_type: tuple[str, str, str]) -> str:
    return "__".join(edge_type)


def graph_edge_indices(graph: HeteroData) -> CheckOutcome:
    """Every edge index is an integer ``[2, E]`` tensor within its node types' counts, and reverse
    edges mirror forward ones: an index past the node count fails deep inside message passing (a
    negative one may silently count from the end), and a reverse type that drifted from its forward
    type would let messages flow over held-out edges."""
    problems = []
    meta: Metadata = {}
    for edge_type in graph.edge_types:
        src, _, dst = edge_type
        name = _name(edge_type)
        ei = graph[edge_type].get("edge_index")
        if not isinstance(ei, torch.Tensor):
            problems.append(f"{name}: no edge_index")
            continue
        meta[f"edges/{name}"] = int(ei.shape[-1]) if ei.dim() == 2 else -1
        if ei.dim() != 2 or ei.shape[0] != 2 or ei.dtype not in _INT_DTYPES:
            problems.append(f"{name}: edge_index must be an integer [2, E] tensor, got {ei.dtype} {list(ei.shape)}")
            continue
        for row, node_type in ((0, src), (1, dst)):
            n = graph[node_type].num_nodes
            bad = ((ei[row] < 0) | (ei[row] >= n)).nonzero().flatten()
            if bad.numel():
                problems.append(f"{name}: {bad.numel()} {'source' if row == 0 else 'target'} indices outside "
                                f"[0, {n}), {show_examples(ei[row, bad].tolist())}")
    if problems:
        # Out-of-range indices make the integer keys below ambiguous: stop here.
        return CheckOutcome(False, "; ".join(problems), meta)
    for forward, reverse in _MIRRORED:
        has_fwd, has_rev = forward in graph.edge_types, reverse in graph.edge_types
        if has_fwd != has_rev:
            present, absent = (forward, reverse) if has_fwd else (reverse, forward)
            problems.append(f"{_name(present)} has no mirror edge type {_name(absent)}")
            continue
        if not has_fwd:
            continue
        num_dst = graph[forward[2]].num_nodes
        fwd = _key_set(graph[forward].edge_index, num_dst)
        rev = _key_set(graph[reverse].edge_index.flip(0), num_dst)
        only_fwd, only_rev = fwd[~torch.isin(fwd, rev)], rev[~torch.isin(rev, fwd)]
        meta[f"unmirrored/{_name(forward)}"] = only_fwd.numel() + only_rev.numel()
        if only_fwd.numel() or only_rev.numel():
            problems.append(
                f"{_name(reverse)} does not mirror {_name(forward)}: {only_fwd.numel()} forward edges without a "
                f"reverse, {show_examples(_pairs(only_fwd, num_dst))}, {only_rev.numel()} reverse edges without a "
                f"forward, {show_examples(_pairs(only_rev, num_dst))} (as ({forward[0]}, {forward[2]}) pairs)")
    return outcome(problems, f"{len(graph.edge_types)} edge types, every index within its node count, "
                              "reverse edges mirror forward ones", meta)


# --- split ----------------------------------------------------------------------------------------


def _positives(data: HeteroData) -> torch.Tensor:
    store = data[USER_AD]
    return store.edge_label_index[:, store.edge_label == 1]


def split_without_leakage(split: Mapping[str, HeteroData]) -> CheckOutcome:
    """No positive supervision edge is visible, forward or reversed, to a message-passing graph that
    must not see it: the seed notebook scored the model on edges it had passed messages over, which
    is how its AUC came out above the Bayes-optimal ceiling.

    Rules: val and test positives are not in train's graph; each split's positives (train's too) are
    not in its own graph; test positives are not in val's graph.
    """
    # Pairs are encoded as src * base + dst; base covers every ad index seen, so that an index past
    # num_nodes (graph_edge_indices' business) cannot make two pairs collide here.
    tensors = [split[s][USER_AD].edge_index[1] for s in _SPLITS] + [split[s][AD_USER].edge_index[0] for s in _SPLITS]
    tensors += [split[s][USER_AD].edge_label_index[1] for s in _SPLITS]
    base = max([int(split["train"][AD].num_nodes)] + [int(t.max()) + 1 for t in tensors if t.numel()])
    sup = {s: _key_set(_positives(split[s]), base) for s in _SPLITS}
    mp = {s: (_key_set(split[s][USER_AD].edge_index, base), _key_set(split[s][AD_USER].edge_index.flip(0), base))
          for s in _SPLITS}

    rules = {  # rule name: (supervision of, message passing of)
        "val_in_train_graph": ("val", "train"),
        "test_in_train_graph": ("test", "train"),
        "train_supervision_in_train_graph": ("train", "train"),
        "val_in_val_graph": ("val", "val"),
        "test_in_test_graph": ("test", "test"),
        "test_in_val_graph": ("test", "val"),
    }
    meta: Metadata = {f"positives/{s}": sup[s].numel() for s in _SPLITS}
    problems = []
    for rule, (labels, graph) in rules.items():
        keys = sup[labels]
        forward, reverse = torch.isin(keys, mp[graph][0]), torch.isin(keys, mp[graph][1])
        leaked = keys[forward | reverse]
        meta[f"leaked/{rule}"] = leaked.numel()
        if leaked.numel():
            problems.append(f"{leaked.numel()} {labels} positives in the {graph} message-passing graph "
                            f"({int(forward.sum())} forward, {int(reverse.sum())} reverse), "
                            f"{show_examples(_pairs(leaked, base))}")
    if problems:
        return CheckOutcome(False, "supervision leaks into message passing: " + "; ".join(problems)
                            + " (as (user, ad) pairs)", meta)
    return CheckOutcome(True, f"no leakage: {sum(s.numel() for s in sup.values())} positive supervision edges, "
                              "none (nor its reverse) in a graph that may not see it", meta)


def class_balance(split: Mapping[str, HeteroData], neg_ratio: float) -> CheckOutcome:
    """Val/test hold ``round(neg_ratio * positives)`` negatives (as :func:`split_links` draws them) and
    labels are 0/1; train supervision is positives only, its negatives being re-drawn every epoch.
    A different balance leaves AUC alone but shifts every threshold-based number."""
    problems = []
    meta: Metadata = {}
    for name in _SPLITS:
        store = split[name][USER_AD]
        label = store.edge_label
        pos, neg = int((label == 1).sum()), int((label == 0).sum())
        other = int(label.numel() - pos - neg)
        meta |= {f"{name}/positives": pos, f"{name}/negatives": neg,
                 f"{name}/positive_share": pos / max(pos + neg, 1)}
        if label.numel() != store.edge_label_index.shape[1]:
            problems.append(f"{name}: {label.numel()} labels for {store.edge_label_index.shape[1]} supervision pairs")
        if other:
            problems.append(f"{name}: {other} labels other than 0/1, "
                            f"{show_examples(label[(label != 0) & (label != 1)].tolist())}")
        if name == "train":
            if neg:
                problems.append(f"train: {neg} stored negatives, expected none (drawn per epoch)")
            continue
        if not pos:
            # An AUC over no positives is undefined.
            problems.append(f"{name}: no positive supervision edges")
        expected = round(neg_ratio * pos)  # as split_links draws them
        if neg != expected:
            problems.append(f"{name}: {neg} negatives for {pos} positives, expected round({neg_ratio} x {pos}) "
                            f"= {expected}")
    return outcome(problems, f"val/test negatives = round({neg_ratio} x positives) "
                              f"(val {meta['val/positives']}+/{meta['val/negatives']}-, "
                              f"test {meta['test/positives']}+/{meta['test/negatives']}-); "
                              f"train supervision {meta['train/positives']} positives only", meta)


# --- model ----------------------------------------------------------------------------------------
