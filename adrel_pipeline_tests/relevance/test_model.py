import io

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from adrel_pipeline.evaluation.metrics import auc, oracle_auc, oracle_scores
from adrel_pipeline.graph.build import AD, AD_USER, USER, USER_AD
from adrel_pipeline.graph.split import with_message_passing
from adrel_pipeline.relevance.model import load_model
from adrel_pipeline.relevance.ranking import AdRanker
from adrel_pipeline.relevance.spec import TrainConfigError, TrainSpec
from adrel_pipeline.relevance.training import predict, train_gat

FAST = TrainSpec(epochs=15, patience=15)


@pytest.fixture(scope="module")
def trained(split):
    return train_gat(split, FAST)


def test_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.4
    s = np.round(rng.random(500) + 0.3 * y, 1)  # coarse scores: many ties
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    with pytest.raises(ValueError, match="both positive and negative"):
        auc(np.ones(3), np.arange(3))


def test_oracle_is_the_ceiling(spec, world, split):
    users, items, _ = world
    test = split["test"]
    labels = test[USER_AD].edge_label
    truth = oracle_scores(spec, users, items, test)
    oracle = oracle_auc(spec, users, items, test)
    assert 0.6 < oracle < 0.9
    # Degrading the truth with noise can only lose AUC; the labels themselves score 1.0 (a leak).
    noisy = truth * np.exp(np.random.default_rng(0).normal(0, 1.0, truth.shape))
    assert auc(labels, noisy) < oracle
    assert auc(labels, labels) == 1.0 > oracle


def test_training_learns_but_stays_below_oracle(spec, world, split, trained):
    users, items, _ = world
    model = load_model(trained.checkpoint)
    test_auc = auc(split["test"][USER_AD].edge_label, predict(model, split["test"]))
    oracle = oracle_auc(spec, users, items, split["test"])
    assert test_auc > 0.6, "model failed to learn"
    assert test_auc <= oracle + 0.03, "test AUC above the Bayes ceiling: leakage"
    history = trained.history
    assert history["val_auc"][history["epoch"].index(trained.best_epoch)] == trained.best_val_auc \
        == max(history["val_auc"])
    # Epoch 0 is the wide part alone, fitted before the GAT trains: already far above chance.
    assert history["epoch"][:2] == [0, 1] and history["val_auc"][0] > 0.6


def test_training_is_deterministic(split, trained):
    again = train_gat(split, FAST)
    assert again.history == trained.history
    for k, v in trained.checkpoint["state_dict"].items():
        assert torch.equal(v, again.checkpoint["state_dict"][k]), k


def test_early_stopping_stops(split):
    result = train_gat(split, TrainSpec(epochs=50, patience=1, lr=0.5))
    assert result.epochs_run < 50
    assert result.epochs_run - result.best_epoch == 1


def test_checkpoint_loads_weights_only(split, trained):
    buf = io.BytesIO()
    torch.save(trained.to_payload(), buf)
    buf.seek(0)
    payload = torch.load(buf, weights_only=True)
    model = load_model(payload["checkpoint"])
    assert torch.equal(predict(model, split["test"]), predict(load_model(trained.checkpoint), split["test"]))


def test_scores_do_not_depend_on_which_pairs_are_scored(split, trained):
    """The pairs being scored never enter message passing: scoring them together or one by one agrees."""
    model = load_model(trained.checkpoint)
    test = split["test"]
    pairs = test[USER_AD].edge_label_index
    together = predict(model, test, pairs)
    one_by_one = torch.cat([predict(model, test, pairs[:, i:i + 1]) for i in range(20)])
    assert torch.allclose(together[:20], one_by_one)


def test_scores_read_the_message_passing_graph_which_hides_test_positives(split, trained):
    """The model's scores come from the message-passing graph it is given, so hiding the test
    positives from that graph (as the split does) is what keeps the test AUC honest."""
    model = load_model(trained.checkpoint)
    test = split["test"]
    store = test[USER_AD]
    positives = store.edge_label_index[:, store.edge_label == 1]
    pair_key = torch.tensor([[test[AD].num_nodes], [1]])  # (user, ad) -> user * num_ads + ad
    hidden = ~torch.isin((positives * pair_key).sum(0), (store.edge_index * pair_key).sum(0))
    assert hidden.all(), f"{int((~hidden).sum())} test positives are message-passing edges of the test graph"

    honest = predict(model, test)
    assert torch.equal(predict(model, test), honest)  # the same graph scores the same

    leaked = with_message_passing(test, torch.cat([store.edge_index, positives], dim=1))
    assert torch.equal(leaked[AD_USER].edge_index, leaked[USER_AD].edge_index.flip(0))
    with_leak = predict(model, leaked)
    # Every positive pair's own edge is now in the graph: each of their scores moves.
    unchanged = (with_leak == honest)[store.edge_label == 1]
    assert not unchanged.any(), f"{int(unchanged.sum())} positives score the same with their edge in the graph"
    # ... and the leak is worth AUC: the reason the split hides them.
    assert auc(store.edge_label, with_leak) > auc(store.edge_label, honest)


def test_rank_ads_sorts_candidates(graph, trained):
    ranker = AdRanker(load_model(trained.checkpoint), graph)
    user = int(graph[USER].node_id[3])
    ads = graph[AD].node_id[:25].tolist()
    ranked = ranker.rank_ads(user, ads)
    assert sorted(a for a, _ in ranked) == sorted(ads)
    probs = [p for _, p in ranked]
    assert probs == sorted(probs, reverse=True) and all(0 < p < 1 for p in probs)
    expected = ranker.score([user] * len(ads), ads).tolist()
    assert dict(ranked) == pytest.approx(dict(zip(ads, expected)))
    assert ranker.rank_ads(user, []) == []
    with pytest.raises(KeyError, match="user_id"):
        ranker.rank_ads(10**9, ads)
    organic = int(graph["non_ad"].node_id[0])
    with pytest.raises(KeyError, match="ad item_id"):
        ranker.rank_ads(user, [organic])


@pytest.mark.parametrize("field, value", [("lr", 0.0), ("heads", 0), ("dropout", 1.0), ("epochs", 0)])
def test_invalid_training_config_names_field(field, value):
    with pytest.raises(TrainConfigError, match=f"{field}={value!r} is out of range"):
        TrainSpec(**{field: value})
