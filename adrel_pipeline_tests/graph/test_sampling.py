import math

import pytest
import torch

from adrel_pipeline.graph.build import AD_USER, USER, USER_AD
from adrel_pipeline.graph.sampling import CSR, NeighbourSampler, sample_neighbours
from adrel_pipeline.relevance.model import AdRelevanceModel, GATConfig
from adrel_pipeline.relevance.training import ad_user_sampler, batch_logits, embed_in_batches, node_features

# src -> dst edges over 6 sources and 5 destinations; destination 4 has no edges, 0 has five.
EDGES = torch.tensor([[0, 1, 2, 3, 4, 5, 0, 2, 5, 1, 3, 4],
                      [0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 3]])


def true_neighbours(edge_index: torch.Tensor, dst: int) -> set[int]:
    return set(edge_index[0, edge_index[1] == dst].tolist())


def test_csr_groups_sources_by_destination():
    csr = CSR.from_edge_index(EDGES, num_dst=5)
    assert csr.degree().tolist() == [5, 3, 2, 2, 0]
    for dst in range(5):
        assert set(csr.col[csr.rowptr[dst]:csr.rowptr[dst + 1]].tolist()) == true_neighbours(EDGES, dst)


@pytest.mark.parametrize("fanout", [-1, 5, 100])
def test_full_fanout_returns_exact_neighbourhoods(fanout):
    csr = CSR.from_edge_index(EDGES, num_dst=5)
    seeds = torch.tensor([3, 0, 4, 1])
    src, pos = sample_neighbours(csr, seeds, fanout, torch.Generator().manual_seed(0))
    for i, dst in enumerate(seeds.tolist()):
        got = src[pos == i].tolist()
        assert len(got) == len(set(got)) and set(got) == true_neighbours(EDGES, dst)


@pytest.mark.parametrize("fanout", [0, 1, 2, 3])
def test_fanout_returns_min_fanout_degree_distinct_true_neighbours(fanout):
    csr = CSR.from_edge_index(EDGES, num_dst=5)
    seeds = torch.arange(5)
    for draw in range(20):
        src, pos = sample_neighbours(csr, seeds, fanout, torch.Generator().manual_seed(draw))
        for dst in range(5):
            got = src[pos == dst].tolist()
            assert len(got) == len(set(got)) == min(fanout, len(true_neighbours(EDGES, dst)))
            assert set(got) <= true_neighbours(EDGES, dst)


def test_sampling_is_uniform():
    """Each neighbour of a degree-d node is kept with probability f/d: its inclusion count over n
    draws is binomial, so within 4.5 standard errors of n f/d (all 12 checks pass by chance with
    probability > 0.9999), and a sampler favouring slot order would fail it."""
    deg, fanout, draws = 12, 4, 4000
    edges = torch.stack([torch.arange(deg), torch.zeros(deg, dtype=torch.long)])
    csr = CSR.from_edge_index(edges, num_dst=1)
    generator = torch.Generator().manual_seed(0)
    counts = torch.zeros(deg)
    for _ in range(draws):
        src, _ = sample_neighbours(csr, torch.tensor([0]), fanout, generator)
        counts[src] += 1
    p = fanout / deg
    se = math.sqrt(draws * p * (1 - p))
    assert ((counts - draws * p).abs() < 4.5 * se).all(), counts.tolist()


def test_sampling_is_deterministic_given_a_generator():
    sampler = NeighbourSampler({("s", "to", "d"): EDGES}, {"s": 6, "d": 5})
    seeds = {"d": torch.tensor([0, 1, 2])}
    a = sampler.sample(seeds, [2], torch.Generator().manual_seed(3))
    b = sampler.sample(seeds, [2], torch.Generator().manual_seed(3))
    assert all(torch.equal(a.nodes[t], b.nodes[t]) for t in a.nodes)
    assert torch.equal(a.edge_index[("s", "to", "d")], b.edge_index[("s", "to", "d")])
    draws = {tuple(sampler.sample(seeds, [2], torch.Generator().manual_seed(s)).nodes["s"].tolist())
             for s in range(10)}
    assert len(draws) > 1, "the generator does not drive the draw"


def test_multi_hop_subgraph_maps_back_to_global_edges():
    """Two hops over a homogeneous graph: seeds first, every local edge is a global edge, and with
    full fan-out the second hop reaches exactly the 2-hop in-neighbourhood."""
    edge_type = ("n", "to", "n")
    edges = torch.tensor([[1, 2, 3, 4, 5, 0], [0, 0, 1, 2, 4, 5]])
    sub = NeighbourSampler({edge_type: edges}, {"n": 6}).sample({"n": torch.tensor([0])}, [-1, -1])
    nodes = sub.nodes["n"]
    assert nodes[0] == 0 and len(set(nodes.tolist())) == nodes.numel()
    global_edges = set(map(tuple, edges.T.tolist()))
    local = nodes[sub.edge_index[edge_type]]
    assert set(map(tuple, local.T.tolist())) == {(1, 0), (2, 0), (3, 1), (4, 2)}
    assert set(map(tuple, local.T.tolist())) <= global_edges


@pytest.fixture(scope="module")
def model(split):
    torch.manual_seed(0)
    model = AdRelevanceModel(GATConfig.for_graph(split["test"], hidden_channels=8, out_channels=4, heads=2,
                                                 dropout=0.0))
    with torch.no_grad():
        model.gate.fill_(1.0)  # the GAT's part counts: a zero gate would hide a wrong neighbourhood
    return model.eval()


def test_subgraph_outputs_equal_full_graph_outputs(split, model):
    """The model's receptive field is a user's ads one hop away: with all of them sampled (and
    full-graph degrees), a batch's logits equal the full graph's."""
    test = split["test"]
    pairs = test[USER_AD].edge_label_index[:, ::7]
    with torch.no_grad():
        full = model(test, pairs)
        sampled = batch_logits(model, node_features(test), ad_user_sampler(test), pairs, 0,
                               torch.Generator().manual_seed(0))
        batched = model.decode(embed_in_batches(model, test, batch_size=97), pairs)
    assert torch.allclose(sampled, full, atol=1e-5)
    assert torch.allclose(batched, full, atol=1e-5)


def test_small_fanout_changes_only_users_with_more_ads(split, model):
    """Fan-out 1 truncates the neighbourhoods of users with more than one ad, so only their logits move."""
    test = split["test"]
    pairs = test[USER_AD].edge_label_index
    degree = torch.bincount(test[AD_USER].edge_index[1], minlength=test[USER].num_nodes)[pairs[0]]
    with torch.no_grad():
        full = model(test, pairs)
        one = batch_logits(model, node_features(test), ad_user_sampler(test), pairs, 1,
                           torch.Generator().manual_seed(0))
    close = torch.isclose(one, full, atol=1e-5)
    assert close[degree <= 1].all()
    assert not close[degree > 1].all()
    assert (degree > 1).any()
