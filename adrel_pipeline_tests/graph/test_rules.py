"""The graph and split rules: each passes on the real graph and split and fails, naming the problem,
on a corrupted copy. Session fixtures are never mutated: graphs are shallow-copied (PyG copies the
stores) and tensors replaced, not edited in place."""

import copy
import math

import pytest
import torch
from torch_geometric.data import HeteroData

from adrel_pipeline.graph import rules as gv
from adrel_pipeline.graph.build import AD, AD_USER, NON_AD, NON_AD_USER, USER, USER_AD, USER_NON_AD
from adrel_pipeline_tests.helpers import assert_fails, assert_passes, assert_scalar_metadata

# --- graph ----------------------------------------------------------------------------------------


def test_graph_features_pass_on_the_graph(graph):
    outcome = gv.graph_features(graph)
    assert_passes(outcome)
    assert_scalar_metadata(outcome)
    assert outcome.metadata["rows/user"] == graph[USER].num_nodes


def test_graph_features_reject_an_extra_row(graph):
    bad = copy.copy(graph)
    bad[AD].x = torch.cat([graph[AD].x, graph[AD].x[:1]])
    n = graph[AD].num_nodes
    assert_fails(gv.graph_features(bad), f"ad: {n + 1} feature rows for {n + 1} nodes and {n} node ids")
    assert graph[AD].x.shape[0] == n  # the fixture is untouched


def test_graph_features_reject_nan_and_inf(graph):
    bad = copy.copy(graph)
    x = graph[USER].x.clone()
    x[7, 0], x[9, 2] = math.nan, math.inf
    bad[USER].x = x
    outcome = gv.graph_features(bad)
    assert_fails(outcome, "user: 2 feature rows with NaN/inf, e.g. [7, 9]")
    assert outcome.metadata["non_finite_rows/user"] == 2
    assert torch.isfinite(graph[USER].x).all()


def test_graph_features_reject_a_one_dimensional_x(graph):
    bad = copy.copy(graph)
    bad[NON_AD].x = graph[NON_AD].x[:, 0].clone()
    assert_fails(gv.graph_features(bad), "non_ad: no 2-D feature matrix x")


def test_graph_edge_indices_pass_on_the_graph_and_every_split(graph, split):
    for data in (graph, *split.values()):
        outcome = gv.graph_edge_indices(data)
        assert_passes(outcome)
        assert_scalar_metadata(outcome)
    assert outcome.metadata["edges/user__to__ad"] == split["test"][USER_AD].edge_index.shape[1]


def _with_edge_index(graph, edge_type, edge_index):
    bad = copy.copy(graph)
    bad[edge_type].edge_index = edge_index
    return bad


def test_graph_edge_indices_reject_an_index_equal_to_num_nodes(graph):
    ei = graph[USER_AD].edge_index.clone()
    n_ads = graph[AD].num_nodes
    ei[1, 3] = n_ads
    outcome = gv.graph_edge_indices(_with_edge_index(graph, USER_AD, ei))
    assert_fails(outcome, f"user__to__ad: 1 target indices outside [0, {n_ads}), e.g. [{n_ads}]")


def test_graph_edge_indices_reject_a_negative_index(graph):
    ei = graph[NON_AD_USER].edge_index.clone()
    ei[1, 0] = -1
    outcome = gv.graph_edge_indices(_with_edge_index(graph, NON_AD_USER, ei))
    assert_fails(outcome, "non_ad__rev_to__user: 1 target indices outside", "e.g. [-1]")


def test_graph_edge_indices_reject_a_float_or_misshapen_index(graph):
    ei = graph[USER_NON_AD].edge_index
    assert_fails(gv.graph_edge_indices(_with_edge_index(graph, USER_NON_AD, ei.float())),
                 "user__to__non_ad: edge_index must be an integer [2, E] tensor", "torch.float32")
    assert_fails(gv.graph_edge_indices(_with_edge_index(graph, USER_NON_AD, ei.t().contiguous())),
                 "user__to__non_ad: edge_index must be an integer [2, E] tensor")


def test_graph_edge_indices_reject_reverse_edges_that_do_not_mirror(graph):
    rev = graph[AD_USER].edge_index
    first = graph[USER_AD].edge_index[:, 0].tolist()
    # Drop one reverse edge: its forward edge has no mirror.
    outcome = gv.graph_edge_indices(_with_edge_index(graph, AD_USER, rev[:, 1:].clone()))
    assert_fails(outcome, "ad__rev_to__user does not mirror user__to__ad", "1 forward edges without a reverse",
                 str(tuple(first)))
    assert outcome.metadata["unmirrored/user__to__ad"] == 1
    # A same-sized reverse over different pairs fails as well.
    shifted = graph[NON_AD_USER].edge_index.clone()
    shifted[0] = (shifted[0] + 1) % graph[NON_AD].num_nodes
    assert_fails(gv.graph_edge_indices(_with_edge_index(graph, NON_AD_USER, shifted)),
                 "non_ad__rev_to__user does not mirror user__to__non_ad")


def test_graph_edge_indices_reject_a_missing_reverse_type():
    small = HeteroData()
    small[USER].x = torch.zeros(3, 2)
    small[AD].x = torch.zeros(2, 2)
    small[USER_AD].edge_index = torch.tensor([[0, 2], [1, 0]])
    assert_fails(gv.graph_edge_indices(small), "user__to__ad has no mirror edge type ad__rev_to__user")
    small[AD_USER].edge_index = torch.tensor([[1, 0], [0, 2]])
    assert_passes(gv.graph_edge_indices(small))


