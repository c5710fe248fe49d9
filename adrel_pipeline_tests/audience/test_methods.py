"""The expansion methods: the blog's sample weights, LSH, the multi-head NN, the regression, top-k."""

import math

import numpy as np
import pytest
import torch

from adrel_pipeline.audience.methods import (
    LSHIndex,
    MultiHeadMLP,
    head_rows,
    head_seed,
    lr_scores,
    lsh_scores,
    sample_weights,
    score_heads,
    top_k,
    train_heads,
)
from adrel_pipeline.audience.spec import AudienceSpec
from adrel_pipeline.evaluation.metrics import auc

E = math.e


def test_sample_weights_follow_the_blogs_transform():
    # impressions 1, e, e^2 -> log 0, 1, 2 -> min-max 0, .5, 1.
    # CTR = clicks / impressions = 1e-6, e*1e-6/e = 1e-6 ... chosen so CTR x 1e6 = 1, e, e^2:
    #   clicks = [1e-6 * 1, 1e-6 * e * e, 1e-6 * e^2 * e^2] -> log(CTR x 1e6) 0, 1, 2 -> 0, .5, 1.
    impressions = np.array([1.0, E, E**2])
    clicks = 1e-6 * np.array([1.0, E, E**2]) * impressions
    np.testing.assert_allclose(sample_weights(impressions, clicks), [0.0, 0.5, 1.0])
    # Reversed CTR: the two metrics cancel to 0.5 each.
    np.testing.assert_allclose(sample_weights(impressions, clicks[::-1] / impressions[::-1] * impressions),
                               [0.5, 0.5, 0.5])


def test_sample_weights_guard_log_zero_and_constant_metrics():
    # Impressions 100 for all (constant -> 1); CTR 0 -> x1e6 = 0 -> floor log 1 = 0; CTR 0.5 -> log 5e5.
    w = sample_weights([100, 100, 100], [0, 50, 0])
    np.testing.assert_allclose(w, [(1 + 0) / 2, (1 + 1) / 2, (1 + 0) / 2])
    # No engagement columns (uploads without them: impressions 1, clicks 0): everyone weighs 1.
    np.testing.assert_allclose(sample_weights([1, 1], [0, 0]), [1.0, 1.0])
    assert np.isfinite(sample_weights([0, 5], [0, 0])).all()


def unit_rows(n, dim, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, dim))
    return torch.tensor(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=torch.float32)


def test_lsh_identical_users_collide_in_every_table_and_score_equal():
    x = unit_rows(200, 8)
    x[7] = x[3]
    index = LSHIndex(x, tables=6, bits=5, seed=0)
    np.testing.assert_array_equal(index.buckets[7], index.buckets[3])
    assert index.population.sum() == 200 * 6
    scores = index.scores(np.array([10, 20, 30]))
    assert scores[7] == scores[3]
    np.testing.assert_array_equal(scores, lsh_scores(x, np.array([10, 20, 30]), 6, 5, 0))


def test_lsh_ranks_a_seed_clusters_neighbours_above_far_users():
    rng = np.random.default_rng(1)
    center = np.eye(16)[0]
    near = center + 0.15 * rng.standard_normal((100, 16))
    far = rng.standard_normal((900, 16))
    x = np.vstack([near, far])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    scores = LSHIndex(x, tables=16, bits=8, seed=0).scores(np.arange(20))  # 20 of the cluster
    labels = np.r_[np.ones(80), np.zeros(900)]
    assert auc(labels, scores[20:]) > 0.95


def planted(n=3000, dim=8, seed=0):
    """Users on the sphere; head h's audience is a cap around its own direction."""
    x = unit_rows(n, dim, seed)
    directions = unit_rows(4, dim, seed + 1)
    affinity = (x @ directions.T).T.numpy()  # (4, n)
    return x, affinity


SPEC = AudienceSpec(hidden_units=8, nn_epochs=60, nn_lr=0.03, min_negatives=200, negatives_per_positive=3.0)


def test_multi_head_training_learns_each_planted_rule_on_held_out_users():
    x, affinity = planted()
    audience = affinity > 0.6
    train_mask = np.arange(len(x)) < 2000
    positives = [np.flatnonzero(a & train_mask) for a in audience]
    state, history = train_heads(x, positives, [None] * 4, np.flatnonzero(train_mask), SPEC, [0, 1, 2, 3])
    scores = score_heads(state, x)
    assert scores.shape == (4, len(x)) and 0 <= scores.min() and scores.max() <= 1
    for h in range(4):
        assert auc(audience[h][~train_mask], scores[h][~train_mask]) > 0.95
    assert history["loss"][-1] < history["loss"][0]
    assert history["head_positives"] == [len(p) for p in positives]


