"""Ranking metrics, ROC curves, the oracle's score matrix and the plots."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_curve as sk_roc_curve
from torch_geometric.data import HeteroData

from adrel_pipeline.evaluation.metrics import (
    RankingSample,
    auc,
    oracle_score_matrix,
    positive_ranks,
    ranking_metrics,
    ranking_sample,
    roc_curve,
)
from adrel_pipeline.evaluation.plots import learning_curves_png, markdown_image, roc_png
from adrel_pipeline.evaluation.spec import RankingConfigError, RankingSpec
from adrel_pipeline.graph.build import AD, USER, USER_AD
from adrel_pipeline.world import interaction_probability
from adrel_pipeline.world.oracle import window_probability

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def toy(num_users=2, num_ads=5, known=((0, 0),), positives=((0, 1), (1, 2))):
    data = HeteroData()
    data[USER].num_nodes, data[AD].num_nodes = num_users, num_ads
    data[USER_AD].edge_index = torch.tensor(known, dtype=torch.long).T.reshape(2, -1)
    pos = torch.tensor(positives, dtype=torch.long).T
    data[USER_AD].edge_label_index = torch.cat([pos, torch.tensor([[0], [4]])], dim=1)  # one negative
    data[USER_AD].edge_label = torch.tensor([1.0] * pos.shape[1] + [0.0])
    return data


def test_ranking_metrics_of_a_perfect_scorer():
    data = toy()
    perfect = torch.zeros(2, 5)
    perfect[0, 1] = perfect[1, 2] = 1.0
    m = ranking_metrics(data, lambda users: perfect[users], ks=(1, 3))
    assert (m["hits_at_1"], m["hits_at_3"], m["mrr"]) == pytest.approx((1.0, 1.0, 1.0), abs=1e-12)


def test_ranking_filters_known_ads_and_breaks_ties_in_expectation():
    data = toy()
    # Known ad 0 outscores everything for user 0 but is filtered out; the rest tie.
    scores = torch.zeros(2, 5)
    scores[0, 0] = 10.0
    m = ranking_metrics(data, lambda users: scores[users], ks=(1, 2))
    # User 0: ads 1..4 tie (4 candidates); user 1: ads 0..4 tie (5 candidates).
    assert m["hits_at_1"] == pytest.approx((1 / 4 + 1 / 5) / 2)
    assert m["hits_at_2"] == pytest.approx((2 / 4 + 2 / 5) / 2)
    expected_rr = lambda n: sum(1 / r for r in range(1, n + 1)) / n
    assert m["mrr"] == pytest.approx((expected_rr(4) + expected_rr(5)) / 2)


def test_ranking_metrics_in_batches_equal_one_batch(split):
    test = split["test"]
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(test[USER].num_nodes, test[AD].num_nodes, generator=g)
    one = ranking_metrics(test, lambda u: scores[u])
    batched = ranking_metrics(test, lambda u: scores[u], batch_size=7)
    assert one == pytest.approx(batched)
    # Random scores: hits@k is about k over the number of candidates.
    assert one["hits_at_100"] == pytest.approx(100 / test[AD].num_nodes, rel=0.3)


def test_roc_curve_matches_sklearn_and_its_area_is_the_auc():
    rng = np.random.default_rng(1)
    y = rng.random(400) < 0.5
    s = np.round(rng.random(400) + 0.4 * y, 1)
    fpr, tpr = roc_curve(y, s)
    sk_fpr, sk_tpr, _ = sk_roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auc(y, s), abs=1e-12)


def test_oracle_score_matrix_ranks_as_the_pairwise_probabilities(spec, world, split):
    users, items, _ = world
    test = split["test"]
    user_index = torch.tensor([0, 5, 17])
    matrix = oracle_score_matrix(spec, users, items, test)(user_index).numpy()
    uu, aa = np.meshgrid(test[USER].node_id[user_index].numpy(), test[AD].node_id.numpy(), indexing="ij")
    # Per-draw probabilities: the window's probabilities through a monotone map, bit for bit.
    np.testing.assert_array_equal(window_probability(spec, matrix),
                                  interaction_probability(spec, users, items, uu.ravel(), aa.ravel()).reshape(uu.shape))


def _positives(data):
    return int(data[USER_AD].edge_label.sum())


def _random_scores(data, seed=0):
    # Coarse random scores: many ties, so the tie handling is under test too.
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 50, (data[USER].num_nodes, data[AD].num_nodes), generator=g).double()
    return lambda users: scores[users].clone()


def test_ranking_sample_is_every_positive_when_the_budget_covers_them(split):
    test = split["test"]
    users_with_positives = torch.unique(test[USER_AD].edge_label_index[0, test[USER_AD].edge_label.bool()]).numel()
    exact_cells = users_with_positives * test[AD].num_nodes
    covered = ranking_sample(test, RankingSpec(exact_cells=exact_cells))
    assert covered.exact and torch.equal(covered.index, torch.arange(_positives(test)))
    below = ranking_sample(test, RankingSpec(exact_cells=exact_cells - 1))
    assert not below.exact and below.index.numel() == (exact_cells - 1) // test[AD].num_nodes

    scorer = _random_scores(test)
    exact = ranking_metrics(test, scorer)
    estimate = ranking_metrics(test, scorer, sample=covered, batch_size=5)
    assert estimate == pytest.approx(exact, abs=1e-12)
    assert estimate["exact"] == 1.0 and estimate["ranked_positives"] == estimate["positives"] == _positives(test)
    assert estimate["mrr_se"] == estimate["hits_at_10_se"] == estimate["hits_at_100_se"] == 0.0


def test_ranking_sample_is_seeded_uniform_and_without_replacement(split):
    test = split["test"]
    spec = RankingSpec(exact_cells=40 * test[AD].num_nodes, seed=3)
    a, b = ranking_sample(test, spec), ranking_sample(test, spec)
    assert torch.equal(a.index, b.index) and a.index.numel() == 40 and a.population == _positives(test)
    assert torch.equal(a.index, torch.unique(a.index)) and 0 <= a.index.min() and a.index.max() < a.population
    assert not torch.equal(a.index, ranking_sample(test, RankingSpec(exact_cells=spec.exact_cells, seed=4)).index)
    # Uniform: over many seeds every positive is drawn about as often (40 of N each time).
    counts = torch.zeros(a.population)
    seeds = 300
    for seed in range(seeds):
        counts[ranking_sample(test, RankingSpec(exact_cells=spec.exact_cells, seed=seed)).index] += 1
    expected = seeds * 40 / a.population
    assert counts.mean() == pytest.approx(expected)
    assert (counts - expected).abs().max() < 6 * expected ** 0.5


def test_sampled_ranking_metrics_are_unbiased_and_their_standard_error_is_the_spread(spec, world, split):
    """(b) the mean of the estimates over many seeds is the exact value, (c) the reported standard
    error matches the estimates' spread across seeds (finite-population correction included: half
    the positives are drawn)."""
    users, items, _ = world
    test = split["test"]
    oracle = oracle_score_matrix(spec, users, items, test)
    exact = ranking_metrics(test, oracle)
    n = _positives(test) // 2
    keys = ("mrr", "hits_at_10", "hits_at_100")
    estimates, errors = {k: [] for k in keys}, {k: [] for k in keys}
    seeds = 300
    for seed in range(seeds):
        sample = ranking_sample(test, RankingSpec(exact_cells=n * test[AD].num_nodes, seed=seed))
        assert sample.index.numel() == n
        m = ranking_metrics(test, oracle, sample=sample)
        assert m["exact"] == 0.0 and m["ranked_positives"] == n
        for k in keys:
            estimates[k].append(m[k])
            errors[k].append(m[f"{k}_se"])
    for k in keys:
        values = np.array(estimates[k])
        spread = values.std(ddof=1)
        assert spread > 0
        # Within 4 standard errors of the mean over seeds.
        assert abs(values.mean() - exact[k]) < 4 * spread / seeds ** 0.5, k
        # The reported SE (root mean square over seeds) is the spread, to ~10% (300 seeds).
        assert np.sqrt(np.mean(np.square(errors[k]))) == pytest.approx(spread, rel=0.12), k


def test_sampled_ranking_is_the_same_in_any_batches(split):
    test = split["test"]
    scorer = _random_scores(test, seed=1)
    sample = ranking_sample(test, RankingSpec(exact_cells=60 * test[AD].num_nodes, seed=7))
    one = ranking_metrics(test, scorer, sample=sample)
    assert one == pytest.approx(ranking_metrics(test, scorer, sample=sample, batch_size=1))
    assert one == pytest.approx(ranking_metrics(test, scorer, sample=sample, batch_cells=3 * test[AD].num_nodes))
    # The sampled positives' ranks are those of a full ranking, picked out.
    higher_all, tied_all = positive_ranks(test, scorer)
    higher, tied = positive_ranks(test, scorer, sample, batch_size=4)
    assert torch.equal(higher, higher_all[sample.index]) and torch.equal(tied, tied_all[sample.index])


def test_ranking_filters_only_the_users_own_known_ads():
    # Users 0 and 2 have sampled positives; user 1 (between them, in the same batch range) has a
    # known edge to ad 3 that must not filter ad 3 for the others.
    data = toy(num_users=3, num_ads=5, known=((1, 3), (0, 0)), positives=((0, 1), (1, 2), (2, 4)))
    scores = torch.zeros(3, 5)
    scores[:, 3] = 5.0  # everyone's best ad; known only to user 1
    sample = RankingSample(torch.tensor([0, 2]), 3)
    higher, tied = positive_ranks(data, lambda users: scores[users].clone(), sample)
    # User 0: ad 3 ahead; ads 2, 4 tie (ad 0 is known). User 2: ad 3 ahead; ads 0, 1, 2 tie.
    assert higher.tolist() == [1.0, 1.0] and tied.tolist() == [2.0, 3.0]


@pytest.mark.parametrize("field, value", [("exact_cells", 0), ("batch_cells", 0), ("seed", -1)])
def test_invalid_ranking_config_names_field(field, value):
    with pytest.raises(RankingConfigError, match=f"{field}={value!r} is out of range"):
        RankingSpec(**{field: value})


def test_plots_are_png_and_embed_as_markdown():
    history = {"epoch": [1, 2, 3], "train_loss": [0.7, 0.6, 0.65], "train_auc": [0.6, 0.7, 0.7],
               "val_auc": [0.6, 0.68, 0.66]}
    curves = learning_curves_png(history, best_epoch=2)
    fpr, tpr = roc_curve([0, 1, 0, 1], [0.1, 0.9, 0.4, 0.3])
    roc = roc_png({"model": (fpr, tpr, 0.75)}, title="test")
    assert curves[:8] == PNG_MAGIC and roc[:8] == PNG_MAGIC
    assert curves == learning_curves_png(history, best_epoch=2), "same figure, same bytes"
    md = markdown_image(roc, "ROC")
    assert md.startswith("![ROC](data:image/png;base64,iVBORw0KGgo") and md.endswith(")")