# --- split ----------------------------------------------------------------------------------------


def _positives(data):
    store = data[USER_AD]
    return store.edge_label_index[:, store.edge_label == 1]


def _with_extra_message_passing(split, name, edges, forward=True, reverse=True):
    """A copy of ``split`` whose ``name`` graph also passes messages over ``edges`` (user, ad)."""
    data = copy.copy(split[name])
    if forward:
        data[USER_AD].edge_index = torch.cat([split[name][USER_AD].edge_index, edges], dim=1)
    if reverse:
        data[AD_USER].edge_index = torch.cat([split[name][AD_USER].edge_index, edges.flip(0)], dim=1)
    return {**split, name: data}


def test_split_without_leakage_passes_on_the_split(split):
    outcome = gv.split_without_leakage(split)
    assert_passes(outcome)
    assert_scalar_metadata(outcome)
    assert all(outcome.metadata[k] == 0 for k in outcome.metadata if k.startswith("leaked/"))
    assert outcome.metadata["positives/test"] == int(split["test"][USER_AD].edge_label.sum())


@pytest.mark.parametrize("forward, reverse, counts", [(True, False, "1 forward, 0 reverse"),
                                                      (False, True, "0 forward, 1 reverse")])
def test_split_without_leakage_catches_a_test_positive_in_train_message_passing(split, forward, reverse, counts):
    edge = _positives(split["test"])[:, :1]
    user, ad = edge[:, 0].tolist()
    outcome = gv.split_without_leakage(_with_extra_message_passing(split, "train", edge, forward, reverse))
    assert_fails(outcome, f"1 test positives in the train message-passing graph ({counts}), e.g. [({user}, {ad})]")
    assert outcome.metadata["leaked/test_in_train_graph"] == 1
    assert sum(x for k, x in outcome.metadata.items() if k.startswith("leaked/")) == 1
    # The fixture is untouched.
    assert_passes(gv.split_without_leakage(split))


def test_split_without_leakage_catches_a_val_positive_in_its_own_graph(split):
    edges = _positives(split["val"])[:, :2]
    outcome = gv.split_without_leakage(_with_extra_message_passing(split, "val", edges))
    assert_fails(outcome, "2 val positives in the val message-passing graph (2 forward, 2 reverse)")
    assert outcome.metadata["leaked/val_in_val_graph"] == 2


def test_split_without_leakage_catches_test_positives_in_val_and_train_supervision_in_train(split):
    outcome = gv.split_without_leakage(_with_extra_message_passing(split, "val", _positives(split["test"])[:, :1]))
    assert_fails(outcome, "1 test positives in the val message-passing graph")
    assert outcome.metadata["leaked/test_in_val_graph"] == 1
    outcome = gv.split_without_leakage(_with_extra_message_passing(split, "train", _positives(split["train"])[:, :3],
                                                                  reverse=False))
    assert_fails(outcome, "3 train positives in the train message-passing graph (3 forward, 0 reverse)")
    assert outcome.metadata["leaked/train_supervision_in_train_graph"] == 3


def test_class_balance_passes_on_the_split(split):
    outcome = gv.class_balance(split, neg_ratio=1.0)
    assert_passes(outcome)
    assert_scalar_metadata(outcome)
    for name in ("val", "test"):
        assert outcome.metadata[f"{name}/negatives"] == outcome.metadata[f"{name}/positives"] > 0
        assert outcome.metadata[f"{name}/positive_share"] == 0.5
    assert outcome.metadata["train/negatives"] == 0


def _with_labels(split, name, keep=None, label=None):
    data = copy.copy(split[name])
    store = split[name][USER_AD]
    index, labels = store.edge_label_index, store.edge_label if label is None else label
    if keep is not None:
        index, labels = index[:, keep], labels[keep]
    data[USER_AD].edge_label_index, data[USER_AD].edge_label = index, labels
    return {**split, name: data}


@pytest.mark.parametrize("name", ["val", "test"])
def test_class_balance_catches_a_dropped_negative(split, name):
    labels = split[name][USER_AD].edge_label
    keep = torch.ones(labels.numel(), dtype=torch.bool)
    keep[int((labels == 0).nonzero()[0])] = False
    pos = int(labels.sum())
    outcome = gv.class_balance(_with_labels(split, name, keep=keep), neg_ratio=1.0)
    assert_fails(outcome, f"{name}: {pos - 1} negatives for {pos} positives, expected round(1.0 x {pos}) = {pos}")
    assert outcome.metadata[f"{name}/negatives"] == pos - 1
    other = "test" if name == "val" else "val"
    assert other + ":" not in outcome.description  # only the corrupted split is blamed
    assert split[name][USER_AD].edge_label.numel() == labels.numel()  # the fixture is untouched


def test_class_balance_catches_a_ratio_other_than_configured(split):
    assert_fails(gv.class_balance(split, neg_ratio=2.0), "val: ", "expected round(2.0 x")


def test_class_balance_catches_labels_other_than_zero_and_one_and_train_negatives(split):
    label = split["val"][USER_AD].edge_label.clone()
    label[0] = 2.0
    assert_fails(gv.class_balance(_with_labels(split, "val", label=label), neg_ratio=1.0),
                 "val: 1 labels other than 0/1, e.g. [2.0]")
    train_label = split["train"][USER_AD].edge_label.clone()
    train_label[:4] = 0.0
    assert_fails(gv.class_balance(_with_labels(split, "train", label=train_label), neg_ratio=1.0),
                 "train: 4 stored negatives, expected none")
    assert split["train"][USER_AD].edge_label.min() == 1.0


