"""The batch ranking API (AdRanker.top_ads, rank_ads_batch) against the per-pair scores."""

import numpy as np
import pytest
import torch

from adrel_pipeline.graph.build import AD, USER
from adrel_pipeline.relevance import ranking
from adrel_pipeline.relevance.model import load_model
from adrel_pipeline.relevance.ranking import AdRanker
from adrel_pipeline.relevance.spec import TrainSpec
from adrel_pipeline.relevance.training import train_gat


@pytest.fixture(scope="module", params=["trained", "gated"])
def ranker(request, split, graph):
    model = load_model(train_gat(split, TrainSpec(epochs=5, patience=5)).checkpoint)
    if request.param == "gated":
        # The GAT's dot product in the scores too, whatever the short training decided for the gate.
        with torch.no_grad():
            model.gate.fill_(0.7)
    return AdRanker(model, graph)


def test_top_ads_ranks_every_ad_by_the_per_pair_probability(ranker, graph):
    users = graph[USER].node_id[:30].tolist()
    ads = graph[AD].node_id
    ids, probs = ranker.top_ads(users)
    assert ids.shape == probs.shape == (30, ads.numel()) and ids.dtype == torch.int64
    for row, user in enumerate(users):
        assert sorted(ids[row].tolist()) == sorted(ads.tolist())
        per_pair = ranker.score([user] * ads.numel(), ids[row].tolist())
        # Same probabilities as the per-pair path, to float32 rounding; best first by it too.
        np.testing.assert_allclose(probs[row].numpy(), per_pair.numpy(), rtol=1e-6, atol=1e-7)
        assert (per_pair[:-1] >= per_pair[1:] - 1e-6).all()
        # Non-increasing, equal probabilities by ascending ad id.
        p, a = probs[row], ids[row]
        assert (p[:-1] >= p[1:]).all()
        assert (a[:-1][p[:-1] == p[1:]] < a[1:][p[:-1] == p[1:]]).all()


def test_top_k_is_the_head_of_the_full_ranking_in_any_blocks(ranker, graph, monkeypatch):
    users = graph[USER].node_id[:40].tolist()
    ids, probs = ranker.top_ads(users)
    top, top_probs = ranker.top_ads(users, k=7)
    assert torch.equal(top, ids[:, :7]) and torch.equal(top_probs, probs[:, :7])
    assert torch.equal(ranker.top_ads(users, k=7)[0], top), "the same call, the same result"
    # Small blocks, users in another order: each user's ranking stays the same (the probabilities to
    # float32 rounding: matrix products of other shapes may sum in another order).
    monkeypatch.setattr(ranking, "BLOCK_CELLS", 3 * graph[AD].num_nodes)
    order = list(range(39, -1, -3))
    again, again_probs = ranker.top_ads([users[i] for i in order], k=50)
    assert torch.equal(again, ids[order, :50])
    np.testing.assert_allclose(again_probs.numpy(), probs[order, :50].numpy(), rtol=1e-6)


def test_rank_ads_batch_ranks_each_users_candidates(ranker, graph):
    users = graph[USER].node_id[5:12].tolist()
    candidates = graph[AD].node_id[[30, 2, 17, 2, 90, 41]].tolist()  # ad 2 listed twice
    ids, probs = ranker.rank_ads_batch(users, candidates)
    for row, user in enumerate(users):
        one = ranker.rank_ads(user, candidates)
        assert [a for a, _ in one] == ids[row].tolist()
        np.testing.assert_allclose([p for _, p in one], probs[row].numpy(), rtol=1e-6)
        assert sorted(ids[row].tolist()) == sorted(candidates)
        full_ids, _ = ranker.top_ads([user])
        keep = np.isin(full_ids[0].numpy(), candidates)
        # The candidates in the order of the full ranking (a duplicate beside its twin).
        assert list(dict.fromkeys(ids[row].tolist())) == full_ids[0][keep].tolist()
    assert ranker.rank_ads(users[0], []) == []
    with pytest.raises(KeyError, match="user_id"):
        ranker.top_ads([10**9])
    with pytest.raises(KeyError, match="ad item_id"):
        ranker.rank_ads_batch(users, [int(graph["non_ad"].node_id[0])])