def test_a_head_trained_in_a_group_equals_the_head_trained_alone():
    x, affinity = planted()
    # Very different sizes, so the groups and their padding differ from the head alone.
    positives = [np.argsort(-a)[:size] for a, size in zip(affinity, (30, 400, 45, 1200), strict=True)]
    weights = [np.linspace(0.1, 1.0, len(p)) for p in positives]
    seeds = [head_seed(7, i) for i in range(4)]
    together, _ = train_heads(x, positives, weights, np.arange(len(x)), SPEC, seeds)
    for h in (0, 3):
        alone, _ = train_heads(x, positives[h:h + 1], weights[h:h + 1], np.arange(len(x)), SPEC, seeds[h:h + 1])
        for name, value in alone.items():
            torch.testing.assert_close(value[0], together[name][h], atol=1e-6, rtol=0)
    again, _ = train_heads(x, positives, weights, np.arange(len(x)), SPEC, seeds)
    assert all(torch.equal(again[k], together[k]) for k in together)


def test_weights_change_training_unless_they_are_constant():
    x, affinity = planted()
    positives = [np.argsort(-affinity[0])[:300]]
    pool = np.arange(len(x))
    unweighted, _ = train_heads(x, positives, [None], pool, SPEC, [5])
    constant, _ = train_heads(x, positives, [np.full(300, 0.3)], pool, SPEC, [5])
    varying, _ = train_heads(x, positives, [np.linspace(0.0, 1.0, 300)], pool, SPEC, [5])
    # Weights are rescaled to mean 1: constant weights are the unweighted loss exactly.
    assert all(torch.equal(constant[k], unweighted[k]) for k in unweighted)
    assert not torch.allclose(varying["w1"], unweighted["w1"])


def test_head_rows_cap_positives_and_sample_negatives_outside_them():
    spec = AudienceSpec(max_positives=50, negatives_per_positive=2.0, min_negatives=10)
    pos, w, neg = head_rows(np.arange(100), np.arange(1.0, 101.0), np.arange(1000), spec, head_seed=3)
    assert len(pos) == 50 and len(np.unique(pos)) == 50
    assert w.mean() == pytest.approx(1.0)
    assert len(neg) == 100 and not np.isin(neg, np.arange(100)).any()  # none of the 100 given positives
    again = head_rows(np.arange(100), np.arange(1.0, 101.0), np.arange(1000), spec, head_seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((pos, w, neg), again, strict=True))
    # Small lists still see min_negatives; a small pool gives what it has.
    assert len(head_rows(np.arange(3), None, np.arange(1000), spec, 0)[2]) == 10
    assert len(head_rows(np.arange(3), None, np.arange(8), spec, 0)[2]) == 5


def test_scoring_all_heads_in_one_pass_equals_each_head_on_its_rows():
    model = MultiHeadMLP(3, 5, 4, head_seeds=[1, 2, 3])
    x = unit_rows(50, 5)
    logits = model(x)
    per_head = model.forward_rows(x.expand(3, 50, 5).contiguous())
    torch.testing.assert_close(logits, per_head)
    batched = score_heads(model.state_dict(), x, batch_size=7)
    torch.testing.assert_close(batched, torch.sigmoid(logits).detach())


def test_lr_scores_learn_a_planted_feature_rule():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((2000, 5))
    positive = features[:, 0] + 0.5 * features[:, 1] > 1.0
    train = np.flatnonzero(positive[:1000])
    negatives = np.setdiff1d(np.arange(1000), train)
    scores = lr_scores(features, train, negatives, seed=0)
    assert scores.shape == (2000,)
    assert auc(positive[1000:], scores[1000:]) > 0.95


def test_top_k_excludes_breaks_ties_by_row_and_stops_at_the_eligible():
    scores = torch.tensor([[0.5, 0.9, 0.5, 0.1, 0.5],
                           [1.0, 2.0, 3.0, 4.0, 5.0]])
    exclude = torch.tensor([[False, True, False, False, False],
                            [True, True, True, False, False]])
    first, second = top_k(scores, exclude, [3, 10])
    np.testing.assert_array_equal(first, [0, 2, 4])  # row 1 excluded; the 0.5 ties by row
    np.testing.assert_array_equal(second, [4, 3])    # only two eligible
