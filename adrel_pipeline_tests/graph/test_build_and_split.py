import polars as pl
import pytest
import torch

from adrel_pipeline.graph.build import AD, AD_USER, NON_AD, NON_AD_USER, USER, USER_AD, USER_NON_AD, build_hetero_graph
from adrel_pipeline.graph.spec import SplitConfigError, SplitSpec
from adrel_pipeline.graph.split import sample_negatives, split_links
from adrel_pipeline.world import INTERESTS


def keys(edge_index, num_dst):
    return set((edge_index[0] * num_dst + edge_index[1]).tolist())


def test_one_feature_row_per_node_aligned_with_ids(world, graph):
    users, items, _ = world
    assert graph[USER].x.shape == (users.height, 4 + 7)
    assert graph[AD].x.shape == (int(items["is_ad"].sum()), 7)
    assert graph[NON_AD].x.shape == (int((~items["is_ad"]).sum()), 7)
    for t in (USER, AD, NON_AD):
        assert graph[t].x.shape[0] == graph[t].num_nodes == graph[t].node_id.numel()
        # One-hot only: no id column, no latent activity.
        assert set(graph[t].x.unique().tolist()) <= {0.0, 1.0}
    # Row i is the node whose id is node_id[i]: its one-hot interest matches the table.
    interest = users.sort("user_id")["main_interest"].to_list()
    decoded = [INTERESTS[j] for j in graph[USER].x[:, 4:].argmax(1).tolist()]
    assert decoded == interest
    ads = items.filter(pl.col("is_ad")).sort("item_id")
    assert graph[AD].node_id.tolist() == ads["item_id"].to_list()
    assert [INTERESTS[j] for j in graph[AD].x.argmax(1).tolist()] == ads["category"].to_list()


def test_edges_are_distinct_pairs_with_reverses(world, graph):
    _users, items, inter = world
    pairs = inter.select("user_id", "item_id").unique().join(items, on="item_id")
    assert graph[USER_AD].edge_index.shape[1] == int(pairs["is_ad"].sum())
    assert graph[USER_NON_AD].edge_index.shape[1] == int((~pairs["is_ad"]).sum())
    assert inter.height > inter.select("user_id", "item_id").unique().height  # the log has repeats to remove
    assert torch.equal(graph[AD_USER].edge_index, graph[USER_AD].edge_index.flip(0))
    assert torch.equal(graph[NON_AD_USER].edge_index, graph[USER_NON_AD].edge_index.flip(0))


def test_unknown_ids_are_rejected(world):
    users, items, inter = world
    bad = pl.concat([inter.select("user_id", "item_id"), pl.DataFrame({"user_id": [0], "item_id": [10**9]})])
    with pytest.raises(ValueError, match="item_ids that are not in items"):
        build_hetero_graph(users, items, bad)


def test_split_partitions_edges_and_hides_supervision(graph, split):
    n_ads = graph[AD].num_nodes
    all_edges = keys(graph[USER_AD].edge_index, n_ads)
    sup = {s: keys(split[s][USER_AD].edge_label_index[:, split[s][USER_AD].edge_label == 1], n_ads)
           for s in ("train", "val", "test")}
    assert sup["train"] | sup["val"] | sup["test"] | keys(split["train"][USER_AD].edge_index, n_ads) == all_edges
    for s in ("train", "val", "test"):
        mp = keys(split[s][USER_AD].edge_index, n_ads)
        rev = keys(split[s][AD_USER].edge_index.flip(0), n_ads)
        assert mp == rev
        hidden = sup[s] | (sup["test"] if s != "test" else set()) | (sup["val"] if s == "train" else set())
        assert not mp & hidden, f"{s}: held-out supervision edges visible to message passing"
    assert not sup["val"] & sup["test"]
    # val sees all train edges, test sees train + val (PyG's convention)
    assert keys(split["val"][USER_AD].edge_index, n_ads) == all_edges - sup["val"] - sup["test"]
    assert keys(split["test"][USER_AD].edge_index, n_ads) == all_edges - sup["test"]


def test_negatives_are_real_non_edges_and_balanced(graph, split):
    n_users, n_ads = graph[USER].num_nodes, graph[AD].num_nodes
    all_edges = keys(graph[USER_AD].edge_index, n_ads)
    for s in ("val", "test"):
        store = split[s][USER_AD]
        neg = store.edge_label_index[:, store.edge_label == 0]
        assert neg[0].max() < n_users and neg[1].max() < n_ads and neg.min() >= 0
        assert not keys(neg, n_ads) & all_edges
        assert int(store.edge_label.sum()) == neg.shape[1]


def test_split_is_deterministic(graph, split):
    again = split_links(graph, SplitSpec(seed=0))
    other = split_links(graph, SplitSpec(seed=1))
    for s in ("train", "val", "test"):
        assert torch.equal(again[s][USER_AD].edge_label_index, split[s][USER_AD].edge_label_index)
    assert not torch.equal(other["test"][USER_AD].edge_label_index, split["test"][USER_AD].edge_label_index)


def test_sample_negatives_excludes_and_is_distinct():
    exclude = torch.tensor([[0, 0, 1], [0, 1, 0]])
    neg = sample_negatives(2, 3, 3, exclude, torch.Generator().manual_seed(0))
    assert sorted(keys(neg, 3)) == [2, 4, 5]  # the only three non-edges of a 2 x 3 grid
    with pytest.raises(ValueError, match="cannot draw 4 negatives"):
        sample_negatives(2, 3, 4, exclude, torch.Generator())


@pytest.mark.parametrize("field, value", [("val_fraction", 0.0), ("test_fraction", 0.6),
                                          ("disjoint_train_ratio", 1.0), ("neg_ratio", 0.0)])
def test_invalid_split_names_field(field, value):
    with pytest.raises(SplitConfigError, match=f"{field}={value!r} is out of range"):
        SplitSpec(**{field: value})
